//! The clustering itself: KMeans (linfa-clustering) with k chosen by the
//! silhouette over a range, computed on a deterministic sample; DBSCAN
//! (linfa-clustering) with an automatic radius; nearest-centroid helpers.
//!
//! The k search runs on a sample of at most `sample` calls projected onto
//! their leading principal components: one pairwise distance matrix serves
//! the silhouette of every k, and each KMeans fit there is cheap. The chosen
//! k is then refined on all calls in the full feature space, starting from
//! the means of the sample's clusters. [`cluster`] is the stage's
//! clustering phase (search, fit, minimum size, ids by size).

use linfa::prelude::*;
use linfa_clustering::{Dbscan, KMeans, KMeansInit};
use linfa_nn::{distance::L2Dist, CommonNearestNeighbour};
use linfa_reduction::Pca;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::rand_core::SeedableRng as _;
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;

use super::{Algorithm, ClusterConfig, DEFAULT_K_MAX};
use crate::artifact::clusters::{DbscanInfo, EpsScore, KScore};
use crate::artifact::OUTLIER;
use crate::ml::features::{full_distance, AnswerClass};

/// KMeans restarts per k in the search (the best inertia wins).
pub const SEARCH_RUNS: usize = 10;

/// Principal components the k search works in.
pub const SEARCH_DIMS: usize = 48;

/// Scores within this much of the best count as a tie; the smallest such k wins.
pub const K_TIE: f64 = 0.005;

/// Indices of a deterministic sample of at most `max` of `n` rows, sorted.
pub fn sample_indices(n: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if n <= max {
        return idx;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5a4d_504c_4531);
    idx.shuffle(&mut rng);
    idx.truncate(max);
    idx.sort_unstable();
    idx
}

/// Euclidean distances between all rows of `x`.
pub fn pairwise_distances(x: ArrayView2<f32>) -> Array2<f32> {
    let gram = x.dot(&x.t());
    let norms: Vec<f32> = (0..x.nrows()).map(|i| gram[[i, i]]).collect();
    let mut d = gram;
    d.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if i == j {
                    0.0
                } else {
                    (norms[i] + norms[j] - 2.0 * *v).max(0.0).sqrt()
                };
            }
        });
    d
}

/// Mean silhouette of a labelling (labels in `0..k`) from a distance
/// matrix; a point alone in its cluster scores 0.
pub fn silhouette(d: &Array2<f32>, labels: &[usize], k: usize) -> f64 {
    let labels: Vec<Option<usize>> = labels.iter().copied().map(Some).collect();
    silhouette_of_clustered(d, &labels, k)
}

/// As [`silhouette`], over the points with a label only (noise left out).
pub fn silhouette_of_clustered(d: &Array2<f32>, labels: &[Option<usize>], k: usize) -> f64 {
    let n = labels.iter().flatten().count();
    if n < 2 || k < 2 {
        return 0.0;
    }
    let mut sizes = vec![0usize; k];
    for l in labels.iter().flatten() {
        sizes[*l] += 1;
    }
    let scores: Vec<f64> = (0..labels.len())
        .into_par_iter()
        .filter_map(|i| {
            let own = labels[i]?;
            let mut sums = vec![0f64; k];
            for (j, l) in labels.iter().enumerate() {
                if let Some(l) = l {
                    sums[*l] += d[[i, j]] as f64;
                }
            }
            if sizes[own] <= 1 {
                return Some(0.0);
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return Some(0.0);
            }
            let m = a.max(b);
            Some(if m > 0.0 { (b - a) / m } else { 0.0 })
        })
        .collect();
    scores.iter().sum::<f64>() / n as f64
}

fn squared_distance(a: ArrayView1<f32>, b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let t = x - y;
            t * t
        })
        .sum()
}

/// Index of the nearest centroid (lowest index on ties) and the distance.
pub fn nearest(row: ArrayView1<f32>, centroids: &[Vec<f32>]) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (c, cen) in centroids.iter().enumerate() {
        let d = squared_distance(row, cen);
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, d)| (c, d.sqrt()))
}

/// Nearest centroid of every row, in parallel (each row independently, so
/// the result does not depend on the thread count).
pub fn assign_all(x: ArrayView2<f32>, centroids: &[Vec<f32>]) -> Vec<(usize, f32)> {
    (0..x.nrows())
        .into_par_iter()
        .map(|i| nearest(x.row(i), centroids).unwrap_or((0, 0.0)))
        .collect()
}

