//! Ingest: every format (with its nasty variants), every quarantine reason,
//! the counts identity, dedup, determinism, exit codes, the canary
//! end-to-end check that no raw PII reaches any output byte (file and
//! directory names included), and hostile inputs and outputs: byte order
//! marks, symlink loops, a locked or failing output directory, `--out`
//! inside an input, out-of-range options, negative token counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use slmforge::call::{Role, SourceFormat};
use slmforge::ingest::{self, IngestConfig, IngestOutput, KeySource};
use slmforge::redact::RedactKey;

fn cfg() -> IngestConfig {
    let mut c = IngestConfig::new(
        RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        KeySource::File,
    );
    c.progress = false;
    c
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
    p
}

fn run(inputs: &[PathBuf], out: &Path) -> IngestOutput {
    ingest::run(&cfg(), inputs, out).expect("ingest runs")
}

fn assert_identity(out: &IngestOutput) {
    let r = &out.report;
    assert_eq!(
        r.read,
        r.written + r.duplicates + r.quarantined,
        "read = written + duplicates + quarantined"
    );
    for (f, c) in &r.formats {
        assert_eq!(
            c.read,
            c.written + c.duplicates + c.quarantined,
            "identity for format {f}"
        );
    }
    let by_reason: u64 = r.quarantine_reasons.values().sum();
    assert_eq!(by_reason, r.quarantined, "quarantine reasons add up");
}

// ------------------------------------------------------------- fixtures

fn flywheel() -> Value {
    json!({
        "workload_id": "support_triage", "client_id": "helpdesk", "timestamp": 1731000000,
        "request": {"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You triage support tickets."},
            {"role": "user", "content": "Hi, I'm Dana Whitfield, dana.whitfield@example.org. My router keeps dropping."}],
            "tools": [{"type": "function", "function": {"name": "create_ticket", "description": "Open a ticket",
                "parameters": {"type": "object", "properties": {"email": {"type": "string"}, "priority": {"type": "string"}}}}}]},
        "response": {"id": "c1", "object": "chat.completion", "created": 1731000001, "model": "gpt-4o-2024",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "create_ticket",
                    "arguments": "{\"email\": \"dana.whitfield@example.org\", \"priority\": \"high\"}"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}}
    })
}

fn parts_pair() -> Value {
    json!({"request": {"messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Extract invoice fields as JSON."}]},
            {"role": "user", "content": [{"type": "text", "text": "Invoice INV-77 from Acme, total 120.50 EUR"},
                                         {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
           "response": {"choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "{\"invoice\":\"INV-77\",\"total\":120.5}"}]}, "finish_reason": "stop"}]}})
}

fn legacy_functions() -> Value {
    json!({"messages": [{"role": "user", "content": "What's the weather in Lisbon tomorrow?"}],
           "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
           "completion": {"choices": [{"message": {"role": "assistant", "content": null,
               "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\",\"day\":\"tomorrow\"}"}}, "finish_reason": "function_call"}]}})
}

fn anthropic_pair() -> Value {
    json!({"request": {"model": "claude-sonnet-4", "max_tokens": 512,
            "system": [{"type": "text", "text": "You book travel."}],
            "tools": [{"name": "search_flights", "description": "Find flights", "input_schema": {"type": "object"}}],
            "messages": [
              {"role": "user", "content": "Flights from Oslo to Rome on 2025-03-02 please"},
              {"role": "assistant", "content": [{"type": "text", "text": "Searching."},
                  {"type": "tool_use", "id": "tu_1", "name": "search_flights", "input": {"origin": "Oslo", "destination": "Rome"}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "2 flights found"}]},
                                           {"type": "text", "text": "Book the cheapest."}]}]},
           "response": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
              "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                          {"type": "tool_use", "id": "tu_2", "name": "search_flights", "input": {"origin": "Oslo", "destination": "Rome", "cheapest": true}}],
              "stop_reason": "tool_use", "usage": {"input_tokens": 80, "output_tokens": 20}}})
}

fn otel_current() -> Value {
    let input = json!([{"role": "user", "parts": [{"type": "text", "content": "Schedule a call with Priya on Friday 10:00"}]}]).to_string();
    let output = json!([{"role": "assistant", "finish_reason": "tool_call", "parts": [{"type": "tool_call", "id": "t1", "name": "create_event",
        "arguments": {"title": "Call with Priya", "day": "Friday", "time": "10:00"}}]}]).to_string();
    let tools = json!([{"type": "function", "name": "create_event", "description": "Create an event", "parameters": {"type": "object"}}]).to_string();
    json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "calendar-bot"}}]},
        "scopeSpans": [{"scope": {"name": "genai"}, "spans": [
          {"traceId": "a", "spanId": "1", "name": "invoke_agent cal", "startTimeUnixNano": "1731000000000000000", "endTimeUnixNano": "1731000002000000000",
           "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}]},
          {"traceId": "a", "spanId": "2", "parentSpanId": "1", "name": "chat gpt-4o", "startTimeUnixNano": "1731000000500000000", "endTimeUnixNano": "1731000001250000000",
           "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
             {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
             {"key": "gen_ai.system_instructions", "value": {"stringValue": "[{\"type\":\"text\",\"content\":\"You schedule meetings.\"}]"}},
             {"key": "gen_ai.input.messages", "value": {"stringValue": input}},
             {"key": "gen_ai.output.messages", "value": {"stringValue": output}},
             {"key": "gen_ai.tool.definitions", "value": {"stringValue": tools}},
             {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
             {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 9}}]},
          {"traceId": "a", "spanId": "3", "parentSpanId": "1", "name": "execute_tool create_event",
           "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}}]}]}]}]})
}

fn otel_events() -> Value {
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "chat", "startTimeUnixNano": 1731000000000000000u64,
        "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}, {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}}],
        "events": [
          {"name": "gen_ai.system.message", "attributes": [{"key": "content", "value": {"stringValue": "Answer briefly."}}]},
          {"name": "gen_ai.user.message", "attributes": [{"key": "content", "value": {"stringValue": "hello there"}}]},
          {"name": "gen_ai.choice", "attributes": [{"key": "finish_reason", "value": {"stringValue": "stop"}},
              {"key": "message", "value": {"stringValue": "{\"content\":\"Hi! How can I help?\"}"}}]}]}]}]}]})
}

