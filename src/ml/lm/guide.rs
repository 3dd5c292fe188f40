//! Schema-guided decoding: grammars that only admit well-formed answers,
//! compiled with `llguidance` (the library llama.cpp, vLLM and SGLang use)
//! into a mask over the vocabulary at every step, one matcher per batch row.
//!
//! # What a guided answer may be
//!
//! * **Tool calls** ([`Constraint::Tools`]): one or more
//!   `<tool_call>{"name":…,"arguments":…}</tool_call>` elements separated by
//!   newlines (the convention of [`super::chat`], compact JSON; at most as
//!   many as the workload ever made at once), where `name`
//!   is one of the offered tools and `arguments` follows that tool's JSON
//!   Schema with objects **closed**: an object schema that lists
//!   `properties` and says nothing of `additionalProperties` admits no other
//!   keys (a key the function does not declare is an error, as in OpenAI's
//!   strict mode). With [`ToolChoice::Auto`] and `text` allowed, the answer
//!   may also be plain text, or text then calls; the choice stays the
//!   model's. Text may not contain `<tool_call>` nor a line that starts with
//!   `<` (so a call cannot hide in text). [`ToolChoice::Required`] and
//!   [`ToolChoice::Function`] demand calls (of that function).
//! * **JSON** ([`Constraint::Json`]): one value under the given schema
//!   (the cluster's inferred schema, see [`infer_schema`], or a request's
//!   `response_format`), objects closed as above, compact or with free
//!   whitespace.
//!
//! After a complete answer only a stop token (EOS or end of turn) may follow.
//!
//! Schemas are data from logs: a schema `llguidance` cannot compile (an
//! unsupported keyword, an unsatisfiable or malformed schema) makes
//! [`Guide::start`] fail with the reason, and callers generate that request
//! unconstrained and count it; nothing panics.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{
    InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv,
};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::generate::TokenConstraint;
use super::tokenizer::LmTokenizer;

pub use crate::call::ToolChoice;

/// A grammar for one request's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    Tools {
        /// Offered tools: name and JSON Schema of the arguments.
        tools: Vec<(String, Value)>,
        choice: ToolChoice,
        /// Whether a plain-text answer is allowed (with `Auto`).
        text: bool,
        /// At most this many calls in one answer (`None`: any number).
        max_calls: Option<usize>,
    },
    Json {
        schema: Value,
        /// Compact JSON (no whitespace between tokens) or free whitespace.
        compact: bool,
    },
}

/// Requests decoded free because their constraint could not be compiled:
/// (index, reason).
pub type Fallbacks = Vec<(usize, String)>;

/// The guided-decoding machinery for one tokenizer (built once per model).
pub struct Guide {
    factory: ParserFactory,
    vocab: usize,
}

struct Env {
    trie: TokTrie,
    tok: LmTokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.tok
            .encode(&String::from_utf8_lossy(s))
            .unwrap_or_default()
    }
}

impl Guide {
    /// Builds the token trie of `tok` (a few hundred ms for a 50k vocabulary).
    pub fn new(tok: &LmTokenizer) -> Result<Guide> {
        let words = tok.token_bytes();
        let mut info = TokRxInfo::new(words.len() as u32, tok.eos_id());
        info.tok_bos = tok.bos_id();
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Env {
            trie,
            tok: tok.clone(),
        });
        let mut factory = ParserFactory::new(
            &env,
            InferenceCapabilities::default(),
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )?;
        factory.quiet();
        Ok(Guide {
            factory,
            vocab: words.len(),
        })
    }

    /// Compiles `c` and starts a matcher for one answer; `Err` (with the
    /// reason) when the grammar or a schema is not supported.
    pub fn start(&self, c: &Constraint) -> Result<RowGuide> {
        let grammar = TopLevelGrammar::from_lark(lark_grammar(c)?);
        let parser = self.factory.create_parser(grammar)?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            bail!("{e}")
        }
        Ok(RowGuide {
            matcher,
            eos: self.factory.tok_env().tok_trie().eos_token(),
            vocab: self.vocab,
            broken: false,
        })
    }
}