fn rows(a: &Array2<f32>) -> Vec<Vec<f32>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

fn kmeans_rng(seed: u64, k: usize) -> Xoshiro256Plus {
    Xoshiro256Plus::seed_from_u64(seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn sq_dist_rows(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| {
            let t = x - y;
            t * t
        })
        .sum()
}

/// Greedy k-means++ seeding (as scikit-learn does it): each new centre is
/// the best of `2 + ln k` candidates drawn with probability proportional to
/// the squared distance to the nearest centre so far, "best" meaning the
/// lowest total squared distance afterwards. Far less likely than plain
/// k-means++ to put two centres in one cluster and none in another.
pub fn greedy_kmeans_pp(x: ArrayView2<f32>, k: usize, rng: &mut impl rand::Rng) -> Array2<f32> {
    let n = x.nrows();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centres = vec![rng.random_range(0..n)];
    let mut closest: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist_rows(x.row(i), x.row(centres[0])))
        .collect();
    while centres.len() < k {
        let total: f64 = closest.iter().map(|&d| d as f64).sum();
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for _ in 0..trials {
            let cand = if total > 0.0 {
                let mut r = rng.random::<f64>() * total;
                let mut pick = n - 1;
                for (i, &d) in closest.iter().enumerate() {
                    r -= d as f64;
                    if r < 0.0 {
                        pick = i;
                        break;
                    }
                }
                pick
            } else {
                rng.random_range(0..n)
            };
            let after: Vec<f32> = (0..n)
                .into_par_iter()
                .map(|i| closest[i].min(sq_dist_rows(x.row(i), x.row(cand))))
                .collect();
            let pot: f64 = after.iter().map(|&d| d as f64).sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, cand, after));
            }
        }
        let (_, cand, after) = best.expect("at least one trial");
        centres.push(cand);
        closest = after;
    }
    x.select(Axis(0), &centres)
}

/// KMeans (linfa-clustering, seeded) on `x`. With `init`, one run from
/// those centroids; else `runs` runs from greedy k-means++ seedings, keeping
/// the lowest inertia. Returns the centroids.
pub fn kmeans(
    x: ArrayView2<f32>,
    k: usize,
    seed: u64,
    runs: usize,
    init: Option<Array2<f32>>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let ds = DatasetBase::new(x, ());
    let fit = |start: Array2<f32>| {
        KMeans::params_with_rng(k, kmeans_rng(seed, k))
            .init_method(KMeansInit::Precomputed(start))
            .n_runs(1)
            .tolerance(1e-4)
            .max_n_iterations(200)
            .fit(&ds)
            .map_err(|e| anyhow::anyhow!("KMeans with k = {k}: {e}"))
    };
    if let Some(c) = init {
        return Ok(rows(fit(c)?.centroids()));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (k as u64) << 32);
    let mut best: Option<(f32, Vec<Vec<f32>>)> = None;
    for _ in 0..runs.max(1) {
        let model = fit(greedy_kmeans_pp(x, k, &mut rng))?;
        if best.as_ref().is_none_or(|b| model.inertia() < b.0) {
            best = Some((model.inertia(), rows(model.centroids())));
        }
    }
    Ok(best.expect("at least one run").1)
}

/// A projection onto the leading principal components of a sample
/// (linfa-reduction PCA): the k search and DBSCAN work there, which costs a
/// fraction of the full width and drops the low-variance directions where
/// embedding noise lives; the plot uses its first two axes. The identity
/// when the features are already narrow or PCA cannot run.
pub struct Reduction {
    pca: Option<Pca<f64>>,
}

impl Reduction {
    pub fn fit(sample: ArrayView2<f32>, dims: usize) -> Reduction {
        let r = dims.min(sample.nrows().saturating_sub(1));
        if sample.ncols() <= dims || r < 2 {
            return Reduction { pca: None };
        }
        let xf = sample.mapv(f64::from);
        let pca = Pca::params(r)
            .fit(&DatasetBase::from(xf.clone()))
            .ok()
            .filter(|p| {
                let y: Array2<f64> = p.predict(&xf);
                y.iter().all(|v| v.is_finite())
            });
        Reduction { pca }
    }

