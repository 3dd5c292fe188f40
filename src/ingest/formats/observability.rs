//! Observability exports: Langfuse observations, Helicone requests, LiteLLM
//! StandardLoggingPayload and LangSmith runs. Their bodies hold OpenAI (or
//! Anthropic) messages, so they delegate to those parsers.

use serde_json::{Map, Value};

use super::{
    anthropic, decode_json_string, decode_output, openai, opt_id, opt_str, opt_tokens,
    parse_time_ms, Bad, Item, Reason, Res, TokenField,
};
use crate::call::{Call, Message, RawCall, Response, Role, SourceFormat, ToolDef, Usage};

fn latency(start: Option<i64>, end: Option<i64>) -> Option<f64> {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => Some((e - s) as f64),
        _ => None,
    }
}

/// Messages from an `input` that is an OpenAI message list, an object with
/// `messages` (and maybe `tools`), or a plain prompt string.
fn input_messages(input: &Value, path: &str) -> Res<(Vec<Message>, Vec<ToolDef>)> {
    let input = decode_json_string(input);
    match &*input {
        Value::Array(_) => Ok((openai::messages(Some(&input), path)?, vec![])),
        Value::Object(o) if o.contains_key("messages") => {
            let msgs = openai::messages(o.get("messages"), &format!("{path}.messages"))?;
            let tools = openai::tools(&input, &format!("{path}."))?;
            Ok((msgs, tools))
        }
        Value::String(s) => Ok((vec![Message::text(Role::User, s.clone())], vec![])),
        Value::Null => Err(Bad::new(
            Reason::EmptyRequest,
            format!("field `{path}` is null"),
        )),
        other => Err(super::wrong_type(path, "a message list", other)),
    }
}

fn tools_from(v: Option<&Value>, path: &str) -> Res<Vec<ToolDef>> {
    match v.map(decode_json_string).as_deref() {
        Some(Value::Array(ts)) => ts
            .iter()
            .enumerate()
            .map(|(i, t)| openai::tool_def(t, &format!("{path}[{i}]")))
            .collect(),
        _ => Ok(vec![]),
    }
}

