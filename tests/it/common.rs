//! Shared test helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The models directory tests look in.
pub fn models_dir() -> PathBuf {
    slmforge::util::models_dir()
}

/// Path of the slmforge binary built alongside this test binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slmforge"))
}

/// Returns `Some(path)` when a real model file exists, else prints a clear
/// SKIPPED line and returns `None`.
pub fn real_file(rel: &str, test: &str) -> Option<PathBuf> {
    let p = models_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED {test}: real model file {} not present (run `slmforge models fetch`)",
            p.display()
        );
        None
    }
}

/// GPT-2's byte-to-unicode table.
pub fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(&cs) {
        table[*b as usize] = char::from_u32(*c).unwrap();
    }
    table
}
