//! The measured choice of a base model per cluster: eligibility (size, the
//! outlier cluster, p95 tokens against each candidate's context), then, for
//! every candidate that is installed, runnable and fits, its score on a
//! sample of the cluster's **validation** calls (never the test split `tune`
//! reports on) with `tune`'s metrics: zero-shot, and after a short pilot
//! LoRA run when `pilot_steps > 0`. The smallest candidate whose score
//! reaches the target is chosen; when none does, the best one, flagged.
//! Measurements are cached by (cluster calls, model sha256, settings) under
//! `DATASET/select_cache/`, so a re-run does not measure again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::artifact::adapter::ModelMetrics;
use crate::artifact::calls::CallRow;
use crate::artifact::OUTLIER;
use crate::ml::lm::model::Arch;
use crate::ml::models::{CatalogEntry, Role};

/// Folder of cached measurements inside the dataset directory.
pub const CACHE_DIR: &str = "select_cache";

/// What `choose` needs besides its inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChooseConfig {
    /// Share of the validation sample a candidate must get exactly right
    /// (tune's exact-match metric) to be good enough.
    pub target: f64,
    /// Clusters with fewer calls are not eligible.
    pub min_examples: usize,
    /// Validation calls scored per cluster and candidate.
    pub val_calls: usize,
    /// Pilot LoRA updates per cluster and candidate (0: zero-shot only).
    pub pilot_steps: usize,
    /// Wall-clock cap on a pilot run, in seconds (a safety cap: the step
    /// count decides; the result records when the cap bites).
    pub pilot_secs: Option<f64>,
    /// Everything else that changes a measurement (encoding, LoRA and
    /// optimiser settings, seed), as the measurer reports it: part of the
    /// cache key.
    pub measure_settings: serde_json::Value,
}

impl Default for ChooseConfig {
    fn default() -> Self {
        ChooseConfig {
            target: 0.8,
            min_examples: 50,
            val_calls: 16,
            pilot_steps: 0,
            pilot_secs: Some(600.0),
            measure_settings: serde_json::Value::Null,
        }
    }
}

/// Scores of one cluster on one candidate: zero-shot, and after the pilot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    pub zero_shot: Option<ModelMetrics>,
    pub pilot: Option<ModelMetrics>,
    pub pilot_steps: usize,
    pub pilot_capped: bool,
}

/// Runs candidates on clusters' validation calls (the caller supplies it:
/// model loading, encoding and training live outside this stage).
pub trait Measurer {
    /// Scores each cluster (its id and call ids) on the candidate's GGUF at
    /// `path`, in the order given.
    fn measure(
        &mut self,
        cfg: &ChooseConfig,
        cand: &Candidate,
        path: &Path,
        clusters: &[(i32, Vec<String>)],
    ) -> Result<Vec<Measured>>;
}

/// One candidate base model, as the catalogue describes it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub params: u64,
    pub family: String,
    pub context_length: usize,
    /// The GGUF, when installed.
    pub path: Option<std::path::PathBuf>,
}

impl Candidate {
    pub fn from_entry(e: &CatalogEntry, models_dir: &Path) -> Candidate {
        let path = e.main_path_in(models_dir);
        Candidate {
            id: e.id.to_string(),
            params: e.params,
            family: e.family.to_string(),
            context_length: e.context_length,
            path: path.is_file().then_some(path),
        }
    }

    /// This build can run it (a supported architecture).
    pub fn runnable(&self) -> bool {
        Arch::from_gguf_name(&self.family).is_some()
    }
}

/// The base-model candidates of a catalogue, smallest first.
pub fn candidates(entries: &[CatalogEntry], models_dir: &Path) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = entries
        .iter()
        .filter(|e| e.role == Role::BaseSlm)
        .map(|e| Candidate::from_entry(e, models_dir))
        .collect();
    c.sort_by(|a, b| a.params.cmp(&b.params).then(a.id.cmp(&b.id)));
    c
}

pub use crate::artifact::plan::CandidateResult;

