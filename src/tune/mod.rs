//! `slmforge tune` (phase 5): distils the LLM's own answers into a LoRA
//! adapter per cluster of calls, and measures base vs tuned on held-out calls.
//!
//! For each eligible cluster (from `plan.json` when the select stage has run,
//! else every non-outlier cluster with at least `min_examples` calls, or the
//! clusters named): encode every call with the model's chat template
//! (system + tool definitions + conversation, the LLM's response as the
//! target, loss on the answer tokens only), split it by call id (stable:
//! `data::split_of`), train (`train`), evaluate (`eval`), and write:
//!
//! ```text
//! OUT/tune_config.json                 the settings of the run
//! OUT/summary.json, OUT/summary.md     one entry per cluster
//! OUT/cluster-ID/adapter.safetensors   training layout (see lm::lora)
//! OUT/cluster-ID/adapter_config.json   LoRA config + base model sha256
//! OUT/cluster-ID/train_log.jsonl       per step: loss, lr, grad_norm...; per evaluation: val_loss
//! OUT/cluster-ID/eval.json             base vs tuned metrics with counts
//! OUT/cluster-ID/eval_samples.jsonl    expected and generated text per test call
//! OUT/cluster-ID/tune.json             counts, lengths, training summary, data/model hashes
//! OUT/cluster-ID/checkpoint/           while unfinished (removed when done)
//! ```
//!
//! Invariants: a call's split depends only on its id; a run is deterministic
//! for a seed (unless a wall-clock budget cuts it); `--resume` after a stop
//! or a crash ends with the same adapter as an uninterrupted run; no call is
//! dropped or truncated without being counted in `tune.json`.

pub mod bench;
pub mod data;
pub mod eval;
pub mod report;
pub mod train;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::call::RedactedCall;
use crate::lm::{LanguageModel, LoraConfig, LoraTarget};
use crate::util::usage;
use data::{ClusterData, EncodeCounts, LengthStats, Overlong, Split, SplitFractions};
use eval::EvalReport;
use train::{Schedule, TrainJob, TrainOutcome, TrainSummary};

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Decode cap; `None`: the longest training answer + `new_tokens_margin`.
    pub max_new_tokens: Option<usize>,
    pub new_tokens_margin: usize,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// At most this many test calls (the first by split position).
    pub max_test_calls: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            max_new_tokens: None,
            new_tokens_margin: 16,
            batch_size: 16,
            max_test_calls: 50,
        }
    }
}

/// Everything `tune` needs besides its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneConfig {
    /// Catalogue id or GGUF path (a `plan.json` entry may name another).
    pub base_model: String,
    pub lora: LoraConfig,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up from 0, in updates.
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// The decayed learning rate ends at `min_lr_ratio · lr`.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm.
    pub clip_norm: f64,
    /// At most this many examples per batch...
    pub batch_size: usize,
    /// ...and at most this many padded tokens (rows × longest row).
    pub batch_tokens: usize,
    /// Longest example in tokens (context + answer).
    pub max_len: usize,
    pub overlong: Overlong,
    /// Passes over the training split (the most; budgets below may stop earlier).
    pub epochs: usize,
    /// Most optimiser updates per cluster.
    pub max_steps: Option<usize>,
    /// Most training tokens (non-padding) per cluster: a deterministic proxy
    /// for time (about 300 tokens/s for SmolLM2-135M on 2 cores).
    pub max_train_tokens: Option<usize>,
    /// Wall-clock cap on training per cluster, in seconds (not deterministic).
    pub time_budget_secs: Option<f64>,
    /// Validation loss every this many updates (and at the end).
    pub eval_every: usize,
    /// Stop after this many validation losses without improvement (0: never).
    pub patience: usize,
    /// Validation calls used for the loss (the first by split position).
    pub max_val_calls: usize,
    /// Checkpoint every this many updates (0: only when stopping).
    pub checkpoint_every: usize,
    /// Clusters with fewer calls are not tuned.
    pub min_examples: usize,
    pub split: SplitFractions,
    pub seed: u64,
    pub eval: EvalConfig,
    /// `cpu` or `cuda` (needs a build with `--features cuda`).
    pub device: String,
    /// Keep `checkpoint/` after a cluster is finished.
    pub keep_checkpoints: bool,
    /// Stop (with a checkpoint, as Ctrl-C does) after this many updates in
    /// this invocation: for tests and time-sliced runs.
    #[serde(skip)]
    pub stop_after_steps: Option<usize>,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            base_model: crate::models::default_base_model().to_string(),
            lora: LoraConfig {
                rank: 16,
                alpha: 32.0,
                dropout: 0.0,
                targets: LoraTarget::ALL.to_vec(),
                rslora: false,
            },
            lr: 3e-3,
            warmup_steps: 5,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            clip_norm: 1.0,
            batch_size: 8,
            batch_tokens: 1536,
            max_len: 1024,
            overlong: Overlong::Truncate,
            epochs: 2,
            max_steps: None,
            max_train_tokens: None,
            time_budget_secs: Some(600.0),
            eval_every: 25,
            patience: 3,
            max_val_calls: 16,
            checkpoint_every: 10,
            min_examples: 50,
            split: SplitFractions::default(),
            seed: 0,
            eval: EvalConfig::default(),
            device: "cpu".into(),
            keep_checkpoints: false,
            stop_after_steps: None,
        }
    }
}