/// One row's matcher.
pub struct RowGuide {
    matcher: Matcher,
    eos: u32,
    vocab: usize,
    /// The matcher refused a token it had allowed (it should not): the row
    /// ends rather than the whole generation failing.
    broken: bool,
}

impl RowGuide {
    /// Whether the tokens so far form a complete answer.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Advances over `tokens`; `Err` at the first token the grammar refuses.
    pub fn consume(&mut self, tokens: &[u32]) -> Result<()> {
        for &t in tokens {
            self.matcher
                .consume_token(t)
                .map_err(|e| anyhow!("guided decoding: token {t} refused: {e}"))?;
        }
        Ok(())
    }
}

impl TokenConstraint for RowGuide {
    fn mask_logits(&mut self, logits: &mut [f32], stop_ids: &[u32]) -> Result<()> {
        if self.broken {
            logits.fill(f32::NEG_INFINITY);
            return Ok(());
        }
        let mask = match self.matcher.compute_mask_or_eos() {
            Ok(m) => m,
            Err(_) => {
                // A broken matcher admits nothing: the row stops.
                logits.fill(f32::NEG_INFINITY);
                return Ok(());
            }
        };
        let end_ok = mask.is_allowed(self.eos);
        for (i, v) in logits.iter_mut().enumerate() {
            let ok = if stop_ids.contains(&(i as u32)) {
                end_ok
            } else {
                i < self.vocab && mask.is_allowed(i as u32)
            };
            if !ok {
                *v = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn allows(&mut self, token: u32, is_stop: bool) -> Result<bool> {
        if self.broken {
            return Ok(false);
        }
        if is_stop {
            return Ok(self.matcher.is_stopped() || self.is_accepting());
        }
        if token as usize >= self.vocab || self.matcher.is_stopped() {
            return Ok(false);
        }
        Ok(self.matcher.validate_tokens(&[token]).unwrap_or(0) == 1)
    }

    fn accept(&mut self, token: u32) -> Result<()> {
        if self.matcher.consume_token(token).is_err() {
            self.broken = true;
        }
        Ok(())
    }
}

/// Options for the JSON values in a grammar.
fn x_guidance(compact: bool) -> Value {
    json!({"whitespace_flexible": !compact, "item_separator": ",", "key_separator": ":"})
}

/// `schema` with every object closed that lists `properties` without
/// saying whether others are allowed (recursively, through `properties`,
/// `items`, `anyOf`/`oneOf`/`allOf`, `$defs`/`definitions`).
pub fn close_objects(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(pk, pv)| (pk.clone(), close_objects(pv)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" => close_objects(v),
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => match v {
                Value::Array(a) => Value::Array(a.iter().map(close_objects).collect()),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// (name, parameters) of each tool definition: what [`Constraint::Tools`]
/// and [`AnswerShape::constraint`] take.
pub fn tool_pairs(tools: &[crate::call::ToolDef]) -> Vec<(String, Value)> {
    tools
        .iter()
        .map(|t| (t.name.clone(), t.parameters.clone()))
        .collect()
}

/// The arguments schema of a tool as guidance and evaluation read it:
/// closed, and an object of any keys when the log carries none.
pub fn arguments_schema(params: &Value) -> Value {
    match params {
        Value::Object(m) if !m.is_empty() => close_objects(params),
        _ => json!({"type": "object"}),
    }
}

/// The Lark source of `c` (llguidance's dialect, with `%json` rules).
pub fn lark_grammar(c: &Constraint) -> Result<String> {
    match c {
        Constraint::Json { schema, compact } => {
            let mut s = close_objects(schema);
            let Value::Object(m) = &mut s else {
                bail!("a JSON answer schema must be an object")
            };
            m.insert("x-guidance".into(), x_guidance(*compact));
            Ok(format!("start: %json {s}\n"))
        }
        Constraint::Tools {
            tools,
            choice,
            text,
            max_calls,
        } => {
            let offered: Vec<&(String, Value)> = match choice {
                ToolChoice::Function(f) => tools.iter().filter(|t| &t.0 == f).collect(),
                ToolChoice::None => bail!("tool_choice none: no call to guide"),
                _ => tools.iter().collect(),
            };
            if offered.is_empty() {
                bail!(
                    "no tool to call (tool_choice {choice:?}, {} tools)",
                    tools.len()
                )
            }
            let mut g = String::new();
            let with_text = *text && *choice == ToolChoice::Auto;
            if with_text {
                g.push_str("start: TEXT | calls | PREFIX calls\n");
                g.push_str("TEXT: /(?s:.+)/ & ~/(?s:.*(<tool_call>|\\n<).*)/\n");
                g.push_str("PREFIX: /(?s:.+)\\n/ & ~/(?s:.*(<tool_call>|\\n<).*)/\n");
            } else {
                g.push_str("start: calls\n");
            }
            match max_calls {
                None => g.push_str("calls: call (\"\\n\" call)*\n"),
                Some(k) => {
                    g.push_str("calls: call");
                    for _ in 1..(*k).max(1) {
                        g.push_str(" (\"\\n\" call)?");
                    }
                    g.push('\n');
                }
            }
            g.push_str("call: \"<tool_call>\" body \"</tool_call>\"\n");
            let names: Vec<String> = (0..offered.len()).map(|i| format!("f{i}")).collect();
            g.push_str(&format!("body: {}\n", names.join(" | ")));
            for (rule, (name, params)) in names.iter().zip(offered) {
                let obj = json!({
                    "type": "object",
                    "properties": {"name": {"const": name}, "arguments": arguments_schema(params)},
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                    "x-guidance": x_guidance(true),
                });
                g.push_str(&format!("{rule}: %json {obj}\n"));
            }
            Ok(g)
        }
    }
}

/// Whether `value` is valid under `schema` (`None` when the schema cannot
/// be compiled: unsupported or malformed).
pub fn schema_valid(schema: &Value, value: &Value) -> Option<bool> {
    let v = jsonschema::validator_for(schema).ok()?;
    Some(v.is_valid(value))
}

/// A JSON Schema that the answers of one workload share: objects with the
/// keys seen (in first-seen order), those present in every answer
/// `required`, no other keys; arrays of the merged element schema;
/// `integer` where every number is whole; `anyOf` where the kinds differ.
/// No `enum` is inferred (a test call may hold a value training never saw).
pub fn infer_schema(values: &[&Value]) -> Value {
    let kind = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    };
    let mut groups: Vec<(usize, Vec<&Value>)> = Vec::new();
    for v in values {
        let k = kind(v);
        match groups.iter_mut().find(|g| g.0 == k) {
            Some(g) => g.1.push(v),
            None => groups.push((k, vec![v])),
        }
    }
    let mut alts: Vec<Value> = groups.iter().map(|(k, vs)| infer_kind(*k, vs)).collect();
    match alts.len() {
        0 => json!({}),
        1 => alts.remove(0),
        _ => json!({"anyOf": alts}),
    }
}

fn infer_kind(kind: usize, vs: &[&Value]) -> Value {
    match kind {
        0 => json!({"type": "null"}),
        1 => json!({"type": "boolean"}),
        2 => {
            if vs.iter().all(|v| v.is_i64() || v.is_u64()) {
                json!({"type": "integer"})
            } else {
                json!({"type": "number"})
            }
        }
        3 => json!({"type": "string"}),
        4 => {
            let items: Vec<&Value> = vs.iter().filter_map(|v| v.as_array()).flatten().collect();
            if items.is_empty() {
                json!({"type": "array", "maxItems": 0})
            } else {
                json!({"type": "array", "items": infer_schema(&items)})
            }
        }
        _ => {
            let mut keys: Vec<&str> = Vec::new();
            for v in vs {
                for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !keys.contains(&k.as_str()) {
                        keys.push(k);
                    }
                }
            }
            let mut props = Map::new();
            let mut required = Vec::new();
            for k in keys {
                let present: Vec<&Value> = vs.iter().filter_map(|v| v.get(k)).collect();
                if present.len() == vs.len() {
                    required.push(Value::String(k.to_string()));
                }
                props.insert(k.to_string(), infer_schema(&present));
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
    }
}

/// What a workload's answers look like, from its training answers: stored
/// with the adapter (`prompt.json`) so that evaluation, `generate --guided`
/// and serving constrain its requests the same way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerShape {
    pub text_answers: usize,
    pub tool_call_answers: usize,
    pub json_answers: usize,
    /// The most tool calls in one answer (parallel calls).
    #[serde(default)]
    pub max_calls: usize,
    /// The JSON answers' shared schema ([`infer_schema`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// Every JSON answer was written compactly (no whitespace between tokens).
    #[serde(default)]
    pub json_compact: bool,
}

impl AnswerShape {
    /// Counts the answers' kinds and infers the JSON answers' schema.
    pub fn from_answers(answers: &[&crate::call::Response]) -> AnswerShape {
        let mut shape = AnswerShape::default();
        let mut json_values: Vec<(Value, bool)> = Vec::new();
        for a in answers {
            match a.kind() {
                "tool_call" => {
                    shape.tool_call_answers += 1;
                    shape.max_calls = shape.max_calls.max(a.tool_calls.len());
                }
                "json" => {
                    shape.json_answers += 1;
                    let text = a.content.as_deref().unwrap_or("").trim();
                    if let Ok(v) = serde_json::from_str::<Value>(text) {
                        let compact = serde_json::to_string(&v).is_ok_and(|c| c == text);
                        json_values.push((v, compact));
                    }
                }
                _ => shape.text_answers += 1,
            }
        }
        if !json_values.is_empty() {
            let refs: Vec<&Value> = json_values.iter().map(|v| &v.0).collect();
            shape.json_schema = Some(infer_schema(&refs));
            shape.json_compact = json_values.iter().all(|v| v.1);
        }
        shape
    }

    /// The constraint for one request of this workload offering `tools`
    /// (name, parameters) with the request's `demands`:
    /// * a request that demands a call (`required`, a named function) gets
    ///   calls only;
    /// * where the workload calls tools, calls under the tools' schemas, with
    ///   text allowed where it also answers otherwise (`tool_choice: none`
    ///   leaves tools out);
    /// * the request's `response_format` schema, else the workload's JSON
    ///   schema where it answers only in JSON;
    /// * `None` (free text) otherwise.
    pub fn constraint(
        &self,
        tools: &[(String, Value)],
        demands: &crate::call::Demands,
    ) -> Option<Constraint> {
        let choice = demands.tool_choice.clone().unwrap_or(ToolChoice::Auto);
        // As many calls as the workload ever made at once (one when the
        // request forbids parallel calls); any number when it never called.
        let max_calls = match demands.parallel_tool_calls {
            Some(false) => Some(1),
            _ => (self.max_calls > 0).then_some(self.max_calls),
        };
        let mut tools = tools.to_vec();
        tools.sort_by(|a, b| a.0.cmp(&b.0));
        tools.dedup_by(|a, b| a.0 == b.0);
        if !tools.is_empty() {
            match &choice {
                ToolChoice::Required | ToolChoice::Function(_) => {
                    return Some(Constraint::Tools {
                        tools,
                        choice,
                        text: false,
                        max_calls,
                    })
                }
                ToolChoice::Auto if self.tool_call_answers > 0 => {
                    return Some(Constraint::Tools {
                        tools,
                        choice,
                        text: self.text_answers + self.json_answers > 0,
                        max_calls,
                    })
                }
                _ => {}
            }
        }
        let compact = self.json_answers == 0 || self.json_compact;
        if let Some(schema) = &demands.response_schema {
            return Some(Constraint::Json {
                schema: schema.clone(),
                compact,
            });
        }
        if self.json_answers > 0 && self.text_answers == 0 && self.tool_call_answers == 0 {
            return self.json_schema.as_ref().map(|s| Constraint::Json {
                schema: s.clone(),
                compact,
            });
        }
        None
    }
}