fn otel_flat() -> Value {
    let a = |k: &str, v: Value| json!({"key": k, "value": v});
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "openai.chat", "attributes": [
        a("gen_ai.prompt.0.role", json!({"stringValue": "user"})),
        a("gen_ai.prompt.0.content", json!({"stringValue": "status of order 4412?"})),
        a("gen_ai.completion.0.role", json!({"stringValue": "assistant"})),
        a("gen_ai.completion.0.finish_reason", json!({"stringValue": "tool_calls"})),
        a("gen_ai.completion.0.tool_calls.0.name", json!({"stringValue": "get_order_status"})),
        a("gen_ai.completion.0.tool_calls.0.arguments", json!({"stringValue": "{\"order_id\":\"4412\"}"})),
        a("llm.request.functions.0.name", json!({"stringValue": "get_order_status"})),
        a("gen_ai.usage.prompt_tokens", json!({"intValue": "30"}))]}]}]}]})
}

fn langfuse() -> Vec<Value> {
    vec![
        json!({"id": "o1", "traceId": "t1", "type": "GENERATION", "name": "summarise", "startTime": "2024-11-07T10:00:00.000Z",
               "endTime": "2024-11-07T10:00:01.500Z", "model": "gpt-4o",
               "input": [{"role": "user", "content": "Summarise: the Q3 review moved to Monday."}],
               "output": {"role": "assistant", "content": "The Q3 review is now on Monday."},
               "usageDetails": {"input": 20, "output": 8, "total": 28}, "metadata": {"user_email": "lee.ramos@example.com"}}),
        json!({"id": "o2", "traceId": "t1", "type": "SPAN", "name": "retrieval", "startTime": "2024-11-07T10:00:00.000Z", "input": {}, "output": {}}),
    ]
}

fn helicone() -> Value {
    json!({"request_id": "h1", "request_created_at": "2024-11-07 10:00:00", "request_model": "gpt-4o-mini", "response_status": 200,
           "provider": "OPENAI", "delay_ms": 840, "prompt_tokens": 15, "completion_tokens": 4,
           "request_body": json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Translate 'thanks' to French"}]}).to_string(),
           "response_body": json!({"choices": [{"message": {"role": "assistant", "content": "merci"}, "finish_reason": "stop"}]}).to_string()})
}

fn litellm() -> Value {
    json!({"id": "l1", "trace_id": "t", "call_type": "acompletion", "model": "gpt-4o", "status": "success",
           "messages": [{"role": "user", "content": "SELECT count of users?"}],
           "response": {"choices": [{"message": {"role": "assistant", "content": "SELECT COUNT(*) FROM users;"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7}},
           "model_parameters": {"temperature": 0}, "startTime": 1731000000.25, "endTime": 1731000001.0,
           "prompt_tokens": 11, "completion_tokens": 7, "metadata": {"user_api_key_user_id": "u-881"}})
}

fn langsmith() -> Value {
    json!({"id": "r1", "name": "ChatOpenAI", "run_type": "llm", "start_time": "2024-11-07T10:00:00", "end_time": "2024-11-07T10:00:02",
           "inputs": {"messages": [[
               {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "SystemMessage"], "kwargs": {"content": "Be terse."}},
               {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "capital of Peru?"}}]]},
           "outputs": {"generations": [[{"text": "Lima", "generation_info": {"finish_reason": "stop"},
               "message": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"], "kwargs": {"content": "Lima"}}}]],
                       "llm_output": {"token_usage": {"prompt_tokens": 9, "completion_tokens": 1}, "model_name": "gpt-4o"}},
           "error": null})
}

fn batch_lines() -> Vec<Value> {
    let body = |q: &str| json!({"model": "gpt-4o", "messages": [{"role": "user", "content": q}]});
    let out = |id: &str, a: &str| {
        json!({"id": "b", "custom_id": id, "error": null, "response": {"status_code": 200, "request_id": "r",
        "body": {"choices": [{"message": {"role": "assistant", "content": a}, "finish_reason": "stop"}]}}})
    };
    vec![
        json!({"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": body("one?")}),
        json!({"custom_id": "req-2", "method": "POST", "url": "/v1/chat/completions", "body": body("two?")}),
        out("req-2", "two!"),
        out("req-1", "one!"),
        // unmatched request, failed output, unmatched output
        json!({"custom_id": "req-3", "method": "POST", "url": "/v1/chat/completions", "body": body("three?")}),
        json!({"custom_id": "req-4", "method": "POST", "url": "/v1/chat/completions", "body": body("four?")}),
        json!({"custom_id": "req-4", "response": null, "error": {"code": "server_error", "message": "boom"}}),
        out("req-9", "orphan"),
        // Anthropic Message Batches
        json!({"custom_id": "a-1", "params": {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "ping"}]}}),
        json!({"custom_id": "a-1", "result": {"type": "succeeded", "message": {"type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "pong"}], "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}}}}),
    ]
}

fn stream_chunks() -> Value {
    let c = |delta: Value, finish: Value| json!({"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    json!({"request": {"messages": [{"role": "user", "content": "look up order 99"}]},
           "response": [
               c(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "c", "function": {"name": "get_order_status", "arguments": "{\"order"}}]}), Value::Null),
               c(json!({"tool_calls": [{"index": 0, "function": {"arguments": "_id\": \"99\"}"}}]}), Value::Null),
               c(json!({}), json!("tool_calls"))]})
}

fn all_good_lines() -> Vec<String> {
    let mut v = vec![
        flywheel(),
        parts_pair(),
        legacy_functions(),
        anthropic_pair(),
        otel_current(),
        otel_events(),
        otel_flat(),
    ];
    v.extend(langfuse());
    v.extend([helicone(), litellm(), langsmith(), stream_chunks()]);
    v.extend(batch_lines());
    v.iter().map(|x| x.to_string()).collect()
}

fn find(
    calls: &[slmforge::call::RedactedCall],
    f: SourceFormat,
    pred: impl Fn(&slmforge::call::Call) -> bool,
) -> &slmforge::call::Call {
    calls
        .iter()
        .map(|c| &**c)
        .find(|c| c.source_format == Some(f) && pred(c))
        .unwrap_or_else(|| panic!("no {f} call matched"))
}