    /// The coordinates of `x`'s rows.
    pub fn apply(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.project(x, false)
    }

    /// The coordinates plus one more column: the length of the part of each
    /// row the components leave out. Distances there bound the full ones
    /// from below, and a call unusual in a direction the components do not
    /// capture (a tool no one else uses) stays far from the others, so
    /// density-based outlier detection still sees it.
    pub fn apply_with_residual(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.project(x, true)
    }

    fn project(&self, x: ArrayView2<f32>, residual: bool) -> Array2<f32> {
        let Some(p) = self.pca.as_ref().filter(|_| x.nrows() > 0) else {
            let mut out = x.to_owned();
            if residual {
                out.push_column(Array1::zeros(x.nrows()).view())
                    .expect("column of the right length");
            }
            return out;
        };
        // In slices, so the f64 copies stay small.
        let parts: Vec<Array2<f32>> = x
            .axis_chunks_iter(Axis(0), 4096)
            .map(|chunk| {
                let xf = chunk.mapv(f64::from);
                let y: Array2<f64> = p.predict(&xf);
                let mut out = y.mapv(|v| v as f32);
                if residual {
                    let back = y.dot(p.components()) + p.mean();
                    let res: Array1<f32> = (&xf - &back)
                        .rows()
                        .into_iter()
                        .map(|r| r.dot(&r).sqrt() as f32)
                        .collect();
                    out.push_column(res.view())
                        .expect("column of the right length");
                }
                out
            })
            .collect();
        let views: Vec<ArrayView2<f32>> = parts.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("same widths")
    }
}

/// Tries every k in `ks` on the sample: KMeans on the reduced coordinates
/// `reduced`, silhouette on their distances `dist`. Returns the scores
/// and the sample labels of each k, in the order of `ks`.
pub fn search_k(
    reduced: ArrayView2<f32>,
    dist: &Array2<f32>,
    ks: &[usize],
    seed: u64,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<(Vec<KScore>, Vec<Vec<usize>>)> {
    let mut scores = Vec::with_capacity(ks.len());
    let mut all = Vec::with_capacity(ks.len());
    for &k in ks {
        let centroids = kmeans(reduced, k, seed, SEARCH_RUNS, None)?;
        let labels: Vec<usize> = assign_all(reduced, &centroids)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let s = silhouette(dist, &labels, k);
        scores.push(KScore {
            k,
            silhouette: s,
            partition: None,
            chosen: false,
        });
        all.push(labels);
        pb.inc(1);
    }
    Ok((scores, all))
}

/// The smallest k whose silhouette is within [`K_TIE`] of the best.
pub fn choose_k(scores: &[KScore]) -> Option<usize> {
    let best = scores
        .iter()
        .map(|s| s.silhouette)
        .fold(f64::NEG_INFINITY, f64::max);
    scores
        .iter()
        .filter(|s| s.silhouette >= best - K_TIE)
        .map(|s| s.k)
        .min()
}

/// DBSCAN (linfa-clustering) labels: `None` for noise.
pub fn dbscan(
    x: ArrayView2<f32>,
    eps: f32,
    min_points: usize,
) -> anyhow::Result<Vec<Option<usize>>> {
    let params = Dbscan::params_with(
        min_points.max(2),
        L2Dist,
        CommonNearestNeighbour::LinearSearch,
    )
    .tolerance(eps)
    .check()
    .map_err(|e| anyhow::anyhow!("DBSCAN parameters: {e}"))?;
    Ok(params.transform(&x).to_vec())
}

/// Multiples of the median distance to the `min_points`-th neighbour tried
/// as DBSCAN radii: 1, 1.2, ... 4.
const EPS_FACTORS: std::ops::RangeInclusive<u32> = 5..=20;
const EPS_STEP: f32 = 0.2;

/// Chooses a DBSCAN radius on the sample: each candidate (a multiple of the
/// median distance to the `min_points`-th nearest neighbour, the point
/// itself included) is run on `sample`, groups under `min_size` count as
/// noise, and the score is the silhouette of the clustered points times
/// their share (noise costs). Among the radii within [`K_TIE`] of the best
/// score, those giving the fewest clusters win, and of those the middle one
/// (away from the edge where clusters start to merge). Returns the radius
/// and the scores.
pub fn choose_eps(
    sample: ArrayView2<f32>,
    dist: &Array2<f32>,
    min_points: usize,
    min_size: usize,
) -> anyhow::Result<(f32, Vec<EpsScore>)> {
    let n = dist.nrows();
    if n < 2 {
        return Ok((1.0, Vec::new()));
    }
    let kth = min_points.clamp(2, n) - 1;
    let mut kd: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut row: Vec<f32> = dist.row(i).to_vec();
            let (_, v, _) = row.select_nth_unstable_by(kth, f32::total_cmp);
            *v
        })
        .collect();
    kd.sort_by(f32::total_cmp);
    let base = kd[n / 2].max(1e-6);
    let mut scores = Vec::new();
    for f in EPS_FACTORS {
        let eps = base * f as f32 * EPS_STEP;
        let mut labels = dbscan(sample, eps, min_points)?;
        let k = labels.iter().flatten().map(|&c| c + 1).max().unwrap_or(0);
        let mut sizes = vec![0usize; k];
        for l in labels.iter().flatten() {
            sizes[*l] += 1;
        }
        // Renumber the groups big enough; the rest is noise.
        let mut ids = vec![None; k];
        let mut kept = 0;
        for (c, &size) in sizes.iter().enumerate() {
            if size >= min_size.max(2) {
                ids[c] = Some(kept);
                kept += 1;
            }
        }
        for l in labels.iter_mut() {
            *l = l.and_then(|c| ids[c]);
        }
        let clustered = labels.iter().flatten().count();
        let share = clustered as f64 / n as f64;
        let score = silhouette_of_clustered(dist, &labels, kept) * share;
        scores.push(EpsScore {
            eps,
            score,
            clusters: kept,
            noise_share: 1.0 - share,
        });
    }
    let best = scores
        .iter()
        .map(|s| s.score)
        .fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<&EpsScore> = scores.iter().filter(|s| s.score >= best - K_TIE).collect();
    let fewest = tied.iter().map(|s| s.clusters).min().unwrap_or(0);
    let plateau: Vec<f32> = tied
        .iter()
        .filter(|s| s.clusters == fewest)
        .map(|s| s.eps)
        .collect();
    let eps = plateau[plateau.len() / 2];
    Ok((eps, scores))
}

