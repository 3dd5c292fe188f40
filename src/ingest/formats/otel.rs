//! OpenTelemetry GenAI spans in OTLP JSON: the current semantic conventions
//! (`gen_ai.input.messages` / `gen_ai.output.messages` /
//! `gen_ai.system_instructions` / `gen_ai.tool.definitions`, often as JSON
//! strings), the older event form (`gen_ai.user.message`, `gen_ai.choice`,
//! `gen_ai.content.prompt`) and the flattened form
//! (`gen_ai.prompt.{i}.role`, `gen_ai.completion.{i}.tool_calls.{j}.name`).
//!
//! A payload holds many spans; each span is one item, indexed by its
//! position in the flattened span list. Non-LLM spans (tools, agents) are
//! counted as not-a-call.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::openai::{self, parse_arguments};
use super::{
    as_u64, decode_json_string, sum_tokens, tokens, Bad, Item, Parsed, Reason, Res, TokenField,
};
use crate::call::{Call, Message, RawCall, Response, Role, SourceFormat, ToolCall, ToolDef, Usage};

/// Decodes an OTLP `AnyValue` into plain JSON.
fn any_value(v: &Value) -> Value {
    let Some(o) = v.as_object() else {
        return v.clone();
    };
    if let Some(s) = o.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = o.get("intValue") {
        return as_u64(i)
            .map(Value::from)
            .or_else(|| {
                i.as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map(Value::from)
            })
            .unwrap_or_else(|| i.clone());
    }
    if let Some(d) = o.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = o.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = o.get("arrayValue") {
        let vals = a
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().map(any_value).collect())
            .unwrap_or_default();
        return Value::Array(vals);
    }
    if let Some(kv) = o.get("kvlistValue") {
        return Value::Object(attributes(kv.get("values")));
    }
    if let Some(b) = o.get("bytesValue") {
        return b.clone();
    }
    v.clone()
}

/// OTLP attributes (`[{key, value}]`, or a plain object from some emitters)
/// as a map of decoded values.
fn attributes(v: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    match v {
        Some(Value::Array(kvs)) => {
            for kv in kvs {
                if let (Some(k), Some(val)) =
                    (kv.get("key").and_then(Value::as_str), kv.get("value"))
                {
                    out.insert(k.to_string(), any_value(val));
                }
            }
        }
        Some(Value::Object(o)) => {
            for (k, val) in o {
                out.insert(k.clone(), any_value(val));
            }
        }
        _ => {}
    }
    out
}

/// Parses an OTLP payload into one item per span.
pub fn parse(v: &Value) -> Vec<Parsed> {
    let fmt = Some(SourceFormat::Otel);
    let Some(rss) = v.get("resourceSpans").and_then(Value::as_array) else {
        let got = v.get("resourceSpans").unwrap_or(&Value::Null);
        return vec![Parsed {
            format: fmt,
            index: 0,
            item: Item::Bad(super::wrong_type("resourceSpans", "an array", got)),
            content: None,
        }];
    };
    let mut out = Vec::new();
    let mut index = 0u32;
    for rs in rss {
        let resource = attributes(rs.get("resource").and_then(|r| r.get("attributes")));
        let scopes = rs
            .get("scopeSpans")
            .or_else(|| rs.get("instrumentationLibrarySpans"))
            .and_then(Value::as_array);
        for ss in scopes.into_iter().flatten() {
            for span in ss
                .get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let item = match span_item(span, &resource) {
                    Ok(item) => item,
                    Err(b) => Item::Bad(b),
                };
                let content = matches!(item, Item::Bad(_)).then(|| span.clone());
                out.push(Parsed {
                    format: fmt,
                    index,
                    item,
                    content,
                });
                index += 1;
            }
        }
    }
    if out.is_empty() {
        out.push(Parsed {
            format: fmt,
            index: 0,
            item: Item::Bad(Bad::new(
                Reason::EmptyRequest,
                "the OTLP payload holds no spans",
            )),
            content: None,
        });
    }
    out
}

const LLM_OPS: &[&str] = &[
    "chat",
    "text_completion",
    "generate_content",
    "completion",
    "responses",
];

fn span_item(span: &Value, resource: &Map<String, Value>) -> Res<Item> {
    if !span.is_object() {
        return Err(super::wrong_type("span", "an object", span));
    }
    let attrs = attributes(span.get("attributes"));
    let events = span_events(span);
    if let Some(not_a_call) = not_a_call(&attrs, &events) {
        return Ok(Item::NotACall(not_a_call));
    }
    check_status(span, &attrs)?;
    let (messages, response, tools) = span_content(&attrs, &events)?;
    let response = check_content(&attrs, &messages, response)?;
    Ok(Item::Call(RawCall::new(span_call(
        span, resource, &attrs, messages, tools, response,
    ))))
}

