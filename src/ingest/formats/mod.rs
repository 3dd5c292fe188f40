//! Log-format parsers: detect the format of one JSON record and normalise it
//! into canonical [`RawCall`]s (or say precisely why not).
//!
//! Parsers never put input values into error details: a [`Bad`] names the
//! field and the JSON type it had, nothing else.

pub mod anthropic;
pub mod observability;
pub mod openai;
pub mod otel;

use serde_json::Value;

use crate::call::{RawCall, SourceFormat};

/// Why a record could not become a call. Serialised as snake_case codes in
/// `quarantine.jsonl` and `ingest.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// The record is not valid JSON (truncated, broken).
    InvalidJson,
    /// The record is larger than `--max-record-mb`.
    TooLarge,
    /// JSON nesting deeper than `--max-depth`.
    TooDeep,
    /// No known log format matches the record's shape.
    UnknownFormat,
    /// A field has the wrong JSON type (detail names the field).
    WrongType,
    /// The request has no messages.
    EmptyRequest,
    /// The call has a request but no response.
    MissingResponse,
    /// The response is empty: no text and no tool call.
    EmptyResponse,
    /// The provider answered with an error (status, error object, failed run).
    ErrorResponse,
    /// A streamed chunk (or chunk list) that cannot be reassembled into a response.
    StreamChunk,
    /// An endpoint other than chat completions / messages (embeddings...).
    UnsupportedEndpoint,
    /// A batch request whose output line never came.
    BatchMissingResponse,
    /// A batch output line whose request line never came.
    BatchMissingRequest,
    /// A second batch line with a `custom_id` already seen.
    BatchDuplicateId,
    /// The input stopped being readable mid-file (corrupt compression, I/O error).
    UnreadableInput,
    /// slmforge itself failed on this record (a bug): the record is kept
    /// out of the dataset and the run goes on.
    InternalError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::TooLarge => "too_large",
            Reason::TooDeep => "too_deep",
            Reason::UnknownFormat => "unknown_format",
            Reason::WrongType => "wrong_type",
            Reason::EmptyRequest => "empty_request",
            Reason::MissingResponse => "missing_response",
            Reason::EmptyResponse => "empty_response",
            Reason::ErrorResponse => "error_response",
            Reason::StreamChunk => "stream_chunk",
            Reason::UnsupportedEndpoint => "unsupported_endpoint",
            Reason::BatchMissingResponse => "batch_missing_response",
            Reason::BatchMissingRequest => "batch_missing_request",
            Reason::BatchDuplicateId => "batch_duplicate_id",
            Reason::UnreadableInput => "unreadable_input",
            Reason::InternalError => "internal_error",
        }
    }
}

/// A record (or item) that cannot be normalised. `detail` is safe to print:
/// field names and JSON types only, never values.
#[derive(Clone, Debug, PartialEq)]
pub struct Bad {
    pub reason: Reason,
    pub detail: String,
}

impl Bad {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Bad {
        Bad {
            reason,
            detail: detail.into(),
        }
    }
}

pub type Res<T> = Result<T, Bad>;

/// Key joining the two halves of a batch call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub format: SourceFormat,
    pub custom_id: String,
}

