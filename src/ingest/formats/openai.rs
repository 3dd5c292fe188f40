//! OpenAI Chat Completions shapes: messages, tools, completions (including
//! reassembly of streamed chunk lists), request/response pair records (the
//! Data Flywheel record and its close variants) and Batch API lines.

use serde_json::{Map, Value};

use super::{
    decode_json_string, opt_id, opt_str, opt_tokens, parse_time_ms, sum_tokens, type_name,
    wrong_type, Bad, BatchKey, Item, Reason, Res, TokenField,
};
use crate::call::{Call, Message, RawCall, Response, Role, SourceFormat, ToolCall, ToolDef, Usage};

/// Text of a `content` field: a string, null, or a list of parts
/// (`{"type":"text","text":...}`; other parts become a short marker).
pub fn content_text(v: Option<&Value>, path: &str) -> Res<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => {
            let mut out: Vec<String> = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                match p {
                    Value::String(s) => out.push(s.clone()),
                    Value::Object(o) => {
                        let ty = o.get("type").and_then(Value::as_str).unwrap_or("text");
                        match ty {
                            "text" | "input_text" | "output_text" => {
                                match o.get("text").or_else(|| o.get("content")) {
                                    Some(Value::String(s)) => out.push(s.clone()),
                                    Some(other) => {
                                        return Err(wrong_type(
                                            &format!("{path}[{i}].text"),
                                            "a string",
                                            other,
                                        ))
                                    }
                                    None => {}
                                }
                            }
                            "refusal" => {
                                if let Some(Value::String(s)) = o.get("refusal") {
                                    out.push(s.clone())
                                }
                            }
                            "image_url" | "image" | "input_image" => out.push("[image]".into()),
                            "input_audio" | "audio" => out.push("[audio]".into()),
                            "file" | "input_file" | "document" => out.push("[file]".into()),
                            _ => {}
                        }
                    }
                    other => {
                        return Err(wrong_type(
                            &format!("{path}[{i}]"),
                            "a string or an object",
                            other,
                        ))
                    }
                }
            }
            Ok(Some(out.join("\n")))
        }
        Some(other) => Err(wrong_type(
            path,
            "a string, null or an array of parts",
            other,
        )),
    }
}

/// Tool-call arguments: a JSON string (parsed when valid, kept as a string
/// with `valid = false` when not) or an already-parsed object.
pub fn parse_arguments(v: Option<&Value>) -> (Value, bool) {
    match v {
        None | Some(Value::Null) => (Value::Object(Map::new()), true),
        Some(Value::String(s)) => {
            if s.trim().is_empty() {
                return (Value::Object(Map::new()), true);
            }
            match serde_json::from_str::<Value>(s) {
                Ok(v) => (v, true),
                Err(_) => (Value::String(s.clone()), false),
            }
        }
        Some(other) => (other.clone(), true),
    }
}

fn tool_call(v: &Value, path: &str) -> Res<ToolCall> {
    if !v.is_object() {
        return Err(wrong_type(path, "an object", v));
    }
    // {id, type:"function", function:{name, arguments}} or {id, type:"custom", custom:{name, input}}
    let (f, args_key) = if let Some(f) = v.get("function") {
        (f, "arguments")
    } else if let Some(c) = v.get("custom") {
        (c, "input")
    } else {
        (v, "arguments")
    };
    let name = match f.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(wrong_type(
                &format!("{path}.function.name"),
                "a string",
                other,
            ))
        }
        None => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.function.name` is missing"),
            ))
        }
    };
    let (arguments, valid) = parse_arguments(f.get(args_key));
    Ok(ToolCall {
        id: opt_id(v, "id"),
        name,
        arguments,
        arguments_valid: valid,
    })
}

fn tool_calls(m: &Value, path: &str) -> Res<Vec<ToolCall>> {
    let mut out = Vec::new();
    match m.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, tc) in a.iter().enumerate() {
                out.push(tool_call(tc, &format!("{path}.tool_calls[{i}]"))?);
            }
        }
        Some(other) => return Err(wrong_type(&format!("{path}.tool_calls"), "an array", other)),
    }
    match m.get("function_call") {
        None | Some(Value::Null) => {}
        Some(fc @ Value::Object(_)) => out.push(tool_call(fc, &format!("{path}.function_call"))?),
        Some(other) => {
            return Err(wrong_type(
                &format!("{path}.function_call"),
                "an object",
                other,
            ))
        }
    }
    Ok(out)
}

/// One chat message.
pub fn message(m: &Value, path: &str) -> Res<Message> {
    if !m.is_object() {
        return Err(wrong_type(path, "an object", m));
    }
    let role = match m.get("role") {
        Some(Value::String(r)) => match r.as_str() {
            "system" | "developer" => Role::System,
            "user" | "human" => Role::User,
            "assistant" | "ai" | "model" => Role::Assistant,
            "tool" | "function" | "ipython" => Role::Tool,
            _ => {
                return Err(Bad::new(
                    Reason::WrongType,
                    format!("field `{path}.role` has an unknown role"),
                ))
            }
        },
        Some(other) => return Err(wrong_type(&format!("{path}.role"), "a string", other)),
        None => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.role` is missing"),
            ))
        }
    };
    let mut content = content_text(m.get("content"), &format!("{path}.content"))?;
    if content.is_none() {
        content = opt_str(m, "refusal", &format!("{path}."))?;
    }
    let tool_calls = if role == Role::Assistant {
        tool_calls(m, path)?
    } else {
        vec![]
    };
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id: opt_id(m, "tool_call_id"),
        name: if role == Role::Tool {
            None
        } else {
            opt_str(m, "name", &format!("{path}."))?
        },
    })
}

