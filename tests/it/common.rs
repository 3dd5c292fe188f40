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
        eprintln!("SKIPPED {test}: real model file {} not present (run `slmforge models fetch`)", p.display());
        None
    }
}
