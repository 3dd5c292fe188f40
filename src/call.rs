//! The canonical LLM call: one normalised, OpenAI-chat-style record per call,
//! whatever log format it came from.
//!
//! Two wrappers keep raw and redacted data apart in the type system:
//! [`RawCall`] is what a format parser produces; it has no `Debug`, no
//! `Display`, no `Serialize`, and the only way out of it is
//! [`crate::redact::Redactor::redact_call`] then
//! [`crate::redact::Pseudonyms::finish`], which yields a [`RedactedCall`].
//! Every writer (`calls.parquet`, quarantine, reports) takes `RedactedCall` only.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which log format a record was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// OpenAI chat request/response pairs, including the Data Flywheel record.
    OpenaiChat,
    /// OpenAI Batch API input + output files joined on `custom_id`.
    OpenaiBatch,
    /// Anthropic Messages request + response (and Message Batches results).
    Anthropic,
    /// OpenTelemetry GenAI spans in OTLP JSON.
    Otel,
    /// Langfuse observations of type GENERATION.
    Langfuse,
    /// Helicone request exports.
    Helicone,
    /// LiteLLM StandardLoggingPayload.
    Litellm,
    /// LangSmith runs with `run_type = llm`.
    Langsmith,
}

impl SourceFormat {
    pub const ALL: [SourceFormat; 8] = [
        SourceFormat::OpenaiChat,
        SourceFormat::OpenaiBatch,
        SourceFormat::Anthropic,
        SourceFormat::Otel,
        SourceFormat::Langfuse,
        SourceFormat::Helicone,
        SourceFormat::Litellm,
        SourceFormat::Langsmith,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::OpenaiChat => "openai_chat",
            SourceFormat::OpenaiBatch => "openai_batch",
            SourceFormat::Anthropic => "anthropic",
            SourceFormat::Otel => "otel",
            SourceFormat::Langfuse => "langfuse",
            SourceFormat::Helicone => "helicone",
            SourceFormat::Litellm => "litellm",
            SourceFormat::Langsmith => "langsmith",
        }
    }

    pub fn parse(s: &str) -> Option<SourceFormat> {
        let norm = s.replace('-', "_").to_ascii_lowercase();
        SourceFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == norm)
            .or(match norm.as_str() {
                "openai" | "flywheel" => Some(SourceFormat::OpenaiChat),
                "batch" => Some(SourceFormat::OpenaiBatch),
                "otlp" | "opentelemetry" => Some(SourceFormat::Otel),
                _ => None,
            })
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A tool (function) call made by the assistant. `arguments` is parsed JSON;
/// when the model emitted arguments that are not valid JSON they are kept as a
/// JSON string value and `arguments_valid` is false.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub arguments: Value,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub arguments_valid: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// A tool definition offered to the model (OpenAI `function` shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Value,
}

/// One message of the request conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn text(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: Some(content.into()),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        }
    }
}

/// The assistant's answer to the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

impl Response {
    /// "tool_call", "json" (content parses as a JSON object or array) or "text".
    pub fn kind(&self) -> &'static str {
        if !self.tool_calls.is_empty() {
            return "tool_call";
        }
        match self.content.as_deref().map(str::trim) {
            Some(c)
                if (c.starts_with('{') || c.starts_with('['))
                    && serde_json::from_str::<Value>(c).is_ok() =>
            {
                "json"
            }
            _ => "text",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

/// Where a call came from: file, 1-based line, and the index of the item on
/// that line (span index in an OTLP payload, element index in a JSON array).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u64,
    pub index: u32,
}

/// The canonical call. Its fields are plain data; whether it is raw or
/// redacted is carried by the wrapper ([`RawCall`] / [`RedactedCall`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Call {
    pub source_format: Option<SourceFormat>,
    pub origin: Origin,
    pub workload_id: Option<String>,
    pub client_id: Option<String>,
    pub model: Option<String>,
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: Option<i64>,
    pub latency_ms: Option<f64>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    pub response: Response,
    pub usage: Usage,
    /// Free-form metadata kept from the source (user ids, tags...). Redacted.
    pub metadata: serde_json::Map<String, Value>,
    /// What the request demanded of the answer (`tool_choice`,
    /// `response_format`), where the log says.
    pub demands: Demands,
}

/// What a request demanded of the answer: OpenAI's `tool_choice` (legacy
/// `function_call`) and `response_format`, Anthropic's `tool_choice`.
/// Schema-guided decoding follows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Demands {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The answer's JSON Schema (`response_format.json_schema.schema`;
    /// `{"type": "object"}` for `json_object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// OpenAI's `parallel_tool_calls` (`false`: at most one call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

impl Demands {
    pub fn is_empty(&self) -> bool {
        self.tool_choice.is_none()
            && self.response_schema.is_none()
            && self.parallel_tool_calls.is_none()
    }

