//! The detectors: one cheap pass computes which byte classes a text holds,
//! then only the patterns whose trigger is present run. Every candidate is
//! validated (checksums, ranges, context) before it becomes a [`Span`].
//! Regexes use ASCII word boundaries `(?-u:\b)` so the lazy DFA stays on.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use memchr::memmem;
use regex::Regex;

use super::keyctx;
use super::kinds::Detail;
use super::names::NameModel;
use super::pem;
use super::validate::*;

/// One finding: byte range in the text, what it is, and the normalised
/// value its pseudonym is derived from.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub detail: Detail,
    pub norm: String,
}

/// The text as detectors see it: JSON escapes `\n`, `\t`, `\r` become two
/// spaces and `\"` becomes ` "`, so raw JSON inside a string reads like
/// prose. Byte offsets are unchanged, so spans apply to the original.
pub(crate) struct View<'a> {
    text: Cow<'a, str>,
}

impl<'a> View<'a> {
    pub fn new(s: &'a str) -> View<'a> {
        let b = s.as_bytes();
        let Some(first) = memchr::memchr(b'\\', b) else {
            return View {
                text: Cow::Borrowed(s),
            };
        };
        let mut v = b.to_vec();
        let mut i = first;
        while i + 1 < v.len() {
            if v[i] == b'\\' {
                match v[i + 1] {
                    b'n' | b't' | b'r' => {
                        v[i] = b' ';
                        v[i + 1] = b' ';
                    }
                    b'"' => v[i] = b' ',
                    _ => {}
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        // Only ASCII bytes were replaced by ASCII bytes.
        View {
            text: Cow::Owned(
                String::from_utf8(v).expect("ASCII-for-ASCII replacement keeps UTF-8"),
            ),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// What one cheap, vectorisable pass over the bytes says about a text.
struct Features {
    digits: usize,
    upper: bool,
    lower: bool,
    high: bool,
    at: bool,
    colon: bool,
    eq: bool,
    dash: bool,
    underscore: bool,
    dot: bool,
    qa: bool,
    bracket: bool,
}

impl Features {
    fn of(s: &str) -> Features {
        let (
            mut digits,
            mut up,
            mut lo,
            mut hi,
            mut at,
            mut colon,
            mut eq,
            mut dash,
            mut us,
            mut dot,
            mut qa,
            mut br,
        ) = (
            0usize, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8, 0u8,
        );
        for &b in s.as_bytes() {
            digits += (b.wrapping_sub(b'0') < 10) as usize;
            up |= (b.wrapping_sub(b'A') < 26) as u8;
            lo |= (b.wrapping_sub(b'a') < 26) as u8;
            hi |= (b >= 0x80) as u8;
            at |= (b == b'@') as u8;
            colon |= (b == b':') as u8;
            eq |= (b == b'=') as u8;
            dash |= (b == b'-') as u8;
            us |= (b == b'_') as u8;
            dot |= (b == b'.') as u8;
            qa |= (b == b'?' || b == b'&') as u8;
            br |= (b == b'[' || b == b'(' || b == b'{') as u8;
        }
        Features {
            digits,
            upper: up != 0,
            lower: lo != 0,
            high: hi != 0,
            at: at != 0,
            colon: colon != 0,
            eq: eq != 0,
            dash: dash != 0,
            underscore: us != 0,
            dot: dot != 0,
            qa: qa != 0,
            bracket: br != 0,
        }
    }
}

/// Runs of digits joined by at most two separators (` .-/()`), with at
/// least `min` digits: the only places phones, cards and SSNs can be.
fn digit_clusters(b: &[u8], min: usize, out: &mut Vec<(usize, usize)>) {
    let n = b.len();
    let mut i = 0;
    while i < n {
        match b[i..].iter().position(u8::is_ascii_digit) {
            None => break,
            Some(p) => i += p,
        }
        let mut start = i;
        while start > 0 && matches!(b[start - 1], b'+' | b'(') && i - start < 2 {
            start -= 1;
        }
        let mut j = i;
        let mut digits = 0;
        loop {
            while j < n && b[j].is_ascii_digit() {
                digits += 1;
                j += 1;
            }
            let mut k = j;
            while k < n && k - j < 2 && matches!(b[k], b' ' | b'.' | b'-' | b'/' | b'(' | b')') {
                k += 1;
            }
            if k > j && k < n && b[k].is_ascii_digit() {
                j = k;
                continue;
            }
            break;
        }
        if digits >= min {
            out.push((start, j));
        }
        i = j.max(i + 1);
    }
}

/// Two upper-case letters then two digits somewhere (an IBAN can start here).
fn has_iban_start(b: &[u8]) -> bool {
    b.windows(4).any(|w| {
        w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
    })
}

/// A digit followed by two upper-case letters (a UK inward postcode).
fn has_digit_upper_upper(b: &[u8]) -> bool {
    b.windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1].is_ascii_uppercase() && w[2].is_ascii_uppercase())
}

/// `xx:xx:` / `xx-xx-` / `xxxx.xxxx.` hex shapes (a MAC address can be here).
fn has_mac_shape(b: &[u8]) -> bool {
    let hex = |c: u8| c.is_ascii_hexdigit();
    memchr::memchr3_iter(b':', b'-', b'.', b).any(|i| {
        let c = b[i];
        if c == b'.' {
            i >= 4
                && i + 5 < b.len()
                && b[i + 5] == b'.'
                && b[i - 4..i].iter().all(|&x| hex(x))
                && b[i + 1..i + 5].iter().all(|&x| hex(x))
        } else {
            i >= 2
                && i + 3 < b.len()
                && b[i + 3] == c
                && hex(b[i - 1])
                && hex(b[i - 2])
                && hex(b[i + 1])
                && hex(b[i + 2])
        }
    })
}

/// Start of a window reaching `before` bytes back from `start`, snapped to a
/// char boundary.
fn window(s: &str, start: usize, before: usize) -> usize {
    let mut w = start.saturating_sub(before);
    while !s.is_char_boundary(w) {
        w += 1;
    }
    w
}

const MONTH: &str = r"(?:[Jj]an(?:uary)?|[Ff]eb(?:ruary)?|[Mm]ar(?:ch)?|[Aa]pr(?:il)?|[Mm]ay|[Jj]une?|[Jj]uly?|[Aa]ug(?:ust)?|[Ss]ep(?:t(?:ember)?)?|[Oo]ct(?:ober)?|[Nn]ov(?:ember)?|[Dd]ec(?:ember)?)";

const STREET_SUFFIX: &str = "Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter|\
    Way|Circle|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq|Trail|Trl|Crescent|Cres|Close|Alley|Gardens|Gdns|Plaza|\
    Expressway|Freeway|Fwy|Pike|Mews|Grove|Loop|Broadway|Causeway|Embankment|Parade|Esplanade|Promenade|Quay|Wharf";

const US_STATES: &str =
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|\
    NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR";

const GATE_ZIP: u8 = 1;
const GATE_DE: u8 = 2;
const GATE_FR: u8 = 4;
const GATE_ES: u8 = 8;
const GATE_PO_BOX: u8 = 16;
const GATE_ALL: u8 = 31;

/// Keywords that must appear before an address pattern is run, and the
/// pattern group each opens.
const ADDRESS_GATE_WORDS: &[(&str, u8)] = &[
    ("zip", GATE_ZIP),
    ("Zip", GATE_ZIP),
    ("ZIP", GATE_ZIP),
    ("postal", GATE_ZIP),
    ("Postal", GATE_ZIP),
    ("postcode", GATE_ZIP),
    ("Postcode", GATE_ZIP),
    ("Post code", GATE_ZIP),
    ("PLZ", GATE_ZIP),
    ("straße", GATE_DE),
    ("strasse", GATE_DE),
    ("str. ", GATE_DE),
    ("Str. ", GATE_DE),
    ("weg ", GATE_DE),
    ("gasse", GATE_DE),
    ("platz", GATE_DE),
    ("allee", GATE_DE),
    ("damm ", GATE_DE),
    ("ufer ", GATE_DE),
    ("Weg ", GATE_DE),
    ("Platz", GATE_DE),
    ("rue ", GATE_FR),
    ("avenue ", GATE_FR),
    ("boulevard ", GATE_FR),
    ("bd ", GATE_FR),
    ("place ", GATE_FR),
    ("chemin ", GATE_FR),
    ("impasse ", GATE_FR),
    ("quai ", GATE_FR),
    ("cours ", GATE_FR),
    ("Calle ", GATE_ES),
    ("C/", GATE_ES),
    ("Avenida ", GATE_ES),
    ("Avda", GATE_ES),
    ("Paseo ", GATE_ES),
    ("Plaza ", GATE_ES),
    ("Via ", GATE_ES),
    ("Viale ", GATE_ES),
    ("Piazza ", GATE_ES),
    ("Corso ", GATE_ES),
    ("Rua ", GATE_ES),
    ("Travessa ", GATE_ES),
    ("Carrer ", GATE_ES),
    ("ox ", GATE_PO_BOX),
    ("OX ", GATE_PO_BOX),
];

/// Every compiled pattern. Built once per [`super::Redactor`].
pub(crate) struct Detectors {
    pub email: Regex,
    /// [`Detectors::email`] with letters outside ASCII (slower: only run on
    /// text that has some). The local part takes no letter of a script
    /// written without spaces, so `请发邮件到john@example.com` keeps its
    /// Chinese text.
    email_intl: Regex,
    email_pct: Regex,
    email_obf: Regex,
    url_creds: Regex,
    url_token: Regex,
    slack_hook: Regex,
    secrets: Regex,
    pem: Regex,
    generic: Regex,
    bearer: Regex,
    said_password: Regex,
    email_words: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ssn_ctx: Regex,
    phone_intl: Regex,
    phone_00: Regex,
    phone_nanp: Regex,
    phone_zero: Regex,
    phone_ctx: Regex,
    ipv4: Regex,
    ipv6: Regex,
    mac: Regex,
    dob_ctx: Regex,
    pub date: Regex,
    addr_street: Regex,
    addr_de: Regex,
    addr_fr: Regex,
    addr_es: Regex,
    /// Street first, then a number, a postcode and a town: "Keizersgracht
    /// 66, 1015 CX Amsterdam", "Rynek Główny 65, 31-042 Kraków".
    addr_eu_line: Regex,
    /// A British one-line address: "Flat 10, 135 Park Row, Leeds LS1 5HD".
    addr_uk_line: Regex,
    po_box: Regex,
    zip_ctx: Regex,
    city_state_zip: Regex,
    uk_postcode: Regex,
    /// [`ADDRESS_GATE_WORDS`] as one alternation of literals (a Teddy /
    /// Aho-Corasick prefilter inside the regex crate), searched in one pass.
    addr_gate_words: regex::bytes::Regex,
    user_id: Regex,
    json_key: Regex,
    /// Gate for the secret-assignment and bearer patterns.
    secret_words: Regex,
    /// Gate for the user-id assignment pattern.
    id_words: Regex,
    pub names: NameModel,
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|e| panic!("built-in redaction pattern does not compile: {e}"))
}

impl Detectors {
    pub fn new() -> Detectors {
        let street = format!(
            r"(?-u:\b)[0-9]{{1,6}}[A-Za-z]?(?:-[0-9]{{1,5}})?[ \t]+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ \t]+)?(?:(?:[0-9]{{1,3}}(?:st|nd|rd|th)|[A-Z][A-Za-z'\-]+)\.?[ \t]+){{1,4}}?(?:{STREET_SUFFIX})(?-u:\b)\.?(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)(?-u:\b)\.?)?(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building|\#)\.?[ \t]*\#?[0-9A-Za-z][0-9A-Za-z\-]{{0,5}})?(?:(?:,[ \t]*|[ \t]*\r?\n[ \t]*)[A-Z][A-Za-z]+(?:[ \t\-][A-Z][A-Za-z]+){{0,2}},?[ \t]+(?:(?:{US_STATES})[ \t]+[0-9]{{5}}(?:-[0-9]{{4}})?|(?:AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT)[ \t]+[A-Z][0-9][A-Z][ \t]?[0-9][A-Z][0-9]|(?:[0-9]{{1,2}},?[ \t]+)?[AC-FHKNPRTV-Y][0-9][0-9W][ \t]?[0-9AC-FHKNPRTV-Y]{{4}}|[A-Z]{{1,2}}[0-9][A-Z0-9]?[ \t]?[0-9][A-Z]{{2}}|[0-9]{{4,5}}))?"
        );
        let date = format!(
            r"(?-u:\b)(?:[0-9]{{4}}[\-/.][0-9]{{1,2}}[\-/.][0-9]{{1,2}}|[0-9]{{1,2}}[\-/.][0-9]{{1,2}}[\-/.](?:[0-9]{{4}}|[0-9]{{2}})|{MONTH}\.?[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]+[0-9]{{4}}|[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?{MONTH}\.?,?[ \t]+[0-9]{{4}}|[0-9]{{8}})(?-u:\b)"
        );
        Detectors {
            email: re(
                r"[a-zA-Z0-9_][a-zA-Z0-9_.%+'\-]{0,63}@(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,24}(?-u:\b)",
            ),
            email_intl: re(
                r"[[\p{L}\p{N}_]--[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]][[\p{L}\p{N}_.%+'\-]--[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]]{0,63}@(?:[\p{L}\p{N}](?:[\p{L}\p{N}\-]{0,61}[\p{L}\p{N}])?\.)+[a-zA-Z]{2,24}(?-u:\b)",
            ),
            email_pct: re(
                r"[a-zA-Z0-9_][a-zA-Z0-9_.%+'\-]{0,95}%40(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,24}(?-u:\b)",
            ),
            email_obf: re(
                r"[a-zA-Z0-9][a-zA-Z0-9._%+\-]{0,63}[ ]?(?:\[at\]|\(at\)|\{at\}|\[AT\]|\(AT\))[ ]?[a-zA-Z0-9\-]+(?:[ ]?(?:\[dot\]|\(dot\)|\{dot\}|\[DOT\]|\(DOT\)|\.)[ ]?[a-zA-Z0-9\-]+)+",
            ),
            url_creds: re(r#"[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://([^\s/?#@:"'<>]*:[^\s/?#@"'<>]+)@"#),
            url_token: re(
                r#"[?&;#]((?i:access_token|refresh_token|id_token|auth_token|token|api_key|apikey|api-key|key|sig|signature|password|passwd|pwd|pass|secret|client_secret|code|session|sessionid|session_id|auth|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|jwt))=([^&#\s"'<>\\()\[\]|,`]+)"#,
            ),
            slack_hook: re(
                r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9_/\-]{10,})",
            ),
            secrets: re(concat!(
                r"(?-u:\b)(?:(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
                r"|gh[pousr]_[0-9A-Za-z]{36,255}",
                r"|github_pat_[0-9A-Za-z_]{50,255}",
                r"|sk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_\-]{20,200}",
                r"|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,250}",
                r"|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
                r"|sk-[A-Za-z0-9]{48}",
                r"|xox[abposre]-[0-9A-Za-z\-]{10,250}",
                r"|xapp-[0-9]-[A-Za-z0-9\-]{10,250}",
                r"|AIza[0-9A-Za-z_\-]{35}",
                r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,247}",
                r"|whsec_[0-9A-Za-z]{24,128}",
                r"|hf_[A-Za-z0-9]{30,64}",
                r"|glpat-[0-9A-Za-z_\-]{20,64}",
                r"|eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*)"
            )),
            pem: re(
                r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s\\:,\-]*",
            ),
            generic: re(
                r#"(?i)(api[_\-]?key|apikey|api[_\-]?secret|api[_\-]?token|access[_\-]?key(?:[_\-]?id)?|secret[_\-]?access[_\-]?key|secret[_\-]?key|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|session[_\-]?token|bearer[_\-]?token|private[_\-]?key|secret|token|password|passwd|pwd|passphrase|credentials?)["']?[ \t]*(?:=>|:=|[:=])[ \t]*["']?([^\s"'`,;<>\\]{4,200})"#,
            ),
            said_password: re(
                r#"(?i)(?-u:\b)(?:password|passcode|passphrase|pin|pwd)[ \t]+(?:is|was|will[ \t]+be|=)[ \t]*[:=]?[ \t]*["'`]?([^\s"'`]{4,64})"#,
            ),
            email_words: re(
                r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+\-]*(?:[ ]+dot[ ]+[a-z0-9_\-]+)*[ ]+at[ ]+[a-z0-9\-]+(?:[ ]+dot[ ]+[a-z0-9\-]+)*[ ]+dot[ ]+(?:com|org|net|edu|gov|io|co|uk|de|fr|in|ca|au|info|biz|me|us|ai|dev)(?-u:\b)",
            ),
            bearer: re(r"(?i)(?-u:\b)(?:bearer|basic)[ \t]+([A-Za-z0-9_\-.=+/~]{16,})"),
            card: re(r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)"),
            iban: re(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,30}(?-u:\b)"),
            ssn: re(r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)"),
            ssn_ctx: re(
                r"(?i)(?-u:\b)(?:ssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|#))?|ss#|soc\.?[ \t]*sec\.?(?:[ \t]*(?:no\.?|#))?)[^\n]{0,16}?(?-u:\b)([0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4})(?-u:\b)",
            ),
            phone_intl: re(
                r"\+[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,5}\)|[0-9]{1,14})){1,7}(?-u:\b)",
            ),
            phone_00: re(
                r"(?-u:\b)00[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,5}\)|[0-9]{1,14})){1,7}(?-u:\b)",
            ),
            phone_nanp: re(
                r"(?:(?-u:\b)1[ .\-]?)?(?:\([2-9][0-9]{2}\)[ .\-]?|(?-u:\b)[2-9][0-9]{2}[ .\-])[0-9]{3}[ .\-][0-9]{4}(?-u:\b)",
            ),
            phone_zero: re(
                r"(?:\(0[0-9]{1,4}\)|(?-u:\b)0[0-9]{1,4})(?:[ .\-]?[0-9]{2,4}){2,4}(?-u:\b)",
            ),
            phone_ctx: re(
                r"(?i)(?-u:\b)(?:phone|tel|telephone|mobile|mob|cell|cellphone|fax|whatsapp|sms|call|text|contact|reach|ph)(?:[ \t]*(?:no|num|number|#))?\.?(?:[ \t]+(?:is|was|me|us|him|her|them|at|on|number|no\.?)){0,3}[ \t]*[:#]?[ \t]*(\+?\(?[0-9][0-9 .\-()]{5,20}[0-9])(?-u:\b)",
            ),
            ipv4: re(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"),
            ipv6: re(r"[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:[0-9a-fA-F:.]*(?:%[0-9a-zA-Z]+)?"),
            mac: re(
                r"(?-u:\b)[0-9a-fA-F]{2}(?:(?::[0-9a-fA-F]{2}){5}|(?:-[0-9a-fA-F]{2}){5})(?-u:\b)|(?-u:\b)[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}(?-u:\b)",
            ),
            dob_ctx: re(
                r"(?i)(?-u:\b)(?:born|dob|d\.o\.b\.?|date[ \t]+of[ \t]+birth|birth[ \t_\-]*date|birth[ \t]*day|bday|b-day|geburtsdatum|geboren|fecha[ \t]+de[ \t]+nacimiento|date[ \t]+de[ \t]+naissance|data[ \t]+di[ \t]+nascita)",
            ),
            date: re(&date),
            addr_street: re(&street),
            addr_de: re(
                r"\p{Lu}[\p{L}\-]*?(?:[ \-])?(?:[Ss]tra(?:ß|ss)e|[Ss]tr\.|[Ww]eg|[Gg]asse|[Pp]latz|[Aa]llee|[Dd]amm|[Uu]fer|[Cc]haussee)[ \t]+[0-9]{1,4}[a-z]?(?-u:\b)(?:(?:,?[ \t]*|[ \t]*\r?\n[ \t]*)[0-9]{5}[ \t]+\p{Lu}\p{Ll}+)?",
            ),
            addr_fr: re(
                r"(?-u:\b)[0-9]{1,4}(?:[ ]?(?:bis|ter))?,?[ \t]+(?:rue|avenue|boulevard|bd|place|chemin|all[ée]e|impasse|quai|cours)[ \t]+(?:de[ \t]+la[ \t]+|de[ \t]+l'|du[ \t]+|des[ \t]+|de[ \t]+|d')?\p{Lu}[\p{L}'\-]+(?:[ \t]\p{Lu}[\p{L}'\-]+){0,3}(?:,?[ \t]+[0-9]{5}[ \t]+\p{Lu}[\p{L}\-]+)?",
            ),
            addr_es: re(
                r"(?:Calle|C/|Avenida|Avda\.?|Paseo|Plaza|Via|Viale|Piazza|Corso|Rua|Travessa|Largo|Carrer)[ \t]+(?:de[ \t]+la[ \t]+|de[ \t]+los[ \t]+|de[ \t]+las[ \t]+|del[ \t]+|de[ \t]+|della[ \t]+|dei[ \t]+|di[ \t]+|da[ \t]+|do[ \t]+|dos[ \t]+)?\p{Lu}[\p{L}'\-]+(?:[ \t]\p{Lu}[\p{L}'\-]+){0,3},?[ \t]+(?:n[º°o]\.?[ \t]*)?[0-9]{1,4}(?-u:\b)(?:,[ \t]*[0-9]{1,2}[º°ª]?(?:[ \t]*[A-Z])?(?-u:\b))?(?:,?[ \t]+[0-9]{5}[ \t]+\p{Lu}[\p{L}\-]+)?",
            ),
            addr_gate_words: regex::bytes::Regex::new(
                &ADDRESS_GATE_WORDS
                    .iter()
                    .map(|(w, _)| regex::escape(w))
                    .collect::<Vec<_>>()
                    .join("|"),
            )
            .expect("the address keywords compile"),
            addr_eu_line: re(
                r"\p{Lu}\p{Ll}[\p{L}'\-]*(?:[ \t]+(?:(?:de|du|des|la|le|les|del|della|di|da|do|dos|das|van|von|der|den|het|am|an|im|zum|zur|y|e)[ \t]+)*\p{Lu}[\p{L}'\-]*){0,3},?[ \t]+[0-9]{1,4}[a-zA-Z]?(?:[/\-][0-9]{1,4})?,[ \t]*((?:[A-Z]{1,2}-)?(?:[0-9]{5}|[0-9]{4}[ \t]?[A-Z]{2}|[0-9]{2}-[0-9]{3}|[0-9]{3}[ \t][0-9]{2}|[0-9]{4}))[ \t]+(\p{Lu}[\p{L}\-]+(?:[ \t]+\p{Lu}[\p{L}\-]+)?)",
            ),
            addr_uk_line: re(
                r"(?:(?:Flat|Apartment|Apt|Unit|Suite|Room|Studio)\.?[ \t]+[0-9]{1,4}[A-Za-z]?,?[ \t]+)?[0-9]{1,4}[A-Za-z]?[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){0,3},[ \t]*(?:[A-Z][a-z]+(?:[ \t\-]+[A-Z][a-z]+){0,2},?[ \t]+)?(?:[A-Z]{1,2}[0-9][A-Z0-9]?|GIR)[ ][0-9][ABD-HJLNP-UW-Z]{2}(?-u:\b)",
            ),
            po_box: re(
                r"(?i)(?-u:\b)(?:p\.?[ ]?o\.?[ \t]*box|post[ \t]+office[ \t]+box)[ \t]+[0-9]{1,8}(?-u:\b)",
            ),
            zip_ctx: re(
                r"(?i)(?-u:\b)(?:zip(?:[ \t]*code)?|postal[ \t]*code|post[ \t]*code|postcode|plz)[ \t]*(?:is[ \t]+)?[:#]?[ \t]*((?-i:[0-9]{5}(?:-[0-9]{4})?|[0-9]{4}|[A-Z]{1,2}[0-9][A-Z0-9]?[ ]?[0-9][A-Z]{2}))(?-u:\b)",
            ),
            city_state_zip: re(&format!(
                r"(?-u:\b)[A-Z][a-z]+(?:[ ][A-Z][a-z]+){{0,2}},[ ](?:{US_STATES})[ ][0-9]{{5}}(?:-[0-9]{{4}})?(?-u:\b)"
            )),
            uk_postcode: re(
                r"(?-u:\b)(?:[A-Z]{1,2}[0-9][A-Z0-9]?|GIR)[ ][0-9][ABD-HJLNP-UW-Z]{2}(?-u:\b)",
            ),
            user_id: re(
                r#"(?i)(?-u:\b)(?:user[_\-]?id|userid|customer[_\-]?id|account[_\-]?id|member[_\-]?id|end[_\-]?user(?:[_\-]?id)?|uid)["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9][A-Za-z0-9_\-.@:]{2,63})"#,
            ),
            json_key: re(r#""[A-Za-z_$@][A-Za-z0-9_ .$@\-]{0,40}"[ \t]*:[ \t]*[\["0-9]"#),
            secret_words: re(r"(?i)key|secret|token|pass|pwd|credential|bearer|basic"),
            id_words: re(r"(?i)user|uid|customer|account|member"),
            names: NameModel::new(),
        }
    }

    /// Time spent by each pattern alone over `texts` (bench profiling).
    pub fn profile(&self, texts: &[String]) -> Vec<(&'static str, f64)> {
        let pats: Vec<(&'static str, &Regex)> = vec![
            ("email", &self.email),
            ("email_pct", &self.email_pct),
            ("url_creds", &self.url_creds),
            ("url_token", &self.url_token),
            ("secrets", &self.secrets),
            ("pem", &self.pem),
            ("generic", &self.generic),
            ("bearer", &self.bearer),
            ("said_password", &self.said_password),
            ("email_words", &self.email_words),
            ("card", &self.card),
            ("iban", &self.iban),
            ("ssn", &self.ssn),
            ("ssn_ctx", &self.ssn_ctx),
            ("phone_intl", &self.phone_intl),
            ("phone_00", &self.phone_00),
            ("phone_nanp", &self.phone_nanp),
            ("phone_zero", &self.phone_zero),
            ("phone_ctx", &self.phone_ctx),
            ("ipv4", &self.ipv4),
            ("ipv6", &self.ipv6),
            ("mac", &self.mac),
            ("dob_ctx", &self.dob_ctx),
            ("addr_street", &self.addr_street),
            ("addr_de", &self.addr_de),
            ("addr_fr", &self.addr_fr),
            ("addr_es", &self.addr_es),
            ("addr_eu_line", &self.addr_eu_line),
            ("addr_uk_line", &self.addr_uk_line),
            ("po_box", &self.po_box),
            ("zip_ctx", &self.zip_ctx),
            ("city_state_zip", &self.city_state_zip),
            ("uk_postcode", &self.uk_postcode),
            ("user_id", &self.user_id),
            ("json_key", &self.json_key),
        ];
        let mut res = Vec::new();
        for (name, r) in pats {
            let t = std::time::Instant::now();
            let mut n = 0usize;
            for x in texts {
                n += r.find_iter(x).count();
            }
            std::hint::black_box(n);
            res.push((name, t.elapsed().as_secs_f64()));
        }
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        for x in texts {
            self.names.find(&View::new(x), &mut out);
            out.clear();
        }
        res.push(("names", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let mut n = 0;
        for x in texts {
            n += Features::of(x).digits;
        }
        std::hint::black_box(n);
        res.push(("features", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        for x in texts {
            self.detect(&View::new(x), true, &mut out);
            out.clear();
        }
        res.push(("detect_total", t.elapsed().as_secs_f64()));
        res
    }

    /// Runs every detector whose trigger bytes occur in the text.
    pub fn detect(&self, view: &View, detect_names: bool, out: &mut Vec<Span>) {
        let s = view.text();
        if s.len() < 3 {
            return;
        }
        let f = Features::of(s);
        self.detect_secrets(s, &f, out);
        self.detect_emails(s, &f, out);
        self.detect_numbers(s, &f, false, out);
        if f.digits >= 1 && (f.upper || f.high) {
            self.find_addresses(s, &f, out);
        }
        self.detect_ids(s, &f, out);
        if detect_names && (f.upper || f.high || f.lower) {
            self.names.find(view, out);
        }
    }

    /// The structured detectors only, for identifier-like values (tool
    /// names, tool-call ids, model, finish reason, workload id): secrets,
    /// e-mails, phones, cards, IBANs, SSNs, IP and MAC addresses, dates of
    /// birth. No names, addresses or key context, and no phone found by a
    /// context word alone (`call_1718035200123` is an id). E-mails are
    /// read on the value as is (`_` belongs to a local part); secrets also,
    /// and with the others on a copy where `_` separates words, so
    /// `call_+14155552671` and `id_AKIA...` are seen.
    pub fn detect_structural(&self, raw: &str, out: &mut Vec<Span>) {
        if raw.len() < 3 {
            return;
        }
        let f = Features::of(raw);
        self.detect_emails(raw, &f, out);
        self.detect_secrets(raw, &f, out);
        if f.underscore {
            let sep = raw.replace('_', " ");
            let fs = Features::of(&sep);
            self.detect_secrets(&sep, &fs, out);
            self.detect_numbers(&sep, &fs, true, out);
        } else {
            self.detect_numbers(raw, &f, true, out);
        }
    }

    /// Person names in a label (the workload id): capitalised names as in
    /// text, with `_` read as a space, and a listed given name followed by
    /// a listed name word in any case, joined by `-`, `_`, `.` or a space
    /// (`onboarding-sarah-johnson`), normalised like the same name in text.
    pub fn detect_label_names(&self, s: &str, out: &mut Vec<Span>) {
        let sep = s.replace('_', " ");
        self.names.find(&View::new(&sep), out);
        let b = s.as_bytes();
        let mut words: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            let st = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            words.push((st, i));
        }
        for w in words.windows(2) {
            let ((a, ae), (c, ce)) = (w[0], w[1]);
            let (first, last) = (&s[a..ae], &s[c..ce]);
            if c == ae + 1
                && matches!(b[ae], b'-' | b'_' | b'.' | b' ')
                && self.names.is_known_first(first)
                && self.names.is_known_name_word(last)
                && !self.names.is_stop(first)
                && !self.names.is_stop(last)
            {
                let norm = format!("{} {}", first, last).to_lowercase();
                push(out, a, ce, Detail::Person, norm);
            }
        }
    }

    /// Secrets and credentials: provider keys and tokens, private keys,
    /// password assignments and "the password is ...", bearer tokens, URL
    /// credentials, Slack hooks, tokens in URL queries.
    fn detect_secrets(&self, s: &str, f: &Features, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        let long = b.len() >= 16;
        let mut private_key = false;
        if long && (f.upper || f.underscore || f.dash) {
            self.find_secrets(s, out);
            if f.dash && super::contains_bytes(b, b"PRIVATE KEY") {
                private_key = true;
                for m in self.pem.find_iter(s) {
                    let norm: String = m.as_str().replace("\\n", "").split_whitespace().collect();
                    out.push(Span {
                        start: m.start(),
                        end: m.end(),
                        detail: Detail::SecretPrivateKey,
                        norm,
                    });
                }
            }
        }
        // a body without its BEGIN line (an END line, bare wrapped base64)
        if private_key || (b.len() >= 129 && f.upper && f.lower && f.digits >= 2) {
            pem::find(s, private_key, out);
        }
        let keyword = b.len() >= 12 && (f.colon || f.eq || long) && self.secret_words.is_match(s);
        if keyword {
            if f.colon || f.eq {
                self.find_generic(s, out);
            }
            for c in self.said_password.captures_iter(s) {
                let g = c.get(1).expect("group");
                let v = g.as_str().trim_end_matches(['.', ',', ')', ';']);
                if v.len() >= 6 && looks_secret_said(v) {
                    push(
                        out,
                        g.start(),
                        g.start() + v.len(),
                        Detail::SecretGeneric,
                        v.to_string(),
                    );
                }
            }
            for c in self.bearer.captures_iter(s) {
                let g = c.get(1).expect("group");
                let v = g.as_str().trim_end_matches('.');
                if char_classes(v.as_bytes()) >= 2 && !is_placeholder_secret(v) {
                    push(
                        out,
                        g.start(),
                        g.start() + v.len(),
                        Detail::SecretGeneric,
                        v.to_string(),
                    );
                }
            }
        }
        if f.colon && super::contains_bytes(b, b"://") {
            if f.at {
                for c in self.url_creds.captures_iter(s) {
                    let g = c.get(1).expect("group");
                    let (user, pass) = g.as_str().split_once(':').unwrap_or(("", ""));
                    if !(pass.is_empty() || user.is_empty() && pass.len() < 3) {
                        push(
                            out,
                            g.start(),
                            g.end(),
                            Detail::UrlCredentials,
                            g.as_str().to_string(),
                        );
                    }
                }
            }
            if super::contains_bytes(b, b"hooks.slack.com") {
                for c in self.slack_hook.captures_iter(s) {
                    let g = c.get(1).expect("group");
                    push(
                        out,
                        g.start(),
                        g.end(),
                        Detail::SecretSlack,
                        g.as_str().to_string(),
                    );
                }
            }
        }
        if f.eq && f.qa {
            self.find_url_tokens(s, out);
        }
    }

    /// E-mail addresses, plain and obfuscated ("name [at] host", "name at
    /// host dot com").
    fn detect_emails(&self, s: &str, f: &Features, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        if f.at {
            let email = if s.is_ascii() {
                &self.email
            } else {
                &self.email_intl
            };
            for m in email.find_iter(s) {
                if email_ok(s, m.start(), m.end()) {
                    push(
                        out,
                        m.start(),
                        m.end(),
                        Detail::Email,
                        m.as_str().to_lowercase(),
                    );
                }
            }
        }
        if f.dot && f.digits >= 2 && super::contains_bytes(b, b"%40") {
            self.find_encoded_emails(s, out);
        }
        if f.bracket
            && (super::contains_bytes(b, b"at]")
                || super::contains_bytes(b, b"at)")
                || super::contains_bytes(b, b"AT]")
                || super::contains_bytes(b, b"AT)")
                || super::contains_bytes(b, b"at}"))
        {
            for m in self.email_obf.find_iter(s) {
                let norm = deobfuscate_email(m.as_str());
                if norm.contains('@') && norm.contains('.') {
                    push(out, m.start(), m.end(), Detail::Email, norm);
                }
            }
        }

        if f.lower && super::contains_bytes(b, b" dot ") && super::contains_bytes(b, b" at ") {
            for m in self.email_words.find_iter(s) {
                let norm =
                    deobfuscate_email(&m.as_str().replace(" dot ", ".").replace(" at ", "@"));
                push(out, m.start(), m.end(), Detail::Email, norm);
            }
        }
    }

    /// Numbers and number-like values: phones, cards and SSNs (only inside
    /// digit clusters), IBANs, IP and MAC addresses, dates of birth.
    /// `structural`: no phone on the strength of a context word alone.
    fn detect_numbers(&self, s: &str, f: &Features, structural: bool, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        let d = f.digits;
        let mut has_ipv4_shape = false;
        if d >= 4 {
            let mut clusters = Vec::new();
            digit_clusters(b, 4, &mut clusters);
            for &(cs, ce) in &clusters {
                let w = &b[cs..ce];
                if w.iter().filter(|&&c| c == b'.').count() >= 3 {
                    has_ipv4_shape = true;
                }
                if w.iter().filter(|c| c.is_ascii_digit()).count() >= 7 {
                    self.find_in_cluster(s, cs, ce, structural, out);
                }
            }
        }
        if d >= 6 && f.upper && has_iban_start(b) {
            self.find_ibans(s, out);
        }
        if has_ipv4_shape {
            for m in self.ipv4.find_iter(s) {
                if let Some(ip) = self.ipv4_ok(s, m.start(), m.end()) {
                    push(out, m.start(), m.end(), Detail::IpAddress, ip.to_string());
                }
            }
        }
        if f.colon && b.len() >= 6 && super::contains_bytes(b, b"::")
            || (f.colon && d >= 4 && b.len() >= 15)
        {
            self.find_ipv6(s, out);
        }
        if (f.colon || f.dash || f.dot) && b.len() >= 14 && has_mac_shape(b) {
            for m in self.mac.find_iter(s) {
                if mac_ok(b, m.start(), m.end()) {
                    let norm: String = m
                        .as_str()
                        .chars()
                        .filter(char::is_ascii_hexdigit)
                        .collect::<String>()
                        .to_ascii_lowercase();
                    push(out, m.start(), m.end(), Detail::MacAddress, norm);
                }
            }
        }
        if d >= 4 {
            self.find_dob(s, out);
        }
    }

    /// Identifiers by key, in prose and in JSON text.
    fn detect_ids(&self, s: &str, f: &Features, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        if (f.colon || f.eq) && b.len() >= 8 && self.id_words.is_match(s) {
            for c in self.user_id.captures_iter(s) {
                let g = c.get(1).expect("group");
                let v = g.as_str().trim_end_matches(['.', ':']);
                // in prose and code an id has a digit or is quoted ("user_id: int" is a type)
                let quoted = g.start() > 0 && matches!(b[g.start() - 1], b'"' | b'\'');
                let idish = (v.bytes().any(|c| c.is_ascii_digit()) || quoted) && !is_type_name(v);
                if idish && !keyctx::is_placeholder_id(v) {
                    push(
                        out,
                        g.start(),
                        g.start() + v.len(),
                        Detail::UserId,
                        v.to_string(),
                    );
                }
            }
        }
        if f.colon && (super::contains_bytes(b, b"\":") || super::contains_bytes(b, b"\" :")) {
            self.find_json_keys(s, out);
        }
        if f.eq {
            self.find_form_keys(s, out);
        }
    }

    /// `key=value` fields in text (form notifications, CRM events, URL
    /// queries, logfmt): `name=Mei Dang; phone=415-517-2720`. The key gives
    /// the value's kind, as for JSON; the value runs to the next `;`, `&`,
    /// `|`, tab, line end (also an escaped one, two spaces in the view), quote,
    /// backslash or bracket (not parenthesis), or to a `,` or space before the
    /// next `key=`. Comparisons (`==`, `<=`, `!=`) are not fields.
    fn find_form_keys(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        let is_key_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        for eq in memchr::memchr_iter(b'=', b) {
            if eq == 0 || eq + 1 >= b.len() || matches!(b[eq + 1], b'=' | b'>') {
                continue;
            }
            let mut ks = eq;
            while ks > 0 && is_key_byte(b[ks - 1]) && eq - ks < 40 {
                ks -= 1;
            }
            if eq - ks < 2 || !b[ks].is_ascii_alphabetic() || (ks > 0 && is_key_byte(b[ks - 1])) {
                continue;
            }
            // Secrets (`password=`) and ids (`user_id=`) have their own
            // assignment rules; a place key's value is free text anyway.
            let Some(kind) = keyctx::classify_key(&s[ks..eq]).filter(|k| {
                !matches!(
                    k,
                    keyctx::KeyKind::Secret { .. }
                        | keyctx::KeyKind::UserId
                        | keyctx::KeyKind::Place
                )
            }) else {
                continue;
            };
            let mut vs = eq + 1;
            while vs < b.len() && b[vs] == b' ' {
                vs += 1;
            }
            let mut ve = vs;
            let cap = (vs + FORM_VALUE_MAX).min(b.len());
            while ve < cap
                && !matches!(
                    b[ve],
                    b';' | b'&'
                        | b'|'
                        | b'\t'
                        | b'\n'
                        | b'\r'
                        | b'"'
                        | b'\\'
                        | b'['
                        | b']'
                        | b'{'
                        | b'}'
                        | b'<'
                        | b'>'
                )
            {
                // two spaces: a JSON-escaped line break as the view shows it
                let line_break = b[ve] == b' ' && b.get(ve + 1) == Some(&b' ');
                if line_break || matches!(b[ve], b',' | b' ') && next_is_form_key(b, ve + 1) {
                    break;
                }
                ve += 1;
            }
            while !s.is_char_boundary(ve) {
                ve -= 1;
            }
            // `f(phone=+1 (415) 555-0100)`: a closing parenthesis without
            // its opening one ends the call, not the value.
            let has_open = memchr::memchr(b'(', &b[vs..ve]).is_some();
            while ve > vs
                && (matches!(b[ve - 1], b' ' | b'.' | b',') || (b[ve - 1] == b')' && !has_open))
            {
                ve -= 1;
            }
            if ve > vs {
                // A URL query's value (`name=Mei%20Dang`, `Mei+Dang`) is
                // read decoded; each value found covers its encoded text.
                // When the decoded reading finds nothing, the plain one
                // still runs (`email=jo+orders@intranet`).
                if let Some((decoded, map)) = form_decode(&s[vs..ve]) {
                    let before = out.len();
                    self.form_value(kind, &decoded, out);
                    if out.len() > before {
                        for sp in &mut out[before..] {
                            sp.start = vs + map[sp.start];
                            sp.end = vs + map[sp.end];
                        }
                        continue;
                    }
                }
                let before = out.len();
                self.form_value(kind, &s[vs..ve], out);
                for sp in &mut out[before..] {
                    sp.start += vs;
                    sp.end += vs;
                }
            }
        }
    }

    /// A form value as its key says (spans relative to `value`): the whole
    /// value, else its longest run of leading words that reads as the key's
    /// kind: "phone=415-517-2720 wants a call". Plain text, not a JSON
    /// string body (no escapes to decode).
    fn form_value(&self, kind: keyctx::KeyKind, value: &str, out: &mut Vec<Span>) {
        let before = out.len();
        let mut end = value.len();
        for _ in 0..FORM_VALUE_WORDS {
            keyctx::keyed(self, kind, &value[..end], out);
            let shorter = value[..end].rfind(' ').map(|p| {
                value[..p]
                    .trim_end_matches([' ', ',', '.', '(', ')', ':'])
                    .len()
            });
            match shorter {
                Some(e) if out.len() == before && e > 0 => end = e,
                _ => break,
            }
        }
        // A person found in leading words takes the capitalised words right
        // after it too: "Ann Lee" whole, where "Ann" alone read as a name.
        let rest = &value[end..];
        if kind.is_person() && out.len() > before && rest.starts_with(' ') {
            let last = out.last_mut().expect("a span");
            if last.detail == Detail::Person && last.end == end {
                let mut e = end;
                for w in rest[1..].split(' ').take(3) {
                    let name_like = w.chars().next().is_some_and(char::is_uppercase)
                        && w.chars()
                            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\''));
                    if !name_like {
                        break;
                    }
                    e += 1 + w.len();
                }
                if e > end {
                    last.end = e;
                    last.norm = super::names::normalise_name(&value[last.start..e]);
                }
            }
        }
    }

    /// Phones, cards and SSNs in one digit cluster `s[cs..ce]` (context
    /// patterns look a little further back). `structural`: no phone found by
    /// a context word alone.
    fn find_in_cluster(
        &self,
        s: &str,
        cs: usize,
        ce: usize,
        structural: bool,
        out: &mut Vec<Span>,
    ) {
        let b = s.as_bytes();
        let digits = b[cs..ce].iter().filter(|c| c.is_ascii_digit()).count();
        let w = &s[cs..ce];
        if digits >= 13 {
            for m in self.card.find_iter(w) {
                self.card_candidate(s, cs + m.start(), cs + m.end(), out);
            }
        }
        if digits >= 9 && w.contains('-') {
            for m in self.ssn.find_iter(w) {
                let (ms, me) = (cs + m.start(), cs + m.end());
                let dg = digits_of(m.as_str());
                if ssn_valid(dg.as_bytes()) && isolated_number(b, ms, me) {
                    push(out, ms, me, Detail::Ssn, dg);
                }
            }
        }
        let ws = window(s, cs, 48);
        let wide = &s[ws..ce];
        if digits >= 9 {
            for c in self.ssn_ctx.captures_iter(wide) {
                let g = c.get(1).expect("group");
                let dg = digits_of(g.as_str());
                if ssn_valid(dg.as_bytes()) {
                    push(out, ws + g.start(), ws + g.end(), Detail::Ssn, dg);
                }
            }
        }
        if b[cs] == b'+' || (cs > 0 && b[cs - 1] == b'+') {
            let ps = if cs > 0 && b[cs - 1] == b'+' {
                cs - 1
            } else {
                cs
            };
            for m in self.phone_intl.find_iter(&s[ps..ce]) {
                if let Some(d) = phone_ok(s, ps + m.start(), ps + m.end(), PhoneShape::Intl) {
                    push(out, ps + m.start(), ps + m.end(), Detail::Phone, d);
                }
            }
        }
        if digits >= 10 {
            let ns = window(s, cs, 2);
            for m in self.phone_nanp.find_iter(&s[ns..ce]) {
                if let Some(d) = phone_ok(s, ns + m.start(), ns + m.end(), PhoneShape::Nanp) {
                    push(out, ns + m.start(), ns + m.end(), Detail::Phone, d);
                }
            }
        }
        if w.contains('0') {
            for m in self.phone_zero.find_iter(w) {
                if let Some(d) = phone_ok(s, cs + m.start(), cs + m.end(), PhoneShape::Zero) {
                    push(out, cs + m.start(), cs + m.end(), Detail::Phone, d);
                }
            }
            if super::contains_bytes(w.as_bytes(), b"00") {
                // only where the cluster starts: "DE89 3704 0044 0532..." is no phone
                for m in self.phone_00.find_iter(w).filter(|m| m.start() == 0) {
                    let (ms, me) = (cs + m.start(), cs + m.end());
                    if let Some(d) = phone_ok(s, ms, me, PhoneShape::Intl00) {
                        push(out, ms, me, Detail::Phone, d);
                    }
                }
            }
        }
        if structural {
            return;
        }
        for c in self.phone_ctx.captures_iter(wide) {
            let g = c.get(1).expect("group");
            if let Some(d) = phone_ok(s, ws + g.start(), ws + g.end(), PhoneShape::Context) {
                push(out, ws + g.start(), ws + g.end(), Detail::Phone, d);
            }
        }
    }

    fn find_secrets(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        for m in self.secrets.find_iter(s) {
            let t = m.as_str();
            if m.end() < b.len() && (b[m.end()].is_ascii_alphanumeric()) {
                continue;
            }
            let detail = if t.starts_with("eyJ") {
                Detail::SecretJwt
            } else if t.starts_with("gh") || t.starts_with("github_pat_") {
                Detail::SecretGithub
            } else if t.starts_with("sk-ant-") {
                Detail::SecretAnthropic
            } else if t.starts_with("sk-") {
                Detail::SecretOpenai
            } else if t.starts_with("xox") || t.starts_with("xapp-") {
                Detail::SecretSlack
            } else if t.starts_with("AIza") {
                Detail::SecretGoogle
            } else if t.starts_with("sk_") || t.starts_with("rk_") || t.starts_with("whsec_") {
                Detail::SecretStripe
            } else if t.starts_with("hf_") {
                Detail::SecretHuggingface
            } else if t.starts_with("glpat-") {
                Detail::SecretGitlab
            } else {
                Detail::SecretAws
            };
            push(out, m.start(), m.end(), detail, t.to_string());
            if detail == Detail::SecretAws {
                find_aws_secret_near(s, m.start(), m.end(), out);
            }
        }
    }

    fn find_generic(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        for c in self.generic.captures_iter(s) {
            let k = c.get(1).expect("group");
            if k.start() > 0 && b[k.start() - 1].is_ascii_alphanumeric() {
                continue;
            }
            let g = c.get(2).expect("group");
            let v = g.as_str().trim_end_matches(['.', ')', ']', '}']);
            let key = k.as_str().to_ascii_lowercase();
            let password = key.contains("pass") || key.contains("pwd");
            if key == "pwd" && v.starts_with(['/', '~']) {
                continue; // PWD=/home/...: the working directory
            }
            let plain_key = password
                || matches!(
                    key.as_str(),
                    "secret" | "token" | "api_key" | "api-key" | "apikey"
                );
            if looks_secret(v, password)
                || plain_key && plain_secret(s, k.end(), g.start(), v, password)
            {
                push(
                    out,
                    g.start(),
                    g.start() + v.len(),
                    Detail::SecretGeneric,
                    v.to_string(),
                );
            }
        }
    }

    fn find_url_tokens(&self, s: &str, out: &mut Vec<Span>) {
        for c in self.url_token.captures_iter(s) {
            let key = c.get(1).expect("group").as_str().to_ascii_lowercase();
            let g = c.get(2).expect("group");
            let v = g.as_str().trim_end_matches(['.', ',', ')']);
            let vb = v.as_bytes();
            let ok = match key.as_str() {
                "password" | "passwd" | "pwd" | "pass" => vb.len() >= 3,
                "key" | "code" | "auth" | "session" => vb.len() >= 12 && char_classes(vb) >= 2,
                _ => vb.len() >= 6,
            };
            if ok && !is_placeholder_secret(v) {
                push(
                    out,
                    g.start(),
                    g.start() + v.len(),
                    Detail::SecretUrlToken,
                    v.to_string(),
                );
            }
        }
    }

    /// Percent-encoded e-mails (`john.doe%40example.com`, also in URL
    /// queries), normalised decoded so that they share the plain form's
    /// pseudonym. An encoded separator (`%3D`, `%2F`...) before the local
    /// part ends what came before it.
    fn find_encoded_emails(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        for m in self.email_pct.find_iter(s) {
            let Some(at) = memmem::rfind(&b[m.start()..m.end()], b"%40").map(|i| m.start() + i)
            else {
                continue;
            };
            // a match may begin on the hex digits of an escape ("%3Djohn...")
            let mut i = if m.start() > 0 && b[m.start() - 1] == b'%' {
                m.start() - 1
            } else {
                m.start()
            };
            let mut start = m.start();
            while i + 2 < at {
                match (b[i] == b'%')
                    .then(|| hex_byte(b[i + 1], b[i + 2]))
                    .flatten()
                {
                    Some(c) => {
                        if !(c.is_ascii_alphanumeric() || b"._%+'-".contains(&c) || c == b'_') {
                            start = i + 3;
                        }
                        i += 3;
                    }
                    None => i += 1,
                }
            }
            if start >= at {
                continue;
            }
            let decoded = percent_decode(&b[start..m.end()]).to_lowercase();
            if email_ok(&decoded, 0, decoded.len()) {
                push(out, start, m.end(), Detail::Email, decoded);
            }
        }
    }

    fn card_candidate(&self, s: &str, start: usize, end: usize, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        if !isolated_number(b, start, end) {
            return;
        }
        let t = &s[start..end];
        let seps: Vec<u8> = t.bytes().filter(|c| !c.is_ascii_digit()).collect();
        if seps.windows(2).any(|w| w[0] != w[1]) {
            return;
        }
        if !seps.is_empty() {
            let groups: Vec<usize> = t.split([' ', '-']).map(str::len).collect();
            if groups.iter().any(|&g| !(3..=6).contains(&g))
                && groups[..groups.len() - 1].iter().any(|&g| g != 4)
            {
                return;
            }
        }
        let digits = digits_of(t);
        let db = digits.as_bytes();
        // 17-19 digits without separators are mostly ids (snowflakes), not cards
        if seps.is_empty() && db.len() > 16 {
            return;
        }
        if card_prefix_ok(db) && luhn(db) && !db.iter().all(|&c| c == db[0]) {
            push(out, start, end, Detail::CreditCard, digits);
        }
    }

    fn find_ibans(&self, s: &str, out: &mut Vec<Span>) {
        for m in self.iban.find_iter(s) {
            let t = m.as_str();
            let mut compact = Vec::with_capacity(34);
            let mut ends = Vec::with_capacity(34);
            for (i, c) in t.bytes().enumerate() {
                if c != b' ' {
                    compact.push(c);
                    ends.push(i + 1);
                }
            }
            let Some(want) = iban_expected_len(&compact) else {
                continue;
            };
            if compact.len() < want {
                continue;
            }
            compact.truncate(want);
            let end = m.start() + ends[want - 1];
            // a cut in the middle of a group means the IBAN ran into other text
            if end < m.end() && s.as_bytes()[end] != b' ' {
                continue;
            }
            if iban_valid(&compact) {
                push(
                    out,
                    m.start(),
                    end,
                    Detail::Iban,
                    String::from_utf8(compact).expect("ASCII"),
                );
            }
        }
    }

    fn ipv4_ok(&self, s: &str, start: usize, end: usize) -> Option<Ipv4Addr> {
        let b = s.as_bytes();
        if start > 0 && matches!(b[start - 1], b'.' | b'-' | b'_') {
            return None;
        }
        if end < b.len()
            && matches!(b[end], b'.' | b'-' | b'_')
            && b.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            return None;
        }
        let ip: Ipv4Addr = s[start..end].parse().ok()?;
        if ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_broadcast()
            || ip.octets()[0] == 255
            || ip.octets()[0] == 0
        {
            return None;
        }
        // "v1.2.3.4", "version 1.2.3.4", "pkg==1.2.3.4": a version, not an address
        if version_context(s, start) {
            return None;
        }
        Some(ip)
    }

    fn find_ipv6(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        for m in self.ipv6.find_iter(s) {
            let mut end = m.end();
            let start = m.start();
            // trailing sentence dot or a single trailing colon
            while end > start && b[end - 1] == b'.' {
                end -= 1;
            }
            if end > start + 1 && b[end - 1] == b':' && b[end - 2] != b':' {
                end -= 1;
            }
            let cand = &s[start..end];
            if cand.len() < 3 {
                continue;
            }
            if start > 0
                && (b[start - 1].is_ascii_alphanumeric()
                    || matches!(b[start - 1], b':' | b'.' | b'_'))
            {
                continue;
            }
            if end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                continue;
            }
            let addr = cand.split('%').next().unwrap_or(cand);
            let Ok(ip) = addr.parse::<Ipv6Addr>() else {
                continue;
            };
            if ip.is_unspecified() || ip.is_loopback() {
                continue;
            }
            let groups = addr.split(':').filter(|g| !g.is_empty()).count();
            if groups < 2 || !addr.bytes().any(|c| c.is_ascii_digit()) {
                continue;
            }
            push(
                out,
                start,
                end,
                Detail::IpAddress,
                IpAddr::V6(ip).to_string(),
            );
        }
    }

    fn find_dob(&self, s: &str, out: &mut Vec<Span>) {
        for t in self.dob_ctx.find_iter(s) {
            // a date right after the context word ("born on 3 March 1985")...
            let mut wend = (t.end() + 48).min(s.len());
            while !s.is_char_boundary(wend) {
                wend -= 1;
            }
            let after = &s[t.end()..wend];
            if let Some(m) = self.date.find(after) {
                if m.start() <= 32 {
                    if let Some(norm) = date_norm(m.as_str()) {
                        push(
                            out,
                            t.end() + m.start(),
                            t.end() + m.end(),
                            Detail::DateOfBirth,
                            norm,
                        );
                        continue;
                    }
                }
            }
            // ...or right before it ("12/03/1985 (DOB)")
            let mut wstart = t.start().saturating_sub(40);
            while !s.is_char_boundary(wstart) {
                wstart += 1;
            }
            let before = &s[wstart..t.start()];
            if let Some(m) = self.date.find_iter(before).last() {
                if before.len() - m.end() <= 6 {
                    if let Some(norm) = date_norm(m.as_str()) {
                        push(
                            out,
                            wstart + m.start(),
                            wstart + m.end(),
                            Detail::DateOfBirth,
                            norm,
                        );
                    }
                }
            }
        }
    }

    fn find_addresses(&self, s: &str, f: &Features, out: &mut Vec<Span>) {
        let gates = self.address_gates(s.as_bytes());
        self.find_english_addresses(s, f, gates, out);
        self.find_european_addresses(s, f, gates, out);
    }

    /// Which address keywords the text holds ([`GATE_ZIP`]...): one pass
    /// over the text instead of a search per keyword.
    fn address_gates(&self, b: &[u8]) -> u8 {
        let mut g = 0;
        for m in self.addr_gate_words.find_iter(b) {
            let w = m.as_bytes();
            g |= ADDRESS_GATE_WORDS
                .iter()
                .find(|(k, _)| k.as_bytes() == w)
                .map_or(0, |(_, bit)| *bit);
            if g == GATE_ALL {
                break;
            }
        }
        g
    }

    /// English-language addresses: street lines, "City, ST 12345", UK
    /// postcodes, PO boxes, codes after a zip/postcode keyword.
    fn find_english_addresses(&self, s: &str, f: &Features, gates: u8, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        if f.upper {
            for m in self.addr_street.find_iter(s) {
                // "Street." at a sentence end: the dot is not part of the address
                let t = m.as_str();
                let mut end = m.end();
                if t.ends_with('.')
                    && t[..t.len() - 1]
                        .bytes()
                        .rev()
                        .take_while(u8::is_ascii_lowercase)
                        .count()
                        >= 4
                {
                    end -= 1;
                }
                push_address(out, s, m.start(), end);
            }
            if f.lower && f.digits >= 5 {
                for m in self.city_state_zip.find_iter(s) {
                    push_address(out, s, m.start(), m.end());
                }
            }
            if has_digit_upper_upper(b) {
                for m in self.uk_postcode.find_iter(s) {
                    push_address(out, s, m.start(), m.end());
                }
                if f.lower && memchr::memchr(b',', b).is_some() {
                    for m in self.addr_uk_line.find_iter(s) {
                        if at_word_start(s, m.start()) {
                            push_address(out, s, m.start(), m.end());
                        }
                    }
                }
            }
        }
        if gates & GATE_PO_BOX != 0 {
            for m in self.po_box.find_iter(s) {
                push_address(out, s, m.start(), m.end());
            }
        }
        if gates & GATE_ZIP != 0 {
            for c in self.zip_ctx.captures_iter(s) {
                let g = c.get(1).expect("group");
                push_address(out, s, g.start(), g.end());
            }
        }
    }

    /// German, French, Spanish, Italian and Portuguese street addresses.
    fn find_european_addresses(&self, s: &str, f: &Features, gates: u8, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        if gates & GATE_DE != 0 {
            for m in self.addr_de.find_iter(s) {
                if at_word_start(s, m.start()) {
                    push_address(out, s, m.start(), m.end());
                }
            }
        }
        if f.lower && gates & GATE_FR != 0 {
            for m in self.addr_fr.find_iter(s) {
                push_address(out, s, m.start(), m.end());
            }
        }
        if gates & GATE_ES != 0 {
            for m in self.addr_es.find_iter(s) {
                if at_word_start(s, m.start()) {
                    push_address(out, s, m.start(), m.end());
                }
            }
        }
        // street, number, postcode, town: a four-digit postcode (also a
        // year) counts only before a listed town
        if f.upper && f.lower && f.digits >= 5 && memchr::memchr(b',', b).is_some() {
            for c in self.addr_eu_line.captures_iter(s) {
                let m = c.get(0).expect("match");
                let code = c.get(1).expect("postcode").as_str();
                let town = c.get(2).expect("town").as_str();
                let bare_four = code.len() == 4 && code.bytes().all(|d| d.is_ascii_digit());
                if at_word_start(s, m.start())
                    && (!bare_four || super::places::Places::get().contains(town))
                {
                    push_address(out, s, m.start(), m.end());
                }
            }
        }
    }

    /// `"key": "value"` pairs inside text (tool results, JSON responses):
    /// the key gives the value's kind, as for parsed JSON.
    fn find_json_keys(&self, s: &str, out: &mut Vec<Span>) {
        let b = s.as_bytes();
        for m in self.json_key.find_iter(s) {
            let key_end = memchr::memchr(b'"', &b[m.start() + 1..])
                .map(|i| m.start() + 1 + i)
                .unwrap_or(m.start());
            let key = &s[m.start() + 1..key_end];
            let Some(kind) = keyctx::classify_key(key) else {
                continue;
            };
            let vstart = m.end() - 1;
            match b[vstart] {
                b'"' => {
                    if let Some((raw_s, raw_e)) = json_string_at(b, vstart) {
                        self.keyed_raw(kind, s, raw_s, raw_e, out);
                    }
                }
                b'[' => {
                    // an array of strings: ["Alice Johnson", "Bob Lee"]
                    let mut p = vstart + 1;
                    loop {
                        while p < b.len() && matches!(b[p], b' ' | b'\n' | b'\t' | b'\r' | b',') {
                            p += 1;
                        }
                        if p >= b.len() || b[p] != b'"' {
                            break;
                        }
                        let Some((rs, re)) = json_string_at(b, p) else {
                            break;
                        };
                        self.keyed_raw(kind, s, rs, re, out);
                        p = re + 1;
                    }
                }
                _ => {
                    let mut e = vstart;
                    while e < b.len() && b[e].is_ascii_digit() {
                        e += 1;
                    }
                    if kind.takes_numbers() {
                        self.keyed_raw(kind, s, vstart, e, out);
                    }
                }
            }
        }
    }

    /// Key-context check for a raw JSON string body `s[rs..re]` (escapes
    /// possible): findings inside a value with escapes cover the whole value.
    fn keyed_raw(&self, kind: keyctx::KeyKind, s: &str, rs: usize, re: usize, out: &mut Vec<Span>) {
        let raw = &s[rs..re];
        if !raw.contains('\\') {
            let before = out.len();
            keyctx::keyed(self, kind, raw, out);
            for sp in &mut out[before..] {
                sp.start += rs;
                sp.end += rs;
            }
            return;
        }
        let Ok(decoded) = serde_json::from_str::<String>(&s[rs - 1..re + 1]) else {
            return;
        };
        let mut tmp = Vec::new();
        keyctx::keyed(self, kind, &decoded, &mut tmp);
        if let Some(first) = tmp.into_iter().next() {
            out.push(Span {
                start: rs,
                end: re,
                detail: first.detail,
                norm: first.norm,
            });
        }
    }
}

/// Longest `key=value` value read (no form value is longer; it also keeps
/// the pass linear on text full of `=`).
const FORM_VALUE_MAX: usize = 256;

/// Shorter word prefixes of a form value tried when the whole value does
/// not read as its key's kind.
const FORM_VALUE_WORDS: usize = 8;

/// Whether `b[i..]` starts, after spaces, with `key=` (a word, then `=`).
fn next_is_form_key(b: &[u8], mut i: usize) -> bool {
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i > start && i < b.len() && b[i] == b'=' && b[start].is_ascii_alphabetic()
}

/// An AWS secret access key (40 base64 characters, mixed case, random)
/// near an access key id `s[ks..ke]`: the pair is written together
/// (`AKIA... wJalr...`, a credentials CSV row) with no label needed.
fn find_aws_secret_near(s: &str, ks: usize, ke: usize, out: &mut Vec<Span>) {
    const REACH: usize = 160;
    let b = s.as_bytes();
    let is_c = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let hi = (ke + REACH).min(b.len());
    let mut i = ks.saturating_sub(REACH);
    // not from the middle of a run
    while i > 0 && i < hi && is_c(b[i - 1]) && is_c(b[i]) {
        i += 1;
    }
    while i < hi {
        if !is_c(b[i]) {
            i += 1;
            continue;
        }
        let st = i;
        while i < b.len() && is_c(b[i]) {
            i += 1;
        }
        let v = &b[st..i];
        if v.len() == 40
            && (st >= ke || i <= ks)
            && b.get(i) != Some(&b'=')
            && v.iter().any(u8::is_ascii_uppercase)
            && v.iter().any(u8::is_ascii_lowercase)
            && v.iter()
                .any(|c| c.is_ascii_digit() || *c == b'/' || *c == b'+')
            && entropy(v) >= 4.4
        {
            push(out, st, i, Detail::SecretAws, s[st..i].to_string());
        }
    }
}

/// A value assigned to a password, secret, token or API-key name that is a
/// secret even with low entropy (`password=letmeinnow`), unless it reads as
/// a placeholder, a type, code or a path. After `secret: `, `token: ` or
/// `api_key: ` an unquoted value must also end its line ("The secret:
/// practice daily" is prose); after `password: ` it need not.
/// `key_end`: where the key ends; `vs`: where the value starts.
fn plain_secret(s: &str, key_end: usize, vs: usize, v: &str, password: bool) -> bool {
    const NOT_SECRET: &[&str] = &[
        "string",
        "str",
        "bytes",
        "boolean",
        "bool",
        "number",
        "integer",
        "int",
        "text",
        "secretstr",
        "option",
        "optional",
        "object",
        "char",
        "varchar",
        "any",
        "none",
        "null",
        "nil",
        "undefined",
        "required",
        "provided",
        "missing",
        "invalid",
        "expired",
        "incorrect",
        "revoked",
        "unknown",
        "empty",
        "reset",
        "changed",
        "updated",
        "wrong",
        "hidden",
        "masked",
        "redacted",
        "omitted",
        "removed",
        "not_set",
        "notset",
        "unset",
    ];
    let b = s.as_bytes();
    let vb = v.as_bytes();
    if vb.len() < if password { 6 } else { 8 } || is_placeholder_secret(v) {
        return false;
    }
    let l = v.to_ascii_lowercase();
    if NOT_SECRET.contains(&l.as_str())
        || vb
            .iter()
            .any(|c| matches!(c, b'(' | b')' | b'[' | b']' | b'{' | b'}'))
        || v.contains("::")
        || v.contains("->")
        || v.contains("://")
        || vb[0] == b'/'
        || vb[0] == b'~'
        || vb[0] == b'.'
    {
        return false;
    }
    // snake_case or dotted names without digits are code: password=user_password
    if vb
        .iter()
        .all(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'.')
        && vb.iter().any(|c| *c == b'_' || *c == b'.')
    {
        return false;
    }
    let ve = vs + vb.len();
    let next = b.get(ve).copied();
    if matches!(next, Some(b'<' | b'(' | b'[')) {
        return false; // Option<String>, getpass(...)
    }
    let quote = vs > 0 && matches!(b[vs - 1], b'"' | b'\'' | b'`');
    if quote && next == Some(b[vs - 1]) {
        return true;
    }
    let colon = s[key_end..vs].contains(':') && !s[key_end..vs].contains('=');
    if password || !colon {
        return true;
    }
    // "key: value" ends its line (an escaped newline reads as two spaces)
    let rest = &b[ve..];
    let ws = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    match rest.get(ws) {
        None => true,
        Some(b'\n' | b'\r' | b',' | b';' | b'}' | b'"' | b'\'') => true,
        Some(_) => ws >= 2,
    }
}

fn hex_byte(h: u8, l: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16).map(|x| x as u8);
    Some(d(h)? << 4 | d(l)?)
}

