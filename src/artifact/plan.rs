//! `plan.json`: which clusters the select stage chose for tuning, on which
//! base model, what it measured, where the models run and what it saves.
//! `slmforge select` writes [`PlanFile`] (`format: "slmforge.plan.v1"`);
//! `tune` reads it through [`read_plan`], which also accepts a hand-written
//! plan (`clusters: [{id | cluster, decision | action: "tune" |
//! "fine_tune" | tune: true, base_model?}]`, or a bare array of those).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::adapter::ModelMetrics;

use super::PLAN_FILE;
use crate::util::usage;

/// Format tag of the plan `slmforge select` writes.
pub const PLAN_FORMAT: &str = "slmforge.plan.v1";

/// One candidate base model's result on one cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CandidateResult {
    pub model: String,
    pub params: u64,
    pub context_length: usize,
    /// Why it was not measured (not installed, not runnable, too short a
    /// context); `None` when it was.
    pub skipped: Option<String>,
    pub zero_shot: Option<ModelMetrics>,
    pub pilot: Option<ModelMetrics>,
    /// Pilot updates done, and whether the wall-clock cap stopped it early.
    pub pilot_steps: usize,
    pub pilot_capped: bool,
    /// The score the choice uses (exact-match rate on the validation
    /// sample): the pilot's when there was a pilot, else the zero-shot one.
    pub score: Option<f64>,
    /// Taken from `select_cache/` (measured by an earlier run).
    pub cached: bool,
    /// USD per million generated tokens on the planned hardware's first
    /// device at full batched decode capacity (`select::serving`).
    #[serde(default)]
    pub serving_usd_per_mtok: Option<f64>,
}

/// The select stage's decision for one cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanCluster {
    pub id: i32,
    /// `tune` or `skip`.
    pub decision: String,
    /// The chosen base (catalogue id) when the decision is `tune`.
    pub base_model: Option<String>,
    pub calls: usize,
    pub p95_tokens: usize,
    /// Why skipped, or how the model was chosen.
    pub reason: String,
    /// The chosen model's score reaches the target.
    pub reached_target: bool,
    pub candidates: Vec<CandidateResult>,
}

/// `plan.json` as `slmforge select` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub format: String,
    /// The settings of the run (target, sample sizes, pilot, hardware).
    pub settings: Value,
    pub clusters: Vec<PlanCluster>,
    /// Deployments, devices and what does not fit (`select::serving`).
    pub serving: Option<Value>,
    /// The LLM's cost against the planned hardware's.
    pub cost: Option<Value>,
}

/// Writes `plan.json` into `dataset_dir`.
pub fn write_plan(dataset_dir: &Path, plan: &PlanFile) -> Result<()> {
    crate::util::write_json(&dataset_dir.join(PLAN_FILE), plan)
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
    if v.get("format").and_then(Value::as_str) == Some(PLAN_FORMAT) {
        let plan: PlanFile = serde_json::from_value(v).map_err(|e| {
            usage(format!(
                "{} is not a valid {PLAN_FORMAT} plan: {e} (run `slmforge select` again)",
                path.display()
            ))
        })?;
        return Ok(Some(
            plan.clusters
                .into_iter()
                .filter(|c| c.decision == "tune")
                .map(|c| PlanEntry {
                    cluster: c.id,
                    base_model: c.base_model,
                })
                .collect(),
        ));
    }
    let list = v.get("clusters").unwrap_or(&v);
    let Some(list) = list.as_array() else {
        return Err(usage(format!(
            "{} has no `clusters` array: edit or remove plan.json",
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

/// A cluster chosen for tuning, with the base model to tune and its size
/// (what the select stage hands to `tune`).
#[derive(Clone, Debug, PartialEq)]
pub struct TuneTarget {
    pub cluster: i32,
    pub base_model: String,
    /// The call ids assigned to the cluster (`clusters.parquet`).
    pub members: Vec<String>,
}
