//! `slmforge cluster` (phase 3): finds the workloads in a dataset by
//! itself. Writes `DIR/clusters.parquet`, `DIR/clusters.json` and
//! `DIR/clusters.svg`.
//!
//! How:
//! 1. Each call of `calls.parquet` becomes [`CallFacts`]: its system prompt
//!    and last user message (placeholder numbers removed, `<EMAIL_12>` ->
//!    `<EMAIL>`; whitespace collapsed; cut to about 256 and 128 tokens), the
//!    tools offered and called, the response kind, token counts.
//! 2. The distinct texts are embedded with all-MiniLM-L6-v2, from the
//!    on-disk cache where possible ([`cache`]); a system prompt shared by a
//!    workload is embedded once.
//! 3. [`FeatureSpec`] lays out one weighted vector per call: both
//!    embeddings, TF-IDF of offered and of called tool names, response kind
//!    and output-length bucket, each block scaled by its weight.
//! 4. KMeans (linfa-clustering): for each k in 2..=k_max, greedy k-means++
//!    seedings refined by linfa's KMeans on a sample of the calls projected
//!    onto its 48 leading principal components (linfa-reduction); the
//!    silhouette there scores each k and the smallest k within 0.01 of the
//!    best wins. The chosen k is refined on all calls in the full space. Or
//!    DBSCAN (linfa-clustering) with its radius chosen the same way.
//!    Clusters under the minimum size become outliers (-1), which stay on
//!    the general LLM.
//! 5. Clusters are numbered by size, then first call id, and described
//!    ([`describe`]): class-based TF-IDF terms, called tools, the call
//!    nearest the centroid, token percentiles, response-kind rates, purity
//!    against logged `workload_id`s; ARI against `--truth`.
//!
//! Invariants: reads only redacted calls (`calls.parquet`); same dataset,
//! config and seed give byte-identical artifacts, whatever the thread count
//! (seeded RNGs, per-row parallel work, stable orders; timings and cache
//! figures are printed, not stored); a run with nothing new to embed never
//! loads the model ([`crate::ml::embed::LazyEmbedder`]); `route::assign` featurises a new call
//! exactly as the run did, from what `clusters.json` stores.

pub mod algo;
pub mod cache;
pub mod describe;
pub mod ids;
pub mod metrics;
pub mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use ndarray::{Array2, Axis};
use rayon::prelude::*;

use crate::artifact::clusters::{
    write_assignments, Assignment, ClustersJson, EmbedderInfo, KScore, SCHEMA_VERSION,
};
use crate::artifact::{ASSIGNMENTS_FILE, PLOT_FILE, SUMMARY_FILE};
use crate::ml::embed::TextEmbedder;
use crate::ml::features::{AnswerClass, CallFacts, FeatureSpec, FeatureWeights, TextLimits};
use crate::ml::models::EMBEDDER_ID;
use crate::util::usage;

/// Default [`ClusterConfig::outlier_z`].
pub const DEFAULT_OUTLIER_Z: f32 = 2.0;

/// Default DBSCAN core-point threshold (the point itself included).
pub const DEFAULT_MIN_POINTS: usize = 5;

/// Default largest k tried by the automatic search (also capped by
/// calls / min_cluster_size).
pub const DEFAULT_K_MAX: usize = 20;

/// The clustering algorithm.
#[derive(Clone, Debug, PartialEq)]
pub enum Algorithm {
    /// KMeans; k from the config or chosen by silhouette.
    KMeans,
    /// DBSCAN on the calls' leading principal components (those of the
    /// sample, [`algo::SEARCH_DIMS`] of them) plus the length of what they
    /// leave out: `eps` is the neighbourhood radius there (`None`: chosen on
    /// the sample by [`algo::choose_eps`]),
    /// `min_points` the core-point threshold (the point itself included).
    /// Points in no dense region are outliers.
    Dbscan { eps: Option<f32>, min_points: usize },
}

