//! Person-name detection without a model: embedded lists of common given
//! names and surnames, honorifics, greeting and signature lines, "my name
//! is" style triggers, name lists, and "First Last" pairs. Words that are
//! also ordinary words (May, Will, Grace, Jack...) count only with strong
//! evidence. Names no list holds are found by what they are not: two or
//! three capitalised words none of which is an English word (SCOWL's list),
//! a place, or an organisation, product or software word ("Seun Berisha",
//! not "Grafana Loki" or "Hoffmann Druck KG"). One pass over the text that
//! looks only at capitalised words.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;

use regex::Regex;

use super::detect::{Span, View};
use super::kinds::Detail;

const FIRST: u16 = 1;
const SURNAME: u16 = 2;
const AMBIG: u16 = 4;
const STOP: u16 = 8;
const HONORIFIC: u16 = 16;
const GREETING: u16 = 32;
const PARTICLE: u16 = 64;
const BLOCK: u16 = STOP | HONORIFIC | GREETING;

/// Bytes of text on each side of a name searched for a place around it.
const PLACE_WINDOW: usize = 64;

const HONORIFICS: &str = "mr mrs ms miss mx dr prof professor sir dame lady lord madam mme mlle herr frau sr sra srta \
    rev reverend fr capt captain sgt sergeant col colonel lt lieutenant judge officer detective det agent nurse coach \
    president senator sen rep governor gov mayor ambassador minister rabbi imam pastor";
const GREETINGS: &str =
    "hi hello hey dear thanks thank cheers regards sincerely congratulations congrats welcome \
    goodbye bye morning afternoon evening howdy hiya greetings yo";
const PARTICLES: &str =
    "van von de der den del della di da dos das du la le bin ibn al el ter ten zu";

/// FNV-1a: short keys, no DoS concern (the table is fixed at build time).
#[derive(Default)]
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastMap = HashMap<&'static str, u16, BuildHasherDefault<Fnv>>;

/// Common English words, lower case, one per line: the words SCOWL's
/// `american-english` list writes in lower case (its capitalised entries
/// are names and places). Built by `scripts/make_english.py`.
const ENGLISH_GZ: &[u8] = include_bytes!("data/english.txt.gz");

/// The English words and [`TECH_WORDS`], apart from the name map so that
/// the lookups every capitalised word makes stay in a small table.
static ENGLISH: std::sync::LazyLock<
    std::collections::HashSet<&'static str, BuildHasherDefault<Fnv>>,
> = std::sync::LazyLock::new(|| {
    let mut text = String::new();
    flate2::read::GzDecoder::new(ENGLISH_GZ)
        .read_to_string(&mut text)
        .expect("the bundled English word list is valid gzip UTF-8");
    // read once; lives as long as the program
    let text: &'static str = Box::leak(text.into_boxed_str());
    text.lines().chain(TECH_WORDS.split_whitespace()).collect()
});

/// Software, services and models whose names are not English words and
/// come in pairs in agent traffic ("Apache Kafka", "Grafana Loki"): never
/// taken for a person's name by shape alone.
const TECH_WORDS: &str = "kafka grafana loki redis postgres postgresql mysql mongodb mongo kubernetes k8s \
    docker jira confluence figma zapier twilio okta datadog vercel netlify heroku supabase firebase \
    terraform ansible nginx elasticsearch kibana logstash prometheus airflow databricks tableau looker \
    hubspot salesforce zendesk intercom mailchimp asana trello miro canva openai anthropic claude gemini \
    llama mistral qwen ollama pytorch tensorflow numpy pandas polars scipy sklearn keras jupyter github \
    gitlab bitbucket circleci travis jenkins argo istio envoy consul vault nomad helm kustomize grpc \
    graphql webhook oauth saml sso aws azure gcp bigquery redshift snowflake dynamodb cassandra \
    clickhouse duckdb sqlite kotlin swift rust golang django flask fastapi nextjs nuxt svelte vue \
    angular react webpack vite npm yarn pnpm pypi conda linux ubuntu debian fedora centos macos ios \
    android windows chromium safari firefox stripe paypal shopify quickbooks xero netsuite workday \
    sap oracle tesla nvidia cuda intel amd qualcomm samsung xiaomi huawei lenovo asus acer dyson lego \
    ikea spotify netflix hulu youtube tiktok instagram whatsapp telegram wechat slack zoom webex \
    dropbox onedrive sharepoint outlook gmail notion obsidian evernote todoist calendly typeform \
    airtable retool appsmith postman insomnia swagger openapi langchain llamaindex pinecone weaviate \
    qdrant chroma milvus huggingface wandb mlflow kubeflow sagemaker vertex bedrock";

fn words(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
}

/// How strongly the text before a run of capitalised words says "a name
/// follows".
#[derive(Clone, Copy, PartialEq, Debug)]
enum Trigger {
    None,
    /// "my name is", "Attendees:", "cc:" - any capitalised words.
    Strong,
    /// "Best regards," / "Thanks," - the name must end the line.
    Signature,
    /// "Hi", "Dear", "Hello" - a known name, or the name ends the clause.
    Greeting,
    /// A separator after a name just found: "Alice Johnson, Bob Lee and ...".
    List,
    /// "I'm", "this is", "spoke to" - a known name (an ambiguous one when it
    /// ends the clause), or two words with a listed name.
    Medium,
    /// "with", "by", "and", "from" - a plainly known name, or two words with
    /// a listed name.
    Weak,
    /// Phrases that take a person ("loop in", "on behalf of", "addressed
    /// to", "a call with", "a table for"): a known name, or two or three
    /// unlisted capitalised words that make up the whole run, none an
    /// organisation word.
    Person,
}