impl TuneConfig {
    /// Checks values; errors are usage errors (exit 2).
    pub fn validate(&self) -> Result<()> {
        self.lora.validate().map_err(|e| usage(format!("{e}")))?;
        self.split.validate()?;
        let bad = |m: String| Err(usage(m));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be > 0, got {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            ));
        }
        if !(self.weight_decay >= 0.0 && self.clip_norm > 0.0) {
            return bad("weight decay must be >= 0 and clip norm > 0".into());
        }
        if self.batch_size == 0 || self.batch_tokens == 0 || self.epochs == 0 {
            return bad("batch size, batch tokens and epochs must be at least 1".into());
        }
        if self.max_len < 8 {
            return bad(format!("max_len {} is too small", self.max_len));
        }
        if self.eval.batch_size == 0 {
            return bad("eval batch size must be at least 1".into());
        }
        Ok(())
    }

    /// Fields that change what training produces (for checkpoint checks).
    fn training_fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "lora": self.lora, "lr": self.lr, "warmup": self.warmup_steps,
            "schedule": self.schedule, "min_lr_ratio": self.min_lr_ratio,
            "wd": self.weight_decay, "clip": self.clip_norm, "batch": self.batch_size,
            "batch_tokens": self.batch_tokens, "max_len": self.max_len, "overlong": self.overlong,
            "epochs": self.epochs, "max_steps": self.max_steps, "max_train_tokens": self.max_train_tokens,
            "eval_every": self.eval_every, "patience": self.patience, "max_val_calls": self.max_val_calls,
            "split": self.split, "seed": self.seed,
        })
    }
}

/// What happened to one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterStatus {
    /// Trained and evaluated in this run.
    Tuned,
    /// Already finished by an earlier run (`--resume`).
    AlreadyDone,
    /// Not tuned (`skip_reason` says why).
    Skipped,
    /// Stopped by Ctrl-C or `stop_after_steps`; a checkpoint holds the state.
    Interrupted,
}

/// One cluster's result (also written as `cluster-ID/tune.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterResult {
    pub cluster: i32,
    pub label_terms: Vec<String>,
    pub dir: PathBuf,
    pub status: ClusterStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    pub counts: EncodeCounts,
    pub lengths: LengthStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalReport>,
    pub base_model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_data_sha256: Option<String>,
    pub eval_secs: f64,
}

/// What [`run`] returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneOutput {
    pub out: PathBuf,
    pub clusters: Vec<ClusterResult>,
    /// True when the run stopped early (Ctrl-C / `stop_after_steps`).
    pub interrupted: bool,
}

static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// The flag Ctrl-C sets; training and evaluation check it between steps.
pub fn interrupt_flag() -> &'static AtomicBool {
    &INTERRUPT
}

fn cluster_dir(out: &Path, id: i32) -> PathBuf {
    out.join(format!("cluster-{id}"))
}

pub const TUNE_FILE: &str = "tune.json";
/// The cluster's usual context (system prompt + tools), for `generate`.
pub const PROMPT_FILE: &str = "prompt.json";