// ------------------------------------------------------------- tests

#[test]
fn every_format_normalises() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "mixed.jsonl", &all_good_lines());
    let out = run(&[input], &dir.path().join("out"));
    assert_identity(&out);
    let calls = slmforge::artifact::calls::read_calls(&dir.path().join("out")).unwrap();

    // Flywheel: tool call arguments parsed, email pseudonymised consistently in text and args.
    let c = find(&calls, SourceFormat::OpenaiChat, |c| {
        c.workload_id.as_deref() == Some("support_triage")
    });
    assert_eq!(c.client_id.as_deref(), Some("helpdesk"));
    assert_eq!(c.model.as_deref(), Some("gpt-4o-2024"));
    assert_eq!(c.timestamp_ms, Some(1_731_000_000_000));
    assert_eq!(c.usage.total_tokens, Some(62));
    assert_eq!(c.tools[0].name, "create_ticket");
    let tc = &c.response.tool_calls[0];
    assert_eq!(tc.name, "create_ticket");
    assert_eq!(tc.arguments["priority"], "high");
    let email_ph = tc.arguments["email"].as_str().unwrap();
    assert!(
        email_ph.starts_with("<EMAIL_"),
        "email in args redacted: {email_ph}"
    );
    assert!(
        c.messages[1].content.as_deref().unwrap().contains(email_ph),
        "same placeholder in text and args"
    );
    assert_eq!(c.response.finish_reason.as_deref(), Some("tool_calls"));

    // Content parts, developer role → system.
    let c = find(&calls, SourceFormat::OpenaiChat, |c| {
        c.system_prompt().contains("invoice")
    });
    assert_eq!(c.messages[0].role, Role::System);
    assert!(c.messages[1]
        .content
        .as_deref()
        .unwrap()
        .contains("[image]"));
    assert_eq!(c.response.kind(), "json");

    // Legacy functions / function_call.
    let c = find(&calls, SourceFormat::OpenaiChat, |c| {
        c.tools.iter().any(|t| t.name == "get_weather")
    });
    assert_eq!(c.response.tool_calls[0].arguments["city"], "Lisbon");

    // Anthropic: system blocks, tool_use input object, tool_result → tool message, thinking ignored.
    let c = find(&calls, SourceFormat::Anthropic, |c| !c.tools.is_empty());
    assert_eq!(c.system_prompt(), "You book travel.");
    let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(c.messages[2].tool_calls[0].arguments["origin"], "Oslo");
    assert_eq!(c.messages[3].tool_call_id.as_deref(), Some("tu_1"));
    assert_eq!(c.response.tool_calls[0].arguments["cheapest"], true);
    assert_eq!(c.usage.prompt_tokens, Some(80));
    assert_eq!(c.response.finish_reason.as_deref(), Some("tool_use"));

    // OTel current form: JSON-string attributes, intValue as string, span index, latency.
    let c = find(&calls, SourceFormat::Otel, |c| {
        c.tools.iter().any(|t| t.name == "create_event")
    });
    assert_eq!(
        c.origin.index, 1,
        "the chat span is the second span of the payload"
    );
    assert_eq!(c.client_id.as_deref(), Some("calendar-bot"));
    assert_eq!(c.usage.prompt_tokens, Some(42));
    assert_eq!(c.usage.completion_tokens, Some(9));
    assert_eq!(c.latency_ms, Some(750.0));
    assert_eq!(c.system_prompt(), "You schedule meetings.");
    assert_eq!(c.response.tool_calls[0].arguments["time"], "10:00");
    // OTel events and flattened forms.
    let c = find(&calls, SourceFormat::Otel, |c| {
        c.model.as_deref() == Some("gpt-4o-mini")
    });
    assert_eq!(c.response.content.as_deref(), Some("Hi! How can I help?"));
    assert_eq!(c.messages.len(), 2);
    let c = find(&calls, SourceFormat::Otel, |c| {
        c.called_tools_is("get_order_status")
    });
    assert_eq!(c.response.tool_calls[0].arguments["order_id"], "4412");
    assert_eq!(c.tools[0].name, "get_order_status");

    // Observability exports.
    let c = find(&calls, SourceFormat::Langfuse, |_| true);
    assert_eq!(c.latency_ms, Some(1500.0));
    assert_eq!(c.usage.total_tokens, Some(28));
    assert!(c.metadata["user_email"]
        .as_str()
        .unwrap()
        .starts_with("<EMAIL_"));
    let c = find(&calls, SourceFormat::Helicone, |_| true);
    assert_eq!(c.response.content.as_deref(), Some("merci"));
    assert_eq!(c.latency_ms, Some(840.0));
    let c = find(&calls, SourceFormat::Litellm, |_| true);
    assert_eq!(c.latency_ms, Some(750.0));
    assert_eq!(c.usage.completion_tokens, Some(7));
    let c = find(&calls, SourceFormat::Langsmith, |_| true);
    assert_eq!(c.response.content.as_deref(), Some("Lima"));
    assert_eq!(c.messages[0].role, Role::System);

    // Streamed chunk list reassembled.
    let c = find(&calls, SourceFormat::OpenaiChat, |c| {
        c.called_tools_is("get_order_status")
    });
    assert_eq!(c.response.tool_calls[0].arguments["order_id"], "99");

    // Batch joins: two OpenAI pairs out of order, one Anthropic pair.
    let b = find(&calls, SourceFormat::OpenaiBatch, |c| {
        c.last_user_message() == Some("one?")
    });
    assert_eq!(b.response.content.as_deref(), Some("one!"));
    assert_eq!(b.origin.line, 14, "batch call takes the request line");
    find(&calls, SourceFormat::Anthropic, |c| {
        c.response.content.as_deref() == Some("pong")
    });

    let r = &out.report;
    assert_eq!(r.skipped_non_llm.get("otel_agent_span"), Some(&1));
    assert_eq!(r.skipped_non_llm.get("otel_tool_span"), Some(&1));
    assert_eq!(r.skipped_non_llm.get("langfuse_span"), Some(&1));
    assert_eq!(r.quarantine_reasons.get("batch_missing_response"), Some(&1));
    assert_eq!(r.quarantine_reasons.get("batch_missing_request"), Some(&1));
    assert_eq!(r.quarantine_reasons.get("error_response"), Some(&1));
    assert_eq!(r.quarantined, 3);
    assert_eq!(r.written, 15);
    assert_eq!(r.formats["openai_batch"].written, 2);
}

