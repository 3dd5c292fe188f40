//! Renders a provider-neutral synthetic call ([`Conv`]) as the raw log
//! record of each supported format, with the per-record variants real tools
//! emit (Data Flywheel / plain / messages+completion OpenAI records, legacy
//! `functions`, content parts, Batch API input+output lines, Anthropic
//! pairs, OTLP GenAI spans in the current, event and flattened forms,
//! Langfuse, Helicone, LiteLLM and LangSmith exports).

use rand::Rng;
use serde_json::{json, Map, Value};

use super::pii::{self, chance, pick, R};
use super::workloads::{Answer, Conv, TCall, Turn};

/// Which provider API the call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

/// Per-call facts shared by every format: time, model, token counts.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Request start, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    pub latency_ms: i64,
    pub provider: Provider,
    /// The model named in the request.
    pub model: &'static str,
    /// The (dated) model the response reports.
    pub resp_model: &'static str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The calling application (service name, client id, tags).
    pub app: &'static str,
}

const OPENAI_MODELS: [(&str, &str); 4] = [
    ("gpt-4o", "gpt-4o-2024-08-06"),
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("gpt-4.1", "gpt-4.1-2025-04-14"),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
];
const ANTHROPIC_MODELS: [&str; 3] = [
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-20250219",
];

/// The application name per workload (service.name, client_id, tags).
pub const APPS: [&str; 10] = [
    "triage-service",
    "shopright-orders",
    "ap-invoice-parser",
    "meeting-notes",
    "analytics-sql",
    "calendar-agent",
    "travel-concierge",
    "brightside-chat",
    "review-labeler",
    "crm-intake",
];

/// Builds the call's meta data. Each workload's app mostly sticks to one
/// model per provider, as real apps do.
pub fn meta(conv: &Conv, workload_idx: usize, provider: Provider, ts_ms: i64, rng: &mut R) -> Meta {
    let (model, resp_model) = match provider {
        Provider::OpenAi => {
            let m = if chance(rng, 0.8) {
                OPENAI_MODELS[workload_idx % 4]
            } else {
                *pick(rng, &OPENAI_MODELS)
            };
            (m.0, m.1)
        }
        Provider::Anthropic => {
            let m = if chance(rng, 0.8) {
                ANTHROPIC_MODELS[workload_idx % 3]
            } else {
                *pick(rng, &ANTHROPIC_MODELS)
            };
            (m, m)
        }
    };
    let (prompt_tokens, completion_tokens) = estimate_tokens(conv);
    let latency_ms = 250 + completion_tokens as i64 * 12 + rng.random_range(0..600);
    Meta {
        ts_ms,
        latency_ms,
        provider,
        model,
        resp_model,
        prompt_tokens,
        completion_tokens,
        app: APPS[workload_idx % APPS.len()],
    }
}

/// Rough token counts (4 characters a token plus per-message overhead).
pub fn estimate_tokens(conv: &Conv) -> (u64, u64) {
    let mut chars = conv.system.len();
    for t in &conv.turns {
        chars += match t {
            Turn::User(s) => s.len(),
            Turn::Assistant(calls) => calls
                .iter()
                .map(|c| c.args.to_string().len() + c.name.len())
                .sum(),
            Turn::ToolResult { content, .. } => content.len(),
        };
    }
    for tl in &conv.tools {
        chars += tl.name.len() + tl.description.len() + tl.parameters.to_string().len();
    }
    let prompt = (chars / 4) as u64 + 4 * (conv.turns.len() as u64 + 1) + 3;
    let completion = match &conv.answer {
        Answer::Text(t) => t.len() / 4 + 1,
        Answer::Tools(calls) => calls.iter().map(|c| c.args.to_string().len() / 4 + 8).sum(),
    } as u64;
    (prompt, completion)
}

// ---------------------------------------------------------------- time and ids

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn iso_us_naive(ms: i64, extra_us: u32) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| {
            format!(
                "{}{:03}",
                d.format("%Y-%m-%dT%H:%M:%S%.3f"),
                extra_us % 1000
            )
        })
        .unwrap_or_default()
}

fn nanos(ms: i64) -> String {
    format!("{}", ms as i128 * 1_000_000)
}

fn openai_call_id(c: &TCall) -> String {
    format!("call_{}", c.id)
}

fn anthropic_tool_id(c: &TCall) -> String {
    format!("toolu_01{}", &c.id[..22])
}

fn call_id_for(provider: Provider, c: &TCall) -> String {
    match provider {
        Provider::OpenAi => openai_call_id(c),
        Provider::Anthropic => anthropic_tool_id(c),
    }
}

fn tool_result_id(provider: Provider, call_id: &str) -> String {
    match provider {
        Provider::OpenAi => format!("call_{call_id}"),
        Provider::Anthropic => format!("toolu_01{}", &call_id[..22]),
    }
}

fn cost(meta: &Meta) -> f64 {
    let (pin, pout) = match meta.model {
        "gpt-4o" => (2.5, 10.0),
        "gpt-4o-mini" => (0.15, 0.6),
        "gpt-4.1" => (2.0, 8.0),
        "gpt-4.1-mini" => (0.4, 1.6),
        "claude-3-5-haiku-20241022" => (0.8, 4.0),
        _ => (3.0, 15.0),
    };
    let c = (meta.prompt_tokens as f64 * pin + meta.completion_tokens as f64 * pout) / 1e6;
    (c * 1e7).round() / 1e7
}

// ---------------------------------------------------------------- OpenAI chat shapes

/// How an OpenAI-style record is written.
#[derive(Clone, Copy, Debug)]
pub struct OaStyle {
    /// `system` or `developer`.
    pub system_role: &'static str,
    /// Content as a list of text parts instead of a string.
    pub parts: bool,
    /// Legacy `functions` / `function_call` instead of tools.
    pub legacy: bool,
}

impl OaStyle {
    pub fn draw(conv: &Conv, rng: &mut R) -> OaStyle {
        let single_turn = conv.turns.len() == 1;
        let one_call = matches!(&conv.answer, Answer::Tools(c) if c.len() == 1);
        OaStyle {
            system_role: if chance(rng, 0.06) {
                "developer"
            } else {
                "system"
            },
            parts: chance(rng, 0.3),
            legacy: !conv.tools.is_empty() && single_turn && one_call && chance(rng, 0.12),
        }
    }
    pub fn plain() -> OaStyle {
        OaStyle {
            system_role: "system",
            parts: false,
            legacy: false,
        }
    }
}

