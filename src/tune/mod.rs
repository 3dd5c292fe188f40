//! `slmforge tune` (phase 5): distils the LLM's own answers into a LoRA
//! adapter per cluster of calls, and measures base vs tuned on held-out calls.
//!
//! For each cluster the select stage chose ([`TuneTarget`]): encode every
//! call with the model's chat template (system + tool definitions +
//! conversation, the LLM's response as the target, loss on the answer tokens
//! only), split it by call id (stable: [`split::split_of`]), train
//! ([`train`]), evaluate ([`eval`]), and write the adapter artifacts
//! ([`crate::artifact::adapter`]):
//!
//! ```text
//! OUT/tune_config.json                 the settings of the run
//! OUT/summary.json, OUT/summary.md     one entry per cluster
//! OUT/cluster-ID/adapter.safetensors   training layout (see ml::lm::lora)
//! OUT/cluster-ID/adapter_config.json   LoRA config + base model sha256
//! OUT/cluster-ID/prompt.json           the cluster's usual system prompt and tools
//! OUT/cluster-ID/train_log.jsonl       per step: loss, lr, grad_norm...; per evaluation: val_loss
//! OUT/cluster-ID/eval.json             base vs tuned metrics with counts
//! OUT/cluster-ID/eval_samples.jsonl    expected and generated text per test call
//! OUT/cluster-ID/tune.json             counts, lengths, training summary, data/model hashes
//! OUT/cluster-ID/checkpoint/           while unfinished (removed when done)
//! ```
//!
//! Invariants: a call's split depends only on its id; a run is deterministic
//! for a seed (unless a wall-clock budget cuts it); resuming after a stop
//! or a crash ends with the same adapter as an uninterrupted run; no call is
//! dropped or truncated without being counted in `tune.json`.

pub mod data;
pub mod eval;
pub mod report;
pub mod train;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::artifact::adapter::{
    cluster_dir, ClusterPrompt, ClusterResult, ClusterStatus, EvalReport, GuideFallback,
    GuidedEval, EVAL_FILE, EVAL_FORMAT, PROMPT_FILE, SAMPLES_FILE, SUMMARY_JSON, TUNE_CONFIG_FILE,
    TUNE_FILE,
};
use crate::artifact::plan::TuneTarget;
use crate::artifact::split::{self, Split, SplitFractions};
use crate::call::{RedactedCall, Response};
use crate::ml::lm::guide::{AnswerShape, Constraint};
use crate::ml::lm::{CausalLm, LanguageModel, LoraConfig, LoraTarget};
use crate::ml::models::default_base_model;
use crate::util::usage;
use data::ClusterData;
pub use data::{Overlong, Prune};
use train::optim::Schedule;
use train::{TrainJob, TrainOutcome};

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
    /// Also evaluate schema-guided decoding (base and tuned): tool calls
    /// and JSON answers constrained to their schemas, as a deployment serves.
    #[serde(default = "yes")]
    pub guided: bool,
}

fn yes() -> bool {
    true
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            max_new_tokens: None,
            new_tokens_margin: 16,
            batch_size: 16,
            max_test_calls: 50,
            guided: true,
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
    /// Train on prompts with the static pieces replaced by markers.
    pub prune: Prune,
    /// A piece is static when this share of the calls hold it exactly.
    pub static_threshold: f64,
    /// `prune = auto` prunes when the static pieces average this many
    /// characters per call.
    pub prune_min_chars: usize,
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
    /// Keep `checkpoint/` after a cluster is finished.
    pub keep_checkpoints: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            base_model: default_base_model().to_string(),
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
            prune: Prune::Auto,
            static_threshold: 0.8,
            prune_min_chars: 400,
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
            keep_checkpoints: false,
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
    pub fn training_fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "lora": self.lora, "lr": self.lr, "warmup": self.warmup_steps,
            "schedule": self.schedule, "min_lr_ratio": self.min_lr_ratio,
            "wd": self.weight_decay, "clip": self.clip_norm, "batch": self.batch_size,
            "batch_tokens": self.batch_tokens, "max_len": self.max_len, "overlong": self.overlong,
            "prune": self.prune, "static_threshold": self.static_threshold, "prune_min_chars": self.prune_min_chars,
            "epochs": self.epochs, "max_steps": self.max_steps, "max_train_tokens": self.max_train_tokens,
            "eval_every": self.eval_every, "patience": self.patience, "max_val_calls": self.max_val_calls,
            "split": self.split, "seed": self.seed,
        })
    }
}

