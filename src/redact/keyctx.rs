//! JSON key context: in tool-call arguments, metadata and JSON text, the
//! object key says what a string value is (`"customer_name"` -> a person,
//! `"user_id"` -> a user id, `"client_ip"` -> an IP). Values under such keys
//! are checked with looser rules than free text, since the key is strong
//! evidence.

use std::net::IpAddr;

use super::detect::{digits_of, norm_address, push, Detectors, Span};
use super::kinds::Detail;
use super::names::normalise_name;
use super::validate::{is_placeholder_secret, parse_date};

/// Pseudo-key under which a message's `name` (the participant) is checked.
pub(crate) const MESSAGE_NAME_KEY: &str = "\u{1}message.name";

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum KeyKind {
    /// A chat message's `name`: a person's name, or else a handle (user id).
    Participant,
    /// A key that names a person (`full_name`, `attendees`, `passenger`):
    /// any capitalised name-shaped value.
    Person,
    /// A key that usually names a person but may name a team or company
    /// (`assignee`, `author`, `owner`): a listed given name, or several
    /// capitalised words none of which is a common non-name word.
    PersonSoft,
    /// The plain key `name`: a person only when the value reads as one.
    Name,
    UserId,
    Ip,
    Email,
    Phone,
    Dob,
    Address,
    Postcode,
    Secret {
        password: bool,
    },
    Ssn,
    Card,
    Iban,
    /// A key that names a place (`city`, `destination_airport`, `origin`):
    /// a value that is a gazetteer place is left alone; any other value is
    /// checked as free text.
    Place,
}

const PLACE_KEYS: &[&str] = &[
    "town",
    "origin",
    "location",
    "place",
    "country",
    "region",
    "venue",
    "from",
    "to",
    "departure",
    "arrival",
    "destinationcity",
    "destination",
    "dest",
    "locality",
];

impl KeyKind {
    /// Whether values under this key are people (names, participants).
    pub(crate) fn is_person(self) -> bool {
        matches!(
            self,
            KeyKind::Person | KeyKind::PersonSoft | KeyKind::Name | KeyKind::Participant
        )
    }

    /// Numbers under these keys are identifiers and get redacted too.
    pub fn takes_numbers(self) -> bool {
        matches!(
            self,
            KeyKind::UserId
                | KeyKind::Phone
                | KeyKind::Ssn
                | KeyKind::Card
                | KeyKind::Postcode
                | KeyKind::Dob
        )
    }
}

const PERSON_KEYS: &[&str] = &[
    "fullname",
    "firstname",
    "lastname",
    "givenname",
    "familyname",
    "surname",
    "middlename",
    "maidenname",
    "contactperson",
    "attendee",
    "attendees",
    "passenger",
    "passengers",
    "guest",
    "guests",
    "patient",
    "traveler",
    "travelers",
    "traveller",
    "travellers",
    "cardholder",
    "accountholder",
    "beneficiary",
    "participant",
    "participants",
    "invitee",
    "invitees",
    "speaker",
    "speakers",
    "spouse",
    "parent",
    "guardian",
    "emergencycontact",
    "signer",
    "signatory",
    "witness",
    "applicant",
    "candidate",
    "student",
    "employee",
    "person",
    "people",
];

const PERSON_SOFT_KEYS: &[&str] = &[
    "contact",
    "assignee",
    "assignees",
    "author",
    "authors",
    "reviewer",
    "reviewers",
    "reporter",
    "requester",
    "requestor",
    "recipient",
    "recipients",
    "sender",
    "customer",
    "client",
    "driver",
    "tenant",
    "landlord",
    "buyer",
    "seller",
    "doctor",
    "physician",
    "nurse",
    "teacher",
    "manager",
    "organizer",
    "organiser",
    "owner",
    "member",
    "members",
    "to",
    "cc",
    "bcc",
    "poc",
    "pointofcontact",
    "salesrep",
    "rep",
    "agent",
    "host",
    "from",
];

