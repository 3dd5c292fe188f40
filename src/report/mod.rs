//! The run report: `reports/RUN_ID/index.html` (one self-contained file:
//! inline CSS and SVG charts, no network), `summary.md` (what a CI job
//! posts as a comment) and `summary.json` (for machines). Built only from
//! artifacts on disk — the run record (`run.json`), this run's ingest
//! report and quarantine, `clusters.json`/`clusters.parquet`/`clusters.svg`,
//! `plan.json`, the deployed and newly tuned adapters' `eval.json` and
//! `train_log.jsonl`, and `routing.json` — so it can be rebuilt at any time.
//! Every text in it comes from those artifacts, which hold redacted data
//! only; HTML is escaped.

mod charts;
mod html;
mod markdown;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::artifact::adapter::{cluster_dir, EvalReport, ModelMetrics, EVAL_FILE, SUMMARY_JSON};
use crate::artifact::clusters::{read_assignment_rows, read_summary};
use crate::artifact::export::EXPORT_DIR;
use crate::artifact::routing::{read_table, RouteTarget, ROUTING_FILE};
use crate::artifact::run::{
    read_run, GateDecision, RunRecord, StageLog, DATASET_DIR, DEPLOYED_DIR, DEPLOYED_FROM, RUNS_DIR,
};
use crate::artifact::{INGEST_REPORT_FILE, OUTLIER, PLAN_FILE, PLOT_FILE, QUARANTINE_FILE};

pub const HTML_FILE: &str = "index.html";
pub const MD_FILE: &str = "summary.md";
pub const JSON_FILE: &str = "summary.json";
pub const REPORT_FORMAT: &str = "slmforge-report-v1";