/// A `messages` array.
pub fn messages(v: Option<&Value>, path: &str) -> Res<Vec<Message>> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, m)| message(m, &format!("{path}[{i}]")))
            .collect(),
        Some(Value::Null) | None => Err(Bad::new(
            Reason::EmptyRequest,
            format!("field `{path}` is missing"),
        )),
        Some(other) => Err(wrong_type(path, "an array", other)),
    }
}

/// One tool definition: `{type:"function", function:{name, description,
/// parameters}}`, a bare `{name, description, parameters}` (legacy
/// `functions[]`, OTel), or Anthropic's `{name, description, input_schema}`.
pub fn tool_def(t: &Value, path: &str) -> Res<ToolDef> {
    if !t.is_object() {
        return Err(wrong_type(path, "an object", t));
    }
    let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
    let name = match f.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(&format!("{path}.name"), "a string", other)),
        None => {
            return Err(Bad::new(
                Reason::WrongType,
                format!("field `{path}.name` is missing"),
            ))
        }
    };
    let description = opt_str(f, "description", &format!("{path}."))?;
    let parameters = f
        .get("parameters")
        .or_else(|| f.get("input_schema"))
        .or_else(|| f.get("inputSchema"))
        .map(|v| decode_json_string(v).into_owned())
        .unwrap_or(Value::Null);
    Ok(ToolDef {
        name,
        description,
        parameters,
    })
}

/// Tools offered in a request (`tools[]` or legacy `functions[]`).
pub fn tools(req: &Value, path: &str) -> Res<Vec<ToolDef>> {
    let mut out = Vec::new();
    for key in ["tools", "functions"] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for (i, t) in a.iter().enumerate() {
                    out.push(tool_def(t, &format!("{path}{key}[{i}]"))?);
                }
            }
            Some(other) => return Err(wrong_type(&format!("{path}{key}"), "an array", other)),
        }
    }
    Ok(out)
}

/// Usage block of a completion (OpenAI names, with Anthropic/Langfuse aliases).
pub fn usage(u: Option<&Value>) -> Usage {
    let Some(u) = u.filter(|u| u.is_object()) else {
        return Usage::default();
    };
    let prompt = opt_tokens(u, "prompt_tokens", TokenField::Prompt)
        .or_else(|| opt_tokens(u, "input_tokens", TokenField::Prompt))
        .or_else(|| opt_tokens(u, "input", TokenField::Prompt));
    let completion = opt_tokens(u, "completion_tokens", TokenField::Completion)
        .or_else(|| opt_tokens(u, "output_tokens", TokenField::Completion))
        .or_else(|| opt_tokens(u, "output", TokenField::Completion));
    let total = opt_tokens(u, "total_tokens", TokenField::Total)
        .or_else(|| opt_tokens(u, "total", TokenField::Total))
        .or(sum_tokens(prompt, completion));
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    }
}

