//! Scoring a generated reply against the LLM's answer: the comparison rules
//! that evaluation (`tune`) and routing calibration (`route`) share.
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
//!   call and every call is well-formed JSON; `tool_schema_valid` when, in
//!   addition, every call names an offered tool and its arguments follow
//!   that tool's JSON Schema with objects closed (a key the schema does not
//!   list is invalid unless it says `additionalProperties`).
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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chat::parse_reply;
use crate::call::{Response, ToolCall};

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
    /// Every call names an offered tool and its arguments follow that
    /// tool's schema, objects closed ([`super::guide::arguments_schema`]).
    #[serde(default)]
    pub tool_schema_valid: Option<bool>,
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
            let schema_ok = valid
                && parsed.tool_calls.iter().all(|c| match schema_of(&c.name) {
                    // A schema the validator cannot compile: well-formed is all we can check.
                    Some(p) => {
                        super::guide::schema_valid(
                            &super::guide::arguments_schema(&p),
                            &c.arguments,
                        ) != Some(false)
                    }
                    None => false,
                });
            s.tool_args_valid = Some(valid);
            s.tool_schema_valid = Some(schema_ok);
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
