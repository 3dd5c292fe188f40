//! Phase 2 "Sanitise": PII and secret redaction with consistent, keyed
//! pseudonyms. Every text field of every call passes through here before
//! anything is written.
//!
//! Redaction is two-phase so that it can run in parallel and still number
//! placeholders deterministically:
//!
//! 1. [`Redactor::redact_call`] (parallel, `&self`) finds entities and
//!    replaces each with a pending marker carrying its class and
//!    HMAC-SHA256(key, class || normalised value) truncated to 16 bytes.
//! 2. [`Pseudonyms::finish`] (sequential, in input order) turns markers
//!    into `<EMAIL_1>`, `<PERSON_3>`..., numbering per class in order of
//!    first resolution.
//!
//! Invariants: no raw value reaches an error, a log line or the pseudonym
//! table; input can never forge a marker (U+E000/U+E001 are neutralised
//! first in every string of a call); object keys are redacted like values.
//!
//! Identifier fields stay readable but lose the PII inside them: tool names
//! (offered tools, tool calls, a tool message's `name`), tool-call ids,
//! `model`, `finish_reason` and `workload_id` get the structured detectors
//! only (secrets, e-mails including `%40`-encoded ones, phones, cards, IBANs,
//! SSNs, IP and MAC addresses, dates of birth; `_` reads as a separator, and
//! a phone needs its shape, not a context word), and only the found span is
//! replaced: `call_+14155552671` -> `call_<PHONE_1>`, while `get_weather`,
//! `call_abc123`, `call_1718035200123`, UUIDs, `gpt-4o-mini` and `stop` stay.
//! The workload id, a free label, also gets person names: capitalised ones
//! as in text, `first-last` pairs of listed names in any case, and names
//! found elsewhere in the call. Same value, same placeholder: a tool name or
//! id redacted in one field reads the same in every other.
//!
//! Placeholders: `EMAIL`, `PHONE`, `CREDIT_CARD`, `IBAN`, `SSN`,
//! `IP_ADDRESS`, `MAC_ADDRESS`, `SECRET` (every secret kind, including the
//! token value in a URL query), `CREDENTIALS` (the `user:pass` part of a
//! URL), `DATE_OF_BIRTH`, `ADDRESS`, `PERSON`, `USER_ID`. Stats count per
//! detail (`secret_aws`, `secret_url_token`, `url_credentials`...).
//!
//! Normalisation before hashing: e-mails lower-cased, phones/cards/SSNs
//! digits only, IBANs upper-case without spaces, IPs in canonical form,
//! dates of birth as `YYYY-MM-DD`, names and addresses case-folded with
//! whitespace collapsed. "Sarah" and "Sarah Johnson" are two entities.
//!
//! Decisions worth knowing:
//! - A dotted quad that parses as an IPv4 address is an IP, except right
//!   after a version word or marker (`version 1.2.3.4`, `v1.2.3.4`,
//!   `pkg==1.2.3.4`). Loopback, unspecified, broadcast and `255.x` masks are
//!   kept. Networks and documentation ranges are redacted like any address.
//! - Cards: 13-19 digits, issuer prefix, Luhn; 17-19 digits written without
//!   separators are taken for ids (snowflakes) and kept.
//! - Phones: digit counts per shape; `0044 ...` is `+44 ...` (same
//!   pseudonym); date, SSN and version shapes and numbers after
//!   order/invoice/ticket/id words are kept, except a value right under the
//!   JSON key `"id"` in raw text; a bare digit run is a phone only after a
//!   phone word.
//! - E-mails: `_` belongs to the local part; `%40`-encoded addresses (URL
//!   queries) are found and share the plain form's pseudonym.
//! - Secrets: `password`/`passwd`/`pwd`/`secret`/`token`/`api_key`
//!   assignments (`k=v`, `k: v`, `"k": "v"`) count even with low entropy
//!   (`password=letmeinnow`) unless the value is a placeholder, a type, code
//!   or a path; an unquoted `secret: word` inside prose is kept. A 40-char
//!   AWS secret key next to an `AKIA...` id needs no label. Private keys:
//!   BEGIN...END blocks, a body before an END line whose BEGIN is elsewhere,
//!   bare blocks of 64/70-character base64 lines, and within a call the body
//!   that continues in a later message after an open BEGIN line.
//! - Dates of birth need a context word (born, DOB, birthday...) within a
//!   few words and a real calendar date; a year alone is kept.
//! - Names: embedded given-name/surname lists plus contexts (honorifics,
//!   greetings, signatures, "my name is", name lists, surname endings).
//!   Words that are also common words (May, Will, Grace) need strong
//!   evidence. A name found anywhere in a call is redacted wherever else it
//!   occurs in that call. Not caught: lower-case or ALL-CAPS names outside
//!   "my name is", unlisted names with no context, non-Latin scripts.
//! - JSON: the key gives context (`full_name`, `assignee`, `user_id`,
//!   `client_ip`, `email`, `phone`, `dob`, `zip`, `password`...), also for
//!   `"key": "value"` pairs inside text; numbers under id-like keys become
//!   placeholder strings; object keys are redacted like values.
//! - Form fields in text (`name=Mei Dang; phone=415-517-2720`, URL queries,
//!   logfmt) are read by their key the same way: the value runs to `;`, `&`,
//!   `|`, a line end or the next `key=` (256 bytes at most), and when prose
//!   follows it on the line, its leading words that read as the key's kind
//!   are taken (a person found so takes the capitalised words right after
//!   it: `name=Ann Lee` whole). Secret and id keys keep their own
//!   assignment rules. A URL-encoded value (`name=Mei%20Dang`, `Mei+Dang`)
//!   is read decoded, each value found covering its encoded text with the
//!   plain value's pseudonym; when the decoded reading finds nothing, the
//!   plain one runs (`email=jo+orders@intranet`).
//! - E-mail addresses with letters outside ASCII (`søren@example.dk`,
//!   `anna@bücher.de`) are found whole (a Unicode pattern, run only on text
//!   that is not ASCII, whose local part takes no Han, kana, Hangul or Thai
//!   letter: those scripts run into the address without a space) and
//!   normalised lower-case.
//! - A key's kind also needs the value's shape: under address keys a value
//!   that starts as a machine address (`0x7ffe…`, `localhost:8080`, an IP)
//!   is kept, under postcode keys one word with a run of four letters
//!   (`zip=archive12`), under phone keys a date written with separators
//!   (`fax=2024-01-15`; eight bare digits stay a phone).
//! - Words inside an e-mail address or URL are no context for a number
//!   after them (`jo+orders@acme.com or 512-208-2695` is a phone).

