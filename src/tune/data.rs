//! Training data for `tune`: encoding a cluster's calls into answer-masked
//! examples (each in its split, [`super::split`]), length-bucketed batches
//! and the epoch plan, and the cluster's usual context (`prompt.json`).

use std::collections::HashMap;

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::adapter::{
    ClusterPrompt, EncodeCounts, LengthStats, StaticParts, StaticPiece,
};
use crate::artifact::split::{split_of, Split, SplitFractions};
use crate::call::Role;
use crate::call::{RedactedCall, Response};
use crate::ml::lm::prune::{
    lead_candidates, messages_sha256, system_text as first_system, text_sha256, tool_sha256,
    LeadingRule, PruneRule,
};
use crate::ml::lm::{EncodeError, LanguageModel, TrainExample};

// ---------------------------------------------------------------------------
// Examples.

/// What to do with a call longer than `max_len` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Drop tokens from the left of the context (the answer is kept whole).
    Truncate,
    /// Leave the call out.
    Drop,
}

/// One encoded call.
#[derive(Clone, Debug)]
pub struct Example {
    pub call_id: String,
    pub split: Split,
    pub ex: TrainExample,
    /// The LLM's answer (the target).
    pub answer: Response,
    /// `tool_call`, `json` or `text`.
    pub kind: &'static str,
    /// Tool schemas of the call by name (for the optional-argument rule).
    pub tool_params: HashMap<String, Value>,
    /// What the request demanded of the answer (guided decoding follows it).
    pub demands: crate::call::Demands,
}

impl Example {
    /// Number of context tokens (before the answer).
    pub fn prompt_len(&self) -> usize {
        self.ex.answer_mask.iter().take_while(|&&m| !m).count()
    }

    /// The generation prompt: exactly the context the model trained on.
    pub fn prompt_ids(&self) -> &[u32] {
        &self.ex.ids[..self.prompt_len()]
    }
}

/// A cluster's encoded calls.
pub struct ClusterData {
    pub examples: Vec<Example>,
    pub counts: EncodeCounts,
    pub lengths: LengthStats,
}

impl ClusterData {
    pub fn split(&self, s: Split) -> Vec<&Example> {
        self.examples.iter().filter(|e| e.split == s).collect()
    }
}

/// Encodes a cluster's calls (in call-id order) for training, pruned by
/// `prune` when given.
pub fn encode_cluster(
    lm: &LanguageModel,
    calls: &[&RedactedCall],
    max_len: usize,
    overlong: Overlong,
    split: &SplitFractions,
    prune: Option<&PruneRule>,
) -> ClusterData {
    let mut counts = EncodeCounts {
        calls: calls.len(),
        ..Default::default()
    };
    let mut sorted: Vec<(String, &RedactedCall)> = calls.iter().map(|c| (c.id(), *c)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut examples = Vec::new();
    for (id, call) in sorted {
        let answer = call.response.clone();
        if answer
            .content
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
            && answer.tool_calls.is_empty()
        {
            counts.dropped_empty_answer += 1;
            continue;
        }
        let pruned = prune.map(|r| r.apply(&call.messages, &call.tools));
        let (messages, tools) = match &pruned {
            Some(p) => (&p.messages[..], &p.tools[..]),
            None => (&call.messages[..], &call.tools[..]),
        };
        let ex = match lm.encode_for_training(messages, tools, &answer, max_len) {
            Ok(ex) => ex,
            Err(e) => {
                match e.downcast_ref::<EncodeError>() {
                    Some(EncodeError::AnswerTooLong { .. }) => counts.dropped_answer_too_long += 1,
                    Some(EncodeError::DoesNotFit { .. }) => counts.dropped_overlong += 1,
                    None => counts.dropped_render_error += 1,
                }
                continue;
            }
        };
        if pruned.as_ref().is_some_and(|p| p.any()) {
            counts.pruned += 1;
        }
        if ex.truncated {
            if overlong == Overlong::Drop {
                counts.dropped_overlong += 1;
                continue;
            }
            counts.truncated += 1;
        }
        let s = split_of(&id, split);
        match s {
            Split::Train => counts.train += 1,
            Split::Val => counts.val += 1,
            Split::Test => counts.test += 1,
        }
        let kind = answer.kind();
        let tool_params = call
            .tools
            .iter()
            .map(|t| (t.name.clone(), t.parameters.clone()))
            .collect();
        examples.push(Example {
            call_id: id,
            split: s,
            ex,
            answer,
            kind,
            tool_params,
            demands: call.demands.clone(),
        });
    }
    counts.examples = examples.len();
    let n = examples.len().max(1) as f64;
    let lengths = LengthStats {
        mean_tokens: examples.iter().map(|e| e.ex.ids.len()).sum::<usize>() as f64 / n,
        max_tokens: examples.iter().map(|e| e.ex.ids.len()).max().unwrap_or(0),
        mean_answer_tokens: examples.iter().map(|e| e.ex.answer_len()).sum::<usize>() as f64 / n,
        max_answer_tokens: examples
            .iter()
            .map(|e| e.ex.answer_len())
            .max()
            .unwrap_or(0),
        max_train_answer_tokens: examples
            .iter()
            .filter(|e| e.split == Split::Train)
            .map(|e| e.ex.answer_len())
            .max()
            .unwrap_or(0),
    };
    ClusterData {
        examples,
        counts,
        lengths,
    }
}

/// SHA-256 over what the model trains on: each training example's call id,
/// token ids and answer mask, in order.
pub fn train_data_sha256(train: &[&Example]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in train {
        h.update(e.call_id.as_bytes());
        h.update([0]);
        for (&id, &m) in e.ex.ids.iter().zip(&e.ex.answer_mask) {
            h.update(id.to_le_bytes());
            h.update([m as u8]);
        }
        h.update([0xff]);
    }
    hex::encode(h.finalize())
}

// ---------------------------------------------------------------------------
// Batches.

/// How batches are formed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLimits {
    /// At most this many examples per batch.
    pub max_examples: usize,
    /// At most this many padded tokens (`rows × longest`) per batch; a single
    /// longer example still forms a batch of its own.
    pub max_tokens: usize,
}

