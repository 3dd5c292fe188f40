//! Per-call features for clustering: the task text (system prompt and last
//! user request, placeholders normalised, truncated) that gets embedded, the
//! tools offered and called (TF-IDF over a tool-name vocabulary), the
//! response kind, the keys of a JSON answer (its schema, TF-IDF) and an
//! output-length bucket, laid out in one weighted vector. [`FeatureSpec`] is
//! fitted on a set of calls and serialisable, so whoever stores it (the
//! cluster stage does) can featurise a new call the same way later.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::call::Call;

/// How much each part of the feature vector counts. Every block is scaled
/// so that two calls differing only in that block are `weight` apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeights {
    /// Embedding of the system prompt.
    pub system: f32,
    /// Embedding of the last user message.
    pub user: f32,
    /// TF-IDF of the tool names offered to the model.
    pub tools_offered: f32,
    /// TF-IDF of the tool names the response called.
    pub tools_called: f32,
    /// Response kind: tool call, JSON or free text.
    pub response_kind: f32,
    /// TF-IDF of the top-level keys of a JSON answer (its output schema).
    #[serde(default)]
    pub json_keys: f32,
    /// Output-length bucket.
    pub length: f32,
}

impl Default for FeatureWeights {
    fn default() -> Self {
        FeatureWeights {
            system: 1.0,
            user: 1.0,
            tools_offered: 0.6,
            tools_called: 0.3,
            response_kind: 0.3,
            json_keys: 0.5,
            length: 0.2,
        }
    }
}

impl FeatureWeights {
    /// Parses `name=value` pairs (`system`, `user`, `tools_offered`,
    /// `tools_called`, `response_kind`, `json_keys`, `length`) over the
    /// defaults.
    pub fn parse_overrides(mut self, pairs: &[String]) -> Result<FeatureWeights, String> {
        for p in pairs {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--weight {p:?}: expected NAME=VALUE"))?;
            let v: f32 = v
                .trim()
                .parse()
                .ok()
                .filter(|x: &f32| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("--weight {p:?}: the value must be a number >= 0"))?;
            match k.trim() {
                "system" => self.system = v,
                "user" => self.user = v,
                "tools_offered" => self.tools_offered = v,
                "tools_called" => self.tools_called = v,
                "response_kind" => self.response_kind = v,
                "json_keys" => self.json_keys = v,
                "length" => self.length = v,
                other => {
                    return Err(format!(
                        "--weight: unknown part {other:?} (known: system, user, tools_offered, tools_called, response_kind, json_keys, length)"
                    ))
                }
            }
        }
        Ok(self)
    }
}

/// How the task texts are cut before embedding (in characters, at a word
/// boundary where one is near). About 4 characters make a token, so the
/// defaults keep roughly the first 128 tokens of the user's request and the
/// first 256 (the embedder's own limit) of the system prompt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextLimits {
    pub system_chars: usize,
    pub user_chars: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        TextLimits {
            system_chars: 1000,
            user_chars: 500,
        }
    }
}

/// Response kinds, in the order of the one-hot block.
pub const KINDS: [&str; 3] = ["tool_call", "json", "text"];

/// Upper bounds (exclusive) of the completion-token buckets; one more bucket
/// holds everything longer.
pub const LENGTH_BUCKETS: [u64; 4] = [16, 64, 256, 1024];

/// Most tool names kept in the vocabulary (by document frequency); rarer
/// names are ignored.
pub const MAX_TOOL_VOCAB: usize = 512;

/// One named part of the feature vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub name: String,
    pub offset: usize,
    pub len: usize,
    /// Part of the request (known before the model answers), as opposed to
    /// the response. Routing a new request uses the request blocks only.
    pub request: bool,
}

/// Everything needed to turn a call into its feature vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub weights: FeatureWeights,
    pub text: TextLimits,
    /// Placeholder numbering removed before embedding (`<EMAIL_12>` -> `<EMAIL>`).
    pub normalise_placeholders: bool,
    pub embed_dim: usize,
    /// Tool names (the most frequent, up to [`MAX_TOOL_VOCAB`]), sorted.
    pub tool_vocab: Vec<String>,
    /// Smoothed IDF of each vocabulary name among offered tool sets.
    pub tool_idf_offered: Vec<f32>,
    /// Smoothed IDF of each vocabulary name among called tool sets.
    pub tool_idf_called: Vec<f32>,
    /// Top-level keys of JSON answers (the most frequent, up to
    /// [`MAX_TOOL_VOCAB`]), sorted.
    #[serde(default)]
    pub json_key_vocab: Vec<String>,
    /// Smoothed IDF of each JSON key.
    #[serde(default)]
    pub json_key_idf: Vec<f32>,
    pub response_kinds: Vec<String>,
    /// Completion-token bucket bounds (exclusive upper bounds).
    pub length_buckets: Vec<u64>,
    pub dims: usize,
    pub blocks: Vec<Block>,
}