/// Settings of a clustering run.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of clusters for KMeans; `None` chooses it by silhouette.
    pub k: Option<usize>,
    /// With automatic k: cluster each answer class ([`AnswerClass`]: tool
    /// calls and agent-loop steps, text answers to a user, JSON answers)
    /// separately, each with its own k.
    pub partition: bool,
    /// Keep the cluster ids of the dataset's earlier clustering
    /// ([`ids`]).
    pub stable_ids: bool,
    /// Largest k tried when choosing; `None`: min(20, calls / min_cluster_size).
    pub k_max: Option<usize>,
    pub seed: u64,
    pub algorithm: Algorithm,
    /// Clusters smaller than this become outliers.
    pub min_cluster_size: usize,
    /// KMeans: members more isolated from their fellow members than the
    /// cluster's median plus this many robust standard deviations become
    /// outliers ([`algo::trim_isolated`]); `None` keeps every call in a
    /// cluster.
    pub outlier_z: Option<f32>,
    pub weights: FeatureWeights,
    pub text: TextLimits,
    /// `<EMAIL_12>` -> `<EMAIL>` before embedding and labelling.
    pub normalise_placeholders: bool,
    /// A `synth` labels sidecar: report the adjusted Rand index against it.
    pub truth: Option<PathBuf>,
    /// Calls in the sample used for the k search, silhouettes, the DBSCAN
    /// radius estimate and the plot.
    pub sample: usize,
    /// Write `clusters.svg`.
    pub plot: bool,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            k: None,
            partition: true,
            stable_ids: true,
            k_max: None,
            seed: 0,
            algorithm: Algorithm::KMeans,
            min_cluster_size: 20,
            outlier_z: Some(DEFAULT_OUTLIER_Z),
            weights: FeatureWeights::default(),
            text: TextLimits::default(),
            normalise_placeholders: true,
            truth: None,
            sample: 2000,
            plot: true,
            progress: true,
        }
    }
}

/// Seconds spent in each step.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub read_s: f64,
    pub embed_s: f64,
    pub cluster_s: f64,
    pub describe_s: f64,
    pub write_s: f64,
    pub total_s: f64,
}

/// What the embedding cache did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CacheStats {
    /// Distinct non-empty texts the run needed.
    pub texts: usize,
    pub hits: usize,
    pub misses: usize,
    pub file: PathBuf,
    /// Whether the embedding model ran at all.
    pub model_ran: bool,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct ClusterOutput {
    /// One per call of `calls.parquet`, in its order.
    pub assignments: Vec<Assignment>,
    pub summary: ClustersJson,
    /// Clusters kept.
    pub k: usize,
    /// Silhouette of each k tried, on the sample.
    pub silhouettes: Vec<KScore>,
    pub timings: Timings,
    pub cache: CacheStats,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// With `--truth`: per cluster, its calls' true workloads by count.
    pub truth_mix: Option<std::collections::BTreeMap<i32, Vec<(String, usize)>>>,
}
impl ClusterConfig {
    /// Checks the settings against the number of calls; errors are usage errors (exit 2).
    pub fn validate(&self, n: usize) -> anyhow::Result<()> {
        let cfg = self;
        if let Some(k) = cfg.k {
            if k == 0 {
                return Err(usage("--k must be at least 1"));
            }
            if k > n {
                return Err(usage(format!(
                    "--k {k} needs at least {k} calls; the dataset has {n}"
                )));
            }
        }
        if cfg.k_max.is_some_and(|k| k < 2) {
            return Err(usage("--k-max must be at least 2"));
        }
        if cfg.sample < 2 {
            return Err(usage("--sample must be at least 2"));
        }
        if let Algorithm::Dbscan { eps, min_points } = &cfg.algorithm {
            if eps.is_some_and(|e| !(e.is_finite() && e > 0.0)) {
                return Err(usage("--eps must be a positive number"));
            }
            if *min_points < 2 {
                return Err(usage("--min-points must be at least 2"));
            }
        }
        Ok(())
    }
}

