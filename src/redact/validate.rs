//! Checksums and shape checks that turn regex candidates into findings:
//! Luhn, IBAN mod-97 with per-country lengths, SSN ranges, calendar dates,
//! entropy of secret values.

/// Luhn checksum over ASCII digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Issuer prefix and length plausible for a payment card (Visa, Mastercard,
/// Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay).
pub(crate) fn card_prefix_ok(d: &[u8]) -> bool {
    let n = d.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let p2 = ((d[0] - b'0') as u32) * 10 + (d[1] - b'0') as u32;
    let p4 = p2 * 100 + ((d[2] - b'0') as u32) * 10 + (d[3] - b'0') as u32;
    match d[0] {
        b'4' => n == 13 || n == 16 || n == 19,
        b'5' => (51..=55).contains(&p2) && n == 16 || matches!(p2, 50 | 56..=58) && n >= 12,
        b'2' => (2221..=2720).contains(&p4) && n == 16 || (2200..=2204).contains(&p4) && n >= 16,
        b'3' => {
            (p2 == 34 || p2 == 37) && n == 15
                || (3528..=3589).contains(&p4) && n >= 16
                || ((300..=305).contains(&(p4 / 10)) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14
        }
        b'6' => n >= 16 || n >= 12 && p2 != 60,
        b'8' => matches!(p2, 81 | 82) && n >= 16,
        _ => false,
    }
}

/// IBAN length per country (ISO 13616 registry).
fn iban_length(cc: &[u8]) -> Option<usize> {
    const T: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BI", 27),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DJ", 27),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FK", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"LY", 25),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MN", 20),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NI", 28),
        (b"NL", 18),
        (b"NO", 15),
        (b"OM", 23),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"RU", 33),
        (b"SA", 24),
        (b"SC", 31),
        (b"SD", 18),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"SO", 23),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
        (b"YE", 30),
    ];
    T.iter().find(|(c, _)| c[..] == cc[..2]).map(|(_, n)| *n)
}

/// Expected length of an IBAN starting with these two letters, if the
/// country uses IBANs.
pub(crate) fn iban_expected_len(compact: &[u8]) -> Option<usize> {
    if compact.len() < 2 {
        return None;
    }
    iban_length(&compact[..2])
}

/// ISO 7064 mod-97-10 over an upper-case, space-free IBAN of the right length.
pub(crate) fn iban_valid(compact: &[u8]) -> bool {
    match iban_expected_len(compact) {
        Some(n) if n == compact.len() => {}
        _ => return false,
    }
    if !compact[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem = 0u32;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + (c - b'0') as u32) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + (c - b'A' + 10) as u32) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// US SSN ranges: area not 000, 666 or 900-999; group not 00; serial not 0000.
pub(crate) fn ssn_valid(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = &d[..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..] != b"0000"
}

pub(crate) fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn real(y: i32, m: u32, d: u32) -> Option<(i32, u32, u32)> {
    ((1900..=2100).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m))
        .then_some((y, m, d))
}

