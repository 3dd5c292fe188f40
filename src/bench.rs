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
    /// Sentence embedding throughput (all-MiniLM-L6-v2) on short and long texts.
    Embed(EmbedBenchArgs),
    /// Synth N calls -> ingest -> cluster (cold embedding cache) -> cluster
    /// (warm): seconds per step, chosen k, ARI against the truth, peak RSS.
    Cluster(crate::cluster::bench::ClusterBenchArgs),
    /// Causal LM inference: prompt-processing and decode (batch 1 and N) throughput.
    LmInfer(crate::lm::bench::LmInferArgs),
    /// One LoRA training step of the causal LM: time, trained tokens/s, peak RSS.
    LmTrain(crate::lm::bench::LmTrainArgs),
    /// Raw f32 matmul throughput on the causal LM's projection shapes.
    LmGemm(crate::lm::bench::LmGemmArgs),
    /// The tune stage on the sample (clusters from ground truth): trained tokens/s,
    /// eval decode throughput, base vs tuned quality, peak RSS.
    Tune(crate::tune::bench::TuneBenchArgs),
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
        BenchTarget::Embed(args) => bench_embed(args),
        BenchTarget::Cluster(args) => crate::cluster::bench::run(args),
        BenchTarget::LmInfer(a) => crate::lm::bench::run_infer(a),
        BenchTarget::LmTrain(a) => crate::lm::bench::run_train(a),
        BenchTarget::LmGemm(a) => crate::lm::bench::run_gemm(a),
        BenchTarget::Tune(a) => crate::tune::bench::run(a),
    }
}

/// User + system CPU seconds used by this process so far (Linux), if known.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
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

// ---------------------------------------------------------------------------
// embed: sentences per second of the sentence embedder

#[derive(clap::Args, Debug)]
pub struct EmbedBenchArgs {
    /// Embedder directory (default: the catalogue's all-minilm-l6-v2 in the models dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = crate::embed::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Padded tokens per forward pass.
    #[arg(long, default_value_t = crate::embed::DEFAULT_MAX_BATCH_TOKENS)]
    pub max_batch_tokens: usize,
    /// Run the candle-ops encoder instead of the CPU kernel (for comparison).
    #[arg(long)]
    pub candle_ops: bool,
    /// Number of short (20-word) texts.
    #[arg(long, default_value_t = 512)]
    pub short: usize,
    /// Number of long (200-word) texts.
    #[arg(long, default_value_t = 96)]
    pub long: usize,
    /// Also write the generated texts as JSON ({"short": [...], "long": [...]})
    /// so other implementations can be timed on the same input
    /// (scripts/bench_minilm_python.py).
    #[arg(long, value_name = "FILE")]
    pub write_texts: Option<std::path::PathBuf>,
}

/// Common English words; texts are drawn from them with a fixed seed.
const BENCH_WORDS: &[&str] = &[
    "the",
    "customer",
    "asked",
    "about",
    "a",
    "refund",
    "for",
    "their",
    "order",
    "which",
    "arrived",
    "late",
    "and",
    "was",
    "damaged",
    "during",
    "shipping",
    "please",
    "check",
    "account",
    "status",
    "reset",
    "password",
    "invoice",
    "payment",
    "failed",
    "because",
    "card",
    "expired",
    "update",
    "billing",
    "address",
    "subscription",
    "plan",
    "upgrade",
    "cancel",
    "renewal",
    "date",
    "support",
    "ticket",
    "escalated",
    "manager",
    "response",
    "within",
    "hours",
    "delivery",
    "tracking",
    "number",
    "warehouse",
    "product",
    "quality",
    "issue",
    "battery",
    "screen",
    "broken",
    "replacement",
    "warranty",
    "covers",
    "manufacturing",
    "defects",
    "only",
    "email",
    "confirmation",
    "never",
    "received",
    "spam",
    "folder",
    "login",
    "error",
    "message",
    "says",
    "invalid",
    "token",
    "session",
    "expired",
    "browser",
    "cache",
    "cleared",
    "still",
    "not",
    "working",
    "mobile",
    "app",
    "crashes",
    "when",
    "opening",
    "settings",
    "page",
    "after",
    "latest",
    "update",
    "version",
    "summarize",
    "following",
    "document",
    "contract",
    "clause",
    "termination",
    "notice",
    "period",
    "days",
    "translate",
    "into",
    "french",
    "german",
    "spanish",
    "classify",
    "sentiment",
    "positive",
    "negative",
    "neutral",
    "extract",
    "names",
    "dates",
    "amounts",
    "from",
    "this",
    "text",
    "meeting",
    "notes",
    "quarterly",
    "revenue",
    "growth",
    "region",
    "forecast",
    "budget",
    "hiring",
    "team",
    "roadmap",
    "feature",
    "request",
    "bug",
    "report",
    "steps",
    "reproduce",
    "expected",
    "behaviour",
    "actual",
    "result",
    "logs",
    "attached",
    "server",
    "timeout",
    "database",
    "connection",
    "pool",
    "exhausted",
    "retry",
    "later",
    "we",
    "apologize",
    "inconvenience",
    "is",
    "there",
    "anything",
    "else",
    "can",
    "help",
    "you",
    "with",
    "today",
    "thanks",
    "regards",
    "best",
    "wishes",
    "urgent",
    "asap",
    "discount",
    "code",
];

