//! Synthetic PII, secrets and look-alikes for `slmforge synth`: names,
//! emails, phones, Luhn-valid card numbers, mod-97-valid IBANs, addresses,
//! IPs, API keys, JWTs, dates of birth, and values a redactor must keep
//! (Luhn-failing 16-digit order numbers, invoice numbers, versions).
//! Every value is drawn from the caller's seeded RNG.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The RNG every generator of the synth module draws from.
pub type R = ChaCha8Rng;

/// Picks one element of a non-empty slice.
pub fn pick<'a, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Picks one string of a non-empty list (returns the string, not a reference to it).
pub fn pick_str<'a>(rng: &mut R, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// `true` with probability `p`.
pub fn chance(rng: &mut R, p: f64) -> bool {
    rng.random_bool(p.clamp(0.0, 1.0))
}

pub const FIRST_NAMES: &[&str] = &[
    "Maria",
    "James",
    "Aisha",
    "Tom",
    "Priya",
    "Lukas",
    "Sofia",
    "Daniel",
    "Mei",
    "Omar",
    "Hannah",
    "Carlos",
    "Yuki",
    "Fatima",
    "Liam",
    "Chloé",
    "Noah",
    "Zoë",
    "Ethan",
    "Ingrid",
    "Mateo",
    "Olivia",
    "Raj",
    "Elena",
    "Kwame",
    "Sarah",
    "David",
    "Anna",
    "Jonas",
    "Leila",
    "Marcus",
    "Nina",
    "Pedro",
    "Grace",
    "Henrik",
    "Amara",
    "Ben",
    "Clara",
    "Diego",
    "Emma",
    "Felix",
    "Hiro",
    "Isabel",
    "Jamal",
    "Katarzyna",
    "Leo",
    "Malik",
    "Nora",
    "Oscar",
    "Paula",
    "Quinn",
    "Rosa",
    "Samuel",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zara",
    "René",
    "Björn",
    "Dana",
    "Kofi",
];

pub const LAST_NAMES: &[&str] = &[
    "Lopez",
    "Becker",
    "Khan",
    "Nguyen",
    "Patel",
    "Schmidt",
    "Rossi",
    "Kim",
    "Chen",
    "Haddad",
    "Müller",
    "García",
    "Tanaka",
    "Okafor",
    "Johansson",
    "Dubois",
    "Novak",
    "Silva",
    "Murphy",
    "Kowalski",
    "Andersen",
    "Fischer",
    "Costa",
    "Ivanova",
    "Mensah",
    "Sato",
    "Walsh",
    "Hughes",
    "Moreau",
    "Yilmaz",
    "Larsen",
    "Brennan",
    "Ortiz",
    "Fernández",
    "Petrov",
    "Weber",
    "Gupta",
    "Adeyemi",
    "Lindqvist",
    "O'Brien",
    "Santos",
    "Wójcik",
    "Bauer",
    "Reyes",
    "Cohen",
    "Takahashi",
    "Svensson",
    "Jensen",
    "Romano",
    "Hoffmann",
    "Carter",
    "Dang",
    "Alvarez",
    "Nakamura",
    "Popescu",
];

const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "icloud.com",
    "hotmail.com",
    "gmx.de",
];

/// Company names with the e-mail domain their staff use.
pub const COMPANIES: &[(&str, &str)] = &[
    ("Acme Corp", "acme-corp.com"),
    ("Globex", "globex.net"),
    ("Initech", "initech.co.uk"),
    ("Umbrella Health", "umbrella-health.org"),
    ("Contoso", "contoso.com"),
    ("Fabrikam", "fabrikam.de"),
    ("Northwind Traders", "northwind.io"),
    ("Tailspin Toys", "tailspintoys.com"),
    ("Wingtip Partners", "wingtip.fr"),
    ("Blue Yonder Airlines", "blueyonder.aero"),
    ("Litware", "litware.ai"),
    ("Adventure Works", "adventure-works.com"),
    ("Proseware", "proseware.nl"),
    ("Lamna Healthcare", "lamna.health"),
    ("Coho Winery", "cohowinery.com"),
    ("Alpine Ski House", "alpineskihouse.ch"),
    ("Bellows College", "bellows.edu"),
    ("Trey Research", "treyresearch.net"),
];

/// A person with display name and e-mail address.
#[derive(Clone, Debug)]
pub struct Person {
    pub first: String,
    pub last: String,
    pub email: String,
}

impl Person {
    pub fn full(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

/// ASCII fold of a name for e-mail local parts.
pub fn fold(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let m = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'í' | 'ì' | 'î' | 'ï' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => "o",
            'ú' | 'ù' | 'û' | 'ü' => "u",
            'ç' => "c",
            'ñ' => "n",
            'ß' => "ss",
            'ł' => "l",
            '\'' | ' ' => "",
            c if c.is_ascii_alphanumeric() => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            _ => "",
        };
        out.push_str(m);
    }
    out
}

