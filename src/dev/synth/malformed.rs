//! Malformed records for `slmforge synth`: the broken lines real log files
//! contain (truncated JSON, invalid UTF-8, missing or error responses,
//! streamed chunks, wrong types, absurd nesting, oversized lines), each
//! built from a real-looking record and labelled with a snake_case reason.

use rand::Rng;
use serde_json::{json, Value};

use super::formats::{self, Meta, OaStyle};
use super::pii::{self, pick, R};
use super::workloads::{Conv, Turn};

/// Reasons, in the order they are cycled through.
pub const REASONS: [&str; 7] = [
    "truncated_json",
    "invalid_utf8",
    "missing_response",
    "error_response",
    "streamed_chunk",
    "wrong_types",
    "deep_nesting",
];

/// The > 8 MiB line, only produced when 100 or more malformed records are
/// asked for.
pub const OVERSIZED: &str = "oversized_record";

/// Size of the user message of the oversized record.
const OVERSIZED_BYTES: usize = 8 * 1024 * 1024 + 512 * 1024;

/// One malformed record: its lines (the label points at the first) and reason.
pub struct Malformed {
    pub lines: Vec<Vec<u8>>,
    pub reason: &'static str,
}

fn line(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialising a JSON value cannot fail")
}

fn user_text(conv: &Conv) -> &str {
    conv.turns
        .iter()
        .find_map(|t| match t {
            Turn::User(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// A valid single-line record of a random format (used as raw material).
fn any_record(conv: &Conv, m: &Metas, rng: &mut R) -> Value {
    let either = m.either;
    match rng.random_range(0..7) {
        0 => formats::anthropic(conv, m.anthropic, rng).0,
        1 => formats::langfuse(conv, either, rng).0,
        2 => formats::helicone(conv, either, rng).0,
        3 => formats::litellm(conv, either, rng).0,
        4 => formats::langsmith(conv, either, rng).0,
        5 => formats::otel_payload(&[(conv, either)], rng).0,
        _ => formats::openai_chat(conv, m.openai, rng).0,
    }
}

/// The call's meta data for each provider, so every shape names a model
/// of the API it imitates.
pub struct Metas<'a> {
    pub openai: &'a Meta,
    pub anthropic: &'a Meta,
    /// For formats that log either provider.
    pub either: &'a Meta,
}

fn flywheel(conv: &Conv, meta: &Meta, request: Value, response: Option<Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("workload_id".into(), json!(conv.workload));
    m.insert("client_id".into(), json!(meta.app));
    m.insert("timestamp".into(), json!(meta.ts_ms / 1000));
    m.insert("request".into(), request);
    if let Some(r) = response {
        m.insert("response".into(), r);
    }
    Value::Object(m)
}

/// Builds one malformed record of the given reason from `conv`.
pub fn build(reason: &'static str, conv: &Conv, metas: &Metas, rng: &mut R) -> Malformed {
    let style = OaStyle::plain();
    let meta = metas.openai;
    let lines = match reason {
        "truncated_json" => {
            let full = line(&any_record(conv, metas, rng));
            let mut cut = full.len() * rng.random_range(20..90) / 100;
            while cut > 1 && (full[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            vec![full[..cut.max(1)].to_vec()]
        }
        "invalid_utf8" => {
            let full = line(&any_record(conv, metas, rng));
            let needle = serde_json::to_string(user_text(conv)).unwrap_or_default();
            let needle = needle.trim_matches('"').as_bytes();
            let probe = &needle[..needle.len().min(12)];
            let at = memchr::memmem::find(&full, probe)
                .map(|p| p + probe.len() / 2)
                .unwrap_or(full.len() / 2);
            let mut at = at.min(full.len() - 1);
            while at > 0 && (full[at] & 0xC0) == 0x80 {
                at -= 1;
            }
            let choices: [&[u8]; 4] = [b"\xff\xfe", b"\xc3\x28", b"\xe2\x82", b"\x80"];
            let bad = *pick(rng, &choices);
            let mut out = full[..at].to_vec();
            out.extend_from_slice(bad);
            out.extend_from_slice(&full[at..]);
            vec![out]
        }
        "missing_response" => match rng.random_range(0..5) {
            0 => vec![line(&flywheel(
                conv,
                meta,
                formats::oa_request(conv, meta, style, rng),
                None,
            ))],
            1 => vec![line(
                &json!({"request": formats::oa_request(conv, meta, style, rng), "response": null}),
            )],
            2 => vec![line(
                &json!({"request": formats::an_request(conv, metas.anthropic, false, rng)}),
            )],
            3 => {
                // A Batch API input whose output never arrives.
                let (input, _, _) =
                    formats::openai_batch(conv, meta, 900_000 + rng.random_range(0..99_999), rng);
                vec![line(&input)]
            }
            _ => {
                let (mut v, _) = formats::langfuse(conv, metas.either, rng);
                v["output"] = Value::Null;
                v["endTime"] = Value::Null;
                vec![line(&v)]
            }
        },
        "error_response" => match rng.random_range(0..6) {
            0 => {
                let err = json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}});
                vec![line(&flywheel(
                    conv,
                    meta,
                    formats::oa_request(conv, meta, style, rng),
                    Some(err),
                ))]
            }
            1 => {
                let (input, mut output, _) =
                    formats::openai_batch(conv, meta, 900_000 + rng.random_range(0..99_999), rng);
                output["response"]["status_code"] = json!(500);
                output["response"]["body"] = json!({"error": {"message": "The server had an error processing your request.", "type": "server_error"}});
                vec![line(&input), line(&output)]
            }
            2 => {
                let (mut v, _) = formats::helicone(conv, metas.either, rng);
                v["response_status"] = json!(500);
                v["response_body"] =
                    json!({"error": {"message": "Internal server error", "type": "server_error"}});
                vec![line(&v)]
            }
            3 => vec![line(&json!({
                "custom_id": format!("msgbatch-req-{}", rng.random_range(1..99_999)),
                "result": {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
            }))],
            4 => {
                let (mut v, _) = formats::litellm(conv, metas.either, rng);
                v["status"] = json!("failure");
                v["response"] = json!({});
                v["error_str"] = json!("litellm.RateLimitError: Rate limit reached for requests");
                v["error_information"] =
                    json!({"error_code": "429", "error_class": "RateLimitError"});
                vec![line(&v)]
            }
            _ => {
                let (mut v, _) = formats::langsmith(conv, metas.either, rng);
                v["error"] = json!("APIConnectionError('Connection error.')");
                v["outputs"] = Value::Null;
                v["status"] = json!("error");
                vec![line(&v)]
            }
        },
        "streamed_chunk" => {
            let chunk = json!({
                "id": format!("chatcmpl-{}", pii::alnum(rng, 29)),
                "object": "chat.completion.chunk",
                "created": meta.ts_ms / 1000,
                "model": meta.resp_model,
                "system_fingerprint": format!("fp_{}", pii::hex(rng, 10)),
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}],
            });
            if rng.random_bool(0.5) {
                vec![line(&chunk)]
            } else {
                let mut req = formats::oa_request(conv, meta, style, rng);
                req["stream"] = json!(true);
                vec![line(&flywheel(conv, meta, req, Some(chunk)))]
            }
        }
        "wrong_types" => {
            let mut req = formats::oa_request(conv, meta, style, rng);
            let resp = formats::oa_completion(conv, meta, false, rng);
            match rng.random_range(0..4) {
                0 => req["messages"] = json!(user_text(conv)),
                1 => req["messages"][1]["content"] = json!(rng.random_range(1..1_000_000)),
                2 => req["messages"] = json!({"role": "user", "content": user_text(conv)}),
                _ => req["messages"][0]["role"] = json!(7),
            }
            vec![line(&flywheel(conv, meta, req, Some(resp)))]
        }
        "deep_nesting" => {
            let depth = *pick(rng, &[110usize, 150, 300]);
            let mut nested = json!("x");
            for _ in 0..depth {
                nested = json!([nested]);
            }
            let mut req = formats::oa_request(conv, meta, style, rng);
            req["metadata"] = json!({"trace": nested});
            let resp = formats::oa_completion(conv, meta, false, rng);
            // serde_json's own writer handles any depth; only readers limit it.
            vec![line(&flywheel(conv, meta, req, Some(resp)))]
        }
        _ => {
            // oversized_record: a pasted log dump as the user message.
            let mut big = String::with_capacity(OVERSIZED_BYTES + 128);
            let mut i = 0u64;
            while big.len() < OVERSIZED_BYTES {
                big.push_str(&format!(
                    "2025-03-04T10:{:02}:{:02}Z INFO worker-{} processed batch {} in {} ms\n",
                    (i / 60) % 60,
                    i % 60,
                    i % 16,
                    i,
                    10 + i % 250
                ));
                i += 1;
            }
            let mut req = formats::oa_request(conv, meta, style, rng);
            req["messages"][1]["content"] = json!(format!("Why is this job slow? Log:\n{big}"));
            let resp = formats::oa_completion(conv, meta, false, rng);
            vec![line(&flywheel(conv, meta, req, Some(resp)))]
        }
    };
    Malformed { lines, reason }
}