/// What a completion yields.
pub struct Completion {
    pub response: Response,
    pub usage: Usage,
    pub model: Option<String>,
    pub created_ms: Option<i64>,
}

fn check_response(response: Response) -> Res<Response> {
    let empty = response
        .content
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .is_empty();
    if empty && response.tool_calls.is_empty() {
        return Err(Bad::new(
            Reason::EmptyResponse,
            "the response has neither text nor tool calls",
        ));
    }
    Ok(response)
}

/// A chat completion response: the `chat.completion` object, a list of
/// streamed chunks (reassembled), a bare assistant message, or a string.
pub fn completion(v: &Value, path: &str) -> Res<Completion> {
    match v {
        Value::Null => {
            return Err(Bad::new(
                Reason::MissingResponse,
                format!("field `{path}` is null"),
            ))
        }
        Value::String(s) => {
            return Ok(Completion {
                response: check_response(Response {
                    content: Some(s.clone()),
                    ..Default::default()
                })?,
                usage: Usage::default(),
                model: None,
                created_ms: None,
            })
        }
        Value::Array(chunks) => return reassemble(chunks, path),
        Value::Object(_) => {}
        other => return Err(wrong_type(path, "an object", other)),
    }
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(Bad::new(
            Reason::ErrorResponse,
            format!("field `{path}.error` is set"),
        ));
    }
    if v.get("object").and_then(Value::as_str) == Some("chat.completion.chunk") {
        return Err(Bad::new(
            Reason::StreamChunk,
            "a single streamed chunk cannot be reassembled into a response",
        ));
    }
    let model = opt_str(v, "model", &format!("{path}."))?;
    let created_ms = v.get("created").and_then(parse_time_ms);
    let usage = usage(v.get("usage"));
    let (message, finish) = match v.get("choices") {
        Some(Value::Array(choices)) => {
            let Some(first) = choices.first() else {
                return Err(Bad::new(
                    Reason::MissingResponse,
                    format!("field `{path}.choices` is empty"),
                ));
            };
            let finish = opt_str(first, "finish_reason", &format!("{path}.choices[0]."))?;
            match first.get("message") {
                Some(m) => (m.clone(), finish),
                // legacy text completions
                None => match first.get("text") {
                    Some(Value::String(t)) => (
                        serde_json::json!({"role": "assistant", "content": t}),
                        finish,
                    ),
                    _ => {
                        return Err(Bad::new(
                            Reason::MissingResponse,
                            format!("field `{path}.choices[0].message` is missing"),
                        ))
                    }
                },
            }
        }
        Some(other) => return Err(wrong_type(&format!("{path}.choices"), "an array", other)),
        None if v.get("role").is_some()
            || v.get("content").is_some()
            || v.get("tool_calls").is_some() =>
        {
            let finish = opt_str(v, "finish_reason", &format!("{path}."))?;
            (v.clone(), finish)
        }
        None => {
            return Err(Bad::new(
                Reason::MissingResponse,
                format!("field `{path}` holds no choices"),
            ))
        }
    };
    let mut m = message;
    if let Value::Object(o) = &mut m {
        o.entry("role").or_insert(Value::String("assistant".into()));
    }
    let msg = self::message(&m, &format!("{path}.choices[0].message"))?;
    let response = check_response(Response {
        content: msg.content,
        tool_calls: msg.tool_calls,
        finish_reason: finish,
    })?;
    Ok(Completion {
        response,
        usage,
        model,
        created_ms,
    })
}

