//! `slmforge bench TARGET`: the flags of each benchmark, turned into the
//! settings of [`crate::dev::bench`]'s targets (whose defaults are the
//! flags' defaults).

use std::path::PathBuf;

use clap::Subcommand;

use super::tune::TuneOpts;
use crate::dev::bench::cluster::ClusterBench;
use crate::dev::bench::embed::EmbedBench;
use crate::dev::bench::ingest::IngestBench;
use crate::dev::bench::lm::{LmGemmBench, LmInferBench, LmTrainBench};
use crate::dev::bench::tune::TuneBench;
use crate::dev::bench::{cluster, embed, ingest, lm, redact, route, tune};
use crate::ml::runtime::device_from_name;

// Parsed once per process: the size of the `tune` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// End-to-end `ingest` throughput (MB/s, calls/s, peak RSS) on synthetic
    /// logs in every format. The input is generated once (in a child
    /// process) and kept in the bench directory.
    Ingest {
        /// Calls to synthesise (about 2 KB each: 1,000,000 ≈ 2 GB).
        #[arg(long, default_value_t = IngestBench::default().calls)]
        calls: usize,
        /// Use this log file or directory instead of synthesising one.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Where generated inputs and outputs go.
        #[arg(long, default_value_os_t = IngestBench::default().dir)]
        dir: PathBuf,
    },
    /// PII/secret redaction throughput on synthetic LLM-log calls.
    Redact {
        /// Megabytes of text to generate and redact.
        #[arg(long, default_value_t = 64)]
        mb: usize,
        /// Redact this text file instead (split into ~4 KB user messages).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Sentence embedding throughput (all-MiniLM-L6-v2) on short and long texts.
    Embed {
        /// Embedder directory (default: the catalogue's all-minilm-l6-v2 in the models dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = EmbedBench::default().batch_size)]
        batch_size: usize,
        /// Padded tokens per forward pass.
        #[arg(long, default_value_t = EmbedBench::default().max_batch_tokens)]
        max_batch_tokens: usize,
        /// Run the candle-ops encoder instead of the CPU kernel (for comparison).
        #[arg(long)]
        candle_ops: bool,
        /// Number of short (20-word) texts.
        #[arg(long, default_value_t = EmbedBench::default().short)]
        short: usize,
        /// Number of long (200-word) texts.
        #[arg(long, default_value_t = EmbedBench::default().long)]
        long: usize,
        /// Also write the generated texts as JSON ({"short": [...], "long": [...]})
        /// so other implementations can be timed on the same input
        /// (scripts/bench_minilm_python.py).
        #[arg(long, value_name = "FILE")]
        write_texts: Option<PathBuf>,
    },
    /// Synth N calls -> ingest -> cluster (cold embedding cache) -> cluster
    /// (warm): seconds per step, chosen k, ARI against the truth, peak RSS.
    Cluster {
        /// Calls to synthesise.
        #[arg(long, default_value_t = ClusterBench::default().calls)]
        calls: usize,
        /// Synth and cluster seed.
        #[arg(long, default_value_t = ClusterBench::default().seed)]
        seed: u64,
        /// Embedder directory [default: the catalogue's all-minilm-l6-v2 in $SLMFORGE_MODELS].
        #[arg(long)]
        embedder: Option<PathBuf>,
        /// Where the generated logs and the dataset go.
        #[arg(long, default_value_os_t = ClusterBench::default().dir)]
        dir: PathBuf,
    },
    /// Causal LM inference: prompt-processing and decode (batch 1 and N) throughput.
    LmInfer {
        /// GGUF path or catalogue id.
        #[arg(long, default_value_t = LmInferBench::default().model)]
        model: String,
        /// Prompt length for the prompt-processing measurement.
        #[arg(long, default_value_t = LmInferBench::default().prompt_len)]
        prompt_len: usize,
        /// Tokens generated per row in the decode measurements.
        #[arg(long, default_value_t = LmInferBench::default().decode_tokens)]
        decode_tokens: usize,
        /// Batch sizes of the decode measurements.
        #[arg(long, value_delimiter = ',', default_value = "1,8,16")]
        batches: Vec<usize>,
        /// Repetitions of the prompt-processing measurement (best is reported).
        #[arg(long, default_value_t = LmInferBench::default().repeats)]
        repeats: usize,
        /// Use only candle primitives (no fused kernels, plain matmul).
        #[arg(long)]
        composite: bool,
        /// Decode on the f32 weights (default: the quantized decoder).
        #[arg(long)]
        f32_decode: bool,
    },
    /// Whether the quantized decoder answers as the f32 path: each tuned
    /// adapter of a run answers its cluster's held-out calls (free and
    /// guided) both ways; JSON with the share of identical answers and the
    /// ids of the others.
    DecodeParity {
        /// The dataset directory (ingested and clustered).
        dataset: PathBuf,
        /// A `slmforge tune` output directory (or a run's `deployed/`).
        run: PathBuf,
        /// Which held-out split: `test` or `val`.
        #[arg(long, default_value = "test")]
        split: String,
        /// Calls per cluster at most.
        #[arg(long, default_value_t = 50)]
        max_calls: usize,
        /// Prompts decoded together.
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
    /// One LoRA training step of the causal LM: time, trained tokens/s, peak RSS.
    LmTrain {
        /// GGUF path or catalogue id.
        #[arg(long, default_value_t = LmTrainBench::default().model)]
        model: String,
        #[arg(long, default_value_t = LmTrainBench::default().batch)]
        batch: usize,
        #[arg(long, default_value_t = LmTrainBench::default().seq)]
        seq: usize,
        #[arg(long, default_value_t = LmTrainBench::default().rank)]
        rank: usize,
        /// Timed steps after one warm-up step.
        #[arg(long, default_value_t = LmTrainBench::default().steps)]
        steps: usize,
        /// Fraction of each sequence (its end) that is answer tokens.
        #[arg(long, default_value_t = LmTrainBench::default().answer_frac)]
        answer_frac: f64,
        /// Apply the LM head at every position instead of the answer positions only.
        #[arg(long)]
        all_positions: bool,
        /// Plain matmul (computes the frozen weights' gradients) instead of the frozen-weight op.
        #[arg(long)]
        no_frozen_op: bool,
        /// Composite candle ops instead of the fused kernels.
        #[arg(long)]
        no_fused: bool,
    },
    /// Raw matmul throughput on the causal LM's projection shapes (f32, or
    /// the quantized decoder's kernels with `--quantized`).
    LmGemm {
        /// Rows (tokens) of the activation matrix.
        #[arg(long, default_value_t = LmGemmBench::default().rows)]
        rows: usize,
        #[arg(long, default_value_t = LmGemmBench::default().repeats)]
        repeats: usize,
        /// Q4_1 weights (the head Q8_0) through the decoder's kernels.
        #[arg(long)]
        quantized: bool,
    },
    /// Routing with a real table (`export` writes RUN/export/routing.json):
    /// requests/s for a batch (embedding included) and single-request latency.
    Route {
        /// The routing table.
        #[arg(long)]
        table: PathBuf,
        /// Requests (any format ingest reads; bare request bodies too).
        #[arg(long)]
        input: PathBuf,
        /// Requests routed one at a time for the latency figures.
        #[arg(long, default_value_t = 200)]
        single: usize,
    },
    /// The tune stage on the sample (clusters from ground truth): trained tokens/s,
    /// eval decode throughput, base vs tuned quality, peak RSS.
    Tune {
        /// Working directory: WORK/dataset (ingested once) and WORK/adapters/RUN.
        #[arg(long, default_value_os_t = TuneBench::default().work)]
        work: PathBuf,
        /// Logs to ingest when WORK/dataset has no calls.parquet.
        #[arg(long, default_value_os_t = TuneBench::default().input)]
        input: PathBuf,
        /// Ground truth the clusters are built from (into WORK/dataset/clusters.parquet).
        #[arg(long, default_value_os_t = TuneBench::default().labels)]
        labels: PathBuf,
        /// Only these clusters.
        #[arg(long = "cluster", value_name = "ID", allow_negative_numbers = true)]
        clusters: Vec<i32>,
        /// Run name (WORK/adapters/RUN is replaced).
        #[arg(long, default_value_t = TuneBench::default().run)]
        run: String,
        /// Prepare the dataset and show the per-cluster figures only.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        opts: TuneOpts,
    },
}

/// Runs one benchmark target.
pub fn run(target: BenchTarget) -> anyhow::Result<()> {
    match target {
        BenchTarget::Ingest {
            calls,
            input,
            threads,
            dir,
        } => ingest::run(IngestBench {
            calls,
            input,
            threads,
            dir,
        }),
        BenchTarget::Redact { mb, corpus } => redact::run(mb, corpus.as_deref()),
        BenchTarget::Embed {
            dir,
            batch_size,
            max_batch_tokens,
            candle_ops,
            short,
            long,
            write_texts,
        } => embed::run(EmbedBench {
            dir,
            batch_size,
            max_batch_tokens,
            candle_ops,
            short,
            long,
            write_texts,
        }),
        BenchTarget::Cluster {
            calls,
            seed,
            embedder,
            dir,
        } => cluster::run(ClusterBench {
            calls,
            seed,
            embedder,
            dir,
        }),
        BenchTarget::LmInfer {
            model,
            prompt_len,
            decode_tokens,
            batches,
            repeats,
            composite,
            f32_decode,
        } => lm::run_infer(LmInferBench {
            model,
            prompt_len,
            decode_tokens,
            batches,
            repeats,
            composite,
            f32_decode,
        }),
        BenchTarget::DecodeParity {
            dataset,
            run,
            split,
            max_calls,
            batch,
        } => {
            let split = match split.as_str() {
                "test" => crate::artifact::split::Split::Test,
                "val" => crate::artifact::split::Split::Val,
                other => {
                    return Err(crate::util::usage(format!(
                        "--split {other}: use test or val"
                    )))
                }
            };
            crate::ml::runtime::init_runtime();
            let v = crate::route::decode_parity(&dataset, &run, split, max_calls, batch)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        BenchTarget::LmTrain {
            model,
            batch,
            seq,
            rank,
            steps,
            answer_frac,
            all_positions,
            no_frozen_op,
            no_fused,
        } => lm::run_train(LmTrainBench {
            model,
            batch,
            seq,
            rank,
            steps,
            answer_frac,
            all_positions,
            no_frozen_op,
            no_fused,
        }),
        BenchTarget::LmGemm {
            rows,
            repeats,
            quantized,
        } => lm::run_gemm(LmGemmBench {
            rows,
            repeats,
            quantized,
        }),
        BenchTarget::Route {
            table,
            input,
            single,
        } => route::run(crate::dev::bench::route::RouteBench {
            table,
            input,
            single,
        }),
        BenchTarget::Tune {
            work,
            input,
            labels,
            clusters,
            run,
            dry_run,
            opts,
        } => tune::run(TuneBench {
            work,
            input,
            labels,
            clusters,
            run,
            dry_run,
            cfg: opts.config()?,
            device: device_from_name(&opts.device)?,
        }),
    }
}
