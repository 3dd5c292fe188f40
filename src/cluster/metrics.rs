//! Agreement measures: the adjusted Rand index and normalised mutual
//! information against ground-truth labels (the `synth` sidecar), purity against logged `workload_id`s, and the
//! reader of the sidecar.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;

use anyhow::Context;

fn choose2(n: u64) -> f64 {
    (n as f64) * (n.saturating_sub(1) as f64) / 2.0
}

/// The contingency table of two labellings: counts per (label of a,
/// label of b) cell, ordered so sums never depend on hash order, and the
/// row and column totals. Labels are numbered in order of appearance.
struct Contingency {
    cells: std::collections::BTreeMap<(usize, usize), u64>,
    rows: Vec<u64>,
    cols: Vec<u64>,
}

fn contingency<A: Hash + Eq, B: Hash + Eq>(a: &[A], b: &[B]) -> Contingency {
    let mut ids_a: HashMap<&A, usize> = HashMap::new();
    let mut ids_b: HashMap<&B, usize> = HashMap::new();
    let mut t = Contingency {
        cells: Default::default(),
        rows: Vec::new(),
        cols: Vec::new(),
    };
    for (x, y) in a.iter().zip(b) {
        let next = ids_a.len();
        let i = *ids_a.entry(x).or_insert(next);
        let next = ids_b.len();
        let j = *ids_b.entry(y).or_insert(next);
        if i == t.rows.len() {
            t.rows.push(0);
        }
        if j == t.cols.len() {
            t.cols.push(0);
        }
        t.rows[i] += 1;
        t.cols[j] += 1;
        *t.cells.entry((i, j)).or_default() += 1;
    }
    t
}

/// Adjusted Rand index (Hubert and Arabie) of two labellings of the same
/// items: 1 for identical partitions (up to renaming), about 0 for random
/// ones. Two trivial partitions that agree (all in one, or all apart) give 1.
pub fn adjusted_rand_index<A: Hash + Eq, B: Hash + Eq>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "labellings of different lengths");
    let n = a.len() as u64;
    if n < 2 {
        return 1.0;
    }
    let Contingency { cells, rows, cols } = contingency(a, b);
    let index: f64 = cells.values().map(|&c| choose2(c)).sum();
    let sum_a: f64 = rows.iter().map(|&c| choose2(c)).sum();
    let sum_b: f64 = cols.iter().map(|&c| choose2(c)).sum();
    let expected = sum_a * sum_b / choose2(n);
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Normalised mutual information of two labellings of the same items,
/// I(A;B) / ((H(A) + H(B)) / 2) (the arithmetic normalisation, scikit-learn's
/// default): 1 for identical partitions up to renaming, 0 for independent
/// ones. Two one-block partitions give 1.
pub fn normalized_mutual_info<A: Hash + Eq, B: Hash + Eq>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "labellings of different lengths");
    let n = a.len() as f64;
    if a.is_empty() {
        return 1.0;
    }
    let Contingency { cells, rows, cols } = contingency(a, b);
    let rows: Vec<f64> = rows.iter().map(|&c| c as f64).collect();
    let cols: Vec<f64> = cols.iter().map(|&c| c as f64).collect();
    let entropy = |v: &[f64]| -> f64 {
        v.iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| -(c / n) * (c / n).ln())
            .sum()
    };
    let (ha, hb) = (entropy(&rows), entropy(&cols));
    if ha + hb < 1e-12 {
        return 1.0;
    }
    let mi: f64 = cells
        .iter()
        .map(|(&(i, j), &c)| {
            let c = c as f64;
            (c / n) * ((c * n) / (rows[i] * cols[j])).ln()
        })
        .sum();
    (mi / ((ha + hb) / 2.0)).clamp(0.0, 1.0)
}

/// Share of the labelled items that carry the most common label, and that
/// label (ties: the smallest). `None` when no item has a label.
pub fn purity<'a>(labels: impl Iterator<Item = Option<&'a str>>) -> Option<(f64, String)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut total = 0;
    for l in labels.flatten() {
        *counts.entry(l).or_default() += 1;
        total += 1;
    }
    let (label, top) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some((top as f64 / total as f64, label.to_string()))
}

/// Ground truth from a `synth` labels sidecar: (line, index) -> workload.
/// Lines for malformed records (no `workload`) are skipped.
pub fn read_truth(path: &Path) -> anyhow::Result<HashMap<(u64, u32), String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::util::usage(format!("--truth {}: cannot read it ({e})", path.display()))
    })?;
    let mut out = HashMap::new();
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), no + 1))?;
        let (Some(l), Some(w)) = (
            v.get("line").and_then(|x| x.as_u64()),
            v.get("workload").and_then(|x| x.as_str()),
        ) else {
            continue;
        };
        let idx = v.get("index").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
        out.insert((l, idx), w.to_string());
    }
    if out.is_empty() {
        return Err(crate::util::usage(format!(
            "--truth {}: no workload labels in it (expected the .labels.jsonl sidecar of `slmforge synth`)",
            path.display()
        )));
    }
    Ok(out)
}

/// Agreement of a labelling with the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    pub ari: f64,
    pub nmi: f64,
    /// Calls the truth labels.
    pub calls: usize,
    /// Per cluster (outliers: -1), its truth labels by count, most first.
    pub mix: std::collections::BTreeMap<i32, Vec<(String, usize)>>,
}

/// ARI and NMI of `labels` against the ground truth, over the calls the
/// truth labels (matched by origin); `None` when it labels none. Each
/// outlier counts as a cluster of its own (the tail of one-offs stays apart).
pub fn agreement(
    t: &HashMap<(u64, u32), String>,
    origins: &[(u64, u32)],
    labels: &[i32],
) -> Option<Agreement> {
    let (pred, gold): (Vec<i64>, Vec<&str>) = origins
        .iter()
        .zip(labels)
        .enumerate()
        .filter_map(|(i, (o, &l))| {
            let l = if l < 0 { -1 - i as i64 } else { l as i64 };
            t.get(o).map(|w| (l, w.as_str()))
        })
        .unzip();
    let mut mix: std::collections::BTreeMap<i32, std::collections::BTreeMap<&str, usize>> =
        Default::default();
    for (&p, g) in pred.iter().zip(&gold) {
        *mix.entry(p.max(-1) as i32)
            .or_default()
            .entry(g)
            .or_default() += 1;
    }
    let mix = mix
        .into_iter()
        .map(|(c, m)| {
            let mut v: Vec<(String, usize)> =
                m.into_iter().map(|(g, n)| (g.to_string(), n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (c, v)
        })
        .collect();
    (!pred.is_empty()).then(|| Agreement {
        ari: adjusted_rand_index(&pred, &gold),
        nmi: normalized_mutual_info(&pred, &gold),
        calls: pred.len(),
        mix,
    })
}
