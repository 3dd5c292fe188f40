//! `slmforge bench route`: routing throughput and latency with a real table.
//! Requests are read once (ingest in request-only mode, timed apart); then
//! the whole batch is routed (featurise with the embedder, identical texts
//! once, nearest route, rules) and each of the first requests alone, for
//! the single-request latency. The embedder is loaded before timing.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::ProgressBar;

use super::measure::{machine, peak_rss_bytes};
use crate::artifact::routing::read_table;
use crate::ml::embed::Embedder;

#[derive(Clone, Debug)]
pub struct RouteBench {
    pub table: PathBuf,
    pub input: PathBuf,
    /// Requests routed one at a time for the latency figures.
    pub single: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(args: RouteBench) -> anyhow::Result<()> {
    crate::ml::runtime::init_runtime();
    let table = read_table(&args.table)?;
    let work = std::env::temp_dir().join(format!("slmforge-bench-route-{}", std::process::id()));
    let (key, src) = crate::ingest::resolve_key(None)?;
    let mut cfg = crate::ingest::IngestConfig::new(key, src);
    cfg.requests_only = true;
    cfg.progress = false;
    let t = Instant::now();
    let read = (|| {
        crate::ingest::run(&cfg, std::slice::from_ref(&args.input), &work)?;
        crate::artifact::calls::read_calls(&work)
    })();
    let _ = std::fs::remove_dir_all(&work);
    let calls = read?;
    let read_s = t.elapsed().as_secs_f64();
    let refs: Vec<&crate::call::Call> = calls.iter().map(|c| &**c).collect();
    let t = Instant::now();
    let embedder = Embedder::load(
        &crate::ml::models::embedder_dir(),
        &candle_core::Device::Cpu,
    )?;
    let load_s = t.elapsed().as_secs_f64();
    embedder.embed(&["warm up"])?;
    let pb = ProgressBar::hidden();
    let t = Instant::now();
    let facts: Vec<_> = refs.iter().map(|c| table.features.facts(c)).collect();
    let facts_s = t.elapsed().as_secs_f64();
    let mut texts: Vec<&str> = facts
        .iter()
        .flat_map(|f| [f.system.as_str(), f.user.as_str()])
        .filter(|t| !t.is_empty())
        .collect();
    texts.sort_unstable();
    texts.dedup();
    let t = Instant::now();
    embedder.embed(&texts)?;
    let embed_s = t.elapsed().as_secs_f64();
    let tokens: usize = embedder.tokenize(&texts)?.iter().map(Vec::len).sum();
    eprintln!(
        "route parts: facts {facts_s:.2} s; {} distinct texts ({:.1} tokens each) embedded in {embed_s:.2} s",
        texts.len(),
        tokens as f64 / texts.len().max(1) as f64
    );
    let t = Instant::now();
    let decisions = crate::route::route_calls(&table, &refs, &embedder, &pb)?;
    let batch_s = t.elapsed().as_secs_f64();
    let routed = decisions.iter().filter(|d| d.routed.is_some()).count();
    let mut lat: Vec<f64> = Vec::new();
    for c in refs.iter().take(args.single) {
        let t = Instant::now();
        crate::route::route_calls(&table, &[*c], &embedder, &pb)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let user_chars: f64 = refs
        .iter()
        .map(|c| table.features.facts(c).user.chars().count() as f64)
        .sum::<f64>()
        / refs.len().max(1) as f64;
    let rps = refs.len() as f64 / batch_s.max(1e-9);
    let rps_all = refs.len() as f64 / (batch_s + read_s).max(1e-9);
    eprintln!(
        "route: {} requests: read + redact {read_s:.2} s, embed + route {:.2} s ({rps:.0} requests/s; {rps_all:.0} requests/s end to end, {routed} routed to small models); single request (embed + route) p50 {:.1} ms, p95 {:.1} ms; embedder load {load_s:.2} s; mean embedded user text {user_chars:.0} chars",
        refs.len(),
        batch_s,
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
    );
    println!(
        "{}",
        serde_json::json!({
            "target": "route", "machine": machine(), "requests": refs.len(), "routed": routed,
            "read_redact_seconds": read_s, "batch_seconds": batch_s, "requests_per_s": rps,
            "requests_per_s_end_to_end": rps_all,
            "single_ms_p50": percentile(&lat, 0.5), "single_ms_p95": percentile(&lat, 0.95),
            "single_ms_max": lat.last().copied().unwrap_or(0.0), "single_requests": lat.len(),
            "embedder_load_seconds": load_s, "mean_user_chars": user_chars,
            "distinct_texts": texts.len(), "tokens_per_text": tokens as f64 / texts.len().max(1) as f64,
            "embed_only_seconds": embed_s, "embedder_tokens_per_s": tokens as f64 / embed_s.max(1e-9),
            "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}