/// Groups example indices (already in the wanted order) into batches of
/// similar length: windows of `bucket_window` batches' worth of examples are
/// sorted by length and cut greedily under the limits.
pub fn length_batches(
    order: &[usize],
    lens: &[usize],
    limits: BatchLimits,
    bucket_window: usize,
) -> Vec<Vec<usize>> {
    let window = (limits.max_examples.max(1) * bucket_window.max(1)).max(1);
    let mut out = Vec::new();
    for chunk in order.chunks(window) {
        let mut c = chunk.to_vec();
        c.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
        let mut cur: Vec<usize> = Vec::new();
        let mut longest = 0;
        for i in c {
            let l = longest.max(lens[i]);
            if !cur.is_empty()
                && (cur.len() + 1 > limits.max_examples || (cur.len() + 1) * l > limits.max_tokens)
            {
                out.push(std::mem::take(&mut cur));
                longest = 0;
            }
            longest = longest.max(lens[i]);
            cur.push(i);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// The whole training plan: for each epoch, a seeded shuffle of the
/// examples, grouped into length-bucketed batches, the batches shuffled.
pub fn epoch_plan(
    n: usize,
    lens: &[usize],
    limits: BatchLimits,
    epochs: usize,
    seed: u64,
) -> Vec<Vec<Vec<usize>>> {
    (0..epochs)
        .map(|e| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7475_6e65_0000_0000 ^ e as u64);
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            let mut batches = length_batches(&order, lens, limits, 16);
            batches.shuffle(&mut rng);
            batches
        })
        .collect()
}

/// Batches for evaluation passes (sorted by length, no shuffling).
pub fn eval_batches(lens: &[usize], limits: BatchLimits) -> Vec<Vec<usize>> {
    let order: Vec<usize> = (0..lens.len()).collect();
    length_batches(
        &order,
        lens,
        limits,
        usize::MAX / limits.max_examples.max(1),
    )
}

// ---------------------------------------------------------------------------
// The cluster's usual context.

/// The context a cluster's calls share most often ([`ClusterPrompt`]).
pub fn cluster_prompt(calls: &[&RedactedCall]) -> ClusterPrompt {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        let key = context_key(c);
        counts.entry(key).or_insert((0, i)).0 += 1;
    }
    let best = counts
        .values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .copied();
    match best {
        None => ClusterPrompt::default(),
        Some((n, i)) => ClusterPrompt {
            system: system_text(calls[i]),
            tools: calls[i].tools.clone(),
            calls_with_this_context: n,
            calls: calls.len(),
            ..Default::default()
        },
    }
}

/// When to train on pruned prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prune {
    /// When the static pieces are long (`prune_min_chars` per call on
    /// average) — they then cover nearly every call by construction.
    Auto,
    On,
    Off,
}

impl Prune {
    pub const NAMES: [&'static str; 3] = ["auto", "on", "off"];
}

impl std::str::FromStr for Prune {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Prune::Auto),
            "on" => Ok(Prune::On),
            "off" => Ok(Prune::Off),
            _ => Err(format!("expected `auto`, `on` or `off`, got {s:?}")),
        }
    }
}

