//! `slmforge demo`: the end-to-end run on the bundled sample traffic, the
//! README's first command. Each stage is the same entry function the
//! stand-alone subcommands call; the demo only chains them and prints where
//! the artifacts are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `slmforge demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the demo's artifacts.
    #[arg(long, default_value = "work/demo")]
    pub work: PathBuf,
    /// Log files or directories to use instead of the bundled sample.
    #[arg(long, value_name = "INPUT")]
    pub input: Vec<PathBuf>,
}

fn bundled_sample() -> PathBuf {
    let here = Path::new("datasets/sample");
    if here.exists() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample")
}

pub fn cli(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let inputs = if args.input.is_empty() {
        vec![bundled_sample()]
    } else {
        args.input.clone()
    };
    let dataset = args.work.join("dataset");
    eprintln!(
        "demo 1/1: ingest {} -> {}",
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        dataset.display()
    );
    let (key, key_source) = crate::ingest::resolve_key(None)?;
    let cfg = crate::ingest::IngestConfig::new(key, key_source);
    let out = crate::ingest::run(&cfg, &inputs, &dataset)?;
    eprint!("{}", crate::ingest::summary(&out));
    eprintln!("demo: done. Dataset: {}", dataset.display());
    Ok(ExitCode::SUCCESS)
}