/// Everything the report shows (`summary.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: String,
    pub run_id: String,
    pub pipeline: String,
    pub started: String,
    pub secs: f64,
    pub exit_code: u8,
    /// The error that ended the run, when one did.
    pub error: Option<String>,
    pub previous_run: Option<String>,
    pub headline: Headline,
    pub stages: Vec<StageLog>,
    pub ingest: Option<IngestAudit>,
    pub clusters: Option<ClusterView>,
    pub plan: Option<PlanView>,
    pub tuning: Vec<ClusterTuning>,
    pub routing: Option<RoutingView>,
    pub changes: crate::artifact::run::Changes,
    pub gate: Vec<GateDecision>,
    /// The cluster map (`clusters.svg`), inlined in the HTML.
    #[serde(skip)]
    pub cluster_map_svg: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Headline {
    pub calls: usize,
    pub new_calls: usize,
    pub clusters: usize,
    pub deployed_adapters: usize,
    /// Share of held-out test calls the routing table sends to a small model.
    pub routable_share: Option<f64>,
    /// Exact-match rate of those routed calls.
    pub routed_accuracy: Option<f64>,
    /// From select's plan (plan.json), when select ran.
    pub llm_monthly_usd: Option<f64>,
    pub savings_monthly_usd: Option<f64>,
    /// Mean logged LLM latency of the calls, ms.
    pub llm_latency_ms: Option<f64>,
    /// Mean tuned small-model latency per call on this machine (eval batch), ms.
    pub slm_latency_ms: Option<f64>,
    /// Why test calls stayed on the LLM, with counts.
    pub stays_on_llm: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestAudit {
    /// The run whose ingest this is (this run, or the last that ingested).
    pub from_run: Option<String>,
    pub read: u64,
    pub written: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    /// Per detected format: [read, written, duplicates, quarantined].
    pub formats: BTreeMap<String, [u64; 4]>,
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// Up to two redacted, shortened examples per quarantine reason.
    pub quarantine_examples: Vec<(String, String)>,
    pub redactions: BTreeMap<String, u64>,
    pub key_source: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    pub algorithm: String,
    pub k: usize,
    pub outliers: usize,
    pub purity: Option<f64>,
    pub ari: Option<f64>,
    pub rows: Vec<ClusterRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterRow {
    pub id: i32,
    pub label: String,
    pub size: usize,
    pub share: f64,
    pub tools: Vec<String>,
    pub kind: String,
    pub prompt_tokens_p50: u64,
    pub completion_tokens_p50: u64,
    pub deployed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanView {
    pub devices: Vec<DeviceView>,
    pub unplaced: Vec<String>,
    pub llm_monthly_usd: Option<f64>,
    pub hardware_monthly_usd: Option<f64>,
    pub savings_monthly_usd: Option<f64>,
    /// Per cluster: (id, base model chosen, decision).
    pub choices: Vec<(i32, String, String)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub capacity_gib: f64,
    /// (deployment id, clusters, GiB)
    pub deployments: Vec<(String, Vec<i32>, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterTuning {
    pub cluster: i32,
    pub run_id: String,
    /// `deployed` or the gate's decision on a new adapter.
    pub status: String,
    pub evaluated: usize,
    pub base: Figures,
    pub tuned: Figures,
    pub guided_base: Option<Figures>,
    pub guided_tuned: Option<Figures>,
    pub loss: Vec<(f64, f64)>,
    pub val_loss: Vec<(f64, f64)>,
}

/// The headline metrics of one model on the test calls.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub exact_match: Option<f64>,
    pub exact_count: usize,
    pub tool_call_accuracy: Option<f64>,
    pub json_valid: Option<f64>,
    pub latency_ms_per_call: f64,
}

impl Figures {
    fn of(m: &ModelMetrics) -> Figures {
        Figures {
            exact_match: m.exact_match.rate,
            exact_count: m.exact_match.count,
            tool_call_accuracy: m.tool_call_accuracy.rate,
            json_valid: m.json_valid.rate,
            latency_ms_per_call: m.latency_ms_per_call,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RoutingView {
    pub accuracy_target: f64,
    pub test_calls: usize,
    pub routed: usize,
    pub routed_share: f64,
    pub routed_accuracy: Option<f64>,
    pub llm_reasons: BTreeMap<String, usize>,
    pub routes: Vec<RouteRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteRow {
    pub name: String,
    pub cluster: i32,
    pub target: String,
    pub threshold: Option<f32>,
    pub validation_accuracy: Option<f64>,
    pub tuned_test_accuracy: Option<f64>,
    pub traffic_share: f64,
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn counts(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the report of run `run_id` of the pipeline working in `work`.
pub fn build(work: &Path, run_id: &str) -> anyhow::Result<Report> {
    let rec = read_run(&work.join(RUNS_DIR).join(run_id))?;
    let dataset = work.join(DATASET_DIR);
    let ingest = ingest_audit(work, &rec);
    let clusters = cluster_view(&dataset, work).ok();
    let plan = read_json(&dataset.join(PLAN_FILE)).map(|v| plan_view(&v));
    let tuning = tuning(work, &rec);
    let routing = routing_view(&work.join(DEPLOYED_DIR).join(EXPORT_DIR).join(ROUTING_FILE));
    let headline = headline(
        &rec,
        &dataset,
        clusters.as_ref(),
        plan.as_ref(),
        &tuning,
        routing.as_ref(),
    );
    Ok(Report {
        format: REPORT_FORMAT.into(),
        run_id: rec.run_id.clone(),
        pipeline: rec.pipeline.clone(),
        started: rec.started.clone(),
        secs: rec.secs,
        exit_code: rec.exit_code,
        error: rec.error.clone(),
        previous_run: rec.previous_run.clone(),
        headline,
        stages: rec.stages.clone(),
        ingest,
        clusters,
        plan,
        tuning,
        routing,
        changes: rec.changes.clone(),
        gate: rec.gate.clone(),
        cluster_map_svg: std::fs::read_to_string(dataset.join(PLOT_FILE)).ok(),
    })
}

/// Builds the report and writes its three files into `out`.
pub fn write(work: &Path, run_id: &str, out: &Path) -> anyhow::Result<Report> {
    let r = build(work, run_id)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    crate::util::write_json(&out.join(JSON_FILE), &r)?;
    crate::util::write_atomic(&out.join(MD_FILE), markdown::render(&r).as_bytes())?;
    crate::util::write_atomic(&out.join(HTML_FILE), html::render(&r).as_bytes())?;
    Ok(r)
}

/// This run's ingest (or the latest run's that ingested).
fn ingest_audit(work: &Path, rec: &RunRecord) -> Option<IngestAudit> {
    let (dir, from_run) = match &rec.changes.ingest_dir {
        Some(d) => (d.clone(), Some(rec.run_id.clone())),
        None => (work.join(DATASET_DIR), None),
    };
    let v = read_json(&dir.join(INGEST_REPORT_FILE))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let mut examples = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(QUARANTINE_FILE)) {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let Ok(q) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let reason = q["reason"].as_str().unwrap_or("?").to_string();
            let seen = per.entry(reason.clone()).or_default();
            if *seen < 2 {
                *seen += 1;
                let detail = q["detail"].as_str().unwrap_or("");
                let content: String = q["content"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(140)
                    .collect();
                examples.push((reason, format!("{detail}: {content}…")));
            }
        }
    }
    Some(IngestAudit {
        from_run,
        read: n("read"),
        written: n("written"),
        duplicates: n("duplicates"),
        quarantined: n("quarantined"),
        formats: v["formats"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, f)| {
                        let c = |x: &str| f[x].as_u64().unwrap_or(0);
                        (
                            k.clone(),
                            [c("read"), c("written"), c("duplicates"), c("quarantined")],
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        quarantine_reasons: counts(&v["quarantine_reasons"]),
        quarantine_examples: examples,
        redactions: counts(&v["redactions"]),
        key_source: v["key_source"].as_str().unwrap_or("").to_string(),
    })
}

fn cluster_view(dataset: &Path, work: &Path) -> anyhow::Result<ClusterView> {
    let s = read_summary(dataset)?;
    let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
    let rows = read_assignment_rows(dataset)?;
    for a in &rows {
        *sizes.entry(a.cluster).or_default() += 1;
    }
    let total = rows.len().max(1) as f64;
    let deployed = work.join(DEPLOYED_DIR);
    Ok(ClusterView {
        algorithm: s.algorithm.clone(),
        k: s.k,
        outliers: sizes.get(&OUTLIER).copied().unwrap_or(0),
        purity: s.purity,
        ari: s.ari,
        rows: s
            .clusters
            .iter()
            .map(|c| {
                let size = sizes.get(&c.id).copied().unwrap_or(0);
                ClusterRow {
                    id: c.id,
                    label: if c.label.is_empty() {
                        c.label_terms.join(" ")
                    } else {
                        c.label.clone()
                    },
                    size,
                    share: size as f64 / total,
                    tools: c.tools.iter().take(4).map(|t| t.name.clone()).collect(),
                    kind: c.homogeneity.kind.clone(),
                    prompt_tokens_p50: c.stats.prompt_tokens.p50,
                    completion_tokens_p50: c.stats.completion_tokens.p50,
                    deployed: cluster_dir(&deployed, c.id).exists(),
                }
            })
            .collect(),
    })
}

fn plan_view(v: &serde_json::Value) -> PlanView {
    let gib = |b: &serde_json::Value| b.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0 * 1024.0);
    let serving = &v["serving"];
    let deployments: Vec<&serde_json::Value> = serving["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let devices = serving["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["in_use"].as_bool().unwrap_or(false))
        .map(|d| {
            let id = d["device"]["id"].as_str().unwrap_or("?").to_string();
            DeviceView {
                capacity_gib: gib(&d["memory_capacity_bytes"]),
                deployments: deployments
                    .iter()
                    .filter(|x| x["device"].as_str() == Some(id.as_str()))
                    .map(|x| {
                        (
                            x["id"].as_str().unwrap_or("?").to_string(),
                            x["clusters"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|c| c.as_i64().map(|c| c as i32))
                                .collect(),
                            gib(&x["memory"]["total_bytes"]),
                        )
                    })
                    .collect(),
                id,
            }
        })
        .collect();
    PlanView {
        devices,
        unplaced: serving["unplaced"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                format!(
                    "cluster {}: {}",
                    u["cluster"],
                    u["reason"].as_str().unwrap_or("")
                )
            })
            .collect(),
        llm_monthly_usd: v["cost"]["llm_monthly_usd"].as_f64(),
        hardware_monthly_usd: v["cost"]["hardware_monthly_usd"].as_f64(),
        savings_monthly_usd: v["cost"]["savings_monthly_usd"].as_f64(),
        choices: v["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_i64().unwrap_or(-1) as i32,
                    c["base_model"].as_str().unwrap_or("-").to_string(),
                    c["decision"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    }
}

/// Loss and validation-loss points of a cluster's `train_log.jsonl`.
/// (step, value) points.
type Points = Vec<(f64, f64)>;

fn curves(dir: &Path) -> (Points, Points) {
    let mut loss = Vec::new();
    let mut val = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("train_log.jsonl")) {
        for l in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            let step = v["step"].as_f64().unwrap_or(0.0);
            if let Some(x) = v["loss"].as_f64() {
                loss.push((step, x));
            }
            if let Some(x) = v["val_loss"].as_f64() {
                val.push((step, x));
            }
        }
    }
    (loss, val)
}

fn tuning_of(dir: &Path, cluster: i32, run_id: &str, status: &str) -> Option<ClusterTuning> {
    let e: EvalReport = serde_json::from_slice(&std::fs::read(dir.join(EVAL_FILE)).ok()?).ok()?;
    let (loss, val_loss) = curves(dir);
    Some(ClusterTuning {
        cluster,
        run_id: run_id.to_string(),
        status: status.to_string(),
        evaluated: e.evaluated,
        base: Figures::of(&e.base),
        tuned: Figures::of(&e.tuned),
        guided_base: e.guided.as_ref().map(|g| Figures::of(&g.base)),
        guided_tuned: e.guided.as_ref().map(|g| Figures::of(&g.tuned)),
        loss,
        val_loss,
    })
}

/// The deployed adapters, then this run's candidates that were not promoted.
fn tuning(work: &Path, rec: &RunRecord) -> Vec<ClusterTuning> {
    let deployed = work.join(DEPLOYED_DIR);
    let mut out = Vec::new();
    let promoted: BTreeMap<i32, String> = read_json(&deployed.join(SUMMARY_JSON))
        .and_then(|s| s[DEPLOYED_FROM].as_object().cloned())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    for (id, run) in &promoted {
        if let Some(t) = tuning_of(&cluster_dir(&deployed, *id), *id, run, "deployed") {
            out.push(t);
        }
    }
    for g in rec.gate.iter().filter(|g| g.decision != "promoted") {
        let run = work.join(RUNS_DIR).join(&g.run_id);
        let part = run.join("parts").join(format!("cluster-{}", g.cluster));
        let dir = if part.exists() {
            cluster_dir(&part, g.cluster)
        } else {
            cluster_dir(&run.join("adapters"), g.cluster)
        };
        if let Some(t) = tuning_of(&dir, g.cluster, &g.run_id, &g.decision) {
            out.push(t);
        }
    }
    out
}

fn routing_view(path: &Path) -> Option<RoutingView> {
    let t = read_table(path).ok()?;
    Some(RoutingView {
        accuracy_target: t.accuracy_target,
        test_calls: t.test.calls,
        routed: t.test.routed,
        routed_share: t.test.routed_share,
        routed_accuracy: t.test.routed_accuracy.rate,
        llm_reasons: t.test.llm_reasons.clone(),
        routes: t
            .routes
            .iter()
            .map(|r| RouteRow {
                name: r.name.clone(),
                cluster: r.cluster,
                target: match &r.target {
                    RouteTarget::Llm { .. } => "llm".to_string(),
                    RouteTarget::Adapter { .. } => "adapter".to_string(),
                },
                threshold: r.threshold,
                validation_accuracy: r.accuracy.as_ref().and_then(|a| a.rate),
                tuned_test_accuracy: r.tuned_test_accuracy,
                traffic_share: r.traffic_share,
            })
            .collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn headline(
    rec: &RunRecord,
    dataset: &Path,
    clusters: Option<&ClusterView>,
    plan: Option<&PlanView>,
    tuning: &[ClusterTuning],
    routing: Option<&RoutingView>,
) -> Headline {
    let rows = crate::artifact::calls::read_rows(dataset).unwrap_or_default();
    let lat: Vec<f64> = rows.iter().filter_map(|r| r.latency_ms).collect();
    let deployed: Vec<&ClusterTuning> = tuning.iter().filter(|t| t.status == "deployed").collect();
    let slm: Vec<f64> = deployed
        .iter()
        .map(|t| {
            t.guided_tuned
                .as_ref()
                .unwrap_or(&t.tuned)
                .latency_ms_per_call
        })
        .filter(|x| *x > 0.0)
        .collect();
    Headline {
        calls: rows.len(),
        new_calls: rec.changes.new_calls,
        clusters: clusters.map_or(0, |c| c.k),
        deployed_adapters: deployed.len(),
        routable_share: routing.map(|r| r.routed_share),
        routed_accuracy: routing.and_then(|r| r.routed_accuracy),
        llm_monthly_usd: plan.and_then(|p| p.llm_monthly_usd),
        savings_monthly_usd: plan.and_then(|p| p.savings_monthly_usd),
        llm_latency_ms: (!lat.is_empty()).then(|| lat.iter().sum::<f64>() / lat.len() as f64),
        slm_latency_ms: (!slm.is_empty()).then(|| slm.iter().sum::<f64>() / slm.len() as f64),
        stays_on_llm: routing.map(|r| r.llm_reasons.clone()).unwrap_or_default(),
    }
}

impl Report {
    /// A few lines for the terminal.
    pub fn headline_text(&self) -> String {
        let h = &self.headline;
        let mut s = format!(
            "report: {} calls ({} new), {} clusters, {} adapter(s) deployed",
            h.calls, h.new_calls, h.clusters, h.deployed_adapters
        );
        if let Some(r) = h.routable_share {
            s.push_str(&format!(
                ", {:.0}% of held-out calls routable to small models",
                100.0 * r
            ));
            if let Some(a) = h.routed_accuracy {
                s.push_str(&format!(" ({:.0}% of them right)", 100.0 * a));
            }
        }
        s.push('\n');
        for g in &self.gate {
            s.push_str(&format!(
                "  gate: cluster {} {}: {}\n",
                g.cluster, g.decision, g.reason
            ));
        }
        s
    }
}

/// `x` as a percentage, or "–".
pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |x| format!("{:.0}%", 100.0 * x))
}
