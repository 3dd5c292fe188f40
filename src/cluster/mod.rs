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
//! loads the model ([`LazyEmbedder`]); [`assign`] featurises a new call
//! exactly as the run did, from what `clusters.json` stores.

pub mod algo;
pub mod artifact;
pub mod bench;
pub mod cache;
pub mod describe;
pub mod features;
pub mod metrics;
pub mod plot;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use ndarray::{Array2, Axis};
use rayon::prelude::*;

pub use algo::{EpsScore, KScore};
pub use artifact::{
    read_assignment_rows, read_assignments, read_summary, Assignment, ClusterStats, ClusterSummary,
    ClustersJson, DbscanInfo, EmbedderInfo, Percentiles, ToolShare, ASSIGNMENTS_FILE, OUTLIER,
    PLOT_FILE, SCHEMA_VERSION, SUMMARY_FILE,
};
pub use features::{CallFacts, FeatureSpec, FeatureWeights, TextLimits};

use crate::call::Call;
use crate::embed::Embedder;
use crate::util::usage;

/// Catalogue id of the sentence embedder clustering uses.
pub const EMBEDDER_ID: &str = "all-minilm-l6-v2";

/// Default largest k tried by the automatic search (also capped by
/// calls / min_cluster_size).
pub const DEFAULT_K_MAX: usize = 20;

/// Texts embedded per chunk; each chunk is appended to the cache as it
/// completes, so an interrupted run keeps its work.
const EMBED_CHUNK: usize = 1024;

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
    /// Largest k tried when choosing; `None`: min(20, calls / min_cluster_size).
    pub k_max: Option<usize>,
    pub seed: u64,
    pub algorithm: Algorithm,
    /// Clusters smaller than this become outliers.
    pub min_cluster_size: usize,
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
            k_max: None,
            seed: 0,
            algorithm: Algorithm::KMeans,
            min_cluster_size: 20,
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
}

/// Something that turns texts into unit sentence embeddings.
pub trait TextEmbedder {
    /// sha256 of the model weights (keys the cache).
    fn checksum(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>>;
}

impl TextEmbedder for Embedder {
    fn checksum(&self) -> &str {
        Embedder::checksum(self)
    }
    fn dim(&self) -> usize {
        Embedder::dim(self)
    }
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>> {
        self.embed_with_progress(texts, pb)
    }
}

/// An embedder that loads its model only when asked to embed something:
/// the checksum comes from the weights' verification stamp and the width
/// from `config.json`, so a fully cached run never loads the model.
pub struct LazyEmbedder {
    dir: PathBuf,
    checksum: String,
    dim: usize,
    model: OnceLock<Embedder>,
}

impl LazyEmbedder {
    /// Checks that `dir` holds an embedder; exit 2 with a hint when not.
    pub fn new(dir: &Path) -> anyhow::Result<LazyEmbedder> {
        let weights = dir.join("model.safetensors");
        let config = dir.join("config.json");
        if !weights.is_file() || !config.is_file() || !dir.join("tokenizer.json").is_file() {
            return Err(usage(format!(
                "the sentence embedder is not installed at {}: run `slmforge models fetch {EMBEDDER_ID}` (or pass --embedder DIR)",
                dir.display()
            )));
        }
        let cfg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?,
        )
        .with_context(|| format!("parsing {}", config.display()))?;
        let dim = cfg
            .get("hidden_size")
            .and_then(|v| v.as_u64())
            .with_context(|| format!("{}: no hidden_size", config.display()))?
            as usize;
        let checksum = crate::models::cached_sha256(&weights)?;
        Ok(LazyEmbedder {
            dir: dir.to_path_buf(),
            checksum,
            dim,
            model: OnceLock::new(),
        })
    }

    /// Whether the model has been loaded.
    pub fn loaded(&self) -> bool {
        self.model.get().is_some()
    }

    fn model(&self) -> anyhow::Result<&Embedder> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let m = Embedder::load(&self.dir, &candle_core::Device::Cpu)?;
        anyhow::ensure!(
            m.dim() == self.dim && m.checksum() == self.checksum,
            "the embedder at {} changed while loading",
            self.dir.display()
        );
        Ok(self.model.get_or_init(|| m))
    }
}

