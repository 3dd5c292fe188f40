//! `slmforge bench cluster`: synthetic traffic -> ingest -> cluster with a
//! cold embedding cache -> cluster again with a warm one. Prints wall and
//! CPU seconds per step, the chosen k, the ARI against the synth ground
//! truth, cache figures and peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::{run_with, ClusterConfig, LazyEmbedder};
use crate::bench::{cpu_seconds, machine, peak_rss_bytes};

#[derive(clap::Args, Debug)]
pub struct ClusterBenchArgs {
    /// Calls to synthesise.
    #[arg(long, default_value_t = 10_000)]
    pub calls: usize,
    /// Synth and cluster seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Embedder directory [default: the catalogue's all-minilm-l6-v2 in $SLMFORGE_MODELS].
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Where the generated logs and the dataset go.
    #[arg(long, default_value = "work/bench")]
    pub dir: PathBuf,
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Wall and CPU seconds of `f`.
fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64, f64)> {
    let cpu = cpu_seconds().unwrap_or(0.0);
    let t = Instant::now();
    let v = f()?;
    Ok((
        v,
        t.elapsed().as_secs_f64(),
        cpu_seconds().unwrap_or(0.0) - cpu,
    ))
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<()> {
    let load_before = load_average();
    let root = args
        .dir
        .join(format!("cluster-{}-seed{}", args.calls, args.seed));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let logs = root.join("logs.jsonl");
    let labels = crate::synth::labels_path(&logs);
    let (_, synth_s, _) = timed(|| {
        crate::synth::synthesize(
            &crate::synth::SynthConfig {
                calls: args.calls,
                seed: args.seed,
                malformed: Some(0),
                formats: None,
            },
            &logs,
        )
    })?;
    let ds = root.join("ds");
    if ds.exists() {
        std::fs::remove_dir_all(&ds).with_context(|| format!("clearing {}", ds.display()))?;
    }
    let key = crate::redact::RedactKey::from_bytes(b"slmforge-bench-key-000000")?;
    let mut icfg = crate::ingest::IngestConfig::new(key, crate::ingest::KeySource::File);
    icfg.progress = false;
    let (ingested, ingest_s, ingest_cpu) =
        timed(|| crate::ingest::run(&icfg, std::slice::from_ref(&logs), &ds))?;

    let dir = args.embedder.unwrap_or_else(crate::models::embedder_dir);
    let cfg = ClusterConfig {
        seed: args.seed,
        truth: Some(labels),
        progress: false,
        ..ClusterConfig::default()
    };
    // Cold: a fresh cache and a model loaded on demand (as the CLI does).
    let (cold, cold_s, cold_cpu) = timed(|| {
        let e = LazyEmbedder::new(&dir)?;
        run_with(&cfg, &ds, &e)
    })?;
    let (warm, warm_s, warm_cpu) = timed(|| {
        let e = LazyEmbedder::new(&dir)?;
        let out = run_with(&cfg, &ds, &e)?;
        anyhow::ensure!(!e.loaded(), "the warm run loaded the model");
        Ok(out)
    })?;
    let same = std::fs::read(ds.join(super::SUMMARY_FILE))? == {
        // The warm run rewrote the files; compare with the cold summary.
        let mut b = serde_json::to_vec_pretty(&cold.summary)?;
        b.push(b'\n');
        b
    };
    let s = &warm.summary;
    let figures = serde_json::json!({
        "target": "cluster",
        "calls": s.calls,
        "synth_seconds": synth_s,
        "ingest_seconds": ingest_s,
        "ingest_cpu_seconds": ingest_cpu,
        "cluster_cold_seconds": cold_s,
        "cluster_cold_cpu_seconds": cold_cpu,
        "cluster_cold_steps": cold.timings,
        "ingest_to_clusters_cold_seconds": ingest_s + cold_s,
        "cluster_warm_seconds": warm_s,
        "cluster_warm_cpu_seconds": warm_cpu,
        "cluster_warm_steps": warm.timings,
        "texts_embedded_cold": cold.cache.misses,
        "cache_hits_warm": warm.cache.hits,
        "cache_misses_warm": warm.cache.misses,
        "k": s.k,
        "k_search": s.k_search,
        "outliers": s.outliers,
        "ari": s.ari,
        "warm_summary_identical_to_cold": same,
        "written": ingested.report.written,
        "peak_rss_bytes": peak_rss_bytes(),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    });
    eprintln!(
        "bench cluster: {} calls: ingest {:.1} s, cluster cold {:.1} s ({} texts embedded), warm {:.1} s; ingest -> clusters.json cold {:.1} s; k = {}, ARI {}; peak RSS {:.0} MB ({}; load {})",
        s.calls,
        ingest_s,
        cold_s,
        cold.cache.misses,
        warm_s,
        ingest_s + cold_s,
        s.k,
        s.ari.map_or("-".into(), |a| format!("{a:.3}")),
        peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        machine(),
        load_average().unwrap_or_default()
    );
    println!("{figures}");
    Ok(())
}