/// An e-mail address for a name at a domain, in one of the usual shapes.
pub fn email_at(rng: &mut R, first: &str, last: &str, domain: &str) -> String {
    let (f, l) = (fold(first), fold(last));
    match rng.random_range(0..6) {
        0 => format!("{f}.{l}@{domain}"),
        1 => format!("{}{l}@{domain}", &f[..1]),
        2 => format!("{f}_{l}@{domain}"),
        3 => format!("{f}{}@{domain}", rng.random_range(1..99)),
        4 => format!(
            "{f}.{l}+{}@{domain}",
            pick(rng, &["orders", "support", "work", "billing"])
        ),
        _ => format!("{f}@{domain}"),
    }
}

/// A random person; e-mail at a free-mail provider or at `company_domain`.
pub fn person(rng: &mut R, company_domain: Option<&str>) -> Person {
    let first = pick(rng, FIRST_NAMES).to_string();
    let last = pick(rng, LAST_NAMES).to_string();
    let domain = match company_domain {
        Some(d) if chance(rng, 0.8) => d.to_string(),
        _ => pick(rng, FREE_MAIL).to_string(),
    };
    let email = email_at(rng, &first, &last, &domain);
    Person { first, last, email }
}

pub fn digits(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A phone number in a national or international format.
pub fn phone(rng: &mut R) -> String {
    match rng.random_range(0..8) {
        0 => format!(
            "+1 ({}) 555-{}",
            pick(rng, &["415", "212", "646", "312", "617", "206"]),
            digits(rng, 4)
        ),
        1 => format!(
            "{}-{}-{}",
            pick(rng, &["415", "303", "512", "718"]),
            rng.random_range(200..999),
            digits(rng, 4)
        ),
        2 => format!(
            "+1 {} {} {}",
            pick(rng, &["646", "917", "408"]),
            rng.random_range(200..999),
            digits(rng, 4)
        ),
        3 => format!("+44 20 7946 {}", digits(rng, 4)),
        4 => format!("+44 7700 {}", digits(rng, 6)),
        5 => format!(
            "+49 {} {}",
            pick(rng, &["30", "89", "151", "170"]),
            digits(rng, 8)
        ),
        6 => format!(
            "+33 6 {} {} {} {}",
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2)
        ),
        _ => format!("+91 98{} {}", digits(rng, 3), digits(rng, 5)),
    }
}

/// Luhn check over the digits of `s` (separators ignored).
pub fn luhn_valid(s: &str) -> bool {
    let ds: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if ds.len() < 2 {
        return false;
    }
    luhn_sum(&ds).is_multiple_of(10)
}

fn luhn_sum(ds: &[u32]) -> u32 {
    ds.iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum()
}

fn luhn_complete(prefix: &str, len: usize, rng: &mut R) -> String {
    let mut s = prefix.to_string();
    s.push_str(&digits(rng, len - prefix.len() - 1));
    let mut ds: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    ds.push(0);
    let check = (10 - luhn_sum(&ds) % 10) % 10;
    s.push(char::from(b'0' + check as u8));
    s
}

fn group(s: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in sizes {
        if pos >= s.len() {
            break;
        }
        let end = (pos + n).min(s.len());
        out.push(&s[pos..end]);
        pos = end;
    }
    if pos < s.len() {
        out.push(&s[pos..]);
    }
    out.join(sep)
}

/// A Luhn-valid payment card number (Visa, Mastercard, Amex, Discover),
/// written with spaces, dashes or no separators.
pub fn card(rng: &mut R) -> String {
    let (prefix, len) = *pick(
        rng,
        &[
            ("4", 16),
            ("4", 16),
            ("51", 16),
            ("53", 16),
            ("55", 16),
            ("2221", 16),
            ("34", 15),
            ("37", 15),
            ("6011", 16),
        ],
    );
    let raw = luhn_complete(prefix, len, rng);
    let sizes: &[usize] = if len == 15 { &[4, 6, 5] } else { &[4, 4, 4, 4] };
    match rng.random_range(0..3) {
        0 => group(&raw, sizes, " "),
        1 => group(&raw, sizes, "-"),
        _ => raw,
    }
}

/// A 16-digit order number that looks like a card number but fails Luhn.
pub fn order_number_16(rng: &mut R) -> String {
    let mut raw = format!("{}{}", pick(rng, &["4", "5", "7", "9"]), digits(rng, 15));
    if luhn_valid(&raw) {
        let last = raw.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
        raw.push(char::from(b'0' + ((last + 1) % 10) as u8));
    }
    if chance(rng, 0.5) {
        group(&raw, &[4, 4, 4, 4], " ")
    } else {
        raw
    }
}

