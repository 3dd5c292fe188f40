//! Command-line interface: clap types and dispatch. Logic lives in the stage
//! modules; each subcommand calls one entry function.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::util::UsageError;

#[derive(Parser, Debug)]
#[command(
    name = "slmforge",
    version,
    about = "Turn production LLM call logs into small specialised models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pipeline end to end on the bundled sample (the README's first command).
    Demo(crate::demo::DemoArgs),
    /// Ingest LLM call logs: parse, normalise, redact, dedup → DIR/calls.parquet.
    Ingest(crate::ingest::IngestArgs),
    /// Find the workloads: cluster DIR/calls.parquet → DIR/clusters.parquet, clusters.json, clusters.svg.
    Cluster(crate::cluster::ClusterArgs),
    /// Fetch and list the known models (base SLMs, the sentence embedder).
    Models {
        #[command(subcommand)]
        command: crate::models::ModelsCommand,
    },
    /// Benchmark a hot path (prints JSON figures on stdout).
    Bench {
        #[command(subcommand)]
        target: crate::bench::BenchTarget,
    },
    /// Generate synthetic agent traffic in every supported log format, with ground-truth labels.
    Synth(crate::synth::SynthArgs),
    /// Generate a reply with a causal LM (GGUF), optionally with a LoRA adapter.
    Generate(crate::lm::generate::GenerateArgs),
    /// Fine-tune a LoRA adapter per cluster on the LLM's own answers, and evaluate it against the base model.
    Tune(crate::tune::TuneArgs),
}

/// Parses arguments, runs the command, maps errors to exit codes:
/// 0 success, 1 a finished run that `--strict` rejects (set by the command),
/// 2 an unusable invocation.
pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("slmforge: {u}");
                ExitCode::from(2)
            } else {
                eprintln!("slmforge: error: {e:#}");
                ExitCode::from(2)
            }
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => crate::demo::cli(args),
        Command::Ingest(args) => crate::ingest::cli(args),
        Command::Cluster(args) => crate::cluster::cli(args),
        Command::Models { command } => crate::models::run(command),
        Command::Bench { target } => {
            crate::bench::run(target)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth(args) => {
            crate::synth::cli(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            crate::lm::generate::run_generate(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tune(args) => crate::tune::cli(args),
    }
}

/// A panic message can carry the text being processed (a slice error
/// quotes its string), and that text may be raw log content. The hook
/// prints only where the panic happened, never its payload, unless
/// `SLMFORGE_DEBUG_PANICS=1` is set on a machine where that is acceptable.
pub fn install_panic_hook() {
    if std::env::var_os("SLMFORGE_DEBUG_PANICS").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown".into());
        eprintln!("slmforge: internal error at {at} (details withheld: they may contain log content; set SLMFORGE_DEBUG_PANICS=1 to see them)");
    }));
}
