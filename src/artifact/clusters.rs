//! The cluster artifacts: `clusters.parquet` (one row per call: `call_id`,
//! `cluster` (-1 = outlier), `distance`) and `clusters.json` (the summary:
//! per-cluster labels, centroids and stats, the feature spec and the
//! embedder checksum needed to assign new calls). Versioned, written
//! atomically, and byte-identical for the same inputs and seed.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ml::features::FeatureSpec;
use crate::util::usage;

/// Version of the `clusters.json` layout.
pub const SCHEMA_VERSION: u32 = 1;
use super::{ASSIGNMENTS_FILE, SUMMARY_FILE};

/// The silhouette of one k tried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KScore {
    pub k: usize,
    pub silhouette: f64,
    /// The answer class searched (`act`, `text`, `json`, `none`) when
    /// clustering partitions by answer class first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// This k was chosen (for its partition).
    #[serde(default)]
    pub chosen: bool,
}

/// One DBSCAN radius tried by the DBSCAN radius search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpsScore {
    pub eps: f32,
    /// Silhouette of the clustered sample points times their share.
    pub score: f64,
    pub clusters: usize,
    pub noise_share: f64,
}

/// How cluster ids were carried over from the dataset's earlier clustering
/// (`cluster::ids`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdMatching {
    /// Clusters of the earlier run.
    pub previous_clusters: usize,
    /// New clusters that kept an earlier id.
    pub kept: usize,
    /// New clusters given a new id.
    pub new: usize,
    /// Earlier ids no cluster kept.
    pub retired: Vec<i32>,
}

/// One call's place: its cluster (or [`OUTLIER`](super::OUTLIER)) and its distance to that
/// cluster's centroid (for an outlier, to the nearest centroid).
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub call_id: String,
    pub cluster: i32,
    pub distance: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    pub id: String,
    pub checksum: String,
    pub dim: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub prompt_tokens: Percentiles,
    pub completion_tokens: Percentiles,
    /// "logged" (usage from the logs), "estimated" (characters / 4) or
    /// "mixed" (logged where present).
    pub tokens_source: String,
    pub tool_call_rate: f64,
    pub json_rate: f64,
    pub text_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolShare {
    pub name: String,
    /// Share of the cluster's calls whose response called this tool.
    pub share: f64,
}

/// How much a cluster is one workload: the share of its calls with the
/// most common answer kind, and with the most common answer signature (the
/// called tool set of a tool call, the key set of a JSON answer).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Homogeneity {
    /// Most common answer class: "act" (tool calls, and text answers to a
    /// tool result: the steps of one agent loop), "text" (text answers to a
    /// user), "json" or "none".
    pub class: String,
    pub class_share: f64,
    /// "tool_call", "json" or "text" (or "none": no response logged).
    pub kind: String,
    pub kind_share: f64,
    /// `tool:a+tool:b`, `keys:a,b,c` or `text`.
    pub signature: String,
    pub signature_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub id: i32,
    /// A name a person recognises: the dominant called tools (or JSON keys),
    /// then the most distinctive words of the user requests.
    #[serde(default)]
    pub label: String,
    /// Most distinctive terms of the cluster's user requests (class-based
    /// TF-IDF; the system prompt's boilerplate left out).
    pub label_terms: Vec<String>,
    /// Two or three of its (redacted) user requests, nearest the centroid first.
    #[serde(default)]
    pub example_requests: Vec<String>,
    #[serde(default)]
    pub homogeneity: Homogeneity,
    /// Set when the cluster mixes answer classes (say tool calls and text
    /// refusals to the user): why. A mixed cluster is not one workload to
    /// tune. Tool calls with text answers to tool results are one agent
    /// loop, not mixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed: Option<String>,
    /// Tools the responses call, most common first.
    pub tools: Vec<ToolShare>,
    pub size: usize,
    /// Share of all calls.
    pub share: f64,
    /// The member nearest to the centroid.
    pub representative_call_id: String,
    /// Up to five members nearest to the centroid, the representative first.
    pub example_call_ids: Vec<String>,
    /// In the feature space described by `features`.
    pub centroid: Vec<f32>,
    /// A new call farther than this from the centroid is not assigned here:
    /// 1.25 x the 95th percentile of the members' distances.
    pub radius: f32,
    /// The same over the request blocks only (for calls with no response yet).
    pub request_radius: f32,
    pub stats: ClusterStats,
    /// Share of the members (with a logged `workload_id`) carrying the most
    /// common one; null when none has one.
    pub purity: Option<f64>,
    /// That most common `workload_id`.
    pub workload_id: Option<String>,
}