impl TextEmbedder for LazyEmbedder {
    fn checksum(&self) -> &str {
        &self.checksum
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model()?.embed_with_progress(texts, pb)
    }
}

/// Clusters `DATASET_DIR/calls.parquet` and writes the artifacts.
pub fn run(
    cfg: &ClusterConfig,
    dataset_dir: &Path,
    embedder: &Embedder,
) -> anyhow::Result<ClusterOutput> {
    run_with(cfg, dataset_dir, embedder)
}

fn progress_bar(on: bool, total: usize, msg: &str) -> ProgressBar {
    if on {
        crate::util::count_bar(total as u64, msg)
    } else {
        ProgressBar::hidden()
    }
}

/// The distinct non-empty texts of the calls and, per call, the index of
/// its system and user text among them (first-seen order).
struct TextTable {
    texts: Vec<String>,
    system_of: Vec<Option<usize>>,
    user_of: Vec<Option<usize>>,
}

fn text_table(facts: &[CallFacts]) -> TextTable {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<String> = Vec::new();
    let mut system_of = Vec::with_capacity(facts.len());
    let mut user_of = Vec::with_capacity(facts.len());
    for f in facts {
        for (s, out) in [(&f.system, &mut system_of), (&f.user, &mut user_of)] {
            if s.is_empty() {
                out.push(None);
                continue;
            }
            let next = texts.len();
            let i = *index.entry(s.as_str()).or_insert(next);
            if i == next {
                texts.push(s.clone());
            }
            out.push(Some(i));
        }
    }
    TextTable {
        texts,
        system_of,
        user_of,
    }
}

/// Embeds the texts, from the cache where possible.
fn embed_texts(
    dataset_dir: &Path,
    texts: &[String],
    embedder: &dyn TextEmbedder,
    progress: bool,
) -> anyhow::Result<(Vec<Vec<f32>>, CacheStats)> {
    let mut cache = cache::EmbeddingCache::open(dataset_dir, embedder.checksum(), embedder.dim())?;
    let keys: Vec<cache::Key> = texts.par_iter().map(|t| cache::key(t)).collect();
    let mut out: Vec<Option<Vec<f32>>> = keys
        .iter()
        .map(|k| cache.get(k).map(<[f32]>::to_vec))
        .collect();
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
    let stats = CacheStats {
        texts: texts.len(),
        hits: texts.len() - missing.len(),
        misses: missing.len(),
        file: cache.path().to_path_buf(),
        model_ran: !missing.is_empty(),
    };
    if !missing.is_empty() {
        let pb = progress_bar(progress, missing.len(), "embed");
        for chunk in missing.chunks(EMBED_CHUNK) {
            let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let vecs = embedder.embed(&refs, &pb)?;
            anyhow::ensure!(
                vecs.len() == chunk.len() && vecs.iter().all(|v| v.len() == embedder.dim()),
                "the embedder returned {} vectors for {} texts",
                vecs.len(),
                chunk.len()
            );
            let records: Vec<(cache::Key, Vec<f32>)> =
                chunk.iter().zip(vecs).map(|(&i, v)| (keys[i], v)).collect();
            cache.append(&records)?;
            for (&i, (_, v)) in chunk.iter().zip(records) {
                out[i] = Some(v);
            }
        }
        pb.finish_and_clear();
    }
    Ok((
        out.into_iter()
            .map(|v| v.expect("every text embedded"))
            .collect(),
        stats,
    ))
}

/// Squared distance over the request blocks only.
fn request_distance(spec: &FeatureSpec, row: &[f32], centroid: &[f32]) -> f32 {
    spec.blocks
        .iter()
        .filter(|b| b.request)
        .map(|b| {
            row[b.offset..b.offset + b.len]
                .iter()
                .zip(&centroid[b.offset..b.offset + b.len])
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
        })
        .sum::<f32>()
        .sqrt()
}