const TRIGGERS: &[(&str, Trigger)] = &[
    ("my name is", Trigger::Strong),
    ("my name's", Trigger::Strong),
    ("name is", Trigger::Strong),
    ("names are", Trigger::Strong),
    ("call me", Trigger::Strong),
    ("i go by", Trigger::Strong),
    ("known as", Trigger::Strong),
    ("signed by", Trigger::Strong),
    ("signed", Trigger::Strong),
    ("full name:", Trigger::Strong),
    ("name:", Trigger::Strong),
    ("attendees:", Trigger::Strong),
    ("attendee:", Trigger::Strong),
    ("participants:", Trigger::Strong),
    ("participant:", Trigger::Strong),
    ("invitees:", Trigger::Strong),
    ("guests:", Trigger::Strong),
    ("guest:", Trigger::Strong),
    ("speakers:", Trigger::Strong),
    ("panelists:", Trigger::Strong),
    ("present:", Trigger::Strong),
    ("cc:", Trigger::Strong),
    ("bcc:", Trigger::Strong),
    ("author:", Trigger::Strong),
    ("authors:", Trigger::Strong),
    ("assignee:", Trigger::Strong),
    ("assigned to:", Trigger::Strong),
    ("assigned to", Trigger::Strong),
    ("reviewer:", Trigger::Strong),
    ("reviewers:", Trigger::Strong),
    ("owner:", Trigger::Strong),
    ("contact person:", Trigger::Strong),
    ("contact:", Trigger::Strong),
    ("customer:", Trigger::Strong),
    ("customer name:", Trigger::Strong),
    ("patient:", Trigger::Strong),
    ("passenger:", Trigger::Strong),
    ("employee:", Trigger::Strong),
    ("candidate:", Trigger::Strong),
    ("recipient:", Trigger::Strong),
    ("sender:", Trigger::Strong),
    ("requester:", Trigger::Strong),
    ("requested by:", Trigger::Strong),
    ("reported by:", Trigger::Strong),
    ("prepared by:", Trigger::Strong),
    ("attn:", Trigger::Strong),
    ("attn", Trigger::Strong),
    ("attention:", Trigger::Strong),
    ("c/o", Trigger::Strong),
    ("best regards,", Trigger::Signature),
    ("kind regards,", Trigger::Signature),
    ("warm regards,", Trigger::Signature),
    ("regards,", Trigger::Signature),
    ("regards", Trigger::Signature),
    ("many thanks,", Trigger::Signature),
    ("thanks,", Trigger::Signature),
    ("thank you,", Trigger::Signature),
    ("cheers,", Trigger::Signature),
    ("best,", Trigger::Signature),
    ("best wishes,", Trigger::Signature),
    ("all the best,", Trigger::Signature),
    ("sincerely,", Trigger::Signature),
    ("sincerely", Trigger::Signature),
    ("yours truly,", Trigger::Signature),
    ("yours sincerely,", Trigger::Signature),
    ("yours,", Trigger::Signature),
    ("respectfully,", Trigger::Signature),
    ("cordially,", Trigger::Signature),
    ("warmly,", Trigger::Signature),
    ("love,", Trigger::Signature),
    ("take care,", Trigger::Signature),
    ("talk soon,", Trigger::Signature),
    ("thx,", Trigger::Signature),
    ("--", Trigger::Signature),
    ("dear", Trigger::Greeting),
    ("hi", Trigger::Greeting),
    ("hello", Trigger::Greeting),
    ("hey", Trigger::Greeting),
    ("hiya", Trigger::Greeting),
    ("howdy", Trigger::Greeting),
    ("greetings", Trigger::Greeting),
    ("good morning", Trigger::Greeting),
    ("good afternoon", Trigger::Greeting),
    ("good evening", Trigger::Greeting),
    ("welcome", Trigger::Greeting),
    ("congratulations", Trigger::Greeting),
    ("congrats", Trigger::Greeting),
    ("thanks", Trigger::Greeting),
    ("thank you", Trigger::Greeting),
    ("bye", Trigger::Greeting),
    ("i'm", Trigger::Medium),
    ("i\u{2019}m", Trigger::Medium),
    ("i am", Trigger::Medium),
    ("this is", Trigger::Medium),
    ("it's", Trigger::Medium),
    ("it is", Trigger::Medium),
    ("named", Trigger::Medium),
    ("called", Trigger::Medium),
    ("with", Trigger::Weak),
    ("by", Trigger::Weak),
    ("for", Trigger::Weak),
    ("contact", Trigger::Weak),
    ("tell", Trigger::Medium),
    ("met", Trigger::Medium),
    ("meet", Trigger::Medium),
    ("and", Trigger::Weak),
    ("from", Trigger::Weak),
    ("to", Trigger::Weak),
    ("spoke to", Trigger::Medium),
    ("spoke with", Trigger::Medium),
    ("talked to", Trigger::Medium),
    ("emailed", Trigger::Medium),
    ("told", Trigger::Medium),
    ("asked", Trigger::Medium),
    ("son", Trigger::Medium),
    ("daughter", Trigger::Medium),
    ("wife", Trigger::Medium),
    ("husband", Trigger::Medium),
    ("brother", Trigger::Medium),
    ("sister", Trigger::Medium),
    ("mother", Trigger::Medium),
    ("father", Trigger::Medium),
    ("mom", Trigger::Medium),
    ("dad", Trigger::Medium),
    ("friend", Trigger::Medium),
    ("colleague", Trigger::Medium),
    ("manager", Trigger::Medium),
    ("boss", Trigger::Medium),
    ("client", Trigger::Medium),
    ("customer", Trigger::Medium),
    ("tenant", Trigger::Medium),
    ("loop in", Trigger::Person),
    ("looping in", Trigger::Person),
    ("looped in", Trigger::Person),
    ("on behalf of", Trigger::Person),
    ("addressed to", Trigger::Person),
    ("address it to", Trigger::Person),
    ("forward this to", Trigger::Person),
    ("forward it to", Trigger::Person),
    ("forwarded to", Trigger::Person),
    ("forward to", Trigger::Person),
    ("send it to", Trigger::Person),
    ("send this to", Trigger::Person),
    ("call with", Trigger::Person),
    ("meeting with", Trigger::Person),
    ("meet with", Trigger::Person),
    ("chat with", Trigger::Person),
    ("appointment with", Trigger::Person),
    ("interview with", Trigger::Person),
    ("follow up with", Trigger::Person),
    ("check with", Trigger::Person),
    ("reach out to", Trigger::Person),
    ("escalate to", Trigger::Person),
    ("hand it over to", Trigger::Person),
    ("introduce me to", Trigger::Person),
    ("introduce you to", Trigger::Person),
    ("table for", Trigger::Person),
    ("reservation for", Trigger::Person),
    ("booking for", Trigger::Person),
    ("a ticket for", Trigger::Person),
    ("invite", Trigger::Person),
    ("invited", Trigger::Person),
    ("cc", Trigger::Person),
    ("married to", Trigger::Person),
    ("sent by", Trigger::Person),
    ("written by", Trigger::Person),
    ("approved by", Trigger::Person),
    ("ping", Trigger::Person),
    ("from:", Trigger::Person),
    ("to:", Trigger::Person),
    ("according to", Trigger::Person),
    ("ask", Trigger::Person),
    ("patient", Trigger::Person),
    ("remind", Trigger::Person),
    ("try", Trigger::Person),
    ("reply to", Trigger::Person),
    ("respond to", Trigger::Person),
    ("email to", Trigger::Person),
    ("message to", Trigger::Person),
    ("note to", Trigger::Person),
    ("letter to", Trigger::Person),
    ("message from", Trigger::Person),
    ("email from", Trigger::Person),
    ("call from", Trigger::Person),
    ("note from", Trigger::Person),
    ("letter from", Trigger::Person),
    ("thanks to", Trigger::Person),
    ("thanks again to", Trigger::Person),
    ("assign to", Trigger::Person),
    ("assign it to", Trigger::Person),
    ("assign this to", Trigger::Person),
    ("ticket to", Trigger::Person),
    ("opened by", Trigger::Person),
    ("created by", Trigger::Person),
    ("submitted by", Trigger::Person),
    ("filed by", Trigger::Person),
    ("raised by", Trigger::Person),
    ("me and", Trigger::Person),
    ("order for", Trigger::Person),
    ("attendees were", Trigger::Strong),
    ("attendees are", Trigger::Strong),
    ("participants were", Trigger::Strong),
    ("participants are", Trigger::Strong),
];