/// The context a cluster's calls share most often: the system prompt and
/// tool definitions of the most frequent (system, tools) pair (ties: the
/// first in call order). Written to `cluster-ID/prompt.json` so that
/// `slmforge generate --adapter` can put a hand-written request in the
/// context the adapter was trained on. The texts are the redacted ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterPrompt {
    pub system: Option<String>,
    pub tools: Vec<crate::call::ToolDef>,
    /// Calls of the cluster with exactly this context.
    pub calls_with_this_context: usize,
    pub calls: usize,
}

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
        },
    }
}

fn system_text(c: &RedactedCall) -> Option<String> {
    c.messages
        .iter()
        .find(|m| m.role == crate::call::Role::System)
        .and_then(|m| m.content.clone())
}

fn context_key(c: &RedactedCall) -> String {
    serde_json::to_string(&(system_text(c), &c.tools)).unwrap_or_default()
}
pub const EVAL_FILE: &str = "eval.json";

/// A cluster chosen for tuning.
#[derive(Clone, Debug)]
struct Chosen {
    id: i32,
    base_model: String,
    calls: usize,
}

/// Reads the inputs and decides which clusters to tune.
fn select(
    cfg: &TuneConfig,
    dataset_dir: &Path,
    named: Option<&[i32]>,
) -> Result<(HashMap<i32, Vec<String>>, Vec<Chosen>)> {
    if !dataset_dir.is_dir() {
        return Err(usage(format!(
            "dataset directory {} does not exist: run `slmforge ingest LOGS --out {}` first",
            dataset_dir.display(),
            dataset_dir.display()
        )));
    }
    if !dataset_dir.join(crate::dataset::CALLS_FILE).exists() {
        return Err(usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` first",
            dataset_dir.join(crate::dataset::CALLS_FILE).display(),
            dataset_dir.display()
        )));
    }
    let assignments = data::read_clusters(dataset_dir)?;
    let mut members: HashMap<i32, Vec<String>> = HashMap::new();
    for (id, k) in assignments {
        members.entry(k).or_default().push(id);
    }
    let mut known: Vec<i32> = members
        .keys()
        .copied()
        .filter(|&k| k != data::OUTLIER)
        .collect();
    known.sort_unstable();
    let known_list = || {
        known
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let size = |k: i32| members.get(&k).map_or(0, Vec::len);
    let chosen: Vec<Chosen> = if let Some(ids) = named {
        let mut out = Vec::new();
        for &k in ids {
            if k == data::OUTLIER {
                return Err(usage("cluster -1 holds the outliers and cannot be tuned"));
            }
            if !members.contains_key(&k) {
                return Err(usage(format!(
                    "unknown cluster id {k} (clusters in {}: {})",
                    dataset_dir.join(data::CLUSTERS_FILE).display(),
                    known_list()
                )));
            }
            if size(k) < cfg.min_examples {
                return Err(usage(format!(
                    "cluster {k} has {} calls, fewer than the minimum of {} (lower --min-examples to tune it anyway)",
                    size(k),
                    cfg.min_examples
                )));
            }
            if !out.iter().any(|c: &Chosen| c.id == k) {
                out.push(Chosen {
                    id: k,
                    base_model: cfg.base_model.clone(),
                    calls: size(k),
                });
            }
        }
        out
    } else if let Some(plan) = data::read_plan(dataset_dir)? {
        let mut out = Vec::new();
        for e in plan {
            if !members.contains_key(&e.cluster) || e.cluster == data::OUTLIER {
                return Err(usage(format!(
                    "{} names cluster {} which is not in {} (clusters: {}); re-run `slmforge select`",
                    dataset_dir.join(data::PLAN_FILE).display(),
                    e.cluster,
                    data::CLUSTERS_FILE,
                    known_list()
                )));
            }
            out.push(Chosen {
                id: e.cluster,
                base_model: e.base_model.unwrap_or_else(|| cfg.base_model.clone()),
                calls: size(e.cluster),
            });
        }
        out
    } else {
        known
            .iter()
            .filter(|&&k| size(k) >= cfg.min_examples)
            .map(|&k| Chosen {
                id: k,
                base_model: cfg.base_model.clone(),
                calls: size(k),
            })
            .collect()
    };
    if chosen.is_empty() {
        return Err(usage(format!(
            "no cluster to tune: none of the {} clusters has at least {} calls (--min-examples)",
            known.len(),
            cfg.min_examples
        )));
    }
    Ok((members, chosen))
}

fn load_model(spec: &str, device: &candle_core::Device) -> Result<LanguageModel> {
    let path = crate::models::resolve_model(spec).map_err(|e| usage(format!("{e:#}")))?;
    crate::lm::load(&path, device)
}

/// Trains and evaluates an adapter for every chosen cluster of
/// `dataset_dir`, writing under `out`. `clusters` restricts the run to these
/// ids; `resume` continues an earlier run in `out` (finished clusters are
/// skipped, unfinished ones continue from their checkpoint).
pub fn run(
    cfg: &TuneConfig,
    dataset_dir: &Path,
    out: &Path,
    clusters: Option<&[i32]>,
    resume: bool,
) -> Result<TuneOutput> {
    cfg.validate()?;
    let (members, chosen) = select(cfg, dataset_dir, clusters)?;
    let labels = data::read_cluster_labels(dataset_dir);
    if !resume {
        let taken = out.join(report::SUMMARY_JSON).exists()
            || chosen.iter().any(|c| cluster_dir(out, c.id).exists());
        if taken {
            return Err(usage(format!(
                "{} already holds a tune run: pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    crate::util::write_json(&out.join("tune_config.json"), cfg)?;
    let device = crate::lm::generate::device_from_name(&cfg.device)?;
    let calls = crate::dataset::read_calls(dataset_dir)?;
    let by_id: HashMap<String, &RedactedCall> = calls.iter().map(|c| (c.id(), c)).collect();

    let mut results: Vec<ClusterResult> = Vec::new();
    let mut loaded: Option<(String, LanguageModel, crate::lm::Llama)> = None;
    let mut interrupted = false;
    for (n, ch) in chosen.iter().enumerate() {
        let dir = cluster_dir(out, ch.id);
        let terms = labels.get(&ch.id).cloned().unwrap_or_default();
        if resume && dir.join(EVAL_FILE).is_file() && dir.join(TUNE_FILE).is_file() {
            let mut r: ClusterResult = serde_json::from_slice(&std::fs::read(dir.join(TUNE_FILE))?)
                .with_context(|| format!("reading {}", dir.join(TUNE_FILE).display()))?;
            r.status = ClusterStatus::AlreadyDone;
            eprintln!("tune: cluster {} already finished, skipping", ch.id);
            results.push(r);
            continue;
        }
        if loaded.as_ref().is_none_or(|(s, _, _)| *s != ch.base_model) {
            drop(loaded.take());
            let lm = load_model(&ch.base_model, &device)?;
            let base = lm.model.clone();
            loaded = Some((ch.base_model.clone(), lm, base));
        }
        let (_, lm, base) = loaded.as_mut().expect("model loaded");
        let ids = &members[&ch.id];
        let cluster_calls: Vec<&RedactedCall> =
            ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
        let mut cd =
            data::encode_cluster(lm, &cluster_calls, cfg.max_len, cfg.overlong, &cfg.split);
        cd.counts.missing_calls = ids.len() - cluster_calls.len();
        cd.counts.calls = ids.len();
        let label = if terms.is_empty() {
            String::new()
        } else {
            format!(" ({})", terms.join(", "))
        };
        eprintln!(
            "tune [{}/{}] cluster {}{label}: {} calls -> {} train / {} val / {} test examples ({} truncated, {} dropped)",
            n + 1,
            chosen.len(),
            ch.id,
            ch.calls,
            cd.counts.train,
            cd.counts.val,
            cd.counts.test,
            cd.counts.truncated,
            cd.counts.dropped_overlong
                + cd.counts.dropped_answer_too_long
                + cd.counts.dropped_empty_answer
                + cd.counts.dropped_render_error
                + cd.counts.missing_calls
        );
        let mut result = ClusterResult {
            cluster: ch.id,
            label_terms: terms,
            dir: dir.clone(),
            status: ClusterStatus::Skipped,
            skip_reason: None,
            counts: cd.counts.clone(),
            lengths: cd.lengths.clone(),
            train: None,
            eval: None,
            base_model: lm.path().display().to_string(),
            base_model_sha256: None,
            train_data_sha256: None,
            eval_secs: 0.0,
        };
        if cd.counts.examples < cfg.min_examples.min(ch.calls).max(2) || cd.counts.train == 0 {
            result.skip_reason = Some(format!(
                "{} usable examples ({} for training)",
                cd.counts.examples, cd.counts.train
            ));
            eprintln!(
                "tune: cluster {} skipped: {}",
                ch.id,
                result.skip_reason.as_deref().unwrap_or("")
            );
            results.push(result);
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::util::write_json(&dir.join(PROMPT_FILE), &cluster_prompt(&cluster_calls))?;
        match tune_cluster(cfg, lm, base, &cd, &dir, resume, &mut result)? {
            true => {}
            false => {
                result.status = ClusterStatus::Interrupted;
                results.push(result);
                interrupted = true;
                break;
            }
        }
        results.push(result);
        report::write_summary(out, cfg, &results, false)?;
    }
    report::write_summary(out, cfg, &results, interrupted)?;
    Ok(TuneOutput {
        out: out.to_path_buf(),
        clusters: results,
        interrupted,
    })
}

/// The test calls evaluated and the validation calls used for the loss:
/// the first ones by split position (a stable sample).
fn capped<'a>(cd: &'a ClusterData, s: Split, cap: usize) -> Vec<&'a data::Example> {
    let mut v = cd.split(s);
    v.sort_by(|a, b| {
        data::split_point(&a.call_id)
            .total_cmp(&data::split_point(&b.call_id))
            .then_with(|| a.call_id.cmp(&b.call_id))
    });
    v.truncate(cap);
    v
}

/// Trains, saves and evaluates one cluster. Returns false when interrupted.
fn tune_cluster(
    cfg: &TuneConfig,
    lm: &mut LanguageModel,
    base: &crate::lm::Llama,
    cd: &ClusterData,
    dir: &Path,
    resume: bool,
    result: &mut ClusterResult,
) -> Result<bool> {
    let train_set = cd.split(Split::Train);
    let val_set = capped(cd, Split::Val, cfg.max_val_calls);
    let test_set = capped(cd, Split::Test, cfg.eval.max_test_calls);
    let base_sha = lm.base_sha256()?;
    let data_sha = data::train_data_sha256(&train_set);
    let val_ids: Vec<&str> = val_set.iter().map(|e| e.call_id.as_str()).collect();
    let fingerprint = crate::util::sha256_hex(
        serde_json::to_string(&serde_json::json!({
            "config": cfg.training_fingerprint(), "base": base_sha, "train": data_sha, "val": val_ids,
        }))?
        .as_bytes(),
    );
    result.base_model_sha256 = Some(base_sha);
    result.train_data_sha256 = Some(data_sha);

    lm.model.add_lora(&cfg.lora, cfg.seed)?;
    let job = TrainJob {
        cfg,
        model: &lm.model,
        pad_id: lm.tokenizer.pad_id(),
        train: &train_set,
        val: &val_set,
        dir,
        fingerprint,
        resume,
        interrupt: interrupt_flag(),
        label: format!("cluster {}", result.cluster),
    };
    let summary = match train::train(&job)? {
        TrainOutcome::Finished(s) => s,
        TrainOutcome::Interrupted { step } => {
            eprintln!(
                "tune: cluster {} stopped at step {step}; checkpoint in {}",
                result.cluster,
                dir.join(train::CHECKPOINT_DIR).display()
            );
            return Ok(false);
        }
    };
    lm.save_adapter_dir(dir)?;
    eprintln!(
        "tune: cluster {} trained: {} steps ({:.2} epochs, {}) in {:.0}s, {:.0} tok/s; val loss {} -> {}",
        result.cluster,
        summary.steps,
        summary.epochs,
        serde_json::to_value(summary.stop_reason)?.as_str().unwrap_or(""),
        summary.train_secs,
        summary.tokens_per_sec,
        summary.val_loss_base.map_or("-".into(), |v| format!("{v:.3}")),
        summary.best_val_loss.map_or("-".into(), |v| format!("{v:.3}")),
    );
    result.train = Some(summary);

    // Evaluation.
    let t0 = Instant::now();
    let max_new = cfg
        .eval
        .max_new_tokens
        .unwrap_or(cd.lengths.max_train_answer_tokens + cfg.eval.new_tokens_margin)
        .max(1);
    let limits = eval::loss_limits(cfg.eval.batch_size, cfg.batch_tokens);
    let pad = lm.tokenizer.pad_id();
    let tuned_loss = train::mean_loss(&lm.model, &test_set, pad, limits)?;
    let base_loss = train::mean_loss(base, &test_set, pad, limits)?;
    let merged = lm.model.merge_lora()?;
    let flag = interrupt_flag();
    let Some(gen_tuned) =
        eval::generate_all(lm, &merged, &test_set, max_new, cfg.eval.batch_size, flag)?
    else {
        return Ok(false);
    };
    drop(merged);
    let Some(gen_base) =
        eval::generate_all(lm, base, &test_set, max_new, cfg.eval.batch_size, flag)?
    else {
        return Ok(false);
    };
    let (tuned_m, tuned_scores) = eval::model_metrics(lm, &test_set, &gen_tuned, tuned_loss);
    let (base_m, base_scores) = eval::model_metrics(lm, &test_set, &gen_base, base_loss);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &test_set {
        *kinds.entry(e.kind.to_string()).or_default() += 1;
    }
    let report = EvalReport {
        format: eval::EVAL_FORMAT.into(),
        cluster: result.cluster,
        test_calls: cd.counts.test,
        evaluated: test_set.len(),
        answer_kinds: kinds,
        max_new_tokens: max_new,
        batch_size: cfg.eval.batch_size,
        base: base_m,
        tuned: tuned_m,
        rules: "see the module docs of src/tune/eval.rs (README: tune evaluation rules)".into(),
    };
    // Per-call samples for people to inspect (redacted data only).
    let mut samples = String::new();
    for (i, e) in test_set.iter().enumerate() {
        let line = serde_json::json!({
            "call_id": e.call_id, "kind": e.kind,
            "expected": lm.chat.render_answer(&e.answer),
            "tuned": gen_tuned.texts[i], "tuned_score": tuned_scores[i],
            "base": gen_base.texts[i], "base_score": base_scores[i],
        });
        samples.push_str(&serde_json::to_string(&line)?);
        samples.push('\n');
    }
    crate::util::write_atomic(&dir.join("eval_samples.jsonl"), samples.as_bytes())?;
    result.eval_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "tune: cluster {} eval on {} test calls ({:.0}s): exact match base {}/{} -> tuned {}/{}",
        result.cluster,
        report.evaluated,
        result.eval_secs,
        report.base.exact_match.count,
        report.base.exact_match.of,
        report.tuned.exact_match.count,
        report.tuned.exact_match.of,
    );
    result.eval = Some(report.clone());
    result.status = ClusterStatus::Tuned;
    crate::util::write_json(&dir.join(TUNE_FILE), &*result)?;
    crate::util::write_json(&dir.join(EVAL_FILE), &report)?;
    if !cfg.keep_checkpoints {
        train::remove_checkpoints(dir)?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------
// CLI.

/// `slmforge tune DATASET_DIR --out adapters/RUN`.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Dataset directory (calls.parquet + clusters.parquet, optional plan.json).
    pub dataset: PathBuf,
    /// Output run directory (one sub-directory per cluster).
    #[arg(long)]
    pub out: PathBuf,
    /// Tune only these clusters (repeatable).
    #[arg(long = "cluster", value_name = "ID", allow_negative_numbers = true)]
    pub clusters: Vec<i32>,
    /// Continue an interrupted run in --out (same options).
    #[arg(long)]
    pub resume: bool,
    /// Show the clusters, example counts and token lengths, then stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub opts: TuneOpts,
}

/// The training and evaluation options of `tune` (also used by `bench tune`).
#[derive(clap::Args, Debug, Clone)]
pub struct TuneOpts {
    /// Base model: catalogue id or GGUF path.
    #[arg(long, default_value_t = crate::models::default_base_model().to_string())]
    pub model: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha (default: 2 x rank).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// LoRA dropout (costly on CPU: a mask per adapter input).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// Target projections, comma-separated (q,k,v,o,gate,up,down).
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    pub targets: Vec<String>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 5)]
    pub warmup_steps: usize,
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Most examples per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Most padded tokens per batch.
    #[arg(long, default_value_t = 1536)]
    pub batch_tokens: usize,
    /// Longest example in tokens (longer calls are truncated from the left, or dropped).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    #[arg(long, value_enum, default_value_t = Overlong::Truncate)]
    pub overlong: Overlong,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Most optimiser updates per cluster.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Most training tokens per cluster (deterministic time proxy).
    #[arg(long)]
    pub max_train_tokens: Option<usize>,
    /// Wall-clock training budget per cluster in seconds (0: none).
    #[arg(long, default_value_t = 600.0)]
    pub time_budget: f64,
    /// Validation loss every N updates.
    #[arg(long, default_value_t = 25)]
    pub eval_every: usize,
    /// Early stopping after N validation losses without improvement (0: off).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: usize,
    /// Clusters with fewer calls are not tuned.
    #[arg(long, default_value_t = 50)]
    pub min_examples: usize,
    /// Train and validation fractions (the test split is the rest).
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.1")]
    pub split: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decode cap at evaluation (default: longest training answer + 16).
    #[arg(long)]
    pub eval_max_new_tokens: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub eval_batch_size: usize,
    /// Test calls evaluated per cluster.
    #[arg(long, default_value_t = 50)]
    pub max_test_calls: usize,
    /// `cpu` or `cuda` (needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Keep checkpoints of finished clusters.
    #[arg(long)]
    pub keep_checkpoints: bool,
}

impl TuneOpts {
    pub fn config(&self) -> Result<TuneConfig> {
        let targets = self
            .targets
            .iter()
            .map(|t| {
                LoraTarget::parse(t).ok_or_else(|| {
                    usage(format!("unknown LoRA target {t:?} (q,k,v,o,gate,up,down)"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if self.split.len() != 2 {
            return Err(usage("--split takes two fractions: TRAIN,VAL"));
        }
        let d = TuneConfig::default();
        Ok(TuneConfig {
            base_model: self.model.clone(),
            lora: LoraConfig {
                rank: self.rank,
                alpha: self.alpha.unwrap_or(2.0 * self.rank as f64),
                dropout: self.lora_dropout,
                targets,
                rslora: false,
            },
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            schedule: self.schedule,
            weight_decay: self.weight_decay,
            clip_norm: self.clip_norm,
            batch_size: self.batch_size,
            batch_tokens: self.batch_tokens,
            max_len: self.max_len,
            overlong: self.overlong,
            epochs: self.epochs,
            max_steps: self.max_steps,
            max_train_tokens: self.max_train_tokens,
            time_budget_secs: (self.time_budget > 0.0).then_some(self.time_budget),
            eval_every: self.eval_every,
            patience: self.patience,
            checkpoint_every: self.checkpoint_every,
            min_examples: self.min_examples,
            split: SplitFractions {
                train: self.split[0],
                val: self.split[1],
            },
            seed: self.seed,
            eval: EvalConfig {
                max_new_tokens: self.eval_max_new_tokens,
                batch_size: self.eval_batch_size,
                max_test_calls: self.max_test_calls,
                ..d.eval.clone()
            },
            device: self.device.clone(),
            keep_checkpoints: self.keep_checkpoints,
            ..d
        })
    }
}

/// One chosen cluster's encoded calls (what `--dry-run` shows).
pub struct Prepared {
    pub cluster: i32,
    pub base_model: String,
    pub data: ClusterData,
}

/// Selects the clusters and encodes their calls, without training.
pub fn prepare(
    cfg: &TuneConfig,
    dataset_dir: &Path,
    clusters: Option<&[i32]>,
) -> Result<Vec<Prepared>> {
    cfg.validate()?;
    let (members, chosen) = select(cfg, dataset_dir, clusters)?;
    let device = crate::lm::generate::device_from_name(&cfg.device)?;
    let calls = crate::dataset::read_calls(dataset_dir)?;
    let by_id: HashMap<String, &RedactedCall> = calls.iter().map(|c| (c.id(), c)).collect();
    let mut lm: Option<(String, LanguageModel)> = None;
    let mut out = Vec::new();
    for ch in &chosen {
        if lm.as_ref().is_none_or(|(s, _)| *s != ch.base_model) {
            drop(lm.take());
            lm = Some((ch.base_model.clone(), load_model(&ch.base_model, &device)?));
        }
        let (_, m) = lm.as_ref().expect("loaded");
        let ids = &members[&ch.id];
        let cc: Vec<&RedactedCall> = ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
        let mut data = data::encode_cluster(m, &cc, cfg.max_len, cfg.overlong, &cfg.split);
        data.counts.missing_calls = ids.len() - cc.len();
        data.counts.calls = ids.len();
        out.push(Prepared {
            cluster: ch.id,
            base_model: ch.base_model.clone(),
            data,
        });
    }
    Ok(out)
}

/// Per-cluster encoding figures without training (`--dry-run`): a line per
/// cluster on stderr, JSON on stdout.
pub fn dry_run(cfg: &TuneConfig, dataset_dir: &Path, clusters: Option<&[i32]>) -> Result<()> {
    let labels = data::read_cluster_labels(dataset_dir);
    let mut rows = Vec::new();
    for p in prepare(cfg, dataset_dir, clusters)? {
        let cd = &p.data;
        let train = cd.split(Split::Train);
        let lens: Vec<usize> = train.iter().map(|e| e.ex.ids.len()).collect();
        let limits = data::BatchLimits {
            max_examples: cfg.batch_size,
            max_tokens: cfg.batch_tokens,
        };
        let plan = data::epoch_plan(train.len(), &lens, limits, 1, cfg.seed);
        let steps_per_epoch = plan.first().map_or(0, Vec::len);
        let padded: usize = plan.first().map_or(0, |e| {
            e.iter()
                .map(|b| b.len() * b.iter().map(|&i| lens[i]).max().unwrap_or(0))
                .sum()
        });
        let tokens: usize = lens.iter().sum();
        let c = &cd.counts;
        let dropped = c.dropped_overlong
            + c.dropped_answer_too_long
            + c.dropped_empty_answer
            + c.dropped_render_error
            + c.missing_calls;
        eprintln!(
            "cluster {:>4}: {:>5} calls, train/val/test {}/{}/{}, truncated {}, dropped {dropped}, tokens mean {:.0} max {}, answer mean {:.0} max {}, {steps_per_epoch} steps/epoch, {tokens} train tokens/epoch ({:.0}% padding)",
            p.cluster, c.calls, c.train, c.val, c.test, c.truncated,
            cd.lengths.mean_tokens, cd.lengths.max_tokens, cd.lengths.mean_answer_tokens, cd.lengths.max_answer_tokens,
            100.0 * (padded as f64 - tokens as f64) / padded.max(1) as f64,
        );
        rows.push(serde_json::json!({
            "cluster": p.cluster, "label_terms": labels.get(&p.cluster).cloned().unwrap_or_default(),
            "base_model": p.base_model, "counts": c, "lengths": cd.lengths,
            "steps_per_epoch": steps_per_epoch, "train_tokens_per_epoch": tokens,
            "padded_tokens_per_epoch": padded,
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "clusters": rows }))?
    );
    Ok(())
}

/// `slmforge tune`: exit 0 when done, 130 when stopped by Ctrl-C (after
/// saving a checkpoint), 2 on unusable input.
pub fn cli(args: TuneArgs) -> Result<ExitCode> {
    crate::lm::init_runtime();
    let cfg = args.opts.config()?;
    let named = (!args.clusters.is_empty()).then_some(args.clusters.as_slice());
    if args.dry_run {
        dry_run(&cfg, &args.dataset, named)?;
        return Ok(ExitCode::SUCCESS);
    }
    install_ctrlc();
    let out = run(&cfg, &args.dataset, &args.out, named, args.resume)?;
    eprint!("{}", report::summary_text(&out));
    if out.interrupted {
        eprintln!(
            "tune: interrupted; the state is saved. Continue with the same command plus --resume (out: {})",
            out.out.display()
        );
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "tune: done. Summary: {}",
        out.out.join(report::SUMMARY_MD).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// First Ctrl-C: finish the current step, save a checkpoint, exit 130.
/// Second Ctrl-C: exit at once.
pub fn install_ctrlc() {
    let res = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            eprintln!("\ntune: second interrupt, exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\ntune: interrupt received, stopping after the current step (Ctrl-C again to quit now)");
    });
    if res.is_err() {
        eprintln!("tune: note: could not install the Ctrl-C handler; an interrupt will not save a checkpoint");
    }
}
