//! A per-thread memo of field findings. Real agent traffic repeats itself:
//! the same system prompt, tool definitions and tool descriptions come with
//! every call of a workload. Detection is a pure function of the text, its
//! JSON key and the redactor, so a text seen before gets its findings back
//! without running the detectors again. Only detection is memoised;
//! propagation of a call's names and the pseudonyms still run per call.
//!
//! Entries are checked against the whole text (not only its hash), belong
//! to one [`super::Redactor`] (an id taken at construction), and the memo is
//! emptied when it holds more than [`MAX_BYTES`] of text, so memory stays
//! bounded and results never depend on what came before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::detect::Span;

/// Texts shorter than this are cheap to scan and not worth a lookup.
pub(super) const MIN_LEN: usize = 48;
/// Text bytes held per thread before the memo is emptied.
const MAX_BYTES: usize = 16 << 20;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh redactor id.
pub(super) fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

struct Entry {
    key: Option<Box<str>>,
    text: Box<str>,
    spans: Vec<Span>,
}

#[derive(Default)]
struct Memo {
    owner: u64,
    bytes: usize,
    map: HashMap<u64, Vec<Entry>>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

fn hash(key: Option<&str>, text: &str) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    key.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

/// The findings of `text` under `key` for redactor `owner`: from the memo,
/// or computed by `detect` (into an empty vector) and remembered.
pub(super) fn spans_of(
    owner: u64,
    key: Option<&str>,
    text: &str,
    out: &mut Vec<Span>,
    detect: impl FnOnce(&mut Vec<Span>),
) {
    debug_assert!(out.is_empty());
    if text.len() < MIN_LEN {
        detect(out);
        return;
    }
    let h = hash(key, text);
    let hit = MEMO.with(|m| {
        let m = m.borrow();
        if m.owner != owner {
            return false;
        }
        match m.map.get(&h).and_then(|es| {
            es.iter()
                .find(|e| e.key.as_deref() == key && &*e.text == text)
        }) {
            Some(e) => {
                out.extend(e.spans.iter().cloned());
                true
            }
            None => false,
        }
    });
    if hit {
        return;
    }
    detect(out);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.owner != owner || m.bytes + text.len() > MAX_BYTES {
            m.map.clear();
            m.bytes = 0;
            m.owner = owner;
        }
        m.bytes += text.len() + key.map_or(0, str::len);
        m.map.entry(h).or_default().push(Entry {
            key: key.map(Into::into),
            text: text.into(),
            spans: out.clone(),
        });
    });
}
