//! Phase 6, routing: which specialised model a new request goes to, or back
//! to the LLM.
//!
//! * [`calibrate`] builds the routing table (`routing.json`, `router.json`)
//!   from an export: per workload its centroid, tool rule, target and a
//!   distance threshold calibrated on the **validation** split, so that the
//!   routed accuracy meets a target; the test split reports what the table
//!   does with held-out traffic.
//! * [`route_calls`] applies a table to requests (`slmforge route`).
//! * [`assign`] places a call in the cluster it would have joined, from
//!   `clusters.json` (radius rule, no calibration).
//!
//! Requests are featurised exactly as clustering did ([`featurise`]): the
//! feature spec and embedder of `clusters.json`, request blocks only (a
//! request has no response yet). Identical texts (a workload's system
//! prompt) are embedded once per batch.

mod calibrate;

use std::collections::HashMap;

use indicatif::ProgressBar;

use crate::artifact::clusters::ClustersJson;
use crate::artifact::routing::{RouteTarget, RoutingTable, LLM_ROUTE};
use crate::call::Call;
use crate::ml::embed::{Embedder, TextEmbedder};
use crate::ml::features::{full_distance, CallFacts, FeatureSpec};

pub use calibrate::{calibrate, decode_parity, table_summary, CalibrationConfig};

/// Feature rows of calls (request and response blocks as far as the call
/// has them), and the unit embedding of each call's user text.
pub struct Featurised {
    pub rows: Vec<Vec<f32>>,
    pub facts: Vec<CallFacts>,
    pub user: Vec<Option<Vec<f32>>>,
}

/// Featurises calls as clustering did. Each distinct text is embedded once.
pub fn featurise(
    spec: &FeatureSpec,
    calls: &[&Call],
    embedder: &dyn TextEmbedder,
    pb: &ProgressBar,
) -> anyhow::Result<Featurised> {
    let facts: Vec<CallFacts> = calls.iter().map(|c| spec.facts(c)).collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    for f in &facts {
        for t in [f.system.as_str(), f.user.as_str()] {
            if !t.is_empty() && !index.contains_key(t) {
                index.insert(t, texts.len());
                texts.push(t);
            }
        }
    }
    let vecs = if texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&texts, pb)?
    };
    let get = |t: &str| (!t.is_empty()).then(|| vecs[index[t]].as_slice());
    let mut rows = Vec::with_capacity(facts.len());
    let mut user = Vec::with_capacity(facts.len());
    for f in &facts {
        let mut row = vec![0f32; spec.dims];
        spec.write_row(f, get(&f.system), get(&f.user), &mut row);
        rows.push(row);
        user.push(get(&f.user).map(<[f32]>::to_vec));
    }
    Ok(Featurised { rows, facts, user })
}

/// Where one request goes, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    /// The route name, or `llm`.
    pub route: String,
    /// Index of the route in the table when routed to a small model.
    #[serde(skip)]
    pub routed: Option<usize>,
    /// The nearest workload's route (also when kept on the LLM).
    pub nearest: Option<String>,
    pub distance: Option<f32>,
    pub threshold: Option<f32>,
    pub reason: String,
}

/// The tool rule: a request may offer only the workload's tools and, when
/// the workload offers tools, at least one.
pub fn tools_allowed(route_tools: &[String], offered: &[String]) -> bool {
    if route_tools.is_empty() {
        return offered.is_empty();
    }
    !offered.is_empty() && offered.iter().all(|t| route_tools.contains(t))
}

/// The nearest route of a feature row (request distance; ties by cluster id).
pub fn nearest(table: &RoutingTable, row: &[f32]) -> Option<(usize, f32)> {
    table
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (i, table.features.request_distance(row, &r.centroid)))
        .min_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(table.routes[a.0].cluster.cmp(&table.routes[b.0].cluster))
        })
}

/// Applies the table to one featurised request.
pub fn decide(table: &RoutingTable, row: &[f32], facts: &CallFacts) -> Decision {
    let llm = |nearest: Option<String>, d, t, reason: String| Decision {
        route: LLM_ROUTE.to_string(),
        routed: None,
        nearest,
        distance: d,
        threshold: t,
        reason,
    };
    let Some((i, d)) = nearest(table, row) else {
        return llm(None, None, None, "the table has no routes".into());
    };
    let r = &table.routes[i];
    let name = Some(r.name.clone());
    if let RouteTarget::Llm { reason } = &r.target {
        return llm(
            name,
            Some(d),
            r.threshold,
            format!("workload kept on the LLM: {reason}"),
        );
    }
    let Some(t) = r.threshold else {
        return llm(
            name,
            Some(d),
            None,
            "route has no calibrated threshold".into(),
        );
    };
    if !tools_allowed(&r.tools, &facts.offered) {
        return llm(
            name,
            Some(d),
            Some(t),
            "offers tools outside the workload's".into(),
        );
    }
    if d.is_nan() || d > t {
        return llm(
            name,
            Some(d),
            Some(t),
            "beyond the route's distance threshold".into(),
        );
    }
    Decision {
        route: r.name.clone(),
        routed: Some(i),
        nearest: name,
        distance: Some(d),
        threshold: Some(t),
        reason: "within threshold".into(),
    }
}

/// Routes requests (featurised in one pass; identical texts embedded once).
pub fn route_calls(
    table: &RoutingTable,
    calls: &[&Call],
    embedder: &dyn TextEmbedder,
    pb: &ProgressBar,
) -> anyhow::Result<Vec<Decision>> {
    anyhow::ensure!(
        embedder.checksum() == table.embedder.checksum,
        "the routing table was made with embedder {} (sha256 {}), not the one loaded",
        table.embedder.id,
        table.embedder.checksum
    );
    let f = featurise(&table.features, calls, embedder, pb)?;
    Ok(f.rows
        .iter()
        .zip(&f.facts)
        .map(|(row, facts)| decide(table, row, facts))
        .collect())
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
    let placed = assign_batch(summary, &[call], embedder, &ProgressBar::hidden())?;
    Ok(placed[0].0)
}

/// Places many calls at once (each distinct text embedded once): per call
/// the nearest cluster within its radius (`None`: beyond every radius)
/// and the distance to the nearest centroid.
pub fn assign_batch(
    summary: &ClustersJson,
    calls: &[&Call],
    embedder: &dyn TextEmbedder,
    pb: &ProgressBar,
) -> anyhow::Result<Vec<(Option<i32>, f32)>> {
    anyhow::ensure!(
        embedder.checksum() == summary.embedder.checksum,
        "the clusters were made with embedder {}, not the one loaded",
        summary.embedder.checksum
    );
    let spec = &summary.features;
    let f = featurise(spec, calls, embedder, pb)?;
    Ok(f.rows
        .iter()
        .zip(&f.facts)
        .map(|(row, facts)| {
            let full = facts.has_response();
            let best = summary
                .clusters
                .iter()
                .map(|c| {
                    let d = if full {
                        full_distance(row, &c.centroid)
                    } else {
                        spec.request_distance(row, &c.centroid)
                    };
                    (c, d)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
            match best {
                Some((c, d)) => {
                    let radius = if full { c.radius } else { c.request_radius };
                    ((d <= radius).then_some(c.id), d)
                }
                None => (None, f32::INFINITY),
            }
        })
        .collect())
}