/// Verbs that, right after a run of capitalised words, say the run is
/// somebody: "Tadeo Underwood reported that...".
const REPORTING_VERBS: &[&str] = &[
    "reported",
    "reports",
    "said",
    "says",
    "wrote",
    "writes",
    "asked",
    "asks",
    "mentioned",
    "confirmed",
    "replied",
    "noted",
    "complained",
    "requested",
    "explained",
    "emailed",
    "texted",
    "phoned",
    "told",
    "thinks",
    "thought",
    "wants",
    "wanted",
    "needs",
    "called",
    "signed",
    "agreed",
    "approved",
    "declined",
    "recommended",
    "suggested",
    "promised",
];

/// Capitalised words that make a run an organisation, a team or a thing,
/// not a person, after a person-taking phrase ("a call with Acme Labs").
const ORG_WORDS: &[&str] = &[
    "labs",
    "lab",
    "traders",
    "trading",
    "holdings",
    "ventures",
    "industries",
    "logistics",
    "capital",
    "consulting",
    "media",
    "studios",
    "studio",
    "motors",
    "airlines",
    "airways",
    "insurance",
    "pharma",
    "health",
    "healthcare",
    "foods",
    "energy",
    "partners",
    "group",
    "payable",
    "receivable",
    "desk",
    "helpdesk",
    "ops",
    "devops",
    "security",
    "compliance",
    "procurement",
    "payroll",
    "hr",
    "it",
    "qa",
    "infra",
    "infrastructure",
    "platform",
    "backend",
    "frontend",
    "design",
    "growth",
    "success",
    "onboarding",
    "recruiting",
    "talent",
    "brunch",
    "lunch",
    "dinner",
    "breakfast",
    "night",
    "day",
    "eve",
    "weekend",
    "party",
    "club",
    "bar",
    "grill",
    "kitchen",
    "bistro",
    "tavern",
    "pub",
    "inn",
    "lounge",
    "suite",
    "room",
    "deck",
    "calendar",
    "drive",
    "docs",
    "sheets",
    "forms",
    "mail",
    "chrome",
    "cloud",
    "console",
    "store",
    "shop",
    "express",
    "prime",
    "plus",
    "pro",
    "max",
    "mini",
    "air",
    "one",
    "go",
    "audit",
    "internal",
    "external",
    "acquisition",
    "relations",
    "affairs",
    "facilities",
    "accounting",
    "treasury",
    "analytics",
    "insights",
    "strategy",
    "research",
    "planning",
    "logistics",
    "fulfillment",
    "warehouse",
    "dispatch",
    "tier",
    "level",
    "squad",
    "crew",
    "works",
    "systems",
    "solutions",
    "technologies",
    "software",
    "networks",
    "digital",
];

/// Where the last name found ended, and whether it came from a strong
/// context (so that a list after it may hold unlisted names).
#[derive(Clone, Copy, Debug)]
struct LastName {
    end: usize,
    strong: bool,
}

/// One capitalised word (or particle / initial) of a run.
#[derive(Clone, Copy, Debug)]
struct Tok {
    start: usize,
    /// End of the name part (a possessive 's is left out).
    end: usize,
    /// Where scanning continues (after a possessive, after "Dr." / "J.").
    next: usize,
    flags: u16,
    initial: bool,
    particle: bool,
}

