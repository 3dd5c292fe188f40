//! Clusters from ground truth: `clusters.parquet` and `clusters.json` built
//! from a synth labels sidecar (one cluster per workload) or from given
//! assignments, for tests and benchmarks that need a clustering without
//! running `cluster`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::artifact::clusters::{
    write_assignments, Assignment, ClusterStats, ClusterSummary, ClustersJson, EmbedderInfo,
    Percentiles, SCHEMA_VERSION,
};
use crate::artifact::{ASSIGNMENTS_FILE, OUTLIER, SUMMARY_FILE};
use crate::ml::features::{FeatureSpec, FeatureWeights, TextLimits};

/// Writes `clusters.parquet` (`call_id`, `cluster`, `distance` = 0) and a
/// `clusters.json` (algorithm `ground_truth`) from given assignments and
/// cluster names: for tests and benchmarks that need clusters without
/// clustering. The summary carries each cluster's name as its label, its
/// size and examples; it has no centroids or feature spec to route with
/// (the real one comes from `slmforge cluster`).
pub fn write_clusters(
    dataset_dir: &Path,
    assignments: &[(String, i32)],
    labels: &BTreeMap<i32, String>,
) -> Result<()> {
    let rows: Vec<Assignment> = assignments
        .iter()
        .map(|(id, k)| Assignment {
            call_id: id.clone(),
            cluster: *k,
            distance: 0.0,
        })
        .collect();
    write_assignments(&dataset_dir.join(ASSIGNMENTS_FILE), &rows)?;
    let mut members: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for (id, k) in assignments {
        if *k != OUTLIER {
            members.entry(*k).or_default().push(id);
        }
    }
    let n = assignments.len();
    let none = Percentiles { p50: 0, p95: 0 };
    let clusters: Vec<ClusterSummary> = members
        .iter()
        .map(|(&id, m)| ClusterSummary {
            id,
            label: labels.get(&id).cloned().unwrap_or_default(),
            example_requests: Vec::new(),
            homogeneity: Default::default(),
            mixed: None,
            label_terms: labels.get(&id).map(|l| vec![l.clone()]).unwrap_or_default(),
            tools: Vec::new(),
            size: m.len(),
            share: m.len() as f64 / n.max(1) as f64,
            representative_call_id: m[0].to_string(),
            example_call_ids: m.iter().take(5).map(|s| s.to_string()).collect(),
            centroid: Vec::new(),
            radius: 0.0,
            request_radius: 0.0,
            stats: ClusterStats {
                prompt_tokens: none,
                completion_tokens: none,
                tokens_source: "none".into(),
                tool_call_rate: 0.0,
                json_rate: 0.0,
                text_rate: 0.0,
            },
            purity: None,
            workload_id: None,
        })
        .collect();
    let summary = ClustersJson {
        schema_version: SCHEMA_VERSION,
        algorithm: "ground_truth".into(),
        k: clusters.len(),
        seed: 0,
        calls: n,
        min_cluster_size: 0,
        dbscan: None,
        k_search: Vec::new(),
        embedder: EmbedderInfo {
            id: "none".into(),
            checksum: String::new(),
            dim: 0,
        },
        features: FeatureSpec::fit(
            &[],
            FeatureWeights::default(),
            TextLimits::default(),
            true,
            0,
        ),
        outliers: n - clusters.iter().map(|c| c.size).sum::<usize>(),
        clusters,
        purity: None,
        id_matching: None,
        ari: None,
        nmi: None,
        truth_calls: None,
    };
    crate::util::write_json(&dataset_dir.join(SUMMARY_FILE), &summary)
}

/// Development and test helper: builds `clusters.parquet` from synth ground
/// truth (`calls.labels.jsonl`, keyed by `line`/`index` = the calls'
/// `source_line`/`source_index`), one cluster per workload (ids in sorted
/// workload order). Calls without a label become outliers. Returns the
/// workload name of each cluster id.
pub fn clusters_from_labels(dataset_dir: &Path, labels: &Path) -> Result<BTreeMap<i32, String>> {
    let text =
        std::fs::read_to_string(labels).with_context(|| format!("reading {}", labels.display()))?;
    let mut by_pos: HashMap<(u64, u32), String> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", labels.display(), n + 1))?;
        if let (Some(l), Some(w)) = (v["line"].as_u64(), v["workload"].as_str()) {
            by_pos.insert((l, v["index"].as_u64().unwrap_or(0) as u32), w.to_string());
        }
    }
    let mut names: Vec<&String> = by_pos.values().collect();
    names.sort();
    names.dedup();
    let ids: HashMap<String, i32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).clone(), i as i32))
        .collect();
    let rows = crate::artifact::calls::read_rows(dataset_dir)?;
    let assignments: Vec<(String, i32)> = rows
        .iter()
        .map(|r| {
            let k = by_pos
                .get(&(r.source_line, r.source_index))
                .map(|w| ids[w])
                .unwrap_or(OUTLIER);
            (r.call_id.clone(), k)
        })
        .collect();
    let labels: BTreeMap<i32, String> = ids.into_iter().map(|(n, i)| (i, n)).collect();
    write_clusters(dataset_dir, &assignments, &labels)?;
    Ok(labels)
}