/// The repeated pieces of a cluster's prompts: the most common system
/// prompt, and per tool name its most common definition. A piece is static
/// when at least `threshold` of the calls (of those offering the tool)
/// hold exactly it (after redaction: pseudonyms are consistent).
pub fn static_parts(calls: &[&RedactedCall], threshold: f64) -> StaticParts {
    let n = calls.len().max(1) as f64;
    let mut systems: HashMap<&str, usize> = HashMap::new();
    let mut offered: HashMap<&str, usize> = HashMap::new();
    let mut defs: HashMap<(&str, String), (usize, usize)> = HashMap::new();
    for c in calls {
        if let Some(s) = first_system(&c.messages) {
            *systems.entry(s).or_default() += 1;
        }
        for t in &c.tools {
            *offered.entry(t.name.as_str()).or_default() += 1;
            let chars = serde_json::to_string(t).map(|s| s.len()).unwrap_or(0);
            defs.entry((t.name.as_str(), tool_sha256(t)))
                .or_insert((0, chars))
                .0 += 1;
        }
    }
    let system = systems
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(s, &k)| StaticPiece {
            name: None,
            sha256: text_sha256(s),
            share: k as f64 / n,
            offered_share: None,
            messages: None,
            chars: s.chars().count(),
            is_static: k as f64 / n >= threshold,
        });
    let mut best: HashMap<&str, (&String, usize, usize)> = HashMap::new();
    for ((name, h), &(k, chars)) in &defs {
        let e = best.entry(name).or_insert((h, k, chars));
        if k > e.1 || (k == e.1 && h < e.0) {
            *e = (h, k, chars);
        }
    }
    let mut tools: Vec<StaticPiece> = best
        .into_iter()
        .map(|(name, (h, k, chars))| {
            let of = offered[name] as f64;
            StaticPiece {
                name: Some(name.to_string()),
                sha256: h.clone(),
                share: k as f64 / n,
                offered_share: Some(of / n),
                messages: None,
                chars,
                is_static: k as f64 / of >= threshold,
            }
        })
        .collect();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let leading = static_lead(calls, threshold);
    let mean_static_chars = system
        .iter()
        .chain(&tools)
        .chain(&leading)
        .filter(|p| p.is_static)
        .map(|p| p.chars as f64 * p.share)
        .sum::<f64>()
        .max(0.0);
    StaticParts {
        threshold,
        system,
        tools,
        leading,
        mean_static_chars,
        pruned: false,
        decision: String::new(),
    }
}

/// The longest run of leading messages (at most 8) that at least
/// `threshold` of the calls begin their conversation with.
fn static_lead(calls: &[&RedactedCall], threshold: f64) -> Option<StaticPiece> {
    let n = calls.len().max(1) as f64;
    for k in (1..=8usize).rev() {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for c in calls {
            let lead = lead_candidates(&c.messages);
            if lead.len() >= k {
                let chars = lead[..k]
                    .iter()
                    .map(|m| m.content.as_deref().map_or(0, |t| t.chars().count()))
                    .sum();
                counts
                    .entry(messages_sha256(&lead[..k]))
                    .or_insert((0, chars))
                    .0 += 1;
            }
        }
        let best = counts
            .into_iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0)));
        if let Some((h, (m, chars))) = best {
            if m as f64 / n >= threshold {
                return Some(StaticPiece {
                    name: Some(format!("{k} leading messages")),
                    sha256: h,
                    share: m as f64 / n,
                    offered_share: None,
                    chars,
                    messages: Some(k),
                    is_static: true,
                });
            }
        }
    }
    None
}

/// Decides whether to prune and builds the rule; records the decision in `parts`.
pub fn prune_rule(
    parts: &mut StaticParts,
    mode: Prune,
    min_chars: usize,
    workload: &str,
) -> Option<PruneRule> {
    let any_static = parts
        .system
        .iter()
        .chain(&parts.tools)
        .chain(&parts.leading)
        .any(|p| p.is_static);
    let on = match mode {
        Prune::Off => {
            parts.decision = "pruning off".into();
            false
        }
        Prune::On => {
            parts.decision = "pruning on".into();
            any_static
        }
        Prune::Auto => {
            let long = parts.mean_static_chars >= min_chars as f64;
            parts.decision = format!(
                "auto: static pieces remove {:.0} characters per call on average ({} {min_chars})",
                parts.mean_static_chars,
                if long { ">=" } else { "<" }
            );
            long && any_static
        }
    };
    parts.pruned = on;
    on.then(|| PruneRule {
        marker: format!("You are the specialised model for the workload \"{workload}\"."),
        system_sha256: parts
            .system
            .as_ref()
            .filter(|p| p.is_static)
            .map(|p| p.sha256.clone()),
        tools: parts
            .tools
            .iter()
            .filter(|p| p.is_static)
            .filter_map(|p| Some((p.name.clone()?, p.sha256.clone())))
            .collect(),
        leading: parts.leading.as_ref().map(|p| LeadingRule {
            messages: p.messages.unwrap_or(0),
            sha256: p.sha256.clone(),
        }),
    })
}

fn system_text(c: &RedactedCall) -> Option<String> {
    c.messages
        .iter()
        .find(|m| m.role == Role::System)
        .and_then(|m| m.content.clone())
}

fn context_key(c: &RedactedCall) -> String {
    serde_json::to_string(&(system_text(c), &c.tools)).unwrap_or_default()
}

impl Overlong {
    /// The names [`Overlong`] parses from.
    pub const NAMES: [&'static str; 2] = ["truncate", "drop"];
}

impl std::str::FromStr for Overlong {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "truncate" => Ok(Overlong::Truncate),
            "drop" => Ok(Overlong::Drop),
            _ => Err(format!("expected `truncate` or `drop`, got {s:?}")),
        }
    }
}

impl std::fmt::Display for Overlong {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Overlong::Truncate => "truncate",
            Overlong::Drop => "drop",
        })
    }
}

impl std::fmt::Display for Prune {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Prune::Auto => "auto",
            Prune::On => "on",
            Prune::Off => "off",
        })
    }
}