fn oa_content(text: &str, parts: bool) -> Value {
    if parts {
        json!([{"type": "text", "text": text}])
    } else {
        Value::String(text.to_string())
    }
}

fn oa_tool_calls(calls: &[TCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| json!({"id": openai_call_id(c), "type": "function", "function": {"name": c.name, "arguments": c.args.to_string()}}))
            .collect(),
    )
}

/// The request messages (system first) in OpenAI chat form.
pub fn oa_messages(conv: &Conv, style: OaStyle) -> Vec<Value> {
    let mut out =
        vec![json!({"role": style.system_role, "content": oa_content(&conv.system, style.parts)})];
    for t in &conv.turns {
        out.push(match t {
            Turn::User(s) => json!({"role": "user", "content": oa_content(s, style.parts)}),
            Turn::Assistant(calls) => json!({"role": "assistant", "content": null, "tool_calls": oa_tool_calls(calls)}),
            Turn::ToolResult { call_id, content, .. } => {
                json!({"role": "tool", "tool_call_id": format!("call_{call_id}"), "content": content})
            }
        });
    }
    out
}

/// Tools in the OpenAI `tools[]` shape.
pub fn oa_tools(conv: &Conv) -> Vec<Value> {
    conv.tools
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
        .collect()
}

fn oa_functions(conv: &Conv) -> Vec<Value> {
    conv.tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect()
}

fn oa_finish(conv: &Conv, legacy: bool) -> &'static str {
    match &conv.answer {
        Answer::Text(_) => "stop",
        Answer::Tools(_) if legacy => "function_call",
        Answer::Tools(_) => "tool_calls",
    }
}

/// The assistant message of the response.
pub fn oa_answer_message(conv: &Conv, legacy: bool, with_extras: bool) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    match &conv.answer {
        Answer::Text(t) => {
            m.insert("content".into(), json!(t));
        }
        Answer::Tools(calls) if legacy => {
            m.insert("content".into(), Value::Null);
            m.insert(
                "function_call".into(),
                json!({"name": calls[0].name, "arguments": calls[0].args.to_string()}),
            );
        }
        Answer::Tools(calls) => {
            m.insert("content".into(), Value::Null);
            m.insert("tool_calls".into(), oa_tool_calls(calls));
        }
    }
    if with_extras {
        m.insert("refusal".into(), Value::Null);
        m.insert("annotations".into(), json!([]));
    }
    Value::Object(m)
}

/// An OpenAI chat completions request body.
pub fn oa_request(conv: &Conv, meta: &Meta, style: OaStyle, rng: &mut R) -> Value {
    let mut m = Map::new();
    m.insert("model".into(), json!(meta.model));
    m.insert("messages".into(), Value::Array(oa_messages(conv, style)));
    if !conv.tools.is_empty() {
        if style.legacy {
            m.insert("functions".into(), Value::Array(oa_functions(conv)));
            m.insert("function_call".into(), json!("auto"));
        } else {
            m.insert("tools".into(), Value::Array(oa_tools(conv)));
            if chance(rng, 0.6) {
                m.insert("tool_choice".into(), json!("auto"));
            }
            if chance(rng, 0.3) {
                m.insert(
                    "parallel_tool_calls".into(),
                    json!(conv.workload == "travel_agent"),
                );
            }
        }
    }
    m.insert("temperature".into(), json!(conv.temperature));
    if chance(rng, 0.5) {
        m.insert("max_tokens".into(), json!(conv.max_tokens));
    } else {
        m.insert("max_completion_tokens".into(), json!(conv.max_tokens));
    }
    if conv.json_output && chance(rng, 0.8) {
        m.insert("response_format".into(), json!({"type": "json_object"}));
    }
    if chance(rng, 0.2) {
        m.insert("user".into(), json!(format!("user_{}", pii::hex(rng, 12))));
    }
    if chance(rng, 0.15) {
        m.insert("seed".into(), json!(rng.random_range(1..10_000)));
    }
    Value::Object(m)
}

/// An OpenAI `chat.completion` object.
pub fn oa_completion(conv: &Conv, meta: &Meta, legacy: bool, rng: &mut R) -> Value {
    json!({
        "id": format!("chatcmpl-{}", pii::alnum(rng, 29)),
        "object": "chat.completion",
        "created": (meta.ts_ms + meta.latency_ms) / 1000,
        "model": meta.resp_model,
        "choices": [{
            "index": 0,
            "message": oa_answer_message(conv, legacy, true),
            "logprobs": null,
            "finish_reason": oa_finish(conv, legacy),
        }],
        "usage": {
            "prompt_tokens": meta.prompt_tokens,
            "completion_tokens": meta.completion_tokens,
            "total_tokens": meta.prompt_tokens + meta.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": format!("fp_{}", pii::hex(rng, 10)),
    })
}

// ---------------------------------------------------------------- Anthropic shapes

fn an_answer_blocks(conv: &Conv) -> Vec<Value> {
    match &conv.answer {
        Answer::Text(t) => vec![json!({"type": "text", "text": t})],
        Answer::Tools(calls) => {
            calls.iter().map(|c| json!({"type": "tool_use", "id": anthropic_tool_id(c), "name": c.name, "input": c.args})).collect()
        }
    }
}

/// An Anthropic Messages request body; `thinking` turns on extended thinking.
pub fn an_request(conv: &Conv, meta: &Meta, thinking: bool, rng: &mut R) -> Value {
    let blocks = chance(rng, 0.35);
    let mut messages = Vec::new();
    for t in &conv.turns {
        messages.push(match t {
            Turn::User(s) => {
                if blocks {
                    json!({"role": "user", "content": [{"type": "text", "text": s}]})
                } else {
                    json!({"role": "user", "content": s})
                }
            }
            Turn::Assistant(calls) => json!({"role": "assistant", "content": calls.iter().map(|c| json!({"type": "tool_use", "id": anthropic_tool_id(c), "name": c.name, "input": c.args})).collect::<Vec<_>>()}),
            Turn::ToolResult { call_id, content, .. } => json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_01{}", &call_id[..22]), "content": content}]}),
        });
    }
    let mut m = Map::new();
    m.insert("model".into(), json!(meta.model));
    m.insert(
        "max_tokens".into(),
        json!(if thinking { 2048 } else { conv.max_tokens }),
    );
    if chance(rng, 0.5) {
        m.insert("system".into(), json!(conv.system));
    } else if chance(rng, 0.5) {
        m.insert(
            "system".into(),
            json!([{"type": "text", "text": conv.system}]),
        );
    } else {
        m.insert(
            "system".into(),
            json!([{"type": "text", "text": conv.system, "cache_control": {"type": "ephemeral"}}]),
        );
    }
    m.insert("messages".into(), Value::Array(messages));
    if !conv.tools.is_empty() {
        let tools: Vec<Value> =
            conv.tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters})).collect();
        m.insert("tools".into(), Value::Array(tools));
        if chance(rng, 0.4) {
            m.insert("tool_choice".into(), json!({"type": "auto"}));
        }
    }
    if thinking {
        m.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": 1024}),
        );
    } else {
        m.insert("temperature".into(), json!(conv.temperature));
    }
    if chance(rng, 0.25) {
        m.insert("metadata".into(), json!({"user_id": pii::uuid(rng)}));
    }
    Value::Object(m)
}