/// What clustering needs from one call, extracted once.
#[derive(Clone, Debug)]
pub struct CallFacts {
    /// Normalised, truncated system prompt (empty when there is none).
    pub system: String,
    /// Normalised, truncated last user message (empty when there is none).
    pub user: String,
    /// Offered tool names, sorted, distinct.
    pub offered: Vec<String>,
    /// Called tool names, sorted, distinct.
    pub called: Vec<String>,
    /// Top-level keys of a JSON answer (of its first element when it is an
    /// array of objects), sorted, distinct.
    pub json_keys: Vec<String>,
    /// Index into [`KINDS`]; `None` when the call has no response.
    pub kind: Option<usize>,
    /// The last message is a tool result (the call is a step of an agent
    /// loop: its answer acts on what a tool returned).
    pub after_tool: bool,
    pub prompt_tokens: u64,
    pub prompt_logged: bool,
    pub completion_tokens: u64,
    pub completion_logged: bool,
    pub workload_id: Option<String>,
}

/// What a call's answer does, the first split of clustering: calls in
/// different classes never share a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerClass {
    /// Acts in an agent loop: calls a tool, or answers in text from a tool
    /// result (the final step of the same loop).
    Act,
    /// Answers a user turn in text without calling a tool: refusals,
    /// clarifying questions, free-text tasks.
    Text,
    /// A JSON answer.
    Json,
    /// No response logged.
    None,
}

impl AnswerClass {
    pub const ALL: [AnswerClass; 4] = [
        AnswerClass::Act,
        AnswerClass::Text,
        AnswerClass::Json,
        AnswerClass::None,
    ];

    pub fn of(f: &CallFacts) -> AnswerClass {
        match f.kind {
            Some(0) => AnswerClass::Act,
            Some(1) => AnswerClass::Json,
            Some(_) if f.after_tool => AnswerClass::Act,
            Some(_) => AnswerClass::Text,
            None => AnswerClass::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AnswerClass::Act => "act",
            AnswerClass::Text => "text",
            AnswerClass::Json => "json",
            AnswerClass::None => "none",
        }
    }
}

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<([A-Z][A-Z_]*[A-Z])_[0-9]+>").expect("valid regex"));

/// `<EMAIL_12>` -> `<EMAIL>`, so pseudonym numbering does not split clusters.
pub fn normalise_placeholders(text: &str) -> std::borrow::Cow<'_, str> {
    PLACEHOLDER.replace_all(text, "<$1>")
}