trait CalledTools {
    fn called_tools_is(&self, name: &str) -> bool;
}
impl CalledTools for slmforge::call::Call {
    fn called_tools_is(&self, name: &str) -> bool {
        self.response
            .tool_calls
            .first()
            .is_some_and(|t| t.name == name)
    }
}

/// Each bad record and the reason it must be quarantined with (one per line).
fn bad_records() -> Vec<(Vec<u8>, &'static str)> {
    let mut deep = String::new();
    for _ in 0..80 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..80 {
        deep.push('}');
    }
    vec![
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"choices": ["#.to_vec(), "invalid_json"),
        (b"{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9 au lait\"}]}".to_vec(), "invalid_utf8"),
        (format!("{{\"messages\": {deep}}}").into_bytes(), "too_deep"),
        (br#"{"foo": 1, "bar": 2}"#.to_vec(), "unknown_format"),
        (br#"{"request": {"messages": "hello"}, "response": {"choices": []}}"#.to_vec(), "wrong_type"),
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}}"#.to_vec(), "missing_response"),
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"error": {"message": "rate limited"}}}"#.to_vec(), "error_response"),
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "h"}}]}}"#.to_vec(), "stream_chunk"),
        (br#"{"request": {"messages": []}, "response": {"choices": [{"message": {"role": "assistant", "content": "x"}}]}}"#.to_vec(), "empty_request"),
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"choices": [{"message": {"role": "assistant", "content": 42}}]}}"#.to_vec(), "wrong_type"),
        (br#"{"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"choices": [{"message": {"role": "assistant", "content": ""}}]}}"#.to_vec(), "empty_response"),
        (br#"{"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}"#.to_vec(), "unsupported_endpoint"),
        (format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}", "x".repeat(3 << 20)).into_bytes(), "too_large"),
    ]
}

#[test]
fn each_bad_input_is_quarantined_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    let records = bad_records();
    for (l, _) in &records {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let mut c = cfg();
    // too_large: the 3 MiB record is over this limit.
    c.max_record_bytes = 1 << 20;
    let out = ingest::run(&c, &[p], &dir.path().join("out")).unwrap();
    assert_identity(&out);
    let r = &out.report;
    assert_eq!(r.read, records.len() as u64);
    assert_eq!(r.written, 0);
    let mut expect: BTreeMap<String, u64> = BTreeMap::new();
    for (_, reason) in &records {
        *expect.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(expect.len(), 12, "every reason is exercised");
    assert_eq!(r.quarantine_reasons, expect);
    let q = ingest::read_quarantine(&dir.path().join("out")).unwrap();
    assert_eq!(q.len(), records.len());
    let lines_seen: Vec<u64> = q.iter().map(|e| e.line).collect();
    assert_eq!(
        lines_seen,
        (1..=records.len() as u64).collect::<Vec<_>>(),
        "quarantine in input order with line numbers"
    );
    for (e, (_, reason)) in q.iter().zip(&records) {
        assert_eq!(e.reason, *reason, "line {}", e.line);
    }
    let too_large = q.iter().find(|e| e.reason == "too_large").unwrap();
    assert!(too_large.content.is_none() && too_large.bytes > 3_000_000);
    let wt = q.iter().find(|e| e.reason == "wrong_type").unwrap();
    assert!(
        wt.detail.contains("request.messages"),
        "detail names the field: {}",
        wt.detail
    );
}

#[test]
fn json_array_gzip_zstd_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("nested")).unwrap();
    // A pretty-printed JSON array of two calls.
    let arr = serde_json::to_string_pretty(&json!([flywheel(), litellm()])).unwrap();
    std::fs::write(logs.join("a.json"), &arr).unwrap();
    // gzip JSONL and zstd JSONL.
    let gz = std::fs::File::create(logs.join("nested/b.jsonl.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
    writeln!(enc, "{}", helicone()).unwrap();
    enc.finish().unwrap();
    let zs = std::fs::File::create(logs.join("nested/c.jsonl.zst")).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(zs, 3).unwrap();
    writeln!(enc, "{}", langsmith()).unwrap();
    enc.finish().unwrap();
    // A single pretty-printed OTLP object, and files that are not logs.
    std::fs::write(
        logs.join("d.json"),
        serde_json::to_string_pretty(&otel_flat()).unwrap(),
    )
    .unwrap();
    std::fs::write(logs.join("notes.txt"), "not a log").unwrap();
    std::fs::write(logs.join("x.labels.jsonl"), "{\"line\":1}\n").unwrap();

    let out = run(std::slice::from_ref(&logs), &dir.path().join("out"));
    assert_identity(&out);
    let r = &out.report;
    assert_eq!(
        r.files.len(),
        4,
        "two json files, gz, zst; txt and labels skipped"
    );
    assert_eq!(r.written, 5);
    assert_eq!(r.quarantined, 0);
    let calls = slmforge::artifact::calls::read_calls(&dir.path().join("out")).unwrap();
    let lite = calls
        .iter()
        .find(|c| c.source_format == Some(SourceFormat::Litellm))
        .unwrap();
    assert_eq!(lite.origin.index, 1, "second element of the array");
    assert!(lite.origin.line > 1, "line of the element's first byte");
}

#[test]
fn truncated_json_array_quarantines_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = format!(
        "[{}, {}, {{\"request\": {{\"messages\"",
        flywheel(),
        helicone()
    );
    let p = dir.path().join("cut.json");
    std::fs::write(&p, s).unwrap();
    let out = run(&[p], &dir.path().join("out"));
    assert_identity(&out);
    assert_eq!(out.report.written, 2);
    assert_eq!(out.report.quarantine_reasons.get("invalid_json"), Some(&1));
}

