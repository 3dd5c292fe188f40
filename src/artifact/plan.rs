//! `plan.json`: which clusters the select stage chose for tuning, and on
//! which base model. Read loosely (field aliases below) until the select
//! stage writes its own versioned plan.
//!
//! Fields: `clusters: [{id | cluster, decision | action: "tune" |
//! "fine_tune" | tune: true, base_model?}]` (or a bare array of those).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::PLAN_FILE;
use crate::util::usage;

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