/// What one item of a record turned out to be.
pub enum Item {
    /// A complete call.
    Call(RawCall),
    /// The request half of a batch call (messages, tools, model).
    BatchRequest { key: BatchKey, call: RawCall },
    /// The response half of a batch call, or why it failed.
    BatchResponse {
        key: BatchKey,
        result: Result<RawCall, Bad>,
    },
    /// Telemetry that is not an LLM call (tool or agent spans, non-generation
    /// observations, chain runs). Counted, not quarantined.
    NotACall(&'static str),
    /// Cannot be normalised.
    Bad(Bad),
}

/// One parsed item with its format (a guess for bad items), its index inside
/// the record, and for bad sub-items the JSON to quarantine (the whole
/// record is quarantined when `None`).
pub struct Parsed {
    pub format: Option<SourceFormat>,
    pub index: u32,
    pub item: Item,
    pub content: Option<Value>,
}

impl Parsed {
    fn whole(format: Option<SourceFormat>, item: Item) -> Parsed {
        Parsed {
            format,
            index: 0,
            item,
            content: None,
        }
    }
}

/// Which format a record looks like, from its top-level keys.
pub fn detect(v: &Value) -> Option<SourceFormat> {
    let o = v.as_object()?;
    let has = |k: &str| o.contains_key(k);
    if has("resourceSpans") {
        return Some(SourceFormat::Otel);
    }
    if has("custom_id") {
        if has("params") || has("result") {
            return Some(SourceFormat::Anthropic);
        }
        return Some(SourceFormat::OpenaiBatch);
    }
    if has("request_body") || has("response_body") || (has("request_id") && has("response_status"))
    {
        return Some(SourceFormat::Helicone);
    }
    if has("run_type") && (has("inputs") || has("outputs")) {
        return Some(SourceFormat::Langsmith);
    }
    if has("traceId") && has("type") && (has("input") || has("output") || has("startTime")) {
        return Some(SourceFormat::Langfuse);
    }
    if has("call_type")
        || (has("messages") && has("response") && (has("model_parameters") || has("response_cost")))
    {
        return Some(SourceFormat::Litellm);
    }
    if has("request") || has("response") {
        if anthropic::looks_anthropic(o.get("request"), o.get("response")) {
            return Some(SourceFormat::Anthropic);
        }
        return Some(SourceFormat::OpenaiChat);
    }
    if has("messages") || has("completion") || has("prompt") {
        return Some(SourceFormat::OpenaiChat);
    }
    None
}

/// A bare request body (an object with `messages` and no response field,
/// also inside `{"request": ...}` without a response or an OpenAI Batch
/// input line) wrapped as a request/response pair with a placeholder
/// answer, so that requests can be read without responses
/// (`requests_only`); anything else is returned as it is.
pub fn as_request_record(v: &Value) -> Value {
    const RESPONSE_KEYS: [&str; 8] = [
        "response",
        "choices",
        "output",
        "response_body",
        "result",
        "request",
        "completion",
        "outputs",
    ];
    let Value::Object(o) = v else {
        return v.clone();
    };
    // `{"request": {...}}` without a response, and an OpenAI Batch input
    // line (`{"custom_id", "body": {...}}`): their request body.
    let inner = match (o.get("request"), o.get("body")) {
        (Some(r @ Value::Object(_)), _) if !o.contains_key("response") => Some(r),
        (None, Some(b @ Value::Object(_)))
            if o.contains_key("custom_id") && !o.contains_key("response") =>
        {
            Some(b)
        }
        _ => None,
    };
    if let Some(inner) = inner {
        return as_request_record(inner);
    }
    if !o.get("messages").is_some_and(Value::is_array)
        || RESPONSE_KEYS.iter().any(|k| o.contains_key(*k))
    {
        return v.clone();
    }
    let placeholder = if anthropic::looks_anthropic(Some(v), None) {
        serde_json::json!({"type": "message", "role": "assistant", "stop_reason": "end_turn",
                           "content": [{"type": "text", "text": "(request only)"}]})
    } else {
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": "(request only)"}}]})
    };
    serde_json::json!({"request": v, "response": placeholder})
}

/// Parses one JSON record into items. `forced` is `--format`.
pub fn parse_record(v: &Value, forced: Option<SourceFormat>) -> Vec<Parsed> {
    let fmt = match forced.or_else(|| detect(v)) {
        Some(f) => f,
        None => {
            let detail = match v {
                Value::Object(_) => "no known log format has these top-level fields",
                other => {
                    return vec![Parsed::whole(
                        None,
                        Item::Bad(wrong_type("record", "an object", other)),
                    )]
                }
            };
            return vec![Parsed::whole(
                None,
                Item::Bad(Bad::new(Reason::UnknownFormat, detail)),
            )];
        }
    };
    if !v.is_object() {
        return vec![Parsed::whole(
            Some(fmt),
            Item::Bad(wrong_type("record", "an object", v)),
        )];
    }
    match fmt {
        SourceFormat::Otel => otel::parse(v),
        SourceFormat::OpenaiChat => vec![Parsed::whole(Some(fmt), item(openai::parse_pair(v)))],
        SourceFormat::OpenaiBatch => vec![Parsed::whole(Some(fmt), openai::parse_batch_line(v))],
        SourceFormat::Anthropic => vec![Parsed::whole(Some(fmt), anthropic::parse_record(v))],
        SourceFormat::Langfuse => vec![Parsed::whole(Some(fmt), observability::parse_langfuse(v))],
        SourceFormat::Helicone => vec![Parsed::whole(
            Some(fmt),
            item(observability::parse_helicone(v)),
        )],
        SourceFormat::Litellm => vec![Parsed::whole(Some(fmt), observability::parse_litellm(v))],
        SourceFormat::Langsmith => {
            vec![Parsed::whole(Some(fmt), observability::parse_langsmith(v))]
        }
    }
}

fn item(r: Res<crate::call::Call>) -> Item {
    match r {
        Ok(c) => Item::Call(RawCall::new(c)),
        Err(b) => Item::Bad(b),
    }
}

/// The JSON type name of a value, for error details.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn wrong_type(field: &str, expected: &str, got: &Value) -> Bad {
    Bad::new(
        Reason::WrongType,
        format!("field `{field}` is {}, expected {expected}", type_name(got)),
    )
}

/// `v[key]` as an optional string; a non-string, non-null value is an error.
pub fn opt_str(v: &Value, key: &str, path: &str) -> Res<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(&format!("{path}{key}"), "a string", other)),
    }
}