/// Whitespace runs collapsed to one space, trimmed, cut to at most
/// `max_chars` characters: after the last whole word that fits, or inside the
/// next word when stopping there would keep less than four fifths.
pub fn clean_and_truncate(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut n = 0;
    for word in text.split_whitespace() {
        let sep = usize::from(!out.is_empty());
        let len = word.chars().count();
        if n + sep + len > max_chars {
            let room = max_chars.saturating_sub(n + sep);
            if n * 5 < max_chars * 4 && room > 0 {
                if sep == 1 {
                    out.push(' ');
                }
                out.extend(word.chars().take(room));
            }
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(word);
        n += sep + len;
    }
    out
}

/// The text the embedder sees for one part of a call.
pub fn task_text(raw: &str, max_chars: usize, normalise: bool) -> String {
    if normalise {
        clean_and_truncate(&normalise_placeholders(raw), max_chars)
    } else {
        clean_and_truncate(raw, max_chars)
    }
}

fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

fn sorted_distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = names
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Top-level keys of a JSON object (or of the first object of an array).
fn json_keys(text: &str) -> Vec<String> {
    let v: serde_json::Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    let obj = match &v {
        serde_json::Value::Object(o) => Some(o),
        serde_json::Value::Array(a) => a.first().and_then(|x| x.as_object()),
        _ => None,
    };
    obj.map(|o| sorted_distinct(o.keys().map(String::as_str)))
        .unwrap_or_default()
}

impl CallFacts {
    /// Extracts the facts of one call; token counts come from the logged
    /// usage when present, else an estimate of characters / 4.
    pub fn from_call(call: &Call, limits: &TextLimits, normalise: bool) -> CallFacts {
        let system = task_text(&call.system_prompt(), limits.system_chars, normalise);
        let user = task_text(
            call.last_user_message().unwrap_or(""),
            limits.user_chars,
            normalise,
        );
        let offered = sorted_distinct(call.tools.iter().map(|t| t.name.as_str()));
        let called = sorted_distinct(call.response.tool_calls.iter().map(|t| t.name.as_str()));
        let has_response = call.response.content.is_some() || !call.response.tool_calls.is_empty();
        let kind = has_response.then(|| {
            let k = call.response.kind();
            KINDS.iter().position(|x| *x == k).unwrap_or(2)
        });
        let json_keys = if kind == Some(1) {
            json_keys(call.response.content.as_deref().unwrap_or(""))
        } else {
            Vec::new()
        };
        let prompt_chars: usize = call
            .messages
            .iter()
            .map(|m| {
                m.content.as_deref().map_or(0, str::len)
                    + m.tool_calls
                        .iter()
                        .map(|t| t.name.len() + t.arguments.to_string().len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + call
                .tools
                .iter()
                .map(|t| {
                    t.name.len()
                        + t.description.as_deref().map_or(0, str::len)
                        + t.parameters.to_string().len()
                })
                .sum::<usize>();
        let completion_chars = call.response.content.as_deref().map_or(0, str::len)
            + call
                .response
                .tool_calls
                .iter()
                .map(|t| t.name.len() + t.arguments.to_string().len())
                .sum::<usize>();
        CallFacts {
            system,
            user,
            offered,
            called,
            json_keys,
            kind,
            after_tool: call
                .messages
                .last()
                .is_some_and(|m| m.role == crate::call::Role::Tool),
            prompt_tokens: call
                .usage
                .prompt_tokens
                .unwrap_or_else(|| estimate_tokens(prompt_chars)),
            prompt_logged: call.usage.prompt_tokens.is_some(),
            completion_tokens: call
                .usage
                .completion_tokens
                .unwrap_or_else(|| estimate_tokens(completion_chars)),
            completion_logged: call.usage.completion_tokens.is_some(),
            workload_id: call.workload_id.clone(),
        }
    }

    /// The same facts without the response (what a router sees).
    pub fn has_response(&self) -> bool {
        self.kind.is_some()
    }
}

/// The most frequent names over the sets (up to [`MAX_TOOL_VOCAB`], names
/// break ties), sorted by name, with their smoothed IDF over `n` calls.
fn vocabulary<'a>(
    sets: impl Iterator<Item = &'a Vec<String>>,
    n: usize,
) -> (Vec<String>, Vec<f32>) {
    let mut df: BTreeMap<&str, usize> = BTreeMap::new();
    for set in sets {
        for t in set {
            *df.entry(t).or_default() += 1;
        }
    }
    let mut v: Vec<(&str, usize)> = df.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(MAX_TOOL_VOCAB);
    v.sort_by(|a, b| a.0.cmp(b.0));
    (
        v.iter().map(|(t, _)| t.to_string()).collect(),
        v.iter().map(|(_, d)| idf(n, *d)).collect(),
    )
}

/// Smoothed IDF as scikit-learn computes it: ln((1 + n) / (1 + df)) + 1.
fn idf(n: usize, df: usize) -> f32 {
    (((1 + n) as f64 / (1 + df) as f64).ln() + 1.0) as f32
}

impl FeatureSpec {
    /// Builds the tool vocabulary and IDF weights from the calls.
    pub fn fit(
        facts: &[CallFacts],
        weights: FeatureWeights,
        text: TextLimits,
        normalise_placeholders: bool,
        embed_dim: usize,
    ) -> FeatureSpec {
        let mut df_any: BTreeMap<&str, usize> = BTreeMap::new();
        let mut df_offered: BTreeMap<&str, usize> = BTreeMap::new();
        let mut df_called: BTreeMap<&str, usize> = BTreeMap::new();
        for f in facts {
            let mut any: Vec<&str> = f
                .offered
                .iter()
                .chain(&f.called)
                .map(String::as_str)
                .collect();
            any.sort_unstable();
            any.dedup();
            for t in any {
                *df_any.entry(t).or_default() += 1;
            }
            for t in &f.offered {
                *df_offered.entry(t).or_default() += 1;
            }
            for t in &f.called {
                *df_called.entry(t).or_default() += 1;
            }
        }
        let mut vocab: Vec<(&str, usize)> = df_any.into_iter().collect();
        // Keep the most frequent (names break ties), then sort by name so a
        // name is found by binary search.
        vocab.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        vocab.truncate(MAX_TOOL_VOCAB);
        vocab.sort_by(|a, b| a.0.cmp(b.0));
        let n = facts.len();
        let tool_vocab: Vec<String> = vocab.iter().map(|(t, _)| t.to_string()).collect();
        let tool_idf_offered = vocab
            .iter()
            .map(|(t, _)| idf(n, df_offered.get(t).copied().unwrap_or(0)))
            .collect();
        let tool_idf_called = vocab
            .iter()
            .map(|(t, _)| idf(n, df_called.get(t).copied().unwrap_or(0)))
            .collect();
        let (json_key_vocab, json_key_idf) = vocabulary(facts.iter().map(|f| &f.json_keys), n);
        let v = tool_vocab.len();
        let parts = [
            ("system", embed_dim, true),
            ("user", embed_dim, true),
            ("tools_offered", v, true),
            ("tools_called", v, false),
            ("response_kind", KINDS.len(), false),
            ("json_keys", json_key_vocab.len(), false),
            ("length", LENGTH_BUCKETS.len() + 1, false),
        ];
        let mut offset = 0;
        let blocks = parts
            .iter()
            .map(|(name, len, request)| {
                let b = Block {
                    name: name.to_string(),
                    offset,
                    len: *len,
                    request: *request,
                };
                offset += len;
                b
            })
            .collect();
        FeatureSpec {
            weights,
            text,
            normalise_placeholders,
            embed_dim,
            tool_vocab,
            tool_idf_offered,
            tool_idf_called,
            json_key_vocab,
            json_key_idf,
            response_kinds: KINDS.iter().map(|s| s.to_string()).collect(),
            length_buckets: LENGTH_BUCKETS.to_vec(),
            dims: offset,
            blocks,
        }
    }

    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Facts of a new call, extracted with this spec's text settings.
    pub fn facts(&self, call: &Call) -> CallFacts {
        CallFacts::from_call(call, &self.text, self.normalise_placeholders)
    }

    fn length_bucket(&self, tokens: u64) -> usize {
        self.length_buckets
            .iter()
            .position(|b| tokens < *b)
            .unwrap_or(self.length_buckets.len())
    }

    /// Writes the feature vector of one call into `out` (length
    /// [`FeatureSpec::dims`]). `system` and `user` are the unit embeddings of
    /// the call's texts, `None` for an empty text (a zero block).
    pub fn write_row(
        &self,
        f: &CallFacts,
        system: Option<&[f32]>,
        user: Option<&[f32]>,
        out: &mut [f32],
    ) {
        debug_assert_eq!(out.len(), self.dims);
        out.fill(0.0);
        let w = &self.weights;
        let mut put_embedding = |name: &str, e: Option<&[f32]>, weight: f32| {
            if let (Some(b), Some(e)) = (self.block(name), e) {
                for (o, x) in out[b.offset..b.offset + b.len].iter_mut().zip(e) {
                    *o = x * weight;
                }
            }
        };
        put_embedding("system", system, w.system);
        put_embedding("user", user, w.user);
        for (name, names, vocab, idf, weight) in [
            (
                "tools_offered",
                &f.offered,
                &self.tool_vocab,
                &self.tool_idf_offered,
                w.tools_offered,
            ),
            (
                "tools_called",
                &f.called,
                &self.tool_vocab,
                &self.tool_idf_called,
                w.tools_called,
            ),
            (
                "json_keys",
                &f.json_keys,
                &self.json_key_vocab,
                &self.json_key_idf,
                w.json_keys,
            ),
        ] {
            let Some(b) = self.block(name) else { continue };
            let slot = &mut out[b.offset..b.offset + b.len];
            for t in names {
                if let Ok(i) = vocab.binary_search(t) {
                    slot[i] = idf[i];
                }
            }
            let norm = slot.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                slot.iter_mut().for_each(|x| *x *= weight / norm);
            }
        }
        // One-hot blocks: two different values are `weight` apart.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        if let (Some(b), Some(k)) = (self.block("response_kind"), f.kind) {
            out[b.offset + k] = w.response_kind * h;
        }
        if let (Some(b), Some(_)) = (self.block("length"), f.kind) {
            out[b.offset + self.length_bucket(f.completion_tokens)] = w.length * h;
        }
    }

    /// Euclidean distance over the request blocks only (what a call without
    /// its response can be compared on).
    pub fn request_distance(&self, row: &[f32], centroid: &[f32]) -> f32 {
        self.blocks
            .iter()
            .filter(|b| b.request)
            .map(|b| {
                row[b.offset..b.offset + b.len]
                    .iter()
                    .zip(&centroid[b.offset..b.offset + b.len])
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f32>()
            })
            .sum::<f32>()
            .sqrt()
    }
}

/// Euclidean distance between a feature row and a centroid.
pub fn full_distance(row: &[f32], centroid: &[f32]) -> f32 {
    row.iter()
        .zip(centroid)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
