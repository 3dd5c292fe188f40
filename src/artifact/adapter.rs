//! The adapter run artifacts `tune` writes under `adapters/RUN/` and later
//! stages read: per cluster `tune.json` ([`ClusterResult`]), `eval.json`
//! ([`EvalReport`]), `prompt.json` ([`ClusterPrompt`]), `eval_samples.jsonl`,
//! `train_log.jsonl`; per run `tune_config.json`, `summary.json` and
//! `summary.md`. (The adapter tensors themselves, `adapter.safetensors` +
//! `adapter_config.json`, are the LoRA format of [`crate::ml::lm::lora`].)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::call::ToolDef;

/// Per cluster: counts, lengths, training summary, data/model hashes.
pub const TUNE_FILE: &str = "tune.json";
/// Per cluster: base vs tuned metrics with counts.
pub const EVAL_FILE: &str = "eval.json";
/// Per cluster: the cluster's usual context (system prompt + tools), for `generate`.
pub const PROMPT_FILE: &str = "prompt.json";
/// Per cluster: expected and generated text of each evaluated test call.
pub const SAMPLES_FILE: &str = "eval_samples.jsonl";
/// Per run: the settings of the run.
pub const TUNE_CONFIG_FILE: &str = "tune_config.json";
pub const SUMMARY_JSON: &str = "summary.json";
pub const SUMMARY_MD: &str = "summary.md";
pub const SUMMARY_FORMAT: &str = "slmforge-tune-summary-v1";

pub const EVAL_FORMAT: &str = "slmforge-tune-eval-v1";

/// The context a cluster's calls share most often: the system prompt and
/// tool definitions of the most frequent (system, tools) pair (ties: the
/// first in call order). Written to `cluster-ID/prompt.json` so that
/// `slmforge generate --adapter` can put a hand-written request in the
/// context the adapter was trained on. The texts are the redacted ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterPrompt {
    pub system: Option<String>,
    pub tools: Vec<ToolDef>,
    /// Calls of the cluster with exactly this context.
    pub calls_with_this_context: usize,
    pub calls: usize,
    /// The parts of the prompt that repeat across the cluster's calls.
    #[serde(default)]
    pub static_parts: StaticParts,
    /// The pruning the adapter was trained with (`None`: full prompts). The
    /// same rule must be applied before every generation with the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::ml::lm::prune::PruneRule>,
    /// What the training answers look like (kinds, the JSON answers'
    /// schema), for schema-guided decoding; absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<crate::ml::lm::guide::AnswerShape>,
}

/// One repeated piece of a cluster's prompts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticPiece {
    /// The tool's name (`None` for the system prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sha256: String,
    /// Share of the calls that hold this exact text.
    pub share: f64,
    /// For a tool: share of the calls that offer a tool of this name (the
    /// piece is static when almost all of those offer this definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_share: Option<f64>,
    pub chars: usize,
    /// For leading messages: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// At or above the threshold: pruned when pruning is on.
    pub is_static: bool,
}

/// What repeats in a cluster's prompts: the most common system prompt and,
/// per tool name, its most common definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticParts {
    /// A piece is static when this share of the calls (of the calls
    /// offering the tool, for a tool) hold it.
    pub threshold: f64,
    pub system: Option<StaticPiece>,
    pub tools: Vec<StaticPiece>,
    /// The longest run of leading messages (after the system prompt, before
    /// the last user turn) that repeats; `name` says how many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leading: Option<StaticPiece>,
    /// Mean characters per call that pruning the static pieces removes.
    pub mean_static_chars: f64,
    /// Whether the adapter was trained pruned, and why (or why not).
    pub pruned: bool,
    pub decision: String,
}

/// Reads a cluster's `prompt.json`.
pub fn read_prompt(path: &Path) -> Result<ClusterPrompt> {
    serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))
}

/// `OUT/cluster-ID`: one cluster's directory in a run.
pub fn cluster_dir(out: &Path, id: i32) -> PathBuf {
    out.join(format!("cluster-{id}"))
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
    /// Examples from which earlier turns were dropped to fit `max_len`.
    pub truncated: usize,
    /// Calls left out because they exceed `max_len`: with `overlong = drop`,
    /// or because system prompt, tools and last user turn alone do not fit.
    pub dropped_overlong: usize,
    /// Calls left out because the answer alone does not fit `max_len`.
    pub dropped_answer_too_long: usize,
    /// Calls left out because the LLM's answer is empty.
    pub dropped_empty_answer: usize,
    /// Calls the chat template could not render.
    pub dropped_render_error: usize,
    /// Calls whose prompt was pruned (static system prompt or tools replaced).
    #[serde(default)]
    pub pruned: usize,
    /// Calls in clusters.parquet but missing from calls.parquet.
    pub missing_calls: usize,
}

impl EncodeCounts {
    /// Calls left out for any reason.
    pub fn dropped(&self) -> usize {
        self.dropped_overlong
            + self.dropped_answer_too_long
            + self.dropped_empty_answer
            + self.dropped_render_error
            + self.missing_calls
    }
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

/// Why training ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The planned epochs ran out.
    Epochs,
    /// `max_steps` or `max_train_tokens` reached.
    StepBudget,
    /// `time_budget_secs` reached.
    TimeBudget,
    /// Validation loss stopped improving for `patience` evaluations.
    EarlyStopping,
}

