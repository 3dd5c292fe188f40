//! What `slmforge run` remembers between runs, in `WORK/state.json`: per
//! stage the hash of its inputs and settings when it last ran (a stage whose
//! hash is unchanged is skipped), the log files already ingested (by
//! content hash), per tuned cluster the calls it was tuned on, and per
//! cluster the adapter currently deployed with its held-out figures (what
//! the regression gate compares a new adapter with). Written atomically
//! after every stage, so an interrupted run resumes where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const STATE_FILE: &str = "state.json";
pub const STATE_FORMAT: &str = "slmforge-run-state-v1";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    pub pipeline: String,
    /// Stage name → its last run.
    pub stages: BTreeMap<String, StageRecord>,
    /// Content sha256 → size in bytes of every log file ingested (paths are
    /// not kept: they can hold personal data).
    pub ingested_files: BTreeMap<String, u64>,
    /// Cluster id → the calls its latest adapter was tuned on.
    pub tuned: BTreeMap<i32, TunedRecord>,
    /// Cluster id → the adapter deployed for it.
    pub promoted: BTreeMap<i32, Promoted>,
    /// Run ids, oldest first.
    pub runs: Vec<String>,
}

/// A stage's last completed run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRecord {
    /// sha256 of its inputs and settings.
    pub key: String,
    pub run_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TunedRecord {
    pub run_id: String,
    /// sha256 of the tune settings it was tuned with.
    pub settings: String,
    /// The member call ids, sorted.
    pub calls: Vec<String>,
}

/// The deployed adapter of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub run_id: String,
    /// Hash of what every deployed adapter must share to be exported and
    /// served together: base model, max_len, split.
    #[serde(default)]
    pub base: String,
    /// The gate's score: held-out exact-match rate (guided when evaluated).
    pub score: f64,
    pub evaluated: usize,
}

impl State {
    pub fn load(work: &Path, pipeline: &str) -> anyhow::Result<State> {
        let path = work.join(STATE_FILE);
        if !path.exists() {
            return Ok(State {
                format: STATE_FORMAT.into(),
                pipeline: pipeline.into(),
                ..Default::default()
            });
        }
        let s: State = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            s.format == STATE_FORMAT,
            "{} has format {:?}, expected {STATE_FORMAT}",
            path.display(),
            s.format
        );
        if s.pipeline != pipeline {
            return Err(crate::util::usage(format!(
                "{} belongs to pipeline {:?}, not {pipeline:?}: give this pipeline its own `work` directory",
                path.display(),
                s.pipeline
            )));
        }
        Ok(s)
    }

    pub fn save(&self, work: &Path) -> anyhow::Result<()> {
        crate::util::write_json(&work.join(STATE_FILE), self)
    }

    /// True when `stage` last ran with exactly this key.
    pub fn unchanged(&self, stage: &str, key: &str) -> bool {
        self.stages.get(stage).is_some_and(|r| r.key == key)
    }

    pub fn record(&mut self, stage: &str, key: String, run_id: &str) {
        self.stages.insert(
            stage.to_string(),
            StageRecord {
                key,
                run_id: run_id.to_string(),
            },
        );
    }
}

/// sha256 over a list of parts (each length-prefixed, so parts cannot run
/// into each other).
pub fn key_of(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// sha256 of a file, or "" when it does not exist.
pub fn file_key(path: &Path) -> anyhow::Result<String> {
    if !path.exists() {
        return Ok(String::new());
    }
    crate::util::sha256_file(path)
}

/// The log files `ingest` would read from the inputs (its own discovery:
/// sorted walk, each file once, the work directory never walked), with
/// their content sha256. Messages show paths redacted, as ingest does.
pub fn input_files(
    cfg: &crate::ingest::IngestConfig,
    inputs: &[PathBuf],
    work: &Path,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    crate::ingest::discover_inputs(cfg, inputs, Some(work))?
        .into_iter()
        .map(|(path, shown)| {
            let h = crate::util::sha256_file(&path)
                .map_err(|_| crate::util::usage(format!("cannot read input {shown}")))?;
            Ok((path, h))
        })
        .collect()
}
