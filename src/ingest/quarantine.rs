//! Reading `quarantine.jsonl` back (tests, reports). Each line names where
//! the record came from, why it was not written, and its redacted content.

use std::path::Path;

use anyhow::Context;

use crate::artifact::QUARANTINE_FILE;

/// Quarantine entry as read back (tests, reports).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct QuarantineEntry {
    pub file: String,
    pub line: u64,
    pub index: u32,
    pub format_guess: Option<String>,
    pub reason: String,
    pub detail: String,
    pub bytes: u64,
    pub content: Option<String>,
}

/// Reads `DIR/quarantine.jsonl`.
pub fn read_quarantine(dir: &Path) -> anyhow::Result<Vec<QuarantineEntry>> {
    let text =
        std::fs::read_to_string(dir.join(QUARANTINE_FILE)).context("reading quarantine.jsonl")?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}