/// `clusters.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClustersJson {
    pub schema_version: u32,
    /// "kmeans" or "dbscan".
    pub algorithm: String,
    /// Clusters kept (outliers not counted).
    pub k: usize,
    pub seed: u64,
    pub calls: usize,
    pub min_cluster_size: usize,
    /// DBSCAN radius and core size, when DBSCAN ran.
    pub dbscan: Option<DbscanInfo>,
    /// Silhouette of each k tried (KMeans with automatic k; one entry when
    /// k was given), on the sample's leading principal components.
    pub k_search: Vec<KScore>,
    pub embedder: EmbedderInfo,
    pub features: FeatureSpec,
    pub clusters: Vec<ClusterSummary>,
    pub outliers: usize,
    /// Weighted purity over all clustered calls with a `workload_id`.
    pub purity: Option<f64>,
    /// How ids were carried over from the dataset's earlier clustering;
    /// absent when the ids are those by size (a first run, or a re-run that
    /// numbered the clusters as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_matching: Option<IdMatching>,
    /// Adjusted Rand index against `--truth`, over the calls it labels
    /// (each outlier counted as a cluster of its own).
    pub ari: Option<f64>,
    /// Normalised mutual information against `--truth`, likewise.
    #[serde(default)]
    pub nmi: Option<f64>,
    /// Calls that `--truth` labels.
    pub truth_calls: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbscanInfo {
    /// Radius in the space of the calls' leading principal components plus
    /// the residual length.
    pub eps: f32,
    pub eps_auto: bool,
    pub min_points: usize,
    /// The radii tried when `eps_auto`.
    pub eps_search: Vec<EpsScore>,
}

/// Writes `clusters.parquet` atomically.
pub fn write_assignments(path: &Path, rows: &[Assignment]) -> anyhow::Result<()> {
    let n = rows.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new(
                "call_id".into(),
                rows.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "cluster".into(),
                rows.iter().map(|r| r.cluster).collect::<Vec<i32>>(),
            ),
            Column::new(
                "distance".into(),
                rows.iter().map(|r| r.distance).collect::<Vec<f32>>(),
            ),
        ],
    )?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .set_parallel(false)
        .finish(&mut df)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::util::write_atomic(path, &buf)
}

/// Reads `DIR/clusters.parquet` back, in file order.
pub fn read_assignment_rows(dataset_dir: &Path) -> anyhow::Result<Vec<Assignment>> {
    let path = dataset_dir.join(ASSIGNMENTS_FILE);
    if !path.exists() {
        return Err(usage(format!(
            "no clusters at {}: run `slmforge cluster {}` first",
            path.display(),
            dataset_dir.display()
        )));
    }
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("reading {}", path.display()))?;
    let ids = df.column("call_id")?.str()?.clone();
    let clusters = df.column("cluster")?.i32()?.clone();
    let dists = df.column("distance")?.f32()?.clone();
    let mut out = Vec::with_capacity(df.height());
    for ((id, c), d) in ids.iter().zip(clusters.iter()).zip(dists.iter()) {
        let (Some(id), Some(c)) = (id, c) else {
            bail!("{}: a row lacks call_id or cluster", path.display());
        };
        out.push(Assignment {
            call_id: id.to_string(),
            cluster: c,
            distance: d.unwrap_or(f32::NAN),
        });
    }
    Ok(out)
}

/// `call_id` -> cluster id (-1 = outlier) from `DIR/clusters.parquet`.
pub fn read_assignments(dataset_dir: &Path) -> anyhow::Result<HashMap<String, i32>> {
    Ok(read_assignment_rows(dataset_dir)?
        .into_iter()
        .map(|a| (a.call_id, a.cluster))
        .collect())
}

/// Reads and checks `DIR/clusters.json`.
pub fn read_summary(dataset_dir: &Path) -> anyhow::Result<ClustersJson> {
    let path = dataset_dir.join(SUMMARY_FILE);
    let bytes = std::fs::read(&path).map_err(|_| {
        usage(format!(
            "no cluster summary at {}: run `slmforge cluster {}` first",
            path.display(),
            dataset_dir.display()
        ))
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let version = v.get("schema_version").and_then(|x| x.as_u64());
    if version != Some(SCHEMA_VERSION as u64) {
        return Err(usage(format!(
            "{} has schema version {}, this slmforge reads version {SCHEMA_VERSION}: re-run `slmforge cluster`",
            path.display(),
            version.map_or("none".to_string(), |x| x.to_string())
        )));
    }
    serde_json::from_value(v).with_context(|| format!("reading {}", path.display()))
}

/// Each cluster's label terms from `DIR/clusters.json`; empty when the file
/// is absent (clusters given without a summary), an error when it is broken.
pub fn read_labels(dataset_dir: &Path) -> anyhow::Result<HashMap<i32, Vec<String>>> {
    if !dataset_dir.join(SUMMARY_FILE).exists() {
        return Ok(HashMap::new());
    }
    Ok(read_summary(dataset_dir)?
        .clusters
        .into_iter()
        .map(|c| (c.id, c.label_terms))
        .collect())
}