/// `%XX` escapes decoded (invalid ones kept as written), and with `plus`
/// a `+` between two letters or digits as a space (a leading `+` stays:
/// `+1 415...`); with the offset in `b` where each decoded byte starts
/// (and `b.len()` last).
fn url_decode(b: &[u8], plus: bool) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(b.len());
    let mut map = Vec::with_capacity(b.len() + 1);
    let mut i = 0;
    while i < b.len() {
        map.push(i);
        match escape_at(b, i) {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(if plus && joiner_at(b, i) { b' ' } else { b[i] });
                i += 1;
            }
        }
    }
    map.push(b.len());
    (out, map)
}

/// The byte a valid `%XX` escape at `i` stands for.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    (b[i] == b'%' && i + 2 < b.len())
        .then(|| hex_byte(b[i + 1], b[i + 2]))
        .flatten()
}

/// Whether `b[i]` is a `+` joining two letters or digits (a space in a URL
/// query's value).
fn joiner_at(b: &[u8], i: usize) -> bool {
    b[i] == b'+'
        && i > 0
        && i + 1 < b.len()
        && b[i - 1].is_ascii_alphanumeric()
        && b[i + 1].is_ascii_alphanumeric()
}

/// A form value with its URL encoding decoded ([`url_decode`]), with the
/// offset map. `None` when there is nothing to decode or the result is not
/// UTF-8.
fn form_decode(v: &str) -> Option<(String, Vec<usize>)> {
    let b = v.as_bytes();
    if !(0..b.len()).any(|i| escape_at(b, i).is_some() || joiner_at(b, i)) {
        return None;
    }
    let (out, map) = url_decode(b, true);
    String::from_utf8(out).ok().map(|d| (d, map))
}