/// Mod-97 check of an IBAN (spaces ignored).
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || !compact.is_ascii() {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    mod97(&format!("{tail}{head}")) == Some(1)
}

fn mod97(s: &str) -> Option<u32> {
    let mut r: u32 = 0;
    for c in s.chars() {
        let v = if c.is_ascii_digit() {
            c.to_digit(10)?
        } else if c.is_ascii_uppercase() {
            c as u32 - 'A' as u32 + 10
        } else {
            return None;
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    Some(r)
}

pub fn upper(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

/// A mod-97-valid IBAN for a country (`DE`, `GB`, `FR`, `NL`, `ES`, `IT`,
/// `BE`, `CH`; anything else means "pick one"), in print (groups of 4) or
/// electronic form.
pub fn iban(rng: &mut R, country: &str) -> String {
    let cc = match country {
        "DE" | "GB" | "FR" | "NL" | "ES" | "IT" | "BE" | "CH" => country.to_string(),
        _ => pick(rng, &["DE", "GB", "FR", "NL", "ES", "IT", "BE", "CH"]).to_string(),
    };
    let bban = match cc.as_str() {
        "DE" => digits(rng, 18),
        "GB" => format!(
            "{}{}",
            pick(rng, &["NWBK", "BARC", "HSBC", "LOYD", "MIDL"]),
            digits(rng, 14)
        ),
        "FR" => digits(rng, 23),
        "NL" => format!(
            "{}{}",
            pick(rng, &["ABNA", "INGB", "RABO", "TRIO"]),
            digits(rng, 10)
        ),
        "ES" => digits(rng, 20),
        "IT" => format!("{}{}", upper(rng, 1), digits(rng, 22)),
        "BE" => digits(rng, 12),
        _ => digits(rng, 17),
    };
    let r = mod97(&format!("{bban}{cc}00")).unwrap_or(0);
    let compact = format!("{cc}{:02}{bban}", 98 - r);
    if chance(rng, 0.6) {
        group(&compact, &[4; 10], " ")
    } else {
        compact
    }
}

/// A street address (US, UK, German or French style).
pub fn address(rng: &mut R) -> String {
    match rng.random_range(0..4) {
        0 => format!(
            "{} {} {}, {}, {} {}",
            rng.random_range(10..9999),
            pick(
                rng,
                &[
                    "Elm",
                    "Maple",
                    "Oak",
                    "Pine",
                    "Cedar",
                    "Lake",
                    "Hill",
                    "Washington",
                    "Park"
                ]
            ),
            pick(rng, &["Street", "Ave", "Road", "Blvd", "Lane"]),
            pick(
                rng,
                &[
                    "Springfield",
                    "Portland",
                    "Austin",
                    "Denver",
                    "Madison",
                    "Oakland"
                ]
            ),
            pick(rng, &["IL", "OR", "TX", "CO", "WI", "CA"]),
            digits(rng, 5)
        ),
        1 => format!(
            "{} {} {}, London {}{} {}{}",
            rng.random_range(1..250),
            pick(
                rng,
                &["Baker", "Camden", "Victoria", "Kings", "Abbey", "Church"]
            ),
            pick(rng, &["Street", "Road", "Lane"]),
            pick(rng, &["NW", "SE", "E", "W", "N"]),
            rng.random_range(1..20),
            rng.random_range(1..9),
            upper(rng, 2)
        ),
        2 => format!(
            "{} {}, {} {}",
            pick(
                rng,
                &[
                    "Hauptstraße",
                    "Bahnhofstraße",
                    "Gartenweg",
                    "Lindenallee",
                    "Schillerstraße"
                ]
            ),
            rng.random_range(1..120),
            digits(rng, 5),
            pick(rng, &["Berlin", "München", "Hamburg", "Köln", "Leipzig"])
        ),
        _ => format!(
            "{} rue {}, {} {}",
            rng.random_range(1..200),
            pick(
                rng,
                &[
                    "de la Paix",
                    "Victor Hugo",
                    "des Lilas",
                    "Oberkampf",
                    "du Bac"
                ]
            ),
            pick(rng, &["75011", "75007", "69002", "13001", "33000"]),
            pick(rng, &["Paris", "Lyon", "Marseille", "Bordeaux"])
        ),
    }
}

/// An IPv4 (public documentation, public-looking or private range) or an
/// IPv6 address.
pub fn ip(rng: &mut R) -> String {
    match rng.random_range(0..6) {
        0 => format!("203.0.113.{}", rng.random_range(1..255)),
        1 => format!("198.51.100.{}", rng.random_range(1..255)),
        2 => format!(
            "10.{}.{}.{}",
            rng.random_range(0..255),
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        3 => format!(
            "192.168.{}.{}",
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        4 => format!(
            "{}.{}.{}.{}",
            pick(rng, &[81, 84, 91, 145, 176, 185]),
            rng.random_range(0..255),
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        _ => format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.random_range(0..0xffffu32),
            rng.random_range(0..0xffffu32),
            rng.random_range(1..0xffffu32)
        ),
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random ASCII letters and digits.
pub fn alnum(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect()
}

/// `n` random lower-case hex digits.
pub fn hex(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// A random version-4-shaped UUID.
pub fn uuid(rng: &mut R) -> String {
    let h = hex(rng, 32);
    let variant = pick(rng, &["8", "9", "a", "b"]);
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}

/// A pasted secret: an OpenAI, AWS, GitHub, Stripe test, Hugging Face or
/// Slack token shape.
pub fn api_key(rng: &mut R) -> String {
    match rng.random_range(0..6) {
        0 => format!("sk-proj-{}", alnum(rng, 48)),
        1 => {
            let body: String = (0..16)
                .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[rng.random_range(0..32)]))
                .collect();
            format!("AKIA{body}")
        }
        2 => format!("ghp_{}", alnum(rng, 36)),
        3 => format!("sk_test_{}", alnum(rng, 24)),
        4 => {
            let letters: String = (0..34)
                .map(|_| {
                    char::from(
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            [rng.random_range(0..52)],
                    )
                })
                .collect();
            format!("hf_{letters}")
        }
        _ => format!(
            "xoxb-{}-{}-{}",
            digits(rng, 11),
            digits(rng, 12),
            alnum(rng, 24)
        ),
    }
}

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A JWT: real base64url header and claims, random signature.
pub fn jwt(rng: &mut R, subject_email: &str) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let iat = 1_740_000_000 + rng.random_range(0..5_000_000u64);
    let claims = format!(
        r#"{{"sub":"{subject_email}","iat":{iat},"exp":{}}}"#,
        iat + 3600
    );
    let sig: Vec<u8> = (0..32).map(|_| rng.random::<u8>()).collect();
    format!("{header}.{}.{}", b64url(claims.as_bytes()), b64url(&sig))
}

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A date of birth between 1950 and 2004 in one of several spellings.
pub fn dob(rng: &mut R) -> String {
    let (y, m, d) = (
        rng.random_range(1950..2005),
        rng.random_range(1..=12usize),
        rng.random_range(1..=28),
    );
    match rng.random_range(0..4) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{d:02}/{m:02}/{y}"),
        2 => format!("{} {d}, {y}", MONTHS[m - 1]),
        _ => format!("{d} {} {y}", MONTHS[m - 1]),
    }
}

/// A software version string (not a phone number, not an IP).
pub fn version(rng: &mut R) -> String {
    match rng.random_range(0..3) {
        0 => format!(
            "v{}.{}.{}",
            rng.random_range(1..5),
            rng.random_range(0..20),
            rng.random_range(0..10)
        ),
        1 => format!(
            "{}.{}.{}",
            rng.random_range(1..5),
            rng.random_range(0..20),
            rng.random_range(0..10)
        ),
        _ => format!(
            "{}.{}.{}-build.{}",
            rng.random_range(1..5),
            rng.random_range(0..20),
            rng.random_range(0..10),
            rng.random_range(100..9999)
        ),
    }
}

/// A parcel tracking number (UPS-shaped).
pub fn tracking(rng: &mut R) -> String {
    format!("1Z{}{}", upper(rng, 6), digits(rng, 10))
}

/// An invoice number in one of the usual shapes.
pub fn invoice_number(rng: &mut R) -> String {
    match rng.random_range(0..4) {
        0 => format!("INV-2025-{}", digits(rng, 5)),
        1 => format!("RE-{}", digits(rng, 6)),
        2 => format!("F2025-{}", digits(rng, 4)),
        _ => format!("2025/{}", digits(rng, 4)),
    }
}

/// An ISO date (YYYY-MM-DD) between 2025-03-01 and 2025-08-28.
pub fn iso_date(rng: &mut R) -> String {
    format!(
        "2025-{:02}-{:02}",
        rng.random_range(3..=8),
        rng.random_range(1..=28)
    )
}

/// A 24-hour time on the quarter hour between 08:00 and 18:45.
pub fn time_24h(rng: &mut R) -> String {
    format!(
        "{:02}:{:02}",
        rng.random_range(8..19),
        15 * rng.random_range(0..4)
    )
}
