//! Anthropic Messages: request/response pairs, content blocks (text,
//! tool_use with object input, tool_result inside user turns, thinking),
//! and Message Batches lines (`{custom_id, params}` / `{custom_id, result}`).

use serde_json::{Map, Value};

use super::openai::tool_def;
use super::{opt_id, opt_str, parse_time_ms, wrong_type, Bad, BatchKey, Item, Reason, Res};
use crate::call::{Call, Message, RawCall, Response, Role, SourceFormat, ToolCall, ToolDef};

/// Whether a request/response pair looks like Anthropic's rather than OpenAI's.
pub fn looks_anthropic(req: Option<&Value>, resp: Option<&Value>) -> bool {
    if let Some(r) = resp {
        if r.get("type").and_then(Value::as_str) == Some("message") {
            return true;
        }
        if r.get("stop_reason").is_some() && r.get("content").is_some_and(Value::is_array) {
            return true;
        }
        if r.get("choices").is_some() {
            return false;
        }
    }
    if let Some(q) = req {
        if q.get("system").is_some() {
            return true;
        }
        if q.get("messages")
            .and_then(Value::as_array)
            .is_some_and(|ms| {
                ms.iter().any(|m| {
                    m.get("content")
                        .and_then(Value::as_array)
                        .is_some_and(|bs| {
                            bs.iter().any(|b| {
                                matches!(
                                    b.get("type").and_then(Value::as_str),
                                    Some("tool_use" | "tool_result")
                                )
                            })
                        })
                })
            })
        {
            return true;
        }
    }
    false
}

fn block_text(b: &Value, path: &str) -> Res<Option<String>> {
    match b.get("type").and_then(Value::as_str) {
        Some("text") => opt_str(b, "text", &format!("{path}.")),
        Some("image") => Ok(Some("[image]".into())),
        Some("document") => Ok(Some("[file]".into())),
        _ => Ok(None),
    }
}

/// Text of a `content` that is a string or a list of blocks.
fn content_text(v: Option<&Value>, path: &str) -> Res<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(bs)) => {
            let mut parts = Vec::new();
            for (i, b) in bs.iter().enumerate() {
                if !b.is_object() {
                    return Err(wrong_type(&format!("{path}[{i}]"), "an object", b));
                }
                if let Some(t) = block_text(b, &format!("{path}[{i}]"))? {
                    parts.push(t);
                }
            }
            Ok(if parts.is_empty() {
                None
            } else {
                Some(parts.join("\n"))
            })
        }
        Some(other) => Err(wrong_type(path, "a string or an array of blocks", other)),
    }
}

fn tool_use(b: &Value, path: &str) -> Res<ToolCall> {
    let name = match b.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(&format!("{path}.name"), "a string", other)),
        None => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.name` is missing"),
            ))
        }
    };
    let (arguments, valid) = super::openai::parse_arguments(b.get("input"));
    Ok(ToolCall {
        id: opt_id(b, "id"),
        name,
        arguments,
        arguments_valid: valid,
    })
}

/// One Anthropic turn, which may expand into several canonical messages:
/// a user turn with `tool_result` blocks becomes tool messages (then the
/// user's text, if any).
fn turn(m: &Value, path: &str, out: &mut Vec<Message>) -> Res<()> {
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(_) => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.role` has an unknown role"),
            ))
        }
        None => {
            return Err(wrong_type(
                &format!("{path}.role"),
                "a string",
                m.get("role").unwrap_or(&Value::Null),
            ))
        }
    };
    match m.get("content") {
        Some(Value::Array(blocks)) => {
            let mut text = Vec::new();
            let mut calls = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                let bp = format!("{path}.content[{i}]");
                if !b.is_object() {
                    return Err(wrong_type(&bp, "an object", b));
                }
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") | Some("server_tool_use") => calls.push(tool_use(b, &bp)?),
                    Some("tool_result") => {
                        let content = content_text(b.get("content"), &format!("{bp}.content"))?;
                        out.push(Message {
                            role: Role::Tool,
                            content: Some(content.unwrap_or_default()),
                            tool_calls: vec![],
                            tool_call_id: opt_id(b, "tool_use_id"),
                            name: None,
                        });
                    }
                    _ => {
                        if let Some(t) = block_text(b, &bp)? {
                            text.push(t);
                        }
                    }
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
        other => {
            let content = content_text(other, &format!("{path}.content"))?;
            out.push(Message {
                role,
                content,
                tool_calls: vec![],
                tool_call_id: None,
                name: None,
            });
        }
    }
    Ok(())
}

/// An Anthropic request body: system, messages, tools, model.
pub fn request(req: &Value, path: &str) -> Res<(Vec<Message>, Vec<ToolDef>, Option<String>)> {
    if !req.is_object() {
        return Err(wrong_type(path.trim_end_matches('.'), "an object", req));
    }
    let mut msgs = Vec::new();
    if let Some(system) = content_text(req.get("system"), &format!("{path}system"))? {
        msgs.push(Message::text(Role::System, system));
    }
    match req.get("messages") {
        Some(Value::Array(ms)) => {
            for (i, m) in ms.iter().enumerate() {
                let mp = format!("{path}messages[{i}]");
                if !m.is_object() {
                    return Err(wrong_type(&mp, "an object", m));
                }
                turn(m, &mp, &mut msgs)?;
            }
        }
        Some(other) => return Err(wrong_type(&format!("{path}messages"), "an array", other)),
        None => {
            return Err(Bad::new(
                Reason::EmptyRequest,
                format!("field `{path}messages` is missing"),
            ))
        }
    }
    if !msgs.iter().any(|m| m.role != Role::System) {
        return Err(Bad::new(
            Reason::EmptyRequest,
            format!("field `{path}messages` is empty"),
        ));
    }
    let mut tools = Vec::new();
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(ts)) => {
            for (i, t) in ts.iter().enumerate() {
                tools.push(tool_def(t, &format!("{path}tools[{i}]"))?);
            }
        }
        Some(other) => return Err(wrong_type(&format!("{path}tools"), "an array", other)),
    }
    Ok((msgs, tools, opt_str(req, "model", path)?))
}