/// Mean of the rows of `x` in each cluster (`labels` in `0..k`).
pub fn centroids_of(x: ArrayView2<f32>, labels: &[Option<usize>], k: usize) -> Vec<Vec<f32>> {
    let d = x.ncols();
    let mut sums = vec![vec![0f64; d]; k];
    let mut counts = vec![0usize; k];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = *l {
            counts[c] += 1;
            for (s, v) in sums[c].iter_mut().zip(x.row(i)) {
                *s += *v as f64;
            }
        }
    }
    sums.into_iter()
        .zip(counts)
        .map(|(s, n)| {
            s.into_iter()
                .map(|v| (v / n.max(1) as f64) as f32)
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The clustering phase.

/// The result of the clustering phase: every call's cluster (or
/// [`OUTLIER`]) and distance, the kept clusters' centroids, the searches,
/// and what the plot needs (the sample, its reduction).
pub struct Clustering {
    /// Per call: cluster id (by size, then first call id) or [`OUTLIER`].
    pub labels: Vec<i32>,
    /// Per call: distance to its centroid (an outlier's: to the nearest).
    pub distances: Vec<f32>,
    /// Centroids of the kept clusters, in id order.
    pub centroids: Vec<Vec<f32>>,
    pub k_search: Vec<KScore>,
    pub dbscan: Option<DbscanInfo>,
    pub reduction: Reduction,
    /// The sample's rows projected on the leading principal components.
    pub reduced: Array2<f32>,
    pub sample_idx: Vec<usize>,
}

impl Clustering {
    /// Clusters kept.
    pub fn k(&self) -> usize {
        self.centroids.len()
    }

    /// Each kept cluster's member rows.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.k()];
        for (i, &l) in self.labels.iter().enumerate() {
            if l >= 0 {
                members[l as usize].push(i);
            }
        }
        members
    }
}

/// Clusters the feature rows `x`: the k search (or DBSCAN radius) on a
/// sample, the chosen clustering on all calls, then the minimum size
/// (smaller clusters become outliers) and ids by size, then first call id.
pub fn cluster(
    cfg: &ClusterConfig,
    x: &Array2<f32>,
    call_ids: &[String],
    classes: &[AnswerClass],
) -> anyhow::Result<Clustering> {
    let n = x.nrows();
    // The sample must hold more calls than the k asked for.
    let sample_max = cfg.sample.max(cfg.k.map_or(0, |k| 2 * k));
    let sample_idx = sample_indices(n, sample_max, cfg.seed);
    let xs = x.select(Axis(0), &sample_idx);
    let reduction = Reduction::fit(xs.view(), SEARCH_DIMS);
    let reduced = reduction.apply(xs.view());
    let mut raw = match &cfg.algorithm {
        Algorithm::KMeans if cfg.k.is_none() && cfg.partition => {
            cluster_partitioned(cfg, x, classes)?
        }
        Algorithm::KMeans => cluster_kmeans(cfg, x, &xs, &reduced)?,
        Algorithm::Dbscan { eps, min_points } => {
            cluster_dbscan(cfg, x, &xs, &reduction, *eps, *min_points)?
        }
    };
    // Isolated members out (KMeans), then the minimum size, then ids by
    // size (descending) and first call id.
    let k_raw = raw.centroids.len();
    if let (Algorithm::KMeans, Some(z)) = (&cfg.algorithm, cfg.outlier_z) {
        trim_isolated(x.view(), &mut raw.labels, k_raw, z, cfg.seed);
    }
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
    Ok(Clustering {
        labels,
        distances,
        centroids,
        k_search: raw.k_search,
        dbscan: raw.dbscan,
        reduction,
        reduced,
        sample_idx,
    })
}

/// Least ratio of an outlier's isolation to its cluster's median
/// ([`trim_isolated`]), so a tight cluster does not shed ordinary members.
pub const OUTLIER_MIN_RATIO: f32 = 1.2;

/// Neighbours counted for a member's isolation.
pub const ISOLATION_NEIGHBOURS: usize = 4;

/// Members compared against per cluster (a deterministic sample of larger
/// clusters), which bounds the cost at members × this.
pub const ISOLATION_REFERENCE: usize = 1500;

fn median_of(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// KMeans puts every call in some cluster, and a call unlike any workload
/// (a one-off task) sits in the nearest one. Its centroid distance does not
/// give it away when one-offs are many (they pull the centroid and widen
/// the spread), but its neighbours do: a member's isolation is its distance
/// to its [`ISOLATION_NEIGHBOURS`]-th nearest fellow member (among a
/// deterministic sample of at most [`ISOLATION_REFERENCE`]), and members
/// more isolated than their cluster's median plus `z` robust standard
/// deviations (1.4826 × the median absolute deviation), and more than
/// [`OUTLIER_MIN_RATIO`] × the median, become outliers. Returns how many.
pub fn trim_isolated(
    x: ArrayView2<f32>,
    labels: &mut [Option<usize>],
    k: usize,
    z: f32,
    seed: u64,
) -> usize {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = *l {
            members[c].push(i);
        }
    }
    let mut trimmed = 0;
    for m in members {
        if m.len() <= ISOLATION_NEIGHBOURS + 1 {
            continue;
        }
        let refs: Vec<usize> = sample_indices(m.len(), ISOLATION_REFERENCE, seed)
            .into_iter()
            .map(|j| m[j])
            .collect();
        let xr = x.select(Axis(0), &refs);
        let rn: Vec<f32> = xr.rows().into_iter().map(|r| r.dot(&r)).collect();
        let isolation: Vec<f32> = m
            .par_iter()
            .map(|&i| {
                let row = x.row(i);
                let own = row.dot(&row);
                let mut d: Vec<f32> = xr
                    .dot(&row)
                    .iter()
                    .zip(&refs)
                    .zip(&rn)
                    .filter(|((_, &r), _)| r != i)
                    .map(|((g, _), n)| (own + n - 2.0 * g).max(0.0).sqrt())
                    .collect();
                let kth = ISOLATION_NEIGHBOURS.min(d.len()) - 1;
                let (_, v, _) = d.select_nth_unstable_by(kth, f32::total_cmp);
                *v
            })
            .collect();
        let mut v = isolation.clone();
        let med = median_of(&mut v);
        let mut dev: Vec<f32> = isolation.iter().map(|d| (d - med).abs()).collect();
        let mad = median_of(&mut dev);
        let limit = (med + z * 1.4826 * mad).max(OUTLIER_MIN_RATIO * med);
        for (&i, &iso) in m.iter().zip(&isolation) {
            if iso > limit {
                labels[i] = None;
                trimmed += 1;
            }
        }
    }
    trimmed
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
        let centroids = centroids_of(x.view(), &labels, 1);
        return Ok(RawClustering {
            labels,
            centroids,
            k_search: Vec::new(),
            dbscan: None,
        });
    }
    let dist = pairwise_distances(reduced.view());
    let pb = super::progress_bar(cfg.progress && ks.len() > 1, ks.len(), "k search");
    let (scores, mut all) = search_k(reduced.view(), &dist, &ks, cfg.seed, &pb)?;
    pb.finish_and_clear();
    let mut scores = scores;
    let k = match cfg.k {
        Some(k) => k,
        None => choose_k(&scores).expect("at least one k tried"),
    };
    for sc in scores.iter_mut() {
        sc.chosen = sc.k == k;
    }
    let pos = ks.iter().position(|&x| x == k).expect("chosen k was tried");
    // Full-width means of the sample's clusters, refined on all calls.
    let sample_labels: Vec<Option<usize>> = all.swap_remove(pos).into_iter().map(Some).collect();
    let start = centroids_of(xs.view(), &sample_labels, k);
    let init = Array2::from_shape_vec((k, x.ncols()), start.into_iter().flatten().collect())?;
    let centroids = kmeans(x.view(), k, cfg.seed, 1, Some(init))?;
    let labels = assign_all(x.view(), &centroids)
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

/// KMeans with automatic k within each answer class ([`AnswerClass`]):
/// a refusal and a tool call never share a cluster, and each class gets the
/// number of clusters its own structure calls for. Each class has its own
/// sample and principal components; cluster numbers follow the class order.
fn cluster_partitioned(
    cfg: &ClusterConfig,
    x: &Array2<f32>,
    classes: &[AnswerClass],
) -> anyhow::Result<RawClustering> {
    let n = x.nrows();
    let mut labels = vec![None; n];
    let mut centroids = Vec::new();
    let mut k_search = Vec::new();
    for class in AnswerClass::ALL {
        let rows: Vec<usize> = (0..n).filter(|&i| classes[i] == class).collect();
        if rows.is_empty() {
            continue;
        }
        let xc = x.select(Axis(0), &rows);
        let idx = sample_indices(rows.len(), cfg.sample, cfg.seed);
        let xs = xc.select(Axis(0), &idx);
        let reduced = Reduction::fit(xs.view(), SEARCH_DIMS).apply(xs.view());
        let sub = cluster_kmeans(cfg, &xc, &xs, &reduced)?;
        let offset = centroids.len();
        for (j, &i) in rows.iter().enumerate() {
            labels[i] = sub.labels[j].map(|c| c + offset);
        }
        centroids.extend(sub.centroids);
        k_search.extend(sub.k_search.into_iter().map(|mut s| {
            s.partition = Some(class.as_str().to_string());
            s
        }));
    }
    Ok(RawClustering {
        labels,
        centroids,
        k_search,
        dbscan: None,
    })
}

/// DBSCAN on the calls' leading principal components plus the residual
/// length ([`Reduction::apply_with_residual`]); centroids are the
/// members' means in the full feature space.
fn cluster_dbscan(
    cfg: &ClusterConfig,
    x: &Array2<f32>,
    xs: &Array2<f32>,
    reduction: &Reduction,
    eps: Option<f32>,
    min_points: usize,
) -> anyhow::Result<RawClustering> {
    let (eps, eps_search) = match eps {
        Some(e) => (e, Vec::new()),
        None => {
            let sample = reduction.apply_with_residual(xs.view());
            // The minimum size, scaled to the sample.
            let min_size = (cfg.min_cluster_size * xs.nrows()).div_ceil(x.nrows().max(1));
            choose_eps(
                sample.view(),
                &pairwise_distances(sample.view()),
                min_points,
                min_size,
            )?
        }
    };
    let labels = dbscan(
        reduction.apply_with_residual(x.view()).view(),
        eps,
        min_points,
    )?;
    let k = labels.iter().flatten().map(|&c| c + 1).max().unwrap_or(0);
    let centroids = centroids_of(x.view(), &labels, k);
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
