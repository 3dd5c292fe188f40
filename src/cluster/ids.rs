//! Stable cluster identities across re-runs: when the dataset already holds
//! a clustering (`clusters.parquet` of an earlier run), each new cluster
//! takes the id of the earlier cluster it overlaps most (Jaccard similarity
//! of their members among the calls both runs saw, at least
//! [`MIN_JACCARD`]); clusters with no such match get ids after the largest
//! earlier one. Adapters, routes and reports keyed by cluster id keep their
//! meaning when scheduled runs re-cluster grown data.

use std::collections::{BTreeMap, HashMap};

pub use crate::artifact::clusters::IdMatching;

/// Least Jaccard similarity for a new cluster to inherit an earlier id.
pub const MIN_JACCARD: f64 = 0.5;

/// The final id of each of the run's clusters `0..k` (`labels[i]` is call
/// `call_ids[i]`'s cluster, negative for outliers), given the earlier run's
/// assignment of call id → cluster.
pub fn match_previous(
    previous: &HashMap<String, i32>,
    call_ids: &[String],
    labels: &[i32],
    k: usize,
) -> (Vec<i32>, IdMatching) {
    // Sizes among the calls both runs saw, and overlaps.
    let mut new_common = vec![0usize; k];
    let mut old_common: BTreeMap<i32, usize> = BTreeMap::new();
    let mut overlap: BTreeMap<(usize, i32), usize> = BTreeMap::new();
    for (id, &l) in call_ids.iter().zip(labels) {
        let Some(&o) = previous.get(id) else { continue };
        if l >= 0 {
            new_common[l as usize] += 1;
        }
        if o >= 0 {
            *old_common.entry(o).or_default() += 1;
        }
        if l >= 0 && o >= 0 {
            *overlap.entry((l as usize, o)).or_default() += 1;
        }
    }
    let mut pairs: Vec<(f64, usize, i32)> = overlap
        .iter()
        .map(|(&(c, o), &both)| {
            let union = new_common[c] + old_common[&o] - both;
            (both as f64 / union.max(1) as f64, c, o)
        })
        .filter(|p| p.0 >= MIN_JACCARD)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut ids: Vec<Option<i32>> = vec![None; k];
    let mut taken: Vec<i32> = Vec::new();
    for (_, c, o) in pairs {
        if ids[c].is_none() && !taken.contains(&o) {
            ids[c] = Some(o);
            taken.push(o);
        }
    }
    let previous_ids: std::collections::BTreeSet<i32> =
        previous.values().copied().filter(|&o| o >= 0).collect();
    let mut next = previous_ids.iter().max().map_or(0, |m| m + 1);
    let kept = ids.iter().flatten().count();
    let ids: Vec<i32> = ids
        .into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    let retired = previous_ids
        .iter()
        .copied()
        .filter(|o| !taken.contains(o))
        .collect();
    (
        ids,
        IdMatching {
            previous_clusters: previous_ids.len(),
            kept,
            new: k - kept,
            retired,
        },
    )
}