/// An Anthropic Messages response.
pub fn an_response(conv: &Conv, meta: &Meta, thinking: bool, rng: &mut R) -> Value {
    let mut content = Vec::new();
    if thinking {
        content.push(json!({
            "type": "thinking",
            "thinking": "The request is clear; I will answer in the format the instructions ask for.",
            "signature": pii::alnum(rng, 64),
        }));
    }
    content.extend(an_answer_blocks(conv));
    let stop = match conv.answer {
        Answer::Text(_) => "end_turn",
        Answer::Tools(_) => "tool_use",
    };
    json!({
        "id": format!("msg_01{}", pii::alnum(rng, 22)),
        "type": "message",
        "role": "assistant",
        "model": meta.resp_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {
            "input_tokens": meta.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": meta.completion_tokens,
            "service_tier": "standard",
        },
    })
}

// ---------------------------------------------------------------- single-line formats

/// The `openai_chat` record: Data Flywheel, plain pair, or messages+completion.
pub fn openai_chat(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let style = OaStyle::draw(conv, rng);
    let request = oa_request(conv, meta, style, rng);
    let response = oa_completion(conv, meta, style.legacy, rng);
    let roll = rng.random_range(0..100);
    let (v, variant) = if roll < 55 {
        let mut m = Map::new();
        if chance(rng, 0.88) {
            m.insert("workload_id".into(), json!(conv.workload));
        }
        m.insert("client_id".into(), json!(meta.app));
        m.insert("timestamp".into(), json!(meta.ts_ms / 1000));
        m.insert("request".into(), request);
        m.insert("response".into(), response);
        (Value::Object(m), "flywheel")
    } else if roll < 80 {
        (json!({"request": request, "response": response}), "pair")
    } else {
        let mut m = Map::new();
        m.insert("messages".into(), request["messages"].clone());
        if let Some(t) = request.get("tools").or_else(|| request.get("functions")) {
            let key = if style.legacy { "functions" } else { "tools" };
            m.insert(key.into(), t.clone());
        }
        m.insert("completion".into(), response);
        (Value::Object(m), "messages_completion")
    };
    let variant = match (style.legacy, variant) {
        (true, "flywheel") => "flywheel_legacy_functions",
        (true, "pair") => "pair_legacy_functions",
        (true, _) => "messages_completion_legacy_functions",
        (false, v) => v,
    };
    (v, variant)
}

/// The `anthropic` request/response pair.
pub fn anthropic(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let thinking = meta.model != "claude-3-5-haiku-20241022" && chance(rng, 0.06);
    let request = an_request(conv, meta, thinking, rng);
    let response = an_response(conv, meta, thinking, rng);
    let variant = if thinking { "pair_thinking" } else { "pair" };
    (json!({"request": request, "response": response}), variant)
}

/// The OpenAI Batch API input and output lines for one call.
pub fn openai_batch(
    conv: &Conv,
    meta: &Meta,
    seq: usize,
    rng: &mut R,
) -> (Value, Value, &'static str) {
    let style = OaStyle {
        legacy: false,
        ..OaStyle::draw(conv, rng)
    };
    let custom_id = match seq % 3 {
        0 => format!("request-{seq}"),
        1 => format!("{}-{seq:06}", meta.app),
        _ => format!("task-{}", pii::uuid(rng)),
    };
    let body = oa_request(conv, meta, style, rng);
    let input = json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body});
    let output = json!({
        "id": format!("batch_req_{}", pii::hex(rng, 32)),
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": format!("req_{}", pii::hex(rng, 32)), "body": oa_completion(conv, meta, false, rng)},
        "error": null,
    });
    (input, output, "batch")
}

