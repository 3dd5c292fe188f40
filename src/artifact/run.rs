//! `run.json`: what one `slmforge run` did, written to `WORK/runs/RUN_ID/`
//! and read by the report: each stage's status and reason (ran, skipped
//! because its inputs did not change, incremental), the new log files and
//! calls, the drift figures and whether they led to clustering again, which
//! clusters were tuned again and why, and the regression gate's decisions.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const RUN_FILE: &str = "run.json";
pub const RUN_FORMAT: &str = "slmforge-run-v1";
/// `WORK/runs/`: one directory per run.
pub const RUNS_DIR: &str = "runs";
/// `WORK/deployed/`: the promoted adapters (an adapter run directory that
/// `export` reads) and their export in `deployed/export/`.
pub const DEPLOYED_DIR: &str = "deployed";
/// The key of `deployed/summary.json` mapping each deployed cluster id to
/// the run its adapter comes from.
pub const DEPLOYED_FROM: &str = "deployed_from";
/// `WORK/dataset/`.
pub const DATASET_DIR: &str = "dataset";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: String,
    pub run_id: String,
    pub pipeline: String,
    /// The previous run of this pipeline, if any.
    pub previous_run: Option<String>,
    /// UTC, RFC 3339.
    pub started: String,
    pub secs: f64,
    pub work: PathBuf,
    pub stages: Vec<StageLog>,
    pub changes: Changes,
    pub gate: Vec<GateDecision>,
    /// The process exit code the run ended with.
    pub exit_code: u8,
    /// The error that ended the run, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One stage of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageLog {
    pub stage: String,
    /// `ran`, `incremental`, `skipped` (inputs unchanged), `not_selected`
    /// (`--only`/`--from`), `off` (disabled in the pipeline file).
    pub status: String,
    pub reason: String,
    pub secs: f64,
}

/// What was new in this run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Changes {
    /// Log files whose content had not been ingested before.
    pub new_files: usize,
    /// Calls added to the dataset (after deduplication against it).
    pub new_calls: usize,
    /// Calls in the dataset after this run.
    pub dataset_calls: usize,
    /// This run's ingest directory (its ingest.json and quarantine).
    pub ingest_dir: Option<PathBuf>,
    pub drift: Option<Drift>,
    /// Whether the dataset was clustered from scratch, and why.
    pub reclustered: Option<String>,
    /// Clusters tuned in this run and why; the others and why not.
    pub tuned: Vec<TuneDecision>,
}

/// How far the new calls' traffic is from the clusters they joined.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Drift {
    pub new_calls: usize,
    /// Share of new calls that fit no cluster.
    pub outlier_share: f64,
    /// Total-variation distance between the new calls' cluster shares and
    /// the existing calls'.
    pub share_change: f64,
    /// Tool names the new calls use that no earlier call used.
    pub new_tools: Vec<String>,
    /// Which thresholds were crossed (empty: none; the calls joined the
    /// existing clusters).
    pub crossed: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneDecision {
    pub cluster: i32,
    pub tuned: bool,
    pub reason: String,
}

/// The regression gate on one new adapter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateDecision {
    pub cluster: i32,
    pub run_id: String,
    /// Held-out exact-match rate (guided decoding when it was evaluated).
    pub score: Option<f64>,
    pub evaluated: usize,
    /// The deployed adapter it was compared with.
    pub incumbent_run: Option<String>,
    pub incumbent_score: Option<f64>,
    pub incumbent_evaluated: Option<usize>,
    /// `promoted`, `blocked` (worse than the deployed one), `held` (left to
    /// a person: `--no-promote`), `not_evaluated`.
    pub decision: String,
    pub reason: String,
}

pub fn write_run(dir: &Path, r: &RunRecord) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::util::write_json(&dir.join(RUN_FILE), r)
}

pub fn read_run(dir: &Path) -> anyhow::Result<RunRecord> {
    let path = dir.join(RUN_FILE);
    let r: RunRecord = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        r.format == RUN_FORMAT,
        "{} has format {:?}, expected {RUN_FORMAT}",
        path.display(),
        r.format
    );
    Ok(r)
}