#[test]
fn corrupt_gzip_is_reported_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    {
        let mut enc = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::default());
        for _ in 0..50 {
            writeln!(enc, "{}", litellm()).unwrap();
        }
        enc.finish().unwrap();
    }
    let cut = bytes.len() * 2 / 3;
    std::fs::write(dir.path().join("a.jsonl.gz"), &bytes[..cut]).unwrap();
    let good = write_lines(dir.path(), "b.jsonl", &[helicone().to_string()]);
    let out = run(
        &[dir.path().join("a.jsonl.gz"), good],
        &dir.path().join("out"),
    );
    assert_identity(&out);
    assert_eq!(
        out.report.quarantine_reasons.get("unreadable_input"),
        Some(&1)
    );
    assert!(
        out.report.formats["helicone"].written == 1,
        "the next file is still read"
    );
}

#[test]
fn duplicates_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = flywheel();
    let line = a.to_string();
    // Same call at another time: still a duplicate (request + response equal).
    a["timestamp"] = json!(1731009999);
    let input = write_lines(
        dir.path(),
        "d.jsonl",
        &[line.clone(), line, a.to_string(), litellm().to_string()],
    );
    let out = run(&[input], &dir.path().join("out"));
    assert_identity(&out);
    assert_eq!(out.report.written, 2);
    assert_eq!(out.report.duplicates, 2);
    assert_eq!(out.report.formats["openai_chat"].duplicates, 2);
}

#[test]
fn forced_format_and_deterministic_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "m.jsonl", &all_good_lines());
    let mut c = cfg();
    c.threads = Some(1);
    ingest::run(&c, std::slice::from_ref(&input), &dir.path().join("o1")).unwrap();
    c.threads = Some(2);
    ingest::run(&c, std::slice::from_ref(&input), &dir.path().join("o2")).unwrap();
    for f in ["calls.parquet", "quarantine.jsonl"] {
        let a = std::fs::read(dir.path().join("o1").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("o2").join(f)).unwrap();
        assert!(a == b, "{f} identical across runs and thread counts");
    }
    // ingest.json too, apart from the output paths it lists.
    let report = |d: &str| {
        let mut v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(d).join("ingest.json")).unwrap())
                .unwrap();
        v.as_object_mut().unwrap().remove("outputs");
        v
    };
    assert_eq!(report("o1"), report("o2"));
    // Forcing a format: records of other formats are quarantined, none lost.
    c.format = Some(SourceFormat::Litellm);
    let out = ingest::run(&c, &[input], &dir.path().join("o3")).unwrap();
    assert_identity(&out);
    assert_eq!(out.report.formats["litellm"].written, 1);
}

const CANARIES: &[&str] = &[
    "zelda.quartermaine@example.net",
    "+1 415 555 0199",
    "4539 1488 0343 6467",
    "GB82WEST12345698765432",
    "078-05-1120",
    "203.0.113.77",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_1A2b3C4d5E6f7G8h9I0jK1l2M3n4O5p6Q7r8",
    "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",
    "Bartholomew Quigley",
];

#[test]
fn canaries_never_reach_any_output_byte() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "Hi, my name is {}. Mail {} or call {}. Card {}, IBAN {}, SSN {}. Server {} key {} token {} openai {}",
        CANARIES[9], CANARIES[0], CANARIES[1], CANARIES[2], CANARIES[3], CANARIES[4], CANARIES[5], CANARIES[6], CANARIES[7], CANARIES[8]
    );
    let args = json!({"email": CANARIES[0], "phone": CANARIES[1], "card": CANARIES[2], "customer_name": CANARIES[9], "note": text}).to_string();
    let good = json!({"request": {"messages": [
            {"role": "system", "content": format!("Operator contact: {}", CANARIES[0])},
            {"role": "user", "content": text},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "lookup", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "1", "content": format!("found {} at {}", CANARIES[9], CANARIES[5])}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": format!("ask {} for help", CANARIES[0]), "parameters": {"type": "object"}}}],
            "metadata": {"user_ip": CANARIES[5], "user_email": CANARIES[0]}},
        "response": {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}});
    let anthropic = json!({"request": {"system": text, "max_tokens": 5, "messages": [{"role": "user", "content": text}]},
        "response": {"type": "message", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {"contact": CANARIES[0], "n": CANARIES[9]}}], "stop_reason": "tool_use"}});
    let lines = vec![
        good.to_string(),
        anthropic.to_string(),
        // Bad records with canaries: their quarantined content must be redacted too.
        format!(
            "{{\"request\": {{\"messages\": [{{\"role\": \"user\", \"content\": \"{text}\"}}]}}"
        ),
        json!({"request": {"messages": [{"role": "user", "content": text}]}}).to_string(),
        json!({"foo": text}).to_string(),
    ];
    let input = write_lines(dir.path(), "canary.jsonl", &lines);
    let outdir = dir.path().join("out");
    let out = run(&[input], &outdir);
    assert_identity(&out);
    assert_eq!(out.report.written, 2);
    assert_eq!(out.report.quarantined, 3);

    let mut haystacks: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&outdir).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        haystacks.push((
            p.display().to_string(),
            String::from_utf8_lossy(&bytes).to_string(),
        ));
    }
    // The parquet file is compressed: check every decoded value too.
    for row in slmforge::artifact::calls::read_rows(&outdir).unwrap() {
        haystacks.push(("calls.parquet (decoded)".into(), format!("{row:?}")));
    }
    for (name, hay) in &haystacks {
        for canary in CANARIES {
            assert!(!hay.contains(canary), "canary leaked into {name}");
            let digits: String = canary.chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() >= 9 {
                assert!(!hay.contains(&digits), "canary digits leaked into {name}");
            }
        }
    }
}

fn bin_ingest(args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::common::bin())
        .arg("ingest")
        .args(args)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .env_remove("SLMFORGE_REDACT_KEY")
        .output()
        .unwrap()
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_lines(dir.path(), "g.jsonl", &[litellm().to_string()]);
    let bad = write_lines(
        dir.path(),
        "b.jsonl",
        &[litellm().to_string(), "{broken".into()],
    );
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();

    let r = bin_ingest(&[good.to_str().unwrap(), "--out", o]);
    assert_eq!(r.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("written"),
        "human summary on stderr: {stderr}"
    );

    let r = bin_ingest(&[bad.to_str().unwrap(), "--out", o]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "quarantine alone does not fail the run"
    );
    let r = bin_ingest(&[bad.to_str().unwrap(), "--out", o, "--strict"]);
    assert_eq!(
        r.status.code(),
        Some(1),
        "--strict fails when anything was quarantined"
    );

    let r = bin_ingest(&["--out", o]);
    assert_eq!(r.status.code(), Some(2), "no input");
    let r = bin_ingest(&[
        dir.path().join("missing.jsonl").to_str().unwrap(),
        "--out",
        o,
    ]);
    assert_eq!(r.status.code(), Some(2), "unreadable path");
    let msg = String::from_utf8_lossy(&r.stderr);
    assert_eq!(msg.trim().lines().count(), 1, "one-line message: {msg}");
    // Output that cannot be created: a path under a regular file.
    let r = bin_ingest(&[
        good.to_str().unwrap(),
        "--out",
        good.join("sub").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2), "output not writable");
    let r = bin_ingest(&[good.to_str().unwrap(), "--out", o, "--format", "nope"]);
    assert_eq!(r.status.code(), Some(2), "bad --format value");
}

