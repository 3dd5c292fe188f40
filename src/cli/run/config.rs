//! The pipeline file `slmforge run` reads (`pipelines/NAME.toml`): every
//! stage's settings in one TOML document, documented key by key in
//! `pipelines/README.md` and `pipelines/demo.toml`. An unknown key is an
//! error naming the key (serde's `deny_unknown_fields` at every level), so a
//! misspelt setting never silently keeps its default. Relative paths are
//! relative to the directory `slmforge run` is started in.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::util::usage;

/// The whole file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub pipeline: PipelineSection,
    pub ingest: IngestSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub select: SelectSection,
    #[serde(default)]
    pub tune: TuneSection,
    #[serde(default)]
    pub export: ExportSection,
    #[serde(default)]
    pub gate: GateSection,
}

/// `[pipeline]`: names and places.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// The pipeline's name (shown in reports).
    pub name: String,
    /// Working directory: state, dataset, per-run adapters, deployed export.
    pub work: PathBuf,
    /// Reports go to `REPORTS/RUN_ID/`.
    #[serde(default = "default_reports")]
    pub reports: PathBuf,
    /// Seed of clustering and training.
    #[serde(default)]
    pub seed: u64,
}

fn default_reports() -> PathBuf {
    PathBuf::from("reports")
}

/// `[ingest]`: the logs and their redaction.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Log files or directories. Each run ingests the files whose content
    /// it has not ingested before.
    pub inputs: Vec<PathBuf>,
    /// Redaction key file (keeps pseudonyms consistent across runs). Without
    /// it (and without `SLMFORGE_REDACT_KEY`) a key is made once and kept in
    /// `WORK/redact.key` (mode 0600).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The bundled sample's fixed public key (only for synthetic data).
    #[serde(default)]
    pub demo_key: bool,
    /// Values never redacted (exact strings).
    #[serde(default)]
    pub allow_values: Vec<String>,
    /// Values never redacted (regular expressions, whole match).
    #[serde(default)]
    pub allow_regexes: Vec<String>,
    /// Detect person names (on by default).
    #[serde(default = "yes")]
    pub detect_names: bool,
}

fn yes() -> bool {
    true
}

/// `[cluster]`: how workloads are found, and when they are found again.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Number of clusters (absent: chosen by silhouette).
    #[serde(default)]
    pub k: Option<usize>,
    /// Smallest cluster kept (absent: the stage's default).
    #[serde(default)]
    pub min_cluster_size: Option<usize>,
    /// Sentence-embedder directory (absent: all-MiniLM-L6-v2 from the
    /// models directory).
    #[serde(default)]
    pub embedder: Option<PathBuf>,
    /// Ground-truth labels (`calls.labels.jsonl`) to score the clustering
    /// against, when there are any.
    #[serde(default)]
    pub truth: Option<PathBuf>,
    #[serde(default)]
    pub drift: DriftSection,
}

/// `[cluster.drift]`: new calls join the existing clusters unless their
/// traffic drifted past one of these, then the dataset is clustered again.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSection {
    /// Largest share of new calls that fit no cluster.
    #[serde(default = "default_outlier_share")]
    pub max_outlier_share: f64,
    /// Largest total-variation distance between the new calls' cluster
    /// shares and the existing ones (0: same mix, 1: disjoint).
    #[serde(default = "default_share_change")]
    pub max_share_change: f64,
    /// Cluster again when new calls use a tool name never seen before.
    #[serde(default = "yes")]
    pub on_new_tools: bool,
}

fn default_outlier_share() -> f64 {
    0.10
}

fn default_share_change() -> f64 {
    0.20
}

impl Default for DriftSection {
    fn default() -> Self {
        DriftSection {
            max_outlier_share: default_outlier_share(),
            max_share_change: default_share_change(),
            on_new_tools: true,
        }
    }
}

/// `[select]`: base-model choice and the serving plan (`slmforge select`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectSection {
    /// Run `select` (measures candidates on validation calls; writes
    /// plan.json with the serving plan and its cost).
    #[serde(default)]
    pub enabled: bool,
    /// Candidate catalogue ids (empty: every base model of the catalogue).
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Validation calls scored per cluster and candidate.
    #[serde(default)]
    pub val_calls: Option<usize>,
    /// Serving hardware, e.g. `2xL4-24GB` or `cpu:16`.
    #[serde(default)]
    pub hardware: Option<String>,
    /// Device kinds and prices (default: the built-in pipelines/hardware.toml).
    #[serde(default)]
    pub hardware_config: Option<PathBuf>,
}

/// `[tune]`: which clusters, which base, how long.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TuneSection {
    /// `largest:N` (the largest tool-calling, the largest JSON, then the
    /// largest others), `all`, `plan` (plan.json's decisions), or ids
    /// such as `3,4`.
    #[serde(default = "default_clusters")]
    pub clusters: String,
    /// Base model: catalogue id or GGUF path.
    #[serde(default = "default_model")]
    pub model: String,
    /// Training steps per cluster (the budget that decides the results).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Wall-clock safety cap per cluster, seconds (0: none).
    #[serde(default = "default_time_budget")]
    pub time_budget_secs: f64,
    /// Held-out test calls evaluated per cluster.
    #[serde(default = "default_test_calls")]
    pub max_test_calls: usize,
    /// Clusters with fewer calls are not tuned (absent: tune's default).
    #[serde(default)]
    pub min_examples: Option<usize>,
    /// A tuned cluster is tuned again when this share of its calls is new.
    #[serde(default = "default_retune")]
    pub retune_min_change: f64,
    /// Evaluate schema-guided decoding too.
    #[serde(default = "yes")]
    pub guided_eval: bool,
    /// Optional overrides of tune's defaults.
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub rank: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub max_len: Option<usize>,
    #[serde(default)]
    pub eval_every: Option<usize>,
}