mod cache;
mod detect;
mod key;
mod keyctx;
mod kinds;
mod names;
mod pem;
mod places;
mod pseudonym;
mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::anyhow;
use hmac::Mac;
use regex::RegexSet;
use serde_json::{Map, Value};

use crate::call::{Call, RawCall, RedactedCall, Role, ToolCall};
use detect::{Detectors, Span, View};
use key::HmacSha256;
pub use key::{RedactKey, KEY_ENV, MIN_KEY_BYTES};
use kinds::{Class, Detail};
pub use pseudonym::{has_pending_marker, Pseudonyms};

/// What to redact and with which key.
#[derive(Clone, Debug)]
pub struct RedactConfig {
    pub key: RedactKey,
    /// Values never redacted (compared to the found text, ASCII case-insensitively).
    pub allow_values: Vec<String>,
    /// Regexes; a found value that fully matches one is never redacted.
    pub allow_regexes: Vec<String>,
    /// Detect person names (on by default).
    pub detect_names: bool,
}

impl RedactConfig {
    /// No allow-list, names on.
    pub fn new(key: RedactKey) -> Self {
        RedactConfig {
            key,
            allow_values: Vec::new(),
            allow_regexes: Vec::new(),
            detect_names: true,
        }
    }
}

/// Occurrences redacted, per detail kind (`email`, `secret_aws`, `person`...).
#[derive(Default, Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RedactStats {
    pub by_kind: BTreeMap<String, u64>,
}

