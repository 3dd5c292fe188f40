//! `slmforge bench tune`: the whole tune stage on the bundled sample (or
//! other logs), with clusters from the synth ground truth: per-cluster
//! trained tokens/s, evaluation decode throughput, quality, wall and CPU
//! time, peak RSS. Human summary on stderr, JSON on stdout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use candle_core::Device;

use super::measure::{cpu_seconds, machine, peak_rss_bytes};
use crate::artifact::{ASSIGNMENTS_FILE, CALLS_FILE};
use crate::dev::synth::truth::clusters_from_labels;
use crate::select::tune_targets;
use crate::tune::{self, Session, TuneConfig};

/// `bench tune`'s settings.
#[derive(Clone, Debug)]
pub struct TuneBench {
    /// Working directory: WORK/dataset (ingested once) and WORK/adapters/RUN.
    pub work: PathBuf,
    /// Logs to ingest when WORK/dataset has no calls.parquet.
    pub input: PathBuf,
    /// Ground truth used for clusters.parquet when WORK/dataset has none.
    pub labels: PathBuf,
    /// Only these clusters.
    pub clusters: Vec<i32>,
    /// Run name (WORK/adapters/RUN is replaced).
    pub run: String,
    /// Prepare the dataset and show the per-cluster figures only.
    pub dry_run: bool,
    pub cfg: TuneConfig,
    pub device: Device,
}

impl Default for TuneBench {
    fn default() -> Self {
        TuneBench {
            work: "work/bench-tune".into(),
            input: "datasets/sample".into(),
            labels: "datasets/sample/calls.labels.jsonl".into(),
            clusters: Vec::new(),
            run: "run".into(),
            dry_run: false,
            cfg: TuneConfig::default(),
            device: Device::Cpu,
        }
    }
}

/// The tune stage on the sample (clusters from ground truth): trained
/// tokens/s, eval decode throughput, base vs tuned quality, peak RSS.
pub fn run(a: TuneBench) -> Result<()> {
    crate::ml::runtime::init_runtime();
    let cfg = a.cfg.clone();
    let dataset = a.work.join("dataset");
    if !dataset.join(CALLS_FILE).exists() {
        eprintln!(
            "bench tune: ingesting {} into {}",
            a.input.display(),
            dataset.display()
        );
        let key = crate::redact::RedactKey::from_bytes(b"slmforge-bench-key-000000")?;
        let mut icfg = crate::ingest::IngestConfig::new(key, crate::ingest::KeySource::File);
        icfg.progress = false;
        crate::ingest::run(&icfg, std::slice::from_ref(&a.input), &dataset)?;
    }
    if !dataset.join(ASSIGNMENTS_FILE).exists() {
        let labels = clusters_from_labels(&dataset, &a.labels)?;
        eprintln!(
            "bench tune: clusters from ground truth: {}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let named = (!a.clusters.is_empty()).then_some(a.clusters.as_slice());
    let targets = tune_targets(&dataset, named, &cfg.base_model, cfg.min_examples)?;
    if a.dry_run {
        let prepared = tune::prepare(&cfg, &a.device, &dataset, &targets)?;
        let (text, json) = tune::report::dry_run(&cfg, &prepared);
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let out = a.work.join("adapters").join(&a.run);
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let session = Session {
        device: a.device.clone(),
        ..Default::default()
    };
    let res = tune::run(&cfg, &session, &dataset, &targets, &out)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut rows = Vec::new();
    for r in &res.clusters {
        let (Some(t), Some(e)) = (&r.train, &r.eval) else {
            continue;
        };
        eprintln!(
            "cluster {:>2} {:<26} {:>3} steps {:>5.0}s {:>4.0} tok/s | exact {:>2}/{:<2} -> {:>2}/{:<2} | tool call {} -> {} | decode {:.0} tok/s",
            r.cluster,
            r.label_terms.join(" "),
            t.steps,
            t.train_secs,
            t.tokens_per_sec,
            e.base.exact_match.count,
            e.base.exact_match.of,
            e.tuned.exact_match.count,
            e.tuned.exact_match.of,
            e.base.tool_call_accuracy.count,
            e.tuned.tool_call_accuracy.count,
            e.tuned.decode_tokens_per_sec,
        );
        rows.push(json!({
            "cluster": r.cluster, "label": r.label_terms, "train_examples": r.counts.train,
            "steps": t.steps, "epochs": t.epochs, "train_tokens": t.tokens, "train_secs": t.train_secs,
            "train_tokens_per_sec": t.tokens_per_sec, "stop_reason": t.stop_reason,
            "val_loss_base": t.val_loss_base, "best_val_loss": t.best_val_loss,
            "eval_secs": r.eval_secs, "evaluated": e.evaluated,
            "base": {"exact_match": e.base.exact_match, "tool_call_accuracy": e.base.tool_call_accuracy,
                     "json_equal": e.base.json_equal, "mean_loss": e.base.mean_loss,
                     "decode_tokens_per_sec": e.base.decode_tokens_per_sec},
            "tuned": {"exact_match": e.tuned.exact_match, "tool_call_accuracy": e.tuned.tool_call_accuracy,
                      "tool_name_accuracy": e.tuned.tool_name_accuracy,
                      "json_equal": e.tuned.json_equal, "json_valid": e.tuned.json_valid,
                      "text_exact": e.tuned.text_exact, "mean_loss": e.tuned.mean_loss,
                      "decode_tokens_per_sec": e.tuned.decode_tokens_per_sec,
                      "prefill_tokens_per_sec": e.tuned.prefill_tokens_per_sec,
                      "latency_ms_per_call": e.tuned.latency_ms_per_call},
        }));
    }
    let rss = peak_rss_bytes();
    eprintln!(
        "bench tune: {} clusters in {wall:.0}s wall, {} CPU s, peak RSS {:.2} GB",
        rows.len(),
        cpu.map_or("?".into(), |c| format!("{c:.0}")),
        rss.unwrap_or(0) as f64 / 1e9
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "bench": "tune",
            "machine": machine(),
            "loadavg_at_start": load.trim(),
            "threads": rayon::current_num_threads(),
            "config": cfg,
            "out": out,
            "wall_secs": wall,
            "cpu_secs": cpu,
            "peak_rss_bytes": rss,
            "clusters": rows,
        }))?
    );
    Ok(())
}