/// `v[key]` as an optional string, accepting numbers (ids are often numeric).
pub fn opt_id(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// `v[key]` as an optional unsigned integer; accepts numeric strings (OTLP
/// encodes 64-bit ints as strings).
pub fn opt_u64(v: &Value, key: &str) -> Option<u64> {
    as_u64(v.get(key)?)
}

/// A token-count field of the canonical usage, for the data-quality
/// counters of `ingest.json` (`negative_prompt_tokens`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenField {
    Prompt,
    Completion,
    Total,
}

impl TokenField {
    pub const ALL: [TokenField; 3] = [
        TokenField::Prompt,
        TokenField::Completion,
        TokenField::Total,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The data-quality counter of a negative value in this field.
    pub fn negative_counter(self) -> &'static str {
        match self {
            TokenField::Prompt => "negative_prompt_tokens",
            TokenField::Completion => "negative_completion_tokens",
            TokenField::Total => "negative_total_tokens",
        }
    }
}

thread_local! {
    /// Token fields seen with a negative value while parsing the current
    /// record (one bit per [`TokenField`]); a record is parsed on one thread.
    static NEGATIVE_TOKENS: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Takes (and clears) the token fields found negative on this thread since
/// the last call: call before and after parsing one record.
pub fn take_negative_tokens() -> u8 {
    NEGATIVE_TOKENS.with(|c| c.replace(0))
}

/// Whether `mask` (from [`take_negative_tokens`]) holds `field`.
pub fn has_negative(mask: u8, field: TokenField) -> bool {
    mask & field.bit() != 0
}

/// A token count: [`as_u64`], and a negative value (a number or a numeric
/// string) is kept as null and noted for the data-quality counters.
pub fn tokens(v: Option<&Value>, field: TokenField) -> Option<u64> {
    let v = v?;
    let n = as_u64(v);
    if n.is_none() {
        let negative = match v {
            Value::Number(n) => n.as_f64().is_some_and(|f| f < 0.0),
            Value::String(s) => s.trim().parse::<f64>().is_ok_and(|f| f < 0.0),
            _ => false,
        };
        if negative {
            NEGATIVE_TOKENS.with(|c| c.set(c.get() | field.bit()));
        }
    }
    n
}

/// `v[key]` as a token count ([`tokens`]).
pub fn opt_tokens(v: &Value, key: &str, field: TokenField) -> Option<u64> {
    tokens(v.get(key), field)
}

/// The total of two token counts when both are known (saturating).
pub fn sum_tokens(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.saturating_add(b?))
}

pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses a timestamp: epoch seconds / ms / us / ns (number or numeric
/// string), RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` (UTC). Returns ms.
pub fn parse_time_ms(v: &Value) -> Option<i64> {
    fn from_epoch(x: f64) -> Option<i64> {
        if !x.is_finite() || x <= 0.0 {
            return None;
        }
        Some(if x < 1e11 {
            (x * 1000.0) as i64
        } else if x < 1e14 {
            x as i64
        } else if x < 1e17 {
            (x / 1000.0) as i64
        } else {
            (x / 1e6) as i64
        })
    }
    match v {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(x) = s.parse::<f64>() {
                return from_epoch(x);
            }
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
                return Some(dt.timestamp_millis());
            }
            for fmt in [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f UTC",
            ] {
                if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
                    return Some(dt.and_utc().timestamp_millis());
                }
            }
            None
        }
        _ => None,
    }
}

/// A JSON value that may arrive as a JSON-encoded string (OTel attributes,
/// Helicone bodies): returns the decoded value, or the value itself.
/// Borrows the value when there is nothing to decode (no copy of a large
/// request body).
pub fn decode_json_string(v: &Value) -> std::borrow::Cow<'_, Value> {
    if let Value::String(s) = v {
        let t = s.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                return std::borrow::Cow::Owned(parsed);
            }
        }
    }
    std::borrow::Cow::Borrowed(v)
}

/// A response field that may be a JSON-encoded completion or message, or
/// plain text that happens to be JSON (an extraction answer). Decodes only
/// when the decoded value looks like a completion or an assistant message.
pub fn decode_output(v: &Value) -> Value {
    let d = decode_json_string(v).into_owned();
    if matches!(v, Value::String(_)) {
        let looks = match &d {
            Value::Object(o) => ["choices", "role", "tool_calls", "object", "message"]
                .iter()
                .any(|k| o.contains_key(*k)),
            Value::Array(a) => a.first().is_some_and(|c| c.get("object").is_some()),
            _ => false,
        };
        if !looks {
            return v.clone();
        }
    }
    d
}

/// Nesting depth of a JSON value (scalars are depth 0), iterative.
pub fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d + 1);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}