/// The span's events: name and attributes (a `gen_ai.event.content` JSON
/// body merged into them).
fn span_events(span: &Value) -> Vec<(String, Map<String, Value>)> {
    span.get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let mut a = attributes(e.get("attributes"));
            // Some emitters (Semantic Kernel, Azure) put the whole event body,
            // e.g. {"role","content","tool_calls"} or {"message","finish_reason"},
            // in one `gen_ai.event.content` JSON attribute.
            if let Some(Value::Object(body)) = a
                .get("gen_ai.event.content")
                .map(|v| decode_json_string(v).into_owned())
            {
                for (k, v) in body {
                    a.entry(k).or_insert(v);
                }
            }
            (
                e.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                a,
            )
        })
        .collect()
}

/// Why a span is not an LLM call (a tool, agent, embeddings or non-GenAI
/// span), or `None` when it is one.
fn not_a_call(
    attrs: &Map<String, Value>,
    events: &[(String, Map<String, Value>)],
) -> Option<&'static str> {
    let op = attrs.get("gen_ai.operation.name").and_then(Value::as_str);
    let has_content = attrs.keys().any(|k| {
        k.starts_with("gen_ai.prompt")
            || k.starts_with("gen_ai.completion")
            || k.starts_with("gen_ai.input.messages")
    }) || events.iter().any(|(n, _)| n.starts_with("gen_ai."));
    match op {
        Some(op) if LLM_OPS.contains(&op) => None,
        Some("execute_tool") => Some("otel_tool_span"),
        Some("invoke_agent") | Some("create_agent") => Some("otel_agent_span"),
        Some("embeddings") => Some("otel_embeddings_span"),
        Some(_) => Some("otel_other_genai_span"),
        None if has_content => None,
        None => Some("otel_non_genai_span"),
    }
}

/// An error status (or `error.type`) quarantines the span.
fn check_status(span: &Value, attrs: &Map<String, Value>) -> Res<()> {
    let status_error = span
        .get("status")
        .and_then(|s| s.get("code"))
        .is_some_and(|c| {
            c.as_u64() == Some(2)
                || c.as_str() == Some("STATUS_CODE_ERROR")
                || c.as_str() == Some("ERROR")
        });
    if status_error || attrs.contains_key("error.type") {
        return Err(Bad::new(
            Reason::ErrorResponse,
            "the span has an error status",
        ));
    }
    Ok(())
}

/// Messages, response and tools, from the current conventions, the older
/// event form, or the flattened attribute form (first one that has them).
#[allow(clippy::type_complexity)]
fn span_content(
    attrs: &Map<String, Value>,
    events: &[(String, Map<String, Value>)],
) -> Res<(Vec<Message>, Option<Response>, Vec<ToolDef>)> {
    let mut messages = Vec::new();
    let mut response: Option<Response> = None;
    let mut tools: Vec<ToolDef> = Vec::new();

    // Current conventions.
    if let Some(sys) = attrs.get("gen_ai.system_instructions") {
        if let Some(t) = parts_text(&decode_json_string(sys)) {
            messages.push(Message::text(Role::System, t));
        }
    }
    if let Some(input) = attrs.get("gen_ai.input.messages") {
        messages.extend(semconv_messages(
            &decode_json_string(input),
            "gen_ai.input.messages",
        )?);
    }
    if let Some(output) = attrs.get("gen_ai.output.messages") {
        let outs = semconv_messages(&decode_json_string(output), "gen_ai.output.messages")?;
        let finish = decode_json_string(output)
            .as_array()
            .and_then(|a| a.first())
            .and_then(|m| m.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(m) = outs.into_iter().find(|m| m.role == Role::Assistant) {
            response = Some(Response {
                content: m.content,
                tool_calls: m.tool_calls,
                finish_reason: finish,
            });
        }
    }
    if let Some(defs) = attrs.get("gen_ai.tool.definitions") {
        match &*decode_json_string(defs) {
            Value::Array(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    tools.push(openai::tool_def(
                        t,
                        &format!("gen_ai.tool.definitions[{i}]"),
                    )?);
                }
            }
            other => {
                return Err(super::wrong_type(
                    "gen_ai.tool.definitions",
                    "an array",
                    other,
                ))
            }
        }
    }

    // Older event form.
    if messages.is_empty() || response.is_none() {
        let (m, r) = from_events(events)?;
        if messages.is_empty() {
            messages = m;
        }
        if response.is_none() {
            response = r;
        }
    }
    // Flattened attribute form.
    if messages.is_empty() || response.is_none() {
        let (m, r) = from_flattened(attrs)?;
        if messages.is_empty() {
            messages = m;
        }
        if response.is_none() {
            response = r;
        }
    }
    if tools.is_empty() {
        tools = flattened_tools(attrs)?;
    }
    Ok((messages, response, tools))
}