/// A Langfuse GENERATION observation.
pub fn langfuse(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let style = OaStyle {
        legacy: false,
        system_role: "system",
        parts: chance(rng, 0.15),
    };
    let messages = oa_messages(conv, style);
    let (input, v_in) = if conv.tools.is_empty() {
        (Value::Array(messages), "messages")
    } else {
        (
            json!({"messages": messages, "tools": oa_tools(conv)}),
            "messages_tools",
        )
    };
    let (output, v_out) = match &conv.answer {
        Answer::Text(t) if chance(rng, 0.15) => (json!(t), "string_output"),
        _ => (oa_answer_message(conv, false, false), "message_output"),
    };
    let start = meta.ts_ms;
    let end = meta.ts_ms + meta.latency_ms;
    let c = cost(meta);
    let mut metadata = Map::new();
    metadata.insert("app".into(), json!(meta.app));
    if chance(rng, 0.3) {
        metadata.insert("userId".into(), json!(pii::person(rng, None).email));
    }
    if chance(rng, 0.3) {
        metadata.insert(
            "ls_provider".into(),
            json!(if meta.provider == Provider::OpenAi {
                "openai"
            } else {
                "anthropic"
            }),
        );
    }
    let v = json!({
        "id": pii::uuid(rng),
        "traceId": pii::hex(rng, 32),
        "type": "GENERATION",
        "name": if chance(rng, 0.5) { format!("{}-llm", meta.app) } else if meta.provider == Provider::OpenAi { "OpenAI-generation".to_string() } else { "Anthropic-generation".to_string() },
        "startTime": iso_ms(start),
        "endTime": iso_ms(end),
        "completionStartTime": iso_ms(start + meta.latency_ms / 3),
        "model": meta.resp_model,
        "modelParameters": {"temperature": conv.temperature, "max_tokens": conv.max_tokens},
        "input": input,
        "output": output,
        "usageDetails": {"input": meta.prompt_tokens, "output": meta.completion_tokens, "total": meta.prompt_tokens + meta.completion_tokens},
        "costDetails": {"total": c},
        "metadata": metadata,
        "level": "DEFAULT",
        "statusMessage": null,
        "parentObservationId": if chance(rng, 0.4) { json!(pii::uuid(rng)) } else { Value::Null },
        "version": null,
        "environment": "production",
    });
    let variant = match (v_in, v_out) {
        ("messages", "message_output") => "messages",
        ("messages", _) => "messages_string_output",
        _ => "messages_tools",
    };
    (v, variant)
}

/// A Helicone request export (raw OpenAI or Anthropic bodies).
pub fn helicone(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let (req, resp, provider, path, variant) = match meta.provider {
        Provider::OpenAi => {
            let style = OaStyle::draw(conv, rng);
            let style = OaStyle {
                legacy: false,
                ..style
            };
            (
                oa_request(conv, meta, style, rng),
                oa_completion(conv, meta, false, rng),
                "OPENAI",
                "https://api.openai.com/v1/chat/completions",
                "openai_bodies",
            )
        }
        Provider::Anthropic => (
            an_request(conv, meta, false, rng),
            an_response(conv, meta, false, rng),
            "ANTHROPIC",
            "https://api.anthropic.com/v1/messages",
            "anthropic_bodies",
        ),
    };
    let user = if chance(rng, 0.4) {
        json!(pii::person(rng, None).email)
    } else {
        json!(format!("usr_{}", pii::hex(rng, 10)))
    };
    let v = json!({
        "request_id": pii::uuid(rng),
        "request_created_at": iso_ms(meta.ts_ms),
        "request_user_id": user,
        "request_model": meta.model,
        "request_path": path,
        "request_body": req,
        "request_properties": {"app": meta.app},
        "response_created_at": iso_ms(meta.ts_ms + meta.latency_ms),
        "response_status": 200,
        "response_body": resp,
        "response_model": meta.resp_model,
        "provider": provider,
        "delay_ms": meta.latency_ms,
        "prompt_tokens": meta.prompt_tokens,
        "completion_tokens": meta.completion_tokens,
        "total_tokens": meta.prompt_tokens + meta.completion_tokens,
        "cost": cost(meta),
        "cache_hit": false,
    });
    (v, variant)
}

/// A LiteLLM StandardLoggingPayload (OpenAI-shaped whatever the provider).
pub fn litellm(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let style = OaStyle {
        legacy: false,
        system_role: "system",
        parts: chance(rng, 0.2),
    };
    let response = oa_completion(conv, meta, false, rng);
    let mut params = Map::new();
    params.insert("temperature".into(), json!(conv.temperature));
    params.insert("max_tokens".into(), json!(conv.max_tokens));
    if !conv.tools.is_empty() {
        params.insert("tools".into(), Value::Array(oa_tools(conv)));
        params.insert("tool_choice".into(), json!("auto"));
    }
    if conv.json_output {
        params.insert("response_format".into(), json!({"type": "json_object"}));
    }
    let (provider, api_base) = match meta.provider {
        Provider::OpenAi => ("openai", "https://api.openai.com/v1"),
        Provider::Anthropic => ("anthropic", "https://api.anthropic.com/v1/messages"),
    };
    let start = meta.ts_ms as f64 / 1000.0;
    let end = (meta.ts_ms + meta.latency_ms) as f64 / 1000.0;
    let mut metadata = Map::new();
    metadata.insert("user_api_key_hash".into(), json!(pii::hex(rng, 64)));
    metadata.insert(
        "user_api_key_alias".into(),
        json!(format!("{}-key", meta.app)),
    );
    metadata.insert("user_api_key_team_alias".into(), json!(meta.app));
    metadata.insert(
        "user_api_key_end_user_id".into(),
        if chance(rng, 0.3) {
            json!(pii::person(rng, None).email)
        } else {
            Value::Null
        },
    );
    metadata.insert(
        "requester_ip_address".into(),
        if chance(rng, 0.3) {
            json!(pii::ip(rng))
        } else {
            json!("")
        },
    );
    metadata.insert("requester_metadata".into(), json!({}));
    let v = json!({
        "id": response["id"].clone(),
        "trace_id": pii::uuid(rng),
        "call_type": if chance(rng, 0.5) { "acompletion" } else { "completion" },
        "stream": false,
        "response_cost": cost(meta),
        "cache_hit": false,
        "status": "success",
        "custom_llm_provider": provider,
        "model": meta.model,
        "model_id": pii::hex(rng, 64),
        "model_group": meta.model,
        "api_base": api_base,
        "startTime": start,
        "endTime": end,
        "completionStartTime": end,
        "metadata": metadata,
        "messages": oa_messages(conv, style),
        "response": response,
        "model_parameters": params,
        "prompt_tokens": meta.prompt_tokens,
        "completion_tokens": meta.completion_tokens,
        "total_tokens": meta.prompt_tokens + meta.completion_tokens,
        "hidden_params": {"model_id": null, "cache_key": null, "api_base": api_base, "response_cost": cost(meta), "additional_headers": {}},
        "request_tags": [],
        "end_user": "",
        "error_str": null,
        "error_information": null,
    });
    (v, "standard_logging_payload")
}

fn lc_message(kind: &str, kwargs: Value) -> Value {
    json!({"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", kind], "kwargs": kwargs})
}

fn lc_tool_calls(calls: &[TCall], provider: Provider) -> Vec<Value> {
    calls.iter().map(|c| json!({"name": c.name, "args": c.args, "id": call_id_for(provider, c), "type": "tool_call"})).collect()
}