fn default_clusters() -> String {
    "largest:2".into()
}
fn default_model() -> String {
    crate::tune::TuneConfig::default().base_model
}
fn default_steps() -> usize {
    60
}
fn default_time_budget() -> f64 {
    2400.0
}
fn default_test_calls() -> usize {
    30
}
fn default_retune() -> f64 {
    0.10
}

impl Default for TuneSection {
    fn default() -> Self {
        toml::from_str("").expect("every [tune] key has a default")
    }
}

/// `[export]`: what is deployed and how requests are routed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// Any of `peft`, `gguf`, `merged`.
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// Weight type of the merged model (`q8_0`, `f16`, `f32`).
    #[serde(default = "default_merged")]
    pub merged_quant: String,
    /// Calibrate the routing table.
    #[serde(default = "yes")]
    pub route: bool,
    /// Accuracy a route must reach on validation calls to take traffic.
    #[serde(default)]
    pub accuracy_target: Option<f64>,
    /// Smallest number of validation calls a route is judged on.
    #[serde(default)]
    pub min_routed_calls: Option<usize>,
    /// Judge routes with schema-guided decoding.
    #[serde(default = "yes")]
    pub guided: bool,
}

fn default_formats() -> Vec<String> {
    vec!["peft".into(), "gguf".into(), "merged".into()]
}
fn default_merged() -> String {
    "q8_0".into()
}

impl Default for ExportSection {
    fn default() -> Self {
        toml::from_str("").expect("every [export] key has a default")
    }
}

/// `[gate]`: when a new adapter replaces the deployed one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// Promote adapters that pass the gate (false: leave it to a person,
    /// `slmforge run FILE --promote RUN_ID`).
    #[serde(default = "yes")]
    pub promote: bool,
    /// A candidate is refused when its held-out exact-match rate is below
    /// the deployed adapter's by more than this.
    #[serde(default)]
    pub tolerance: f64,
}

impl Default for GateSection {
    fn default() -> Self {
        GateSection {
            promote: true,
            tolerance: 0.0,
        }
    }
}

/// Reads and checks a pipeline file. Errors are usage errors (exit 2) that
/// name the file, the line and the key.
pub fn load(path: &Path) -> anyhow::Result<PipelineFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read pipeline file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| usage(format!("{}: {e:#}", path.display())))
}

/// Parses and checks a pipeline document.
pub fn parse(text: &str) -> anyhow::Result<PipelineFile> {
    let f: PipelineFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        !f.ingest.inputs.is_empty(),
        "[ingest] inputs is empty: name at least one log file or directory"
    );
    anyhow::ensure!(
        f.tune.steps >= 1,
        "[tune] steps must be at least 1, got {}",
        f.tune.steps
    );
    for (key, v) in [
        (
            "[cluster.drift] max_outlier_share",
            f.cluster.drift.max_outlier_share,
        ),
        (
            "[cluster.drift] max_share_change",
            f.cluster.drift.max_share_change,
        ),
        ("[tune] retune_min_change", f.tune.retune_min_change),
        ("[gate] tolerance", f.gate.tolerance),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&v),
            "{key} must be between 0 and 1, got {v}"
        );
    }
    for fmt in &f.export.formats {
        anyhow::ensure!(
            crate::export::Format::parse(fmt).is_some(),
            "[export] formats: unknown format {fmt:?} (peft, gguf, merged)"
        );
    }
    parse_merged_quant(&f.export.merged_quant)?;
    ClusterPick::parse(&f.tune.clusters)?;
    Ok(f)
}

/// The merged model's weight type.
pub fn parse_merged_quant(s: &str) -> anyhow::Result<candle_core::quantized::GgmlDType> {
    use candle_core::quantized::GgmlDType;
    Ok(match s {
        "q8_0" => GgmlDType::Q8_0,
        "f16" => GgmlDType::F16,
        "f32" => GgmlDType::F32,
        other => anyhow::bail!("[export] merged_quant: {other:?} is not q8_0, f16 or f32"),
    })
}

/// `[tune] clusters`, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterPick {
    Largest(usize),
    All,
    Plan,
    Ids(Vec<i32>),
}

impl ClusterPick {
    pub fn parse(s: &str) -> anyhow::Result<ClusterPick> {
        let s = s.trim();
        if s == "all" {
            return Ok(ClusterPick::All);
        }
        if s == "plan" {
            return Ok(ClusterPick::Plan);
        }
        if let Some(n) = s.strip_prefix("largest:") {
            return n
                .trim()
                .parse()
                .map(ClusterPick::Largest)
                .with_context(|| format!("[tune] clusters: {s:?}: `largest:N` takes a number"));
        }
        s.split(',')
            .map(|x| x.trim().parse::<i32>())
            .collect::<Result<Vec<_>, _>>()
            .map(ClusterPick::Ids)
            .map_err(|_| {
                anyhow::anyhow!(
                    "[tune] clusters: {s:?} is not `largest:N`, `all`, `plan` or ids like `3,4`"
                )
            })
    }
}