/// What training did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub planned_steps: usize,
    /// Epochs completed, fractional.
    pub epochs: f64,
    /// Non-padding tokens processed by training steps.
    pub tokens: usize,
    /// Answer tokens (the ones that carry loss).
    pub answer_tokens: usize,
    /// Tokens including padding.
    pub padded_tokens: usize,
    pub train_secs: f64,
    pub tokens_per_sec: f64,
    pub stop_reason: StopReason,
    pub val_loss_base: Option<f64>,
    pub best_val_loss: Option<f64>,
    /// Step whose adapter was kept (best validation loss; the last step
    /// when there is no validation split).
    pub best_step: usize,
    pub final_train_loss: Option<f64>,
}

/// A rate with the counts behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub count: usize,
    pub of: usize,
    /// `count / of`; `null` when `of` is 0.
    pub rate: Option<f64>,
}

impl Rate {
    /// The rate of `true` among the outcomes.
    pub fn of_outcomes<I: Iterator<Item = bool>>(it: I) -> Rate {
        let (mut count, mut of) = (0, 0);
        for b in it {
            of += 1;
            count += b as usize;
        }
        Rate {
            count,
            of,
            rate: (of > 0).then(|| count as f64 / of as f64),
        }
    }
}

/// The metrics of one model (base or tuned) on the test calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Per answer kind: parsed JSON equality, full tool call, trimmed text.
    pub exact_match: Rate,
    /// Trimmed generated text equals the answer rendered as in training.
    pub text_exact: Rate,
    pub json_valid: Rate,
    pub json_equal: Rate,
    pub tool_name_accuracy: Rate,
    pub tool_call_accuracy: Rate,
    pub tool_args_valid: Rate,
    /// Calls naming an offered tool with arguments that follow its schema.
    #[serde(default)]
    pub tool_schema_valid: Rate,
    /// Replies cut by the `max_new_tokens` cap.
    pub hit_max_tokens: usize,
    /// Mean negative log-likelihood of the LLM's answer tokens.
    pub mean_loss: Option<f64>,
    pub perplexity: Option<f64>,
    pub loss_tokens: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    pub prefill_tokens_per_sec: f64,
    pub decode_tokens_per_sec: f64,
    /// (prefill + decode time) / calls, at the eval batch size.
    pub latency_ms_per_call: f64,
}

/// `eval.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub format: String,
    pub cluster: i32,
    /// Calls in the test split.
    pub test_calls: usize,
    /// Calls evaluated (the first `max_test_calls` by split position).
    pub evaluated: usize,
    pub answer_kinds: BTreeMap<String, usize>,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub base: ModelMetrics,
    pub tuned: ModelMetrics,
    /// The same with schema-guided decoding (absent when the workload has
    /// no schema to follow, or it was switched off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided: Option<GuidedEval>,
    /// Where the comparison rules are documented.
    pub rules: String,
}

/// Base and tuned under schema-guided decoding ([`crate::ml::lm::guide`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuidedEval {
    /// Test calls that had a constraint (tool calls or a JSON schema).
    pub constrained_calls: usize,
    /// Calls whose constraint could not be compiled, decoded free.
    pub fallbacks: Vec<GuideFallback>,
    pub base: ModelMetrics,
    pub tuned: ModelMetrics,
}

/// A call decoded free because its schema was not supported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuideFallback {
    pub call_id: String,
    pub reason: String,
}

/// What later stages need from a run's `tune_config.json` (read loosely:
/// unknown fields are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct RunSettings {
    pub base_model: String,
    pub max_len: usize,
    pub split: crate::artifact::split::SplitFractions,
    /// The dataset the run was tuned on (absent in runs before it was recorded).
    #[serde(default)]
    pub dataset: Option<PathBuf>,
}

/// Reads `RUN/tune_config.json`.
pub fn read_run_settings(run_dir: &Path) -> Result<RunSettings> {
    let path = run_dir.join(TUNE_CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|_| {
        crate::util::usage(format!(
            "{} is not an adapter run: {TUNE_CONFIG_FILE} is missing (run `slmforge tune` first)",
            run_dir.display()
        ))
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Every cluster result of a run, from `RUN/summary.json`.
pub fn read_results(run_dir: &Path) -> Result<Vec<ClusterResult>> {
    #[derive(Deserialize)]
    struct Summary {
        format: String,
        clusters: Vec<ClusterResult>,
    }
    let path = run_dir.join(SUMMARY_JSON);
    let bytes = std::fs::read(&path).map_err(|_| {
        crate::util::usage(format!(
            "{} has no {SUMMARY_JSON}: the tune run did not finish (resume it with `slmforge tune --resume`)",
            run_dir.display()
        ))
    })?;
    let s: Summary =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        s.format == SUMMARY_FORMAT,
        "{} has format {:?}, expected {SUMMARY_FORMAT}",
        path.display(),
        s.format
    );
    Ok(s.clusters)
}

/// One line of `eval_samples.jsonl` (the fields later stages read).
#[derive(Clone, Debug, Deserialize)]
pub struct EvalSample {
    pub call_id: String,
    pub tuned_score: crate::ml::lm::score::CallScore,
    /// The tuned model's score under schema-guided decoding (when evaluated).
    #[serde(default)]
    pub tuned_guided_score: Option<crate::ml::lm::score::CallScore>,
}

/// Reads a cluster's `eval_samples.jsonl` (empty when there is none).
pub fn read_eval_samples(cluster_dir: &Path) -> Result<Vec<EvalSample>> {
    let path = cluster_dir.join(SAMPLES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {}", path.display())))
        .collect()
}