/// The bundled sample, end to end: every labelled call is written, every
/// malformed record is quarantined with the matching reason, and no raw
/// email, card number or IBAN of the input survives into any output.
#[test]
fn bundled_sample_matches_its_labels_and_leaks_nothing() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample/calls.jsonl.gz");
    let labels = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample/calls.labels.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let outdir = dir.path().join("out");
    let out = run(std::slice::from_ref(&sample), &outdir);
    assert_identity(&out);

    let mut calls_expected = std::collections::HashSet::new();
    let mut malformed = std::collections::HashMap::new();
    for l in std::fs::read_to_string(&labels).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let line = v["line"].as_u64().unwrap();
        match v.get("malformed") {
            Some(m) => {
                malformed.insert(line, m.as_str().unwrap().to_string());
            }
            None => {
                calls_expected.insert((line, v["index"].as_u64().unwrap() as u32));
            }
        }
    }
    let rows = slmforge::artifact::calls::read_rows(&outdir).unwrap();
    let got: std::collections::HashSet<(u64, u32)> = rows
        .iter()
        .map(|r| (r.source_line, r.source_index))
        .collect();
    assert_eq!(
        got, calls_expected,
        "exactly the labelled calls are written"
    );
    let q = ingest::read_quarantine(&outdir).unwrap();
    assert_eq!(q.len(), malformed.len());
    for e in &q {
        let label = &malformed[&e.line];
        let ok = match label.as_str() {
            "truncated_json" => e.reason == "invalid_json",
            "deep_nesting" => e.reason == "too_deep",
            "oversized_record" => e.reason == "too_large",
            "wrong_types" => e.reason == "wrong_type",
            "streamed_chunk" => e.reason == "stream_chunk" || e.reason == "unknown_format",
            "missing_response" => e.reason.contains("missing_response"),
            other => e.reason == other,
        };
        assert!(ok, "line {}: label {label}, reason {}", e.line, e.reason);
    }

    // Raw values harvested from the input itself.
    let mut raw = String::new();
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&sample).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    raw.push_str(&String::from_utf8_lossy(&bytes));
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
    let iban = regex::Regex::new(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b").unwrap();
    let card = regex::Regex::new(r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b").unwrap();
    let luhn = |d: &str| {
        let digits: Vec<u32> = d.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &x)| {
                if i % 2 == 1 {
                    let y = x * 2;
                    if y > 9 {
                        y - 9
                    } else {
                        y
                    }
                } else {
                    x
                }
            })
            .sum();
        sum.is_multiple_of(10)
    };
    let mut secrets: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    secrets.extend(email.find_iter(&raw).map(|m| m.as_str().to_string()));
    secrets.extend(
        iban.find_iter(&raw)
            .map(|m| m.as_str().to_string())
            .filter(|s| s.len() >= 15),
    );
    secrets.extend(
        card.find_iter(&raw)
            .map(|m| m.as_str().to_string())
            .filter(|s| luhn(s)),
    );
    // Phones and person names of the sales leads: `phone=...;` and
    // `name=...;` form fields in the prompts, and the same values in the
    // LLM's JSON answers (`\"name\":\"Mei Dang\",\"company\"`).
    let phone = regex::Regex::new(r#"phone=([^;]+);|\\"phone\\":\\"([^"\\]+)\\""#).unwrap();
    let person = regex::Regex::new(
        r#"name=([A-Z][a-z]+ [A-Z][a-z]+);|\\"name\\":\\"([A-Z][a-z]+ [A-Z][a-z]+)\\",\\"company"#,
    )
    .unwrap();
    let (n_before, mut n_people) = (secrets.len(), 0);
    for c in phone.captures_iter(&raw).chain(person.captures_iter(&raw)) {
        let v = c.get(1).or(c.get(2)).unwrap().as_str();
        n_people += usize::from(secrets.insert(v.to_string()));
    }
    assert!(
        secrets.len() > 100 && n_people > 50,
        "the sample carries PII to test with ({n_before} emails, IBANs and cards; {n_people} phones and names)"
    );

    let mut hay = String::new();
    for r in &rows {
        hay.push_str(&format!("{r:?}\n"));
    }
    hay.push_str(&std::fs::read_to_string(outdir.join("quarantine.jsonl")).unwrap());
    hay.push_str(&std::fs::read_to_string(outdir.join("ingest.json")).unwrap());
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| hay.contains(s.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} raw values leaked (first shown redacted: {} chars)",
        leaked.len(),
        leaked.first().map(|s| s.len()).unwrap_or(0)
    );
}

// ------------------------------------------------- hostile inputs and outputs

/// Runs the binary with a deadline: a run that does not end in time is
/// killed and the test fails (instead of hanging the suite).
fn bin_ingest_within(args: &[&str], secs: u64) -> std::process::Output {
    let mut child = std::process::Command::new(crate::common::bin())
        .arg("ingest")
        .args(args)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .env_remove("SLMFORGE_REDACT_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ingest {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `ingest.json` as JSON (fields added later read the same way).
fn report_json(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("ingest.json")).unwrap()).unwrap()
}

