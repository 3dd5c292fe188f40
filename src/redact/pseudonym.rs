//! Pending markers and their resolution into numbered placeholders.
//!
//! Phase 1 (parallel) writes `U+E000 <class code> <32 hex> U+E001` where the
//! hex is HMAC-SHA256(key, class code || normalised value) truncated to 16
//! bytes. Phase 2 ([`Pseudonyms`], sequential, in input order) turns each
//! marker into `<CLASS_n>`, numbering per class in order of first
//! resolution, so the numbers do not depend on how phase 1 was scheduled.
//! The table maps digests to numbers; it never sees a raw value.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use anyhow::{bail, Context};

use super::kinds::Class;

pub(crate) const OPEN: char = '\u{E000}';
pub(crate) const CLOSE: char = '\u{E001}';
const OPEN_UTF8: [u8; 3] = [0xEE, 0x80, 0x80];
const CLOSE_UTF8: [u8; 3] = [0xEE, 0x80, 0x81];
/// Bytes in one marker: open (3) + class code (1) + hex (32) + close (3).
pub(crate) const MARKER_LEN: usize = 39;

/// True when `s` still holds an unresolved marker.
pub fn has_pending_marker(s: &str) -> bool {
    // memchr on the lead byte: no searcher to build per call (hot in ingest).
    let b = s.as_bytes();
    memchr::memchr_iter(OPEN_UTF8[0], b).any(|i| b[i..].starts_with(&OPEN_UTF8))
}

/// Replaces any U+E000 / U+E001 already in the input with U+FFFD, so input
/// can neither forge a marker nor break one. No allocation when absent.
pub(crate) fn neutralise(s: &mut String) {
    let b = s.as_bytes();
    // Both characters start with EE 80; skip the work when no EE byte exists.
    if memchr::memchr(0xEE, b).is_none() {
        return;
    }
    if s.contains([OPEN, CLOSE]) {
        *s = s.replace([OPEN, CLOSE], "\u{FFFD}");
    }
}

pub(crate) fn push_marker(out: &mut String, class: Class, digest: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(OPEN);
    out.push(class.code() as char);
    for &b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out.push(CLOSE);
}

/// Parses the marker starting at `b[i]` (which must be the open sequence).
fn parse_marker(b: &[u8], i: usize) -> Option<(Class, [u8; 16])> {
    if b.len() < i + MARKER_LEN || b[i..i + 3] != OPEN_UTF8 || b[i + 36..i + 39] != CLOSE_UTF8 {
        return None;
    }
    let class = Class::from_code(b[i + 3])?;
    let mut d = [0u8; 16];
    hex::decode_to_slice(&b[i + 4..i + 36], &mut d).ok()?;
    Some((class, d))
}

/// The run-wide pseudonym table: digest -> (class, number).
#[derive(Default)]
pub struct Pseudonyms {
    ids: HashMap<[u8; 16], (Class, u32)>,
    next: [u32; Class::ALL.len()],
}

impl Pseudonyms {
    pub fn new() -> Self {
        Pseudonyms::default()
    }

    /// Replaces every pending marker in `s` with its numbered placeholder.
    /// Call in input order: first resolution assigns the number.
    pub fn resolve_text(&mut self, s: &mut String) {
        if !has_pending_marker(s) {
            return;
        }
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let finder = memchr::memmem::Finder::new(&OPEN_UTF8);
        let mut search = 0;
        while let Some(off) = finder.find(&b[search..]) {
            let i = search + off;
            out.push_str(&s[last..i]);
            match parse_marker(b, i) {
                Some((class, digest)) => {
                    let n = self.number(class, digest);
                    let _ = write!(out, "<{}_{}>", class.tag(), n);
                    last = i + MARKER_LEN;
                }
                None => {
                    // Not a marker we wrote (cannot happen for neutralised
                    // input); never leave a stray open character behind.
                    out.push('\u{FFFD}');
                    last = i + 3;
                }
            }
            search = last;
        }
        out.push_str(&s[last..]);
        *s = out;
    }

    fn number(&mut self, class: Class, digest: [u8; 16]) -> u32 {
        if let Some(&(_, n)) = self.ids.get(&digest) {
            return n;
        }
        let slot = &mut self.next[class.index()];
        *slot += 1;
        let n = *slot;
        self.ids.insert(digest, (class, n));
        n
    }

    /// Distinct values seen per class (`"email" -> 12`).
    pub fn distinct_counts(&self) -> BTreeMap<String, u64> {
        Class::ALL
            .into_iter()
            .filter(|c| self.next[c.index()] > 0)
            .map(|c| (c.name().to_string(), self.next[c.index()] as u64))
            .collect()
    }

    /// The table in a serialisable form: digest hex -> placeholder
    /// (`"3fa1..." -> "<EMAIL_2>"`). Holds nothing reversible without the key.
    pub fn to_table(&self) -> BTreeMap<String, String> {
        self.ids
            .iter()
            .map(|(d, (c, n))| (hex::encode(d), format!("<{}_{}>", c.tag(), n)))
            .collect()
    }

    /// Rebuilds a table saved with [`Pseudonyms::to_table`]; numbering goes
    /// on after the highest number seen per class. Only valid with the same key.
    pub fn from_table(table: &BTreeMap<String, String>) -> anyhow::Result<Pseudonyms> {
        let mut p = Pseudonyms::new();
        for (i, (d, ph)) in table.iter().enumerate() {
            let mut digest = [0u8; 16];
            hex::decode_to_slice(d, &mut digest)
                .with_context(|| format!("pseudonym table entry {i}: bad digest"))?;
            let inner = ph
                .strip_prefix('<')
                .and_then(|x| x.strip_suffix('>'))
                .with_context(|| format!("pseudonym table entry {i}: bad placeholder"))?;
            let (tag, n) = inner
                .rsplit_once('_')
                .with_context(|| format!("pseudonym table entry {i}: bad placeholder"))?;
            let class = Class::from_tag(tag)
                .with_context(|| format!("pseudonym table entry {i}: unknown class"))?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("pseudonym table entry {i}: bad number"))?;
            if n == 0 {
                bail!("pseudonym table entry {i}: number 0");
            }
            p.ids.insert(digest, (class, n));
            let slot = &mut p.next[class.index()];
            *slot = (*slot).max(n);
        }
        Ok(p)
    }
}