/// Clusters `DATASET_DIR/calls.parquet` and writes the artifacts: read
/// the calls' facts → embed their texts (cache first) → lay out the
/// feature matrix → cluster → describe → write.
pub fn run(
    cfg: &ClusterConfig,
    dataset_dir: &Path,
    embedder: &dyn TextEmbedder,
) -> anyhow::Result<ClusterOutput> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let calls = read_calls(cfg, dataset_dir)?;
    let truth = cfg.truth.as_deref().map(metrics::read_truth).transpose()?;
    timings.read_s = started.elapsed().as_secs_f64();

    let t = Instant::now();
    let table = cache::text_table(&calls.facts);
    let (vectors, cache_stats) =
        cache::embed_texts(dataset_dir, &table.texts, embedder, cfg.progress)?;
    timings.embed_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (spec, x) = featurise(cfg, &calls.facts, &table, &vectors, embedder.dim());
    let classes: Vec<AnswerClass> = calls.facts.iter().map(AnswerClass::of).collect();
    let mut clustering = algo::cluster(cfg, &x, &calls.call_ids, &classes)?;
    timings.cluster_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut clusters = describe::clusters(&calls, &table, &spec, &x, &clustering);
    let purity = describe::overall_purity(&clusters, &clustering, &calls.facts);
    let id_matching = if cfg.stable_ids {
        keep_previous_ids(dataset_dir, &calls, &mut clustering, &mut clusters)
    } else {
        None
    };
    let agreement = truth
        .as_ref()
        .and_then(|t| metrics::agreement(t, &calls.origins, &clustering.labels));
    let summary = ClustersJson {
        schema_version: SCHEMA_VERSION,
        algorithm: match cfg.algorithm {
            Algorithm::KMeans => "kmeans",
            Algorithm::Dbscan { .. } => "dbscan",
        }
        .to_string(),
        k: clustering.k(),
        seed: cfg.seed,
        calls: calls.len(),
        min_cluster_size: cfg.min_cluster_size,
        dbscan: clustering.dbscan.clone(),
        k_search: clustering.k_search.clone(),
        embedder: EmbedderInfo {
            id: EMBEDDER_ID.to_string(),
            checksum: embedder.checksum().to_string(),
            dim: embedder.dim(),
        },
        features: spec.clone(),
        outliers: clustering.labels.iter().filter(|&&l| l < 0).count(),
        purity,
        id_matching,
        clusters,
        ari: agreement.as_ref().map(|a| a.ari),
        nmi: agreement.as_ref().map(|a| a.nmi),
        truth_calls: truth
            .as_ref()
            .map(|_| agreement.as_ref().map_or(0, |a| a.calls)),
    };
    let assignments: Vec<Assignment> = calls
        .call_ids
        .iter()
        .zip(clustering.labels.iter().zip(&clustering.distances))
        .map(|(call_id, (&cluster, &distance))| Assignment {
            call_id: call_id.clone(),
            cluster,
            distance,
        })
        .collect();
    timings.describe_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let files = write(cfg, dataset_dir, &assignments, &summary, &clustering)?;
    timings.write_s = t.elapsed().as_secs_f64();
    timings.total_s = started.elapsed().as_secs_f64();
    Ok(ClusterOutput {
        assignments,
        k: summary.k,
        silhouettes: summary.k_search.clone(),
        summary,
        timings,
        cache: cache_stats,
        files,
        truth_mix: agreement.map(|a| a.mix),
    })
}