/// The artifacts of a dataset directory, byte for byte.
fn artifacts(out: &Path) -> Vec<(String, Vec<u8>)> {
    ["calls.parquet", "quarantine.jsonl", "ingest.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap()))
        .collect()
}

/// Names in a directory, sorted (hidden ones included).
fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[test]
fn a_byte_order_mark_at_the_start_of_a_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // JSONL: the first record follows the mark.
    let mut jsonl = BOM.to_vec();
    jsonl.extend(format!("{}\n{}\n", flywheel(), litellm()).into_bytes());
    std::fs::write(logs.join("a.jsonl"), &jsonl).unwrap();
    // A JSON array (the whole file is one value).
    let mut arr = BOM.to_vec();
    arr.extend(
        serde_json::to_string_pretty(&json!([helicone(), langsmith()]))
            .unwrap()
            .into_bytes(),
    );
    std::fs::write(logs.join("b.json"), &arr).unwrap();
    // The mark inside gzip and zstd streams.
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(logs.join("c.jsonl.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(BOM).unwrap();
    writeln!(gz, "{}", parts_pair()).unwrap();
    gz.finish().unwrap();
    let mut zs = zstd::stream::write::Encoder::new(
        std::fs::File::create(logs.join("d.jsonl.zst")).unwrap(),
        3,
    )
    .unwrap();
    zs.write_all(BOM).unwrap();
    writeln!(zs, "{}", legacy_functions()).unwrap();
    zs.finish().unwrap();

    let out = run(std::slice::from_ref(&logs), &dir.path().join("out"));
    assert_identity(&out);
    assert_eq!(
        out.report.quarantine_reasons,
        BTreeMap::new(),
        "nothing quarantined"
    );
    assert_eq!(out.report.written, 6, "every record of every file written");
}

#[cfg(unix)]
#[test]
fn symlink_loops_end_and_each_file_is_read_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("in/logs");
    std::fs::create_dir_all(logs.join("sub")).unwrap();
    write_lines(
        &logs,
        "a.jsonl",
        &[flywheel().to_string(), litellm().to_string()],
    );
    // Two directory loops (the walk would branch without end), a symlink
    // and a hard link to the same file.
    symlink(".", logs.join("sub/self")).unwrap();
    symlink("..", logs.join("sub/parent")).unwrap();
    symlink("a.jsonl", logs.join("b.jsonl")).unwrap();
    std::fs::hard_link(logs.join("a.jsonl"), logs.join("c.jsonl")).unwrap();
    let out = dir.path().join("out");
    let (l, a, o) = (
        logs.to_str().unwrap(),
        logs.join("a.jsonl"),
        out.to_str().unwrap(),
    );
    // The same file named again on the command line.
    let r = bin_ingest_within(&[l, a.to_str().unwrap(), "--out", o], 60);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let rep = report_json(&out);
    assert_eq!(rep["files"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["read"], 2);
    assert_eq!(rep["duplicates"], 0, "the file was read once");
    let reasons: Vec<&str> = rep["skipped_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "symlink_cycle").count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "file_already_read")
            .count(),
        3,
        "symlink, hard link and the repeated argument: {reasons:?}"
    );
}

#[test]
fn a_second_ingest_into_a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "a.jsonl", &[litellm().to_string()]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A stale fixed-name temporary must not matter: names are unique.
    std::fs::create_dir_all(out.join("calls.parquet.partial")).unwrap();
    {
        // Another run holds the directory.
        let lock = std::fs::File::create(out.join(ingest::LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        let e = match ingest::run(&cfg(), std::slice::from_ref(&input), &out) {
            Ok(_) => panic!("ingest ran in a locked directory"),
            Err(e) => e,
        };
        let u = e
            .downcast_ref::<slmforge::util::UsageError>()
            .expect("a usage error");
        assert!(
            u.0.contains(out.to_str().unwrap()),
            "names the directory: {u}"
        );
        let r = bin_ingest(&[input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(2));
        let msg = String::from_utf8_lossy(&r.stderr);
        assert!(
            msg.contains(out.to_str().unwrap()) && msg.contains("another"),
            "clear message: {msg}"
        );
        assert!(!out.join("calls.parquet").exists(), "nothing written");
    }
    // Lock released: the run goes ahead and leaves no temporaries behind.
    let r = run(std::slice::from_ref(&input), &out);
    assert_eq!(r.report.written, 1);
    assert_eq!(
        dir_names(&out),
        [
            ".slmforge-ingest.lock",
            "calls.parquet",
            "calls.parquet.partial",
            "ingest.json",
            "quarantine.jsonl"
        ]
    );
}

fn disk_full_at_quarantine(name: &str) -> std::io::Result<()> {
    match name {
        "quarantine.jsonl" => Err(std::io::Error::from_raw_os_error(28)),
        _ => Ok(()),
    }
}

fn disk_full_at_report(name: &str) -> std::io::Result<()> {
    match name {
        "ingest.json" => Err(std::io::Error::from_raw_os_error(28)),
        _ => Ok(()),
    }
}

#[test]
fn a_failed_write_leaves_the_previous_run_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_lines(
        dir.path(),
        "old.jsonl",
        &[litellm().to_string(), "{x".into()],
    );
    let new = write_lines(
        dir.path(),
        "new.jsonl",
        &[helicone().to_string(), flywheel().to_string(), "[1".into()],
    );
    let out = dir.path().join("out");
    run(std::slice::from_ref(&old), &out);
    let before = artifacts(&out);
    let listing = dir_names(&out);
    for hook in [disk_full_at_quarantine, disk_full_at_report] {
        let mut c = cfg();
        c.write_hook = Some(hook);
        let e = match ingest::run(&c, std::slice::from_ref(&new), &out) {
            Ok(_) => panic!("the injected failure was ignored"),
            Err(e) => e,
        };
        let f = e
            .downcast_ref::<slmforge::util::IoFailure>()
            .expect("an I/O failure");
        assert!(f.0.contains(out.to_str().unwrap()), "{f}");
        assert!(artifacts(&out) == before, "the previous run is untouched");
        assert_eq!(dir_names(&out), listing, "no temporaries left: {f}");
    }
    // A failed first run leaves no directory behind.
    let mut c = cfg();
    c.write_hook = Some(disk_full_at_report);
    let fresh = dir.path().join("fresh");
    assert!(ingest::run(&c, std::slice::from_ref(&new), &fresh).is_err());
    assert!(!fresh.exists());

    // The binary: an output that cannot be moved into place exits 74 and
    // keeps the previous artifacts.
    std::fs::remove_file(out.join("ingest.json")).unwrap();
    std::fs::create_dir_all(out.join("ingest.json/blocked")).unwrap();
    let r = bin_ingest(&[new.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(74), "{msg}");
    assert!(
        msg.contains(out.to_str().unwrap()),
        "names the directory: {msg}"
    );
    for (name, bytes) in &before[..2] {
        assert!(
            std::fs::read(out.join(name)).unwrap() == *bytes,
            "{name} of the previous run kept"
        );
    }
    assert!(
        !dir_names(&out)
            .iter()
            .any(|n| n.contains("tmp") || n.contains("partial")),
        "no temporaries left: {:?}",
        dir_names(&out)
    );
    // Once the directory is usable again, the new run replaces the old.
    std::fs::remove_dir_all(out.join("ingest.json")).unwrap();
    let r = run(std::slice::from_ref(&new), &out);
    assert_eq!((r.report.written, r.report.quarantined), (2, 1));
}

#[test]
fn an_output_directory_inside_an_input_directory_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_lines(&data, "a.jsonl", &[litellm().to_string(), "{broken".into()]);
    let out = data.join("out");
    let first = run(std::slice::from_ref(&data), &out);
    let first_json = report_json(&out);
    // Again: the previous run's quarantine.jsonl and ingest.json are not inputs.
    let second = run(std::slice::from_ref(&data), &out);
    assert_identity(&second);
    assert_eq!(
        (second.report.read, second.report.quarantined),
        (first.report.read, first.report.quarantined)
    );
    assert_eq!((second.report.read, second.report.files.len()), (2, 1));
    let second_json = report_json(&out);
    assert_eq!(first_json, second_json, "same inputs, same report");
    let skipped = &second_json["skipped_inputs"];
    assert_eq!(skipped.as_array().map(Vec::len), Some(1), "{second_json}");
    assert_eq!(skipped[0]["reason"], "output_directory");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("out"));
    // The output directory itself as the input: refused.
    let e = match ingest::run(&cfg(), std::slice::from_ref(&out), &out) {
        Ok(_) => panic!("read its own output directory"),
        Err(e) => e,
    };
    assert!(
        e.downcast_ref::<slmforge::util::UsageError>().is_some(),
        "{e}"
    );
}

#[test]
fn max_record_mb_out_of_range_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_lines(dir.path(), "g.jsonl", &[litellm().to_string()]);
    let out = dir.path().join("out");
    for bad in ["17592186044416", "0", "4097", "-1"] {
        let r = bin_ingest(&[
            good.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            &format!("--max-record-mb={bad}"),
        ]);
        assert_eq!(r.status.code(), Some(2), "--max-record-mb {bad}");
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("max-record-mb"),
            "the message names the option"
        );
        assert!(!out.exists(), "nothing written for {bad}");
    }
    let r = bin_ingest(&[
        good.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-record-mb",
        "4096",
    ]);
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(report_json(&out)["written"], 1);
}