/// A LangSmith `llm` run: either traced with `wrap_openai` (OpenAI request
/// and completion as inputs/outputs) or from LangChain (serialised messages
/// and generations).
pub fn langsmith(conv: &Conv, meta: &Meta, rng: &mut R) -> (Value, &'static str) {
    let id = pii::uuid(rng);
    let trace_id = if chance(rng, 0.5) {
        id.clone()
    } else {
        pii::uuid(rng)
    };
    let parent = if trace_id == id {
        Value::Null
    } else {
        json!(trace_id.clone())
    };
    let langchain = meta.provider == Provider::Anthropic || chance(rng, 0.4);
    let (name, inputs, outputs, extra, variant) = if !langchain {
        let style = OaStyle {
            legacy: false,
            system_role: "system",
            parts: false,
        };
        let mut inputs = Map::new();
        inputs.insert("messages".into(), Value::Array(oa_messages(conv, style)));
        inputs.insert("model".into(), json!(meta.model));
        inputs.insert("temperature".into(), json!(conv.temperature));
        if !conv.tools.is_empty() {
            inputs.insert("tools".into(), Value::Array(oa_tools(conv)));
        }
        if conv.json_output {
            inputs.insert("response_format".into(), json!({"type": "json_object"}));
        }
        inputs.insert("stream".into(), json!(false));
        let outputs = oa_completion(conv, meta, false, rng);
        let extra = json!({"metadata": {"ls_provider": "openai", "ls_model_name": meta.model, "ls_model_type": "chat", "ls_temperature": conv.temperature}, "runtime": {"sdk": "langsmith-py", "sdk_version": "0.3.45"}});
        (
            "ChatOpenAI",
            Value::Object(inputs),
            outputs,
            extra,
            "wrap_openai",
        )
    } else {
        let mut msgs = vec![lc_message(
            "SystemMessage",
            json!({"content": conv.system, "type": "system"}),
        )];
        for t in &conv.turns {
            msgs.push(match t {
                Turn::User(s) => lc_message("HumanMessage", json!({"content": s, "type": "human"})),
                Turn::Assistant(calls) => lc_message(
                    "AIMessage",
                    json!({"content": "", "type": "ai", "tool_calls": lc_tool_calls(calls, meta.provider), "invalid_tool_calls": []}),
                ),
                Turn::ToolResult { call_id, name, content } => lc_message(
                    "ToolMessage",
                    json!({"content": content, "type": "tool", "name": name, "tool_call_id": tool_result_id(meta.provider, call_id), "status": "success"}),
                ),
            });
        }
        let (text, tool_calls, finish) = match &conv.answer {
            Answer::Text(t) => (
                t.clone(),
                vec![],
                if meta.provider == Provider::OpenAi {
                    "stop"
                } else {
                    "end_turn"
                },
            ),
            Answer::Tools(calls) => (
                String::new(),
                lc_tool_calls(calls, meta.provider),
                if meta.provider == Provider::OpenAi {
                    "tool_calls"
                } else {
                    "tool_use"
                },
            ),
        };
        let usage = json!({"input_tokens": meta.prompt_tokens, "output_tokens": meta.completion_tokens, "total_tokens": meta.prompt_tokens + meta.completion_tokens});
        let ai = lc_message(
            "AIMessage",
            json!({
                "content": text,
                "additional_kwargs": {},
                "response_metadata": {"finish_reason": finish, "model_name": meta.resp_model},
                "type": "ai",
                "id": format!("run-{}-0", pii::uuid(rng)),
                "tool_calls": tool_calls,
                "usage_metadata": usage,
                "invalid_tool_calls": [],
            }),
        );
        let outputs = json!({
            "generations": [[{"text": text, "generation_info": {"finish_reason": finish}, "type": "ChatGeneration", "message": ai}]],
            "llm_output": {"model_name": meta.resp_model},
            "run": null,
            "type": "LLMResult",
        });
        let (cls, provider, ty) = match meta.provider {
            Provider::OpenAi => ("ChatOpenAI", "openai", "openai-chat"),
            Provider::Anthropic => ("ChatAnthropic", "anthropic", "anthropic-chat"),
        };
        let mut inv = Map::new();
        inv.insert("model".into(), json!(meta.model));
        inv.insert("temperature".into(), json!(conv.temperature));
        inv.insert("max_tokens".into(), json!(conv.max_tokens));
        if !conv.tools.is_empty() {
            inv.insert("tools".into(), Value::Array(oa_tools(conv)));
        }
        inv.insert("_type".into(), json!(ty));
        let extra = json!({
            "invocation_params": inv,
            "options": {"stop": null},
            "metadata": {"ls_provider": provider, "ls_model_name": meta.model, "ls_model_type": "chat", "ls_temperature": conv.temperature},
            "runtime": {"sdk": "langsmith-py", "sdk_version": "0.3.45", "library": "langchain-core"},
        });
        (
            cls,
            json!({"messages": [msgs]}),
            outputs,
            extra,
            "langchain",
        )
    };
    let us = rng.random_range(0..1000u32);
    let v = json!({
        "id": id,
        "name": name,
        "run_type": "llm",
        "start_time": iso_us_naive(meta.ts_ms, us),
        "end_time": iso_us_naive(meta.ts_ms + meta.latency_ms, us),
        "inputs": inputs,
        "outputs": outputs,
        "error": null,
        "extra": extra,
        "parent_run_id": parent,
        "trace_id": trace_id,
        "session_name": meta.app,
        "status": "success",
        "tags": [],
        "prompt_tokens": meta.prompt_tokens,
        "completion_tokens": meta.completion_tokens,
        "total_tokens": meta.prompt_tokens + meta.completion_tokens,
        "total_cost": cost(meta),
    });
    (v, variant)
}

// ---------------------------------------------------------------- OpenTelemetry

fn a_str(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}
fn a_int(k: &str, v: u64) -> Value {
    json!({"key": k, "value": {"intValue": v.to_string()}})
}
fn a_dbl(k: &str, v: f64) -> Value {
    json!({"key": k, "value": {"doubleValue": v}})
}
fn a_arr(k: &str, v: &[&str]) -> Value {
    json!({"key": k, "value": {"arrayValue": {"values": v.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}}})
}