/// How a run starts: afresh (the output directory must not hold a run), or
/// continuing an interrupted run in it (finished clusters are skipped,
/// unfinished ones continue from their checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
}

/// How a run (or a cluster's training) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finished,
    /// Stopped by Ctrl-C or `stop_after_steps`; a checkpoint holds the state.
    Interrupted,
}

/// How this invocation runs, apart from the training recipe
/// ([`TuneConfig`]): the device, fresh or resumed, and an optional stop.
#[derive(Clone, Debug)]
pub struct Session {
    pub device: Device,
    pub start: Start,
    /// Stop (with a checkpoint, as Ctrl-C does) after this many updates in
    /// this invocation: for tests and time-sliced runs.
    pub stop_after_steps: Option<usize>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            device: Device::Cpu,
            start: Start::Fresh,
            stop_after_steps: None,
        }
    }
}

/// What [`run`] returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneOutput {
    pub out: PathBuf,
    pub clusters: Vec<ClusterResult>,
    pub outcome: Outcome,
}

static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// The flag Ctrl-C sets; training and evaluation check it between steps.
pub fn interrupt_flag() -> &'static AtomicBool {
    &INTERRUPT
}

fn load_model(spec: &str, device: &Device) -> Result<LanguageModel> {
    let path = crate::ml::models::resolve_model(spec)?;
    crate::ml::lm::load(&path, device)
}

/// What a run reads from the dataset: the calls, and each cluster's label
/// terms (from `clusters.json` when present).
struct Inputs {
    calls: Vec<RedactedCall>,
    labels: HashMap<i32, Vec<String>>,
}

fn read_inputs(dataset_dir: &Path) -> Result<Inputs> {
    Ok(Inputs {
        calls: crate::artifact::calls::read_calls(dataset_dir)?,
        labels: crate::artifact::clusters::read_labels(dataset_dir)?,
    })
}

/// A target cluster's usual context with its static pieces and pruning
/// rule, and its calls encoded under that rule; members missing from
/// `calls.parquet` are counted as missing.
fn encode(
    by_id: &HashMap<String, &RedactedCall>,
    lm: &LanguageModel,
    cfg: &TuneConfig,
    target: &TuneTarget,
) -> (ClusterPrompt, ClusterData) {
    let ids = &target.members;
    let calls: Vec<&RedactedCall> = ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
    let mut prompt = data::cluster_prompt(&calls);
    let mut parts = data::static_parts(&calls, cfg.static_threshold);
    let rule = data::prune_rule(
        &mut parts,
        cfg.prune,
        cfg.prune_min_chars,
        &format!("cluster-{}", target.cluster),
    );
    prompt.static_parts = parts;
    prompt.prune = rule;
    let mut cd = data::encode_cluster(
        lm,
        &calls,
        cfg.max_len,
        cfg.overlong,
        &cfg.split,
        prompt.prune.as_ref(),
    );
    cd.counts.missing_calls = ids.len() - calls.len();
    cd.counts.calls = ids.len();
    let train_answers: Vec<&Response> = cd.split(Split::Train).iter().map(|e| &e.answer).collect();
    prompt.answers = Some(AnswerShape::from_answers(&train_answers));
    (prompt, cd)
}

/// The settings of a run as `tune_config.json` and `summary.json` record
/// them: the config, the device and the dataset.
fn settings_json(
    cfg: &TuneConfig,
    session: &Session,
    dataset_dir: &Path,
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(cfg)?;
    v["device"] = crate::ml::runtime::device_name(&session.device).into();
    v["dataset"] = dataset_dir.to_string_lossy().into_owned().into();
    Ok(v)
}