pub(crate) struct NameModel {
    map: FastMap,
    lower_trigger: Regex,
    /// Trigger phrases indexed by their last byte.
    triggers: Vec<Vec<(&'static [u8], Trigger)>>,
}

impl NameModel {
    pub fn new() -> NameModel {
        let mut map = FastMap::default();
        for w in words(include_str!("data/first_names.txt")) {
            *map.entry(w).or_insert(0) |= FIRST;
        }
        for w in words(include_str!("data/surnames.txt")) {
            *map.entry(w).or_insert(0) |= SURNAME;
        }
        for w in words(include_str!("data/ambiguous.txt")) {
            let f = map.entry(w).or_insert(0);
            if *f & (FIRST | SURNAME) == 0 {
                *f |= FIRST | SURNAME;
            }
            *f |= AMBIG;
        }
        for w in words(include_str!("data/stopwords.txt")) {
            let f = map.entry(w).or_insert(0);
            if *f & (FIRST | SURNAME) == 0 {
                *f |= STOP;
            }
        }
        for (list, flag) in [
            (HONORIFICS, HONORIFIC),
            (GREETINGS, GREETING),
            (PARTICLES, PARTICLE),
        ] {
            for w in list.split_whitespace() {
                *map.entry(w).or_insert(0) |= flag;
            }
        }
        let lower_trigger = Regex::new(
            r"(?i)(?-u:\b)(?:my name is|my name's|i am called|call me)[ \t]+([a-z][a-z'\-]{1,30})(?:[ \t]+([a-z][a-z'\-]{1,30}))?",
        )
        .expect("valid regex");
        let mut triggers: Vec<Vec<(&'static [u8], Trigger)>> = vec![Vec::new(); 256];
        for (pat, t) in TRIGGERS {
            let p = pat.as_bytes();
            triggers[p[p.len() - 1] as usize].push((p, *t));
        }
        // the longest phrase that ends here wins ("a call with" over "with")
        for bucket in &mut triggers {
            bucket.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        }
        NameModel {
            map,
            lower_trigger,
            triggers,
        }
    }

    fn flags_of(&self, word: &str) -> u16 {
        let mut buf = [0u8; 48];
        match fold_lower(word, &mut buf) {
            Some(k) => self.map.get(k).copied().unwrap_or(0),
            None => 0,
        }
    }

    /// Flags for a token, falling back to the parts of a hyphenated name
    /// ("Jean-Luc" -> "jean").
    fn token_flags(&self, word: &str) -> u16 {
        let f = self.flags_of(word);
        if f != 0 || !word.contains('-') {
            return f;
        }
        let mut parts = word.split('-');
        let first = parts.next().map(|p| self.flags_of(p)).unwrap_or(0);
        let last = parts.next_back().map(|p| self.flags_of(p)).unwrap_or(0);
        // "Jean-Luc" -> a given name; "Smith-Jones" -> a surname only when both parts are names
        let both = first & (FIRST | SURNAME) != 0 && last & SURNAME != 0;
        (first & (FIRST | AMBIG)) | if both { SURNAME } else { 0 }
    }

    /// Flags of a single word (for key-context checks).
    pub fn is_known_first(&self, word: &str) -> bool {
        let f = self.token_flags(word);
        f & FIRST != 0 && f & AMBIG == 0
    }

    /// A listed given name or surname that is not also a common word.
    pub fn is_plain_name_word(&self, word: &str) -> bool {
        let f = self.token_flags(word);
        f & (FIRST | SURNAME) != 0 && f & (AMBIG | STOP) == 0
    }

    pub fn is_known_name_word(&self, word: &str) -> bool {
        self.token_flags(word) & (FIRST | SURNAME) != 0
    }

    /// A word of a found name that may be redacted on its own elsewhere:
    /// not a stop word, honorific, particle or ambiguous name.
    pub fn propagatable(&self, word: &str) -> bool {
        self.token_flags(word) & (STOP | AMBIG | HONORIFIC | GREETING | PARTICLE) == 0
    }

    /// A surname by its ending ("Lewandowski", "Petrović", "Raghunathan").
    pub fn has_surname_ending(&self, word: &str) -> bool {
        surname_ending(word)
    }

    /// An organisation, team or product word ("Labs", "Payable", "Cloud").
    pub fn is_org_word(&self, word: &str) -> bool {
        ORG_WORDS.iter().any(|o| word.eq_ignore_ascii_case(o))
    }

    pub fn is_stop(&self, word: &str) -> bool {
        self.token_flags(word) & STOP != 0
    }

    /// Finds person names in `view` and appends them to `out`.
    pub fn find(&self, view: &View, out: &mut Vec<Span>) {
        let from = out.len();
        self.find_names(view, out);
        // A "name" inside a place ("San Francisco", "trip to Florence") is
        // the place's.
        // Only the words around each name are looked up, so the cost stays
        // with the names found, not with the length of the text.
        let text = view.text();
        let mut k = from;
        while k < out.len() {
            let (s, e) = (out[k].start, out[k].end);
            let mut ws = s.saturating_sub(PLACE_WINDOW);
            while !text.is_char_boundary(ws) {
                ws -= 1;
            }
            let mut we = (e + PLACE_WINDOW).min(text.len());
            while !text.is_char_boundary(we) {
                we += 1;
            }
            let inside = super::places::Places::get()
                .spans(&text[ws..we])
                .iter()
                .any(|&(ps, pe)| s < ws + pe && ws + ps < e);
            if inside {
                out.remove(k);
            } else {
                k += 1;
            }
        }
    }

    fn find_names(&self, view: &View, out: &mut Vec<Span>) {
        let text = view.text();
        let b = text.as_bytes();
        let n = b.len();
        let mut toks: Vec<Tok> = Vec::new();
        let mut last_person: Option<LastName> = None;
        let mut i = 0;
        while i < n {
            let c = b[i];
            if !(c.is_ascii_uppercase() || c >= 0xC3) {
                i += 1;
                continue;
            }
            if c >= 0x80 && !text.is_char_boundary(i) {
                i += 1;
                continue;
            }
            if !starts_word(b, i) {
                i = skip_word(text, i);
                continue;
            }
            toks.clear();
            let run_end = self.parse_run(text, i, &mut toks);
            if toks.is_empty() {
                i = skip_word(text, i);
                continue;
            }
            self.process_run(text, &toks, &mut last_person, out);
            i = run_end.max(i + 1);
        }
        if super::contains_bytes(b, b"name")
            || super::contains_bytes(b, b"all me")
            || super::contains_bytes(b, b"called")
        {
            self.find_lowercase(text, out);
        }
    }

    /// "my name is john smith" written in lower case.
    fn find_lowercase(&self, text: &str, out: &mut Vec<Span>) {
        for caps in self.lower_trigger.captures_iter(text) {
            let g1 = caps.get(1).expect("group 1");
            if !g1.as_str().as_bytes()[0].is_ascii_lowercase() {
                continue;
            }
            let trig = caps.get(0).expect("match").as_str().to_ascii_lowercase();
            let f1 = self.flags_of(g1.as_str());
            let ok = if trig.starts_with("call me") || trig.starts_with("i am") {
                f1 & FIRST != 0 && f1 & AMBIG == 0
            } else {
                f1 & (FIRST | SURNAME) != 0 && f1 & STOP == 0
            };
            if !ok {
                continue;
            }
            let mut end = g1.end();
            if let Some(g2) = caps.get(2) {
                let f2 = self.flags_of(g2.as_str());
                if f2 & SURNAME != 0 && f2 & STOP == 0 {
                    end = g2.end();
                }
            }
            out.push(person_span(text, g1.start(), end));
        }
    }

    /// Collects a run of capitalised words separated by single spaces
    /// (with name particles allowed in between). Returns where it ended.
    fn parse_run(&self, text: &str, start: usize, toks: &mut Vec<Tok>) -> usize {
        let b = text.as_bytes();
        let mut p = start;
        while let Some(t) = self.parse_token(text, p) {
            toks.push(t);
            let mut q = t.next;
            if toks.len() >= 7 || q >= b.len() {
                return q;
            }
            // one space (or NBSP) and then another capitalised word or a particle
            let r = if b[q] == b' ' {
                q + 1
            } else if b[q] == 0xC2 && b.get(q + 1) == Some(&0xA0) {
                q + 2
            } else {
                return q;
            };
            if r >= b.len() {
                return q;
            }
            if b[r].is_ascii_lowercase() {
                // a particle: "Ludwig van Beethoven", "Maria de la Cruz"
                let mut e = r;
                while e < b.len() && b[e].is_ascii_lowercase() {
                    e += 1;
                }
                let w = &text[r..e];
                if e < b.len()
                    && b[e] == b' '
                    && self.flags_of(w) & PARTICLE != 0
                    && starts_upper(text, e + 1)
                {
                    toks.push(Tok {
                        start: r,
                        end: e,
                        next: e,
                        flags: PARTICLE,
                        initial: false,
                        particle: true,
                    });
                    q = e + 1;
                    p = q;
                    continue;
                }
                return t.next;
            }
            if !starts_upper(text, r) {
                return t.next;
            }
            p = r;
        }
        toks.last().map(|t| t.next).unwrap_or(start)
    }

    /// A name-shaped word at `i`: upper-case first letter, then letters,
    /// inner apostrophes and hyphens; no digits, no CamelCase (except
    /// Mc/Mac/O'/De...), not ALL CAPS, not glued to code punctuation.
    fn parse_token(&self, text: &str, i: usize) -> Option<Tok> {
        let b = text.as_bytes();
        let n = b.len();
        let c0 = text[i..].chars().next()?;
        if !c0.is_uppercase() {
            return None;
        }
        let mut j = i + c0.len_utf8();
        let mut lower = false;
        let mut camel = false;
        let mut prev = c0;
        while j < n {
            let c = b[j];
            if c.is_ascii_lowercase() {
                lower = true;
                prev = c as char;
                j += 1;
                continue;
            }
            if c.is_ascii_uppercase() {
                if !(prev == '\''
                    || prev == '-'
                    || prev == '\u{2019}'
                    || allowed_inner_upper(&text[i..j]))
                {
                    camel = true;
                }
                prev = c as char;
                j += 1;
                continue;
            }
            if c == b'\'' || c == b'-' {
                if j + 1 < n && next_is_alpha(text, j + 1) {
                    prev = c as char;
                    j += 1;
                    continue;
                }
                break;
            }
            if c >= 0x80 {
                let ch = text[j..].chars().next()?;
                if ch == '\u{2019}' && next_is_alpha(text, j + 3) {
                    prev = ch;
                    j += 3;
                    continue;
                }
                if ch.is_alphabetic() {
                    if ch.is_lowercase() {
                        lower = true;
                    } else if ch.is_uppercase()
                        && !(prev == '\''
                            || prev == '-'
                            || prev == '\u{2019}'
                            || allowed_inner_upper(&text[i..j]))
                    {
                        camel = true;
                    }
                    prev = ch;
                    j += ch.len_utf8();
                    continue;
                }
            }
            break;
        }
        // what follows must not make it an identifier, a domain or an e-mail
        if j < n {
            let nb = b[j];
            if nb.is_ascii_digit() || matches!(nb, b'_' | b'@' | b'`') {
                return None;
            }
            // generics and calls: `Option<T>`, `Foo(`, `Foo::bar`
            if (nb == b'<' || nb == b'(' || nb == b'[')
                && b.get(j + 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b')')
            {
                return None;
            }
            if nb == b':' && b.get(j + 1) == Some(&b':') {
                return None;
            }
            if nb == b'.' && j + 1 < n && (b[j + 1].is_ascii_alphanumeric() || b[j + 1] == b'_') {
                // "J.R.R." style initials are fine, "Foo.bar" is code
                if !(j == i + c0.len_utf8() && b[j + 1].is_ascii_uppercase()) {
                    return None;
                }
            }
        }
        let single = j == i + c0.len_utf8();
        if single {
            // an initial: "J." (a lone capital letter is not a name)
            if j < n && b[j] == b'.' {
                return Some(Tok {
                    start: i,
                    end: j,
                    next: j + 1,
                    flags: 0,
                    initial: true,
                    particle: false,
                });
            }
            return None;
        }
        if !lower || camel {
            return None;
        }
        let word = &text[i..j];
        if is_contraction(word) {
            return None;
        }
        let mut end = j;
        if word.ends_with("'s") || word.ends_with("'S") {
            end = j - 2;
        } else if word.ends_with("\u{2019}s") {
            end = j - 4;
        }
        let flags = self.token_flags(&text[i..end]);
        let mut next = j;
        if flags & HONORIFIC != 0 && j < n && b[j] == b'.' {
            next = j + 1;
        }
        Some(Tok {
            start: i,
            end,
            next,
            flags,
            initial: false,
            particle: false,
        })
    }

    fn process_run(
        &self,
        text: &str,
        toks: &[Tok],
        last: &mut Option<LastName>,
        out: &mut Vec<Span>,
    ) {
        let n = toks.len();
        let emit =
            |a: usize, b: usize, strong: bool, last: &mut Option<LastName>, out: &mut Vec<Span>| {
                let (s, e) = (toks[a].start, toks[b - 1].end);
                out.push(person_span(text, s, e));
                *last = Some(LastName { end: e, strong });
            };
        let mut k = 0;
        while k < n {
            let t = toks[k];
            if t.particle || (t.initial && k > 0) {
                k += 1;
                continue;
            }
            if t.flags & HONORIFIC != 0 {
                let m = take_name_tokens(toks, k + 1, 3);
                if m > k + 1 {
                    emit(k + 1, m, true, last, out);
                    k = m;
                } else {
                    k += 1;
                }
                continue;
            }
            if t.flags & GREETING != 0 {
                let m = take_name_tokens(toks, k + 1, 3);
                // "Dear Field Sales team": a run that goes on into a blocked
                // word or a team word is not somebody
                let goes_on = (m < n && toks[m].flags & BLOCK != 0)
                    || before_team_word(text, toks[m.max(k + 1) - 1].next);
                if m > k + 1 && !goes_on {
                    let known = toks[k + 1].flags & (FIRST | SURNAME) != 0;
                    let ends = m == n && terminator_after(text, toks[n - 1].next, false);
                    if known || ends {
                        emit(k + 1, m, true, last, out);
                        k = m;
                        continue;
                    }
                }
                k += 1;
                continue;
            }
            if t.flags & STOP != 0 {
                k += 1;
                continue;
            }
            let f = t.flags;
            let plain_first = f & FIRST != 0 && f & AMBIG == 0;
            if k == 0 && !plain_first {
                let m = take_name_tokens(toks, 0, 3);
                if m > 0 {
                    let (trig, chain_strong) = self.trigger_before(text, toks[0].start, *last);
                    let reported = trig == Trigger::None
                        && m == n
                        && self.before_reporting_verb(text, toks[m - 1].next)
                        && self.unlisted_person(text, &toks[..m]);
                    if reported
                        || (trig != Trigger::None
                            && self.accept_triggered(text, toks, m, trig, chain_strong))
                    {
                        let strong = matches!(
                            trig,
                            Trigger::Strong | Trigger::Signature | Trigger::Greeting
                        ) || (trig == Trigger::List && chain_strong);
                        emit(0, m, strong, last, out);
                        k = m;
                        continue;
                    }
                }
            }
            if t.initial {
                k += 1;
                continue;
            }
            if plain_first {
                let m = extend_first(toks, k);
                // family name first: "Nguyen Van Minh", "Tanaka Hiroshi"
                let mut a = k;
                if k >= 1 && is_plain_surname(&toks[k - 1]) {
                    a = k - 1;
                } else if k >= 2
                    && toks[k - 1].flags & (BLOCK | FIRST) == 0
                    && !toks[k - 1].initial
                    && is_plain_surname(&toks[k - 2])
                {
                    a = k - 2;
                }
                // a listed name in a list that a strong context started keeps the chain strong
                let strong = k == 0 && {
                    let (trig, chain_strong) = self.trigger_before(text, toks[0].start, *last);
                    matches!(
                        trig,
                        Trigger::Strong | Trigger::Signature | Trigger::Greeting
                    ) || (trig == Trigger::List && chain_strong)
                };
                emit(a, m, strong, last, out);
                k = m;
                continue;
            }
            if f & FIRST != 0 {
                // ambiguous given name: only with a plainly listed surname after it
                let mut m = k + 1;
                while m < n && toks[m].initial {
                    m += 1;
                }
                if m < n && is_plain_surname(&toks[m]) {
                    emit(k, m + 1, false, last, out);
                    k = m + 1;
                    continue;
                }
                k += 1;
                continue;
            }
            // two or three words that are none of them English, a place or an
            // organisation word: "Seun Berisha", "Magnhild Barzani"
            let m = self.foreign_run(text, toks, k);
            if m > k {
                emit(k, m, false, last, out);
                k = m;
                continue;
            }
            // unknown word + distinctive surname: "Xiulan Wang", "Tendai Moyo",
            // "Satya Raghunathan" (a surname by its ending)
            if k + 1 < n {
                let u = toks[k + 1];
                let chars = text[t.start..t.end].chars().count();
                let by_ending = u.flags & (BLOCK | FIRST | AMBIG) == 0
                    && !u.particle
                    && !u.initial
                    && surname_ending(&text[u.start..u.end]);
                if (is_plain_surname(&u) || by_ending) && (2..=20).contains(&chars) {
                    emit(k, k + 2, false, last, out);
                    k += 2;
                    continue;
                }
            }
            k += 1;
        }
    }

    fn trigger_before(&self, text: &str, pos: usize, last: Option<LastName>) -> (Trigger, bool) {
        if let Some(l) = last {
            if l.end <= pos && pos - l.end <= 12 && is_list_gap(&text[l.end..pos]) {
                return (Trigger::List, l.strong);
            }
        }
        let mut start = pos.saturating_sub(40);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let src = &text.as_bytes()[start..pos];
        let mut buf = [0u8; 48];
        let len = src.len().min(48);
        for (d, s) in buf.iter_mut().zip(src) {
            *d = s.to_ascii_lowercase();
        }
        let mut end = len;
        let mut newline = false;
        loop {
            if end > 0 && matches!(buf[end - 1], b' ' | b'\t') {
                end -= 1;
            } else if end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
                end -= 1;
                newline = true;
            } else if end >= 2 && &buf[end - 2..end] == b"\\n" {
                end -= 2;
                newline = true;
            } else {
                break;
            }
        }
        let s = &buf[..end];
        let Some(&lastb) = s.last() else {
            return (Trigger::None, false);
        };
        for &(p, trig) in &self.triggers[lastb as usize] {
            if s.len() >= p.len() && &s[s.len() - p.len()..] == p {
                let before = s.len() - p.len();
                // a "--" signature delimiter stands on its own line
                let dash_ok = p != b"--" || (newline && (before == 0 || s[before - 1] == b'\n'));
                if dash_ok
                    && (before == 0
                        || !(s[before - 1].is_ascii_alphanumeric() || s[before - 1] == b'_'))
                {
                    return (trig, false);
                }
            }
        }
        (Trigger::None, false)
    }