const PERSON_NAME_PREFIXES: &[&str] = &[
    "first",
    "last",
    "full",
    "given",
    "family",
    "middle",
    "maiden",
    "legal",
    "display",
    "customer",
    "contact",
    "client",
    "patient",
    "employee",
    "guest",
    "passenger",
    "recipient",
    "sender",
    "owner",
    "author",
    "holder",
    "cardholder",
    "accountholder",
    "student",
    "teacher",
    "doctor",
    "person",
    "member",
    "traveler",
    "traveller",
    "applicant",
    "candidate",
    "beneficiary",
    "billing",
    "shipping",
    "parent",
    "spouse",
    "reviewer",
    "assignee",
    "requester",
    "reporter",
    "driver",
    "buyer",
    "seller",
    "tenant",
    "landlord",
    "agent",
    "signer",
    "witness",
    "attendee",
    "participant",
    "speaker",
    "contactperson",
    "emergencycontact",
    "real",
    "preferred",
    "nick",
    "mother",
    "father",
    "manager",
    "caller",
    "visitor",
    "sales rep",
    "account",
    "billto",
    "shipto",
];

const USER_ID_KEYS: &[&str] = &[
    "userid",
    "user",
    "enduser",
    "enduserid",
    "customerid",
    "accountid",
    "uid",
    "memberid",
    "username",
    "userhandle",
    "login",
    "loginid",
    "externaluserid",
    "externalid",
    "clientuserid",
    "subscriberid",
    "patientid",
    "employeeid",
    "personid",
    "contactid",
    "studentid",
    "guestid",
    "passengerid",
    "travelerid",
    "profileid",
    "handle",
    "screenname",
    "openid",
    "sessionuser",
    "actor",
    "actorid",
    "ownerid",
    "authorid",
    "createdby",
    "updatedby",
    "requesterid",
    "assigneeid",
    "userkey",
    "userhash",
    "anonymousid",
    "distinctid",
    "deviceid",
    "installationid",
];

const IP_KEYS: &[&str] = &[
    "ip",
    "ipaddress",
    "ipaddr",
    "ipv4",
    "ipv6",
    "clientip",
    "userip",
    "remoteip",
    "remoteaddr",
    "remoteaddress",
    "sourceip",
    "srcip",
    "dstip",
    "destip",
    "hostip",
    "serverip",
    "xforwardedfor",
    "forwardedfor",
    "xrealip",
    "realip",
    "clientaddress",
    "peerip",
    "originip",
];

const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "passcode",
    "pin",
    "secret",
    "clientsecret",
    "apikey",
    "apisecret",
    "apitoken",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "token",
    "sessiontoken",
    "bearertoken",
    "privatekey",
    "secretkey",
    "secretaccesskey",
    "accesskey",
    "accesskeyid",
    "authorization",
    "auth",
    "credentials",
    "credential",
    "webhooksecret",
    "signingsecret",
    "xapikey",
    "cookie",
    "sessionid",
    "sessioncookie",
    "otp",
    "mfacode",
    "totp",
];

/// The kind of value a JSON key announces, if any. Keys repeat in every
/// call ("role", "content", "type"), so answers are remembered per thread
/// (a bounded table; the answer depends on the key alone).
pub(crate) fn classify_key(key: &str) -> Option<KeyKind> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    type Table = HashMap<Box<str>, Option<KeyKind>, foldhash::fast::FixedState>;
    thread_local! {
        static SEEN: RefCell<Table> = RefCell::new(Table::default());
    }
    if key.len() > 64 {
        return classify_key_uncached(key);
    }
    if let Some(k) = SEEN.with(|t| t.borrow().get(key).copied()) {
        return k;
    }
    let k = classify_key_uncached(key);
    SEEN.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() >= 4096 {
            t.clear();
        }
        t.insert(key.into(), k);
    });
    k
}

