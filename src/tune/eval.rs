//! Evaluation of a tuned adapter against its base model on the held-out test
//! split: same prompts (the exact context the model trains on), greedy
//! decoding, answers parsed with [`crate::ml::lm::parse_reply`], and the metrics
//! of `eval.json` with the counts behind every rate.
//!
//! # Comparison rules
//!
//! * **Text answers**: the generated text and the LLM's answer are equal
//!   after trimming surrounding whitespace (`text_exact`).
//! * **JSON answers** (`response_kind = json`): `json_valid` when the whole
//!   trimmed reply parses as JSON; `json_equal` when it is equal to the LLM's
//!   answer under the value rules below. Both the text and the parsed
//!   comparison are reported; `exact_match` uses the parsed one.
//! * **Tool calls**: `tool_name_accuracy` when the generated calls have the
//!   same multiset of function names as the LLM's; `tool_call_accuracy`
//!   (full call) when, in addition, the calls can be paired one to one with
//!   equal names and equal arguments (order of parallel calls is ignored);
//!   `exact_match` uses the full-call rule; text content next to tool calls
//!   is not compared. `tool_args_valid` when the reply holds at least one
//!   call and every call is well-formed JSON.
//! * **Values** (arguments and JSON answers): objects compare key by key,
//!   ignoring key order; numbers compare by value (`1 == 1.0`, `2e1 == 20`);
//!   strings are equal after trimming surrounding whitespace, case
//!   sensitive; arrays compare element by element, in order; a key missing on
//!   one side equals an explicit `null` on the other.
//! * **Optional arguments** (top level of a tool call): a key missing on one
//!   side also matches when the other side's value is the `default` the
//!   tool's JSON schema declares for it and the key is not `required`. Any
//!   other extra or missing argument is a mismatch, so an optional argument
//!   the LLM set must be reproduced.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::{BatchLimits, Example};
use crate::artifact::adapter::{ModelMetrics, Rate};
use crate::call::{Response, ToolCall};
use crate::ml::lm::generate::{generate_tokens, GenerateOptions, SamplingConfig};
use crate::ml::lm::{parse_reply, FinishReason, LanguageModel, Llama};

// ---------------------------------------------------------------------------
// Comparison rules.

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Equality of two JSON values under the rules in the module docs.
pub fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::String(x), Value::String(y)) => x.trim() == y.trim(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_match(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.iter().all(|(k, v)| match y.get(k) {
                Some(w) => values_match(v, w),
                None => v.is_null(),
            }) && y.iter().all(|(k, w)| x.contains_key(k) || w.is_null())
        }
        _ => false,
    }
}

/// Whether a missing top-level argument `key` is acceptable when the other
/// side holds `value`: `null`, or the schema's default of a non-required key.
fn missing_ok(key: &str, value: &Value, schema: Option<&Value>) -> bool {
    if value.is_null() {
        return true;
    }
    let Some(s) = schema else { return false };
    let required = s
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(key)));
    if required {
        return false;
    }
    s.get("properties")
        .and_then(|p| p.get(key))
        .and_then(|p| p.get("default"))
        .is_some_and(|d| values_match(d, value))
}

/// Equality of two tool calls' arguments (`schema`: the tool's JSON schema).
pub fn arguments_match(expected: &Value, got: &Value, schema: Option<&Value>) -> bool {
    match (expected, got) {
        (Value::Object(x), Value::Object(y)) => {
            x.iter().all(|(k, v)| match y.get(k) {
                Some(w) => values_match(v, w),
                None => missing_ok(k, v, schema),
            }) && y
                .iter()
                .all(|(k, w)| x.contains_key(k) || missing_ok(k, w, schema))
        }
        _ => values_match(expected, got),
    }
}

/// Same name and matching arguments (a call whose arguments did not parse
/// never matches).
pub fn call_matches(expected: &ToolCall, got: &ToolCall, schema: Option<&Value>) -> bool {
    expected.name == got.name
        && got.arguments_valid
        && arguments_match(&expected.arguments, &got.arguments, schema)
}