    /// Reads OpenAI (`tool_choice`, `function_call`, `response_format`) and
    /// Anthropic (`tool_choice: {type: auto|any|tool|none, name}`) request
    /// fields; anything else is ignored.
    pub fn from_request(req: &Value) -> Demands {
        let name_of = |v: &Value| {
            v.get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| v.get("name"))
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Function(n.to_string()))
        };
        let choice = |v: &Value| -> Option<ToolChoice> {
            match v {
                Value::String(s) => match s.as_str() {
                    "none" => Some(ToolChoice::None),
                    "auto" => Some(ToolChoice::Auto),
                    "required" | "any" => Some(ToolChoice::Required),
                    _ => None,
                },
                Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                    Some("auto") => Some(ToolChoice::Auto),
                    Some("any") | Some("required") => Some(ToolChoice::Required),
                    Some("none") => Some(ToolChoice::None),
                    _ => name_of(v),
                },
                _ => None,
            }
        };
        let tool_choice = req
            .get("tool_choice")
            .and_then(choice)
            .or_else(|| req.get("function_call").and_then(choice));
        let response_schema = req.get("response_format").and_then(|rf| {
            match rf.get("type").and_then(Value::as_str) {
                Some("json_schema") => rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .filter(|s| s.is_object())
                    .cloned(),
                Some("json_object") => Some(serde_json::json!({"type": "object"})),
                _ => None,
            }
        });
        Demands {
            tool_choice,
            response_schema,
            parallel_tool_calls: req.get("parallel_tool_calls").and_then(Value::as_bool),
        }
    }
}

/// What a request allows or demands of tool use (OpenAI's `tool_choice`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// No tool calls.
    None,
    /// Text or calls.
    Auto,
    /// At least one call.
    Required,
    /// Calls of this function only.
    Function(String),
}

impl Call {
    /// Visits every free-text string of the call: message contents, tool-call
    /// arguments (every string inside the parsed JSON), tool descriptions and
    /// schemas, response, identifiers that may carry PII, metadata values.
    /// Redaction and pseudonym resolution both go through this one walk, so
    /// a field added here is redacted everywhere.
    pub fn for_each_text_mut(&mut self, f: &mut dyn FnMut(&mut String)) {
        for m in &mut self.messages {
            visit_message(m, f);
        }
        for t in &mut self.tools {
            if let Some(d) = &mut t.description {
                f(d);
            }
            visit_value(&mut t.parameters, f);
        }
        if let Some(c) = &mut self.response.content {
            f(c);
        }
        for tc in &mut self.response.tool_calls {
            visit_value(&mut tc.arguments, f);
        }
        if let Some(schema) = &mut self.demands.response_schema {
            visit_value(schema, f);
        }
        if let Some(c) = &mut self.client_id {
            f(c);
        }
        for v in self.metadata.values_mut() {
            visit_value(v, f);
        }
    }

    pub fn system_prompt(&self) -> String {
        let parts: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .filter_map(|m| m.content.as_deref())
            .collect();
        parts.join("\n\n")
    }

    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .and_then(|m| m.content.as_deref())
    }
}

fn visit_message(m: &mut Message, f: &mut dyn FnMut(&mut String)) {
    if let Some(c) = &mut m.content {
        f(c);
    }
    // OpenAI's per-message `name` is often a user's name or handle.
    if let Some(n) = &mut m.name {
        f(n);
    }
    for tc in &mut m.tool_calls {
        visit_value(&mut tc.arguments, f);
    }
}

/// Visits every string inside a JSON value (object keys are structure, not
/// text, and are left alone).
pub fn visit_value(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| visit_value(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| visit_value(x, f)),
        _ => {}
    }
}

/// A call as parsed from a log: may hold raw PII. Deliberately has no
/// `Debug`, `Display` or `Serialize`; it can only be redacted.
pub struct RawCall(pub(crate) Call);

impl RawCall {
    pub fn new(call: Call) -> RawCall {
        RawCall(call)
    }
    /// Read access for parsers and tests (shape checks, never printing).
    pub fn peek(&self) -> &Call {
        &self.0
    }
}

/// A call whose every text field went through the redactor. Only the
/// redaction module and the artifact reader construct one.
#[derive(Clone, Debug, PartialEq)]
pub struct RedactedCall(pub(crate) Call);

impl RedactedCall {
    /// Stable id: hex of the hash of the normalised request + response.
    pub fn id(&self) -> String {
        hex::encode(&content_hash(&self.0)[..8])
    }
    pub fn into_inner(self) -> Call {
        self.0
    }
}

impl std::ops::Deref for RedactedCall {
    type Target = Call;
    fn deref(&self) -> &Call {
        &self.0
    }
}

/// Hash of what makes a call the same call: the request (messages, tools)
/// and the response. Timestamps, origin and metadata are not part of it.
pub fn content_hash(call: &Call) -> [u8; 32] {
    content_hash_of(
        &serde_json::to_vec(&call.messages).unwrap_or_default(),
        &serde_json::to_vec(&call.tools).unwrap_or_default(),
        call,
    )
}

/// [`content_hash`] from the messages and tools already serialised (as
/// `serde_json` writes them), so a caller that needs those strings anyway
/// does not serialise twice.
pub fn content_hash_of(messages_json: &[u8], tools_json: &[u8], call: &Call) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(messages_json);
    h.update([0u8]);
    h.update(tools_json);
    h.update([0u8]);
    h.update(serde_json::to_vec(&call.response).unwrap_or_default());
    h.finalize().into()
}