/// A call needs input messages and a non-empty response; the finish reason
/// falls back to `gen_ai.response.finish_reasons`.
fn check_content(
    attrs: &Map<String, Value>,
    messages: &[Message],
    response: Option<Response>,
) -> Res<Response> {
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(Bad::new(
            Reason::EmptyRequest,
            "the span carries no input messages (content capture off?)",
        ));
    }
    let Some(mut response) = response else {
        return Err(Bad::new(
            Reason::MissingResponse,
            "the span carries no output messages",
        ));
    };
    if response.finish_reason.is_none() {
        response.finish_reason = match attrs.get("gen_ai.response.finish_reasons") {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
    }
    if response
        .content
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .is_empty()
        && response.tool_calls.is_empty()
    {
        return Err(Bad::new(
            Reason::EmptyResponse,
            "the response has neither text nor tool calls",
        ));
    }
    Ok(response)
}

/// The canonical call of a span: usage, timing, model, kept metadata.
fn span_call(
    span: &Value,
    resource: &Map<String, Value>,
    attrs: &Map<String, Value>,
    messages: Vec<Message>,
    tools: Vec<ToolDef>,
    response: Response,
) -> Call {
    let tok = |keys: &[&str], field| keys.iter().find_map(|k| tokens(attrs.get(*k), field));
    let prompt = tok(
        &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
        TokenField::Prompt,
    );
    let completion = tok(
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ],
        TokenField::Completion,
    );
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: tok(
            &["gen_ai.usage.total_tokens", "llm.usage.total_tokens"],
            TokenField::Total,
        )
        .or(sum_tokens(prompt, completion)),
    };
    let start = span.get("startTimeUnixNano").and_then(as_u64);
    let end = span.get("endTimeUnixNano").and_then(as_u64);
    let mut metadata = Map::new();
    for k in [
        "gen_ai.conversation.id",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.agent.name",
    ] {
        if let Some(v) = attrs.get(k) {
            metadata.insert(k.to_string(), v.clone());
        }
    }
    Call {
        source_format: Some(SourceFormat::Otel),
        client_id: resource
            .get("service.name")
            .and_then(Value::as_str)
            .map(str::to_string),
        model: ["gen_ai.response.model", "gen_ai.request.model"]
            .iter()
            .find_map(|k| attrs.get(*k).and_then(Value::as_str))
            .map(str::to_string),
        timestamp_ms: start.map(|s| (s / 1_000_000) as i64),
        latency_ms: match (start, end) {
            (Some(s), Some(e)) if e >= s => Some((e - s) as f64 / 1e6),
            _ => None,
        },
        messages,
        tools,
        response,
        usage,
        metadata,
        ..Default::default()
    }
}

/// Text of semconv parts (`[{type:"text", content}]`) or a plain string.
fn parts_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<String> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o
                        .get("content")
                        .or_else(|| o.get("text"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    _ => None,
                })
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