/// Reassembles a list of `chat.completion.chunk` objects: content deltas
/// concatenated, tool-call deltas merged by index.
fn reassemble(chunks: &[Value], path: &str) -> Res<Completion> {
    if chunks.is_empty()
        || !chunks
            .iter()
            .all(|c| c.get("object").and_then(Value::as_str) == Some("chat.completion.chunk"))
    {
        return Err(Bad::new(
            Reason::StreamChunk,
            format!("field `{path}` is a list that is not a complete chunk stream"),
        ));
    }
    let mut content = String::new();
    let mut saw_content = false;
    let mut calls: Vec<(Option<String>, String, String)> = Vec::new();
    let mut finish = None;
    let mut model = None;
    let mut created_ms = None;
    let mut usage_v = None;
    for c in chunks {
        model = model.or_else(|| c.get("model").and_then(Value::as_str).map(str::to_string));
        created_ms = created_ms.or_else(|| c.get("created").and_then(parse_time_ms));
        if c.get("usage").is_some_and(|u| u.is_object()) {
            usage_v = c.get("usage").cloned();
        }
        let Some(choice) = c
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            continue;
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            finish = Some(f.to_string());
        }
        let Some(delta) = choice.get("delta") else {
            continue;
        };
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            content.push_str(t);
            saw_content = true;
        }
        if let Some(tcs) = delta.get("tool_calls").and_then(Value::as_array) {
            for tc in tcs {
                let idx = tc
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(calls.len() as u64) as usize;
                if idx > 1024 {
                    return Err(Bad::new(
                        Reason::StreamChunk,
                        "tool-call delta index out of range",
                    ));
                }
                while calls.len() <= idx {
                    calls.push((None, String::new(), String::new()));
                }
                if let Some(id) = tc.get("id").and_then(Value::as_str) {
                    calls[idx].0 = Some(id.to_string());
                }
                if let Some(f) = tc.get("function") {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        calls[idx].1.push_str(n);
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        calls[idx].2.push_str(a);
                    }
                }
            }
        }
    }
    if finish.is_none() {
        return Err(Bad::new(
            Reason::StreamChunk,
            "the chunk stream has no final chunk (no finish_reason)",
        ));
    }
    let tool_calls = calls
        .into_iter()
        .filter(|c| !c.1.is_empty())
        .map(|(id, name, args)| {
            let (arguments, valid) = parse_arguments(Some(&Value::String(args)));
            ToolCall {
                id,
                name,
                arguments,
                arguments_valid: valid,
            }
        })
        .collect();
    let response = check_response(Response {
        content: saw_content.then_some(content),
        tool_calls,
        finish_reason: finish,
    })?;
    Ok(Completion {
        response,
        usage: usage(usage_v.as_ref()),
        model,
        created_ms,
    })
}

/// A chat request body: messages, tools, model.
pub fn request(req: &Value, path: &str) -> Res<(Vec<Message>, Vec<ToolDef>, Option<String>)> {
    if !req.is_object() {
        return Err(wrong_type(path.trim_end_matches('.'), "an object", req));
    }
    let msgs = match req.get("messages") {
        Some(m) => messages(Some(m), &format!("{path}messages"))?,
        // legacy text completion: a prompt string
        None => match req.get("prompt") {
            Some(Value::String(p)) => vec![Message::text(Role::User, p.clone())],
            Some(other) => return Err(wrong_type(&format!("{path}prompt"), "a string", other)),
            None => {
                return Err(Bad::new(
                    Reason::EmptyRequest,
                    format!("field `{path}messages` is missing"),
                ))
            }
        },
    };
    if msgs.is_empty() {
        return Err(Bad::new(
            Reason::EmptyRequest,
            format!("field `{path}messages` is empty"),
        ));
    }
    let tools = tools(req, path)?;
    let model = opt_str(req, "model", path)?;
    Ok((msgs, tools, model))
}

/// Metadata kept from a request: `metadata`, `user`.
fn request_metadata(req: &Value, meta: &mut Map<String, Value>) {
    if let Some(Value::Object(m)) = req.get("metadata") {
        for (k, v) in m {
            meta.insert(k.clone(), v.clone());
        }
    }
    if let Some(u) = req.get("user").filter(|u| !u.is_null()) {
        meta.insert("user".into(), u.clone());
    }
}

/// Builds a call from a request body and a completion.
pub fn call_from(req: &Value, req_path: &str, resp: &Value, resp_path: &str) -> Res<Call> {
    let (messages, tools, req_model) = request(req, req_path)?;
    let c = completion(resp, resp_path)?;
    let mut metadata = Map::new();
    request_metadata(req, &mut metadata);
    Ok(Call {
        source_format: Some(SourceFormat::OpenaiChat),
        model: c.model.or(req_model),
        timestamp_ms: c.created_ms,
        messages,
        tools,
        response: c.response,
        usage: c.usage,
        metadata,
        demands: crate::call::Demands::from_request(req),
        ..Default::default()
    })
}

