//! Phase 4, select: which clusters get a small model, and which base model.
//!
//! Today this holds the choice `tune` acts on ([`tune_targets`]: the clusters
//! named, else `plan.json`'s, else every large-enough cluster, all on the
//! default base model) and the demo's pick ([`demo_clusters`]). The select
//! issue grows it into a measured choice per cluster and a serving plan
//! written to `plan.json` ([`crate::artifact::plan`]).

pub mod choose;
pub mod serving;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use crate::artifact::clusters::{read_assignment_rows, ClusterSummary};
use crate::artifact::plan::{read_plan, TuneTarget};
use crate::artifact::{ASSIGNMENTS_FILE, CALLS_FILE, OUTLIER, PLAN_FILE};
use crate::util::usage;

/// Which clusters of `dataset_dir` to tune, and on which base: the ones
/// named (each must exist and have at least `min_examples` calls), else
/// the ones `plan.json` chooses, else every non-outlier cluster with at
/// least `min_examples` calls. An empty choice is a usage error.
///
/// `base_model` (catalogue id or GGUF path) is the base for clusters the
/// plan gives none.
pub fn tune_targets(
    dataset_dir: &Path,
    named: Option<&[i32]>,
    base_model: &str,
    min_examples: usize,
) -> Result<Vec<TuneTarget>> {
    if !dataset_dir.is_dir() {
        return Err(usage(format!(
            "dataset directory {} does not exist: run `slmforge ingest LOGS --out {}` first",
            dataset_dir.display(),
            dataset_dir.display()
        )));
    }
    if !dataset_dir.join(CALLS_FILE).exists() {
        return Err(usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` first",
            dataset_dir.join(CALLS_FILE).display(),
            dataset_dir.display()
        )));
    }
    let assignments = read_assignment_rows(dataset_dir)?;
    let mut members: HashMap<i32, Vec<String>> = HashMap::new();
    for a in assignments {
        members.entry(a.cluster).or_default().push(a.call_id);
    }
    let mut known: Vec<i32> = members.keys().copied().filter(|&k| k != OUTLIER).collect();
    known.sort_unstable();
    let known_list = || {
        known
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let size = |k: i32| members.get(&k).map_or(0, Vec::len);
    let chosen: Vec<TuneTarget> = if let Some(ids) = named {
        let mut out = Vec::new();
        for &k in ids {
            if k == OUTLIER {
                return Err(usage("cluster -1 holds the outliers and cannot be tuned"));
            }
            if !members.contains_key(&k) {
                return Err(usage(format!(
                    "unknown cluster id {k} (clusters in {}: {})",
                    dataset_dir.join(ASSIGNMENTS_FILE).display(),
                    known_list()
                )));
            }
            if size(k) < min_examples {
                return Err(usage(format!(
                    "cluster {k} has {} calls, fewer than the minimum of {} (lower --min-examples to tune it anyway)",
                    size(k),
                    min_examples
                )));
            }
            if !out.iter().any(|c: &TuneTarget| c.cluster == k) {
                out.push(TuneTarget {
                    cluster: k,
                    base_model: base_model.to_string(),
                    members: members[&k].clone(),
                });
            }
        }
        out
    } else if let Some(plan) = read_plan(dataset_dir)? {
        let mut out = Vec::new();
        for e in plan {
            if !members.contains_key(&e.cluster) || e.cluster == OUTLIER {
                return Err(usage(format!(
                    "{} names cluster {} which is not in {} (clusters: {}); edit or remove plan.json",
                    dataset_dir.join(PLAN_FILE).display(),
                    e.cluster,
                    ASSIGNMENTS_FILE,
                    known_list()
                )));
            }
            out.push(TuneTarget {
                cluster: e.cluster,
                base_model: e.base_model.unwrap_or_else(|| base_model.to_string()),
                members: members[&e.cluster].clone(),
            });
        }
        out
    } else {
        known
            .iter()
            .filter(|&&k| size(k) >= min_examples)
            .map(|&k| TuneTarget {
                cluster: k,
                base_model: base_model.to_string(),
                members: members[&k].clone(),
            })
            .collect()
    };
    if chosen.is_empty() {
        return Err(usage(format!(
            "no cluster to tune: none of the {} clusters has at least {} calls (--min-examples)",
            known.len(),
            min_examples
        )));
    }
    Ok(chosen)
}

/// The clusters the demo tunes, at most `n`: the largest mostly-tool-calling
/// cluster, the largest mostly-JSON cluster, then the largest others (ties:
/// lower id). Only clusters with at least `min_examples` calls qualify.
pub fn demo_clusters(clusters: &[ClusterSummary], n: usize, min_examples: usize) -> Vec<i32> {
    let mut eligible: Vec<&ClusterSummary> = clusters
        .iter()
        .filter(|c| c.id >= 0 && c.size >= min_examples)
        .collect();
    eligible.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.cmp(&b.id)));
    let mut out: Vec<i32> = Vec::new();
    let mut take = |pred: &dyn Fn(&ClusterSummary) -> bool| {
        if out.len() < n {
            if let Some(c) = eligible.iter().find(|c| pred(c) && !out.contains(&c.id)) {
                out.push(c.id);
            }
        }
    };
    take(&|c| c.stats.tool_call_rate >= 0.5);
    take(&|c| c.stats.json_rate >= 0.5);
    for c in &eligible {
        if out.len() >= n {
            break;
        }
        if !out.contains(&c.id) {
            out.push(c.id);
        }
    }
    out
}