/// An Anthropic response message.
pub fn response(resp: &Value, path: &str) -> Res<(Response, crate::call::Usage, Option<String>)> {
    match resp {
        Value::Null => {
            return Err(Bad::new(
                Reason::MissingResponse,
                format!("field `{path}` is null"),
            ))
        }
        Value::Object(_) => {}
        other => return Err(wrong_type(path, "an object", other)),
    }
    if resp.get("type").and_then(Value::as_str) == Some("error")
        || resp.get("error").is_some_and(|e| !e.is_null())
    {
        return Err(Bad::new(
            Reason::ErrorResponse,
            format!("field `{path}` is an error"),
        ));
    }
    let mut msgs = Vec::new();
    let mut m = resp.clone();
    if let Value::Object(o) = &mut m {
        o.entry("role").or_insert(Value::String("assistant".into()));
    }
    if m.get("content").is_none() {
        return Err(Bad::new(
            Reason::MissingResponse,
            format!("field `{path}.content` is missing"),
        ));
    }
    turn(&m, path, &mut msgs)?;
    let (content, tool_calls) = match msgs.into_iter().find(|m| m.role == Role::Assistant) {
        Some(m) => (m.content, m.tool_calls),
        None => (None, vec![]),
    };
    if content.as_deref().map(str::trim).unwrap_or("").is_empty() && tool_calls.is_empty() {
        return Err(Bad::new(
            Reason::EmptyResponse,
            "the response has neither text nor tool calls",
        ));
    }
    let finish = opt_str(resp, "stop_reason", &format!("{path}."))?;
    Ok((
        Response {
            content,
            tool_calls,
            finish_reason: finish,
        },
        super::openai::usage(resp.get("usage")),
        opt_str(resp, "model", &format!("{path}."))?,
    ))
}

/// Builds a call from an Anthropic request and response.
pub fn call_from(req: &Value, req_path: &str, resp: &Value, resp_path: &str) -> Res<Call> {
    let (messages, tools, req_model) = request(req, req_path)?;
    let (response, usage, model) = self::response(resp, resp_path)?;
    let mut metadata = Map::new();
    if let Some(Value::Object(m)) = req.get("metadata") {
        metadata.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(Call {
        source_format: Some(SourceFormat::Anthropic),
        model: model.or(req_model),
        messages,
        tools,
        response,
        usage,
        metadata,
        demands: crate::call::Demands::from_request(req),
        ..Default::default()
    })
}

/// A record in Anthropic form: a `{request, response}` pair or a Message
/// Batches line.
pub fn parse_record(v: &Value) -> Item {
    if let Some(custom_id) = v.get("custom_id") {
        let custom_id = match custom_id {
            Value::String(s) => s.clone(),
            other => return Item::Bad(wrong_type("custom_id", "a string", other)),
        };
        let key = BatchKey {
            format: SourceFormat::Anthropic,
            custom_id,
        };
        if let Some(params) = v.get("params") {
            return match request(params, "params.") {
                Ok((messages, tools, model)) => Item::BatchRequest {
                    key,
                    call: RawCall::new(Call {
                        source_format: Some(SourceFormat::Anthropic),
                        model,
                        messages,
                        tools,
                        demands: crate::call::Demands::from_request(params),
                        ..Default::default()
                    }),
                },
                Err(b) => Item::Bad(b),
            };
        }
        let result = (|| {
            let r = v
                .get("result")
                .ok_or_else(|| Bad::new(Reason::MissingResponse, "field `result` is missing"))?;
            match r.get("type").and_then(Value::as_str) {
                Some("succeeded") => {}
                Some(_) => {
                    return Err(Bad::new(
                        Reason::ErrorResponse,
                        "batch result is not `succeeded`",
                    ))
                }
                None => {
                    return Err(wrong_type(
                        "result.type",
                        "a string",
                        r.get("type").unwrap_or(&Value::Null),
                    ))
                }
            }
            let msg = r.get("message").ok_or_else(|| {
                Bad::new(Reason::MissingResponse, "field `result.message` is missing")
            })?;
            let (response, usage, model) = response(msg, "result.message")?;
            Ok(Call {
                source_format: Some(SourceFormat::Anthropic),
                model,
                response,
                usage,
                ..Default::default()
            })
        })();
        return Item::BatchResponse {
            key,
            result: result.map(RawCall::new),
        };
    }
    let req = match v.get("request") {
        Some(r) => r,
        None => {
            return Item::Bad(Bad::new(
                Reason::UnknownFormat,
                "field `request` is missing",
            ))
        }
    };
    let resp = match v.get("response") {
        Some(r) => r,
        None => {
            return Item::Bad(Bad::new(
                Reason::MissingResponse,
                "field `response` is missing",
            ))
        }
    };
    match call_from(req, "request.", resp, "response") {
        Ok(mut c) => {
            c.workload_id = opt_id(v, "workload_id");
            c.client_id = opt_id(v, "client_id");
            c.timestamp_ms = v.get("timestamp").and_then(parse_time_ms);
            c.latency_ms = v.get("latency_ms").and_then(Value::as_f64);
            Item::Call(RawCall::new(c))
        }
        Err(b) => Item::Bad(b),
    }
}