    fn accept_triggered(
        &self,
        text: &str,
        toks: &[Tok],
        m: usize,
        trig: Trigger,
        chain_strong: bool,
    ) -> bool {
        let n = toks.len();
        let f0 = toks[0].flags;
        let known0 = f0 & (FIRST | SURNAME) != 0;
        let plain = |t: &Tok| t.flags & (FIRST | SURNAME) != 0 && t.flags & AMBIG == 0;
        let whole = m == n;
        let end_at = toks[m - 1].next;
        let two_with_listed = m >= 2 && toks[..m].iter().any(plain);
        match trig {
            Trigger::None => false,
            Trigger::Strong => true,
            Trigger::Signature => {
                whole
                    && signature_end(text, end_at)
                    && (toks[..m].iter().any(plain)
                        || self.unlisted_person(text, &toks[..m])
                        || m == 1)
            }
            Trigger::Greeting => {
                let goes_on = m < n && toks[m].flags & BLOCK != 0;
                !goes_on
                    && !before_team_word(text, end_at)
                    && (known0 || (whole && terminator_after(text, end_at, false)))
            }
            Trigger::List => {
                whole
                    && terminator_after(text, end_at, true)
                    && (chain_strong || toks[..m].iter().any(plain))
            }
            Trigger::Medium => {
                (plain(&toks[0]))
                    || (known0 && whole && clause_end(text, end_at))
                    || two_with_listed
            }
            Trigger::Weak => plain(&toks[0]) || two_with_listed,
            Trigger::Person => {
                plain(&toks[0])
                    || two_with_listed
                    || (whole && self.unlisted_person(text, &toks[..m]))
            }
        }
    }

