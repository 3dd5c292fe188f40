//! `slmforge bench cluster`: synthetic traffic -> ingest -> cluster with a
//! cold embedding cache -> cluster again with a warm one. Prints wall and
//! CPU seconds per step, the chosen k, the ARI against the synth ground
//! truth, cache figures and peak RSS.

use std::path::PathBuf;

use anyhow::Context;

use super::measure::{machine, peak_rss_bytes, timed};
use crate::cluster::{self, ClusterConfig};
use crate::ml::embed::LazyEmbedder;

#[derive(Clone, Debug)]
pub struct ClusterBench {
    /// Calls to synthesise.
    pub calls: usize,
    /// Synth and cluster seed.
    pub seed: u64,
    /// Embedder directory [default: the catalogue's all-minilm-l6-v2 in $SLMFORGE_MODELS].
    pub embedder: Option<PathBuf>,
    /// Where the generated logs and the dataset go.
    pub dir: PathBuf,
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

impl Default for ClusterBench {
    fn default() -> Self {
        ClusterBench {
            calls: 10_000,
            seed: 1,
            embedder: None,
            dir: "work/bench".into(),
        }
    }
}

/// Synth N calls -> ingest -> cluster (cold embedding cache) -> cluster
/// (warm): seconds per step, chosen k, ARI against the truth, peak RSS.
pub fn run(args: ClusterBench) -> anyhow::Result<()> {
    let load_before = load_average();
    let root = args
        .dir
        .join(format!("cluster-{}-seed{}", args.calls, args.seed));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let logs = root.join("logs.jsonl");
    let labels = crate::dev::synth::labels_path(&logs);
    let (_, synth_s, _) = timed(|| {
        crate::dev::synth::synthesize(
            &crate::dev::synth::SynthConfig {
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

    let dir = args
        .embedder
        .unwrap_or_else(crate::ml::models::embedder_dir);
    let cfg = ClusterConfig {
        seed: args.seed,
        truth: Some(labels),
        progress: false,
        ..ClusterConfig::default()
    };
    // Cold: a fresh cache and a model loaded on demand (as the CLI does).
    let (cold, cold_s, cold_cpu) = timed(|| {
        let e = LazyEmbedder::new(&dir)?;
        cluster::run(&cfg, &ds, &e)
    })?;
    let (warm, warm_s, warm_cpu) = timed(|| {
        let e = LazyEmbedder::new(&dir)?;
        let out = cluster::run(&cfg, &ds, &e)?;
        anyhow::ensure!(!e.loaded(), "the warm run loaded the model");
        Ok(out)
    })?;
    let same = std::fs::read(ds.join(crate::artifact::SUMMARY_FILE))? == {
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