/// A Langfuse observation. Only `GENERATION`s are calls.
pub fn parse_langfuse(v: &Value) -> Item {
    match v.get("type").and_then(Value::as_str) {
        Some("GENERATION") => {}
        Some("SPAN") => return Item::NotACall("langfuse_span"),
        Some("EVENT") => return Item::NotACall("langfuse_event"),
        Some(_) => return Item::NotACall("langfuse_other_observation"),
        None => {
            return Item::Bad(super::wrong_type(
                "type",
                "a string",
                v.get("type").unwrap_or(&Value::Null),
            ))
        }
    }
    let r = (|| -> Res<Call> {
        if v.get("level").and_then(Value::as_str) == Some("ERROR") {
            return Err(Bad::new(
                Reason::ErrorResponse,
                "the observation has level ERROR",
            ));
        }
        let (messages, mut tools) =
            input_messages(v.get("input").unwrap_or(&Value::Null), "input")?;
        if messages.is_empty() {
            return Err(Bad::new(
                Reason::EmptyRequest,
                "field `input` holds no messages",
            ));
        }
        if tools.is_empty() {
            tools = tools_from(
                v.get("modelParameters").and_then(|m| m.get("tools")),
                "modelParameters.tools",
            )?;
        }
        if tools.is_empty() {
            tools = tools_from(
                v.get("metadata").and_then(|m| m.get("tools")),
                "metadata.tools",
            )?;
        }
        let output = v.get("output").map(decode_output).unwrap_or(Value::Null);
        let comp = openai::completion(&output, "output")?;
        let mut usage = openai::usage(v.get("usageDetails").or_else(|| v.get("usage")));
        if usage.prompt_tokens.is_none() {
            let u = v.get("usage").cloned().unwrap_or(Value::Null);
            usage.prompt_tokens = opt_tokens(&u, "promptTokens", TokenField::Prompt);
            usage.completion_tokens = opt_tokens(&u, "completionTokens", TokenField::Completion);
            usage.total_tokens = opt_tokens(&u, "totalTokens", TokenField::Total);
        }
        if usage.prompt_tokens.is_none() {
            usage = comp.usage.clone();
        }
        let start = v.get("startTime").and_then(parse_time_ms);
        let end = v.get("endTime").and_then(parse_time_ms);
        let mut metadata = Map::new();
        if let Some(Value::Object(m)) = v.get("metadata") {
            metadata.extend(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "tools")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        if let Some(u) = v.get("userId").filter(|u| !u.is_null()) {
            metadata.insert("userId".into(), u.clone());
        }
        Ok(Call {
            source_format: Some(SourceFormat::Langfuse),
            model: opt_str(v, "model", "")?.or(comp.model),
            timestamp_ms: start,
            latency_ms: latency(start, end),
            messages,
            tools,
            response: comp.response,
            usage,
            metadata,
            workload_id: opt_id(v, "name"),
            ..Default::default()
        })
    })();
    match r {
        Ok(c) => Item::Call(RawCall::new(c)),
        Err(b) => Item::Bad(b),
    }
}

/// A Helicone request export: raw provider bodies (OpenAI or Anthropic).
pub fn parse_helicone(v: &Value) -> Res<Call> {
    if let Some(status) = v.get("response_status").and_then(super::as_u64) {
        if status != 200 {
            return Err(Bad::new(
                Reason::ErrorResponse,
                format!("response_status is {status}"),
            ));
        }
    }
    let req = decode_json_string(v.get("request_body").unwrap_or(&Value::Null));
    let resp = decode_output(v.get("response_body").unwrap_or(&Value::Null));
    if req.is_null() {
        return Err(Bad::new(
            Reason::EmptyRequest,
            "field `request_body` is missing",
        ));
    }
    if resp.is_null() {
        return Err(Bad::new(
            Reason::MissingResponse,
            "field `response_body` is missing",
        ));
    }
    let provider = v
        .get("provider")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut call =
        if provider.contains("anthropic") || anthropic::looks_anthropic(Some(&req), Some(&resp)) {
            anthropic::call_from(&req, "request_body.", &resp, "response_body")?
        } else {
            openai::call_from(&req, "request_body.", &resp, "response_body")?
        };
    call.source_format = Some(SourceFormat::Helicone);
    call.timestamp_ms = v
        .get("request_created_at")
        .and_then(parse_time_ms)
        .or(call.timestamp_ms);
    call.latency_ms = v.get("delay_ms").and_then(Value::as_f64);
    if call.model.is_none() {
        call.model = opt_str(v, "request_model", "")?;
    }
    if call.usage.prompt_tokens.is_none() {
        call.usage.prompt_tokens = opt_tokens(v, "prompt_tokens", TokenField::Prompt);
        call.usage.completion_tokens = opt_tokens(v, "completion_tokens", TokenField::Completion);
    }
    if let Some(u) = v.get("request_user_id").filter(|u| !u.is_null()) {
        call.metadata.insert("user_id".into(), u.clone());
    }
    if let Some(Value::Object(props)) = v.get("request_properties") {
        call.metadata
            .extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(call)
}

/// A LiteLLM StandardLoggingPayload.
pub fn parse_litellm(v: &Value) -> Item {
    if let Some(ct) = v.get("call_type").and_then(Value::as_str) {
        let ct = ct.trim_start_matches('a');
        if !matches!(
            ct,
            "completion"
                | "text_completion"
                | "responses"
                | "anthropic_messages"
                | "generate_content"
        ) {
            return Item::NotACall("litellm_non_completion");
        }
    }
    let r = (|| -> Res<Call> {
        match v.get("status").and_then(Value::as_str) {
            Some("failure") => return Err(Bad::new(Reason::ErrorResponse, "status is failure")),
            _ if v.get("error_str").is_some_and(|e| !e.is_null()) => {
                return Err(Bad::new(
                    Reason::ErrorResponse,
                    "the payload has an error_str",
                ))
            }
            _ => {}
        }
        let (messages, mut tools) =
            input_messages(v.get("messages").unwrap_or(&Value::Null), "messages")?;
        if messages.is_empty() {
            return Err(Bad::new(Reason::EmptyRequest, "field `messages` is empty"));
        }
        if tools.is_empty() {
            tools = tools_from(
                v.get("model_parameters").and_then(|m| m.get("tools")),
                "model_parameters.tools",
            )?;
        }
        let resp = v.get("response").map(decode_output).unwrap_or(Value::Null);
        let comp = openai::completion(&resp, "response")?;
        let start = v.get("startTime").and_then(parse_time_ms);
        let end = v.get("endTime").and_then(parse_time_ms);
        let mut usage = comp.usage.clone();
        if usage.prompt_tokens.is_none() {
            usage = Usage {
                prompt_tokens: opt_tokens(v, "prompt_tokens", TokenField::Prompt),
                completion_tokens: opt_tokens(v, "completion_tokens", TokenField::Completion),
                total_tokens: opt_tokens(v, "total_tokens", TokenField::Total),
            };
        }
        let mut metadata = Map::new();
        if let Some(Value::Object(m)) = v.get("metadata") {
            metadata.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Call {
            source_format: Some(SourceFormat::Litellm),
            model: opt_str(v, "model", "")?.or(comp.model),
            timestamp_ms: start,
            latency_ms: latency(start, end),
            messages,
            tools,
            response: comp.response,
            usage,
            metadata,
            ..Default::default()
        })
    })();
    match r {
        Ok(c) => Item::Call(RawCall::new(c)),
        Err(b) => Item::Bad(b),
    }
}

/// A LangChain-serialised message (`{"lc":1,"type":"constructor",
/// "id":[..,"HumanMessage"],"kwargs":{...}}`) or a `{type, content}` message
/// as an OpenAI-shaped one.
fn lc_message(m: &Value) -> Value {
    let (kind, body) = if let Some(k) = m.get("kwargs") {
        let kind = m
            .get("id")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (kind, k.clone())
    } else if m.get("role").is_some() {
        return m.clone();
    } else {
        (
            m.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            m.clone(),
        )
    };
    let role = match kind.as_str() {
        "SystemMessage" | "system" => "system",
        "HumanMessage" | "human" | "user" => "user",
        "AIMessage" | "ai" | "AIMessageChunk" => "assistant",
        "ToolMessage" | "tool" | "FunctionMessage" => "tool",
        _ => "user",
    };
    let mut o = Map::new();
    o.insert("role".into(), role.into());
    o.insert(
        "content".into(),
        body.get("content").cloned().unwrap_or(Value::Null),
    );
    if let Some(tc) = body.get("tool_call_id") {
        o.insert("tool_call_id".into(), tc.clone());
    }
    // LangChain AIMessage.tool_calls: [{name, args, id}]
    if let Some(Value::Array(tcs)) = body.get("tool_calls") {
        let calls: Vec<Value> = tcs
            .iter()
            .map(|t| {
                if t.get("function").is_some() {
                    t.clone()
                } else {
                    serde_json::json!({"id": t.get("id"), "type": "function",
                        "function": {"name": t.get("name"), "arguments": t.get("args").cloned().unwrap_or(Value::Null)}})
                }
            })
            .collect();
        o.insert("tool_calls".into(), Value::Array(calls));
    } else if let Some(Value::Array(tcs)) = body
        .get("additional_kwargs")
        .and_then(|a| a.get("tool_calls"))
    {
        o.insert("tool_calls".into(), Value::Array(tcs.clone()));
    }
    Value::Object(o)
}

/// A LangSmith run; only `run_type = llm` runs are calls.
pub fn parse_langsmith(v: &Value) -> Item {
    match v.get("run_type").and_then(Value::as_str) {
        Some("llm") => {}
        Some(_) => return Item::NotACall("langsmith_non_llm_run"),
        None => {
            return Item::Bad(super::wrong_type(
                "run_type",
                "a string",
                v.get("run_type").unwrap_or(&Value::Null),
            ))
        }
    }
    let r = (|| -> Res<Call> {
        if v.get("error")
            .is_some_and(|e| !e.is_null() && e.as_str() != Some(""))
        {
            return Err(Bad::new(Reason::ErrorResponse, "the run has an error"));
        }
        let inputs = v.get("inputs").cloned().unwrap_or(Value::Null);
        let msgs_v = match inputs.get("messages") {
            // LangChain batches: [[msg, msg]]
            Some(Value::Array(a)) if a.first().is_some_and(Value::is_array) => a[0].clone(),
            Some(m) => m.clone(),
            None => match inputs
                .get("prompts")
                .and_then(Value::as_array)
                .and_then(|p| p.first())
            {
                Some(Value::String(p)) => serde_json::json!([{"role": "user", "content": p}]),
                _ => {
                    return Err(Bad::new(
                        Reason::EmptyRequest,
                        "field `inputs.messages` is missing",
                    ))
                }
            },
        };
        let msgs_v = match msgs_v {
            Value::Array(a) => Value::Array(a.iter().map(lc_message).collect()),
            other => other,
        };
        let messages = openai::messages(Some(&msgs_v), "inputs.messages")?;
        let extra_tools = v
            .get("extra")
            .and_then(|e| e.get("invocation_params"))
            .and_then(|p| p.get("tools"));
        let mut tools = tools_from(inputs.get("tools").or(extra_tools), "tools")?;
        if tools.is_empty() {
            tools = openai::tools(&inputs, "inputs.")?;
        }
        let outputs = v.get("outputs").cloned().unwrap_or(Value::Null);
        let comp = if let Some(gens) = outputs.get("generations") {
            let g = match gens {
                Value::Array(a) if a.first().is_some_and(Value::is_array) => a[0].get(0).cloned(),
                Value::Array(a) => a.first().cloned(),
                _ => None,
            }
            .ok_or_else(|| {
                Bad::new(
                    Reason::MissingResponse,
                    "field `outputs.generations` is empty",
                )
            })?;
            let msg = match g.get("message") {
                Some(m) => {
                    let mut m = lc_message(m);
                    if let Value::Object(o) = &mut m {
                        o.insert("role".into(), "assistant".into());
                    }
                    m
                }
                None => serde_json::json!({"role": "assistant", "content": g.get("text")}),
            };
            let finish = g
                .get("generation_info")
                .and_then(|gi| gi.get("finish_reason"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let m = openai::message(&msg, "outputs.generations[0].message")?;
            if m.content.as_deref().map(str::trim).unwrap_or("").is_empty()
                && m.tool_calls.is_empty()
            {
                return Err(Bad::new(
                    Reason::EmptyResponse,
                    "the response has neither text nor tool calls",
                ));
            }
            openai::Completion {
                response: Response {
                    content: m.content,
                    tool_calls: m.tool_calls,
                    finish_reason: finish,
                },
                usage: openai::usage(outputs.get("llm_output").and_then(|l| l.get("token_usage"))),
                model: outputs
                    .get("llm_output")
                    .and_then(|l| l.get("model_name"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                created_ms: None,
            }
        } else if outputs.is_null() {
            return Err(Bad::new(
                Reason::MissingResponse,
                "field `outputs` is missing",
            ));
        } else {
            openai::completion(&outputs, "outputs")?
        };
        let start = v.get("start_time").and_then(parse_time_ms);
        let end = v.get("end_time").and_then(parse_time_ms);
        let mut usage = comp.usage.clone();
        if usage.prompt_tokens.is_none() {
            usage = Usage {
                prompt_tokens: opt_tokens(v, "prompt_tokens", TokenField::Prompt),
                completion_tokens: opt_tokens(v, "completion_tokens", TokenField::Completion),
                total_tokens: opt_tokens(v, "total_tokens", TokenField::Total),
            };
        }
        let mut metadata = Map::new();
        if let Some(Value::Object(m)) = v.get("extra").and_then(|e| e.get("metadata")) {
            metadata.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Call {
            source_format: Some(SourceFormat::Langsmith),
            model: comp.model,
            timestamp_ms: start,
            latency_ms: latency(start, end),
            messages,
            tools,
            response: comp.response,
            usage,
            metadata,
            ..Default::default()
        })
    })();
    match r {
        Ok(c) => Item::Call(RawCall::new(c)),
        Err(b) => Item::Bad(b),
    }
}
