//! Private-key material outside a complete `BEGIN ... END` block (those are
//! found by the `pem` pattern of [`super::detect`]): a body whose END line is
//! in this text but whose BEGIN line was in an earlier one, a bare run of
//! PEM-wrapped base64 lines (64 characters; 70 for OpenSSH keys), and,
//! across the messages of one call, the body that follows a BEGIN line left
//! open at the end of an earlier message ([`continuation`]).
//!
//! Base64 tokens shorter than [`MIN_LINE`] (ordinary words are short) count
//! only with a digit, `+`, `/` or `=` in them, right before an END line, or
//! as the last line of a block.

use memchr::memmem;

use super::detect::{push, Span};
use super::kinds::Detail;
use super::validate::char_classes;

/// Shortest body token taken on its own (a prose word is shorter).
const MIN_LINE: usize = 16;

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

fn is_body(c: u8) -> bool {
    is_b64(c) || c == b'='
}

fn is_ws(c: u8) -> bool {
    c.is_ascii_whitespace()
}

/// What may stand right before a body token: a line break or space, a
/// quote, a bracket.
fn opens(c: u8) -> bool {
    is_ws(c) || matches!(c, b'"' | b'\'' | b'`' | b'>' | b'(' | b'[')
}

/// `-----END <LABEL> PRIVATE KEY-----` (or `PRIVATE KEY BLOCK`) at `i`:
/// the end of the marker.
fn end_marker_at(b: &[u8], i: usize) -> Option<usize> {
    let rest = &b[i..];
    if !rest.starts_with(b"-----END") {
        return None;
    }
    let close = memmem::find(&rest[8..], b"-----")? + 8;
    let label = &rest[8..close];
    let ok = label.len() <= 48
        && (label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
        && label
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ');
    ok.then_some(i + close + 5)
}

/// The body characters of `s`, whitespace and escaped newlines removed (the
/// value a key's pseudonym is derived from).
fn compact(s: &str) -> String {
    s.replace("\\n", "").split_whitespace().collect()
}

/// Key bodies in one text: before an END line with no BEGIN line, and bare
/// blocks of wrapped base64 lines.
pub(crate) fn find(s: &str, has_private_key: bool, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    if has_private_key {
        for i in memmem::find_iter(b, b"-----END") {
            let Some(e) = end_marker_at(b, i) else {
                continue;
            };
            let st = body_before(b, i);
            let body = compact(&s[st..i]);
            if body.len() >= MIN_LINE {
                push(out, st, e, Detail::SecretPrivateKey, body);
            }
        }
    }
    wrapped_blocks(s, out);
}

/// Start of the base64 tokens that end at `end` (an END line): the token
/// right before it may be any, earlier ones must be [`body_token`]s.
fn body_before(b: &[u8], end: usize) -> usize {
    let mut start = end;
    let mut first = true;
    loop {
        let mut k = start;
        while k > 0 && is_ws(b[k - 1]) {
            k -= 1;
        }
        let mut t = k;
        while t > 0 && is_body(b[t - 1]) {
            t -= 1;
        }
        if t == k || (t > 0 && !opens(b[t - 1])) || (!first && !body_token(&b[t..k])) {
            return start;
        }
        start = t;
        first = false;
    }
}

/// Bare blocks of at least two base64 lines of one PEM width (64, or 70
/// for OpenSSH), mixed case with digits, plus a shorter last line. The scan
/// skips ahead: a 64-character run must cover the byte 63 places on.
fn wrapped_blocks(s: &str, out: &mut Vec<Span>) {
    let b = s.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i + 129 <= n {
        if !is_b64(b[i + 63]) {
            i += 64;
            continue;
        }
        if let Some(p) = b[i..i + 63].iter().rposition(|&c| !is_b64(c)) {
            i += p + 1;
            continue;
        }
        // b[i..i + 64] is base64 and b[i - 1] is not: a run starts at i
        let (end, lines) = block_at(b, i);
        if lines >= 2 && (i == 0 || opens(b[i - 1])) {
            let blk = &b[i..end];
            let mixed = blk.iter().any(u8::is_ascii_uppercase)
                && blk.iter().any(u8::is_ascii_lowercase)
                && blk.iter().any(u8::is_ascii_digit);
            if mixed {
                push(out, i, end, Detail::SecretPrivateKey, compact(&s[i..end]));
            }
        }
        i = end.max(i + 1);
        while i < n && is_b64(b[i]) {
            i += 1;
        }
    }
}

/// From a run of base64 at `i`: the end of its block and how many full
/// lines it has (0 when the first run is not a PEM line).
fn block_at(b: &[u8], i: usize) -> (usize, usize) {
    let run_end = |j: usize| {
        let mut e = j;
        while e < b.len() && is_b64(b[e]) {
            e += 1;
        }
        e
    };
    let e0 = run_end(i);
    let width = e0 - i;
    if (width != 64 && width != 70) || b.get(e0) == Some(&b'=') {
        return (e0, 0);
    }
    let (mut end, mut lines) = (e0, 1);
    loop {
        let mut k = end;
        while k < b.len() && is_ws(b[k]) {
            k += 1;
        }
        if k == end || k >= b.len() {
            break;
        }
        let e = run_end(k);
        let mut pad = e;
        while pad < b.len() && b[pad] == b'=' && pad - e < 2 {
            pad += 1;
        }
        if e - k == width && pad == e {
            end = e;
            lines += 1;
            continue;
        }
        if e > k && e - k < width && last_line(b, k, e, pad) {
            end = pad;
        }
        break;
    }
    (end, lines)
}

/// A short token `b[k..e]` (padding to `pad`) closing a block: padded, or
/// alone on its line and not a plain word.
fn last_line(b: &[u8], k: usize, e: usize, pad: usize) -> bool {
    if pad < b.len() && !is_ws(b[pad]) && !matches!(b[pad], b'"' | b'\'' | b'-') {
        return false;
    }
    if pad > e {
        return true;
    }
    let rest = &b[pad..];
    let ws = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    let line_ends = ws == rest.len() || matches!(rest[ws], b'\n' | b'\r') || ws >= 2;
    line_ends && char_classes(&b[k..e]) >= 2
}

/// How a text continues a key body left open by an earlier text of the
/// same call: the span of its leading body tokens (with the END line when
/// it comes) and whether the block is still open after it. A token that is
/// not body (a word, punctuation) closes the block.
pub(crate) fn continuation(s: &str) -> (Option<(usize, usize)>, bool) {
    let b = s.as_bytes();
    let mut first = None;
    let mut last = 0;
    let mut j = 0;
    loop {
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        if j >= b.len() {
            return (first.map(|f| (f, last)), true);
        }
        if let Some(e) = end_marker_at(b, j) {
            return (first.map(|f| (f, e)), false);
        }
        let mut e = j;
        while e < b.len() && is_body(b[e]) {
            e += 1;
        }
        let glued = e < b.len() && !is_ws(b[e]) && end_marker_at(b, e).is_none();
        if e == j || glued || !body_token(&b[j..e]) {
            return (first.map(|f| (f, last)), false);
        }
        first.get_or_insert(j);
        last = e;
        j = e;
    }
}

/// A line-long base64 token, or a short one that cannot be a word (a
/// digit, `+`, `/` or `=` padding in it).
fn body_token(t: &[u8]) -> bool {
    t.len() >= MIN_LINE
        || t.iter()
            .any(|c| c.is_ascii_digit() || matches!(c, b'+' | b'/' | b'='))
}

/// Whether a BEGIN line of a private key in `s` has no END line after it.
pub(crate) fn leaves_open(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(begin) = memmem::rfind(b, b"-----BEGIN") else {
        return false;
    };
    let after = &b[begin..];
    let line_end = memmem::find(&after[10..], b"-----").map(|i| i + 10);
    line_end.is_some_and(|le| {
        let label = &after[10..le];
        (label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
            && !memmem::find_iter(after, b"-----END").any(|i| end_marker_at(after, i).is_some())
    })
}

/// The compacted body of `s[a..e]`, for a continuation span's pseudonym.
pub(crate) fn body_norm(s: &str, a: usize, e: usize) -> String {
    compact(&s[a..e])
}