impl RedactStats {
    pub fn merge(&mut self, other: &RedactStats) {
        for (k, v) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    fn add(&mut self, d: Detail) {
        let name = d.stat_name();
        match self.by_kind.get_mut(name) {
            Some(v) => *v += 1,
            None => {
                self.by_kind.insert(name.to_string(), 1);
            }
        }
    }
}

/// A redacted call whose placeholders are not numbered yet; hand it to
/// [`Pseudonyms::finish`] in input order.
#[derive(Debug)]
pub struct PendingCall(pub(crate) Call);

impl PendingCall {
    /// Read access (markers still pending).
    pub fn peek(&self) -> &Call {
        &self.0
    }
}

/// The detector set plus the key. `Send + Sync`: share one across threads.
pub struct Redactor {
    det: Detectors,
    hmac: HmacSha256,
    allow_values: HashSet<String>,
    allow_set: Option<RegexSet>,
    detect_names: bool,
    /// Identifies this redactor's entries in the per-thread findings memo.
    memo_id: u64,
}

impl Redactor {
    /// Time spent by each detection pattern alone over `texts` (for
    /// `bench redact` profiling).
    pub fn profile_patterns(&self, texts: &[String]) -> Vec<(&'static str, f64)> {
        self.det.profile(texts)
    }