fn classify_key_uncached(key: &str) -> Option<KeyKind> {
    if key == MESSAGE_NAME_KEY {
        return Some(KeyKind::Participant);
    }
    if key.is_empty() || key.len() > 48 {
        return None;
    }
    let mut buf = [0u8; 48];
    let mut n = 0;
    for c in key.bytes() {
        if !matches!(c, b'_' | b'-' | b'.' | b' ' | b'$' | b'@') {
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
    }
    let k = std::str::from_utf8(&buf[..n]).ok()?;
    let has = |list: &[&str]| list.contains(&k);
    if k == "name" {
        return Some(KeyKind::Name);
    }
    if has(USER_ID_KEYS) {
        return Some(KeyKind::UserId);
    }
    if has(PERSON_KEYS) {
        return Some(KeyKind::Person);
    }
    if has(PERSON_SOFT_KEYS) {
        return Some(KeyKind::PersonSoft);
    }
    if let Some(prefix) = k.strip_suffix("name") {
        if PERSON_NAME_PREFIXES.contains(&prefix) {
            return Some(KeyKind::Person);
        }
    }
    if has(IP_KEYS)
        || key.ends_with("_ip")
        || key.ends_with("-ip")
        || (key.len() > 2 && key.ends_with("Ip"))
    {
        return Some(KeyKind::Ip);
    }
    if k == "email"
        || k == "mail"
        || k == "replyto"
        || k.ends_with("email")
        || k.ends_with("emailaddress")
    {
        return Some(KeyKind::Email);
    }
    if matches!(
        k,
        "phone"
            | "tel"
            | "telephone"
            | "mobile"
            | "cell"
            | "cellphone"
            | "fax"
            | "whatsapp"
            | "msisdn"
            | "contactnumber"
            | "phoneno"
    ) || k.ends_with("phone")
        || k.ends_with("phonenumber")
        || k.ends_with("mobilenumber")
    {
        return Some(KeyKind::Phone);
    }
    if matches!(
        k,
        "dob" | "dateofbirth" | "birthdate" | "birthday" | "birthdt" | "bdate"
    ) {
        return Some(KeyKind::Dob);
    }
    if matches!(
        k,
        "address"
            | "streetaddress"
            | "street"
            | "addressline"
            | "addressline1"
            | "addressline2"
            | "address1"
            | "address2"
            | "homeaddress"
            | "shippingaddress"
            | "billingaddress"
            | "mailingaddress"
            | "residentialaddress"
            | "fulladdress"
            | "postaladdress"
            | "deliveryaddress"
            | "residence"
    ) {
        return Some(KeyKind::Address);
    }
    if matches!(k, "zip" | "zipcode" | "postcode" | "postalcode" | "plz") {
        return Some(KeyKind::Postcode);
    }
    if has(SECRET_KEYS)
        || k.ends_with("apikey")
        || k.ends_with("secret")
        || k.ends_with("password")
        || k.ends_with("token") && !k.ends_with("maxtoken")
    {
        let password = k.contains("pass") || k == "pwd" || k == "pin";
        return Some(KeyKind::Secret { password });
    }
    if matches!(
        k,
        "ssn" | "socialsecuritynumber" | "socialsecurity" | "ssnumber"
    ) {
        return Some(KeyKind::Ssn);
    }
    if matches!(
        k,
        "cardnumber" | "creditcard" | "creditcardnumber" | "ccnumber" | "cc" | "pan" | "cardno"
    ) {
        return Some(KeyKind::Card);
    }
    if k == "iban" {
        return Some(KeyKind::Iban);
    }
    if has(PLACE_KEYS) || k.ends_with("city") || k.ends_with("airport") {
        return Some(KeyKind::Place);
    }
    None
}

pub(crate) fn is_placeholder_id(v: &str) -> bool {
    let l = v.trim().to_ascii_lowercase();
    matches!(
        l.as_str(),
        "" | "-"
            | "null"
            | "none"
            | "nil"
            | "n/a"
            | "na"
            | "unknown"
            | "anonymous"
            | "anon"
            | "string"
            | "system"
            | "user"
            | "default"
            | "test"
            | "example"
            | "guest"
            | "admin"
            | "undefined"
            | "true"
            | "false"
            | "0"
            | "assistant"
            | "bot"
            | "ai"
            | "model"
            | "tool"
            | "function"
            | "human"
    ) || l.starts_with('{')
        || l.starts_with('<')
        || l.starts_with("${")
}

/// Checks `value` (a whole JSON string, or the body of one in text) under a
/// key of kind `kind`. Pushes spans relative to `value`; returns true when
/// the key context settled the value (nothing more to look for).
pub(crate) fn keyed(det: &Detectors, kind: KeyKind, value: &str, out: &mut Vec<Span>) -> bool {
    let lead = value.len() - value.trim_start().len();
    let v = value.trim();
    if v.is_empty() {
        return true;
    }
    let (s, e) = (lead, lead + v.len());
    match kind {
        KeyKind::Participant => keyed_participant(det, value, v, s, e, out),
        KeyKind::Person | KeyKind::PersonSoft | KeyKind::Name => {
            keyed_people(det, kind, value, v, s, out)
        }
        KeyKind::UserId => keyed_user_id(det, v, s, e, out),
        KeyKind::Ip => keyed_ip(v, s, e, out),
        KeyKind::Email => keyed_email(v, s, e, out),
        KeyKind::Phone => keyed_phone(v, s, e, out),
        KeyKind::Dob => keyed_dob(v, s, e, out),
        KeyKind::Address => keyed_address(v, s, e, out),
        KeyKind::Postcode => keyed_postcode(v, s, e, out),
        KeyKind::Secret { password } => keyed_secret(password, v, s, e, out),
        KeyKind::Ssn => keyed_ssn(v, s, e, out),
        KeyKind::Card => keyed_card(v, s, e, out),
        KeyKind::Iban => keyed_iban(v, s, e, out),
        KeyKind::Place => super::places::Places::get().contains(v),
    }
}

/// A chat message's `name`: a person's name, else a handle.
fn keyed_participant(
    det: &Detectors,
    value: &str,
    v: &str,
    s: usize,
    e: usize,
    out: &mut Vec<Span>,
) -> bool {
    if keyed(det, KeyKind::PersonSoft, value, out) {
        return true;
    }
    let handle = v.len() <= 64
        && !v.contains(char::is_whitespace)
        && v.chars().all(|c| c.is_alphanumeric() || "_-.@".contains(c));
    if handle && !is_placeholder_id(v) {
        push(out, s, e, Detail::UserId, v.to_string());
        return true;
    }
    false
}

/// One or more name-shaped people (how strict depends on the key).
fn keyed_people(
    det: &Detectors,
    kind: KeyKind,
    value: &str,
    v: &str,
    s: usize,
    out: &mut Vec<Span>,
) -> bool {
    let parts = split_people(v);
    if parts.is_empty() {
        return false;
    }
    let mut found = Vec::new();
    for (ps, pe) in parts {
        let p = &v[ps..pe];
        if !name_shaped(det, p, kind) {
            return false;
        }
        found.push((s + ps, s + pe));
    }
    for (a, b) in found {
        push(out, a, b, Detail::Person, normalise_name(&value[a..b]));
    }
    true
}

/// An e-mail address, else any short token without spaces.
fn keyed_user_id(det: &Detectors, v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    if det
        .email
        .find(v)
        .is_some_and(|m| m.start() == 0 && m.end() == v.len())
    {
        push(out, s, e, Detail::Email, v.to_lowercase());
        return true;
    }
    if v.len() <= 128 && !v.contains(char::is_whitespace) && !is_placeholder_id(v) {
        push(out, s, e, Detail::UserId, v.to_string());
        return true;
    }
    false
}

/// An IPv4/IPv6 address, with or without a port.
fn keyed_ip(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let addr = v.parse::<IpAddr>().ok().or_else(|| {
        // "1.2.3.4:443"
        v.rsplit_once(':')
            .and_then(|(h, p)| p.parse::<u16>().ok().and(h.parse::<IpAddr>().ok()))
    });
    match addr {
        Some(ip) => {
            push(out, s, e, Detail::IpAddress, ip.to_string());
            true
        }
        None => false,
    }
}

/// Anything shaped local@domain.
fn keyed_email(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let ok = v
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !v.contains(char::is_whitespace);
    if ok {
        push(out, s, e, Detail::Email, v.to_lowercase());
    }
    ok
}

/// 6 to 15 digits in phone punctuation (not a date written with
/// separators: `fax=2024-01-15`; eight bare digits stay a phone).
fn keyed_phone(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let digits = digits_of(v);
    let date = v.contains(['-', '/', '.']) && parse_date(v).is_some();
    let ok = (6..=15).contains(&digits.len())
        && !date
        && v.chars()
            .all(|c| c.is_ascii_digit() || " +-().x/ext".contains(c) || c == 'E' || c == 'X');
    if ok {
        push(out, s, e, Detail::Phone, digits);
    }
    ok
}

/// A date (a timestamp keeps its date).
fn keyed_dob(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let head = if v.len() > 10 && v.as_bytes()[10] == b'T' {
        &v[..10]
    } else {
        v
    };
    match parse_date(head) {
        Some((y, m, d)) => {
            push(
                out,
                s,
                e,
                Detail::DateOfBirth,
                format!("{y:04}-{m:02}-{d:02}"),
            );
            true
        }
        None => false,
    }
}

/// A street address: letters and a number, or two words. A value that
/// starts as a machine's address is not one: a hex number
/// (`0x7ffe5c3a in worker`), a `host:port` (`localhost:8080`), an IP
/// address. Street shapes with `:`, `.`, `/` or `_` stay addresses
/// (`Attn:Jane Roe`, `Hauptstr.5`, `ul.Marszalkowska/12`).
fn keyed_address(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let words = v.split_whitespace().count();
    let first = v
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches([',', ';', '.']);
    let hex = first
        .strip_prefix("0x")
        .or_else(|| first.strip_prefix("0X"))
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
    let host_port = first.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && (1..=5).contains(&p.len())
            && p.chars().all(|c| c.is_ascii_digit())
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    });
    let machine = hex || host_port || first.parse::<IpAddr>().is_ok();
    let ok = v.len() >= 5
        && !machine
        && v.chars().any(char::is_alphabetic)
        && (v.chars().any(|c| c.is_ascii_digit()) || words >= 2);
    if ok {
        push(out, s, e, Detail::Address, norm_address(v));
    }
    ok
}

