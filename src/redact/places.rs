//! The places gazetteer: so that "San Francisco", "Paris Charles de Gaulle"
//! or "Washington D.C." are not taken for people. `data/places.txt.gz`
//! holds 34,455 names (GeoNames cities above 15,000 inhabitants with their
//! countries and first-level regions, via github.com/datasets/world-cities;
//! GeoNames data is CC BY 4.0, the datapackage PDDL; plus airports,
//! landmarks and regions added by hand), built by `scripts/make_places.py`.
//!
//! A place of two words or more counts wherever it is written with capitals
//! as in the list. A one-word place ("Florence", "Victoria", "Jackson") is
//! also a given name or a surname often enough that it counts only where
//! the words around it say "place": after "in", "near", "from", "at",
//! "visit", "trip to", "flights to"…, or before "airport", "city", "store"…
//! The person-name detector drops a name that lies inside a place.

use std::collections::HashSet as StdHashSet;

/// Lookups are the hot path: a fast hash (the names are fixed, not
/// attacker-chosen).
type HashSet<T> = StdHashSet<T, foldhash::fast::FixedState>;
use std::io::Read;
use std::sync::LazyLock;

const DATA: &[u8] = include_bytes!("data/places.txt.gz");

/// Longest place name, in words.
const MAX_WORDS: usize = 6;

/// Words before a one-word place that make it a place.
const BEFORE: &[&str] = &[
    "in", "near", "from", "at", "visit", "visiting", "around", "across", "towards", "via",
    "outside", "downtown", "of",
];

/// Two words before a one-word place that make it a place ("trip to X").
const BEFORE_TO: &[&str] = &[
    "trip",
    "flight",
    "flights",
    "fly",
    "flying",
    "move",
    "moving",
    "moved",
    "travel",
    "travelling",
    "traveling",
    "drive",
    "driving",
    "way",
    "train",
    "bus",
    "ticket",
    "tickets",
    "route",
    "relocate",
    "relocating",
    "shipping",
    "ship",
    "deliver",
];

/// Words after a one-word place that make it a place ("X airport").
const AFTER: &[&str] = &[
    "airport",
    "city",
    "store",
    "office",
    "branch",
    "area",
    "downtown",
    "county",
    "state",
    "station",
    "harbour",
    "harbor",
    "port",
    "province",
    "region",
    "centre",
    "center",
    "metro",
    "campus",
    "warehouse",
    "hotel",
    "hotels",
];

pub(crate) struct Places {
    /// Lower-cased names, words separated by one space.
    names: HashSet<String>,
    /// The lower-cased first word of every name: most capitalised words
    /// start no place, and are passed over with one lookup.
    first_words: HashSet<String>,
}

static PLACES: LazyLock<Places> = LazyLock::new(|| {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DATA)
        .read_to_string(&mut text)
        .expect("the bundled places list is valid gzip UTF-8");
    let names: HashSet<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| key_of(l.split_whitespace()))
        .collect();
    let first_words = names
        .iter()
        .map(|n| n.split(' ').next().unwrap_or(n).to_string())
        .collect();
    Places { names, first_words }
});

fn key_of<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let mut k = String::new();
    key_into(&mut k, words);
    k
}

/// Writes the lookup key of `words` (lower case, one space) into `k`.
fn key_into<'a>(k: &mut String, words: impl Iterator<Item = &'a str>) {
    k.clear();
    for w in words {
        if !k.is_empty() {
            k.push(' ');
        }
        if w.is_ascii() {
            k.extend(w.bytes().map(|c| c.to_ascii_lowercase() as char));
        } else {
            k.extend(w.chars().flat_map(char::to_lowercase));
        }
    }
}

/// A word of the text: byte range, and whether it starts with a capital.
struct Word {
    start: usize,
    end: usize,
    upper: bool,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let is_word = |c: char| c.is_alphanumeric() || c == '.' || c == '\'' || c == '-';
    for (i, c) in text.char_indices() {
        match (start, is_word(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push(word(text, s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(word(text, s, text.len()));
    }
    out
}

fn word(text: &str, s: usize, e: usize) -> Word {
    // A sentence's full stop is not part of the word ("in Paris."), but
    // an abbreviation's is ("D.C.").
    let w = &text[s..e];
    let trimmed = if w.ends_with('.') && w.matches('.').count() == 1 && w.len() > 3 {
        e - 1
    } else {
        e
    };
    Word {
        start: s,
        end: trimmed,
        upper: w.chars().next().is_some_and(char::is_uppercase),
    }
}

impl Places {
    pub fn get() -> &'static Places {
        &PLACES
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&key_of(name.split_whitespace()))
    }

    /// Byte ranges of the places mentioned in `text` (longest match first).
    pub fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let ws = words(text);
        let lower = |w: &Word| text[w.start..w.end].to_lowercase();
        let mut out = Vec::new();
        let mut key = String::new();
        let mut i = 0;
        while i < ws.len() {
            if !ws[i].upper {
                i += 1;
                continue;
            }
            key_into(&mut key, std::iter::once(&text[ws[i].start..ws[i].end]));
            if !self.first_words.contains(&key) {
                i += 1;
                continue;
            }
            let mut hit = None;
            for n in (1..=MAX_WORDS.min(ws.len() - i)).rev() {
                let group = &ws[i..i + n];
                // Every word of a multi-word place is capitalised, except
                // short joiners ("de", "la", "upon").
                if n > 1 && !group.iter().all(|w| w.upper || w.end - w.start <= 4)
                    || !group.last().is_some_and(|w| w.upper)
                {
                    continue;
                }
                key_into(&mut key, group.iter().map(|w| &text[w.start..w.end]));
                if self.names.contains(&key) && (n > 1 || self.one_word_context(&ws, i, &lower)) {
                    hit = Some(n);
                    break;
                }
            }
            match hit {
                Some(n) => {
                    out.push((ws[i].start, ws[i + n - 1].end));
                    i += n;
                }
                None => i += 1,
            }
        }
        out
    }

    fn one_word_context(&self, ws: &[Word], i: usize, lower: &dyn Fn(&Word) -> String) -> bool {
        let prev = i.checked_sub(1).map(|j| lower(&ws[j]));
        let prev2 = i.checked_sub(2).map(|j| lower(&ws[j]));
        let next = ws.get(i + 1).map(lower);
        prev.as_deref().is_some_and(|p| BEFORE.contains(&p))
            || (prev.as_deref() == Some("to")
                && prev2.as_deref().is_some_and(|p| BEFORE_TO.contains(&p)))
            || next.as_deref().is_some_and(|n| AFTER.contains(&n))
    }
}