fn full_distance(row: &[f32], centroid: &[f32]) -> f32 {
    row.iter()
        .zip(centroid)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The raw result of the algorithm, before the size filter and renumbering.
struct RawClustering {
    labels: Vec<Option<usize>>,
    centroids: Vec<Vec<f32>>,
    k_search: Vec<KScore>,
    dbscan: Option<DbscanInfo>,
}

fn cluster_kmeans(
    cfg: &ClusterConfig,
    x: &Array2<f32>,
    xs: &Array2<f32>,
    reduced: &Array2<f32>,
) -> anyhow::Result<RawClustering> {
    let n = x.nrows();
    let ks: Vec<usize> = match cfg.k {
        Some(k) => vec![k],
        None => {
            let cap = cfg
                .k_max
                .unwrap_or_else(|| DEFAULT_K_MAX.min(n / cfg.min_cluster_size.max(1)));
            (2..=cap.min(xs.nrows().saturating_sub(1))).collect()
        }
    };
    if ks.is_empty() {
        // Too few calls to split: one cluster.
        let labels = vec![Some(0); n];
        let centroids = algo::centroids_of(x.view(), &labels, 1);
        return Ok(RawClustering {
            labels,
            centroids,
            k_search: Vec::new(),
            dbscan: None,
        });
    }
    let dist = algo::pairwise_distances(reduced.view());
    let pb = progress_bar(cfg.progress && ks.len() > 1, ks.len(), "k search");
    let (scores, mut all) = algo::search_k(reduced.view(), &dist, &ks, cfg.seed, &pb)?;
    pb.finish_and_clear();
    let k = match cfg.k {
        Some(k) => k,
        None => algo::choose_k(&scores).expect("at least one k tried"),
    };
    let pos = ks.iter().position(|&x| x == k).expect("chosen k was tried");
    // Full-width means of the sample's clusters, refined on all calls.
    let sample_labels: Vec<Option<usize>> = all.swap_remove(pos).into_iter().map(Some).collect();
    let start = algo::centroids_of(xs.view(), &sample_labels, k);
    let init = Array2::from_shape_vec((k, x.ncols()), start.into_iter().flatten().collect())?;
    let centroids = algo::kmeans(x.view(), k, cfg.seed, 1, Some(init))?;
    let labels = algo::assign_all(x.view(), &centroids)
        .into_iter()
        .map(|(c, _)| Some(c))
        .collect();
    Ok(RawClustering {
        labels,
        centroids,
        k_search: scores,
        dbscan: None,
    })
}

/// DBSCAN on the calls' leading principal components plus the residual
/// length ([`algo::Reduction::apply_with_residual`]); centroids are the
/// members' means in the full feature space.
fn cluster_dbscan(
    cfg: &ClusterConfig,
    x: &Array2<f32>,
    xs: &Array2<f32>,
    reduction: &algo::Reduction,
    eps: Option<f32>,
    min_points: usize,
) -> anyhow::Result<RawClustering> {
    let (eps, eps_search) = match eps {
        Some(e) => (e, Vec::new()),
        None => {
            let sample = reduction.apply_with_residual(xs.view());
            // The minimum size, scaled to the sample.
            let min_size = (cfg.min_cluster_size * xs.nrows()).div_ceil(x.nrows().max(1));
            algo::choose_eps(
                sample.view(),
                &algo::pairwise_distances(sample.view()),
                min_points,
                min_size,
            )?
        }
    };
    let labels = algo::dbscan(
        reduction.apply_with_residual(x.view()).view(),
        eps,
        min_points,
    )?;
    let k = labels.iter().flatten().map(|&c| c + 1).max().unwrap_or(0);
    let centroids = algo::centroids_of(x.view(), &labels, k);
    Ok(RawClustering {
        labels,
        centroids,
        k_search: Vec::new(),
        dbscan: Some(DbscanInfo {
            eps,
            eps_auto: !eps_search.is_empty(),
            min_points,
            eps_search,
        }),
    })
}

fn check_config(cfg: &ClusterConfig, n: usize) -> anyhow::Result<()> {
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

/// As [`run`], with any [`TextEmbedder`] (the CLI passes a [`LazyEmbedder`]).
pub fn run_with(
    cfg: &ClusterConfig,
    dataset_dir: &Path,
    embedder: &dyn TextEmbedder,
) -> anyhow::Result<ClusterOutput> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let rows = crate::dataset::read_rows(dataset_dir)?;
    let n = rows.len();
    check_config(cfg, n)?;
    let truth = cfg.truth.as_deref().map(metrics::read_truth).transpose()?;
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
    let call_ids: Vec<String> = rows.iter().map(|r| r.call_id.clone()).collect();
    let origins: Vec<(u64, u32)> = rows
        .iter()
        .map(|r| (r.source_line, r.source_index))
        .collect();
    drop(rows);
    timings.read_s = started.elapsed().as_secs_f64();

    // Embeddings of the distinct texts.
    let t = Instant::now();
    let table = text_table(&facts);
    let (vectors, cache_stats) = embed_texts(dataset_dir, &table.texts, embedder, cfg.progress)?;
    timings.embed_s = t.elapsed().as_secs_f64();

    // Feature matrix.
    let t = Instant::now();
    let spec = FeatureSpec::fit(
        &facts,
        cfg.weights,
        cfg.text,
        cfg.normalise_placeholders,
        embedder.dim(),
    );
    let mut x = Array2::<f32>::zeros((n, spec.dims));
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

    // Clustering.
    // The sample must hold more calls than the k asked for.
    let sample_max = cfg.sample.max(cfg.k.map_or(0, |k| 2 * k));
    let sample_idx = algo::sample_indices(n, sample_max, cfg.seed);
    let xs = x.select(Axis(0), &sample_idx);
    let reduction = algo::Reduction::fit(xs.view(), algo::SEARCH_DIMS);
    let reduced = reduction.apply(xs.view());
    let raw = match &cfg.algorithm {
        Algorithm::KMeans => cluster_kmeans(cfg, &x, &xs, &reduced)?,
        Algorithm::Dbscan { eps, min_points } => {
            cluster_dbscan(cfg, &x, &xs, &reduction, *eps, *min_points)?
        }
    };

    // Minimum size, then ids by size (descending) and first call id.
    let k_raw = raw.centroids.len();
    let mut members_raw: Vec<Vec<usize>> = vec![Vec::new(); k_raw];
    for (i, l) in raw.labels.iter().enumerate() {
        if let Some(c) = *l {
            members_raw[c].push(i);
        }
    }
    let mut kept: Vec<usize> = (0..k_raw)
        .filter(|&c| members_raw[c].len() >= cfg.min_cluster_size.max(1))
        .collect();
    let first_id = |c: usize| {
        members_raw[c]
            .iter()
            .map(|&i| call_ids[i].as_str())
            .min()
            .unwrap_or("")
    };
    kept.sort_by(|&a, &b| {
        members_raw[b]
            .len()
            .cmp(&members_raw[a].len())
            .then_with(|| first_id(a).cmp(first_id(b)))
    });
    let mut new_id: Vec<i32> = vec![OUTLIER; k_raw];
    for (id, &c) in kept.iter().enumerate() {
        new_id[c] = id as i32;
    }
    let k = kept.len();
    let centroids: Vec<Vec<f32>> = kept.iter().map(|&c| raw.centroids[c].clone()).collect();
    // Outliers are measured against the kept centroids (all centroids when none is kept).
    let fallback: &[Vec<f32>] = if k > 0 { &centroids } else { &raw.centroids };
    let placed: Vec<(i32, f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let row = x.row(i);
            let row = row.as_slice().expect("standard layout");
            match raw.labels[i].map(|c| (c, new_id[c])) {
                Some((c, id)) if id >= 0 => (id, full_distance(row, &raw.centroids[c])),
                _ => (
                    OUTLIER,
                    fallback
                        .iter()
                        .map(|cen| full_distance(row, cen))
                        .fold(f32::INFINITY, f32::min)
                        .min(f32::MAX),
                ),
            }
        })
        .collect();
    let labels: Vec<i32> = placed.iter().map(|p| p.0).collect();
    let distances: Vec<f32> = placed.iter().map(|p| p.1).collect();
    timings.cluster_s = t.elapsed().as_secs_f64();

    // Descriptions.
    let t = Instant::now();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            members[l as usize].push(i);
        }
    }
    let (doc_terms, vocab) = intern_terms(&table.texts);
    let terms_per_cluster = describe::label_terms(
        &doc_terms,
        &vocab,
        &table.system_of,
        &table.user_of,
        &labels,
        k,
    );
    let clusters: Vec<ClusterSummary> = (0..k)
        .map(|c| {
            let m = &members[c];
            let mf: Vec<&CallFacts> = m.iter().map(|&i| &facts[i]).collect();
            let order = describe::nearest_members(m, &distances, &call_ids);
            let member_d: Vec<f32> = m.iter().map(|&i| distances[i]).collect();
            let request_d: Vec<f32> = m
                .iter()
                .map(|&i| {
                    request_distance(
                        &spec,
                        x.row(i).as_slice().expect("standard layout"),
                        &centroids[c],
                    )
                })
                .collect();
            let purity = describe::purity(&mf);
            ClusterSummary {
                id: c as i32,
                label_terms: terms_per_cluster[c].clone(),
                tools: describe::tools(&mf),
                size: m.len(),
                share: describe::share(m.len(), n),
                representative_call_id: call_ids[order[0]].clone(),
                example_call_ids: order
                    .iter()
                    .take(describe::EXAMPLES)
                    .map(|&i| call_ids[i].clone())
                    .collect(),
                centroid: centroids[c].clone(),
                radius: describe::percentile_f32(&member_d, 0.95) * describe::RADIUS_SLACK,
                request_radius: describe::percentile_f32(&request_d, 0.95) * describe::RADIUS_SLACK,
                stats: describe::stats(&mf),
                purity: purity.as_ref().map(|p| p.0),
                workload_id: purity.map(|p| p.1),
            }
        })
        .collect();
    let outliers = labels.iter().filter(|&&l| l < 0).count();
    let overall_purity = {
        let (mut pure, mut total) = (0.0, 0usize);
        for (c, cl) in clusters.iter().enumerate() {
            let with_id = members[c]
                .iter()
                .filter(|&&i| facts[i].workload_id.is_some())
                .count();
            if let Some(p) = cl.purity {
                pure += p * with_id as f64;
                total += with_id;
            }
        }
        (total > 0).then(|| (pure / total as f64 * 1e4).round() / 1e4)
    };
    let (ari, truth_calls) = match &truth {
        Some(t) => {
            let (pred, gold): (Vec<i32>, Vec<&str>) = origins
                .iter()
                .zip(&labels)
                .filter_map(|(o, &l)| t.get(o).map(|w| (l, w.as_str())))
                .unzip();
            if pred.is_empty() {
                (None, Some(0))
            } else {
                (
                    Some(metrics::adjusted_rand_index(&pred, &gold)),
                    Some(pred.len()),
                )
            }
        }
        None => (None, None),
    };
    let summary = ClustersJson {
        schema_version: SCHEMA_VERSION,
        algorithm: match cfg.algorithm {
            Algorithm::KMeans => "kmeans",
            Algorithm::Dbscan { .. } => "dbscan",
        }
        .to_string(),
        k,
        seed: cfg.seed,
        calls: n,
        min_cluster_size: cfg.min_cluster_size,
        dbscan: raw.dbscan.clone(),
        k_search: raw.k_search.clone(),
        embedder: EmbedderInfo {
            id: EMBEDDER_ID.to_string(),
            checksum: embedder.checksum().to_string(),
            dim: embedder.dim(),
        },
        features: spec.clone(),
        clusters,
        outliers,
        purity: overall_purity,
        ari,
        truth_calls,
    };
    let assignments: Vec<Assignment> = call_ids
        .into_iter()
        .zip(labels.iter().zip(&distances))
        .map(|(call_id, (&cluster, &distance))| Assignment {
            call_id,
            cluster,
            distance,
        })
        .collect();
    timings.describe_s = t.elapsed().as_secs_f64();

    // Artifacts.
    let t = Instant::now();
    let mut files = vec![
        dataset_dir.join(ASSIGNMENTS_FILE),
        dataset_dir.join(SUMMARY_FILE),
    ];
    artifact::write_assignments(&files[0], &assignments)?;
    crate::util::write_json(&files[1], &summary)?;
    if cfg.plot {
        let path = dataset_dir.join(PLOT_FILE);
        let svg = render_plot(&reduction, &reduced, &sample_idx, &labels, &summary);
        crate::util::write_atomic(&path, svg.as_bytes())?;
        files.push(path);
    }
    timings.write_s = t.elapsed().as_secs_f64();
    timings.total_s = started.elapsed().as_secs_f64();
    Ok(ClusterOutput {
        assignments,
        k,
        silhouettes: summary.k_search.clone(),
        summary,
        timings,
        cache: cache_stats,
        files,
    })
}

