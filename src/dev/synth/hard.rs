//! The `hard` profile of `slmforge synth`: traffic shaped like real agent
//! logs rather than ten tidy, equally sized workloads. It mixes generic
//! function calling over a large, changing tool pool (xLAM/glaive style)
//! with its refusals, one fixed-tool assistant that also refuses and asks
//! clarifying questions, a multi-API agent whose every call offers all
//! APIs, multi-turn calls with tool results, two extraction workloads that
//! differ only in their output schema, unbalanced sizes with a tail of
//! one-off tasks, and three workloads of the easy profile.
//!
//! Every generator reuses the easy profile's [`Conv`] model, so each format
//! renders these calls as it renders the easy ones. Labels (see [`Kind`])
//! name what a person would call one trainable workload: one job, one kind
//! of answer. Answers are deterministic functions of the input, as in
//! [`super::workloads`].

use std::borrow::Cow;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::pii::{self, chance, pick, pick_str, R};
use super::workloads::{Answer, Conv, TCall, Tool, Turn, WORKLOADS};

/// What one call of the hard profile is: an easy workload (index into
/// [`WORKLOADS`]), a hard scenario, or one-off task `n` (index into the
/// one-off table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Easy(usize),
    FcCall,
    FcRefusal,
    BankCall,
    BankNoCall,
    MultiFlights,
    MultiHotels,
    MultiCars,
    OpsFollowupCall,
    OpsFinalAnswer,
    ExtractA,
    ExtractB,
    OneOff(usize),
}

/// The labels of the hard scenarios (one-offs are `oneoff_NN` besides).
/// The ops agent's next tool call and its final text answer after a tool
/// result are one label, `ops_agent`: one agent loop that one model serves,
/// as the easy profile's `order_status` and `travel_agent` loops are.
pub const LABELS: [&str; 10] = [
    "fc_call",
    "fc_refusal",
    "bank_call",
    "bank_no_call",
    "multiapi_flights",
    "multiapi_hotels",
    "multiapi_cars",
    "ops_agent",
    "extract_schema_a",
    "extract_schema_b",
];

/// The easy workloads mixed into the hard profile.
pub const EASY_MIXED: [&str; 3] = ["order_status", "travel_agent", "sql_generation"];

impl Kind {
    /// The ground-truth label.
    pub fn label(self) -> Cow<'static, str> {
        let i = match self {
            Kind::Easy(w) => return Cow::Borrowed(WORKLOADS[w]),
            Kind::OneOff(n) => return Cow::Owned(format!("oneoff_{:02}", n + 1)),
            Kind::FcCall => 0,
            Kind::FcRefusal => 1,
            Kind::BankCall => 2,
            Kind::BankNoCall => 3,
            Kind::MultiFlights => 4,
            Kind::MultiHotels => 5,
            Kind::MultiCars => 6,
            Kind::OpsFollowupCall | Kind::OpsFinalAnswer => 7,
            Kind::ExtractA => 8,
            Kind::ExtractB => 9,
        };
        Cow::Borrowed(LABELS[i])
    }
}

/// Shares of the calls in permille (980; the one-offs take the other 20,
/// or what is left when the one-off table runs out). The largest label is
/// about six times the median one.
const SHARES: [(Kind, usize); 14] = [
    (Kind::FcCall, 285),
    (Kind::FcRefusal, 40),
    (Kind::BankCall, 130),
    (Kind::BankNoCall, 40),
    (Kind::MultiFlights, 45),
    (Kind::MultiHotels, 40),
    (Kind::MultiCars, 30),
    (Kind::OpsFollowupCall, 40),
    (Kind::OpsFinalAnswer, 45),
    (Kind::ExtractA, 45),
    (Kind::ExtractB, 40),
    (Kind::Easy(1), 70),
    (Kind::Easy(6), 70),
    (Kind::Easy(4), 60),
];

/// One-off tasks: 2% of the calls, one call each, at most one per entry of
/// the one-off table.
const ONEOFF_PERMILLE: usize = 20;

/// The number of one-off calls for `n` calls.
pub fn oneoff_count(n: usize) -> usize {
    ((n * ONEOFF_PERMILLE + 500) / 1000).min(ONEOFFS.len())
}

/// The kinds of `n` calls in a seeded order: exact shares (largest
/// remainder), distinct one-offs drawn from the table.
pub fn plan(n: usize, rng: &mut R) -> Vec<Kind> {
    let k_one = oneoff_count(n);
    let rest = n - k_one;
    let total: usize = SHARES.iter().map(|s| s.1).sum();
    let mut counts: Vec<usize> = SHARES.iter().map(|(_, w)| rest * w / total).collect();
    let mut rem: Vec<(usize, usize)> = SHARES
        .iter()
        .enumerate()
        .map(|(i, (_, w))| (rest * w % total, i))
        .collect();
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = rest - counts.iter().sum::<usize>();
    for &(_, i) in rem.iter().take(missing) {
        counts[i] += 1;
    }
    let mut kinds = Vec::with_capacity(n);
    for (i, (k, _)) in SHARES.iter().enumerate() {
        kinds.extend(std::iter::repeat_n(*k, counts[i]));
    }
    let mut pool: Vec<usize> = (0..ONEOFFS.len()).collect();
    pool.shuffle(rng);
    kinds.extend(pool.into_iter().take(k_one).map(Kind::OneOff));
    kinds.shuffle(rng);
    kinds
}

/// A kind for a malformed record's content.
pub fn random_kind(rng: &mut R) -> Kind {
    SHARES[rng.random_range(0..SHARES.len())].0
}

/// The calling application of a kind and the slot that picks its usual
/// model (easy workloads keep their own).
pub fn app(kind: Kind) -> (&'static str, usize) {
    match kind {
        Kind::Easy(w) => (super::formats::APPS[w % super::formats::APPS.len()], w),
        Kind::FcCall | Kind::FcRefusal => ("assistant-gateway", 10),
        Kind::BankCall | Kind::BankNoCall => ("meridian-bank-assistant", 11),
        Kind::MultiFlights | Kind::MultiHotels | Kind::MultiCars => ("atlas-travel-agent", 12),
        Kind::OpsFollowupCall | Kind::OpsFinalAnswer => ("shopwell-ops-copilot", 13),
        Kind::ExtractA | Kind::ExtractB => ("talentbridge-cv-parser", 14),
        Kind::OneOff(n) => (
            ["playground", "slack-bot", "notebook", "internal-tools"][n % 4],
            n,
        ),
    }
}

/// Generates one call of a kind (easy kinds through
/// [`super::workloads::generate`]).
pub fn generate(kind: Kind, rng: &mut R) -> Conv {
    match kind {
        Kind::Easy(w) => super::workloads::generate(w, rng),
        Kind::FcCall => fc_call(rng),
        Kind::FcRefusal => fc_refusal(rng),
        Kind::BankCall => bank(rng, true),
        Kind::BankNoCall => bank(rng, false),
        Kind::MultiFlights => multiapi(rng, 0),
        Kind::MultiHotels => multiapi(rng, 1),
        Kind::MultiCars => multiapi(rng, 2),
        Kind::OpsFollowupCall => ops(rng, false),
        Kind::OpsFinalAnswer => ops(rng, true),
        Kind::ExtractA => extract(rng, 0),
        Kind::ExtractB => extract(rng, 1),
        Kind::OneOff(n) => oneoff(n),
    }
}

// ---------------------------------------------------------------- helpers