fn bench_texts(n: usize, words: usize, seed: u64) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut t: Vec<&str> = (0..words)
                .map(|_| BENCH_WORDS[rng.random_range(0..BENCH_WORDS.len())])
                .collect();
            if let Some(w) = t.last_mut() {
                *w = if rng.random_bool(0.5) { "done." } else { "ok?" };
            }
            t.join(" ")
        })
        .collect()
}

#[derive(serde::Serialize)]
struct EmbedFigures {
    texts: usize,
    words_per_text: usize,
    mean_tokens: f64,
    seconds: f64,
    /// User + system CPU time of the process (all threads) during the run;
    /// less sensitive than wall time to other load on the machine.
    cpu_seconds: Option<f64>,
    sentences_per_s: f64,
    tokens_per_s: f64,
}

fn time_embed(
    e: &crate::embed::Embedder,
    texts: &[String],
    words: usize,
) -> anyhow::Result<EmbedFigures> {
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let tokens: usize = e.tokenize(&refs)?.iter().map(|t| t.len()).sum();
    // Warm-up: one batch (allocations, thread pools, page faults on the weights).
    e.embed(&refs[..refs.len().min(e.batch_size())])?;
    let cpu0 = cpu_seconds();
    let started = std::time::Instant::now();
    let v = e.embed(&refs)?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
    anyhow::ensure!(
        v.len() == texts.len(),
        "embedder returned {} vectors for {} texts",
        v.len(),
        texts.len()
    );
    Ok(EmbedFigures {
        texts: texts.len(),
        words_per_text: words,
        mean_tokens: tokens as f64 / texts.len().max(1) as f64,
        seconds,
        cpu_seconds,
        sentences_per_s: texts.len() as f64 / seconds,
        tokens_per_s: tokens as f64 / seconds,
    })
}

fn bench_embed(args: EmbedBenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(crate::models::embedder_dir);
    let short = bench_texts(args.short, 20, 1);
    let long = bench_texts(args.long, 200, 2);
    if let Some(path) = &args.write_texts {
        crate::util::write_json(path, &serde_json::json!({"short": short, "long": long}))?;
    }
    let load_started = std::time::Instant::now();
    let backend = if args.candle_ops {
        crate::embed::Backend::CandleOps
    } else {
        crate::embed::Backend::Auto
    };
    let e = crate::embed::Embedder::load_with_backend(&dir, &candle_core::Device::Cpu, backend)?
        .with_batch_size(args.batch_size);
    let load_s = load_started.elapsed().as_secs_f64();
    let s = time_embed(&e, &short, 20)?;
    let l = time_embed(&e, &long, 200)?;
    eprintln!(
        "embed ({}): batch {} threads {}: short {:.1} sentences/s ({:.1} tokens each), long {:.1} sentences/s ({:.1} tokens each); load {:.2} s",
        e.backend_name(),
        args.batch_size,
        candle_core::utils::get_num_threads(),
        s.sentences_per_s,
        s.mean_tokens,
        l.sentences_per_s,
        l.mean_tokens,
        load_s
    );
    let out = serde_json::json!({
        "target": "embed",
        "backend": e.backend_name(),
        "avx512_feature": cfg!(feature = "avx512"),
        "model_sha256": e.checksum(),
        "batch_size": args.batch_size,
        "threads": candle_core::utils::get_num_threads(),
        "load_seconds": load_s,
        "short": s,
        "long": l,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