/// Terms of each distinct text, as (term id, count), and the term strings.
fn intern_terms(texts: &[String]) -> (Vec<Vec<(u32, u32)>>, Vec<String>) {
    let per_text: Vec<Vec<String>> = texts.par_iter().map(|t| describe::terms(t)).collect();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut vocab: Vec<String> = Vec::new();
    let docs = per_text
        .into_iter()
        .map(|words| {
            let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
            for w in words {
                let next = vocab.len() as u32;
                let id = *ids.entry(w).or_insert_with_key(|w| {
                    vocab.push(w.clone());
                    next
                });
                *counts.entry(id).or_default() += 1;
            }
            counts.into_iter().collect()
        })
        .collect();
    (docs, vocab)
}

fn render_plot(
    reduction: &algo::Reduction,
    reduced: &Array2<f32>,
    sample_idx: &[usize],
    labels: &[i32],
    s: &ClustersJson,
) -> String {
    let centroids = Array2::from_shape_vec(
        (s.clusters.len(), s.features.dims),
        s.clusters
            .iter()
            .flat_map(|c| c.centroid.iter().copied())
            .collect(),
    )
    .expect("centroid widths match the features");
    let centroids = reduction.apply(centroids.view());
    let two = |a: &Array2<f32>| {
        let mut out = Array2::<f64>::zeros((a.nrows(), 2));
        for j in 0..a.ncols().min(2) {
            out.column_mut(j).assign(&a.column(j).mapv(f64::from));
        }
        out
    };
    let point_labels: Vec<i32> = sample_idx.iter().map(|&i| labels[i]).collect();
    let mut legend: Vec<plot::LegendEntry> = s
        .clusters
        .iter()
        .map(|c| plot::LegendEntry {
            id: c.id,
            size: c.size,
            terms: c.label_terms.clone(),
        })
        .collect();
    if s.outliers > 0 {
        legend.push(plot::LegendEntry {
            id: OUTLIER,
            size: s.outliers,
            terms: Vec::new(),
        });
    }
    let ids: Vec<i32> = s.clusters.iter().map(|c| c.id).collect();
    let title = format!(
        "{} calls, {} clusters ({}), {} outliers; first two principal components of {} sampled calls",
        s.calls,
        s.k,
        s.algorithm,
        s.outliers,
        sample_idx.len()
    );
    plot::svg(
        &two(reduced),
        &point_labels,
        &two(&centroids),
        &ids,
        &legend,
        &title,
    )
}

