//! `slmforge select DATASET_DIR`: phase 4. For each cluster, the smallest
//! base model from the catalogue that can do it (measured on validation
//! calls, zero-shot and after an optional pilot LoRA run), where the models
//! run ([`crate::select::serving`]) and what that saves against the LLM;
//! writes `DATASET_DIR/plan.json`, which `tune` follows.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::artifact::calls::read_rows;
use crate::artifact::clusters::read_assignment_rows;
use crate::artifact::plan::TuneTarget;
use crate::artifact::plan::{write_plan, PlanCluster, PlanFile, PLAN_FORMAT};
use crate::artifact::split::Split;
use crate::artifact::{CALLS_FILE, PLAN_FILE};
use crate::ml::models::{catalog, parse_catalog, CatalogEntry};
use crate::ml::runtime::{device_from_name, init_runtime};
use crate::select::choose::{
    self, candidates, Candidate, ChooseConfig, ClusterChoice, Measured, Measurer,
};
use crate::select::serving::{
    cost_summary, parse_hardware, plan_deployments, ClusterLoad, CostSummary, Device,
    HardwareConfig, LlmUsage, ModelSpec, ServingPlan, ServingRequest,
};
use crate::tune::{self, TuneConfig};
use crate::util::{self, usage};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `slmforge select DATASET_DIR`.
#[derive(clap::Args, Debug)]
pub struct SelectArgs {
    /// Dataset directory (calls.parquet + clusters.parquet from `cluster`).
    pub dataset: PathBuf,
    /// Model catalogue (default: the built-in pipelines/models.toml).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Only these clusters (repeatable; default: all). The plan then holds
    /// only them.
    #[arg(long = "cluster", value_name = "ID", allow_negative_numbers = true)]
    pub clusters: Vec<i32>,
    /// Only these candidates (catalogue ids, comma-separated; default: every
    /// base model of the catalogue).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Vec<String>,
    /// Score a candidate must reach: the share of validation calls it gets
    /// exactly right (tune's exact-match metric).
    #[arg(long, default_value_t = ChooseConfig::default().target)]
    pub target: f64,
    /// Clusters with fewer calls stay with the LLM.
    #[arg(long, default_value_t = ChooseConfig::default().min_examples)]
    pub min_examples: usize,
    /// Validation calls scored per cluster and candidate.
    #[arg(long, default_value_t = ChooseConfig::default().val_calls)]
    pub val_calls: usize,
    /// Pilot LoRA updates per cluster and candidate before scoring (0:
    /// zero-shot only). The learning curve, not the zero-shot score,
    /// predicts who reaches the target.
    #[arg(long, default_value_t = 0)]
    pub pilot_steps: usize,
    /// Score free decoding instead of schema-guided decoding (guided is what
    /// a deployment serves: tool calls and JSON constrained to their schemas).
    #[arg(long)]
    pub free: bool,
    /// Wall-clock cap on each pilot run in seconds (a safety cap; the step
    /// count decides). Given alone, it enables a 10-step pilot.
    #[arg(long, value_name = "SECONDS")]
    pub pilot: Option<f64>,
    /// Serving hardware, e.g. `2xL4-24GB,1xA100-80GB` or `cpu:16`
    /// (default: `available` in the hardware config, `cpu:16` in the
    /// built-in one).
    #[arg(long)]
    pub hardware: Option<String>,
    /// Device kinds, throughput and prices (default: the built-in
    /// pipelines/hardware.toml).
    #[arg(long, value_name = "FILE")]
    pub hardware_config: Option<PathBuf>,
    /// Quantisation the models are served at (weights' bytes per parameter
    /// from the catalogue).
    #[arg(long, default_value = "q8_0")]
    pub serve_quant: String,
    /// `cpu` (default) or `cuda`: where the candidates are measured.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: SelectArgs) -> Result<ExitCode> {
    init_runtime();
    if !(0.0..=1.0).contains(&args.target) {
        return Err(usage(format!(
            "--target {} is not between 0 and 1",
            args.target
        )));
    }
    if !args.dataset.join(CALLS_FILE).exists() {
        return Err(usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` and `slmforge cluster {}` first",
            args.dataset.join(CALLS_FILE).display(),
            args.dataset.display(),
            args.dataset.display()
        )));
    }
    let entries: Vec<CatalogEntry> = match &args.catalog {
        Some(p) => parse_catalog(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .map_err(|e| usage(format!("{}: {e:#}", p.display())))?,
        None => catalog().to_vec(),
    };
    let mut cands = candidates(&entries, &util::models_dir());
    if !args.candidates.is_empty() {
        for id in &args.candidates {
            if !cands.iter().any(|c| &c.id == id) {
                return Err(usage(format!(
                    "unknown candidate '{id}' (base models in the catalogue: {})",
                    cands
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        cands.retain(|c| args.candidates.contains(&c.id));
    }
    let tcfg = TuneConfig {
        seed: args.seed,
        ..Default::default()
    };
    let mut cfg = ChooseConfig {
        target: args.target,
        min_examples: args.min_examples,
        val_calls: args.val_calls.max(1),
        pilot_steps: args.pilot_steps,
        pilot_secs: args.pilot.or(ChooseConfig::default().pilot_secs),
        measure_settings: serde_json::json!({
            "training": tcfg.training_fingerprint(),
            "max_len": tcfg.max_len,
            "split": tcfg.split,
            "seed": tcfg.seed,
            "prune": tcfg.prune,
            "guided": !args.free,
        }),
    };
    if args.pilot.is_some() && args.pilot_steps == 0 {
        cfg.pilot_steps = 10;
    }
    let device = device_from_name(&args.device)?;

    let rows = read_rows(&args.dataset)?;
    let by_id: HashMap<String, &crate::artifact::calls::CallRow> =
        rows.iter().map(|r| (r.call_id.clone(), r)).collect();
    let mut members: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for a in read_assignment_rows(&args.dataset)? {
        members.entry(a.cluster).or_default().push(a.call_id);
    }
    if !args.clusters.is_empty() {
        for k in &args.clusters {
            if !members.contains_key(k) {
                return Err(usage(format!(
                    "unknown cluster id {k} (clusters: {})",
                    members
                        .keys()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        members.retain(|k, _| args.clusters.contains(k));
    }
    // The hardware first: a bad spec fails before the (slow) measurements.
    let (hw, hardware, devices) = serving_hardware(&args)?;
    let mut measurer = TuneMeasurer {
        tune: tcfg.clone(),
        device,
        dataset: args.dataset.clone(),
        guided: !args.free,
    };
    let choices = choose::choose(&cfg, &args.dataset, &members, &by_id, &cands, &mut measurer)?;

    let mut choices = choices;
    price_candidates(&mut choices, &entries, &devices, &args.serve_quant);
    let (serving, cost, notes) = serving_and_cost(
        &choices,
        &entries,
        &rows,
        &members,
        &devices,
        &hw,
        &args.serve_quant,
        tcfg.lora.rank,
    )?;
    let plan = PlanFile {
        format: PLAN_FORMAT.to_string(),
        settings: serde_json::json!({
            "target": cfg.target,
            "min_examples": cfg.min_examples,
            "val_calls": cfg.val_calls,
            "pilot_steps": cfg.pilot_steps,
            "pilot_secs_cap": cfg.pilot_secs,
            "candidates": cands.iter().map(|c| &c.id).collect::<Vec<_>>(),
            "hardware": hardware,
            "serve_quant": args.serve_quant,
            "seed": args.seed,
            "notes": notes,
        }),
        clusters: choices.iter().map(|c| plan_cluster(c, &cands)).collect(),
        serving: Some(serde_json::to_value(&serving)?),
        cost: Some(serde_json::to_value(&cost)?),
    };
    write_plan(&args.dataset, &plan)?;
    print_table(&choices, &cfg);
    print_serving(&serving, &cost);
    eprintln!(
        "select: wrote {} ({} of {} clusters to tune); `slmforge tune {} --out adapters/RUN` follows it",
        args.dataset.join(PLAN_FILE).display(),
        plan.clusters.iter().filter(|c| c.decision == "tune").count(),
        plan.clusters.len(),
        args.dataset.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The devices in use, what does not fit, and the monthly cost figures.
fn print_serving(serving: &ServingPlan, cost: &CostSummary) {
    for d in serving.devices.iter().filter(|d| d.in_use) {
        println!(
            "device {}: {} ({:.1} of {:.1} GiB)",
            d.device.id,
            d.deployments.join(", "),
            d.memory_used_bytes as f64 / GIB,
            d.memory_capacity_bytes as f64 / GIB
        );
    }
    for u in &serving.unplaced {
        println!(
            "not placed: cluster {} on {}: {}",
            u.cluster, u.base_model, u.reason
        );
    }
    println!(
        "cost per month: LLM now ${:.2}; the plan replaces ${:.2} of it with ${:.2} of hardware: saves ${:.2} (assumptions in plan.json)",
        cost.llm_monthly_usd,
        cost.llm_monthly_usd_replaced,
        cost.hardware_monthly_usd,
        cost.savings_monthly_usd
    );
}

/// A cluster's plan entry. The base is named by its catalogue id when the
/// built-in catalogue resolves it (what `tune` reads), else by its path (a
/// model from another `--catalog`).
fn plan_cluster(c: &ClusterChoice, cands: &[Candidate]) -> PlanCluster {
    let tune = c.eligible && c.chosen.is_some();
    let base_model = c.chosen.as_ref().map(|id| {
        let path = cands
            .iter()
            .find(|k| &k.id == id)
            .and_then(|k| k.path.clone());
        let builtin = crate::ml::models::find(id).map(|e| e.main_path_in(&util::models_dir()));
        match (path, builtin) {
            (Some(p), Some(b)) if p == b => id.clone(),
            (Some(p), _) => p.display().to_string(),
            (None, _) => id.clone(),
        }
    });
    PlanCluster {
        id: c.cluster,
        decision: if tune { "tune" } else { "skip" }.to_string(),
        base_model,
        calls: c.calls,
        p95_tokens: c.p95_tokens,
        reason: c.reason.clone(),
        reached_target: c.reached_target,
        candidates: c.candidates.clone(),
    }
}

fn print_table(choices: &[ClusterChoice], cfg: &ChooseConfig) {
    let decision = |c: &ClusterChoice| match (&c.chosen, c.eligible) {
        (Some(m), true) => format!("{m}{}", if c.reached_target { "" } else { " (!)" }),
        _ => "LLM".to_string(),
    };
    let w = choices
        .iter()
        .map(|c| decision(c).len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:>7}  {:>6}  {:>6}  {:<w$}  scores",
        "cluster", "calls", "p95", "decision"
    );
    for c in choices {
        let scores = c
            .candidates
            .iter()
            .filter_map(|r| {
                r.score.map(|s| match r.serving_usd_per_mtok {
                    Some(usd) => format!("{} {:.0}% (${usd:.2}/Mtok)", r.model, 100.0 * s),
                    None => format!("{} {:.0}%", r.model, 100.0 * s),
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:>7}  {:>6}  {:>6}  {:<w$}  {}",
            c.cluster,
            c.calls,
            c.p95_tokens,
            decision(c),
            if scores.is_empty() { "-" } else { &scores }
        );
        println!("{:>7}  {}", "", c.reason);
    }
    println!(
        "target: {:.0}% exact on {} validation calls{}; (!) = best candidate, below the target",
        100.0 * cfg.target,
        cfg.val_calls,
        if cfg.pilot_steps > 0 {
            format!(" after a {}-step pilot", cfg.pilot_steps)
        } else {
            " zero-shot".to_string()
        }
    );
}

/// The serving plan of the clusters to tune and the cost comparison, from
/// the logs' traffic: per cluster its p95 context, peak calls per minute
/// (the most calls in any 60-second window of the timestamps) and mean
/// prompt and completion tokens. Returns notes on what was assumed.
#[allow(clippy::too_many_arguments)]
fn serving_and_cost(
    choices: &[ClusterChoice],
    entries: &[CatalogEntry],
    rows: &[crate::artifact::calls::CallRow],
    members: &BTreeMap<i32, Vec<String>>,
    devices: &[Device],
    hw: &HardwareConfig,
    quant: &str,
    rank: usize,
) -> Result<(ServingPlan, CostSummary, Vec<String>)> {
    let mut notes = Vec::new();
    let by_id: HashMap<&str, &crate::artifact::calls::CallRow> =
        rows.iter().map(|r| (r.call_id.as_str(), r)).collect();
    let mut requests: BTreeMap<String, ServingRequest> = BTreeMap::new();
    for c in choices.iter().filter(|c| c.eligible) {
        let Some(model) = &c.chosen else { continue };
        let e = entries
            .iter()
            .find(|e| e.id == model)
            .with_context(|| format!("{model} is not in the catalogue"))?;
        let bpp = match e.bytes_per_param_of(quant) {
            Some(b) => b,
            None => {
                return Err(usage(format!(
                    "--serve-quant {quant}: unknown quantisation (the catalogue knows {})",
                    e.bytes_per_param
                        .iter()
                        .map(|(q, _)| *q)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let calls: Vec<&crate::artifact::calls::CallRow> = members[&c.cluster]
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).copied())
            .collect();
        let n = calls.len().max(1) as f64;
        let mean = |f: &dyn Fn(&crate::artifact::calls::CallRow) -> Option<u64>| {
            calls.iter().map(|r| f(r).unwrap_or(0) as f64).sum::<f64>() / n
        };
        let mut ts: Vec<i64> = calls.iter().filter_map(|r| r.timestamp_ms).collect();
        let peak = if ts.is_empty() {
            notes.push(format!(
                "cluster {}: no timestamps; 1 call per minute assumed",
                c.cluster
            ));
            1.0
        } else {
            peak_per_minute(&mut ts) as f64
        };
        let load = ClusterLoad {
            cluster: c.cluster,
            p95_context_tokens: c.p95_tokens as u64,
            peak_calls_per_min: peak,
            mean_completion_tokens: mean(&|r| r.completion_tokens),
            mean_prompt_tokens: mean(&|r| r.prompt_tokens),
            lora_rank: rank as u64,
        };
        requests
            .entry(model.clone())
            .or_insert_with(|| ServingRequest {
                base: model_spec(e, bpp),
                clusters: Vec::new(),
            })
            .clusters
            .push(load);
    }
    let requests: Vec<ServingRequest> = requests.into_values().collect();
    let plan = plan_deployments(&requests, devices, hw)?;
    let cluster_of: HashMap<&str, i32> = members
        .iter()
        .flat_map(|(k, ids)| ids.iter().map(move |id| (id.as_str(), *k)))
        .collect();
    let mut usage_rows: BTreeMap<(i32, String), LlmUsage> = BTreeMap::new();
    for r in rows {
        let k = cluster_of
            .get(r.call_id.as_str())
            .copied()
            .unwrap_or(crate::artifact::OUTLIER);
        let model = r.model.clone().unwrap_or_else(|| "unknown".into());
        let u = usage_rows.entry((k, model.clone())).or_insert(LlmUsage {
            cluster: k,
            model,
            calls: 0,
            input_tokens: 0,
            output_tokens: 0,
        });
        u.calls += 1;
        u.input_tokens += r.prompt_tokens.unwrap_or(0);
        u.output_tokens += r.completion_tokens.unwrap_or(0);
    }
    let ts: Vec<i64> = rows.iter().filter_map(|r| r.timestamp_ms).collect();
    let span = match (ts.iter().min(), ts.iter().max()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
        _ => {
            notes.push("the logs span no time (no timestamps): one day assumed".into());
            86_400.0
        }
    };
    let usage_rows: Vec<LlmUsage> = usage_rows.into_values().collect();
    let cost = cost_summary(&plan, &usage_rows, span, hw)?;
    Ok((plan, cost, notes))
}

/// The most timestamps (ms) within any 60-second window.
fn peak_per_minute(ts: &mut [i64]) -> usize {
    ts.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] >= 60_000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Measures candidates the way `tune` evaluates: the cluster's calls
/// encoded as for training, greedy generation on the validation sample,
/// tune's metrics; the pilot is tune's training loop for a few steps.
/// The hardware config, the spec planned on (`--hardware`, else the
/// config's `available`) and its devices.
fn serving_hardware(args: &SelectArgs) -> Result<(HardwareConfig, String, Vec<Device>)> {
    let hw = match &args.hardware_config {
        Some(p) => HardwareConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => HardwareConfig::default(),
    };
    let hardware = match (&args.hardware, &hw.available) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            return Err(usage(
                "no serving hardware: pass --hardware (e.g. `cpu:16` or `2xL4-24GB`) or set `available` in the hardware config",
            ))
        }
    };
    let devices = parse_hardware(&hardware, &hw)?;
    Ok((hw, hardware, devices))
}

struct TuneMeasurer {
    tune: TuneConfig,
    device: candle_core::Device,
    dataset: PathBuf,
    guided: bool,
}

impl Measurer for TuneMeasurer {
    fn measure(
        &mut self,
        cfg: &ChooseConfig,
        cand: &Candidate,
        path: &std::path::Path,
        clusters: &[(i32, Vec<String>)],
    ) -> Result<Vec<Measured>> {
        let mut tcfg = self.tune.clone();
        tcfg.base_model = path.display().to_string();
        let targets: Vec<TuneTarget> = clusters
            .iter()
            .map(|(k, ids)| TuneTarget {
                cluster: *k,
                base_model: tcfg.base_model.clone(),
                members: ids.clone(),
            })
            .collect();
        let prepared = tune::prepare(&tcfg, &self.device, &self.dataset, &targets)?;
        let mut lm = crate::ml::lm::load(path, &self.device)
            .with_context(|| format!("loading candidate {}", cand.id))?;
        let mut out = Vec::with_capacity(prepared.len());
        for p in &prepared {
            eprintln!(
                "select: cluster {} on {}: scoring {} validation calls{}",
                p.cluster,
                cand.id,
                cfg.val_calls,
                if cfg.pilot_steps > 0 {
                    format!(", zero-shot and after a {}-step pilot", cfg.pilot_steps)
                } else {
                    " zero-shot".into()
                }
            );
            let shape = p.prompt.answers.clone().filter(|_| self.guided);
            out.push(measure_cluster(
                cfg,
                &tcfg,
                &mut lm,
                &p.data,
                shape.as_ref(),
            )?);
        }
        Ok(out)
    }
}

/// Zero-shot (and pilot) scores of one cluster's validation sample (the
/// calls whose prompt and answer fit the model's positions), guided by the
/// cluster's answer shape when given.
fn measure_cluster(
    cfg: &ChooseConfig,
    tcfg: &TuneConfig,
    lm: &mut crate::ml::lm::LanguageModel,
    data: &tune::data::ClusterData,
    shape: Option<&crate::ml::lm::guide::AnswerShape>,
) -> Result<Measured> {
    let max_new = data
        .examples
        .iter()
        .map(|e| e.ex.answer_len())
        .max()
        .unwrap_or(32)
        + tcfg.eval.new_tokens_margin;
    let room = lm.model.max_positions();
    let val: Vec<&tune::data::Example> = data
        .split(Split::Val)
        .into_iter()
        .filter(|e| e.prompt_len() + max_new <= room)
        .take(cfg.val_calls)
        .collect();
    let flag = std::sync::atomic::AtomicBool::new(false);
    let constraints = shape.map(|s| tune::eval::constraints_for(&val, s));
    let score =
        |lm: &crate::ml::lm::LanguageModel| -> Result<crate::artifact::adapter::ModelMetrics> {
            let gen = tune::eval::generate_all(
                lm,
                &lm.model,
                &val,
                constraints.as_deref(),
                max_new,
                tcfg.eval.batch_size,
                &flag,
            )?
            .context("interrupted")?;
            Ok(tune::eval::model_metrics(lm, &val, &gen, (f64::NAN, 0)).0)
        };
    let zero_shot = score(lm)?;
    if cfg.pilot_steps == 0 || val.is_empty() {
        return Ok(Measured {
            zero_shot: Some(zero_shot),
            pilot: None,
            pilot_steps: 0,
            pilot_capped: false,
        });
    }
    let train: Vec<&tune::data::Example> = data
        .split(Split::Train)
        .into_iter()
        .filter(|e| e.ex.ids.len() <= room)
        .collect();
    let mut pcfg = tcfg.clone();
    pcfg.max_steps = Some(cfg.pilot_steps);
    pcfg.time_budget_secs = cfg.pilot_secs;
    pcfg.eval_every = cfg.pilot_steps.max(1);
    pcfg.patience = 0;
    pcfg.checkpoint_every = 0;
    let dir = std::env::temp_dir().join(format!(
        "slmforge-pilot-{}-{}",
        std::process::id(),
        &util::sha256_hex(format!("{:?}", val.first().map(|e| &e.call_id)).as_bytes())[..16]
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = lm.model.clone();
    lm.model.add_lora(&pcfg.lora, pcfg.seed)?;
    let job = tune::train::TrainJob {
        cfg: &pcfg,
        model: &lm.model,
        pad_id: lm.tokenizer.pad_id(),
        train: &train,
        val: &val,
        dir: &dir,
        fingerprint: "select-pilot".into(),
        start: tune::Start::Fresh,
        interrupt: &flag,
        stop_after_steps: None,
        label: "pilot".into(),
    };
    let outcome = tune::train::train(&job);
    let _ = std::fs::remove_dir_all(&dir);
    let (steps, capped) = match outcome? {
        tune::train::TrainOutcome::Finished(s) => (
            s.steps,
            s.stop_reason == crate::artifact::adapter::StopReason::TimeBudget,
        ),
        tune::train::TrainOutcome::Interrupted { step } => (step, true),
    };
    let pilot = score(lm)?;
    lm.model = base;
    Ok(Measured {
        zero_shot: Some(zero_shot),
        pilot: Some(pilot),
        pilot_steps: steps,
        pilot_capped: capped,
    })
}

/// The serving shape of a catalogue entry at `bytes_per_param`.
fn model_spec(e: &CatalogEntry, bytes_per_param: f64) -> ModelSpec {
    ModelSpec {
        id: e.id.to_string(),
        params: e.params,
        layers: e.layers as u64,
        heads: e.heads as u64,
        kv_heads: e.kv_heads as u64,
        head_dim: e.head_dim as u64,
        hidden: e.hidden as u64,
        intermediate: e.intermediate as u64,
        context_length: e.context_length as u64,
        bytes_per_param,
    }
}

/// Each candidate's serving cost per million generated tokens on the first
/// device of the spec, at its full batched decode capacity.
fn price_candidates(
    choices: &mut [ClusterChoice],
    entries: &[CatalogEntry],
    devices: &[Device],
    quant: &str,
) {
    let Some(dev) = devices.first() else { return };
    for r in choices.iter_mut().flat_map(|c| c.candidates.iter_mut()) {
        let Some(e) = entries.iter().find(|e| e.id == r.model) else {
            continue;
        };
        let Some(bpp) = e.bytes_per_param_of(quant) else {
            continue;
        };
        let tps = dev.decode_capacity_tokens_per_sec(&model_spec(e, bpp));
        if tps > 0.0 {
            r.serving_usd_per_mtok = Some(dev.hourly_usd / (tps * 3600.0) * 1e6);
        }
    }
}