/// `%XX` escapes decoded (invalid ones kept as written), lossy UTF-8.
fn percent_decode(b: &[u8]) -> String {
    String::from_utf8_lossy(&url_decode(b, false).0).into_owned()
}

/// The body of the JSON string whose opening quote is at `q`: (start, end)
/// of the characters between the quotes.
fn json_string_at(b: &[u8], q: usize) -> Option<(usize, usize)> {
    let mut i = q + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some((q + 1, i)),
            b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

pub(crate) fn push(out: &mut Vec<Span>, start: usize, end: usize, detail: Detail, norm: String) {
    if end > start {
        out.push(Span {
            start,
            end,
            detail,
            norm,
        });
    }
}

pub(crate) fn digits_of(s: &str) -> String {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(char::from)
        .collect()
}

pub(crate) fn norm_address(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.trim_end_matches('.').chars().flat_map(char::to_lowercase));
    }
    out
}

fn date_norm(s: &str) -> Option<String> {
    let (y, m, d) = parse_date(s)?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// Not glued to other digits through '.', ',', '-' or '/' (part of a longer
/// number, a decimal or a range).
fn isolated_number(b: &[u8], start: usize, end: usize) -> bool {
    if start > 0 {
        let p = b[start - 1];
        if p.is_ascii_alphanumeric()
            || (matches!(p, b'.' | b',' | b'-' | b'/' | b'_')
                && start >= 2
                && b[start - 2].is_ascii_digit())
        {
            return false;
        }
    }
    if end < b.len() {
        let n = b[end];
        if n.is_ascii_alphanumeric()
            || (matches!(n, b'.' | b',' | b'-' | b'/' | b'_')
                && b.get(end + 1).is_some_and(u8::is_ascii_digit))
        {
            return false;
        }
    }
    true
}

fn email_ok(s: &str, start: usize, end: usize) -> bool {
    const NOT_TLD: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "jsx", "tsx",
        "html", "htm", "txt", "json", "yaml", "yml", "toml", "lock", "exe", "dll", "wasm", "map",
        "min",
    ];
    let t = &s[start..end];
    let Some((local, domain)) = t.split_once('@') else {
        return false;
    };
    if local.ends_with('.') || local.contains("..") || domain.contains("..") {
        return false;
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    if NOT_TLD.iter().any(|x| tld.eq_ignore_ascii_case(x)) {
        return false;
    }
    // npm-style "pkg@1.2.3" cannot match; "@2x.png" filtered above
    true
}

fn deobfuscate_email(s: &str) -> String {
    let l = s.to_ascii_lowercase();
    let mut out = l.replace(['[', ']', '(', ')', '{', '}'], " ");
    out = out.replace(" at ", "@").replace(" dot ", ".");
    out.split_whitespace()
        .collect::<String>()
        .replace("at@", "@")
}

fn mac_ok(b: &[u8], start: usize, end: usize) -> bool {
    if start > 0 && matches!(b[start - 1], b':' | b'-' | b'.') {
        return false;
    }
    if end < b.len()
        && matches!(b[end], b':' | b'-' | b'.')
        && b.get(end + 1).is_some_and(u8::is_ascii_hexdigit)
    {
        return false;
    }
    true
}

/// "v1.2.3.4", "version 1.2.3.4", "pkg==1.2.3.4", "@1.2.3.4" read as versions.
fn version_context(s: &str, start: usize) -> bool {
    let b = s.as_bytes();
    if start > 0 && matches!(b[start - 1], b'v' | b'V' | b'@' | b'~' | b'^') {
        return true;
    }
    // pinned versions: pkg==1.2.3.4, >=, <=, ~=
    if start >= 2
        && b[start - 1] == b'='
        && matches!(b[start - 2], b'=' | b'>' | b'<' | b'~' | b'!')
    {
        return true;
    }
    let from = start.saturating_sub(24);
    let mut buf = [0u8; 24];
    let w = &b[from..start];
    for (d, c) in buf.iter_mut().zip(w) {
        *d = c.to_ascii_lowercase();
    }
    let w = std::str::from_utf8(&buf[..w.len()]).unwrap_or("");
    let w = w.trim_end_matches([' ', ':', '=', '#', '"', '\'', '(']);
    [
        "version", "ver", "ver.", "release", "build", "firmware", "fw", "rev", "revision", "sdk",
        "patch", "semver", "v", "to", "from",
    ]
    .iter()
    .any(|k| {
        w.ends_with(k)
            && (w.len() == k.len() || !w.as_bytes()[w.len() - k.len() - 1].is_ascii_alphanumeric())
            && (*k != "to" && *k != "from" || w.contains("version") || w.contains("upgrade"))
    })
}

#[derive(Clone, Copy, PartialEq)]
enum PhoneShape {
    Intl,
    /// International with the `00` prefix: `0044 20 7946 0958`.
    Intl00,
    Nanp,
    Zero,
    Context,
}

/// Validates a phone candidate; returns its digits.
fn phone_ok(s: &str, start: usize, end: usize, shape: PhoneShape) -> Option<String> {
    let b = s.as_bytes();
    let t = &s[start..end];
    let mut digits = digits_of(t);
    // the 00 international prefix is dialling, not number: 0044... = +44...
    if matches!(shape, PhoneShape::Intl00 | PhoneShape::Context)
        && digits.starts_with("00")
        && digits.as_bytes().get(2).is_some_and(|&c| c != b'0')
    {
        digits.drain(..2);
    }
    let n = digits.len();
    let range = match shape {
        PhoneShape::Intl | PhoneShape::Intl00 => 8..=15,
        PhoneShape::Nanp => 10..=11,
        PhoneShape::Zero => 9..=12,
        PhoneShape::Context => 7..=15,
    };
    if !range.contains(&n) {
        return None;
    }
    if start > 0 {
        let p = b[start - 1];
        // "call_+14155552671": an id may glue a '+' number on with '_'
        let glued_intl = p == b'_' && shape == PhoneShape::Intl;
        if p.is_ascii_alphanumeric()
            || matches!(p, b'.' | b'/' | b'#' | b'$' | b'_' | b'=' | b'@' | b'%') && !glued_intl
        {
            return None;
        }
        if p == b'-' && shape != PhoneShape::Context {
            return None;
        }
        if s[..start].ends_with(['€', '£', '¥']) {
            return None;
        }
    }
    if end < b.len() {
        let nx = b[end];
        if nx.is_ascii_alphanumeric() || nx == b'_' {
            return None;
        }
        if matches!(nx, b'.' | b'-' | b'/' | b',' | b':')
            && b.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            return None;
        }
    }
    let seps: Vec<u8> = t
        .bytes()
        .filter(|c| matches!(c, b' ' | b'-' | b'.'))
        .collect();
    let has_dot = seps.contains(&b'.');
    if shape != PhoneShape::Context {
        if has_dot && seps.iter().any(|&c| c != b'.') {
            return None;
        }
        if matches!(shape, PhoneShape::Zero | PhoneShape::Intl00)
            && seps.is_empty()
            && !t.contains('(')
        {
            return None; // a bare 0-number: only with a phone word before it
        }
        // dates: 2024-01-15, 15.01.2024, 01-02-2024 10...
        let groups: Vec<usize> = t.split([' ', '-', '.']).map(str::len).collect();
        if matches!(
            groups.as_slice(),
            [4, 2, 2] | [2, 2, 4] | [4, 2, 2, ..] | [2, 2, 4, ..] | [3, 2, 4]
        ) {
            return None;
        }
        if has_dot && (shape == PhoneShape::Zero) && seps.len() < 2 {
            return None;
        }
    }
    // order numbers, tickets, versions written like phone numbers
    let from = start.saturating_sub(28);
    let mut from = from;
    while !s.is_char_boundary(from) {
        from += 1;
    }
    // back to the start of the word the window cuts, so that a long URL or
    // address keeps its `://` or `@` (at most 200 bytes further)
    let floor = from.saturating_sub(200);
    while from > floor && !b[from - 1].is_ascii_whitespace() {
        from -= 1;
    }
    while !s.is_char_boundary(from) {
        from += 1;
    }
    let look = s[from..start].to_ascii_lowercase();
    const PHONE_WORDS: &[&str] = &[
        "phone", "tel", "call", "mobile", "cell", "fax", "contact", "reach", "text", "sms",
        "whatsapp", "dial", "ring",
    ];
    const NOT_PHONE: &[&str] = &[
        "order",
        "invoice",
        "ref",
        "tracking",
        "ticket",
        "case",
        "acct",
        "account",
        "sku",
        "serial",
        "transaction",
        "confirmation",
        "id",
        "version",
        "build",
        "isbn",
        "patent",
        "po",
        "receipt",
        "booking",
        "policy",
        "claim",
        "part",
        "model",
        "item",
        "reference",
    ];
    let hash_near = look.trim_end().ends_with('#') || look.trim_end().ends_with("#:");
    // Words inside an e-mail address or URL are no context:
    // "jo+orders@acme.com or 512-208-2695" is a phone, and so is the number
    // after "shop.example.com/orders/x".
    let is_url = |t: &str| {
        t.contains("://")
            || t.find('/')
                .is_some_and(|i| t[..i].contains('.') && !t[..i].starts_with('.'))
    };
    let words: String = look
        .split_whitespace()
        .filter(|t| !t.contains('@') && !is_url(t))
        .collect::<Vec<_>>()
        .join(" ");
    if (hash_near || NOT_PHONE.iter().any(|w| has_word(&words, w)))
        && !PHONE_WORDS.iter().any(|w| has_word(&look, w))
        && !under_json_id_key(&look)
    {
        return None;
    }
    Some(digits)
}