/// Featurises one new call as the run did and returns the nearest cluster,
/// or `None` when it lies beyond that cluster's radius (or the embedder is
/// not the one the clusters were made with, or embedding fails). A call
/// without a response is compared on the request features only.
pub fn assign(summary: &ClustersJson, call: &Call, embedder: &Embedder) -> Option<i32> {
    assign_with(summary, call, embedder).ok().flatten()
}

/// As [`assign`], with any [`TextEmbedder`] and errors reported.
pub fn assign_with(
    summary: &ClustersJson,
    call: &Call,
    embedder: &dyn TextEmbedder,
) -> anyhow::Result<Option<i32>> {
    anyhow::ensure!(
        embedder.checksum() == summary.embedder.checksum,
        "the clusters were made with embedder {}, not the one loaded",
        summary.embedder.checksum
    );
    let spec = &summary.features;
    let f = spec.facts(call);
    let texts: Vec<&str> = [f.system.as_str(), f.user.as_str()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let vecs = embedder.embed(&texts, &ProgressBar::hidden())?;
    let mut it = vecs.iter();
    let sys = (!f.system.is_empty()).then(|| it.next()).flatten();
    let user = (!f.user.is_empty()).then(|| it.next()).flatten();
    let mut row = vec![0f32; spec.dims];
    spec.write_row(
        &f,
        sys.map(Vec::as_slice),
        user.map(Vec::as_slice),
        &mut row,
    );
    let full = f.has_response();
    let best = summary
        .clusters
        .iter()
        .map(|c| {
            let d = if full {
                full_distance(&row, &c.centroid)
            } else {
                request_distance(spec, &row, &c.centroid)
            };
            (c, d)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
    Ok(best.and_then(|(c, d)| {
        let radius = if full { c.radius } else { c.request_radius };
        (d <= radius).then_some(c.id)
    }))
}

// ---------------------------------------------------------------------------
// CLI

/// `--k auto` or a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KArg(pub Option<usize>);

impl std::str::FromStr for KArg {
    type Err = String;
    fn from_str(s: &str) -> Result<KArg, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(KArg(None));
        }
        s.parse::<usize>()
            .map(|k| KArg(Some(k)))
            .map_err(|_| format!("expected `auto` or a number of clusters, got {s:?}"))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmArg {
    Kmeans,
    Dbscan,
}

/// `slmforge cluster`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Dataset directory written by `slmforge ingest` (reads DIR/calls.parquet;
    /// writes clusters.parquet, clusters.json, clusters.svg and cache/ there).
    pub dataset: PathBuf,
    /// Number of clusters, or `auto` to choose it by silhouette.
    #[arg(long, default_value = "auto")]
    pub k: KArg,
    /// Largest k tried by `--k auto` [default: min(20, calls / min-cluster-size)].
    #[arg(long)]
    pub k_max: Option<usize>,
    /// Seed: the same dataset, options and seed give byte-identical outputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Kmeans)]
    pub algorithm: AlgorithmArg,
    /// DBSCAN neighbourhood radius, in the space of the calls' first 48
    /// principal components plus their residual length [default: chosen on
    /// the sample].
    #[arg(long)]
    pub eps: Option<f32>,
    /// DBSCAN core-point threshold (the point itself included).
    #[arg(long, default_value_t = 5)]
    pub min_points: usize,
    /// Clusters smaller than this become outliers (left on the LLM).
    #[arg(long, default_value_t = 20)]
    pub min_cluster_size: usize,
    /// Feature weight, PART=W (repeatable); parts: system, user,
    /// tools_offered, tools_called, response_kind, json_keys, length.
    #[arg(long = "weight", value_name = "PART=W")]
    pub weights: Vec<String>,
    /// Characters of the system prompt embedded.
    #[arg(long, default_value_t = TextLimits::default().system_chars)]
    pub system_chars: usize,
    /// Characters of the user request embedded.
    #[arg(long, default_value_t = TextLimits::default().user_chars)]
    pub user_chars: usize,
    /// Ground-truth labels (`slmforge synth`'s .labels.jsonl): report the
    /// adjusted Rand index.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Embedder directory [default: the catalogue's all-minilm-l6-v2 in $SLMFORGE_MODELS].
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Calls sampled for the k search, silhouettes and the plot.
    #[arg(long, default_value_t = 2000)]
    pub sample: usize,
    /// Do not write clusters.svg.
    #[arg(long)]
    pub no_plot: bool,
    /// Also print the timings and cache figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ClusterArgs {
    /// The run configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ClusterConfig> {
        let weights = FeatureWeights::default()
            .parse_overrides(&self.weights)
            .map_err(usage)?;
        Ok(ClusterConfig {
            k: self.k.0,
            k_max: self.k_max,
            seed: self.seed,
            algorithm: match self.algorithm {
                AlgorithmArg::Kmeans => Algorithm::KMeans,
                AlgorithmArg::Dbscan => Algorithm::Dbscan {
                    eps: self.eps,
                    min_points: self.min_points,
                },
            },
            min_cluster_size: self.min_cluster_size.max(1),
            weights,
            text: TextLimits {
                system_chars: self.system_chars.max(1),
                user_chars: self.user_chars.max(1),
            },
            normalise_placeholders: true,
            truth: self.truth.clone(),
            sample: self.sample,
            plot: !self.no_plot,
            progress: true,
        })
    }
}

/// Runs `slmforge cluster`.
pub fn cli(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    if matches!(cfg.algorithm, Algorithm::KMeans) && (args.eps.is_some()) {
        return Err(usage("--eps applies to --algorithm dbscan only"));
    }
    // Fail on a missing dataset before touching the embedder.
    let calls = args.dataset.join(crate::dataset::CALLS_FILE);
    if !calls.exists() {
        return Err(usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` first",
            calls.display(),
            args.dataset.display()
        )));
    }
    let dir = args
        .embedder
        .clone()
        .unwrap_or_else(crate::models::embedder_dir);
    let embedder = LazyEmbedder::new(&dir)?;
    let out = run_with(&cfg, &args.dataset, &embedder)?;
    eprint!("{}", summary_text(&out));
    if args.json {
        let v = serde_json::json!({
            "calls": out.summary.calls,
            "k": out.k,
            "outliers": out.summary.outliers,
            "k_search": out.silhouettes,
            "ari": out.summary.ari,
            "purity": out.summary.purity,
            "timings": out.timings,
            "cache": out.cache,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The short human summary printed on stderr.
pub fn summary_text(out: &ClusterOutput) -> String {
    let s = &out.summary;
    let mut t = format!(
        "cluster: {} calls -> {} clusters ({}), {} outliers ({:.1}%) in {:.1} s\n",
        s.calls,
        s.k,
        s.algorithm,
        s.outliers,
        100.0 * s.outliers as f64 / s.calls.max(1) as f64,
        out.timings.total_s
    );
    if s.k_search.len() > 1 {
        let best = s
            .k_search
            .iter()
            .find(|x| x.k == s.k)
            .map(|x| format!("{:.3}", x.silhouette))
            .unwrap_or_else(|| "-".into());
        t += &format!(
            "  k auto: silhouette {best} at k={} (tried {}..{}; {})\n",
            s.k,
            s.k_search.first().map_or(0, |x| x.k),
            s.k_search.last().map_or(0, |x| x.k),
            s.k_search
                .iter()
                .map(|x| format!("{}:{:.2}", x.k, x.silhouette))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if s.k == 0 {
        t += &format!(
            "  note: no cluster reached --min-cluster-size {}: every call stays on the LLM\n",
            s.min_cluster_size
        );
    }
    if let Some(d) = &s.dbscan {
        t += &format!(
            "  dbscan: eps {:.3}{} min_points {}\n",
            d.eps,
            if d.eps_auto { " (estimated)" } else { "" },
            d.min_points
        );
    }
    for c in &s.clusters {
        let tools = c
            .tools
            .iter()
            .take(3)
            .map(|x| format!("{} {:.0}%", x.name, x.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        t += &format!(
            "  #{:<2} {:>6} ({:>5.1}%)  {}{}{}\n",
            c.id,
            c.size,
            c.share * 100.0,
            c.label_terms.join(", "),
            if tools.is_empty() {
                String::new()
            } else {
                format!("  [{tools}]")
            },
            match (&c.workload_id, c.purity) {
                (Some(w), Some(p)) => format!("  {w} {:.0}%", p * 100.0),
                _ => String::new(),
            }
        );
    }
    let mut q = Vec::new();
    if let Some(p) = s.purity {
        q.push(format!("purity vs workload_id {p:.3}"));
    }
    if let (Some(a), Some(n)) = (s.ari, s.truth_calls) {
        q.push(format!("ARI vs truth {a:.3} over {n} calls"));
    }
    if !q.is_empty() {
        t += &format!("  {}\n", q.join("; "));
    }
    let c = &out.cache;
    t += &format!(
        "  embeddings: {} distinct texts, {} cached, {} embedded ({:.1} s)\n",
        c.texts, c.hits, c.misses, out.timings.embed_s
    );
    t += &format!(
        "  time: read {:.1} s, embed {:.1} s, cluster {:.1} s, describe {:.1} s, write {:.1} s\n",
        out.timings.read_s,
        out.timings.embed_s,
        out.timings.cluster_s,
        out.timings.describe_s,
        out.timings.write_s
    );
    t += &format!(
        "  -> {}\n",
        out.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    t
}