/// The OTel GenAI form a chat span is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtelForm {
    /// `gen_ai.input.messages` / `gen_ai.output.messages` JSON-string attributes.
    Current,
    /// Span events `gen_ai.*.message` / `gen_ai.choice` with `gen_ai.event.content`.
    Events,
    /// OpenLLMetry flattened `gen_ai.prompt.{i}.*` / `gen_ai.completion.{i}.*`.
    Flattened,
}

impl OtelForm {
    pub fn name(self) -> &'static str {
        match self {
            OtelForm::Current => "current",
            OtelForm::Events => "events",
            OtelForm::Flattened => "flattened",
        }
    }
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
    }
}

fn finish_raw(conv: &Conv, p: Provider) -> &'static str {
    match (&conv.answer, p) {
        (Answer::Text(_), Provider::OpenAi) => "stop",
        (Answer::Text(_), Provider::Anthropic) => "end_turn",
        (Answer::Tools(_), Provider::OpenAi) => "tool_calls",
        (Answer::Tools(_), Provider::Anthropic) => "tool_use",
    }
}

fn chat_attrs_current(conv: &Conv, meta: &Meta, rng: &mut R) -> Vec<Value> {
    let p = meta.provider;
    let mut input = Vec::new();
    let system_in_messages = chance(rng, 0.3);
    if system_in_messages {
        input.push(json!({"role": "system", "parts": [{"type": "text", "content": conv.system}]}));
    }
    let result_key = if chance(rng, 0.3) {
        "result"
    } else {
        "response"
    };
    for t in &conv.turns {
        input.push(match t {
            Turn::User(s) => json!({"role": "user", "parts": [{"type": "text", "content": s}]}),
            Turn::Assistant(calls) => json!({"role": "assistant", "parts": calls.iter().map(|c| json!({"type": "tool_call", "id": call_id_for(p, c), "name": c.name, "arguments": c.args})).collect::<Vec<_>>()}),
            Turn::ToolResult { call_id, content, .. } => {
                let mut part = Map::new();
                part.insert("type".into(), json!("tool_call_response"));
                part.insert("id".into(), json!(tool_result_id(p, call_id)));
                part.insert(result_key.into(), json!(content));
                json!({"role": "tool", "parts": [part]})
            }
        });
    }
    let (parts, finish) = match &conv.answer {
        Answer::Text(t) => (vec![json!({"type": "text", "content": t})], "stop"),
        Answer::Tools(calls) => (
            calls.iter().map(|c| json!({"type": "tool_call", "id": call_id_for(p, c), "name": c.name, "arguments": c.args})).collect(),
            "tool_call",
        ),
    };
    let output = json!([{"role": "assistant", "parts": parts, "finish_reason": finish}]);
    let mut attrs = vec![
        a_str("gen_ai.operation.name", "chat"),
        a_str("gen_ai.provider.name", provider_name(p)),
        a_str("gen_ai.request.model", meta.model),
        a_dbl("gen_ai.request.temperature", conv.temperature),
        a_int("gen_ai.request.max_tokens", conv.max_tokens as u64),
        a_str(
            "gen_ai.response.id",
            &format!("chatcmpl-{}", pii::alnum(rng, 29)),
        ),
        a_str("gen_ai.response.model", meta.resp_model),
        a_arr("gen_ai.response.finish_reasons", &[finish_raw(conv, p)]),
        a_int("gen_ai.usage.input_tokens", meta.prompt_tokens),
        a_int("gen_ai.usage.output_tokens", meta.completion_tokens),
        a_str(
            "server.address",
            if p == Provider::OpenAi {
                "api.openai.com"
            } else {
                "api.anthropic.com"
            },
        ),
    ];
    if chance(rng, 0.3) {
        attrs.push(a_str("gen_ai.conversation.id", &pii::uuid(rng)));
    }
    if !system_in_messages {
        attrs.push(a_str(
            "gen_ai.system_instructions",
            &json!([{"type": "text", "content": conv.system}]).to_string(),
        ));
    }
    attrs.push(a_str(
        "gen_ai.input.messages",
        &Value::Array(input).to_string(),
    ));
    attrs.push(a_str("gen_ai.output.messages", &output.to_string()));
    if !conv.tools.is_empty() {
        let defs: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
        attrs.push(a_str(
            "gen_ai.tool.definitions",
            &Value::Array(defs).to_string(),
        ));
    }
    attrs
}

fn event(name: &str, t_ms: i64, system: &str, content: Value) -> Value {
    json!({"timeUnixNano": nanos(t_ms), "name": name, "attributes": [a_str("gen_ai.system", system), a_str("gen_ai.event.content", &content.to_string())]})
}

fn chat_events(conv: &Conv, meta: &Meta) -> (Vec<Value>, Vec<Value>) {
    let p = meta.provider;
    let sys = provider_name(p);
    let oa_calls = |calls: &[TCall]| -> Vec<Value> {
        calls
            .iter()
            .map(|c| json!({"id": call_id_for(p, c), "type": "function", "function": {"name": c.name, "arguments": c.args.to_string()}}))
            .collect()
    };
    let t0 = meta.ts_ms;
    let mut events = vec![event(
        "gen_ai.system.message",
        t0,
        sys,
        json!({"role": "system", "content": conv.system}),
    )];
    for t in &conv.turns {
        events.push(match t {
            Turn::User(s) => event(
                "gen_ai.user.message",
                t0,
                sys,
                json!({"role": "user", "content": s}),
            ),
            Turn::Assistant(calls) => event(
                "gen_ai.assistant.message",
                t0,
                sys,
                json!({"role": "assistant", "tool_calls": oa_calls(calls)}),
            ),
            Turn::ToolResult {
                call_id, content, ..
            } => event(
                "gen_ai.tool.message",
                t0,
                sys,
                json!({"role": "tool", "id": tool_result_id(p, call_id), "content": content}),
            ),
        });
    }
    let message = match &conv.answer {
        Answer::Text(t) => json!({"role": "assistant", "content": t}),
        Answer::Tools(calls) => json!({"role": "assistant", "tool_calls": oa_calls(calls)}),
    };
    events.push(event(
        "gen_ai.choice",
        t0 + meta.latency_ms,
        sys,
        json!({"index": 0, "finish_reason": finish_raw(conv, p), "message": message}),
    ));
    let attrs = vec![
        a_str("gen_ai.operation.name", "chat"),
        a_str("gen_ai.system", sys),
        a_str("gen_ai.request.model", meta.model),
        a_dbl("gen_ai.request.temperature", conv.temperature),
        a_str("gen_ai.response.model", meta.resp_model),
        a_arr("gen_ai.response.finish_reasons", &[finish_raw(conv, p)]),
        a_int("gen_ai.usage.input_tokens", meta.prompt_tokens),
        a_int("gen_ai.usage.output_tokens", meta.completion_tokens),
    ];
    (attrs, events)
}