/// The text before a value ends with the JSON key `"id"` (`{"id": "`, or
/// `\"id\": \"` in escaped JSON): the value is the whole string, and a
/// phone-shaped one is a phone, unlike "order id 555-123-4567" in prose.
fn under_json_id_key(look: &str) -> bool {
    let mut tail = [0u8; 6];
    let mut n = 0;
    for c in look.bytes().rev().filter(|&c| c != b' ').take(6) {
        tail[n] = c;
        n += 1;
    }
    let tail = &tail[..n];
    tail.starts_with(b"\":\"di\"") || tail.starts_with(b":\"di\"")
}

/// `w` occurs in `hay` at the start of a word.
fn has_word(hay: &str, w: &str) -> bool {
    let hb = hay.as_bytes();
    memmem::find_iter(hb, w.as_bytes()).any(|i| {
        let left = i == 0 || !hb[i - 1].is_ascii_alphanumeric();
        let e = i + w.len();
        let right = w.len() > 3 || e >= hb.len() || !hb[e].is_ascii_alphabetic();
        left && right
    })
}

/// Type names that follow `user_id:` in code, not ids.
fn is_type_name(v: &str) -> bool {
    matches!(
        v,
        "u8" | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "f32"
            | "f64"
            | "int32"
            | "int64"
            | "uint32"
            | "uint64"
            | "Int32"
            | "Int64"
            | "float64"
            | "bigint"
    )
}

/// "my password is X": X counts unless it is an ordinary word ("is
/// required", "is incorrect", "was reset").
fn looks_secret_said(v: &str) -> bool {
    let b = v.as_bytes();
    if is_placeholder_secret(v)
        || b.iter()
            .any(|c| matches!(c, b'(' | b')' | b'[' | b']' | b'{' | b'}'))
    {
        return false;
    }
    // plain lower-case words are prose, anything with digits, capitals or symbols mixed in is a secret
    !(b.iter().all(u8::is_ascii_lowercase)) && char_classes(b) >= 2
}

/// An address span, normalised.
fn push_address(out: &mut Vec<Span>, s: &str, start: usize, end: usize) {
    push(
        out,
        start,
        end,
        Detail::Address,
        norm_address(&s[start..end]),
    );
}

/// Whether byte `i` of `s` starts a word (no letter or digit just before).
fn at_word_start(s: &str, i: usize) -> bool {
    i == 0
        || !s[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
}
