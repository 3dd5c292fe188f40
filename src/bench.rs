//! `slmforge bench TARGET`: benchmarks of the hot paths (ingest, redaction,
//! embedding, clustering, training, inference). Each prints a human summary
//! to stderr and one JSON object with the figures to stdout. Timing lives
//! here, never in tests.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// End-to-end `ingest` throughput (MB/s, calls/s, peak RSS) on synthetic
    /// logs in every format. The input is generated once (in a child
    /// process) and kept in the bench directory.
    Ingest {
        /// Calls to synthesise (about 2 KB each: 1,000,000 ≈ 2 GB).
        #[arg(long, default_value_t = 200_000)]
        calls: usize,
        /// Use this log file or directory instead of synthesising one.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Where generated inputs and outputs go.
        #[arg(long, default_value = "work/bench")]
        dir: std::path::PathBuf,
    },
    /// PII/secret redaction throughput on synthetic LLM-log calls.
    Redact {
        /// Megabytes of text to generate and redact.
        #[arg(long, default_value_t = 64)]
        mb: usize,
        /// Redact this text file instead (split into ~4 KB user messages).
        #[arg(long)]
        corpus: Option<std::path::PathBuf>,
    },
}

pub fn run(target: BenchTarget) -> anyhow::Result<()> {
    match target {
        BenchTarget::Ingest {
            calls,
            input,
            threads,
            dir,
        } => bench_ingest(calls, input, threads, &dir),
        BenchTarget::Redact { mb, corpus } => crate::redact::bench::run(mb, corpus.as_deref()),
    }
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One line describing this machine, for benchmark notes.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

fn bench_ingest(
    calls: usize,
    input: Option<std::path::PathBuf>,
    threads: Option<usize>,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
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
        "threads": threads.unwrap_or_else(|| rayon::current_num_threads()),
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