/// A short alphanumeric code with a digit. One word with a run of four
/// letters is not one (`zip=archive12` is a file; `SW1A1AA`, `K1A0B1`
/// have short runs, and `Oslo 0150`, `FIQQ 1ZZ` are two words).
fn keyed_postcode(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let letter_run = v
        .split(|c: char| !c.is_ascii_alphabetic())
        .map(str::len)
        .max()
        .unwrap_or(0);
    let file_like = !v.contains(' ') && letter_run >= 4;
    let ok = (3..=10).contains(&v.len())
        && !file_like
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
        && v.chars().any(|c| c.is_ascii_digit());
    if ok {
        push(out, s, e, Detail::Address, norm_address(v));
    }
    ok
}

/// The value after an auth scheme; masked values count as handled.
fn keyed_secret(password: bool, v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let mut off = 0;
    for p in ["Bearer ", "bearer ", "Basic ", "basic ", "Token ", "token "] {
        if let Some(rest) = v.strip_prefix(p) {
            off = v.len() - rest.len();
            break;
        }
    }
    let secret = v[off..].trim();
    let min = if password { 4 } else { 8 };
    if secret.len() < min || is_placeholder_secret(secret) || secret.contains(char::is_whitespace) {
        return secret
            .bytes()
            .all(|c| c == b'*' || c == b'x' || c == b'X' || c == b'.');
    }
    push(out, s + off, e, Detail::SecretGeneric, secret.to_string());
    true
}