    /// Compiles the detectors and the allow-list. A bad allow regex is an
    /// error naming its index (its text may itself be sensitive).
    pub fn new(cfg: RedactConfig) -> anyhow::Result<Redactor> {
        let mut anchored = Vec::with_capacity(cfg.allow_regexes.len());
        for (i, r) in cfg.allow_regexes.iter().enumerate() {
            let a = format!("^(?:{r})$");
            if regex::Regex::new(&a).is_err() {
                return Err(anyhow!(
                    "allow_regexes[{i}] is not a valid regular expression"
                ));
            }
            anchored.push(a);
        }
        let allow_set = if anchored.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&anchored)
                    .map_err(|_| anyhow!("allow_regexes could not be compiled together"))?,
            )
        };
        Ok(Redactor {
            det: Detectors::new(),
            hmac: cfg.key.hmac(),
            allow_values: cfg
                .allow_values
                .iter()
                .map(|v| v.trim().to_lowercase())
                .filter(|v| !v.is_empty())
                .collect(),
            allow_set,
            detect_names: cfg.detect_names,
            memo_id: cache::new_id(),
        })
    }

    /// Redacts one free text. The result holds pending markers; resolve them
    /// with [`Pseudonyms::resolve_text`].
    pub fn redact_text(&self, text: &str, stats: &mut RedactStats) -> String {
        let mut s = text.to_string();
        pseudonym::neutralise(&mut s);
        let mut spans = Vec::new();
        self.detect_field(&s, None, &mut spans);
        let mut names = Propagation::default();
        add_person_names(&s, &spans, &self.det, &mut names);
        if !names.is_empty() {
            self.propagate(&s, &names, &mut spans);
        }
        self.apply(&mut s, &spans, stats);
        s
    }

    /// Redacts every string in a JSON value (and object keys), using each
    /// object key as context for its value.
    pub fn redact_value(&self, v: &mut Value, stats: &mut RedactStats) {
        let mut p1 = Collect::new(self, stats);
        walk_value(v, None, &mut p1);
        let (spans, names) = (p1.spans, p1.names);
        let mut p2 = Apply {
            red: self,
            spans: spans.into_iter(),
            names,
            stats,
        };
        walk_value(v, None, &mut p2);
    }

    /// Redacts every text field of a call: message contents and names,
    /// tool-call arguments (by key), tool results, tool descriptions and
    /// schemas, the response, `client_id` and metadata (by key). Names found
    /// anywhere in the call are also redacted where they recur elsewhere in it.
    /// Identifier fields (tool names, tool-call ids, `model`,
    /// `finish_reason`, `workload_id`) get the structured detectors only
    /// (the workload id also names), replacing just what they find.
    pub fn redact_call(&self, raw: RawCall, stats: &mut RedactStats) -> PendingCall {
        let mut call = raw.0;
        pseudonym::neutralise(&mut call.origin.file);
        let mut p1 = Collect::new(self, stats);
        walk_call(&mut call, &mut p1);
        let (spans, names) = (p1.spans, p1.names);
        let mut p2 = Apply {
            red: self,
            spans: spans.into_iter(),
            names,
            stats,
        };
        walk_call(&mut call, &mut p2);
        PendingCall(call)
    }

    /// All findings for one field, allow-listed ones removed, overlaps resolved.
    fn detect_field(&self, text: &str, key: Option<&str>, out: &mut Vec<Span>) {
        if out.is_empty() {
            cache::spans_of(self.memo_id, key, text, out, |out| {
                self.detect_field_uncached(text, key, out)
            });
        } else {
            self.detect_field_uncached(text, key, out);
        }
    }

    fn detect_field_uncached(&self, text: &str, key: Option<&str>, out: &mut Vec<Span>) {
        let view = View::new(text);
        let mut settled = false;
        if let Some(kind) = key.and_then(keyctx::classify_key) {
            if !kind.is_person() || self.detect_names {
                settled = keyctx::keyed(&self.det, kind, view.text(), out);
            }
        }
        if !settled {
            self.det.detect(&view, self.detect_names, out);
        }
        if !out.is_empty() {
            self.drop_allowed(text, out);
            resolve_overlaps(out);
        }
    }

    /// Findings in an identifier-like value ([`Detectors::detect_structural`]);
    /// `label` (the workload id) adds person names.
    fn detect_structural_field(&self, text: &str, label: bool, out: &mut Vec<Span>) {
        self.det.detect_structural(text, out);
        if label && self.detect_names {
            self.det.detect_label_names(text, out);
        }
        if !out.is_empty() {
            self.drop_allowed(text, out);
            resolve_overlaps(out);
        }
    }

    fn drop_allowed(&self, text: &str, spans: &mut Vec<Span>) {
        if self.allow_values.is_empty() && self.allow_set.is_none() {
            return;
        }
        spans.retain(|s| {
            let v = &text[s.start..s.end];
            if !self.allow_values.is_empty() && self.allow_values.contains(&v.trim().to_lowercase())
            {
                return false;
            }
            !self.allow_set.as_ref().is_some_and(|set| set.is_match(v))
        });
    }

    /// Adds every other whole-word occurrence of an already found name:
    /// one pass over the text's word starts, looking each up in the call's
    /// name index (built once per call), so the cost does not grow with
    /// the number of names and nothing is compiled per call.
    fn propagate(&self, text: &str, names: &Propagation, spans: &mut Vec<Span>) {
        let before = spans.len();
        let index = names.index();
        let b = text.as_bytes();
        let is_word = |c: char| c.is_alphanumeric() || c == '_';
        let mut prev_word = false;
        let mut i = 0;
        while i < b.len() {
            let c0 = b[i];
            let (ch, len) = if c0 < 0x80 {
                (c0 as char, 1)
            } else {
                let ch = text[i..].chars().next().expect("char boundary");
                (ch, ch.len_utf8())
            };
            if !prev_word && i + 1 < b.len() && index.first[c0 as usize] {
                let ends_word = |e: usize| !text[e..].chars().next().is_some_and(is_word);
                if let Some(found) = index.match_at(&names.names, text, i, ends_word) {
                    let e = i + found.len();
                    spans.push(Span {
                        start: i,
                        end: e,
                        detail: Detail::Person,
                        norm: names::normalise_name(&text[i..e]),
                    });
                    i = e;
                    prev_word = text[..e].chars().next_back().is_some_and(is_word);
                    continue;
                }
            }
            prev_word = is_word(ch);
            i += len;
        }
        if spans.len() > before {
            self.drop_allowed(text, spans);
            resolve_overlaps(spans);
        }
    }

    fn digest(&self, class: Class, norm: &str) -> [u8; 16] {
        let mut m = self.hmac.clone();
        m.update(&[class.code()]);
        m.update(norm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        d
    }

    /// Writes markers over `spans` (sorted, non-overlapping).
    fn apply(&self, text: &mut String, spans: &[Span], stats: &mut RedactStats) {
        if spans.is_empty() {
            return;
        }
        let mut out = String::with_capacity(text.len() + spans.len() * pseudonym::MARKER_LEN);
        let mut last = 0;
        for s in spans {
            out.push_str(&text[last..s.start]);
            let class = s.detail.class();
            pseudonym::push_marker(&mut out, class, &self.digest(class, &s.norm));
            stats.add(s.detail);
            last = s.end;
        }
        out.push_str(&text[last..]);
        *text = out;
    }
}

impl Pseudonyms {
    /// Resolves every text field of a pending call (call in input order).
    pub fn finish(&mut self, p: PendingCall) -> RedactedCall {
        let mut call = p.0;
        walk_call(&mut call, &mut Resolve(self));
        RedactedCall(call)
    }
}

/// Names found in a call, to be redacted wherever else they occur in it.
#[derive(Default)]
struct Propagation {
    names: Vec<String>,
    seen: HashSet<String>,
    index: std::sync::OnceLock<NameIndex>,
}

/// Names kept per call for propagation (a bound on work for huge dumps).
const PROPAGATE_MAX: usize = 20_000;

