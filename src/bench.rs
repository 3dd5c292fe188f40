//! `slmforge bench TARGET`: benchmarks of the hot paths (ingest, redaction,
//! embedding, clustering, training, inference). Each prints a human summary
//! to stderr and one JSON object with the figures to stdout. Timing lives
//! here, never in tests.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
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
