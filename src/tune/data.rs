//! Training data for `tune`: cluster assignments (`clusters.parquet`,
//! `clusters.json`, `plan.json`), the deterministic train/validation/test
//! split by call id, encoding calls into answer-masked examples, and
//! length-bucketed batches.
//!
//! Files read from the dataset directory (columns and fields by name):
//! * `clusters.parquet`: `call_id` (str, = `calls.parquet` call_id),
//!   `cluster` (integer, -1 = outlier), `distance` (float, optional here);
//! * `clusters.json` (optional): `clusters: [{id, label_terms, size}]` (or a
//!   bare array of those), used for labels in reports;
//! * `plan.json` (optional, written by the select stage): `clusters: [{id |
//!   cluster, decision | action: "tune" | "fine_tune" | tune: true,
//!   base_model?}]`. When present it decides which clusters are tuned.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::{RedactedCall, Response};
use crate::lm::{LanguageModel, TrainExample};
use crate::util::usage;

pub const CLUSTERS_FILE: &str = crate::cluster::artifact::ASSIGNMENTS_FILE;
pub const CLUSTERS_JSON: &str = crate::cluster::artifact::SUMMARY_FILE;
pub const PLAN_FILE: &str = "plan.json";

/// Cluster id of outliers in `clusters.parquet`.
pub const OUTLIER: i32 = -1;

// ---------------------------------------------------------------------------
// Cluster assignments.

/// `call_id -> cluster` from `DIR/clusters.parquet`, in file order (the
/// cluster stage's reader; a missing file is a usage error).
pub fn read_clusters(dataset_dir: &Path) -> Result<Vec<(String, i32)>> {
    Ok(crate::cluster::artifact::read_assignment_rows(dataset_dir)?
        .into_iter()
        .map(|a| (a.call_id, a.cluster))
        .collect())
}

/// Writes `clusters.parquet` (`call_id`, `cluster`, `distance` = 0) and a
/// matching `clusters.json`. Used by the ground-truth helper below, tests and
/// benchmarks; the real file comes from `slmforge cluster`.
pub fn write_clusters(
    dataset_dir: &Path,
    assignments: &[(String, i32)],
    labels: &BTreeMap<i32, String>,
) -> Result<()> {
    let rows: Vec<crate::cluster::artifact::Assignment> = assignments
        .iter()
        .map(|(id, k)| crate::cluster::artifact::Assignment {
            call_id: id.clone(),
            cluster: *k,
            distance: 0.0,
        })
        .collect();
    crate::cluster::artifact::write_assignments(&dataset_dir.join(CLUSTERS_FILE), &rows)?;
    let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, k) in assignments {
        *sizes.entry(*k).or_default() += 1;
    }
    let clusters: Vec<Value> = sizes
        .iter()
        .map(|(id, n)| {
            serde_json::json!({
                "id": id,
                "label_terms": labels.get(id).map(|l| vec![l.clone()]).unwrap_or_default(),
                "size": n,
            })
        })
        .collect();
    crate::util::write_json(
        &dataset_dir.join(CLUSTERS_JSON),
        &serde_json::json!({ "clusters": clusters }),
    )
}

/// Development and test helper: builds `clusters.parquet` from synth ground
/// truth (`calls.labels.jsonl`, keyed by `line`/`index` = the calls'
/// `source_line`/`source_index`), one cluster per workload (ids in sorted
/// workload order). Calls without a label become outliers. Returns the
/// workload name of each cluster id.
pub fn clusters_from_labels(dataset_dir: &Path, labels: &Path) -> Result<BTreeMap<i32, String>> {
    let text =
        std::fs::read_to_string(labels).with_context(|| format!("reading {}", labels.display()))?;
    let mut by_pos: HashMap<(u64, u32), String> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", labels.display(), n + 1))?;
        if let (Some(l), Some(w)) = (v["line"].as_u64(), v["workload"].as_str()) {
            by_pos.insert((l, v["index"].as_u64().unwrap_or(0) as u32), w.to_string());
        }
    }
    let mut names: Vec<&String> = by_pos.values().collect();
    names.sort();
    names.dedup();
    let ids: HashMap<String, i32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).clone(), i as i32))
        .collect();
    let rows = crate::dataset::read_rows(dataset_dir)?;
    let assignments: Vec<(String, i32)> = rows
        .iter()
        .map(|r| {
            let k = by_pos
                .get(&(r.source_line, r.source_index))
                .map(|w| ids[w])
                .unwrap_or(OUTLIER);
            (r.call_id.clone(), k)
        })
        .collect();
    let labels: BTreeMap<i32, String> = ids.into_iter().map(|(n, i)| (i, n)).collect();
    write_clusters(dataset_dir, &assignments, &labels)?;
    Ok(labels)
}