fn chat_attrs_flattened(conv: &Conv, meta: &Meta) -> Vec<Value> {
    let p = meta.provider;
    let mut a = vec![
        a_str("llm.request.type", "chat"),
        a_str(
            "gen_ai.system",
            if p == Provider::OpenAi {
                "openai"
            } else {
                "Anthropic"
            },
        ),
        a_str("gen_ai.request.model", meta.model),
        a_dbl("gen_ai.request.temperature", conv.temperature),
        a_int("gen_ai.request.max_tokens", conv.max_tokens as u64),
        a_str("gen_ai.response.model", meta.resp_model),
        a_int("gen_ai.usage.prompt_tokens", meta.prompt_tokens),
        a_int("gen_ai.usage.completion_tokens", meta.completion_tokens),
        a_int(
            "llm.usage.total_tokens",
            meta.prompt_tokens + meta.completion_tokens,
        ),
    ];
    for (i, t) in conv.tools.iter().enumerate() {
        a.push(a_str(&format!("llm.request.functions.{i}.name"), t.name));
        a.push(a_str(
            &format!("llm.request.functions.{i}.description"),
            t.description,
        ));
        a.push(a_str(
            &format!("llm.request.functions.{i}.parameters"),
            &t.parameters.to_string(),
        ));
    }
    a.push(a_str("gen_ai.prompt.0.role", "system"));
    a.push(a_str("gen_ai.prompt.0.content", &conv.system));
    for (k, t) in conv.turns.iter().enumerate() {
        let i = k + 1;
        match t {
            Turn::User(s) => {
                a.push(a_str(&format!("gen_ai.prompt.{i}.role"), "user"));
                a.push(a_str(&format!("gen_ai.prompt.{i}.content"), s));
            }
            Turn::Assistant(calls) => {
                a.push(a_str(&format!("gen_ai.prompt.{i}.role"), "assistant"));
                for (j, c) in calls.iter().enumerate() {
                    a.push(a_str(
                        &format!("gen_ai.prompt.{i}.tool_calls.{j}.id"),
                        &call_id_for(p, c),
                    ));
                    a.push(a_str(
                        &format!("gen_ai.prompt.{i}.tool_calls.{j}.name"),
                        c.name,
                    ));
                    a.push(a_str(
                        &format!("gen_ai.prompt.{i}.tool_calls.{j}.arguments"),
                        &c.args.to_string(),
                    ));
                }
            }
            Turn::ToolResult {
                call_id, content, ..
            } => {
                a.push(a_str(&format!("gen_ai.prompt.{i}.role"), "tool"));
                a.push(a_str(&format!("gen_ai.prompt.{i}.content"), content));
                a.push(a_str(
                    &format!("gen_ai.prompt.{i}.tool_call_id"),
                    &tool_result_id(p, call_id),
                ));
            }
        }
    }
    a.push(a_str("gen_ai.completion.0.role", "assistant"));
    a.push(a_str(
        "gen_ai.completion.0.finish_reason",
        finish_raw(conv, p),
    ));
    match &conv.answer {
        Answer::Text(t) => a.push(a_str("gen_ai.completion.0.content", t)),
        Answer::Tools(calls) => {
            for (j, c) in calls.iter().enumerate() {
                a.push(a_str(
                    &format!("gen_ai.completion.0.tool_calls.{j}.id"),
                    &call_id_for(p, c),
                ));
                a.push(a_str(
                    &format!("gen_ai.completion.0.tool_calls.{j}.name"),
                    c.name,
                ));
                a.push(a_str(
                    &format!("gen_ai.completion.0.tool_calls.{j}.arguments"),
                    &c.args.to_string(),
                ));
            }
        }
    }
    a
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    kind: u32,
    start_ms: i64,
    end_ms: i64,
    attrs: Vec<Value>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("traceId".into(), json!(trace));
    m.insert("spanId".into(), json!(id));
    m.insert("parentSpanId".into(), json!(parent));
    m.insert("name".into(), json!(name));
    m.insert("kind".into(), json!(kind));
    m.insert("startTimeUnixNano".into(), json!(nanos(start_ms)));
    m.insert("endTimeUnixNano".into(), json!(nanos(end_ms)));
    m.insert("attributes".into(), Value::Array(attrs));
    m.insert("status".into(), json!({}));
    m
}