fn role_of(r: Option<&str>, path: &str) -> Res<Role> {
    Ok(match r {
        Some("system") | Some("developer") => Role::System,
        Some("user") | Some("human") => Role::User,
        Some("assistant") | Some("model") | Some("ai") => Role::Assistant,
        Some("tool") | Some("function") => Role::Tool,
        _ => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.role` is missing or unknown"),
            ))
        }
    })
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Messages in the current semconv shape `[{role, parts:[...]}]`; tolerates
/// OpenAI-shaped messages (`content` instead of `parts`).
fn semconv_messages(v: &Value, path: &str) -> Res<Vec<Message>> {
    let arr = match v {
        Value::Array(a) => a,
        other => {
            return Err(super::wrong_type(
                path,
                "an array (or a JSON string of one)",
                other,
            ))
        }
    };
    let mut out = Vec::new();
    for (i, m) in arr.iter().enumerate() {
        let mp = format!("{path}[{i}]");
        let Some(parts) = m.get("parts") else {
            out.push(openai::message(m, &mp)?);
            continue;
        };
        let role = role_of(m.get("role").and_then(Value::as_str), &mp)?;
        let parts = match parts {
            Value::Array(p) => p,
            other => return Err(super::wrong_type(&format!("{mp}.parts"), "an array", other)),
        };
        let mut text = Vec::new();
        let mut calls = Vec::new();
        for p in parts {
            match p.get("type").and_then(Value::as_str) {
                Some("text") | None => {
                    if let Some(t) = p
                        .get("content")
                        .or_else(|| p.get("text"))
                        .and_then(Value::as_str)
                    {
                        text.push(t.to_string());
                    }
                }
                Some("tool_call") => {
                    let name = p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if name.is_empty() {
                        return Err(Bad::new(
                            Reason::WrongType,
                            format!("field `{mp}.parts[].name` is missing"),
                        ));
                    }
                    let (arguments, valid) = parse_arguments(p.get("arguments"));
                    calls.push(ToolCall {
                        id: super::opt_id(p, "id"),
                        name,
                        arguments,
                        arguments_valid: valid,
                    });
                }
                Some("tool_call_response") => {
                    let resp = p
                        .get("response")
                        .or_else(|| p.get("result"))
                        .map(json_text)
                        .unwrap_or_default();
                    out.push(Message {
                        role: Role::Tool,
                        content: Some(resp),
                        tool_calls: vec![],
                        tool_call_id: super::opt_id(p, "id"),
                        name: None,
                    });
                }
                Some(_) => {}
            }
        }
        if !text.is_empty() || !calls.is_empty() {
            out.push(Message {
                role,
                content: (!text.is_empty()).then(|| text.join("\n")),
                tool_calls: calls,
                tool_call_id: None,
                name: None,
            });
        }
    }
    Ok(out)
}

/// The older event form.
fn from_events(events: &[(String, Map<String, Value>)]) -> Res<(Vec<Message>, Option<Response>)> {
    let mut messages = Vec::new();
    let mut response = None;
    for (name, a) in events {
        let role = match name.as_str() {
            "gen_ai.system.message" => Some(Role::System),
            "gen_ai.user.message" => Some(Role::User),
            "gen_ai.assistant.message" => Some(Role::Assistant),
            "gen_ai.tool.message" => Some(Role::Tool),
            _ => None,
        };
        if let Some(role) = role {
            let content = a.get("content").and_then(event_content);
            let mut msg = Message {
                role,
                content,
                tool_calls: vec![],
                tool_call_id: super::opt_id(&Value::Object(a.clone()), "id"),
                name: None,
            };
            if role != Role::Tool {
                msg.tool_call_id = None;
            }
            if let Some(tcs) = a.get("tool_calls") {
                msg.tool_calls = event_tool_calls(&decode_json_string(tcs))?;
            }
            messages.push(msg);
            continue;
        }
        match name.as_str() {
            "gen_ai.choice" => {
                let m = a
                    .get("message")
                    .map(|v| decode_json_string(v).into_owned())
                    .unwrap_or(Value::Null);
                let (content, tool_calls) = match &m {
                    Value::Object(_) => {
                        let content = m.get("content").and_then(event_content);
                        let calls = match m.get("tool_calls") {
                            Some(tcs) => event_tool_calls(&decode_json_string(tcs))?,
                            None => vec![],
                        };
                        (content, calls)
                    }
                    Value::String(s) => (Some(s.clone()), vec![]),
                    _ => (None, vec![]),
                };
                let finish = a
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                response = Some(Response {
                    content,
                    tool_calls,
                    finish_reason: finish,
                });
            }
            "gen_ai.content.prompt" => {
                if let Some(p) = a.get("gen_ai.prompt") {
                    match decode_json_string(p).into_owned() {
                        Value::String(s) => messages.push(Message::text(Role::User, s)),
                        arr @ Value::Array(_) => {
                            messages.extend(openai::messages(Some(&arr), "gen_ai.prompt")?)
                        }
                        other => {
                            return Err(super::wrong_type("gen_ai.prompt", "an array", &other))
                        }
                    }
                }
            }
            "gen_ai.content.completion" => {
                if let Some(c) = a.get("gen_ai.completion") {
                    let v = decode_json_string(c);
                    let first = match &*v {
                        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
                        other => other.clone(),
                    };
                    let comp = openai::completion(&first, "gen_ai.completion")?;
                    response = Some(comp.response);
                }
            }
            _ => {}
        }
    }
    Ok((messages, response))
}

/// Text of an event's content: a string (kept as is, even when it is JSON
/// text such as an extraction answer), or a list of parts, possibly
/// JSON-encoded in a string.
fn event_content(c: &Value) -> Option<String> {
    match c {
        Value::Null => None,
        Value::String(s) => {
            if s.trim_start().starts_with('[') {
                if let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(s) {
                    if parts.iter().all(|p| p.get("type").is_some()) {
                        return parts_text(&Value::Array(parts));
                    }
                }
            }
            Some(s.clone())
        }
        Value::Array(_) => parts_text(c),
        other => Some(other.to_string()),
    }
}

fn event_tool_calls(v: &Value) -> Res<Vec<ToolCall>> {
    let Value::Array(a) = v else {
        return Err(super::wrong_type("tool_calls", "an array", v));
    };
    let mut out = Vec::new();
    for tc in a {
        let f = tc.get("function").unwrap_or(tc);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err(Bad::new(
                Reason::WrongType,
                "field `tool_calls[].function.name` is missing",
            ));
        }
        let (arguments, valid) = parse_arguments(f.get("arguments"));
        out.push(ToolCall {
            id: super::opt_id(tc, "id"),
            name,
            arguments,
            arguments_valid: valid,
        });
    }
    Ok(out)
}

/// Collects `prefix.{i}.rest` attributes into `i -> (rest -> value)`.
fn indexed<'a>(
    attrs: &'a Map<String, Value>,
    prefix: &str,
) -> BTreeMap<usize, BTreeMap<&'a str, &'a Value>> {
    let mut out: BTreeMap<usize, BTreeMap<&str, &Value>> = BTreeMap::new();
    for (k, v) in attrs {
        let Some(rest) = k.strip_prefix(prefix) else {
            continue;
        };
        let Some((i, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(i) = i.parse::<usize>() {
            out.entry(i).or_default().insert(field, v);
        }
    }
    out
}

fn flattened_calls(fields: &BTreeMap<&str, &Value>) -> Vec<ToolCall> {
    let mut by_j: BTreeMap<usize, (Option<String>, String, Option<&Value>)> = BTreeMap::new();
    for (k, v) in fields {
        let Some(rest) = k.strip_prefix("tool_calls.") else {
            continue;
        };
        let Some((j, f)) = rest.split_once('.') else {
            continue;
        };
        let Ok(j) = j.parse::<usize>() else { continue };
        let e = by_j.entry(j).or_insert((None, String::new(), None));
        match f {
            "id" => e.0 = v.as_str().map(str::to_string),
            "name" => e.1 = v.as_str().unwrap_or("").to_string(),
            "arguments" => e.2 = Some(v),
            _ => {}
        }
    }
    by_j.into_values()
        .filter(|(_, n, _)| !n.is_empty())
        .map(|(id, name, args)| {
            let (arguments, valid) = parse_arguments(args);
            ToolCall {
                id,
                name,
                arguments,
                arguments_valid: valid,
            }
        })
        .collect()
}

/// The flattened attribute form (OpenLLMetry and friends).
fn from_flattened(attrs: &Map<String, Value>) -> Res<(Vec<Message>, Option<Response>)> {
    let mut messages = Vec::new();
    for (i, f) in indexed(attrs, "gen_ai.prompt.") {
        let role = role_of(
            f.get("role").and_then(|v| v.as_str()),
            &format!("gen_ai.prompt.{i}"),
        )?;
        messages.push(Message {
            role,
            content: f.get("content").map(|v| json_text(v)),
            tool_calls: flattened_calls(&f),
            tool_call_id: f
                .get("tool_call_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            name: None,
        });
    }
    let response = indexed(attrs, "gen_ai.completion.")
        .into_iter()
        .next()
        .map(|(_, f)| Response {
            content: f.get("content").map(|v| json_text(v)),
            tool_calls: flattened_calls(&f),
            finish_reason: f
                .get("finish_reason")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        });
    Ok((messages, response))
}

fn flattened_tools(attrs: &Map<String, Value>) -> Res<Vec<ToolDef>> {
    let mut out = Vec::new();
    for (_, f) in indexed(attrs, "llm.request.functions.") {
        let Some(name) = f.get("name").and_then(|v| v.as_str()) else {
            continue;
        };
        out.push(ToolDef {
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            parameters: f
                .get("parameters")
                .map(|v| decode_json_string(v).into_owned())
                .unwrap_or(Value::Null),
        });
    }
    Ok(out)
}