impl Propagation {
    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn add(&mut self, name: &str) {
        if name.len() >= 2
            && self.names.len() < PROPAGATE_MAX
            && !self.seen.contains(name)
            && self.index.get().is_none()
        {
            self.seen.insert(name.to_string());
            self.names.push(name.to_string());
        }
    }

    fn index(&self) -> &NameIndex {
        self.index.get_or_init(|| NameIndex::new(&self.names))
    }
}

/// The call's names by their first two bytes, longest first within each.
struct NameIndex {
    /// Whether any name starts with this byte (a cheap first test).
    first: [bool; 256],
    by_prefix: HashMap<[u8; 2], Vec<u32>>,
}

impl NameIndex {
    fn new(names: &[String]) -> NameIndex {
        let mut first = [false; 256];
        let mut by_prefix: HashMap<[u8; 2], Vec<u32>> = HashMap::new();
        for (k, n) in names.iter().enumerate() {
            let b = n.as_bytes();
            first[b[0] as usize] = true;
            by_prefix.entry([b[0], b[1]]).or_default().push(k as u32);
        }
        for v in by_prefix.values_mut() {
            // longest first, so "Sarah Johnson" wins over "Sarah"
            v.sort_by(|&a, &b| {
                let (a, b) = (&names[a as usize], &names[b as usize]);
                b.len().cmp(&a.len()).then(a.cmp(b))
            });
        }
        NameIndex { first, by_prefix }
    }

    /// The longest name that `text` holds at byte `i` and that ends where
    /// `ends_word` says a word ends.
    fn match_at<'n>(
        &self,
        names: &'n [String],
        text: &str,
        i: usize,
        ends_word: impl Fn(usize) -> bool,
    ) -> Option<&'n str> {
        let b = text.as_bytes();
        let cands = self.by_prefix.get(&[b[i], b[i + 1]])?;
        cands
            .iter()
            .map(|&k| names[k as usize].as_str())
            .find(|n| b[i..].starts_with(n.as_bytes()) && ends_word(i + n.len()))
    }
}

/// Whether `hay` holds the short `needle`: a memchr for its rarest byte
/// and a compare, with none of a substring searcher's set-up cost (which
/// dominates for the few-byte needles the detectors gate on).
#[inline]
pub(crate) fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    // How common a byte is in log text: letters, digits and spaces most.
    fn commonness(b: u8) -> u8 {
        match b {
            b'a'..=b'z' | b' ' => 3,
            b'A'..=b'Z' | b'0'..=b'9' | b'"' | b',' | b'.' | b'\n' => 2,
            _ => 1,
        }
    }
    if needle.is_empty() {
        return true;
    }
    let mut at = 0;
    for (i, &b) in needle.iter().enumerate() {
        if commonness(b) < commonness(needle[at]) {
            at = i;
        }
    }
    let (before, after) = (at, needle.len() - at);
    memchr::memchr_iter(needle[at], hay)
        .any(|p| p >= before && p + after <= hay.len() && &hay[p - before..p + after] == needle)
}

/// Keeps the findings that do not overlap a better one. Better: lower
/// [`Detail::priority`], then earlier, then longer. O(n log n) even for
/// texts with many interleaved findings.
fn resolve_overlaps(spans: &mut Vec<Span>) {
    if spans.len() <= 1 {
        return;
    }
    spans.sort_by(|a, b| {
        a.detail
            .priority()
            .cmp(&b.detail.priority())
            .then(a.start.cmp(&b.start))
            .then((b.end - b.start).cmp(&(a.end - a.start)))
    });
    // start -> end of the kept findings; they never overlap each other
    let mut kept: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (i, s) in spans.iter().enumerate() {
        if s.start >= s.end {
            continue;
        }
        let clash_prev = kept
            .range(..=s.start)
            .next_back()
            .is_some_and(|(_, &(e, _))| e > s.start);
        let clash_next = kept
            .range(s.start..)
            .next()
            .is_some_and(|(&st, _)| st < s.end);
        if !clash_prev && !clash_next {
            kept.insert(s.start, (s.end, i));
        }
    }
    let mut all: Vec<Option<Span>> = spans.drain(..).map(Some).collect();
    spans.extend(kept.values().filter_map(|&(_, i)| all[i].take()));
}