/// Nine digits.
fn keyed_ssn(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let digits = digits_of(v);
    let ok = digits.len() == 9
        && v.chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == ' ');
    if ok {
        push(out, s, e, Detail::Ssn, digits);
    }
    ok
}

/// 12 to 19 digits.
fn keyed_card(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let digits = digits_of(v);
    let ok = (12..=19).contains(&digits.len())
        && v.chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == ' ');
    if ok {
        push(out, s, e, Detail::CreditCard, digits);
    }
    ok
}

/// Country code, check digits, then alphanumerics.
fn keyed_iban(v: &str, s: usize, e: usize, out: &mut Vec<Span>) -> bool {
    let compact: String = v
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let cb = compact.as_bytes();
    let ok = (15..=34).contains(&cb.len())
        && cb[..2].iter().all(u8::is_ascii_alphabetic)
        && cb[2..4].iter().all(u8::is_ascii_digit)
        && cb.iter().all(u8::is_ascii_alphanumeric);
    if ok {
        push(out, s, e, Detail::Iban, compact);
    }
    ok
}

/// Splits "Alice Johnson, Bob Lee and Priya" into its people (byte ranges).
fn split_people(v: &str) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let b = v.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let push_part = |a: usize, z: usize, parts: &mut Vec<(usize, usize)>| {
        let seg = &v[a..z];
        let l = seg.len() - seg.trim_start().len();
        let t = seg.trim();
        if !t.is_empty() {
            parts.push((a + l, a + l + t.len()));
        }
    };
    while i < b.len() {
        let sep = if matches!(b[i], b',' | b';' | b'&' | b'/' | b'\n') {
            1
        } else if b[i..].starts_with(b" and ") {
            5
        } else {
            0
        };
        if sep > 0 {
            push_part(start, i, &mut parts);
            i += sep;
            start = i;
        } else {
            i += 1;
        }
    }
    push_part(start, b.len(), &mut parts);
    parts
}