/// The same multiset of function names.
pub fn names_match(expected: &[ToolCall], got: &[ToolCall]) -> bool {
    let mut a: Vec<&str> = expected.iter().map(|c| c.name.as_str()).collect();
    let mut b: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The calls pair up one to one (any order) under [`call_matches`].
pub fn calls_match(
    expected: &[ToolCall],
    got: &[ToolCall],
    schema_of: &dyn Fn(&str) -> Option<Value>,
) -> bool {
    if expected.len() != got.len() {
        return false;
    }
    fn assign(
        i: usize,
        expected: &[ToolCall],
        got: &[ToolCall],
        used: &mut [bool],
        schema_of: &dyn Fn(&str) -> Option<Value>,
    ) -> bool {
        if i == expected.len() {
            return true;
        }
        let schema = schema_of(&expected[i].name);
        for j in 0..got.len() {
            if !used[j] && call_matches(&expected[i], &got[j], schema.as_ref()) {
                used[j] = true;
                if assign(i + 1, expected, got, used, schema_of) {
                    return true;
                }
                used[j] = false;
            }
        }
        false
    }
    let mut used = vec![false; got.len()];
    assign(0, expected, got, &mut used, schema_of)
}

/// How one generated reply compares with the LLM's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallScore {
    pub kind: String,
    pub exact_match: bool,
    pub text_exact: bool,
    /// JSON answers only.
    pub json_valid: Option<bool>,
    pub json_equal: Option<bool>,
    /// Tool-call answers only.
    pub tool_name: Option<bool>,
    pub tool_call: Option<bool>,
    pub tool_args_valid: Option<bool>,
}

/// Scores a generated reply against the expected answer. `kind` is the
/// expected answer's kind (`tool_call`, `json`, `text`); `rendered` its text
/// in the training convention; `schema_of` gives a tool's JSON schema.
pub fn score_reply(
    expected: &Response,
    kind: &str,
    rendered: &str,
    generated: &str,
    schema_of: &dyn Fn(&str) -> Option<Value>,
) -> CallScore {
    let text_exact = generated.trim() == rendered.trim();
    let mut s = CallScore {
        kind: kind.to_string(),
        text_exact,
        ..Default::default()
    };
    match kind {
        "tool_call" => {
            let parsed = parse_reply(generated);
            let valid = !parsed.tool_calls.is_empty()
                && parsed.issues.is_empty()
                && parsed.tool_calls.iter().all(|c| c.arguments_valid);
            let names = names_match(&expected.tool_calls, &parsed.tool_calls);
            let full = calls_match(&expected.tool_calls, &parsed.tool_calls, schema_of);
            s.tool_args_valid = Some(valid);
            s.tool_name = Some(names);
            s.tool_call = Some(full);
            s.exact_match = full;
        }
        "json" => {
            let want: Option<Value> = expected
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str(c.trim()).ok());
            let got: Option<Value> = serde_json::from_str(generated.trim()).ok();
            let equal = match (&want, &got) {
                (Some(w), Some(g)) => values_match(w, g),
                _ => false,
            };
            s.json_valid = Some(got.is_some());
            s.json_equal = Some(equal);
            s.exact_match = equal;
        }
        _ => s.exact_match = text_exact,
    }
    s
}

// ---------------------------------------------------------------------------
// Metrics.

/// Metrics from per-call scores.
pub fn aggregate(scores: &[CallScore]) -> ModelMetrics {
    ModelMetrics {
        exact_match: Rate::of_outcomes(scores.iter().map(|s| s.exact_match)),
        text_exact: Rate::of_outcomes(scores.iter().map(|s| s.text_exact)),
        json_valid: Rate::of_outcomes(scores.iter().filter_map(|s| s.json_valid)),
        json_equal: Rate::of_outcomes(scores.iter().filter_map(|s| s.json_equal)),
        tool_name_accuracy: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_name)),
        tool_call_accuracy: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_call)),
        tool_args_valid: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_args_valid)),
        ..Default::default()
    }
}

