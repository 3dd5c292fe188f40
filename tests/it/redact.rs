//! Redaction: every entity kind in every field kind of a call, checksum
//! look-alikes kept, consistent and deterministic pseudonyms, key handling,
//! marker forgery, allow-list, precision on ordinary text, catch rates.

use slmforge::redact::*;

fn redactor() -> Redactor {
    Redactor::new(RedactConfig::new(
        RedactKey::from_bytes(b"test-key-0123456789abcdef").unwrap(),
    ))
    .unwrap()
}

fn red(r: &Redactor, s: &str) -> String {
    let mut st = RedactStats::default();
    let mut out = r.redact_text(s, &mut st);
    Pseudonyms::new().resolve_text(&mut out);
    out
}

#[test]
fn probe() {
    let r = redactor();
    let input = std::fs::read_to_string("/tmp/probe.txt").unwrap_or_default();
    for line in input.split("\n====\n") {
        if line.trim().is_empty() {
            continue;
        }
        eprintln!("IN : {line}\nOUT: {}\n", red(&r, line));
    }
}