/// Renumbers the clusters after the earlier run's in this dataset
/// ([`ids::match_previous`]), when there is one that shares calls with
/// this run; clusters are then listed by id.
fn keep_previous_ids(
    dataset_dir: &Path,
    calls: &Calls,
    clustering: &mut algo::Clustering,
    clusters: &mut [crate::artifact::clusters::ClusterSummary],
) -> Option<ids::IdMatching> {
    if !dataset_dir.join(ASSIGNMENTS_FILE).exists() {
        return None;
    }
    let previous = match crate::artifact::clusters::read_assignments(dataset_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "cluster: the earlier clusters.parquet is unreadable, ids not carried over: {e:#}"
            );
            return None;
        }
    };
    if !calls.call_ids.iter().any(|id| previous.contains_key(id)) {
        return None;
    }
    let (ids, m) = ids::match_previous(
        &previous,
        &calls.call_ids,
        &clustering.labels,
        clustering.k(),
    );
    if ids.iter().enumerate().all(|(c, &id)| id == c as i32) {
        // The numbering by size already is the earlier one: nothing to record
        // (so an unchanged re-run writes the same bytes).
        return None;
    }
    for l in clustering.labels.iter_mut().filter(|l| **l >= 0) {
        *l = ids[*l as usize];
    }
    for c in clusters.iter_mut() {
        c.id = ids[c.id as usize];
    }
    clusters.sort_by_key(|c| c.id);
    Some(m)
}

/// The calls of a dataset as clustering sees them.
pub struct Calls {
    pub facts: Vec<CallFacts>,
    pub call_ids: Vec<String>,
    /// (source line, source index): where each call came from (for `--truth`).
    pub origins: Vec<(u64, u32)>,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.call_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.call_ids.is_empty()
    }
}

/// Reads `calls.parquet` (checking the settings against its size) into facts.
fn read_calls(cfg: &ClusterConfig, dataset_dir: &Path) -> anyhow::Result<Calls> {
    let rows = crate::artifact::calls::read_rows(dataset_dir)?;
    cfg.validate(rows.len())?;
    let facts: Vec<CallFacts> = rows
        .par_iter()
        .map(|r| {
            let call = r
                .to_call()
                .with_context(|| format!("call {} in calls.parquet", r.call_id))?;
            Ok(CallFacts::from_call(
                &call,
                &cfg.text,
                cfg.normalise_placeholders,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Calls {
        facts,
        call_ids: rows.iter().map(|r| r.call_id.clone()).collect(),
        origins: rows
            .iter()
            .map(|r| (r.source_line, r.source_index))
            .collect(),
    })
}

/// Fits the feature spec and lays out one weighted row per call.
fn featurise(
    cfg: &ClusterConfig,
    facts: &[CallFacts],
    table: &cache::TextTable,
    vectors: &[Vec<f32>],
    dim: usize,
) -> (FeatureSpec, Array2<f32>) {
    let spec = FeatureSpec::fit(
        facts,
        cfg.weights,
        cfg.text,
        cfg.normalise_placeholders,
        dim,
    );
    let mut x = Array2::<f32>::zeros((facts.len(), spec.dims));
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let sys = table.system_of[i].map(|j| vectors[j].as_slice());
            let user = table.user_of[i].map(|j| vectors[j].as_slice());
            spec.write_row(
                &facts[i],
                sys,
                user,
                row.as_slice_mut().expect("standard layout"),
            );
        });
    (spec, x)
}

/// Writes `clusters.parquet`, `clusters.json` and (unless turned off)
/// `clusters.svg`; returns their paths.
fn write(
    cfg: &ClusterConfig,
    dataset_dir: &Path,
    assignments: &[Assignment],
    summary: &ClustersJson,
    clustering: &algo::Clustering,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![
        dataset_dir.join(ASSIGNMENTS_FILE),
        dataset_dir.join(SUMMARY_FILE),
    ];
    write_assignments(&files[0], assignments)?;
    crate::util::write_json(&files[1], summary)?;
    if cfg.plot {
        let path = dataset_dir.join(PLOT_FILE);
        let svg = plot::render(clustering, summary);
        crate::util::write_atomic(&path, svg.as_bytes())?;
        files.push(path);
    }
    Ok(files)
}

/// A progress bar, or a hidden one.
pub(crate) fn progress_bar(on: bool, total: usize, msg: &str) -> ProgressBar {
    if on {
        crate::util::count_bar(total as u64, msg)
    } else {
        ProgressBar::hidden()
    }
}