/// One generation pass's outputs.
pub struct Generated {
    pub texts: Vec<String>,
    pub finish: Vec<FinishReason>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

/// Greedy generation for each example's prompt, in chunks of the batch size
/// (longest first), checking `interrupt` between chunks. `None` when
/// interrupted.
pub fn generate_all(
    lm: &LanguageModel,
    model: &Llama,
    examples: &[&Example],
    max_new_tokens: usize,
    batch_size: usize,
    interrupt: &AtomicBool,
) -> Result<Option<Generated>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(examples[i].prompt_len()), i));
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(max_new_tokens.max(1)),
        batch_size: batch_size.max(1),
        ..Default::default()
    };
    let mut texts = vec![String::new(); examples.len()];
    let mut finish = vec![FinishReason::Stop; examples.len()];
    let mut out = Generated {
        texts: Vec::new(),
        finish: Vec::new(),
        prompt_tokens: 0,
        generated_tokens: 0,
        prefill_secs: 0.0,
        decode_secs: 0.0,
    };
    let stop = lm.stop_ids();
    for chunk in order.chunks(batch_size.max(1)) {
        if interrupt.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let prompts: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&i| examples[i].prompt_ids().to_vec())
            .collect();
        let (comps, st) = generate_tokens(model, &prompts, &stop, lm.tokenizer.pad_id(), &opts)?;
        out.prompt_tokens += st.prompt_tokens;
        out.generated_tokens += st.generated_tokens;
        out.prefill_secs += st.prefill_secs;
        out.decode_secs += st.decode_secs;
        for (c, &i) in comps.iter().zip(chunk) {
            texts[i] = lm.tokenizer.decode(&c.tokens, true)?;
            finish[i] = c.finish;
        }
    }
    out.texts = texts;
    out.finish = finish;
    Ok(Some(out))
}

/// Scores and timing figures of one model.
pub fn model_metrics(
    lm: &LanguageModel,
    examples: &[&Example],
    gen: &Generated,
    loss: (f64, usize),
) -> (ModelMetrics, Vec<CallScore>) {
    let scores: Vec<CallScore> = examples
        .iter()
        .zip(&gen.texts)
        .map(|(e, text)| {
            let rendered = lm.chat.render_answer(&e.answer);
            let schema_of = |name: &str| e.tool_params.get(name).cloned();
            score_reply(&e.answer, e.kind, &rendered, text, &schema_of)
        })
        .collect();
    let mut m = aggregate(&scores);
    m.hit_max_tokens = gen
        .finish
        .iter()
        .filter(|f| **f == FinishReason::Length)
        .count();
    if loss.1 > 0 && loss.0.is_finite() {
        m.mean_loss = Some(loss.0);
        m.perplexity = Some(loss.0.exp());
    }
    m.loss_tokens = loss.1;
    m.prompt_tokens = gen.prompt_tokens;
    m.generated_tokens = gen.generated_tokens;
    m.prefill_secs = gen.prefill_secs;
    m.decode_secs = gen.decode_secs;
    m.prefill_tokens_per_sec = gen.prompt_tokens as f64 / gen.prefill_secs.max(1e-9);
    m.decode_tokens_per_sec = gen.generated_tokens as f64 / gen.decode_secs.max(1e-9);
    m.latency_ms_per_call =
        1e3 * (gen.prefill_secs + gen.decode_secs) / examples.len().max(1) as f64;
    (m, scores)
}

/// Limits for loss passes at evaluation time.
pub fn loss_limits(batch_size: usize, batch_tokens: usize) -> BatchLimits {
    BatchLimits {
        max_examples: batch_size.max(1),
        max_tokens: batch_tokens.max(1) * 2,
    }
}
