//! Routing: which specialised model a new call goes to, or back to the LLM.
//!
//! Today: [`assign`] places a new call in the cluster it would have joined,
//! featurising it exactly as the clustering run did from what
//! `clusters.json` stores (feature spec, embedder checksum, centroids and
//! radii); a call beyond the nearest cluster's radius stays on the LLM. The
//! routing issue grows this into a calibrated routing table.

use indicatif::ProgressBar;

use crate::artifact::clusters::ClustersJson;
use crate::call::Call;
use crate::ml::embed::{Embedder, TextEmbedder};
use crate::ml::features::full_distance;

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
                spec.request_distance(&row, &c.centroid)
            };
            (c, d)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
    Ok(best.and_then(|(c, d)| {
        let radius = if full { c.radius } else { c.request_radius };
        (d <= radius).then_some(c.id)
    }))
}