/// One `resourceSpans` entry holding one chat span (in `form`) and maybe
/// agent / tool / HTTP spans beside it. Returns the entry, the position of
/// the chat span among the entry's spans (flattened over its scopeSpans)
/// and the entry's span count.
pub fn otel_resource_spans(
    conv: &Conv,
    meta: &Meta,
    form: OtelForm,
    rng: &mut R,
) -> (Value, u32, u32) {
    let trace = pii::hex(rng, 32);
    let chat_id = pii::hex(rng, 16);
    let start = meta.ts_ms;
    let end = meta.ts_ms + meta.latency_ms;
    let resource = json!({"attributes": [
        a_str("service.name", meta.app),
        a_str("service.version", &format!("1.{}.{}", rng.random_range(0..9), rng.random_range(0..20))),
        a_str("deployment.environment.name", "production"),
        a_str("telemetry.sdk.language", "python"),
        a_str("telemetry.sdk.name", "opentelemetry"),
        a_str("telemetry.sdk.version", "1.33.1"),
    ]});
    let (llm_scope, chat_name) = match (form, meta.provider) {
        (OtelForm::Flattened, Provider::OpenAi) => (
            json!({"name": "opentelemetry.instrumentation.openai.v1", "version": "0.40.7"}),
            "openai.chat".to_string(),
        ),
        (OtelForm::Flattened, Provider::Anthropic) => (
            json!({"name": "opentelemetry.instrumentation.anthropic", "version": "0.40.7"}),
            "anthropic.chat".to_string(),
        ),
        (OtelForm::Events, _) => (
            json!({"name": "azure.ai.inference.tracing", "version": "1.0.0b9"}),
            format!("chat {}", meta.model),
        ),
        (OtelForm::Current, Provider::OpenAi) => (
            json!({"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"}),
            format!("chat {}", meta.model),
        ),
        (OtelForm::Current, Provider::Anthropic) => (
            json!({"name": "opentelemetry.instrumentation.anthropic", "version": "0.2b0"}),
            format!("chat {}", meta.model),
        ),
    };
    let layout = rng.random_range(0..10);
    // 0..4: chat span alone; 4..5: HTTP span scope first; 5..7: one agent scope
    // holding everything in end order; 7..10: agent scope then LLM scope.
    let agent = layout >= 5;
    let agent_id = pii::hex(rng, 16);
    let parent = if agent {
        agent_id.clone()
    } else if chance(rng, 0.3) {
        pii::hex(rng, 16)
    } else {
        String::new()
    };
    let mut chat = match form {
        OtelForm::Current => span(
            &trace,
            &chat_id,
            &parent,
            &chat_name,
            3,
            start,
            end,
            chat_attrs_current(conv, meta, rng),
        ),
        OtelForm::Events => {
            let (attrs, events) = chat_events(conv, meta);
            let mut s = span(&trace, &chat_id, &parent, &chat_name, 3, start, end, attrs);
            s.insert("events".into(), Value::Array(events));
            s
        }
        OtelForm::Flattened => span(
            &trace,
            &chat_id,
            &parent,
            &chat_name,
            3,
            start,
            end,
            chat_attrs_flattened(conv, meta),
        ),
    };
    if chance(rng, 0.2) {
        chat.insert("status".into(), json!({"code": 1}));
    }
    let chat = Value::Object(chat);
    let scope_spans;
    let index;
    if !agent {
        if layout == 4 {
            let http = span(
                &trace,
                &pii::hex(rng, 16),
                &chat_id,
                "POST",
                3,
                start + 5,
                end - 5,
                vec![
                    a_str("http.request.method", "POST"),
                    a_str(
                        "url.full",
                        if meta.provider == Provider::OpenAi {
                            "https://api.openai.com/v1/chat/completions"
                        } else {
                            "https://api.anthropic.com/v1/messages"
                        },
                    ),
                    a_int("http.response.status_code", 200),
                ],
            );
            scope_spans = json!([
                {"scope": {"name": "opentelemetry.instrumentation.httpx", "version": "0.54b1"}, "spans": [Value::Object(http)]},
                {"scope": llm_scope, "spans": [chat]},
            ]);
            index = 1;
        } else {
            scope_spans = json!([{"scope": llm_scope, "spans": [chat]}]);
            index = 0;
        }
    } else {
        let agent_name = format!("{}-agent", meta.app);
        let mut tool_spans = Vec::new();
        // Tools executed before this chat call (their results are in the prompt).
        for t in &conv.turns {
            if let Turn::ToolResult { call_id, name, .. } = t {
                tool_spans.push(Value::Object(span(
                    &trace,
                    &pii::hex(rng, 16),
                    &agent_id,
                    &format!("execute_tool {name}"),
                    1,
                    start - 400,
                    start - 50,
                    vec![
                        a_str("gen_ai.operation.name", "execute_tool"),
                        a_str("gen_ai.tool.name", name),
                        a_str(
                            "gen_ai.tool.call.id",
                            &tool_result_id(meta.provider, call_id),
                        ),
                        a_str("gen_ai.tool.type", "function"),
                    ],
                )));
            }
        }
        let root = Value::Object(span(
            &trace,
            &agent_id,
            "",
            &format!("invoke_agent {agent_name}"),
            1,
            start - 1500,
            end + 40,
            vec![
                a_str("gen_ai.operation.name", "invoke_agent"),
                a_str("gen_ai.agent.name", &agent_name),
                a_str("gen_ai.provider.name", provider_name(meta.provider)),
            ],
        ));
        let agent_scope = json!({"name": "agent-framework", "version": "0.9.2"});
        let n_tools = tool_spans.len() as u32;
        if layout < 7 {
            let mut spans = tool_spans;
            spans.push(chat);
            spans.push(root);
            scope_spans = json!([{"scope": agent_scope, "spans": spans}]);
            index = n_tools;
        } else {
            let mut spans = vec![root];
            spans.extend(tool_spans);
            scope_spans = json!([{"scope": agent_scope, "spans": spans}, {"scope": llm_scope, "spans": [chat]}]);
            index = 1 + n_tools;
        }
    }
    let count = scope_spans
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["spans"].as_array().map_or(0, |x| x.len()))
                .sum::<usize>()
        })
        .unwrap_or(0);
    (
        json!({"resource": resource, "scopeSpans": scope_spans}),
        index,
        count as u32,
    )
}

/// Draws the OTel form of a chat span.
pub fn otel_form(rng: &mut R) -> OtelForm {
    match rng.random_range(0..10) {
        0..=5 => OtelForm::Current,
        6..=7 => OtelForm::Events,
        _ => OtelForm::Flattened,
    }
}

/// One OTLP JSON payload holding the given calls, each in its own
/// `resourceSpans` entry. Returns the payload and, per call, the index of
/// its chat span in the flattened list of all spans, and the form used.
pub fn otel_payload(items: &[(&Conv, &Meta)], rng: &mut R) -> (Value, Vec<(u32, OtelForm)>) {
    let mut rs = Vec::new();
    let mut idx = Vec::new();
    let mut offset = 0;
    for (conv, meta) in items {
        let form = otel_form(rng);
        let (entry, local, count) = otel_resource_spans(conv, meta, form, rng);
        rs.push(entry);
        idx.push((offset + local, form));
        offset += count;
    }
    (json!({"resourceSpans": rs}), idx)
}