/// A word written as a name: an upper-case letter, then 1-19 lower-case
/// letters (inner hyphens and apostrophes allowed), and not ending as
/// English nouns and product words do ("Migration", "Dashboard").
fn name_word_shape(w: &str) -> bool {
    let mut cs = w.chars();
    let Some(c0) = cs.next() else {
        return false;
    };
    let n = w.chars().count();
    if !c0.is_uppercase() || !(2..=20).contains(&n) {
        return false;
    }
    let mut prev_sep = false;
    for c in cs {
        if c == '-' || c == '\'' || c == '\u{2019}' {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else if c.is_lowercase() || (prev_sep && c.is_uppercase()) {
            prev_sep = false;
        } else {
            return false;
        }
    }
    !prev_sep && !super::names::thing_ending(w)
}

/// Does `p` read as a person's name? Letters, spaces, apostrophes, hyphens
/// and dots only; 1-5 words. Under a [`KeyKind::Person`] key any
/// capitalised name counts; [`KeyKind::PersonSoft`] also rejects team and
/// company words; the plain key `name` (products, places, tools too) needs
/// a listed given name or surname.
fn name_shaped(det: &Detectors, p: &str, kind: KeyKind) -> bool {
    if p.len() < 2 || p.len() > 80 {
        return false;
    }
    if !p
        .chars()
        .all(|c| c.is_alphabetic() || matches!(c, ' ' | '\'' | '-' | '.' | '\u{2019}'))
    {
        return false;
    }
    let words: Vec<&str> = p.split_whitespace().collect();
    if words.is_empty() || words.len() > 5 {
        return false;
    }
    if !words
        .iter()
        .all(|w| w.chars().next().is_some_and(char::is_alphabetic))
    {
        return false;
    }
    let names = &det.names;
    let capitalised = |w: &&str| w.chars().next().is_some_and(char::is_uppercase);
    const PARTICLES: &[&str] = &[
        "van", "von", "de", "der", "den", "del", "della", "di", "da", "dos", "das", "du", "la",
        "le", "bin", "al",
    ];
    let all_cap = words
        .iter()
        .all(|w| capitalised(w) || PARTICLES.contains(w));
    let all_lower = words.iter().all(|w| w.chars().all(|c| !c.is_uppercase()));
    if words.iter().any(|w| {
        let l = w.to_ascii_lowercase();
        matches!(
            l.as_str(),
            "unknown"
                | "anonymous"
                | "none"
                | "null"
                | "string"
                | "test"
                | "user"
                | "customer"
                | "admin"
                | "example"
                | "tbd"
                | "unassigned"
                | "nobody"
        )
    }) {
        return false;
    }
    let no_stop = || {
        words
            .iter()
            .all(|w| !names.is_stop(w.trim_end_matches('.')))
    };
    match kind {
        KeyKind::Person => {
            (all_cap && (words.len() > 1 || no_stop()))
                || (all_lower && names.is_known_name_word(words[0]))
        }
        KeyKind::PersonSoft => {
            if all_lower {
                return names.is_known_name_word(words[0]) && no_stop();
            }
            all_cap
                && if words.len() == 1 {
                    names.is_known_first(words[0])
                } else {
                    no_stop() && !words.iter().any(|w| names.is_org_word(w))
                }
        }
        _ => {
            if !all_cap || words.len() > 4 {
                return false;
            }
            if words.len() == 1 {
                return names.is_known_first(words[0]);
            }
            if !no_stop() {
                return false;
            }
            // A listed name (not also a common word or a place) first or
            // last: "Maria Gonzalez", not "Harvest Moon" or "Beef Wellington".
            let places = super::places::Places::get();
            let evidence = |w: &str| {
                names.is_plain_name_word(w) && !places.contains(w) && !super::names::thing_ending(w)
            };
            if (evidence(words[0]) || evidence(words[words.len() - 1]))
                && !words.iter().any(|w| names.is_org_word(w))
            {
                return true;
            }
            // Two or three unlisted words shaped like a name, one of them a
            // surname by its ending ("Ivana Lewandowska"), none an
            // organisation word, the whole not a place. Shape alone is not
            // enough here: projects, products, recipes and pets are named
            // the same way ("Apollo Migration", "Beef Wellington").
            // Or two or three words none of which is English, a place or
            // an organisation word ("Folasade Achebe").
            words.len() <= 3
                && words
                    .iter()
                    .all(|w| name_word_shape(w) && !names.is_org_word(w))
                && (words.iter().any(|w| names.has_surname_ending(w))
                    || (words.len() >= 2 && words.iter().all(|w| names.is_foreign_name_word(w))))
                && !super::places::Places::get().contains(p)
        }
    }
}
