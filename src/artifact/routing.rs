//! `routing.json`: the calibrated routing table `export` writes and
//! `slmforge route` applies, and `router.json`, the same routes in the shape
//! semantic-router and LiteLLM's semantic routing read.
//!
//! A request goes to the route of its nearest workload (request features
//! only: the feature spec of clustering, without the response blocks) when
//! its distance is within that route's threshold, the tools it offers are
//! among the workload's, and the route has a small model; everything else
//! goes to the default route, the LLM.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::adapter::Rate;
use super::clusters::EmbedderInfo;
use crate::ml::features::FeatureSpec;

pub const ROUTING_FILE: &str = "routing.json";
pub const ROUTER_FILE: &str = "router.json";
pub const ROUTING_FORMAT: &str = "slmforge-routing-v1";
/// The default route's name.
pub const LLM_ROUTE: &str = "llm";

/// Where a route sends its traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteTarget {
    /// The base model with this route's adapter.
    Adapter {
        base_model: String,
        base_sha256: String,
        /// The adapter's name (vLLM/LoRAX model name, llama-server adapter).
        adapter: String,
        /// Format (`peft`, `gguf`, `merged`) → path relative to the export.
        files: std::collections::BTreeMap<String, String>,
        /// The adapter was trained on pruned prompts: apply this rule to a
        /// request before generating with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prune: Option<crate::ml::lm::prune::PruneRule>,
        /// Serve with schema-guided decoding under this answer shape (tool
        /// calls under the request's tool schemas, JSON under the schema);
        /// calibration judged the adapter that way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guide: Option<Box<crate::ml::lm::guide::AnswerShape>>,
    },
    /// Back to the LLM, with the reason.
    Llm { reason: String },
}

/// What calibration saw for one route on the validation split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteCalibration {
    /// Validation calls of this workload.
    pub own_calls: usize,
    /// Of those, answered correctly by the tuned model.
    pub own_correct: usize,
    /// Validation calls (any workload, outliers too) whose nearest route is
    /// this one and whose tools pass the tool rule.
    pub candidates: usize,
    /// Candidates within the chosen threshold...
    pub routed: usize,
    /// ...of which from other workloads or outliers (counted as wrong).
    pub foreign_routed: usize,
}

/// One workload's route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub name: String,
    pub cluster: i32,
    pub label_terms: Vec<String>,
    pub centroid: Vec<f32>,
    /// A few calls of the workload (ids in the dataset).
    pub exemplar_call_ids: Vec<String>,
    /// Tool rule: a request may offer only these tools (and, when the list
    /// is not empty, must offer at least one).
    pub tools: Vec<String>,
    pub target: RouteTarget,
    /// Largest request distance accepted (none: the route takes no traffic).
    pub threshold: Option<f32>,
    /// Routed accuracy on the validation split at this threshold.
    pub accuracy: Option<Rate>,
    /// The tuned model's exact-match rate on the test split (`eval.json`).
    pub tuned_test_accuracy: Option<f64>,
    /// The workload's share of the dataset's calls.
    pub traffic_share: f64,
    pub calibration: RouteCalibration,
}

/// On the test split: what the table does with held-out traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    pub calls: usize,
    /// Sent to a small model.
    pub routed: usize,
    pub routed_share: f64,
    /// Of the routed calls whose answer could be judged, how many the small
    /// model got right (a call sent to another workload's model counts as wrong).
    pub routed_accuracy: Rate,
    /// Calls kept on the LLM, by reason.
    pub llm_reasons: std::collections::BTreeMap<String, usize>,
}

/// `routing.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingTable {
    pub format: String,
    pub embedder: EmbedderInfo,
    pub features: FeatureSpec,
    /// Calibration target: routed accuracy at least this (share of the
    /// LLM's answers matched).
    pub accuracy_target: f64,
    /// Routes need at least this many routed validation calls.
    pub min_routed_calls: usize,
    pub routes: Vec<Route>,
    /// Everything not routed: the LLM.
    pub default_route: String,
    pub test: TestReport,
}

pub fn read_table(path: &Path) -> Result<RoutingTable> {
    let t: RoutingTable = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing routing table {}", path.display()))?;
    anyhow::ensure!(
        t.format == ROUTING_FORMAT,
        "{} has format {:?}, expected {ROUTING_FORMAT}",
        path.display(),
        t.format
    );
    Ok(t)
}