/// A request/response pair record: `{workload_id, client_id, timestamp,
/// request, response}` (Data Flywheel), `{request, response}`, or
/// `{messages, tools, completion|response|output}`.
pub fn parse_pair(v: &Value) -> Res<Call> {
    let mut call = if let Some(req) = v.get("request") {
        let resp = match v.get("response") {
            Some(r) => r,
            None => {
                return Err(Bad::new(
                    Reason::MissingResponse,
                    "field `response` is missing",
                ))
            }
        };
        call_from(req, "request.", resp, "response")?
    } else {
        let Some((key, resp)) = ["completion", "response", "output"]
            .iter()
            .find_map(|k| v.get(*k).map(|r| (*k, r)))
        else {
            return Err(Bad::new(
                Reason::MissingResponse,
                "the record has messages but no completion",
            ));
        };
        call_from(v, "", resp, key)?
    };
    call.workload_id = opt_id(v, "workload_id");
    call.client_id = opt_id(v, "client_id");
    if let Some(ts) = v.get("timestamp").and_then(parse_time_ms) {
        call.timestamp_ms = Some(ts);
    }
    if let Some(l) = v
        .get("latency_ms")
        .or_else(|| v.get("latency"))
        .and_then(Value::as_f64)
    {
        call.latency_ms = Some(l);
    }
    Ok(call)
}

/// One line of an OpenAI Batch file: an input line `{custom_id, method, url,
/// body}` or an output line `{id, custom_id, response, error}`.
pub fn parse_batch_line(v: &Value) -> Item {
    let custom_id = match v.get("custom_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Item::Bad(wrong_type("custom_id", "a string", other)),
        None => {
            return Item::Bad(Bad::new(
                Reason::UnknownFormat,
                "field `custom_id` is missing",
            ))
        }
    };
    let key = BatchKey {
        format: SourceFormat::OpenaiBatch,
        custom_id,
    };
    if let Some(body) = v.get("body") {
        if let Some(url) = v.get("url").and_then(Value::as_str) {
            if !url.contains("chat/completions") {
                return Item::Bad(Bad::new(
                    Reason::UnsupportedEndpoint,
                    "batch line is not for /v1/chat/completions",
                ));
            }
        }
        return match request(body, "body.") {
            Ok((messages, tools, model)) => {
                let mut metadata = Map::new();
                request_metadata(body, &mut metadata);
                let call = Call {
                    source_format: Some(SourceFormat::OpenaiBatch),
                    model,
                    messages,
                    tools,
                    metadata,
                    demands: crate::call::Demands::from_request(body),
                    ..Default::default()
                };
                Item::BatchRequest {
                    key,
                    call: RawCall::new(call),
                }
            }
            Err(b) => Item::Bad(b),
        };
    }
    if v.get("response").is_some() || v.get("error").is_some() {
        let result = batch_output(v);
        return Item::BatchResponse {
            key,
            result: result.map(RawCall::new),
        };
    }
    Item::Bad(Bad::new(
        Reason::UnknownFormat,
        "batch line has neither `body` nor `response`",
    ))
}

fn batch_output(v: &Value) -> Res<Call> {
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(Bad::new(
            Reason::ErrorResponse,
            "batch output has an `error`",
        ));
    }
    let resp = match v.get("response") {
        Some(Value::Null) | None => {
            return Err(Bad::new(
                Reason::MissingResponse,
                "batch output has no `response`",
            ))
        }
        Some(r) => r,
    };
    if let Some(code) = resp.get("status_code").and_then(super::as_u64) {
        if code != 200 {
            return Err(Bad::new(
                Reason::ErrorResponse,
                format!("batch output has status_code {code}"),
            ));
        }
    }
    let body = match resp.get("body") {
        Some(b) => b,
        None => {
            return Err(Bad::new(
                Reason::MissingResponse,
                "field `response.body` is missing",
            ))
        }
    };
    let c = completion(body, "response.body")?;
    Ok(Call {
        source_format: Some(SourceFormat::OpenaiBatch),
        model: c.model,
        timestamp_ms: c.created_ms,
        response: c.response,
        usage: c.usage,
        ..Default::default()
    })
}

/// Helper for callers that need a type mismatch error on a whole body.
pub fn expect_object(v: &Value, path: &str) -> Res<()> {
    if v.is_object() {
        Ok(())
    } else {
        Err(Bad::new(
            Reason::WrongType,
            format!("field `{path}` is {}, expected an object", type_name(v)),
        ))
    }
}
