//! `bench ingest`: end-to-end ingest throughput.

use std::path::PathBuf;

use anyhow::Context;

use super::measure::{machine, peak_rss_bytes};

/// `bench ingest`'s settings.
#[derive(Clone, Debug)]
pub struct IngestBench {
    /// Calls to synthesise (about 2 KB each: 1,000,000 ≈ 2 GB).
    pub calls: usize,
    /// Use this log file or directory instead of synthesising one.
    pub input: Option<PathBuf>,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Where generated inputs and outputs go.
    pub dir: PathBuf,
}

impl Default for IngestBench {
    fn default() -> Self {
        IngestBench {
            calls: 200_000,
            input: None,
            threads: None,
            dir: "work/bench".into(),
        }
    }
}

/// End-to-end `ingest` throughput (MB/s, calls/s, peak RSS) on synthetic
/// logs in every format. The input is generated once (in a child process)
/// and kept in the bench directory.
pub fn run(b: IngestBench) -> anyhow::Result<()> {
    let IngestBench {
        calls,
        input,
        threads,
        dir,
    } = b;
    let dir = dir.as_path();
    std::fs::create_dir_all(dir)?;
    let input = match input {
        Some(p) => p,
        None => {
            let p = dir.join(format!("ingest-{calls}-seed1.jsonl"));
            if !p.exists() {
                eprintln!(
                    "bench ingest: generating {calls} calls into {} (once)",
                    p.display()
                );
                let st = std::process::Command::new(std::env::current_exe()?)
                    .args([
                        "synth",
                        "--calls",
                        &calls.to_string(),
                        "--seed",
                        "1",
                        "--out",
                    ])
                    .arg(&p)
                    .env("SLMFORGE_NO_PROGRESS", "1")
                    .status()
                    .context("running slmforge synth")?;
                anyhow::ensure!(st.success(), "synth failed");
            }
            p
        }
    };
    let key = crate::redact::RedactKey::from_bytes(b"slmforge-bench-key-000000")?;
    let mut cfg = crate::ingest::IngestConfig::new(key, crate::ingest::KeySource::File);
    cfg.threads = threads;
    cfg.progress = false;
    let out_dir = dir.join("ingest-out");
    let out = crate::ingest::run(&cfg, std::slice::from_ref(&input), &out_dir)?;
    let r = &out.report;
    let mb = r.input_bytes as f64 / 1e6;
    let secs = out.elapsed_s;
    let rss = peak_rss_bytes().unwrap_or(0) as f64 / 1e6;
    let figures = serde_json::json!({
        "target": "ingest",
        "input": input.display().to_string(),
        "input_mb": mb,
        "records_read": r.read,
        "written": r.written,
        "quarantined": r.quarantined,
        "redactions": r.redactions_total,
        "seconds": secs,
        "mb_per_s": mb / secs,
        "calls_per_s": r.read as f64 / secs,
        "peak_rss_mb": rss,
        "threads": threads.unwrap_or_else(rayon::current_num_threads),
        "machine": machine(),
    });
    eprintln!(
        "bench ingest: {:.0} MB, {} records in {:.1} s: {:.1} MB/s, {:.0} calls/s, peak RSS {:.0} MB ({})",
        mb,
        r.read,
        secs,
        mb / secs,
        r.read as f64 / secs,
        rss,
        machine()
    );
    println!("{figures}");
    Ok(())
}