/// Names found in a field, as written, plus their distinctive single words
/// ("Sarah Johnson" -> "Sarah Johnson", "Sarah", "Johnson"), for propagation.
fn add_person_names(text: &str, spans: &[Span], det: &Detectors, names: &mut Propagation) {
    for s in spans.iter().filter(|s| s.detail == Detail::Person) {
        let raw = &text[s.start..s.end];
        names.add(raw);
        if raw.contains(' ') {
            for w in raw.split_whitespace() {
                let w = w.trim_end_matches('.');
                if w.chars().count() >= 3
                    && w.chars().next().is_some_and(char::is_uppercase)
                    && det.names.propagatable(w)
                {
                    names.add(w);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The walk: every redactable string of a call, with its JSON key context.

/// Visits text fields in a fixed order. `key` is the JSON object key (or a
/// pseudo-key [`keyctx::MESSAGE_NAME_KEY`] for a message's `name`).
trait Visitor {
    fn text(&mut self, s: &mut String, key: Option<&str>);
    /// A message's or the response's content: free text in which a private
    /// key's body may continue from an earlier one.
    fn content(&mut self, s: &mut String) {
        self.text(s, None);
    }
    /// An identifier-like value (tool name, tool-call id, model, finish
    /// reason; `label`: the workload id).
    fn structural(&mut self, s: &mut String, label: bool);
    /// An object key; returns its replacement when it must change.
    fn key(&mut self, _k: &str) -> Option<String> {
        None
    }
    /// Whether a number under this key becomes a (redactable) string.
    fn stringify_number(&self, _key: &str) -> bool {
        false
    }
}

fn walk_call(c: &mut Call, v: &mut impl Visitor) {
    for m in &mut c.messages {
        if let Some(x) = &mut m.content {
            v.content(x);
        }
        if let Some(x) = &mut m.name {
            // a participant's name or handle; a tool message's name is the
            // function, redacted like the tool names it matches
            if m.role == Role::Tool {
                v.structural(x, false);
            } else {
                v.text(x, Some(keyctx::MESSAGE_NAME_KEY));
            }
        }
        for tc in &mut m.tool_calls {
            walk_tool_call(tc, v);
        }
        if let Some(x) = &mut m.tool_call_id {
            v.structural(x, false);
        }
    }
    for t in &mut c.tools {
        v.structural(&mut t.name, false);
        if let Some(d) = &mut t.description {
            v.text(d, None);
        }
        walk_value(&mut t.parameters, None, v);
    }
    if let Some(x) = &mut c.response.content {
        v.content(x);
    }
    for tc in &mut c.response.tool_calls {
        walk_tool_call(tc, v);
    }
    if let Some(x) = &mut c.response.finish_reason {
        v.structural(x, false);
    }
    if let Some(x) = &mut c.client_id {
        v.text(x, None);
    }
    walk_map(&mut c.metadata, v);
    if let Some(x) = &mut c.model {
        v.structural(x, false);
    }
    if let Some(x) = &mut c.workload_id {
        v.structural(x, true);
    }
}

fn walk_tool_call(tc: &mut ToolCall, v: &mut impl Visitor) {
    if let Some(x) = &mut tc.id {
        v.structural(x, false);
    }
    v.structural(&mut tc.name, false);
    walk_value(&mut tc.arguments, None, v);
}

fn walk_value(val: &mut Value, key: Option<&str>, v: &mut impl Visitor) {
    if let (Value::Number(n), Some(k)) = (&*val, key) {
        if v.stringify_number(k) {
            *val = Value::String(n.to_string());
        }
    }
    match val {
        Value::String(s) => v.text(s, key),
        Value::Array(a) => a.iter_mut().for_each(|x| walk_value(x, key, v)),
        Value::Object(o) => walk_map(o, v),
        _ => {}
    }
}

fn walk_map(o: &mut Map<String, Value>, v: &mut impl Visitor) {
    let mut renames: Vec<(usize, String)> = Vec::new();
    for (i, k) in o.keys().enumerate() {
        if let Some(n) = v.key(k) {
            renames.push((i, n));
        }
    }
    if !renames.is_empty() {
        let old = std::mem::take(o);
        let mut r = renames.into_iter().peekable();
        for (i, (k, val)) in old.into_iter().enumerate() {
            let mut k = if r.peek().is_some_and(|(j, _)| *j == i) {
                r.next().expect("peeked").1
            } else {
                k
            };
            if o.contains_key(&k) {
                k = format!("{k}#{i}");
            }
            o.insert(k, val);
        }
    }
    for (k, val) in o.iter_mut() {
        walk_value(val, Some(k.as_str()), v);
    }
}

/// Pass 1: find spans in every field, collect names for propagation.
/// Object keys are redacted here directly.
struct Collect<'a> {
    red: &'a Redactor,
    stats: &'a mut RedactStats,
    spans: Vec<Vec<Span>>,
    names: Propagation,
    /// An earlier content field left a private key's BEGIN line open.
    pem_open: bool,
}

impl<'a> Collect<'a> {
    fn new(red: &'a Redactor, stats: &'a mut RedactStats) -> Self {
        Collect {
            red,
            stats,
            spans: Vec::new(),
            names: Propagation::default(),
            pem_open: false,
        }
    }
}

impl Visitor for Collect<'_> {
    fn text(&mut self, s: &mut String, key: Option<&str>) {
        pseudonym::neutralise(s);
        let mut spans = Vec::new();
        self.red.detect_field(s, key, &mut spans);
        add_person_names(s, &spans, &self.red.det, &mut self.names);
        self.spans.push(spans);
    }

    fn content(&mut self, s: &mut String) {
        pseudonym::neutralise(s);
        let mut spans = Vec::new();
        self.red.detect_field(s, None, &mut spans);
        if self.pem_open {
            let view = View::new(s);
            let (body, open) = pem::continuation(view.text());
            if let Some((a, e)) = body {
                spans.push(Span {
                    start: a,
                    end: e,
                    detail: Detail::SecretPrivateKey,
                    norm: pem::body_norm(view.text(), a, e),
                });
                resolve_overlaps(&mut spans);
            }
            self.pem_open = open;
        }
        if spans.iter().any(|x| x.detail == Detail::SecretPrivateKey) && pem::leaves_open(s) {
            self.pem_open = true;
        }
        add_person_names(s, &spans, &self.red.det, &mut self.names);
        self.spans.push(spans);
    }

    fn structural(&mut self, s: &mut String, label: bool) {
        pseudonym::neutralise(s);
        let mut spans = Vec::new();
        self.red.detect_structural_field(s, label, &mut spans);
        if label {
            add_person_names(s, &spans, &self.red.det, &mut self.names);
        }
        self.spans.push(spans);
    }

    fn key(&mut self, k: &str) -> Option<String> {
        let mut s = k.to_string();
        pseudonym::neutralise(&mut s);
        let mut spans = Vec::new();
        self.red.detect_field(&s, None, &mut spans);
        if spans.is_empty() {
            return (s != k).then_some(s);
        }
        self.red.apply(&mut s, &spans, self.stats);
        Some(s)
    }

    fn stringify_number(&self, key: &str) -> bool {
        keyctx::classify_key(key).is_some_and(keyctx::KeyKind::takes_numbers)
    }
}

/// Pass 2: the same fields in the same order; propagate names, write markers.
struct Apply<'a> {
    red: &'a Redactor,
    spans: std::vec::IntoIter<Vec<Span>>,
    names: Propagation,
    stats: &'a mut RedactStats,
}

impl Visitor for Apply<'_> {
    fn text(&mut self, s: &mut String, _key: Option<&str>) {
        let mut spans = self.spans.next().unwrap_or_default();
        if !self.names.is_empty() {
            self.red.propagate(s, &self.names, &mut spans);
        }
        self.red.apply(s, &spans, self.stats);
    }

    /// Names found elsewhere in the call reach the workload id only.
    fn structural(&mut self, s: &mut String, label: bool) {
        let mut spans = self.spans.next().unwrap_or_default();
        if label && !self.names.is_empty() {
            self.red.propagate(s, &self.names, &mut spans);
        }
        self.red.apply(s, &spans, self.stats);
    }
}

/// Marker resolution over the same walk.
struct Resolve<'a>(&'a mut Pseudonyms);

impl Visitor for Resolve<'_> {
    fn text(&mut self, s: &mut String, _key: Option<&str>) {
        self.0.resolve_text(s);
    }
    fn structural(&mut self, s: &mut String, _label: bool) {
        self.0.resolve_text(s);
    }
    fn key(&mut self, k: &str) -> Option<String> {
        if !has_pending_marker(k) {
            return None;
        }
        let mut s = k.to_string();
        self.0.resolve_text(&mut s);
        Some(s)
    }
}