/// Refuses to start afresh over an earlier run.
fn check_out_dir(out: &Path, targets: &[TuneTarget], start: Start) -> Result<()> {
    if start == Start::Resume {
        return Ok(());
    }
    let taken = out.join(SUMMARY_JSON).exists()
        || targets.iter().any(|t| cluster_dir(out, t.cluster).exists());
    if taken {
        return Err(usage(format!(
            "{} already holds a tune run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    Ok(())
}

/// Trains and evaluates an adapter for every target cluster of
/// `dataset_dir`, writing under `out`.
pub fn run(
    cfg: &TuneConfig,
    session: &Session,
    dataset_dir: &Path,
    targets: &[TuneTarget],
    out: &Path,
) -> Result<TuneOutput> {
    cfg.validate()?;
    check_out_dir(out, targets, session.start)?;
    let inputs = read_inputs(dataset_dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let settings = settings_json(cfg, session, dataset_dir)?;
    crate::util::write_json(&out.join(TUNE_CONFIG_FILE), &settings)?;
    let by_id: HashMap<String, &RedactedCall> = inputs.calls.iter().map(|c| (c.id(), c)).collect();

    let mut results: Vec<ClusterResult> = Vec::new();
    let mut loaded: Option<(String, LanguageModel, CausalLm)> = None;
    let mut outcome = Outcome::Finished;
    for (n, target) in targets.iter().enumerate() {
        let dir = cluster_dir(out, target.cluster);
        let terms = inputs
            .labels
            .get(&target.cluster)
            .cloned()
            .unwrap_or_default();
        if session.start == Start::Resume
            && dir.join(EVAL_FILE).is_file()
            && dir.join(TUNE_FILE).is_file()
        {
            let mut r: ClusterResult = serde_json::from_slice(&std::fs::read(dir.join(TUNE_FILE))?)
                .with_context(|| format!("reading {}", dir.join(TUNE_FILE).display()))?;
            r.status = ClusterStatus::AlreadyDone;
            eprintln!(
                "tune: cluster {} already finished, skipping",
                target.cluster
            );
            results.push(r);
            continue;
        }
        if loaded
            .as_ref()
            .is_none_or(|(s, _, _)| *s != target.base_model)
        {
            drop(loaded.take());
            let lm = load_model(&target.base_model, &session.device)?;
            let base = lm.model.clone();
            loaded = Some((target.base_model.clone(), lm, base));
        }
        let (_, lm, base) = loaded.as_mut().expect("model loaded");
        let (prompt, cd) = encode(&by_id, lm, cfg, target);
        let label = if terms.is_empty() {
            String::new()
        } else {
            format!(" ({})", terms.join(", "))
        };
        eprintln!(
            "tune [{}/{}] cluster {}{label}: {} calls -> {} train / {} val / {} test examples ({} truncated, {} dropped, {} pruned: {})",
            n + 1,
            targets.len(),
            target.cluster,
            target.members.len(),
            cd.counts.train,
            cd.counts.val,
            cd.counts.test,
            cd.counts.truncated,
            cd.counts.dropped(),
            cd.counts.pruned,
            prompt.static_parts.decision,
        );
        let mut result = ClusterResult {
            cluster: target.cluster,
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
        if cd.counts.examples < cfg.min_examples.min(target.members.len()).max(2)
            || cd.counts.train == 0
        {
            result.skip_reason = Some(format!(
                "{} usable examples ({} for training)",
                cd.counts.examples, cd.counts.train
            ));
            eprintln!(
                "tune: cluster {} skipped: {}",
                target.cluster,
                result.skip_reason.as_deref().unwrap_or("")
            );
            results.push(result);
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::util::write_json(&dir.join(PROMPT_FILE), &prompt)?;
        if tune_cluster(cfg, session, lm, base, &cd, &dir, &mut result)? == Outcome::Interrupted {
            result.status = ClusterStatus::Interrupted;
            results.push(result);
            outcome = Outcome::Interrupted;
            break;
        }
        results.push(result);
        report::write_summary(out, &settings, &results, Outcome::Finished)?;
    }
    report::write_summary(out, &settings, &results, outcome)?;
    Ok(TuneOutput {
        out: out.to_path_buf(),
        clusters: results,
        outcome,
    })
}

/// The test calls evaluated and the validation calls used for the loss:
/// the first ones by split position (a stable sample).
fn capped(cd: &ClusterData, s: Split, cap: usize) -> Vec<&data::Example> {
    let mut v = cd.split(s);
    v.sort_by(|a, b| {
        split::split_point(&a.call_id)
            .total_cmp(&split::split_point(&b.call_id))
            .then_with(|| a.call_id.cmp(&b.call_id))
    });
    v.truncate(cap);
    v
}

/// Trains, saves and evaluates one cluster.
fn tune_cluster(
    cfg: &TuneConfig,
    session: &Session,
    lm: &mut LanguageModel,
    base: &CausalLm,
    cd: &ClusterData,
    dir: &Path,
    result: &mut ClusterResult,
) -> Result<Outcome> {
    let train_set = cd.split(Split::Train);
    let val_set = capped(cd, Split::Val, cfg.max_val_calls);
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
        start: session.start,
        stop_after_steps: session.stop_after_steps,
        interrupt: interrupt_flag(),
        label: format!("cluster {}", result.cluster),
    };
    let summary = match train::train(&job)? {
        TrainOutcome::Finished(s) => s,
        TrainOutcome::Interrupted { step } => {
            eprintln!(
                "tune: cluster {} stopped at step {step}; checkpoint in {}",
                result.cluster,
                dir.join(train::checkpoint::CHECKPOINT_DIR).display()
            );
            return Ok(Outcome::Interrupted);
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
    let Some(report) = evaluate(cfg, lm, base, cd, dir, result)? else {
        return Ok(Outcome::Interrupted);
    };
    result.eval = Some(report.clone());
    result.status = ClusterStatus::Tuned;
    crate::util::write_json(&dir.join(TUNE_FILE), &*result)?;
    crate::util::write_json(&dir.join(EVAL_FILE), &report)?;
    if !cfg.keep_checkpoints {
        train::checkpoint::remove_checkpoints(dir)?;
    }
    Ok(Outcome::Finished)
}

/// Base vs tuned on the cluster's test calls (the first
/// `max_test_calls` by split position): losses, greedy generations, metrics,
/// and `eval_samples.jsonl`. `None` when interrupted.
fn evaluate(
    cfg: &TuneConfig,
    lm: &mut LanguageModel,
    base: &CausalLm,
    cd: &ClusterData,
    dir: &Path,
    result: &mut ClusterResult,
) -> Result<Option<EvalReport>> {
    let test_set = capped(cd, Split::Test, cfg.eval.max_test_calls);
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
    let merged = lm.model.for_inference()?;
    let flag = interrupt_flag();
    let bs = cfg.eval.batch_size;
    let pass = |m: &CausalLm, c: Option<&[Option<Constraint>]>| {
        eval::generate_all(lm, m, &test_set, c, max_new, bs, flag)
    };
    let train_answers: Vec<&Response> = cd.split(Split::Train).iter().map(|e| &e.answer).collect();
    let shape = AnswerShape::from_answers(&train_answers);
    let constraints = eval::constraints_for(&test_set, &shape);
    let guided = cfg.eval.guided && constraints.iter().any(Option::is_some);
    let Some(gen_tuned) = pass(&merged, None)? else {
        return Ok(None);
    };
    let gen_tuned_guided = match guided {
        true => match pass(&merged, Some(&constraints))? {
            Some(g) => Some(g),
            None => return Ok(None),
        },
        false => None,
    };
    drop(merged);
    let Some(gen_base) = pass(base, None)? else {
        return Ok(None);
    };
    let gen_base_guided = match guided {
        true => match pass(base, Some(&constraints))? {
            Some(g) => Some(g),
            None => return Ok(None),
        },
        false => None,
    };
    let (tuned_m, tuned_scores) = eval::model_metrics(lm, &test_set, &gen_tuned, tuned_loss);
    let (base_m, base_scores) = eval::model_metrics(lm, &test_set, &gen_base, base_loss);
    let guided_scores = match (&gen_tuned_guided, &gen_base_guided) {
        (Some(t), Some(b)) => Some((
            eval::model_metrics(lm, &test_set, t, tuned_loss),
            eval::model_metrics(lm, &test_set, b, base_loss),
        )),
        _ => None,
    };
    let guided_eval = match (&gen_tuned_guided, &guided_scores) {
        (Some(t), Some((tg, bg))) => Some(GuidedEval {
            constrained_calls: constraints.iter().filter(|c| c.is_some()).count(),
            fallbacks: t
                .fallbacks
                .iter()
                .map(|(i, why)| GuideFallback {
                    call_id: test_set[*i].call_id.clone(),
                    reason: why.clone(),
                })
                .collect(),
            tuned: tg.0.clone(),
            base: bg.0.clone(),
        }),
        _ => None,
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &test_set {
        *kinds.entry(e.kind.to_string()).or_default() += 1;
    }
    let report = EvalReport {
        format: EVAL_FORMAT.into(),
        cluster: result.cluster,
        test_calls: cd.counts.test,
        evaluated: test_set.len(),
        answer_kinds: kinds,
        max_new_tokens: max_new,
        batch_size: cfg.eval.batch_size,
        base: base_m,
        tuned: tuned_m,
        guided: guided_eval,
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
        let mut line = line;
        if let (Some(t), Some(b), Some((tg, bg))) =
            (&gen_tuned_guided, &gen_base_guided, &guided_scores)
        {
            line["tuned_guided"] = t.texts[i].clone().into();
            line["tuned_guided_score"] = serde_json::to_value(&tg.1[i])?;
            line["base_guided"] = b.texts[i].clone().into();
            line["base_guided_score"] = serde_json::to_value(&bg.1[i])?;
        }
        samples.push_str(&serde_json::to_string(&line)?);
        samples.push('\n');
    }
    crate::util::write_atomic(&dir.join(SAMPLES_FILE), samples.as_bytes())?;
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
    if let Some(g) = &report.guided {
        eprintln!(
            "tune: cluster {} guided ({} constrained calls, {} fell back): exact match base {}/{} -> tuned {}/{}",
            result.cluster,
            g.constrained_calls,
            g.fallbacks.len(),
            g.base.exact_match.count,
            g.base.exact_match.of,
            g.tuned.exact_match.count,
            g.tuned.exact_match.of,
        );
    }
    Ok(Some(report))
}

/// One chosen cluster's encoded calls (what `--dry-run` shows).
pub struct Prepared {
    pub cluster: i32,
    /// The cluster's usual context, static pieces and pruning rule.
    pub prompt: ClusterPrompt,
    pub label_terms: Vec<String>,
    pub base_model: String,
    pub data: ClusterData,
}

/// Selects the clusters and encodes their calls, without training.
pub fn prepare(
    cfg: &TuneConfig,
    device: &Device,
    dataset_dir: &Path,
    targets: &[TuneTarget],
) -> Result<Vec<Prepared>> {
    cfg.validate()?;
    let inputs = read_inputs(dataset_dir)?;
    let by_id: HashMap<String, &RedactedCall> = inputs.calls.iter().map(|c| (c.id(), c)).collect();
    let mut lm: Option<(String, LanguageModel)> = None;
    let mut out = Vec::new();
    for t in targets {
        if lm.as_ref().is_none_or(|(s, _)| *s != t.base_model) {
            drop(lm.take());
            lm = Some((t.base_model.clone(), load_model(&t.base_model, device)?));
        }
        let (_, m) = lm.as_ref().expect("loaded");
        let (prompt, data) = encode(&by_id, m, cfg, t);
        out.push(Prepared {
            cluster: t.cluster,
            prompt,
            label_terms: inputs.labels.get(&t.cluster).cloned().unwrap_or_default(),
            base_model: t.base_model.clone(),
            data,
        });
    }
    Ok(out)
}