    /// Two or three unlisted capitalised words that can be a person's name
    /// (with strong evidence from around them): no initials, no
    /// organisation, team or product words.
    fn unlisted_person(&self, text: &str, toks: &[Tok]) -> bool {
        let words = toks.iter().filter(|t| !t.particle).count();
        (2..=3).contains(&words)
            && toks.iter().all(|t| {
                let w = &text[t.start..t.end];
                t.particle
                    || (!t.initial
                        && w.chars().count() >= 2
                        && !looks_plural(w)
                        && !thing_ending(w)
                        && !ORG_WORDS.iter().any(|o| w.eq_ignore_ascii_case(o)))
            })
    }

    /// A word that is not English, not a place and not an organisation,
    /// team or product word, shaped like a name ("Berisha", "Magnhild"): a
    /// listed name counts too, unless it is also a common word.
    pub fn is_foreign_name_word(&self, w: &str) -> bool {
        let f = self.token_flags(w);
        let mut buf = [0u8; 48];
        f & (BLOCK | AMBIG | PARTICLE) == 0
            && w.chars().count() >= 3
            && fold_lower(w, &mut buf).is_some_and(|k| !ENGLISH.contains(k))
            && !looks_plural(w)
            && !thing_ending(w)
            && !ORG_WORDS.iter().any(|o| w.eq_ignore_ascii_case(o))
            && !super::places::Places::get().contains(w)
    }