#[test]
fn negative_token_counts_are_counted_and_the_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = flywheel();
    a["response"]["usage"] =
        json!({"prompt_tokens": -50, "completion_tokens": 12, "total_tokens": -38});
    let mut b = litellm();
    b["response"]["usage"] = json!({"prompt_tokens": 11, "completion_tokens": "-7"});
    b["completion_tokens"] = json!(-7);
    let mut otel = otel_current().to_string();
    otel = otel.replace(
        r#"{"key":"gen_ai.usage.input_tokens","value":{"intValue":"42"}}"#,
        r#"{"key":"gen_ai.usage.input_tokens","value":{"intValue":"-42"}}"#,
    );
    assert!(otel.contains("-42"));
    let input = write_lines(
        dir.path(),
        "neg.jsonl",
        &[a.to_string(), b.to_string(), otel],
    );
    let outdir = dir.path().join("out");
    let out = run(&[input], &outdir);
    assert_identity(&out);
    assert_eq!((out.report.written, out.report.quarantined), (3, 0), "kept");
    let rep = report_json(&outdir);
    assert_eq!(
        rep["data_quality"],
        json!({"negative_prompt_tokens": 2, "negative_completion_tokens": 1, "negative_total_tokens": 1}),
        "{rep}"
    );
    let calls = slmforge::artifact::calls::read_calls(&outdir).unwrap();
    let c = find(&calls, SourceFormat::OpenaiChat, |_| true);
    assert_eq!(c.usage.prompt_tokens, None);
    assert_eq!(c.usage.completion_tokens, Some(12));
}

#[test]
fn paths_are_redacted_wherever_they_are_written_or_printed() {
    const EMAIL: &str = "carol.baker@example.com";
    const NAME: &str = "Carol Jones";
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("exports").join(EMAIL).join(NAME);
    std::fs::create_dir_all(&logs).unwrap();
    let input = write_lines(
        &logs,
        "calls.jsonl",
        &[litellm().to_string(), "{broken".into()],
    );
    let outdir = dir.path().join("datasets").join(EMAIL);
    let r = bin_ingest(&[
        dir.path().join("exports").to_str().unwrap(),
        input.to_str().unwrap(),
        "--out",
        outdir.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0));
    let mut hay = vec![(
        "stderr".to_string(),
        String::from_utf8_lossy(&r.stderr).to_string(),
    )];
    for entry in std::fs::read_dir(&outdir).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        hay.push((
            p.file_name().unwrap().to_string_lossy().to_string(),
            String::from_utf8_lossy(&bytes).to_string(),
        ));
    }
    let rows = slmforge::artifact::calls::read_rows(&outdir).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].source_file.contains("<EMAIL_") && rows[0].source_file.contains("<PERSON_"),
        "source_file redacted: {}",
        rows[0].source_file
    );
    hay.push(("calls.parquet (decoded)".into(), format!("{:?}", rows)));
    // An error message naming such a path.
    let missing = logs.join("missing.jsonl");
    let r = bin_ingest(&[missing.to_str().unwrap(), "--out", outdir.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    hay.push((
        "error".into(),
        String::from_utf8_lossy(&r.stderr).to_string(),
    ));
    assert!(hay.iter().any(|(n, _)| n == "quarantine.jsonl"));
    for (name, text) in &hay {
        for raw in [EMAIL, NAME] {
            assert!(!text.contains(raw), "{raw:?} leaked into {name}: {text}");
        }
    }
}