/// The choice for one cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClusterChoice {
    pub cluster: i32,
    pub calls: usize,
    pub eligible: bool,
    /// Why not eligible, or how the model was chosen.
    pub reason: String,
    /// 95th percentile of prompt + completion tokens (the logs' usage
    /// counts; characters / 4 where a call has none).
    pub p95_tokens: usize,
    pub chosen: Option<String>,
    /// The chosen model's score reaches the target.
    pub reached_target: bool,
    pub candidates: Vec<CandidateResult>,
}

/// Tokens of a call as the logs count them (prompt + completion), else
/// estimated from its characters (4 per token).
pub fn call_tokens(r: &CallRow) -> usize {
    match (r.prompt_tokens, r.completion_tokens, r.total_tokens) {
        (Some(p), Some(c), _) => (p + c) as usize,
        (_, _, Some(t)) => t as usize,
        _ => {
            let chars = r.messages_json.len()
                + r.tools_json.len()
                + r.response_text.as_deref().map_or(0, str::len)
                + r.response_tool_calls_json.len();
            chars.div_ceil(4)
        }
    }
}

/// The `q`-quantile (nearest rank) of `v`; 0 for none.
pub fn quantile(v: &mut [usize], q: f64) -> usize {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Eligibility of each cluster (outlier, size), with its p95 tokens.
/// `members`: call ids per cluster id.
pub fn eligibility(
    members: &BTreeMap<i32, Vec<String>>,
    rows: &HashMap<String, &CallRow>,
    min_examples: usize,
) -> Vec<ClusterChoice> {
    members
        .iter()
        .map(|(&k, ids)| {
            let mut toks: Vec<usize> = ids
                .iter()
                .filter_map(|id| rows.get(id))
                .map(|r| call_tokens(r))
                .collect();
            let p95 = quantile(&mut toks, 0.95);
            let (eligible, reason) = if k == OUTLIER {
                (
                    false,
                    "the outlier cluster (calls unlike any workload) stays with the LLM"
                        .to_string(),
                )
            } else if ids.len() < min_examples {
                (
                    false,
                    format!(
                        "{} calls, fewer than the minimum of {min_examples}",
                        ids.len()
                    ),
                )
            } else {
                (true, String::new())
            };
            ClusterChoice {
                cluster: k,
                calls: ids.len(),
                eligible,
                reason,
                p95_tokens: p95,
                chosen: None,
                reached_target: false,
                candidates: Vec::new(),
            }
        })
        .collect()
}

/// Picks the model of one cluster from its measured candidates (smallest
/// first): the smallest whose score reaches `target`, else the best (the
/// smaller on ties), flagged.
pub fn pick(choice: &mut ClusterChoice, target: f64) {
    let measured: Vec<&CandidateResult> = choice
        .candidates
        .iter()
        .filter(|c| c.score.is_some())
        .collect();
    if measured.is_empty() {
        choice.chosen = None;
        choice.reached_target = false;
        choice.reason = if choice.candidates.is_empty() {
            "no base-model candidates in the catalogue".into()
        } else {
            format!(
                "no candidate could be measured: {}",
                choice
                    .candidates
                    .iter()
                    .map(|c| format!("{} ({})", c.model, c.skipped.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        return;
    }
    let score = |c: &CandidateResult| c.score.unwrap_or(0.0);
    if let Some(c) = measured.iter().find(|c| score(c) >= target) {
        choice.chosen = Some(c.model.clone());
        choice.reached_target = true;
        choice.reason = format!(
            "the smallest candidate reaching the target: {} scores {:.0}% >= {:.0}%",
            c.model,
            100.0 * score(c),
            100.0 * target
        );
        return;
    }
    // best score; on ties the smaller (measured is sorted smallest first)
    let mut best = measured[0];
    for c in &measured[1..] {
        if score(c) > score(best) {
            best = c;
        }
    }
    choice.chosen = Some(best.model.clone());
    choice.reached_target = false;
    choice.reason = format!(
        "no candidate reaches the target of {:.0}%: the best, {}, scores {:.0}% (flagged)",
        100.0 * target,
        best.model,
        100.0 * score(best)
    );
}

/// The cache key of one measurement.
fn cache_key(cfg: &ChooseConfig, model_sha: &str, cluster_ids: &[String]) -> Result<String> {
    let mut ids = cluster_ids.to_vec();
    ids.sort();
    let settings = serde_json::json!({
        "val_calls": cfg.val_calls,
        "pilot_steps": cfg.pilot_steps,
        "measure": cfg.measure_settings,
    });
    let text = serde_json::to_string(&serde_json::json!({
        "model": model_sha, "calls": ids, "settings": settings,
    }))?;
    Ok(crate::util::sha256_hex(text.as_bytes()))
}

/// Measures every eligible cluster on every candidate that can run it, and
/// picks each cluster's model. `members`: call ids per cluster.
pub fn choose(
    cfg: &ChooseConfig,
    dataset_dir: &Path,
    members: &BTreeMap<i32, Vec<String>>,
    rows: &HashMap<String, &CallRow>,
    cands: &[Candidate],
    measurer: &mut dyn Measurer,
) -> Result<Vec<ClusterChoice>> {
    let mut choices = eligibility(members, rows, cfg.min_examples);
    let cache_dir = dataset_dir.join(CACHE_DIR);
    for cand in cands {
        // which eligible clusters this candidate can be measured on
        let mut todo: Vec<usize> = Vec::new();
        for (i, ch) in choices.iter_mut().enumerate() {
            if !ch.eligible {
                continue;
            }
            let skipped = if !cand.runnable() {
                Some(format!(
                    "architecture {} is not supported by this build",
                    cand.family
                ))
            } else if cand.path.is_none() {
                Some("not installed (`slmforge models list`)".to_string())
            } else if ch.p95_tokens > cand.context_length {
                Some(format!(
                    "p95 of {} tokens exceeds its context of {}",
                    ch.p95_tokens, cand.context_length
                ))
            } else {
                None
            };
            ch.candidates.push(CandidateResult {
                model: cand.id.clone(),
                params: cand.params,
                context_length: cand.context_length,
                skipped: skipped.clone(),
                zero_shot: None,
                pilot: None,
                pilot_steps: 0,
                pilot_capped: false,
                score: None,
                cached: false,
                serving_usd_per_mtok: None,
            });
            if skipped.is_none() {
                todo.push(i);
            }
        }
        if todo.is_empty() {
            continue;
        }
        let path = cand.path.as_ref().expect("checked");
        let model_sha = crate::ml::models::cached_sha256(path)?;
        // cached results first; the measurer runs only for what is left
        let mut left = Vec::new();
        for &i in &todo {
            let key = cache_key(cfg, &model_sha, &members[&choices[i].cluster])?;
            let file = cache_dir.join(format!("{key}.json"));
            let hit: Option<Measured> = std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match hit {
                Some(c) => set_result(choices[i].candidates.last_mut().expect("pushed"), c, true),
                None => left.push((i, file)),
            }
        }
        if left.is_empty() {
            continue;
        }
        let clusters: Vec<(i32, Vec<String>)> = left
            .iter()
            .map(|(i, _)| (choices[*i].cluster, members[&choices[*i].cluster].clone()))
            .collect();
        let measured = measurer.measure(cfg, cand, path, &clusters)?;
        if measured.len() != left.len() {
            anyhow::bail!(
                "the measurer returned {} results for {} clusters",
                measured.len(),
                left.len()
            );
        }
        std::fs::create_dir_all(&cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        for ((i, file), m) in left.iter().zip(measured) {
            crate::util::write_json(file, &m)?;
            set_result(choices[*i].candidates.last_mut().expect("pushed"), m, false);
        }
    }
    for ch in choices.iter_mut().filter(|c| c.eligible) {
        pick(ch, cfg.target);
    }
    Ok(choices)
}

fn set_result(r: &mut CandidateResult, c: Measured, cached: bool) {
    let rate = |m: &Option<ModelMetrics>| m.as_ref().and_then(|m| m.exact_match.rate);
    r.score = if c.pilot.is_some() {
        rate(&c.pilot)
    } else {
        rate(&c.zero_shot)
    }
    .or(Some(0.0));
    r.zero_shot = c.zero_shot;
    r.pilot = c.pilot;
    r.pilot_steps = c.pilot_steps;
    r.pilot_capped = c.pilot_capped;
    r.cached = cached;
}