/// Per-cluster descriptive terms from `clusters.json`, when present.
pub fn read_cluster_labels(dataset_dir: &Path) -> HashMap<i32, Vec<String>> {
    let Ok(text) = std::fs::read_to_string(dataset_dir.join(CLUSTERS_JSON)) else {
        return HashMap::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return HashMap::new();
    };
    let list = v.get("clusters").unwrap_or(&v);
    let mut out = HashMap::new();
    for c in list.as_array().into_iter().flatten() {
        let Some(id) = c.get("id").and_then(Value::as_i64) else {
            continue;
        };
        let terms: Vec<String> = c
            .get("label_terms")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        out.insert(id as i32, terms);
    }
    out
}

/// A cluster the select stage chose for tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanEntry {
    pub cluster: i32,
    pub base_model: Option<String>,
}

/// The clusters `plan.json` selects for tuning; `None` when there is no plan.
pub fn read_plan(dataset_dir: &Path) -> Result<Option<Vec<PlanEntry>>> {
    let path = dataset_dir.join(PLAN_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| usage(format!("{} is not valid JSON: {e}", path.display())))?;
    let list = v.get("clusters").unwrap_or(&v);
    let Some(list) = list.as_array() else {
        return Err(usage(format!(
            "{} has no `clusters` array: re-run `slmforge select`",
            path.display()
        )));
    };
    let mut out = Vec::new();
    for c in list {
        let id = c
            .get("id")
            .or_else(|| c.get("cluster"))
            .and_then(Value::as_i64);
        let decision = c
            .get("decision")
            .or_else(|| c.get("action"))
            .and_then(Value::as_str)
            .map(|d| d.to_ascii_lowercase());
        let chosen = c.get("tune").and_then(Value::as_bool).unwrap_or(false)
            || matches!(decision.as_deref(), Some("tune" | "fine_tune" | "finetune"));
        if let (Some(id), true) = (id, chosen) {
            out.push(PlanEntry {
                cluster: id as i32,
                base_model: c
                    .get("base_model")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------------------
// The split.

/// Fractions of calls for training and validation; the test split is the rest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            train: 0.8,
            val: 0.1,
        }
    }
}

impl SplitFractions {
    pub fn test(&self) -> f64 {
        1.0 - self.train - self.val
    }

    pub fn validate(&self) -> Result<()> {
        let ok = |x: f64| (0.0..=1.0).contains(&x);
        if !(ok(self.train) && ok(self.val) && self.train > 0.0 && self.test() > -1e-9) {
            return Err(usage(format!(
                "split fractions must be in [0, 1] with train > 0 and train + val <= 1 (got train {}, val {})",
                self.train, self.val
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
    Test,
}

/// The call's position in `[0, 1)`: the first 8 bytes of
/// SHA-256("slmforge-split-v1:" + call_id). Depends on nothing but the id,
/// so a call never changes split when other calls arrive.
pub fn split_point(call_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("slmforge-split-v1:{call_id}").as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Which split a call belongs to.
pub fn split_of(call_id: &str, f: &SplitFractions) -> Split {
    let u = split_point(call_id);
    if u < f.train {
        Split::Train
    } else if u < f.train + f.val {
        Split::Val
    } else {
        Split::Test
    }
}

// ---------------------------------------------------------------------------
// Examples.

/// What to do with a call longer than `max_len` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

/// Counts of what happened to a cluster's calls while encoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EncodeCounts {
    /// Calls assigned to the cluster.
    pub calls: usize,
    /// Calls encoded into examples (all splits).
    pub examples: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Examples whose context was cut from the left to fit `max_len`.
    pub truncated: usize,
    /// Calls left out because they exceed `max_len` (with `overlong = drop`).
    pub dropped_overlong: usize,
    /// Calls left out because the answer alone does not fit `max_len`.
    pub dropped_answer_too_long: usize,
    /// Calls left out because the LLM's answer is empty.
    pub dropped_empty_answer: usize,
    /// Calls the chat template could not render.
    pub dropped_render_error: usize,
    /// Calls in clusters.parquet but missing from calls.parquet.
    pub missing_calls: usize,
}

/// Token-length statistics of the encoded examples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub mean_tokens: f64,
    pub max_tokens: usize,
    pub mean_answer_tokens: f64,
    pub max_answer_tokens: usize,
    /// Longest answer of the training split (sets the eval decode cap).
    pub max_train_answer_tokens: usize,
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

/// Encodes a cluster's calls (in call-id order) for training.
pub fn encode_cluster(
    lm: &LanguageModel,
    calls: &[&RedactedCall],
    max_len: usize,
    overlong: Overlong,
    split: &SplitFractions,
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
            .map_or(true, |c| c.trim().is_empty())
            && answer.tool_calls.is_empty()
        {
            counts.dropped_empty_answer += 1;
            continue;
        }
        let ex = match lm.encode_for_training(&call.messages, &call.tools, &answer, max_len) {
            Ok(ex) => ex,
            Err(_) => {
                // Either the answer alone is too long or the template failed:
                // tell them apart by encoding with no length limit.
                match lm.encode_for_training(&call.messages, &call.tools, &answer, usize::MAX / 4) {
                    Ok(_) => counts.dropped_answer_too_long += 1,
                    Err(_) => counts.dropped_render_error += 1,
                }
                continue;
            }
        };
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