fn month_from_name(w: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const FULL: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let w = w.trim_end_matches('.').to_ascii_lowercase();
    if let Some(i) = FULL.iter().position(|f| *f == w) {
        return Some(i as u32 + 1);
    }
    if w == "sept" {
        return Some(9);
    }
    M.iter().position(|f| *f == w).map(|i| i as u32 + 1)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn year(s: &str) -> Option<i32> {
    let v = num(s)? as i32;
    match s.len() {
        4 => Some(v),
        // Two-digit years in a birth-date context: 00-29 -> 20xx, else 19xx.
        2 => Some(if v < 30 { 2000 + v } else { 1900 + v }),
        _ => None,
    }
}

/// Parses a calendar date in the shapes the date regex finds and returns it
/// only when it exists (leap years included). Numeric D/M/Y vs M/D/Y: valid
/// when either reading is a real date (day-first preferred).
pub(crate) fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let s = s.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return real(s[..4].parse().ok()?, num(&s[4..6])?, num(&s[6..])?);
    }
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'/' | b'.'));
    if numeric {
        let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
        if parts.len() != 3 {
            return None;
        }
        if parts[0].len() == 4 {
            return real(year(parts[0])?, num(parts[1])?, num(parts[2])?);
        }
        let y = year(parts[2])?;
        let (a, b) = (num(parts[0])?, num(parts[1])?);
        return real(y, b, a).or_else(|| real(y, a, b));
    }
    // Month-name forms: "March 3, 1985", "3rd of March 1985", "Mar. 3rd 1985".
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("of"))
        .collect();
    if words.len() != 3 {
        return None;
    }
    let strip = |w: &str| -> Option<u32> {
        let w = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        num(w)
    };
    let y = year(words[2]).filter(|_| words[2].len() == 4)?;
    if let Some(m) = month_from_name(words[0]) {
        return real(y, m, strip(words[1])?);
    }
    let m = month_from_name(words[1])?;
    real(y, m, strip(words[0])?)
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Number of character classes present: lower, upper, digit, other.
pub(crate) fn char_classes(s: &[u8]) -> u32 {
    let (mut l, mut u, mut d, mut o) = (false, false, false, false);
    for &b in s {
        match b {
            b'a'..=b'z' => l = true,
            b'A'..=b'Z' => u = true,
            b'0'..=b'9' => d = true,
            _ => o = true,
        }
    }
    l as u32 + u as u32 + d as u32 + o as u32
}

/// Values that stand in for a secret rather than being one: templates,
/// environment lookups, masks, obvious placeholders.
pub(crate) fn is_placeholder_secret(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    let b = l.as_bytes();
    if b.is_empty() {
        return true;
    }
    if matches!(b[0], b'$' | b'{' | b'<' | b'%' | b'[' | b'(' | b'@' | b'*') {
        return true;
    }
    if b.iter().all(|&c| c == b[0]) {
        return true;
    }
    const CONTAINS: &[&str] = &[
        "xxxx",
        "****",
        "....",
        "your_",
        "your-",
        "yourapi",
        "placeholder",
        "redacted",
        "changeme",
        "change_me",
        "process.env",
        "os.environ",
        "getenv",
        "env(",
        "{{",
        "${",
        "<",
        "example.com",
    ];
    const EXACT: &[&str] = &[
        "example",
        "dummy",
        "sample",
        "undefined",
        "null",
        "none",
        "true",
        "false",
        "password",
        "secret",
        "token",
        "string",
        "required",
        "optional",
        "hidden",
        "masked",
        "input",
        "unknown",
    ];
    const PREFIX: &[&str] = &[
        "self.",
        "this.",
        "args.",
        "config.",
        "settings.",
        "env.",
        "secrets.",
        "os.",
        "req.",
    ];
    CONTAINS.iter().any(|p| l.contains(p))
        || EXACT.contains(&l.as_str())
        || PREFIX.iter().any(|p| l.starts_with(p))
}

/// A value assigned to a token/key/secret name is treated as a secret when
/// it is long enough, not a placeholder, not code, and random-looking.
pub(crate) fn looks_secret(v: &str, password_like: bool) -> bool {
    let b = v.as_bytes();
    if b.len() < 8 || is_placeholder_secret(v) {
        return false;
    }
    if b.iter()
        .any(|c| matches!(c, b'(' | b')' | b'[' | b']' | b'{' | b'}'))
    {
        return false;
    }
    if v.contains("::") || v.contains("->") {
        return false;
    }
    let classes = char_classes(b);
    let h = entropy(b);
    // Dotted or snake_case identifiers are code, not secrets.
    let ident = b
        .iter()
        .all(|c| c.is_ascii_lowercase() || *c == b'_' || *c == b'.');
    if ident && b.len() < 24 {
        return false;
    }
    if password_like {
        return classes >= 2 || h >= 3.0;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    (classes >= 2 && h >= 2.8) || (b.len() >= 20 && h >= 3.5)
}