    /// Where a run of two or three foreign name words starting at toks[k]
    /// ends, or `k` when there is none. Four or more such words in a row
    /// are a phrase in another language, not a name; a run after an
    /// article or "using"/"via", or before a version, a product word or an
    /// organisation word, is a thing ("the Grafana Loki setup", "Kafka
    /// Connect 3.6").
    fn foreign_run(&self, text: &str, toks: &[Tok], k: usize) -> usize {
        let n = toks.len();
        let ok =
            |t: &Tok| !t.particle && !t.initial && self.is_foreign_name_word(&text[t.start..t.end]);
        if k + 1 >= n {
            return k;
        }
        let mut m = k;
        while m < n && m - k < 4 && ok(&toks[m]) {
            m += 1;
        }
        if !(2..=3).contains(&(m - k))
            || (m < n && !toks[m].initial && ok(&toks[m]))
            || (k > 0 && ok(&toks[k - 1]))
        {
            // none, or part of a longer run that is turned down
            return k;
        }
        if m < n && self.is_org_word(&text[toks[m].start..toks[m].end]) {
            return k;
        }
        let before = text[..toks[k].start].trim_end_matches([' ', '\t']);
        let prev = before
            .rsplit(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        const THING_BEFORE: &[&str] = &[
            "the",
            "a",
            "an",
            "using",
            "use",
            "uses",
            "used",
            "via",
            "install",
            "installed",
            "deploy",
            "deployed",
            "run",
            "running",
            "on",
            "into",
            "this",
            "that",
            "our",
            "their",
            "its",
            "brand",
            "product",
            "model",
            "app",
            "tool",
            "library",
        ];
        if THING_BEFORE.iter().any(|w| prev.eq_ignore_ascii_case(w)) {
            return k;
        }
        let after = text[toks[m - 1].next..].trim_start_matches(' ');
        const THING_AFTER: &[&str] = &[
            "api",
            "apis",
            "sdk",
            "cluster",
            "server",
            "servers",
            "instance",
            "plugin",
            "plugins",
            "integration",
            "endpoint",
            "service",
            "database",
            "db",
            "app",
            "bot",
            "model",
            "models",
            "version",
            "library",
            "package",
            "module",
            "dashboard",
            "pipeline",
            "connector",
            "project",
            "repo",
            "repository",
            "restaurant",
            "hotel",
            "cafe",
            "bar",
            "brand",
            "store",
            "shop",
            "festival",
            "street",
            "road",
            "avenue",
            "river",
            "lake",
            "mountain",
            "mountains",
            "island",
            "islands",
            "valley",
            "beach",
            "park",
            "museum",
            "district",
            "region",
            "province",
        ];
        let next = after
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        // a legal form after it makes it a company: "Hoffmann Druck KG",
        // "Rossi Forniture S.r.l.", "Alpenblick Treuhand AG"
        const LEGAL_FORMS: &[&str] = &[
            "AG", "KG", "GmbH", "mbH", "OHG", "S.r.l", "Srl", "SRL", "S.p.A", "SpA", "S.A", "SA",
            "SAS", "SARL", "S.L", "SL", "BV", "B.V", "NV", "N.V", "Ltd", "LTD", "LLC", "LLP",
            "Inc", "Corp", "Co", "Oy", "Oyj", "AB", "AS", "ASA", "ApS", "A/S", "plc", "PLC", "Pty",
            "KK", "Sp", "Lda", "Ltda", "SE", "eG", "e.V", "GbR", "UG",
        ];
        let form = after
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | '"' | '|'))
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        if LEGAL_FORMS.contains(&form) {
            return k;
        }
        if after.starts_with(|c: char| c.is_ascii_digit())
            || THING_AFTER.iter().any(|w| next.eq_ignore_ascii_case(w))
        {
            return k;
        }
        m
    }

    /// A run followed by a reporting verb: "Tadeo Underwood reported ...".
    fn before_reporting_verb(&self, text: &str, end: usize) -> bool {
        let Some(rest) = text.get(end..).and_then(|r| r.strip_prefix(' ')) else {
            return false;
        };
        let w = rest
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("");
        REPORTING_VERBS.contains(&w) || rest.starts_with("and I ") || rest.starts_with("and me ")
    }
}

/// Endings that mark a word as a family name in many languages and are rare
/// in English words: Lewandowski, Shevchenko, Petrović, Eriksson,
/// Raghunathan, Papadopoulos, Popescu, Yılmazoğlu, Petrosyan...
fn surname_ending(w: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "ski", "ska", "wski", "enko", "ovic", "ović", "evic", "ević", "sson", "nathan", "swamy",
        "murthy", "opoulos", "akis", "escu", "oglu", "oğlu", "chuk", "shvili", "adze", "iyan",
        "osyan", "unyan", "arian", "ishvili", "ovitz", "owicz", "ewicz", "czyk", "zadeh", "pour",
        "bakhsh",
    ];
    let l = w.to_lowercase();
    w.chars().count() >= 6 && ENDINGS.iter().any(|e| l.ends_with(e))
}

/// Endings of English abstract nouns and product words ("Migration",
/// "Reliability", "Dashboard"), rare in names.
pub(crate) fn thing_ending(w: &str) -> bool {
    const THING_ENDINGS: &[&str] = &[
        "tion", "sion", "ment", "ness", "ity", "ing", "ance", "ence", "ship", "ware", "board",
        "book", "flow", "desk", "hub", "kit", "box", "base", "plan", "ics", "ogy", "ism",
    ];
    let l = w.to_lowercase();
    THING_ENDINGS.iter().any(|e| l.ends_with(e))
}

/// An English plural ("Toys", "Works", "Cycles"): an `s` after anything
/// but a vowel other than `e`. Unlisted surnames end in -is, -os, -as,
/// -us far more often ("Papadakis", "Santos").
fn looks_plural(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 4
        && b[b.len() - 1] == b's'
        && !matches!(b[b.len() - 2], b'a' | b'i' | b'o' | b'u' | b's')
}

fn is_plain_surname(t: &Tok) -> bool {
    t.flags & SURNAME != 0 && t.flags & (AMBIG | BLOCK) == 0 && !t.particle && !t.initial
}

/// "team", "squad", "folks" right after a run: "Dear Field Sales team".
fn before_team_word(text: &str, pos: usize) -> bool {
    let rest = text.get(pos..).unwrap_or("");
    let Some(rest) = rest.strip_prefix(' ') else {
        return false;
    };
    let w = rest
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    matches!(
        w,
        "team" | "teams" | "squad" | "folks" | "crew" | "department" | "group"
    )
}

/// Punctuation or end right after a name ("I'm Grace.", "this is Will,"),
/// or the words "from", "here", "speaking" ("this is Grace from billing").
fn clause_end(text: &str, pos: usize) -> bool {
    match text.as_bytes().get(pos) {
        None => true,
        Some(b' ') => {
            let w = text[pos + 1..]
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            matches!(w, "from" | "here" | "speaking")
        }
        Some(c) => matches!(
            c,
            b',' | b'.' | b'!' | b'?' | b';' | b':' | b')' | b'\n' | b'\r' | b'"'
        ),
    }
}

fn person_span(text: &str, s: usize, e: usize) -> Span {
    Span {
        start: s,
        end: e,
        detail: Detail::Person,
        norm: normalise_name(&text[s..e]),
    }
}

/// Case-folded, whitespace-collapsed name.
pub(crate) fn normalise_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Extends a plain given name at `k` over a middle name or initial and a
/// surname: "Mary Jane Watson", "John F. Kennedy", "Ludwig van Beethoven".
fn extend_first(toks: &[Tok], k: usize) -> usize {
    let n = toks.len();
    let mut m = k + 1;
    let mut taken = 1;
    while m < n && taken < 4 {
        let u = toks[m];
        if u.flags & BLOCK != 0 {
            break;
        }
        if u.particle {
            if m + 1 < n
                && toks[m + 1].flags & BLOCK == 0
                && !toks[m + 1].particle
                && !toks[m + 1].initial
            {
                m += 1;
                continue;
            }
            break;
        }
        if u.initial {
            m += 1;
            taken += 1;
            continue;
        }
        let p = toks[m - 1];
        let slot_open = m == k + 1 || p.initial || p.particle || p.flags & FIRST != 0;
        if slot_open || u.flags & SURNAME != 0 {
            m += 1;
            taken += 1;
            continue;
        }
        break;
    }
    // never end on a particle or a dangling initial after the surname
    while m > k + 1 && (toks[m - 1].particle) {
        m -= 1;
    }
    m
}

