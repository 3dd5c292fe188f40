//! `slmforge bench TARGET`: benchmarks of the hot paths (ingest, redaction,
//! embedding, clustering, training, inference). Each prints a human summary
//! to stderr and one JSON object with the figures to stdout. Timing lives
//! here, never in tests.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// Causal LM inference: prompt-processing and decode (batch 1 and N) throughput.
    LmInfer(crate::lm::bench::LmInferArgs),
    /// One LoRA training step of the causal LM: time, trained tokens/s, peak RSS.
    LmTrain(crate::lm::bench::LmTrainArgs),
    /// Raw f32 matmul throughput on the causal LM's projection shapes.
    LmGemm(crate::lm::bench::LmGemmArgs),
}

pub fn run(target: BenchTarget) -> anyhow::Result<()> {
    match target {
        BenchTarget::LmInfer(a) => crate::lm::bench::run_infer(a),
        BenchTarget::LmTrain(a) => crate::lm::bench::run_train(a),
        BenchTarget::LmGemm(a) => crate::lm::bench::run_gemm(a),
    }
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
