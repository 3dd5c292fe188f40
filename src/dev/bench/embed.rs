//! `bench embed`: sentences per second of the sentence embedder.

use super::measure::{cpu_seconds, peak_rss_bytes};

/// `bench embed`'s settings.
#[derive(Clone, Debug)]
pub struct EmbedBench {
    /// Embedder directory (default: the catalogue's all-minilm-l6-v2 in the models dir).
    pub dir: Option<std::path::PathBuf>,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Padded tokens per forward pass.
    pub max_batch_tokens: usize,
    /// Run the candle-ops encoder instead of the CPU kernel (for comparison).
    pub candle_ops: bool,
    /// Number of short (20-word) texts.
    pub short: usize,
    /// Number of long (200-word) texts.
    pub long: usize,
    /// Also write the generated texts as JSON ({"short": [...], "long": [...]})
    /// so other implementations can be timed on the same input
    /// (scripts/bench_minilm_python.py).
    pub write_texts: Option<std::path::PathBuf>,
}

impl Default for EmbedBench {
    fn default() -> Self {
        EmbedBench {
            dir: None,
            batch_size: crate::ml::embed::DEFAULT_BATCH_SIZE,
            max_batch_tokens: crate::ml::embed::DEFAULT_MAX_BATCH_TOKENS,
            candle_ops: false,
            short: 512,
            long: 96,
            write_texts: None,
        }
    }
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
    e: &crate::ml::embed::Embedder,
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

/// Sentence embedding throughput (all-MiniLM-L6-v2) on short and long texts.
pub fn run(args: EmbedBench) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(crate::ml::models::embedder_dir);
    let short = bench_texts(args.short, 20, 1);
    let long = bench_texts(args.long, 200, 2);
    if let Some(path) = &args.write_texts {
        crate::util::write_json(path, &serde_json::json!({"short": short, "long": long}))?;
    }
    let load_started = std::time::Instant::now();
    let backend = if args.candle_ops {
        crate::ml::embed::Backend::CandleOps
    } else {
        crate::ml::embed::Backend::Auto
    };
    let e =
        crate::ml::embed::Embedder::load_with_backend(&dir, &candle_core::Device::Cpu, backend)?
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