/// Replaces `{key}` slots in a template.
fn fill(tpl: &str, slots: &[(&str, &str)]) -> String {
    let mut s = tpl.to_string();
    for (k, v) in slots {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// A template drawn from `tpls`, filled.
fn say(rng: &mut R, tpls: &[&str], slots: &[(&str, &str)]) -> String {
    fill(pick_str(rng, tpls), slots)
}

fn tool(name: &'static str, description: &'static str, parameters: &str) -> Tool {
    Tool {
        name,
        description,
        parameters: serde_json::from_str(parameters).expect("valid tool schema"),
    }
}

fn call(rng: &mut R, name: &'static str, args: Value) -> TCall {
    TCall {
        id: pii::alnum(rng, 24),
        name,
        args,
    }
}

fn conv(
    workload: &'static str,
    system: &str,
    tools: Vec<Tool>,
    turns: Vec<Turn>,
    answer: Answer,
) -> Conv {
    Conv {
        workload,
        system: system.to_string(),
        tools,
        turns,
        answer,
        json_output: false,
        temperature: 0.0,
        max_tokens: 512,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [a] => a.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A date in 2025 as `YYYY-MM-DD` plus a later one `days` after it (same
/// month, so no calendar arithmetic is needed).
fn date_span(rng: &mut R, days: u32) -> (String, String) {
    let m = rng.random_range(1..=12u32);
    let d = rng.random_range(1..=20u32);
    (
        format!("2025-{m:02}-{d:02}"),
        format!("2025-{m:02}-{:02}", d + days),
    )
}

/// A dollar amount as the user writes it, and its JSON number.
fn usd(rng: &mut R) -> (String, Value) {
    let whole = *pick(
        rng,
        &[
            20u32, 45, 60, 75, 120, 150, 200, 250, 300, 480, 500, 750, 1000, 1200, 2500,
        ],
    ) + if chance(rng, 0.3) {
        rng.random_range(1..20u32)
    } else {
        0
    };
    let cents = if chance(rng, 0.2) {
        rng.random_range(1..100u32)
    } else {
        0
    };
    let grouped = if whole >= 1000 {
        format!("{},{:03}", whole / 1000, whole % 1000)
    } else {
        whole.to_string()
    };
    let num = if cents > 0 {
        json!(format!("{whole}.{cents:02}").parse::<f64>().unwrap_or(0.0))
    } else {
        json!(whole)
    };
    let shown = if cents > 0 {
        format!("${grouped}.{cents:02}")
    } else {
        match rng.random_range(0..4) {
            0 => format!("{whole} dollars"),
            1 => format!("${whole}.00"),
            _ => format!("${grouped}"),
        }
    };
    (shown, num)
}

const CITIES: &[(&str, &str)] = &[
    ("Paris", "France"),
    ("Berlin", "Germany"),
    ("Tokyo", "Japan"),
    ("New York", "USA"),
    ("London", "UK"),
    ("Madrid", "Spain"),
    ("Rome", "Italy"),
    ("Sydney", "Australia"),
    ("Toronto", "Canada"),
    ("Mumbai", "India"),
    ("São Paulo", "Brazil"),
    ("Cape Town", "South Africa"),
    ("Seoul", "South Korea"),
    ("Amsterdam", "Netherlands"),
    ("Vienna", "Austria"),
    ("Lisbon", "Portugal"),
    ("Chicago", "USA"),
    ("Singapore", "Singapore"),
    ("Dubai", "UAE"),
    ("Mexico City", "Mexico"),
    ("Stockholm", "Sweden"),
    ("Buenos Aires", "Argentina"),
    ("Istanbul", "Turkey"),
    ("Bangkok", "Thailand"),
];

fn city(rng: &mut R) -> &'static str {
    pick(rng, CITIES).0
}

fn two_cities(rng: &mut R) -> (&'static str, &'static str) {
    let a = city(rng);
    let mut b = city(rng);
    while b == a {
        b = city(rng);
    }
    (a, b)
}

// ---------------------------------------------------------------- generic function calling

const FC_SYSTEM: [&str; 3] = [
    "You are a helpful assistant with access to the following functions. Use them if required.",
    "You are a helpful assistant with access to the following functions. Use them if required -",
    "You are a helpful assistant that can call functions. Use the functions provided when they help with the user's request; if none of them fits, say so.",
];

/// A function of the generic pool: name, description, JSON schema, and
/// what it lets the assistant do (for refusals).
struct FcFn {
    name: &'static str,
    description: &'static str,
    parameters: &'static str,
    can: &'static str,
    /// A request this function serves, and the call's arguments.
    request: fn(&mut R) -> (String, Value),
}

const fn f(
    name: &'static str,
    description: &'static str,
    parameters: &'static str,
    can: &'static str,
    request: fn(&mut R) -> (String, Value),
) -> FcFn {
    FcFn {
        name,
        description,
        parameters,
        can,
        request,
    }
}

const FC_POOL: &[FcFn] = &[
    f(
        "get_current_weather",
        "Get the current weather in a given location",
        r#"{"type":"object","properties":{"location":{"type":"string","description":"The city, e.g. San Francisco"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}"#,
        "check the current weather",
        fc_get_current_weather,
    ),
    f(
        "get_weather_forecast",
        "Get the daily weather forecast for a location",
        r#"{"type":"object","properties":{"location":{"type":"string","description":"The city"},"days":{"type":"integer","description":"Number of days, 1 to 7"}},"required":["location","days"]}"#,
        "get weather forecasts",
        fc_get_weather_forecast,
    ),
    f(
        "convert_currency",
        "Convert an amount from one currency to another",
        r#"{"type":"object","properties":{"amount":{"type":"number","description":"The amount to convert"},"from_currency":{"type":"string","description":"ISO 4217 code of the source currency"},"to_currency":{"type":"string","description":"ISO 4217 code of the target currency"}},"required":["amount","from_currency","to_currency"]}"#,
        "convert currencies",
        fc_convert_currency,
    ),
    f(
        "get_exchange_rate",
        "Get the current exchange rate between two currencies",
        r#"{"type":"object","properties":{"base_currency":{"type":"string"},"target_currency":{"type":"string"}},"required":["base_currency","target_currency"]}"#,
        "look up exchange rates",
        fc_get_exchange_rate,
    ),
    f(
        "get_stock_price",
        "Get the current stock price of a company",
        r#"{"type":"object","properties":{"symbol":{"type":"string","description":"The stock ticker, e.g. AAPL"}},"required":["symbol"]}"#,
        "get stock quotes",
        fc_get_stock_price,
    ),
    f(
        "get_stock_history",
        "Get the historical prices of a stock over a period",
        r#"{"type":"object","properties":{"symbol":{"type":"string"},"period":{"type":"string","enum":["1w","1m","3m","6m","1y","5y"]}},"required":["symbol","period"]}"#,
        "show stock price history",
        fc_get_stock_history,
    ),
    f(
        "search_recipes",
        "Search for recipes by ingredients",
        r#"{"type":"object","properties":{"ingredients":{"type":"array","items":{"type":"string"}},"diet":{"type":"string","enum":["vegetarian","vegan","gluten-free","keto"]}},"required":["ingredients"]}"#,
        "search for recipes",
        fc_search_recipes,
    ),
    f(
        "get_nutrition_info",
        "Get the nutrition facts of a food",
        r#"{"type":"object","properties":{"food":{"type":"string"},"quantity_grams":{"type":"number"}},"required":["food","quantity_grams"]}"#,
        "look up nutrition facts",
        fc_get_nutrition_info,
    ),
    f(
        "convert_units",
        "Convert a value between units of measurement",
        r#"{"type":"object","properties":{"value":{"type":"number"},"from_unit":{"type":"string"},"to_unit":{"type":"string"}},"required":["value","from_unit","to_unit"]}"#,
        "convert units of measurement",
        fc_convert_units,
    ),
    f(
        "get_current_time",
        "Get the current local time in a timezone",
        r#"{"type":"object","properties":{"timezone":{"type":"string","description":"IANA timezone, e.g. Europe/Paris"}},"required":["timezone"]}"#,
        "tell the current time in a timezone",
        fc_get_current_time,
    ),
    f(
        "convert_timezone",
        "Convert a time from one timezone to another",
        r#"{"type":"object","properties":{"time":{"type":"string","description":"HH:MM, 24-hour"},"from_timezone":{"type":"string"},"to_timezone":{"type":"string"}},"required":["time","from_timezone","to_timezone"]}"#,
        "convert times between timezones",
        fc_convert_timezone,
    ),
    f(
        "translate_text",
        "Translate text into another language",
        r#"{"type":"object","properties":{"text":{"type":"string"},"target_language":{"type":"string"},"source_language":{"type":"string"}},"required":["text","target_language"]}"#,
        "translate text",
        fc_translate_text,
    ),
    f(
        "detect_language",
        "Detect the language of a text",
        r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#,
        "detect the language of a text",
        fc_detect_language,
    ),
    f(
        "calculate_distance",
        "Calculate the distance between two places",
        r#"{"type":"object","properties":{"origin":{"type":"string"},"destination":{"type":"string"},"mode":{"type":"string","enum":["driving","walking","bicycling","transit"]}},"required":["origin","destination"]}"#,
        "calculate distances between places",
        fc_calculate_distance,
    ),
    f(
        "get_directions",
        "Get step-by-step directions between two places",
        r#"{"type":"object","properties":{"origin":{"type":"string"},"destination":{"type":"string"},"mode":{"type":"string","enum":["driving","walking","bicycling","transit"]}},"required":["origin","destination","mode"]}"#,
        "give directions",
        fc_get_directions,
    ),
    f(
        "search_news",
        "Search news articles",
        r#"{"type":"object","properties":{"query":{"type":"string"},"language":{"type":"string","description":"ISO 639-1 code"},"from_date":{"type":"string","description":"YYYY-MM-DD"}},"required":["query"]}"#,
        "search news articles",
        fc_search_news,
    ),
    f(
        "get_top_headlines",
        "Get the top headlines for a category and country",
        r#"{"type":"object","properties":{"category":{"type":"string","enum":["business","technology","sports","health","science","entertainment"]},"country":{"type":"string","description":"ISO 3166 alpha-2 code"}},"required":["category","country"]}"#,
        "fetch top headlines",
        fc_get_top_headlines,
    ),
    f(
        "search_movies",
        "Look up a movie by title",
        r#"{"type":"object","properties":{"title":{"type":"string"},"year":{"type":"integer"}},"required":["title"]}"#,
        "look up movie details",
        fc_search_movies,
    ),
    f(
        "get_movie_showtimes",
        "Get cinema showtimes for a movie",
        r#"{"type":"object","properties":{"movie":{"type":"string"},"city":{"type":"string"},"date":{"type":"string"}},"required":["movie","city","date"]}"#,
        "find cinema showtimes",
        fc_get_movie_showtimes,
    ),
    f(
        "search_books",
        "Search books by topic or author",
        r#"{"type":"object","properties":{"query":{"type":"string"},"author":{"type":"string"}},"required":["query"]}"#,
        "search for books",
        fc_search_books,
    ),
    f(
        "calculate_bmi",
        "Calculate the body mass index",
        r#"{"type":"object","properties":{"weight_kg":{"type":"number"},"height_cm":{"type":"number"}},"required":["weight_kg","height_cm"]}"#,
        "calculate BMI",
        fc_calculate_bmi,
    ),
    f(
        "calculate_loan_payment",
        "Calculate the monthly payment of a loan",
        r#"{"type":"object","properties":{"principal":{"type":"number"},"annual_rate":{"type":"number","description":"Interest rate in percent"},"years":{"type":"integer"}},"required":["principal","annual_rate","years"]}"#,
        "calculate loan payments",
        fc_calculate_loan_payment,
    ),
    f(
        "calculate_tip",
        "Calculate the tip for a bill",
        r#"{"type":"object","properties":{"bill_amount":{"type":"number"},"tip_percent":{"type":"number"}},"required":["bill_amount","tip_percent"]}"#,
        "calculate tips",
        fc_calculate_tip,
    ),
    f(
        "calculate_age",
        "Calculate someone's age from a birth date",
        r#"{"type":"object","properties":{"birth_date":{"type":"string","description":"YYYY-MM-DD"}},"required":["birth_date"]}"#,
        "calculate ages",
        fc_calculate_age,
    ),
    f(
        "generate_password",
        "Generate a random password",
        r#"{"type":"object","properties":{"length":{"type":"integer"},"include_symbols":{"type":"boolean"}},"required":["length"]}"#,
        "generate passwords",
        fc_generate_password,
    ),
    f(
        "create_qr_code",
        "Create a QR code for a text or URL",
        r#"{"type":"object","properties":{"data":{"type":"string"},"size":{"type":"integer","description":"Size in pixels"}},"required":["data"]}"#,
        "create QR codes",
        fc_create_qr_code,
    ),
    f(
        "shorten_url",
        "Shorten a long URL",
        r#"{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}"#,
        "shorten URLs",
        fc_shorten_url,
    ),
    f(
        "validate_email",
        "Check whether an email address is valid and deliverable",
        r#"{"type":"object","properties":{"email":{"type":"string"}},"required":["email"]}"#,
        "validate email addresses",
        fc_validate_email,
    ),
    f(
        "send_email",
        "Send an email",
        r#"{"type":"object","properties":{"to":{"type":"string"},"subject":{"type":"string"},"body":{"type":"string"}},"required":["to","subject","body"]}"#,
        "send emails",
        fc_send_email,
    ),
    f(
        "create_todo",
        "Add an item to the user's to-do list",
        r#"{"type":"object","properties":{"task":{"type":"string"},"due_date":{"type":"string"}},"required":["task"]}"#,
        "add items to a to-do list",
        fc_create_todo,
    ),
    f(
        "set_reminder",
        "Set a reminder at a given time",
        r#"{"type":"object","properties":{"message":{"type":"string"},"time":{"type":"string","description":"HH:MM, 24-hour"}},"required":["message","time"]}"#,
        "set reminders",
        fc_set_reminder,
    ),
    f(
        "search_restaurants",
        "Search restaurants by cuisine and location",
        r#"{"type":"object","properties":{"location":{"type":"string"},"cuisine":{"type":"string"},"price_range":{"type":"string","enum":["$","$$","$$$"]}},"required":["location","cuisine"]}"#,
        "search for restaurants",
        fc_search_restaurants,
    ),
    f(
        "get_flight_status",
        "Get the status of a flight",
        r#"{"type":"object","properties":{"flight_number":{"type":"string"},"date":{"type":"string"}},"required":["flight_number","date"]}"#,
        "check flight status",
        fc_get_flight_status,
    ),
    f(
        "get_public_holidays",
        "List the public holidays of a country in a year",
        r#"{"type":"object","properties":{"country_code":{"type":"string"},"year":{"type":"integer"}},"required":["country_code","year"]}"#,
        "list public holidays",
        fc_get_public_holidays,
    ),
    f(
        "get_match_results",
        "Get the latest match results of a team",
        r#"{"type":"object","properties":{"team":{"type":"string"},"league":{"type":"string"}},"required":["team"]}"#,
        "get sports results",
        fc_get_match_results,
    ),
    f(
        "get_crypto_price",
        "Get the current price of a cryptocurrency",
        r#"{"type":"object","properties":{"coin":{"type":"string"},"currency":{"type":"string"}},"required":["coin","currency"]}"#,
        "get cryptocurrency prices",
        fc_get_crypto_price,
    ),
    f(
        "get_air_quality",
        "Get the current air quality index of a city",
        r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#,
        "check air quality",
        fc_get_air_quality,
    ),
    f(
        "find_nearby_places",
        "Find places of a type near a location",
        r#"{"type":"object","properties":{"location":{"type":"string"},"place_type":{"type":"string"},"radius_m":{"type":"integer"}},"required":["location","place_type"]}"#,
        "find nearby places",
        fc_find_nearby_places,
    ),
    f(
        "get_artist_top_tracks",
        "Get the most popular tracks of an artist",
        r#"{"type":"object","properties":{"artist":{"type":"string"}},"required":["artist"]}"#,
        "look up an artist's top tracks",
        fc_get_artist_top_tracks,
    ),
    f(
        "get_word_definition",
        "Get the dictionary definition of a word",
        r#"{"type":"object","properties":{"word":{"type":"string"}},"required":["word"]}"#,
        "define words",
        fc_get_word_definition,
    ),
    f(
        "calculate_discount",
        "Calculate the price after a discount",
        r#"{"type":"object","properties":{"original_price":{"type":"number"},"discount_percent":{"type":"number"}},"required":["original_price","discount_percent"]}"#,
        "calculate discounts",
        fc_calculate_discount,
    ),
    f(
        "get_random_quote",
        "Get a random quote from a category",
        r#"{"type":"object","properties":{"category":{"type":"string","enum":["inspiration","love","success","humor","wisdom","life"]}},"required":["category"]}"#,
        "fetch quotes",
        fc_get_random_quote,
    ),
];

/// The number of functions in the generic pool.
pub fn fc_pool_size() -> usize {
    FC_POOL.len()
}

const CURRENCIES: &[(&str, &str)] = &[
    ("USD", "US dollars"),
    ("EUR", "euros"),
    ("GBP", "British pounds"),
    ("JPY", "Japanese yen"),
    ("CHF", "Swiss francs"),
    ("CAD", "Canadian dollars"),
    ("AUD", "Australian dollars"),
    ("INR", "Indian rupees"),
    ("SEK", "Swedish kronor"),
    ("MXN", "Mexican pesos"),
];

const TICKERS: &[(&str, &str)] = &[
    ("AAPL", "Apple"),
    ("MSFT", "Microsoft"),
    ("GOOGL", "Alphabet"),
    ("AMZN", "Amazon"),
    ("TSLA", "Tesla"),
    ("NVDA", "Nvidia"),
    ("META", "Meta"),
    ("NFLX", "Netflix"),
    ("ASML", "ASML"),
    ("IBM", "IBM"),
    ("KO", "Coca-Cola"),
    ("DIS", "Disney"),
    ("NKE", "Nike"),
];

const ZONES: &[(&str, &str)] = &[
    ("Tokyo", "Asia/Tokyo"),
    ("New York", "America/New_York"),
    ("London", "Europe/London"),
    ("Sydney", "Australia/Sydney"),
    ("Berlin", "Europe/Berlin"),
    ("Mumbai", "Asia/Kolkata"),
    ("São Paulo", "America/Sao_Paulo"),
    ("Los Angeles", "America/Los_Angeles"),
    ("Dubai", "Asia/Dubai"),
    ("Singapore", "Asia/Singapore"),
    ("Toronto", "America/Toronto"),
    ("Mexico City", "America/Mexico_City"),
];

const LANDMARKS: &[(&str, &str)] = &[
    ("the Eiffel Tower", "the Louvre"),
    ("Times Square", "Central Park"),
    ("Big Ben", "Tower Bridge"),
    ("the Colosseum", "the Trevi Fountain"),
    ("Sagrada Familia", "Park Güell"),
    ("the Brandenburg Gate", "Alexanderplatz"),
    ("Shibuya Crossing", "Tokyo Tower"),
    ("the Golden Gate Bridge", "Fisherman's Wharf"),
    ("the Sydney Opera House", "Bondi Beach"),
    ("the Rijksmuseum", "the Anne Frank House"),
    ("Charles Bridge", "Prague Castle"),
    ("Marina Bay Sands", "Gardens by the Bay"),
];

const MODES: &[(&str, &str)] = &[
    ("driving", "by car"),
    ("walking", "on foot"),
    ("bicycling", "by bike"),
    ("transit", "by public transport"),
];

fn fc_get_current_weather(rng: &mut R) -> (String, Value) {
    let c = city(rng);
    let q = say(
        rng,
        &[
            "What's the weather like in {c} right now?",
            "How warm is it in {c} at the moment?",
            "Is it raining in {c} currently?",
            "Current weather conditions in {c}?",
            "Can you check the weather in {c} for me?",
        ],
        &[("c", c)],
    );
    if chance(rng, 0.3) {
        let (unit, u) = *pick(rng, &[("celsius", "Celsius"), ("fahrenheit", "Fahrenheit")]);
        (
            format!("{q} Give me the temperature in {u}."),
            json!({"location": c, "unit": unit}),
        )
    } else {
        (q, json!({"location": c}))
    }
}

fn fc_get_weather_forecast(rng: &mut R) -> (String, Value) {
    let c = city(rng);
    let n = rng.random_range(2..=7u32);
    let q = say(
        rng,
        &[
            "What will the weather be in {c} over the next {n} days?",
            "{n}-day forecast for {c}, please.",
            "Give me the weather forecast for {c} for the coming {n} days.",
            "I'm visiting {c} - what's the forecast for the next {n} days?",
        ],
        &[("c", c), ("n", &n.to_string())],
    );
    (q, json!({"location": c, "days": n}))
}

fn fc_convert_currency(rng: &mut R) -> (String, Value) {
    let a = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
    let mut b = *pick(rng, CURRENCIES);
    while b.0 == a.0 {
        b = *pick(rng, CURRENCIES);
    }
    let amt = *pick(
        rng,
        &[
            20u32, 50, 75, 100, 150, 250, 400, 500, 750, 1000, 1200, 2500, 5000,
        ],
    );
    let q = say(
        rng,
        &[
            "How much is {amt} {a} in {b}?",
            "Convert {amt} {a} to {b}.",
            "I have {amt} {an}. What is that in {bn}?",
            "Please convert {amt} {an} into {bn}.",
        ],
        &[
            ("amt", &amt.to_string()),
            ("a", a.0),
            ("b", b.0),
            ("an", a.1),
            ("bn", b.1),
        ],
    );
    (
        q,
        json!({"amount": amt, "from_currency": a.0, "to_currency": b.0}),
    )
}

fn fc_get_exchange_rate(rng: &mut R) -> (String, Value) {
    let a = *pick(rng, CURRENCIES);
    let mut b = *pick(rng, CURRENCIES);
    while b.0 == a.0 {
        b = *pick(rng, CURRENCIES);
    }
    let q = say(
        rng,
        &[
            "What's the current exchange rate from {a} to {b}?",
            "{a}/{b} rate today?",
            "What's the exchange rate between {an} and {bn} right now?",
            "Look up the {a} to {b} exchange rate.",
        ],
        &[("a", a.0), ("b", b.0), ("an", a.1), ("bn", b.1)],
    );
    (q, json!({"base_currency": a.0, "target_currency": b.0}))
}

fn fc_get_stock_price(rng: &mut R) -> (String, Value) {
    let (t, co) = *pick(rng, TICKERS);
    let q = say(
        rng,
        &[
            "What's {co}'s stock price?",
            "Current price of {t}?",
            "How is {t} trading right now?",
            "Get me a quote for {co} ({t}).",
        ],
        &[("t", t), ("co", co)],
    );
    (q, json!({"symbol": t}))
}

fn fc_get_stock_history(rng: &mut R) -> (String, Value) {
    let (t, co) = *pick(rng, TICKERS);
    let (p, pw) = *pick(
        rng,
        &[
            ("1w", "week"),
            ("1m", "month"),
            ("3m", "three months"),
            ("6m", "six months"),
            ("1y", "year"),
            ("5y", "five years"),
        ],
    );
    let q = say(
        rng,
        &[
            "How has {co} stock performed over the last {pw}?",
            "Show me {t}'s price history for the past {pw}.",
            "Chart {t} over the last {pw}.",
        ],
        &[("t", t), ("co", co), ("pw", pw)],
    );
    (q, json!({"symbol": t, "period": p}))
}

fn fc_search_recipes(rng: &mut R) -> (String, Value) {
    let mut pool = vec![
        "chicken",
        "rice",
        "spinach",
        "chickpeas",
        "tomatoes",
        "eggs",
        "feta",
        "mushrooms",
        "potatoes",
        "tofu",
        "salmon",
        "lentils",
        "zucchini",
        "coconut milk",
    ];
    pool.shuffle(rng);
    let k = rng.random_range(2..=3);
    let ing: Vec<&str> = pool.into_iter().take(k).collect();
    let list = and_list(&ing);
    if chance(rng, 0.4) {
        let diet = pick_str(rng, &["vegetarian", "vegan", "gluten-free", "keto"]);
        let q = say(
            rng,
            &[
                "Find me a {d} recipe with {l}.",
                "Any {d} dishes I can make with {l}?",
            ],
            &[("d", diet), ("l", &list)],
        );
        (q, json!({"ingredients": ing, "diet": diet}))
    } else {
        let q = say(
            rng,
            &[
                "I have {l} in the fridge. What can I cook?",
                "Any recipe ideas using {l}?",
                "Search recipes with {l}.",
            ],
            &[("l", &list)],
        );
        (q, json!({"ingredients": ing}))
    }
}

fn fc_get_nutrition_info(rng: &mut R) -> (String, Value) {
    let food = pick_str(
        rng,
        &[
            "oatmeal",
            "almonds",
            "brown rice",
            "avocado",
            "chicken breast",
            "cheddar",
            "banana",
            "quinoa",
        ],
    );
    let g = *pick(rng, &[30u32, 50, 100, 150, 200, 250]);
    let q = say(
        rng,
        &[
            "How many calories are in {g} grams of {food}?",
            "Nutrition facts for {g}g of {food}?",
            "What's the protein content of {g} g of {food}?",
        ],
        &[("g", &g.to_string()), ("food", food)],
    );
    (q, json!({"food": food, "quantity_grams": g}))
}

fn fc_convert_units(rng: &mut R) -> (String, Value) {
    let (a, b) = *pick(
        rng,
        &[
            ("miles", "kilometers"),
            ("kilograms", "pounds"),
            ("feet", "meters"),
            ("liters", "gallons"),
            ("inches", "centimeters"),
            ("ounces", "grams"),
            ("kilometers", "miles"),
            ("pounds", "kilograms"),
        ],
    );
    let v = *pick(rng, &[3u32, 5, 12, 26, 42, 60, 100, 150, 500]);
    let q = say(
        rng,
        &[
            "Convert {v} {a} to {b}.",
            "How many {b} is {v} {a}?",
            "What is {v} {a} in {b}?",
        ],
        &[("v", &v.to_string()), ("a", a), ("b", b)],
    );
    (q, json!({"value": v, "from_unit": a, "to_unit": b}))
}

fn fc_get_current_time(rng: &mut R) -> (String, Value) {
    let (c, z) = *pick(rng, ZONES);
    let q = say(
        rng,
        &[
            "What time is it in {c} right now?",
            "Current local time in {c}?",
            "Is it late in {c}? What's the time there?",
        ],
        &[("c", c)],
    );
    (q, json!({"timezone": z}))
}

fn fc_convert_timezone(rng: &mut R) -> (String, Value) {
    let a = *pick(rng, ZONES);
    let mut b = *pick(rng, ZONES);
    while b.0 == a.0 {
        b = *pick(rng, ZONES);
    }
    let t = pii::time_24h(rng);
    let q = say(
        rng,
        &[
            "If it's {t} in {a}, what time is it in {b}?",
            "Convert {t} {a} time to {b} time.",
            "My call is at {t} {a} time - what's that in {b}?",
        ],
        &[("t", &t), ("a", a.0), ("b", b.0)],
    );
    (
        q,
        json!({"time": t, "from_timezone": a.1, "to_timezone": b.1}),
    )
}

fn fc_translate_text(rng: &mut R) -> (String, Value) {
    let text = pick_str(
        rng,
        &[
            "Where is the train station?",
            "Thank you for your help",
            "The meeting is moved to Thursday",
            "I would like a table for two",
            "How much does this cost?",
            "Please close the door",
            "Happy birthday!",
            "We are out of stock",
            "See you tomorrow morning",
            "Is breakfast included?",
        ],
    );
    let lang = pick_str(
        rng,
        &[
            "Spanish",
            "French",
            "German",
            "Italian",
            "Japanese",
            "Portuguese",
            "Dutch",
            "Korean",
            "Polish",
            "Turkish",
        ],
    );
    if chance(rng, 0.3) {
        let q = fill(
            "Translate from English to {l}: {t}",
            &[("l", lang), ("t", text)],
        );
        (
            q,
            json!({"text": text, "target_language": lang, "source_language": "English"}),
        )
    } else {
        let q = say(
            rng,
            &[
                "Translate '{t}' into {l}.",
                "How do you say \"{t}\" in {l}?",
                "Can you translate this to {l}: {t}",
            ],
            &[("l", lang), ("t", text)],
        );
        (q, json!({"text": text, "target_language": lang}))
    }
}

fn fc_detect_language(rng: &mut R) -> (String, Value) {
    let t = pick_str(
        rng,
        &[
            "Wo ist der Bahnhof?",
            "¿Dónde está la biblioteca?",
            "Je voudrais un café, s'il vous plaît",
            "Obrigado pela ajuda",
            "Dziękuję bardzo",
            "Grazie mille per tutto",
            "Hoe laat is het?",
            "Tack så mycket",
            "Bu ne kadar?",
            "Kiitos paljon",
        ],
    );
    let q = say(
        rng,
        &[
            "What language is this: \"{t}\"?",
            "Which language is \"{t}\" written in?",
            "Detect the language of: {t}",
        ],
        &[("t", t)],
    );
    (q, json!({"text": t}))
}

fn fc_calculate_distance(rng: &mut R) -> (String, Value) {
    let (a, b) = two_cities(rng);
    match rng.random_range(0..3) {
        0 => (
            say(
                rng,
                &[
                    "How far is it from {a} to {b}?",
                    "Distance between {a} and {b}?",
                ],
                &[("a", a), ("b", b)],
            ),
            json!({"origin": a, "destination": b}),
        ),
        1 => (
            fill(
                "What's the driving distance between {a} and {b}?",
                &[("a", a), ("b", b)],
            ),
            json!({"origin": a, "destination": b, "mode": "driving"}),
        ),
        _ => (
            fill(
                "How many kilometers is it from {a} to {b} by train or bus?",
                &[("a", a), ("b", b)],
            ),
            json!({"origin": a, "destination": b, "mode": "transit"}),
        ),
    }
}

fn fc_get_directions(rng: &mut R) -> (String, Value) {
    let (mut a, mut b) = *pick(rng, LANDMARKS);
    if chance(rng, 0.5) {
        std::mem::swap(&mut a, &mut b);
    }
    let (mode, words) = *pick(rng, MODES);
    let q = say(
        rng,
        &[
            "How do I get from {a} to {b} {w}?",
            "Directions from {a} to {b}, {w} please.",
            "Route me from {a} to {b} {w}.",
        ],
        &[("a", a), ("b", b), ("w", words)],
    );
    (q, json!({"origin": a, "destination": b, "mode": mode}))
}

fn fc_search_news(rng: &mut R) -> (String, Value) {
    let topic = pick_str(
        rng,
        &[
            "electric vehicles",
            "AI regulation",
            "the Champions League final",
            "interest rates",
            "renewable energy",
            "the housing market",
            "space exploration",
            "the climate summit",
            "chip manufacturing",
            "remote work",
        ],
    );
    match rng.random_range(0..3) {
        0 => {
            let d = pii::iso_date(rng);
            (
                fill("Any news on {t} since {d}?", &[("t", topic), ("d", &d)]),
                json!({"query": topic, "from_date": d}),
            )
        }
        1 => {
            let (code, name) = *pick(
                rng,
                &[("de", "German"), ("fr", "French"), ("es", "Spanish")],
            );
            (
                fill(
                    "Search for {n}-language articles about {t}.",
                    &[("t", topic), ("n", name)],
                ),
                json!({"query": topic, "language": code}),
            )
        }
        _ => (
            say(
                rng,
                &[
                    "Find recent news about {t}.",
                    "What's in the news about {t}?",
                ],
                &[("t", topic)],
            ),
            json!({"query": topic}),
        ),
    }
}

fn fc_get_top_headlines(rng: &mut R) -> (String, Value) {
    let cat = pick_str(
        rng,
        &[
            "business",
            "technology",
            "sports",
            "health",
            "science",
            "entertainment",
        ],
    );
    let (cc, cn) = *pick(
        rng,
        &[
            ("us", "the US"),
            ("gb", "the UK"),
            ("de", "Germany"),
            ("fr", "France"),
            ("in", "India"),
            ("jp", "Japan"),
            ("br", "Brazil"),
            ("ca", "Canada"),
        ],
    );
    let q = say(
        rng,
        &[
            "What are today's top {cat} headlines in {cn}?",
            "Show me the latest {cat} headlines from {cn}.",
            "Top {cat} stories in {cn}?",
        ],
        &[("cat", cat), ("cn", cn)],
    );
    (q, json!({"category": cat, "country": cc}))
}

fn fc_search_movies(rng: &mut R) -> (String, Value) {
    let (t, y) = *pick(
        rng,
        &[
            ("Inception", 2010u32),
            ("The Matrix", 1999),
            ("Parasite", 2019),
            ("Amélie", 2001),
            ("Interstellar", 2014),
            ("Spirited Away", 2001),
            ("The Godfather", 1972),
            ("Arrival", 2016),
            ("Whiplash", 2014),
            ("Dune", 2021),
            ("Pulp Fiction", 1994),
        ],
    );
    if chance(rng, 0.4) {
        let q = say(
            rng,
            &[
                "Who directed {t} ({y})?",
                "Find details for the {y} film {t}.",
            ],
            &[("t", t), ("y", &y.to_string())],
        );
        (q, json!({"title": t, "year": y}))
    } else {
        let q = say(
            rng,
            &[
                "Tell me about the movie {t}.",
                "What's the rating of {t}?",
                "Who stars in {t}?",
            ],
            &[("t", t)],
        );
        (q, json!({"title": t}))
    }
}

fn fc_get_movie_showtimes(rng: &mut R) -> (String, Value) {
    let m = pick_str(
        rng,
        &[
            "Dune: Part Two",
            "Inside Out 2",
            "Wicked",
            "Gladiator II",
            "The Wild Robot",
            "Moana 2",
            "Deadpool & Wolverine",
        ],
    );
    let c = city(rng);
    let d = pii::iso_date(rng);
    let q = say(
        rng,
        &[
            "When is {m} showing in {c} on {d}?",
            "Showtimes for {m} in {c}, {d}?",
            "Can I catch {m} at a cinema in {c} on {d}?",
        ],
        &[("m", m), ("c", c), ("d", &d)],
    );
    (q, json!({"movie": m, "city": c, "date": d}))
}

fn fc_search_books(rng: &mut R) -> (String, Value) {
    let topic = pick_str(
        rng,
        &[
            "stoicism",
            "machine learning",
            "the French Revolution",
            "gardening",
            "negotiation",
            "black holes",
            "minimalism",
            "Roman history",
        ],
    );
    if chance(rng, 0.35) {
        let a = pick_str(
            rng,
            &[
                "Mary Beard",
                "Carl Sagan",
                "Ryan Holiday",
                "Yuval Noah Harari",
                "Malcolm Gladwell",
            ],
        );
        (
            fill("Any good books on {t} by {a}?", &[("t", topic), ("a", a)]),
            json!({"query": topic, "author": a}),
        )
    } else {
        (
            say(
                rng,
                &["Find books about {t}.", "Recommend some books on {t}."],
                &[("t", topic)],
            ),
            json!({"query": topic}),
        )
    }
}

fn fc_calculate_bmi(rng: &mut R) -> (String, Value) {
    let w = rng.random_range(48..=115u32);
    let h = rng.random_range(152..=198u32);
    let q = say(
        rng,
        &[
            "I weigh {w} kg and I'm {h} cm tall. What's my BMI?",
            "Calculate the BMI for {w}kg and {h}cm.",
            "What's the BMI of someone who is {h} cm and {w} kg?",
        ],
        &[("w", &w.to_string()), ("h", &h.to_string())],
    );
    (q, json!({"weight_kg": w, "height_cm": h}))
}

fn fc_calculate_loan_payment(rng: &mut R) -> (String, Value) {
    let p = *pick(rng, &[15000u32, 25000, 180000, 250000, 320000, 450000]);
    let r = *pick(rng, &["3.5", "4.2", "5", "5.75", "6.1", "7.25"]);
    let y = *pick(rng, &[5u32, 10, 15, 20, 25, 30]);
    let q = say(
        rng,
        &[
            "What would the monthly payment be on a ${p} loan at {r}% over {y} years?",
            "Calculate my mortgage payment: {p} borrowed, {r}% interest, {y}-year term.",
            "If I borrow {p} at {r} percent for {y} years, how much do I pay per month?",
        ],
        &[("p", &p.to_string()), ("r", r), ("y", &y.to_string())],
    );
    let rate: f64 = r.parse().unwrap_or(0.0);
    (q, json!({"principal": p, "annual_rate": rate, "years": y}))
}

fn fc_calculate_tip(rng: &mut R) -> (String, Value) {
    let b = rng.random_range(18..=240u32);
    let t = *pick(rng, &[10u32, 12, 15, 18, 20, 22, 25]);
    let q = say(
        rng,
        &[
            "Our bill is ${b}. How much is a {t}% tip?",
            "What's a {t} percent tip on {b} dollars?",
            "Calculate a {t}% tip for a ${b} bill.",
        ],
        &[("b", &b.to_string()), ("t", &t.to_string())],
    );
    (q, json!({"bill_amount": b, "tip_percent": t}))
}

fn fc_calculate_age(rng: &mut R) -> (String, Value) {
    let y = rng.random_range(1950..=2010u32);
    let m = rng.random_range(1..=12u32);
    let d = rng.random_range(1..=28u32);
    let date = format!("{y}-{m:02}-{d:02}");
    let q = say(
        rng,
        &[
            "How old is someone born on {d}?",
            "Calculate the age of a person born {d}.",
            "If my birthday is {d}, how old am I?",
        ],
        &[("d", &date)],
    );
    (q, json!({"birth_date": date}))
}

fn fc_generate_password(rng: &mut R) -> (String, Value) {
    let n = *pick(rng, &[8u32, 12, 16, 20, 24, 32]);
    match rng.random_range(0..3) {
        0 => (
            fill(
                "Generate a {n}-character password with symbols.",
                &[("n", &n.to_string())],
            ),
            json!({"length": n, "include_symbols": true}),
        ),
        1 => (
            fill(
                "I need a strong password, {n} characters, no special characters.",
                &[("n", &n.to_string())],
            ),
            json!({"length": n, "include_symbols": false}),
        ),
        _ => (
            fill(
                "Make me a random password of length {n}.",
                &[("n", &n.to_string())],
            ),
            json!({"length": n}),
        ),
    }
}

fn fc_create_qr_code(rng: &mut R) -> (String, Value) {
    let (_, domain) = *pick(rng, pii::COMPANIES);
    let path = pick_str(rng, &["menu", "wifi", "event", "feedback", "signup"]);
    let url = format!("https://{domain}/{path}");
    if chance(rng, 0.35) {
        let s = *pick(rng, &[200u32, 300, 512, 1024]);
        (
            fill(
                "Make a QR code that links to {u}, {s} pixels wide.",
                &[("u", &url), ("s", &s.to_string())],
            ),
            json!({"data": url, "size": s}),
        )
    } else {
        (
            say(
                rng,
                &[
                    "Create a QR code for {u}.",
                    "I need a QR code pointing to {u}.",
                ],
                &[("u", &url)],
            ),
            json!({"data": url}),
        )
    }
}

fn fc_shorten_url(rng: &mut R) -> (String, Value) {
    let (_, domain) = *pick(rng, pii::COMPANIES);
    let url = format!(
        "https://www.{domain}/blog/{}?utm_source=newsletter&utm_campaign={}",
        pick_str(
            rng,
            &[
                "product-update",
                "spring-sale",
                "hiring-2025",
                "case-study",
                "release-notes"
            ]
        ),
        pii::digits(rng, 6)
    );
    let q = say(
        rng,
        &[
            "Shorten this link: {u}",
            "Can you make {u} shorter?",
            "I need a short URL for {u}",
        ],
        &[("u", &url)],
    );
    (q, json!({"url": url}))
}

fn fc_validate_email(rng: &mut R) -> (String, Value) {
    let p = pii::person(rng, None);
    let q = say(
        rng,
        &[
            "Is {e} a valid email address?",
            "Check whether {e} is deliverable.",
            "Can you verify the email {e}?",
        ],
        &[("e", &p.email)],
    );
    (q, json!({"email": p.email}))
}

fn fc_send_email(rng: &mut R) -> (String, Value) {
    let p = pii::person(rng, None);
    let (subject, body) = *pick(
        rng,
        &[
            ("Running late", "I'll be 15 minutes late to our meeting."),
            (
                "Invoice attached",
                "Please find the invoice for March attached.",
            ),
            (
                "Lunch on Friday?",
                "Are you free for lunch on Friday at noon?",
            ),
            ("Slides", "Here are the slides from today's workshop."),
            ("Thank you", "Thanks again for your help with the move."),
            ("Project update", "The beta ships next Tuesday as planned."),
        ],
    );
    let q = say(
        rng,
        &[
            "Send an email to {e} with the subject \"{s}\" saying \"{b}\"",
            "Email {e}: subject '{s}', message: {b}",
            "Please write to {e} - subject {s}; body: {b}",
        ],
        &[("e", &p.email), ("s", subject), ("b", body)],
    );
    (q, json!({"to": p.email, "subject": subject, "body": body}))
}

fn fc_create_todo(rng: &mut R) -> (String, Value) {
    let task = pick_str(
        rng,
        &[
            "renew the car insurance",
            "book a dentist appointment",
            "buy a birthday present for Sam",
            "submit the expense report",
            "water the plants",
            "call the plumber",
        ],
    );
    if chance(rng, 0.6) {
        let d = pii::iso_date(rng);
        (
            say(
                rng,
                &[
                    "Add '{t}' to my to-do list for {d}.",
                    "Create a task '{t}' due {d}.",
                ],
                &[("t", task), ("d", &d)],
            ),
            json!({"task": task, "due_date": d}),
        )
    } else {
        (
            fill("Put '{t}' on my to-do list.", &[("t", task)]),
            json!({"task": task}),
        )
    }
}

fn fc_set_reminder(rng: &mut R) -> (String, Value) {
    let msg = pick_str(
        rng,
        &[
            "take my medication",
            "pick up the kids",
            "join the standup call",
            "move the laundry to the dryer",
            "check the oven",
            "stretch",
        ],
    );
    let t = pii::time_24h(rng);
    let q = say(
        rng,
        &[
            "Remind me to {m} at {t}.",
            "Set a reminder for {t}: {m}.",
            "At {t}, remind me to {m}, please.",
        ],
        &[("m", msg), ("t", &t)],
    );
    (q, json!({"message": msg, "time": t}))
}

fn fc_search_restaurants(rng: &mut R) -> (String, Value) {
    let c = city(rng);
    let cu = pick_str(
        rng,
        &[
            "Thai",
            "Italian",
            "Mexican",
            "Japanese",
            "Indian",
            "Lebanese",
            "Ethiopian",
            "Korean",
        ],
    );
    match rng.random_range(0..3) {
        0 => (
            fill("Any cheap {cu} places in {c}?", &[("cu", cu), ("c", c)]),
            json!({"location": c, "cuisine": cu, "price_range": "$"}),
        ),
        1 => (
            fill(
                "Looking for an upscale {cu} restaurant in {c}.",
                &[("cu", cu), ("c", c)],
            ),
            json!({"location": c, "cuisine": cu, "price_range": "$$$"}),
        ),
        _ => (
            say(
                rng,
                &[
                    "Find a good {cu} restaurant in {c}.",
                    "Where can I eat {cu} food in {c}?",
                ],
                &[("cu", cu), ("c", c)],
            ),
            json!({"location": c, "cuisine": cu}),
        ),
    }
}

fn fc_get_flight_status(rng: &mut R) -> (String, Value) {
    let fno = format!(
        "{}{}",
        pick_str(
            rng,
            &["LH", "BA", "AF", "UA", "DL", "KL", "EK", "QF", "AA", "IB"]
        ),
        rng.random_range(10..2999u32)
    );
    let d = pii::iso_date(rng);
    let q = say(
        rng,
        &[
            "Is flight {f} on {d} on time?",
            "What's the status of {f} on {d}?",
            "Has {f} departed yet? It's the {d} flight.",
        ],
        &[("f", &fno), ("d", &d)],
    );
    (q, json!({"flight_number": fno, "date": d}))
}

fn fc_get_public_holidays(rng: &mut R) -> (String, Value) {
    let (cc, cn) = *pick(
        rng,
        &[
            ("DE", "Germany"),
            ("FR", "France"),
            ("US", "the United States"),
            ("GB", "the UK"),
            ("JP", "Japan"),
            ("IN", "India"),
            ("BR", "Brazil"),
            ("ES", "Spain"),
        ],
    );
    let y = rng.random_range(2024..=2027u32);
    let q = say(
        rng,
        &[
            "What are the public holidays in {cn} in {y}?",
            "List the {y} bank holidays for {cn}.",
            "Which days are public holidays in {cn} in {y}?",
        ],
        &[("cn", cn), ("y", &y.to_string())],
    );
    (q, json!({"country_code": cc, "year": y}))
}

fn fc_get_match_results(rng: &mut R) -> (String, Value) {
    let (team, league) = *pick(
        rng,
        &[
            ("Arsenal", "Premier League"),
            ("Real Madrid", "La Liga"),
            ("Bayern Munich", "Bundesliga"),
            ("Juventus", "Serie A"),
            ("Boston Celtics", "NBA"),
            ("Green Bay Packers", "NFL"),
            ("PSG", "Ligue 1"),
            ("LA Lakers", "NBA"),
        ],
    );
    if chance(rng, 0.35) {
        (
            fill("Latest {l} result for {t}?", &[("l", league), ("t", team)]),
            json!({"team": team, "league": league}),
        )
    } else {
        (
            say(
                rng,
                &[
                    "How did {t} do in their last game?",
                    "What was the score of the last {t} match?",
                ],
                &[("t", team)],
            ),
            json!({"team": team}),
        )
    }
}

fn fc_get_crypto_price(rng: &mut R) -> (String, Value) {
    let coin = pick_str(
        rng,
        &[
            "bitcoin", "ethereum", "solana", "cardano", "dogecoin", "litecoin",
        ],
    );
    let (cur, curn) = *pick(
        rng,
        &[("USD", "dollars"), ("EUR", "euros"), ("GBP", "pounds")],
    );
    let q = say(
        rng,
        &[
            "What's the price of {c} in {cur}?",
            "How much is one {c} worth in {curn} right now?",
            "{C} price in {cur}?",
        ],
        &[
            ("c", coin),
            ("C", &capitalise(coin)),
            ("cur", cur),
            ("curn", curn),
        ],
    );
    (q, json!({"coin": coin, "currency": cur}))
}

fn fc_get_air_quality(rng: &mut R) -> (String, Value) {
    let c = city(rng);
    let q = say(
        rng,
        &[
            "How's the air quality in {c} today?",
            "Is the air in {c} OK for a run today? Check the AQI.",
            "What's the current AQI in {c}?",
        ],
        &[("c", c)],
    );
    (q, json!({"city": c}))
}

fn fc_find_nearby_places(rng: &mut R) -> (String, Value) {
    let (pt, code) = *pick(
        rng,
        &[
            ("pharmacy", "pharmacy"),
            ("gas station", "gas_station"),
            ("coffee shop", "cafe"),
            ("ATM", "atm"),
            ("supermarket", "supermarket"),
            ("hospital", "hospital"),
            ("parking garage", "parking"),
        ],
    );
    let loc = pick(rng, LANDMARKS).0;
    if chance(rng, 0.35) {
        let r = *pick(rng, &[200u32, 500, 800, 1000, 2000]);
        (
            fill(
                "Is there a {pt} within {r} meters of {loc}?",
                &[("pt", pt), ("r", &r.to_string()), ("loc", loc)],
            ),
            json!({"location": loc, "place_type": code, "radius_m": r}),
        )
    } else {
        (
            say(
                rng,
                &[
                    "Find a {pt} near {loc}.",
                    "Where's the closest {pt} to {loc}?",
                ],
                &[("pt", pt), ("loc", loc)],
            ),
            json!({"location": loc, "place_type": code}),
        )
    }
}

fn fc_get_artist_top_tracks(rng: &mut R) -> (String, Value) {
    let a = pick_str(
        rng,
        &[
            "Taylor Swift",
            "Daft Punk",
            "Adele",
            "Bad Bunny",
            "Coldplay",
            "Billie Eilish",
            "Miles Davis",
            "Kendrick Lamar",
            "Rosalía",
        ],
    );
    let q = say(
        rng,
        &[
            "What are {a}'s most popular songs?",
            "Top tracks by {a}?",
            "Which {a} songs are streamed the most?",
        ],
        &[("a", a)],
    );
    (q, json!({"artist": a}))
}

fn fc_get_word_definition(rng: &mut R) -> (String, Value) {
    let w = pick_str(
        rng,
        &[
            "serendipity",
            "ephemeral",
            "ubiquitous",
            "laconic",
            "quixotic",
            "petrichor",
            "obfuscate",
            "mellifluous",
        ],
    );
    let q = say(
        rng,
        &[
            "What does '{w}' mean?",
            "Define {w}.",
            "Can you give me the definition of the word {w}?",
        ],
        &[("w", w)],
    );
    (q, json!({"word": w}))
}

fn fc_calculate_discount(rng: &mut R) -> (String, Value) {
    let p = *pick(rng, &[25u32, 40, 60, 89, 120, 199, 250, 480]);
    let d = *pick(rng, &[10u32, 15, 20, 25, 30, 40, 50]);
    let q = say(
        rng,
        &[
            "A jacket costs ${p} and is {d}% off. What's the final price?",
            "How much is {p} after a {d}% discount?",
            "What do I pay for a ${p} item with {d} percent off?",
        ],
        &[("p", &p.to_string()), ("d", &d.to_string())],
    );
    (q, json!({"original_price": p, "discount_percent": d}))
}

fn fc_get_random_quote(rng: &mut R) -> (String, Value) {
    let cat = pick_str(
        rng,
        &["inspiration", "love", "success", "humor", "wisdom", "life"],
    );
    let q = say(
        rng,
        &[
            "Give me a random quote about {c}.",
            "I need a {c} quote for my presentation.",
            "Share a quote on {c}.",
        ],
        &[("c", cat)],
    );
    (q, json!({"category": cat}))
}

/// A user message wrapped in an optional greeting and thanks.
fn casual(rng: &mut R, q: String) -> String {
    let pre = pick_str(
        rng,
        &[
            "",
            "",
            "",
            "",
            "Hi! ",
            "Hey, ",
            "Quick question: ",
            "Hello. ",
        ],
    );
    let post = pick_str(
        rng,
        &[
            "",
            "",
            "",
            "",
            " Thanks!",
            " Thanks in advance.",
            " Cheers.",
        ],
    );
    format!("{pre}{q}{post}")
}

/// `extra` functions of the pool other than `not`, in a random order.
fn distractors(rng: &mut R, not: Option<usize>, extra: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..FC_POOL.len()).filter(|&i| Some(i) != not).collect();
    idx.shuffle(rng);
    idx.truncate(extra);
    idx
}

/// How many functions a generic call offers: 1 to 4.
fn offered_count(rng: &mut R) -> usize {
    *pick(rng, &[1usize, 2, 2, 2, 3, 3, 3, 4, 4, 4])
}

fn fc_tools(idx: &[usize]) -> Vec<Tool> {
    idx.iter()
        .map(|&i| {
            tool(
                FC_POOL[i].name,
                FC_POOL[i].description,
                FC_POOL[i].parameters,
            )
        })
        .collect()
}

fn fc_call(rng: &mut R) -> Conv {
    let target = rng.random_range(0..FC_POOL.len());
    let extra = offered_count(rng) - 1;
    let mut offered = distractors(rng, Some(target), extra);
    offered.push(target);
    offered.shuffle(rng);
    let (q, args) = (FC_POOL[target].request)(rng);
    let user = casual(rng, q);
    let tcall = call(rng, FC_POOL[target].name, args);
    let mut c = conv(
        "function_assistant",
        pick_str(rng, &FC_SYSTEM),
        fc_tools(&offered),
        vec![Turn::User(user)],
        Answer::Tools(vec![tcall]),
    );
    c.temperature = *pick(rng, &[0.0, 0.0, 0.2, 0.7]);
    c
}

/// Requests no function of the pool can serve: (request phrase, what the
/// assistant would need to be able to do).
const UNSERVED: &[(&str, &str)] = &[
    ("order a large pepperoni pizza to my place", "order food"),
    (
        "book me a flight from {c1} to {c2} next Friday",
        "book flights",
    ),
    (
        "play some relaxing jazz on my living room speaker",
        "play music",
    ),
    (
        "turn off the lights in the bedroom",
        "control smart-home devices",
    ),
    ("pay my electricity bill", "make payments"),
    ("call my mom", "place phone calls"),
    ("book a hotel room in {c1} for this weekend", "book hotels"),
    ("buy 10 shares of {t} for me", "place stock trades"),
    ("cancel my gym membership", "cancel memberships"),
    (
        "post a tweet saying I'm on vacation",
        "post on social media",
    ),
    ("get me an Uber to the airport at 6am", "book rides"),
    ("unlock the front door", "control smart-home devices"),
    ("order more printer ink", "place orders"),
    ("renew my library books", "renew library loans"),
    (
        "set the thermostat to 21 degrees",
        "control smart-home devices",
    ),
    (
        "reserve a table for four at 8pm tonight",
        "make restaurant reservations",
    ),
    ("text {first} that I'm running late", "send text messages"),
    (
        "transfer $200 to my savings account",
        "move money between accounts",
    ),
    ("sign me up for the Saturday yoga class", "make bookings"),
    ("print the document I just saved", "print documents"),
    ("file my tax return", "file tax returns"),
    ("start the dishwasher", "control home appliances"),
    ("back up my photos to the cloud", "manage files"),
    ("read me my latest emails", "read emails"),
    ("check my bank balance", "access bank accounts"),
    (
        "book a doctor's appointment for Monday",
        "book appointments",
    ),
];

fn fc_refusal(rng: &mut R) -> Conv {
    let k = offered_count(rng);
    let offered = distractors(rng, None, k);
    let (task, ability) = *pick(rng, UNSERVED);
    let (c1, c2) = two_cities(rng);
    let t = pick(rng, TICKERS).0;
    let first = pick_str(rng, pii::FIRST_NAMES);
    let task = fill(task, &[("c1", c1), ("c2", c2), ("t", t), ("first", first)]);
    let q = say(
        rng,
        &[
            "Can you {t}?",
            "Please {t}.",
            "Could you {t} for me?",
            "I need you to {t}.",
            "{T}.",
            "Hey, can you {t}?",
        ],
        &[("t", &task), ("T", &capitalise(&task))],
    );
    let user = casual(rng, q);
    let sys = rng.random_range(0..FC_SYSTEM.len());
    let caps: Vec<&str> = offered.iter().map(|&i| FC_POOL[i].can).collect();
    let caps = and_list(&caps);
    let answer = match sys {
        0 => format!("I'm sorry, but none of the available functions can {ability}. I can only {caps}."),
        1 => format!("I'm sorry, but I can't do that: none of the functions I have access to can {ability}. They let me {caps}."),
        _ => format!("Unfortunately none of the available functions can {ability}. What I can do is {caps}."),
    };
    let mut c = conv(
        "function_assistant",
        FC_SYSTEM[sys],
        fc_tools(&offered),
        vec![Turn::User(user)],
        Answer::Text(answer),
    );
    c.temperature = *pick(rng, &[0.0, 0.0, 0.2, 0.7]);
    c
}

// ---------------------------------------------------------------- bank assistant

/// The bank assistant's one system prompt.
pub const BANK_SYSTEM: &str = "You are the virtual assistant of Meridian Bank. You can check balances, list recent transactions, transfer money between the customer's own accounts (checking, savings, joint, business), pay bills to saved payees and freeze cards. Call a tool only when the request has every required detail; if something is missing, ask one short clarifying question instead. Politely decline anything else.";

const ACCOUNTS: [&str; 4] = ["checking", "savings", "joint", "business"];

const PAYEES: &[&str] = &[
    "City Power & Light",
    "AquaPure Water",
    "Comcast",
    "Verizon",
    "State Farm",
    "Metro Gas",
    "Greenfield Property Management",
];

fn bank_tools() -> Vec<Tool> {
    vec![
        tool(
            "get_balance",
            "Get the current balance of one of the customer's accounts.",
            r#"{"type":"object","properties":{"account":{"type":"string","enum":["checking","savings","joint","business"]}},"required":["account"]}"#,
        ),
        tool(
            "list_transactions",
            "List recent transactions of an account.",
            r#"{"type":"object","properties":{"account":{"type":"string","enum":["checking","savings","joint","business"]},"days":{"type":"integer","description":"How many days back, default 30"}},"required":["account"]}"#,
        ),
        tool(
            "transfer_funds",
            "Move money between two of the customer's own accounts.",
            r#"{"type":"object","properties":{"from_account":{"type":"string","enum":["checking","savings","joint","business"]},"to_account":{"type":"string","enum":["checking","savings","joint","business"]},"amount":{"type":"number"},"memo":{"type":"string"}},"required":["from_account","to_account","amount"]}"#,
        ),
        tool(
            "pay_bill",
            "Pay a bill to a saved payee.",
            r#"{"type":"object","properties":{"payee":{"type":"string"},"amount":{"type":"number"},"from_account":{"type":"string","enum":["checking","savings","joint","business"]}},"required":["payee","amount","from_account"]}"#,
        ),
        tool(
            "freeze_card",
            "Temporarily freeze a debit or credit card.",
            r#"{"type":"object","properties":{"card_last4":{"type":"string"},"reason":{"type":"string","enum":["lost","stolen","suspicious_activity"]}},"required":["card_last4"]}"#,
        ),
    ]
}

fn two_accounts(rng: &mut R) -> (&'static str, &'static str) {
    let a = *pick(rng, &ACCOUNTS);
    let mut b = *pick(rng, &ACCOUNTS);
    while b == a {
        b = *pick(rng, &ACCOUNTS);
    }
    (a, b)
}

fn bank_greeting(rng: &mut R, q: String) -> String {
    let p = pii::person(rng, None);
    let slots = [("first", p.first.as_str()), ("full", &p.full())];
    let pre = pick_str(
        rng,
        &[
            "",
            "",
            "",
            "Hi. ",
            "Hello! ",
            "Hi, it's {first}. ",
            "Good morning. ",
            "This is {full}. ",
            "Hey, {first} here. ",
        ],
    );
    let context = pick_str(
        rng,
        &[
            "",
            "",
            "",
            "",
            "I'm on the app but can't find it. ",
            "Sorry if this is a silly question. ",
            "Quick one. ",
            "I'm travelling this week. ",
            "Second time asking today. ",
            "Typing from my phone. ",
            "My partner asked me to sort this out. ",
            "Not sure this is the right place. ",
            "Following up on yesterday. ",
        ],
    );
    let post = pick_str(
        rng,
        &[
            "",
            "",
            "",
            " Thanks.",
            " Thank you!",
            " Thanks a lot.",
            " Cheers, {first}",
            " - {full}",
            " Appreciate it.",
        ],
    );
    fill(&format!("{pre}{context}{q}{post}"), &slots)
}

fn bank(rng: &mut R, tool_call: bool) -> Conv {
    let (q, answer) = if tool_call {
        bank_call(rng)
    } else {
        bank_no_call(rng)
    };
    let user = bank_greeting(rng, q);
    let mut c = conv(
        "banking_assistant",
        BANK_SYSTEM,
        bank_tools(),
        vec![Turn::User(user)],
        answer,
    );
    c.temperature = 0.1;
    c.max_tokens = 300;
    c
}

fn bank_call(rng: &mut R) -> (String, Answer) {
    let (q, name, args): (String, &'static str, Value) = match rng.random_range(0..10) {
        0 | 1 => {
            let a = *pick(rng, &ACCOUNTS);
            let q = say(
                rng,
                &[
                    "What's the balance on my {a} account?",
                    "How much money do I have in {a}?",
                    "Check my {a} balance please.",
                    "Can you tell me the {a} account balance?",
                ],
                &[("a", a)],
            );
            (q, "get_balance", json!({"account": a}))
        }
        2 | 3 => {
            let a = *pick(rng, &ACCOUNTS);
            if chance(rng, 0.7) {
                let d = *pick(rng, &[7u32, 10, 14, 30, 60, 90]);
                let q = say(
                    rng,
                    &[
                        "Show me the last {d} days of transactions on my {a} account.",
                        "What did I spend from {a} in the past {d} days?",
                        "List my {a} transactions for the last {d} days.",
                    ],
                    &[("a", a), ("d", &d.to_string())],
                );
                (q, "list_transactions", json!({"account": a, "days": d}))
            } else {
                let q = say(
                    rng,
                    &[
                        "Show my recent {a} transactions.",
                        "What are the latest transactions on {a}?",
                    ],
                    &[("a", a)],
                );
                (q, "list_transactions", json!({"account": a}))
            }
        }
        4..=6 => {
            let (a, b) = two_accounts(rng);
            let (amt, n) = usd(rng);
            if chance(rng, 0.25) {
                let memo = pick_str(
                    rng,
                    &[
                        "rent",
                        "holiday fund",
                        "car repair",
                        "tuition",
                        "emergency fund",
                    ],
                );
                let q = fill(
                    "Please send {amt} from {a} to {b}, memo \"{m}\".",
                    &[("amt", &amt), ("a", a), ("b", b), ("m", memo)],
                );
                (
                    q,
                    "transfer_funds",
                    json!({"from_account": a, "to_account": b, "amount": n, "memo": memo}),
                )
            } else {
                let q = say(
                    rng,
                    &[
                        "Move {amt} from {a} to {b}.",
                        "Transfer {amt} from my {a} account to my {b} account.",
                        "Can you put {amt} from {a} into {b}?",
                    ],
                    &[("amt", &amt), ("a", a), ("b", b)],
                );
                (
                    q,
                    "transfer_funds",
                    json!({"from_account": a, "to_account": b, "amount": n}),
                )
            }
        }
        7 | 8 => {
            let payee = pick_str(rng, PAYEES);
            let a = *pick(rng, &ACCOUNTS);
            let (amt, n) = usd(rng);
            let q = say(
                rng,
                &[
                    "Pay {amt} to {p} from {a}.",
                    "Please pay my {p} bill of {amt} using my {a} account.",
                    "Use {a} to pay {p} {amt}.",
                ],
                &[("amt", &amt), ("p", payee), ("a", a)],
            );
            (
                q,
                "pay_bill",
                json!({"payee": payee, "amount": n, "from_account": a}),
            )
        }
        _ => {
            let l4 = pii::digits(rng, 4);
            let (reason, tpls): (&str, &[&str]) = *pick(
                rng,
                &[
                    (
                        "lost",
                        &[
                            "I lost my card ending in {l}, please freeze it.",
                            "Can't find my card ending {l}. Freeze it for now.",
                        ][..],
                    ),
                    (
                        "stolen",
                        &[
                            "Freeze the card ending {l} - I think it was stolen.",
                            "My wallet was stolen, block card ending {l}.",
                        ][..],
                    ),
                    (
                        "suspicious_activity",
                        &[
                            "There are charges I don't recognise on card {l}. Freeze it.",
                            "Please freeze card ending {l}, I see suspicious transactions.",
                        ][..],
                    ),
                ],
            );
            let q = say(rng, tpls, &[("l", &l4)]);
            (
                q,
                "freeze_card",
                json!({"card_last4": l4, "reason": reason}),
            )
        }
    };
    let tc = call(rng, name, args);
    (q, Answer::Tools(vec![tc]))
}

const BANK_SCOPE: &str = "I can check balances, list transactions, move money between your Meridian accounts, pay bills and freeze cards.";

/// "a", "a or b", "a, b or c".
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [a] => a.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Out-of-scope requests: (request, what the assistant cannot do).
const BANK_OUT_OF_SCOPE: &[(&str, &str)] = &[
    (
        "Can I get a mortgage quote for a $400,000 house?",
        "give mortgage quotes",
    ),
    (
        "Should I buy Tesla stock right now?",
        "give investment advice",
    ),
    (
        "Please raise my credit card limit to $10,000.",
        "change credit limits",
    ),
    (
        "Open a new savings account for my daughter.",
        "open new accounts",
    ),
    (
        "What's my online banking password? I forgot it.",
        "share passwords or PINs",
    ),
    (
        "I want to dispute a charge from {m} on my statement.",
        "open card disputes",
    ),
    ("Order me a new checkbook.", "order checkbooks"),
    (
        "Send $50 to my friend's account at another bank.",
        "send money to other people's accounts",
    ),
    (
        "What will the weather be like tomorrow?",
        "help with questions outside your banking",
    ),
    (
        "Can you apply for a personal loan for me?",
        "process loan applications",
    ),
    (
        "Close my joint account, we're separating.",
        "close accounts",
    ),
];

fn bank_no_call(rng: &mut R) -> (String, Answer) {
    let (q, a) = if chance(rng, 0.6) {
        match rng.random_range(0..6) {
            0 => {
                let b = *pick(rng, &ACCOUNTS);
                let (amt, _) = usd(rng);
                let others: Vec<&str> = ACCOUNTS.iter().copied().filter(|&x| x != b).collect();
                let q = say(
                    rng,
                    &[
                        "Transfer {amt} to my {b} account.",
                        "Put {amt} into {b}.",
                        "Can you move {amt} over to {b}?",
                    ],
                    &[("amt", &amt), ("b", b)],
                );
                (
                    q,
                    format!(
                        "Which account would you like to transfer {amt} from: {}?",
                        or_list(&others)
                    ),
                )
            }
            1 => {
                let (a, b) = two_accounts(rng);
                let q = say(
                    rng,
                    &[
                        "Move money from {a} to {b}.",
                        "I want to transfer from {a} to {b}.",
                        "Do a transfer from my {a} account to {b}.",
                    ],
                    &[("a", a), ("b", b)],
                );
                (
                    q,
                    format!(
                        "How much would you like to transfer from your {a} account to your {b} account?"
                    ),
                )
            }
            2 => {
                let q = pick_str(
                    rng,
                    &[
                        "What's my balance?",
                        "How much money do I have?",
                        "Check my balance.",
                        "Balance please.",
                    ],
                )
                .to_string();
                (
                    q,
                    format!(
                        "Which account would you like the balance for: {}?",
                        or_list(&ACCOUNTS)
                    ),
                )
            }
            3 => {
                let p = pick_str(rng, PAYEES);
                let a = *pick(rng, &ACCOUNTS);
                let q = say(
                    rng,
                    &[
                        "Pay my {p} bill from {a}.",
                        "Please pay {p} using my {a} account.",
                    ],
                    &[("p", p), ("a", a)],
                );
                (q, format!("How much would you like to pay to {p}?"))
            }
            4 => {
                let p = pick_str(rng, PAYEES);
                let (amt, _) = usd(rng);
                let q = say(
                    rng,
                    &["Pay {amt} to {p}.", "Send {p} {amt} for this month's bill."],
                    &[("p", p), ("amt", &amt)],
                );
                (
                    q,
                    format!(
                        "Which account should I pay the {amt} to {p} from: {}?",
                        or_list(&ACCOUNTS)
                    ),
                )
            }
            _ => {
                let q = pick_str(
                    rng,
                    &[
                        "Freeze my card, I lost it.",
                        "Please block my card, it was stolen.",
                        "I think someone is using my card. Freeze it!",
                    ],
                )
                .to_string();
                (
                    q,
                    "Which card would you like to freeze? Please give me its last four digits."
                        .to_string(),
                )
            }
        }
    } else {
        let (req, ability) = *pick(rng, BANK_OUT_OF_SCOPE);
        let m = pick_str(
            rng,
            &[
                "Amazon",
                "Uber",
                "a hotel in Lisbon",
                "Spotify",
                "a gas station",
            ],
        );
        (
            fill(req, &[("m", m)]),
            format!("I'm sorry, I can't {ability}. {BANK_SCOPE}"),
        )
    };
    (q, Answer::Text(a))
}

// ---------------------------------------------------------------- multi-API agent

/// The multi-API agent's one system prompt.
pub const MULTI_SYSTEM: &str = "You are Voyager, the booking agent of Atlas Travel, connected to three APIs.\nSkyRoute (flights): flights_search finds flights, flights_book books a flight offer for a passenger, flights_status gives the live status of a flight.\nStayWell (hotels): hotels_search finds hotels in a city for given dates, hotels_book reserves a hotel offer, hotels_cancel cancels a hotel reservation.\nDriveNow (car rental): cars_search lists available cars at a pick-up location, cars_reserve reserves a car offer, cars_cancel cancels a car reservation.\nCall exactly one tool per request. Copy cities, dates, names, emails and ids exactly as the customer wrote them; passengers and guests are 1 unless stated.";

/// The tool-name prefix of each API, in label order (flights, hotels, cars).
pub const MULTI_PREFIXES: [&str; 3] = ["flights_", "hotels_", "cars_"];

fn multi_tools() -> Vec<Tool> {
    vec![
        tool(
            "flights_search",
            "SkyRoute: search flights.",
            r#"{"type":"object","properties":{"origin":{"type":"string"},"destination":{"type":"string"},"date":{"type":"string","description":"YYYY-MM-DD"},"passengers":{"type":"integer"},"cabin":{"type":"string","enum":["economy","premium_economy","business","first"]}},"required":["origin","destination","date","passengers"]}"#,
        ),
        tool(
            "flights_book",
            "SkyRoute: book a flight offer.",
            r#"{"type":"object","properties":{"offer_id":{"type":"string"},"passenger_name":{"type":"string"},"passenger_email":{"type":"string"}},"required":["offer_id","passenger_name","passenger_email"]}"#,
        ),
        tool(
            "flights_status",
            "SkyRoute: live status of a flight.",
            r#"{"type":"object","properties":{"flight_number":{"type":"string"},"date":{"type":"string"}},"required":["flight_number","date"]}"#,
        ),
        tool(
            "hotels_search",
            "StayWell: search hotels.",
            r#"{"type":"object","properties":{"city":{"type":"string"},"check_in":{"type":"string"},"check_out":{"type":"string"},"guests":{"type":"integer"}},"required":["city","check_in","check_out","guests"]}"#,
        ),
        tool(
            "hotels_book",
            "StayWell: reserve a hotel offer.",
            r#"{"type":"object","properties":{"offer_id":{"type":"string"},"guest_name":{"type":"string"},"guest_email":{"type":"string"}},"required":["offer_id","guest_name","guest_email"]}"#,
        ),
        tool(
            "hotels_cancel",
            "StayWell: cancel a hotel reservation.",
            r#"{"type":"object","properties":{"reservation_id":{"type":"string"}},"required":["reservation_id"]}"#,
        ),
        tool(
            "cars_search",
            "DriveNow: search rental cars.",
            r#"{"type":"object","properties":{"pickup_location":{"type":"string"},"pickup_date":{"type":"string"},"return_date":{"type":"string"},"car_class":{"type":"string","enum":["economy","compact","suv","van","luxury"]}},"required":["pickup_location","pickup_date","return_date"]}"#,
        ),
        tool(
            "cars_reserve",
            "DriveNow: reserve a car offer.",
            r#"{"type":"object","properties":{"offer_id":{"type":"string"},"driver_name":{"type":"string"},"driver_email":{"type":"string"}},"required":["offer_id","driver_name","driver_email"]}"#,
        ),
        tool(
            "cars_cancel",
            "DriveNow: cancel a car reservation.",
            r#"{"type":"object","properties":{"reservation_id":{"type":"string"}},"required":["reservation_id"]}"#,
        ),
    ]
}

fn offer_id(rng: &mut R, prefix: &str) -> String {
    format!("{prefix}-{}{}", pii::upper(rng, 2), pii::digits(rng, 5))
}

/// A SkyRoute request: search (half the time), book/reserve, or status/cancel.
fn flights_request(rng: &mut R, roll: u32) -> (String, &'static str, Value) {
    match roll {
        0 | 1 => {
            let (o, d) = two_cities(rng);
            let date = pii::iso_date(rng);
            let n: u32 = if chance(rng, 0.6) {
                1
            } else {
                rng.random_range(2..=5)
            };
            let pax = if n == 1 {
                String::new()
            } else {
                fill(
                    pick_str(
                        rng,
                        &[" for {n} passengers", " for {n} people", ", {n} adults"],
                    ),
                    &[("n", &n.to_string())],
                )
            };
            let cabin = if chance(rng, 0.3) {
                Some(*pick(
                    rng,
                    &[
                        ("business", " in business class"),
                        ("premium_economy", " in premium economy"),
                        ("first", " in first class"),
                    ],
                ))
            } else {
                None
            };
            let q = say(
                rng,
                &[
                    "Find flights from {o} to {d} on {date}{pax}{cabin}.",
                    "I need a flight {o} to {d} on {date}{pax}{cabin}.",
                    "Any flights between {o} and {d} on {date}{pax}{cabin}?",
                ],
                &[
                    ("o", o),
                    ("d", d),
                    ("date", &date),
                    ("pax", &pax),
                    ("cabin", cabin.map(|c| c.1).unwrap_or("")),
                ],
            );
            let mut args = json!({"origin": o, "destination": d, "date": date, "passengers": n});
            if let Some((c, _)) = cabin {
                args["cabin"] = json!(c);
            }
            (q, "flights_search", args)
        }
        2 => {
            let o = offer_id(rng, "FL");
            let p = pii::person(rng, None);
            let q = say(
                rng,
                &[
                    "Book flight offer {o} for {full}, email {e}.",
                    "Please book {o} for passenger {full} ({e}).",
                    "Go ahead with flight offer {o}: passenger {full}, {e}.",
                ],
                &[("o", &o), ("full", &p.full()), ("e", &p.email)],
            );
            (
                q,
                "flights_book",
                json!({"offer_id": o, "passenger_name": p.full(), "passenger_email": p.email}),
            )
        }
        _ => {
            let fno = format!(
                "{}{}",
                pick_str(rng, &["SR", "LH", "BA", "AF", "KL", "UA"]),
                rng.random_range(100..2999u32)
            );
            let d = pii::iso_date(rng);
            let q = say(
                rng,
                &[
                    "Is flight {f} on {d} delayed?",
                    "What's the status of flight {f} on {d}?",
                    "Has {f} ({d}) left on time?",
                ],
                &[("f", &fno), ("d", &d)],
            );
            (
                q,
                "flights_status",
                json!({"flight_number": fno, "date": d}),
            )
        }
    }
}

/// A StayWell request: search (half the time), book/reserve, or status/cancel.
fn hotels_request(rng: &mut R, roll: u32) -> (String, &'static str, Value) {
    match roll {
        0 | 1 => {
            let c = city(rng);
            let nights = rng.random_range(1..=7);
            let (cin, cout) = date_span(rng, nights);
            let n: u32 = if chance(rng, 0.5) {
                1
            } else {
                rng.random_range(2..=4)
            };
            let g = if n == 1 {
                String::new()
            } else {
                fill(
                    pick_str(rng, &[" for {n} guests", ", {n} adults"]),
                    &[("n", &n.to_string())],
                )
            };
            let q = say(
                rng,
                &[
                    "Find a hotel in {c} from {in} to {out}{g}.",
                    "I need a room in {c}, check-in {in}, check-out {out}{g}.",
                    "Hotels in {c} between {in} and {out}{g}?",
                ],
                &[("c", c), ("in", &cin), ("out", &cout), ("g", &g)],
            );
            (
                q,
                "hotels_search",
                json!({"city": c, "check_in": cin, "check_out": cout, "guests": n}),
            )
        }
        2 => {
            let o = offer_id(rng, "HT");
            let p = pii::person(rng, None);
            let q = say(
                rng,
                &[
                    "Reserve hotel offer {o} for {full} ({e}).",
                    "Book the room {o} under {full}, email {e}.",
                    "Please confirm hotel offer {o} - guest {full}, {e}.",
                ],
                &[("o", &o), ("full", &p.full()), ("e", &p.email)],
            );
            (
                q,
                "hotels_book",
                json!({"offer_id": o, "guest_name": p.full(), "guest_email": p.email}),
            )
        }
        _ => {
            let r = format!("HR-{}", pii::digits(rng, 7));
            let q = say(
                rng,
                &[
                    "Cancel my hotel reservation {r}.",
                    "Please cancel hotel booking {r}, plans changed.",
                    "I need to cancel the hotel, reservation {r}.",
                ],
                &[("r", &r)],
            );
            (q, "hotels_cancel", json!({"reservation_id": r}))
        }
    }
}

/// A DriveNow request: search (half the time), book/reserve, or status/cancel.
fn cars_request(rng: &mut R, roll: u32) -> (String, &'static str, Value) {
    match roll {
        0 | 1 => {
            let c = city(rng);
            let loc = fill(
                pick_str(rng, &["{c} airport", "{c} central station", "downtown {c}"]),
                &[("c", c)],
            );
            let days = rng.random_range(1..=8);
            let (d1, d2) = date_span(rng, days);
            if chance(rng, 0.45) {
                let (cls, words) = *pick(
                    rng,
                    &[
                        ("economy", "an economy car"),
                        ("compact", "a compact car"),
                        ("suv", "an SUV"),
                        ("van", "a van"),
                        ("luxury", "a luxury car"),
                    ],
                );
                let q = say(
                    rng,
                    &[
                        "I need {w} at {loc} from {d1} to {d2}.",
                        "Rent {w} for me: pick up at {loc} on {d1}, return {d2}.",
                    ],
                    &[("w", words), ("loc", &loc), ("d1", &d1), ("d2", &d2)],
                );
                (
                    q,
                    "cars_search",
                    json!({"pickup_location": loc, "pickup_date": d1, "return_date": d2, "car_class": cls}),
                )
            } else {
                let q = say(
                    rng,
                    &[
                        "What cars are available at {loc} from {d1} to {d2}?",
                        "I need a rental car at {loc}, {d1} to {d2}.",
                    ],
                    &[("loc", &loc), ("d1", &d1), ("d2", &d2)],
                );
                (
                    q,
                    "cars_search",
                    json!({"pickup_location": loc, "pickup_date": d1, "return_date": d2}),
                )
            }
        }
        2 => {
            let o = offer_id(rng, "CR");
            let p = pii::person(rng, None);
            let q = say(
                rng,
                &[
                    "Reserve car offer {o} for driver {full}, {e}.",
                    "Book rental car {o}; driver {full} ({e}).",
                    "Lock in car offer {o} for {full}, email {e}.",
                ],
                &[("o", &o), ("full", &p.full()), ("e", &p.email)],
            );
            (
                q,
                "cars_reserve",
                json!({"offer_id": o, "driver_name": p.full(), "driver_email": p.email}),
            )
        }
        _ => {
            let r = format!("RC-{}", pii::digits(rng, 7));
            let q = say(
                rng,
                &[
                    "Cancel my car rental {r}.",
                    "Please cancel the rental car reservation {r}.",
                    "I no longer need the car - cancel {r}.",
                ],
                &[("r", &r)],
            );
            (q, "cars_cancel", json!({"reservation_id": r}))
        }
    }
}

fn multiapi(rng: &mut R, api: usize) -> Conv {
    let roll = rng.random_range(0..4u32);
    let (q, name, args) = match api {
        0 => flights_request(rng, roll),
        1 => hotels_request(rng, roll),
        _ => cars_request(rng, roll),
    };
    let user = casual(rng, q);
    let tc = call(rng, name, args);
    let mut c = conv(
        "travel_multi_api",
        MULTI_SYSTEM,
        multi_tools(),
        vec![Turn::User(user)],
        Answer::Tools(vec![tc]),
    );
    c.temperature = 0.0;
    c
}

// ---------------------------------------------------------------- multi-turn ops agent

const OPS_SYSTEM: [&str; 2] = [
    "You are the operations copilot for Shopwell's back office. Tools: get_order, get_inventory, get_shipment, refund_order, create_restock_request. Look things up before acting, base every action on the tool results, and once you have what you need, answer the operator in one or two sentences.",
    "Shopwell ops assistant. Use get_order, get_inventory and get_shipment to look things up, refund_order and create_restock_request to act. Never act on data you have not looked up; when the task is done or nothing needs doing, reply to the operator briefly.",
];

fn ops_tools() -> Vec<Tool> {
    vec![
        tool(
            "get_order",
            "Look up an order.",
            r#"{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}"#,
        ),
        tool(
            "get_inventory",
            "Stock level of a SKU in a warehouse.",
            r#"{"type":"object","properties":{"sku":{"type":"string"},"warehouse":{"type":"string"}},"required":["sku","warehouse"]}"#,
        ),
        tool(
            "get_shipment",
            "Carrier tracking of a shipment.",
            r#"{"type":"object","properties":{"tracking_number":{"type":"string"}},"required":["tracking_number"]}"#,
        ),
        tool(
            "refund_order",
            "Refund an order.",
            r#"{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"},"reason":{"type":"string","enum":["damaged","wrong_item","late","not_as_described"]}},"required":["order_id","amount","reason"]}"#,
        ),
        tool(
            "create_restock_request",
            "Ask purchasing to restock a SKU.",
            r#"{"type":"object","properties":{"sku":{"type":"string"},"warehouse":{"type":"string"},"quantity":{"type":"integer"}},"required":["sku","warehouse","quantity"]}"#,
        ),
    ]
}

/// Appends an assistant tool call and its result to the conversation.
fn tool_round(turns: &mut Vec<Turn>, rng: &mut R, name: &'static str, args: Value, result: Value) {
    let tc = call(rng, name, args);
    let call_id = tc.id.clone();
    turns.push(Turn::Assistant(vec![tc]));
    turns.push(Turn::ToolResult {
        call_id,
        name,
        content: result.to_string(),
    });
}

/// Refund flow: look the order up, then refund it (or say it already was).
fn ops_refund(
    rng: &mut R,
    turns: &mut Vec<Turn>,
    order: &str,
    final_answer: bool,
    done: bool,
) -> Answer {
    let (code, phrase) = *pick(
        rng,
        &[
            ("damaged", "the item arrived damaged"),
            ("damaged", "the glass was shattered in the box"),
            ("wrong_item", "they got the wrong item"),
            (
                "wrong_item",
                "the colour they received is not the one they ordered",
            ),
            ("late", "it arrived two weeks late"),
            ("not_as_described", "it's nothing like the product photos"),
        ],
    );
    let q = say(
        rng,
        &[
            "Customer on order {id} says {p}. Refund them in full if it was delivered.",
            "Please refund order {id} - {p}.",
            "Order {id}: {p}. Check it and issue a full refund.",
        ],
        &[("id", order), ("p", phrase)],
    );
    turns.push(Turn::User(q));
    let cents = rng.random_range(1_500..60_000u64);
    let total = cents as f64 / 100.0;
    let cur = pick_str(rng, &["EUR", "USD", "GBP"]);
    let already = final_answer && !done;
    let cust = pii::person(rng, None);
    let result = json!({"order_id": order, "status": if already { "refunded" } else { "delivered" }, "total": total, "currency": cur, "items": rng.random_range(1..=4u32), "customer_email": cust.email, "placed_at": pii::iso_date(rng)});
    tool_round(turns, rng, "get_order", json!({"order_id": order}), result);
    let refund = json!({"order_id": order, "amount": total, "reason": code});
    if !final_answer {
        Answer::Tools(vec![call(rng, "refund_order", refund)])
    } else if already {
        Answer::Text(format!(
            "Order {order} was already refunded ({total:.2} {cur}), so I did not issue another refund."
        ))
    } else {
        let rid = format!("RF-{}", pii::digits(rng, 7));
        tool_round(
            turns,
            rng,
            "refund_order",
            refund,
            json!({"refund_id": rid, "order_id": order, "amount": total, "status": "processed"}),
        );
        Answer::Text(format!(
            "Refunded {total:.2} {cur} on order {order} (refund {rid}); the customer will see it within 5 business days."
        ))
    }
}

/// Tracking flow: look the order up, then track the shipment (or say it has not shipped).
fn ops_tracking(
    rng: &mut R,
    turns: &mut Vec<Turn>,
    order: &str,
    final_answer: bool,
    done: bool,
) -> Answer {
    let q = say(
        rng,
        &[
            "Where is order {id}?",
            "Has order {id} shipped yet, and where is it now?",
            "Customer is asking about order {id} - can you track it?",
        ],
        &[("id", order)],
    );
    turns.push(Turn::User(q));
    let placed = pii::iso_date(rng);
    let processing = final_answer && !done;
    let carrier = pick_str(rng, &["DHL", "UPS", "GLS", "DPD", "PostNL"]);
    let tn = pii::tracking(rng);
    let result = if processing {
        json!({"order_id": order, "status": "processing", "carrier": null, "tracking_number": null, "placed_at": placed})
    } else {
        json!({"order_id": order, "status": "shipped", "carrier": carrier, "tracking_number": tn, "placed_at": placed})
    };
    tool_round(turns, rng, "get_order", json!({"order_id": order}), result);
    let ship = json!({"tracking_number": tn});
    if !final_answer {
        Answer::Tools(vec![call(rng, "get_shipment", ship)])
    } else if processing {
        Answer::Text(format!(
            "Order {order} has not shipped yet; it is still being processed (placed on {placed})."
        ))
    } else {
        let status = pick_str(rng, &["in_transit", "out_for_delivery", "delivered"]);
        let hub = format!("{} hub", city(rng));
        let eta = pii::iso_date(rng);
        tool_round(
            turns,
            rng,
            "get_shipment",
            ship,
            json!({"tracking_number": tn, "carrier": carrier, "status": status, "last_scan": hub, "eta": eta}),
        );
        Answer::Text(match status {
            "in_transit" => format!(
                "Order {order} is in transit with {carrier}: last scanned at {hub}, expected on {eta}."
            ),
            "out_for_delivery" => format!(
                "Order {order} is out for delivery with {carrier} (last scan: {hub})."
            ),
            _ => format!("Order {order} was delivered by {carrier} on {eta}."),
        })
    }
}

/// Stock flow: check the stock, then restock to the target (or say no restock is needed).
fn ops_stock(rng: &mut R, turns: &mut Vec<Turn>, final_answer: bool, done: bool) -> Answer {
    let sku = format!("SKU-{}-{}", pii::upper(rng, 3), pii::digits(rng, 4));
    let wh = pick_str(rng, &["AMS1", "BER2", "LYS1", "MAD1", "WAW3"]);
    let thr = *pick(rng, &[20u32, 30, 50, 75, 100]);
    let target = thr * *pick(rng, &[2u32, 3]);
    let q = say(
        rng,
        &[
            "Check {sku} at {wh} and restock to {t} units if it's below {thr}.",
            "Is {sku} running low in {wh}? If it's under {thr}, order enough to get back to {t}.",
            "Inventory check: {sku}, warehouse {wh}; threshold {thr}, target {t}.",
        ],
        &[
            ("sku", &sku),
            ("wh", wh),
            ("thr", &thr.to_string()),
            ("t", &target.to_string()),
        ],
    );
    turns.push(Turn::User(q));
    let enough = final_answer && !done;
    let on_hand = if enough {
        rng.random_range(thr..thr * 3)
    } else {
        rng.random_range(0..thr)
    };
    let reserved = rng.random_range(0..=on_hand.min(10));
    tool_round(
        turns,
        rng,
        "get_inventory",
        json!({"sku": sku, "warehouse": wh}),
        json!({"sku": sku, "warehouse": wh, "on_hand": on_hand, "reserved": reserved}),
    );
    let qty = target - on_hand;
    let restock = json!({"sku": sku, "warehouse": wh, "quantity": qty});
    if !final_answer {
        Answer::Tools(vec![call(rng, "create_restock_request", restock)])
    } else if enough {
        Answer::Text(format!(
            "{sku} has {on_hand} units on hand in {wh}, at or above the threshold of {thr}; no restock needed."
        ))
    } else {
        let rrid = format!("RR-{}", pii::digits(rng, 6));
        tool_round(
            turns,
            rng,
            "create_restock_request",
            restock,
            json!({"request_id": rrid, "status": "submitted", "quantity": qty}),
        );
        Answer::Text(format!(
            "Restock request {rrid} submitted: {qty} units of {sku} for {wh}, which brings it back to {target}."
        ))
    }
}

fn ops(rng: &mut R, final_answer: bool) -> Conv {
    // 0-2: refund, tracking, stock; the final-answer flows split each in two.
    let flow = rng.random_range(0..3);
    let done = final_answer && chance(rng, 0.5);
    let sign = pii::person(rng, Some("shopwell.com"));
    let order = format!("SW-{}", pii::digits(rng, 6));
    let mut turns = Vec::new();
    let answer = match flow {
        0 => ops_refund(rng, &mut turns, &order, final_answer, done),
        1 => ops_tracking(rng, &mut turns, &order, final_answer, done),
        _ => ops_stock(rng, &mut turns, final_answer, done),
    };
    if let Some(Turn::User(q)) = turns.first_mut() {
        let tail = fill(
            pick_str(
                rng,
                &["", "", "", " Thanks!", " - {first}", " Thx, {first}"],
            ),
            &[("first", &sign.first)],
        );
        q.push_str(&tail);
    }
    let mut c = conv(
        "ecommerce_ops",
        pick_str(rng, &OPS_SYSTEM),
        ops_tools(),
        turns,
        answer,
    );
    c.temperature = 0.2;
    c
}

// ---------------------------------------------------------------- near-duplicate extraction

/// The extraction system prompts; `{schema}` is replaced by one of
/// [`EXTRACT_SCHEMAS`], so the two workloads' prompts differ only there.
pub const EXTRACT_SYSTEM: [&str; 2] = [
    "You are the CV parser of Talentbridge's applicant tracking system. Read the resume in the user message and reply with one compact JSON object with exactly these keys, in this order: {schema}. Use null for anything the resume does not state. Output the JSON only.",
    "Talentbridge resume intake. Extract the candidate from the text below into a single JSON object with these keys, in this order: {schema}. Missing values are null. No prose, JSON only.",
];

/// Schema A, then schema B.
pub const EXTRACT_SCHEMAS: [&str; 2] = [
    "name (full name), email, years_experience (integer, total years of professional experience), skills (array of the listed skills, as written)",
    "candidate (full name), contact (the email, or the phone number if there is no email), seniority (junior under 3 years of experience, mid 3 to 7, senior above 7), top_skill (the first listed skill), location (\"City, Country\")",
];

/// The JSON keys of schema A and of schema B.
pub const EXTRACT_KEYS: [&[&str]; 2] = [
    &["name", "email", "years_experience", "skills"],
    &["candidate", "contact", "seniority", "top_skill", "location"],
];

const ROLES: &[(&str, &[&str])] = &[
    (
        "backend engineer",
        &[
            "Go",
            "PostgreSQL",
            "Kubernetes",
            "gRPC",
            "Python",
            "Redis",
            "Terraform",
        ],
    ),
    (
        "data scientist",
        &[
            "Python",
            "pandas",
            "scikit-learn",
            "SQL",
            "PyTorch",
            "Spark",
            "Tableau",
        ],
    ),
    (
        "frontend developer",
        &[
            "TypeScript",
            "React",
            "CSS",
            "Next.js",
            "GraphQL",
            "Figma",
            "Jest",
        ],
    ),
    (
        "product designer",
        &[
            "Figma",
            "user research",
            "prototyping",
            "design systems",
            "accessibility",
            "Sketch",
        ],
    ),
    (
        "DevOps engineer",
        &[
            "AWS",
            "Terraform",
            "Docker",
            "Kubernetes",
            "Ansible",
            "Prometheus",
            "CI/CD",
        ],
    ),
    (
        "marketing manager",
        &[
            "SEO",
            "Google Ads",
            "HubSpot",
            "copywriting",
            "analytics",
            "email campaigns",
        ],
    ),
    (
        "accountant",
        &[
            "IFRS",
            "Excel",
            "SAP",
            "payroll",
            "auditing",
            "tax reporting",
        ],
    ),
    (
        "mobile developer",
        &[
            "Kotlin",
            "Swift",
            "Flutter",
            "Firebase",
            "REST APIs",
            "CI/CD",
        ],
    ),
];

fn extract(rng: &mut R, schema: usize) -> Conv {
    let p = pii::person(rng, None);
    let full = p.full();
    let (c, country) = *pick(rng, CITIES);
    let location = format!("{c}, {country}");
    let (role, pool) = *pick(rng, ROLES);
    let mut skills: Vec<&str> = pool.to_vec();
    skills.shuffle(rng);
    skills.truncate(rng.random_range(3..=5));
    let years = rng.random_range(1..=20u32);
    let has_email = chance(rng, 0.85);
    let phone = if !has_email || chance(rng, 0.7) {
        Some(pii::phone(rng))
    } else {
        None
    };
    let email = has_email.then(|| p.email.clone());
    let yrs = fill(
        pick_str(rng, &["{y} years", "{y}+ years", "{y} yrs"]),
        &[("y", &years.to_string())],
    );
    let (co1, _) = *pick(rng, pii::COMPANIES);
    let (co2, _) = *pick(rng, pii::COMPANIES);
    let title = capitalise(role);
    let contact_line = [email.clone(), phone.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let doc = match rng.random_range(0..4) {
        0 => {
            let split = (years / 2).max(1);
            let start = 2025 - years;
            let mut lines = vec![
                full.clone(),
                format!("{title} | {location}"),
                contact_line.join(" | "),
                String::new(),
                "SUMMARY".to_string(),
                format!("{title} with {yrs} of experience."),
                String::new(),
                "SKILLS".to_string(),
                skills.join(", "),
                String::new(),
                "EXPERIENCE".to_string(),
            ];
            if years >= 2 && co1 != co2 {
                lines.push(format!("{co1} - {title} ({}-present)", start + split));
                lines.push(format!("{co2} - {title} ({start}-{})", start + split));
            } else {
                lines.push(format!("{co1} - {title} ({start}-present)"));
            }
            lines.join("\n")
        }
        1 => {
            let reach = match (&email, &phone) {
                (Some(e), Some(ph)) => format!("You can reach me at {e} or {ph}."),
                (Some(e), None) => format!("You can reach me at {e}."),
                (None, Some(ph)) => format!("You can call me on {ph}."),
                _ => String::new(),
            };
            format!(
                "Hi, please find my CV below.\n\nMy name is {full} and I am a {role} based in {location}. I have {yrs} of professional experience, currently at {co1}. My main skills are {}. {reach}",
                and_list(&skills)
            )
        }
        2 => {
            let mut lines = vec![
                format!("Name: {full}"),
                format!("Headline: {title} at {co1}"),
                format!("Location: {location}"),
                format!("Experience: {yrs}"),
                format!("Skills: {}", skills.join("; ")),
            ];
            if let Some(e) = &email {
                lines.push(format!("Email: {e}"));
            }
            if let Some(ph) = &phone {
                lines.push(format!("Phone: {ph}"));
            }
            lines.join("\n")
        }
        _ => {
            let rec = pii::person(rng, Some("talentbridge.io"));
            format!(
                "Candidate forwarded by {}:\n{full} ({}), {location}. {yrs} as {role}, last at {co1}. Stack: {}.",
                rec.full(),
                contact_line.join(", "),
                skills.join(" / ")
            )
        }
    };
    let lead = pick_str(
        rng,
        &[
            "",
            "",
            "Resume:\n",
            "Parse this CV:\n\n",
            "New application.\n\n",
        ],
    );
    let user = format!("{lead}{doc}");
    let answer = if schema == 0 {
        json!({"name": full, "email": email, "years_experience": years, "skills": skills})
    } else {
        let seniority = match years {
            0..=2 => "junior",
            3..=7 => "mid",
            _ => "senior",
        };
        let contact = email.clone().or(phone.clone());
        json!({"candidate": full, "contact": contact, "seniority": seniority, "top_skill": skills[0], "location": location})
    };
    let system = EXTRACT_SYSTEM[rng.random_range(0..EXTRACT_SYSTEM.len())]
        .replace("{schema}", EXTRACT_SCHEMAS[schema]);
    let mut c = conv(
        "resume_extraction",
        &system,
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer.to_string()),
    );
    c.json_output = true;
    c
}

// ---------------------------------------------------------------- one-off tasks

/// One-off tasks: (system prompt, request, answer); each appears at most
/// once in a file.
const ONEOFFS: &[(&str, &str, &str)] = &[
    ("You are a poetry assistant. Write a haiku (5-7-5) on the topic given.", "Write a haiku about the first snow in Kyoto.", "Silent temple roofs\nfirst snow settles on the pines\nKyoto holds its breath"),
    ("Convert the data the user gives you into YAML. Output only YAML.", "Convert this CSV row to YAML (header: id,name,price,in_stock):\n1042,Desk Lamp,39.90,true", "id: 1042\nname: Desk Lamp\nprice: 39.90\nin_stock: true"),
    ("You write regular expressions. Reply with the pattern only.", "Regex that matches a UK postcode like SW1A 1AA or M1 1AE.", "^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$"),
    ("You are a git expert. Write a conventional commit message for the change described.", "Change: renamed getUserData to fetchUserProfile in api/user.ts and updated the 4 call sites, no behaviour change.", "refactor(api): rename getUserData to fetchUserProfile\n\nUpdate the four call sites; no behaviour change."),
    ("Explain error messages to junior developers in two sentences.", "What does \"TypeError: Cannot read properties of undefined (reading 'map')\" mean?", "Your code called .map on a variable that is undefined, usually because the data has not loaded yet or a property name is misspelled. Check where the array comes from and give it a default such as [] before mapping."),
    ("You are a naming consultant. Suggest exactly five names, one per line.", "Names for a small bakery in Lisbon that specialises in sourdough.", "Massa Mãe\nFermento\nCrosta Dourada\nPão da Sé\nLevain Lisboa"),
    ("Rewrite legal text in plain English for a general audience.", "The lessee shall indemnify and hold harmless the lessor from any and all claims arising from the lessee's use of the premises.", "If someone makes a claim because of how the tenant uses the property, the tenant must cover it, not the landlord."),
    ("You are a Spanish tutor. Correct the sentence and explain the mistake briefly.", "Yo soy 25 años.", "Correct: \"Tengo 25 años.\" In Spanish you give your age with tener (to have), not ser."),
    ("Generate a PostgreSQL CREATE TABLE statement from the description.", "A table for library loans: id, book id, member id, loaned at timestamp, due date, returned flag.", "CREATE TABLE loans (\n  id BIGSERIAL PRIMARY KEY,\n  book_id BIGINT NOT NULL,\n  member_id BIGINT NOT NULL,\n  loaned_at TIMESTAMPTZ NOT NULL DEFAULT now(),\n  due_date DATE NOT NULL,\n  returned BOOLEAN NOT NULL DEFAULT false\n);"),
    ("Write a limerick on the subject given.", "A limerick about a cat who loves cardboard boxes.", "A tabby who lived in Dundee\nadored every box she could see;\nshe'd ignore a new bed,\nchoose a carton instead,\nand sleep there as snug as can be."),
    ("Summarise the article in one tweet (max 280 characters).", "Article: A six-month trial of a four-day week at 61 UK companies found that revenue stayed broadly the same while sick days fell by two thirds; 56 of the firms are continuing the scheme.", "61 UK firms tried a 4-day week for 6 months: revenue held steady, sick days fell by two thirds, and 56 of them are keeping it."),
    ("You convert recipes between metric and US units.", "Convert to US cups: 250 g flour, 200 ml milk, 100 g sugar.", "Flour: about 2 cups. Milk: about 0.85 cup (a scant cup). Sugar: 1/2 cup."),
    ("Produce a bash one-liner for the task. No explanation.", "Find all .log files over 100 MB under /var and delete them.", "find /var -type f -name '*.log' -size +100M -delete"),
    ("Write alt text for images described by the user, under 125 characters.", "Photo: a golden retriever puppy asleep on a stack of books in a sunny library.", "Golden retriever puppy sleeping on a pile of books in a sunlit library."),
    ("You are a chess coach. Name the opening from the moves.", "1. e4 c5 2. Nf3 d6 3. d4 cxd4 4. Nxd4 Nf6 5. Nc3 a6", "That is the Sicilian Defence, Najdorf Variation."),
    ("Turn the user's notes into a polite out-of-office reply.", "away 12-20 Aug, urgent stuff -> ops team, back 21st", "Thank you for your email. I am out of the office from 12 to 20 August and will reply when I am back on 21 August. For anything urgent, please contact the operations team."),
    ("You are a JSON Schema generator. Output a JSON Schema (draft 2020-12) for the example object.", "{\"id\": 7, \"title\": \"Buy milk\", \"done\": false}", "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"title\":{\"type\":\"string\"},\"done\":{\"type\":\"boolean\"}},\"required\":[\"id\",\"title\",\"done\"]}"),
    ("Answer trivia questions with one short sentence.", "Which planet has the most moons?", "Saturn currently has the most confirmed moons, more than 140."),
    ("Write a product description of about 50 words for an online shop.", "Bamboo cutting board, 40x30 cm, juice groove, hand wash only.", "Prep in style with this 40 x 30 cm bamboo cutting board. The deep juice groove keeps your counter clean while you carve roasts or slice fruit, and the naturally hard bamboo is gentle on knives. Hand wash and dry after use to keep it looking its best."),
    ("You convert dates into ISO 8601.", "Convert 'the third of March, nineteen ninety-nine, half past four in the afternoon' to ISO 8601.", "1999-03-03T16:30:00"),
    ("Create a 3-question multiple-choice quiz from the passage.", "Passage: Photosynthesis turns light, water and carbon dioxide into glucose and oxygen. It takes place in the chloroplasts, which contain the green pigment chlorophyll.", "1. What does photosynthesis produce? a) glucose and oxygen b) carbon dioxide c) nitrogen (a)\n2. Where does it take place? a) mitochondria b) chloroplasts c) nucleus (b)\n3. Which pigment is involved? a) melanin b) carotene c) chlorophyll (c)"),
    ("You are a Python reviewer. Point out the bug in one sentence.", "def add_item(item, items=[]):\n    items.append(item)\n    return items", "The default list is created once and shared between calls, so items pile up; use items=None and create a new list inside the function."),
    ("Write a cron expression for the schedule. Reply with the expression only.", "Every weekday at 6:30 in the morning.", "30 6 * * 1-5"),
    ("Translate emoji-speak into plain English.", "🍕➡️🏠❓🕖", "Shall we get pizza at home at seven?"),
    ("You are a packing-list assistant. Reply with a bulleted list.", "3-day hiking trip in the Alps in September, sleeping in huts.", "- Hiking boots and socks\n- Rain jacket and warm fleece\n- Sleeping-bag liner (required in huts)\n- Headlamp\n- Water bottle and snacks\n- Sun cream, hat, sunglasses\n- First-aid kit\n- Cash for the huts\n- Map or offline app"),
    ("Give the user a motivating but honest one-paragraph pep talk.", "I failed my driving test for the second time.", "Two fails is frustrating, but it is also common, and each attempt shows you exactly what to work on. Ask the examiner's notes for the points you lost, book a couple of lessons focused on those, and go back in when they feel routine. Plenty of good drivers passed on their third try."),
    ("Convert markdown tables to HTML.", "| Name | Qty |\n|---|---|\n| Apples | 3 |\n| Pears | 5 |", "<table>\n  <tr><th>Name</th><th>Qty</th></tr>\n  <tr><td>Apples</td><td>3</td></tr>\n  <tr><td>Pears</td><td>5</td></tr>\n</table>"),
    ("You write Google-style docstrings for Python functions.", "def clamp(x, lo, hi): return max(lo, min(x, hi))", "\"\"\"Limits a value to a range.\n\nArgs:\n    x: The value to limit.\n    lo: The lower bound.\n    hi: The upper bound.\n\nReturns:\n    x if lo <= x <= hi, otherwise the nearest bound.\n\"\"\""),
    ("Rhyme helper: list six words that rhyme with the given word, comma-separated.", "light", "bright, night, kite, sight, flight, white"),
    ("Estimate the reading time of a text at 230 words per minute.", "The text has 1,840 words. How long will it take to read?", "About 8 minutes."),
    ("Write a wedding toast of under 80 words.", "For my sister and her partner, who met at a climbing gym.", "To my sister and her partner, who met halfway up a climbing wall and have been holding each other's rope ever since. May you always trust the belay, cheer each other on the hard routes, and enjoy the view together from every summit. Raise your glasses to the happy couple!"),
    ("You are a Dockerfile generator.", "Dockerfile for a Node 20 app, entry server.js, port 8080.", "FROM node:20-alpine\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci --omit=dev\nCOPY . .\nEXPOSE 8080\nCMD [\"node\", \"server.js\"]"),
    ("Solve the math word problem and give the final answer on the last line.", "A train leaves at 14:10 and arrives at 17:45. How long is the trip?", "From 14:10 to 17:10 is 3 hours, plus 35 minutes to 17:45.\nAnswer: 3 h 35 min"),
    ("Convert the colour to every common notation.", "#1E90FF", "HEX #1E90FF\nRGB rgb(30, 144, 255)\nHSL hsl(210, 100%, 56%)"),
    ("Rewrite the sentence in the passive voice.", "The committee approved the new budget on Monday.", "The new budget was approved by the committee on Monday."),
    ("You are a Latin translator.", "Translate 'knowledge is power' into Latin.", "Scientia potentia est."),
    ("Write a short bedtime story (about 100 words) for a five-year-old.", "A story about a snail who wants to see the sea.", "Sami the snail lived under a cabbage leaf and dreamed of the sea. Every morning he set off, slow and steady, past the tulips, under the fence, along the sandy path. Bees laughed, birds shrugged, but Sami kept going. After many days he heard a whoosh and smelled salt. There it was: the sea, sparkling and enormous. A crab waved hello. Sami found a cool, wet rock, tucked himself into his shell and listened to the waves. \"Worth every slow step,\" he whispered, and fell asleep."),
    ("Generate five interview questions for the role described.", "Junior data analyst at a retail chain.", "1. How would you find out why sales dropped in one store last month?\n2. Walk me through a SQL query you wrote recently.\n3. How do you check that a dataset is clean before analysing it?\n4. How would you explain a trend to a store manager with no data background?\n5. Which chart would you use to compare weekly sales across regions, and why?"),
    ("Convert the SQL query to a MongoDB query.", "SELECT name, age FROM users WHERE age > 30 ORDER BY age DESC", "db.users.find({ age: { $gt: 30 } }, { name: 1, age: 1, _id: 0 }).sort({ age: -1 })"),
    ("You write SMS-length reminders (under 160 characters).", "Remind patients about their dental check-up tomorrow at 9:15, bring insurance card.", "Reminder: your dental check-up is tomorrow at 9:15. Please bring your insurance card. Reply C to cancel."),
    ("Explain the idiom and give an example sentence.", "What does 'to bite the bullet' mean?", "It means to face something unpleasant that you have been avoiding. Example: \"I finally bit the bullet and booked the root canal.\""),
    ("You are a unit-test writer. Write pytest tests.", "def is_leap(y): return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)", "import pytest\n\n@pytest.mark.parametrize(\"year,expected\", [(2024, True), (2023, False), (1900, False), (2000, True)])\ndef test_is_leap(year, expected):\n    assert is_leap(year) == expected"),
    ("Suggest a tagline (max 8 words) for the brand.", "An electric bike rental in Copenhagen called Pedl.", "Pedl: Copenhagen, without breaking a sweat."),
    ("Convert the duration in the text into seconds. Reply with the number only.", "2 hours, 15 minutes and 30 seconds", "8130"),
    ("Make the paragraph more concise without losing information.", "At this point in time, we are currently in the process of reviewing all of the applications that we have received, and we will be getting back to each and every applicant in due course.", "We are reviewing all applications and will reply to every applicant soon."),
    ("You are a crossword helper. Give the answer in capitals.", "Clue: Capital of Australia (8 letters)", "CANBERRA"),
    ("Write the opening paragraph of a mystery novel set in the place given.", "A lighthouse on the Faroe Islands, 1920s.", "The lamp at Nólsoy had burned every night for forty years, so when the fishermen saw the tower dark on the first of November, they knew something was wrong. By morning the sea had calmed, the door stood open, and the keeper's logbook lay on the table, its last page torn out."),
    ("You generate .gitignore files.", "A Rust project that also has a Python virtualenv and VS Code settings.", "/target\n**/*.rs.bk\n.venv/\n__pycache__/\n*.pyc\n.vscode/"),
    ("Group the shopping list by supermarket aisle.", "milk, apples, pasta, shampoo, cheddar, bananas, tinned tomatoes, toothpaste", "Produce: apples, bananas\nDairy: milk, cheddar\nPantry: pasta, tinned tomatoes\nToiletries: shampoo, toothpaste"),
    ("Convert the number to Roman numerals.", "1987", "MCMLXXXVII"),
    ("Convert the XML snippet to JSON.", "<book id=\"7\"><title>Dune</title><year>1965</year></book>", "{\"book\":{\"id\":\"7\",\"title\":\"Dune\",\"year\":\"1965\"}}"),
    ("Write a three-sentence thank-you note to a colleague.", "Thank my teammate for covering my on-call shift last weekend.", "Thank you so much for covering my on-call shift last weekend. I know it cut into your plans, and it meant a lot that I could be with my family. Next time you need a swap, I've got you."),
];

/// The number of distinct one-off tasks.
pub fn oneoff_table_len() -> usize {
    ONEOFFS.len()
}

fn oneoff(n: usize) -> Conv {
    let (system, user, answer) = ONEOFFS[n];
    let mut c = conv(
        "adhoc",
        system,
        vec![],
        vec![Turn::User(user.to_string())],
        Answer::Text(answer.to_string()),
    );
    c.temperature = 0.7;
    c.max_tokens = 1024;
    c
}