/// Consecutive name-ish tokens from `from` (not stop words, honorifics or
/// greetings), at most `max` words; never ending on a particle.
fn take_name_tokens(toks: &[Tok], from: usize, max: usize) -> usize {
    let mut m = from;
    let mut words = 0;
    while m < toks.len() && words < max {
        let t = toks[m];
        if t.flags & BLOCK != 0 {
            break;
        }
        if !t.particle {
            words += 1;
        }
        m += 1;
    }
    while m > from && toks[m - 1].particle {
        m -= 1;
    }
    m
}

/// "I'm", "Don't", "We're", "It'll": not names.
fn is_contraction(word: &str) -> bool {
    let Some(pos) = word.find(['\'', '\u{2019}']) else {
        return false;
    };
    let tail = word[pos..].trim_start_matches(['\'', '\u{2019}']);
    matches!(
        tail,
        "t" | "re" | "ve" | "ll" | "d" | "m" | "T" | "RE" | "VE" | "LL" | "D" | "M"
    ) || word.starts_with("I'")
        || word.starts_with("I\u{2019}")
}

fn allowed_inner_upper(prefix: &str) -> bool {
    matches!(
        prefix,
        "Mc" | "Mac" | "O" | "D" | "De" | "Di" | "Da" | "La" | "Le" | "Van" | "Von" | "St"
    )
}

fn next_is_alpha(text: &str, j: usize) -> bool {
    text.get(j..)
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_alphabetic)
}

fn starts_upper(text: &str, j: usize) -> bool {
    text.get(j..)
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_uppercase)
}

/// The word at `i` starts a word: the byte before is not part of a word, a
/// domain or code. A JSON escape like `\n` right before counts as a break.
fn starts_word(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    if p.is_ascii_alphanumeric() || p == b'_' || p >= 0x80 {
        // `\nJohn` inside raw JSON text
        return matches!(p, b'n' | b't' | b'r') && i >= 2 && b[i - 2] == b'\\';
    }
    if p == b'.' || p == b'-' || p == b'\'' {
        return !(i >= 2 && b[i - 2].is_ascii_alphanumeric());
    }
    !matches!(
        p,
        b'@' | b'$' | b'\\' | b'/' | b'#' | b'%' | b'&' | b'=' | b'`' | b'<' | b'{' | b'[' | b':'
    )
}

fn skip_word(text: &str, i: usize) -> usize {
    let b = text.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || (b[j] >= 0x80)) {
        j += 1;
    }
    while j < b.len() && !text.is_char_boundary(j) {
        j += 1;
    }
    j
}

/// What follows a name that ends a clause: punctuation, end of line or text,
/// or a word such as "and", "from", "here".
fn terminator_after(text: &str, pos: usize, list: bool) -> bool {
    let b = text.as_bytes();
    if pos >= b.len() {
        return true;
    }
    match b[pos] {
        b',' | b'.' | b'!' | b'?' | b';' | b':' | b')' | b']' | b'"' | b'\n' | b'\r' | b'|'
        | b'<' | b'(' => true,
        b'\\' => matches!(b.get(pos + 1), Some(b'n' | b'r' | b'"')),
        b' ' => {
            let rest = &text[pos + 1..];
            let w: &str = rest
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            if list {
                matches!(w, "and" | "or" | "&")
                    || rest.starts_with("& ")
                    || rest.starts_with("- ")
                    || rest.starts_with('(')
            } else {
                matches!(
                    w,
                    "and" | "from" | "here" | "speaking" | "at" | "of" | "with" | "on" | "in"
                ) || rest.starts_with("- ")
                    || rest.starts_with('(')
                    || rest.starts_with('<')
            }
        }
        _ => false,
    }
}

/// A signature name ends its line (optionally followed by a title or
/// contact after a separator).
fn signature_end(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let mut p = pos;
    while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
        p += 1;
    }
    if p >= b.len() {
        return true;
    }
    match b[p] {
        b'\n' | b'\r' | b',' | b'|' | b'(' | b'<' | b'-' | b'.' | b'"' => true,
        b'\\' => matches!(b.get(p + 1), Some(b'n' | b'r' | b'"')),
        _ => false,
    }
}

fn is_list_gap(gap: &str) -> bool {
    let g = gap.trim_matches(|c: char| c == ' ' || c == '\t');
    if matches!(
        g,
        "," | ";" | "&" | "and" | ", and" | ",and" | "/" | "+" | "or" | ", or" | "\",\"" | "\", \""
    ) {
        return true;
    }
    // bullet lists: "\n- ", "\n* ", "\n• "
    let t = g.trim_start_matches([',', ';']).trim();
    (t.starts_with('\n') || t.starts_with("\\n"))
        && t.trim_start_matches(|c: char| c.is_whitespace() || c == '\\' || c == 'n')
            .chars()
            .all(|c| matches!(c, '-' | '*' | '\u{2022}' | ' '))
}

/// Lower-cases `w` and folds common Latin accents to ASCII into `buf`.
fn fold_lower<'a>(w: &str, buf: &'a mut [u8; 48]) -> Option<&'a str> {
    let mut n = 0;
    for c in w.chars() {
        let folded: &str = match c {
            '\'' | '\u{2019}' => continue,
            'A'..='Z' | 'a'..='z' | '-' => {
                if n >= buf.len() {
                    return None;
                }
                buf[n] = (c as u8).to_ascii_lowercase();
                n += 1;
                continue;
            }
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'ą' | 'ă'
            | 'ā' => "a",
            'ç' | 'Ç' | 'ć' | 'č' | 'Ć' | 'Č' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' | 'ę' | 'ě' | 'ē' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'ı' | 'İ' | 'ī' => "i",
            'ñ' | 'Ñ' | 'ń' | 'ň' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'ő' | 'ō' => {
                "o"
            }
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'ů' | 'ű' | 'ū' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            'ß' => "ss",
            'ł' | 'Ł' => "l",
            'ś' | 'š' | 'ş' | 'ș' | 'Ś' | 'Š' | 'Ş' | 'Ș' => "s",
            'ź' | 'ż' | 'ž' | 'Ź' | 'Ż' | 'Ž' => "z",
            'ř' | 'Ř' => "r",
            'ğ' | 'Ğ' => "g",
            'ț' | 'ţ' | 'Ț' | 'Ţ' => "t",
            'đ' | 'Đ' | 'ď' => "d",
            'æ' | 'Æ' => "ae",
            _ => return None,
        };
        if n + folded.len() > buf.len() {
            return None;
        }
        buf[n..n + folded.len()].copy_from_slice(folded.as_bytes());
        n += folded.len();
    }
    std::str::from_utf8(&buf[..n]).ok()
}
