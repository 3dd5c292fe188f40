//! The command line: all clap types, dispatch, exit codes, the panic hook.
//! Each subcommand's file turns its flags into the stage's `Config` (with
//! the stage's defaults) and calls the stage's `run`; logic lives in the
//! stages. This is the only module that knows clap.

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod export;
pub mod generate;
pub mod ingest;
pub mod models;
pub mod route;
pub mod run;
pub mod select;
pub mod synth;
pub mod tune;

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
    Demo(demo::DemoArgs),
    /// Run a pipeline file (pipelines/NAME.toml): every stage, incremental, gated, with a report.
    Run(run::RunArgs),
    /// Gather the outputs of jobs emitted by `run --emit`, then gate, export and report.
    Collect(run::CollectArgs),
    /// Ingest LLM call logs: parse, normalise, redact, dedup → DIR/calls.parquet.
    Ingest(ingest::IngestArgs),
    /// Find the workloads: cluster DIR/calls.parquet → DIR/clusters.parquet, clusters.json, clusters.svg.
    Cluster(cluster::ClusterArgs),
    /// Fetch and list the known models (base SLMs, the sentence embedder).
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Benchmark a hot path (prints JSON figures on stdout).
    Bench {
        #[command(subcommand)]
        target: bench::BenchTarget,
    },
    /// Generate synthetic agent traffic in every supported log format, with ground-truth labels.
    Synth(synth::SynthArgs),
    /// Generate a reply with a causal LM (GGUF), optionally with a LoRA adapter.
    Generate(generate::GenerateArgs),
    /// Choose a base model per cluster (measured on validation calls), plan where they run and what that saves → DIR/plan.json.
    Select(select::SelectArgs),
    /// Fine-tune a LoRA adapter per cluster on the LLM's own answers, and evaluate it against the base model.
    Tune(tune::TuneArgs),
    /// Export tuned adapters for serving (PEFT, llama.cpp GGUF, merged model) and calibrate the routing table.
    Export(export::ExportArgs),
    /// Route requests with a routing table: which specialised model each one goes to, or the LLM.
    Route(route::RouteArgs),
}

/// Parses arguments, runs the command, maps errors to exit codes:
/// 0 success, 1 a finished run that `--strict` rejects (set by the command),
/// 2 an unusable invocation.
pub fn main() -> ExitCode {
    reset_sigpipe();
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
            } else {
                eprintln!("slmforge: error: {e:#}");
            }
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// The exit code of an error: 74 for a failure to write outputs
/// ([`crate::util::IoFailure`]), otherwise 2.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<crate::util::IoFailure>().is_some() {
        crate::util::EXIT_IO_ERROR
    } else {
        2
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::Collect(args) => run::collect(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Models { command } => models::run(command),
        Command::Bench { target } => {
            bench::run(target)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth(args) => {
            synth::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            generate::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Select(args) => select::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Export(args) => export::run(args),
        Command::Route(args) => route::run(args),
    }
}

/// `slmforge ... | head`: when the reader of stdout goes away, end quietly
/// as other command-line tools do (the default action of SIGPIPE), instead
/// of failing on the next write. Rust sets SIGPIPE to "ignore" at start-up.
pub fn reset_sigpipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: restores the default disposition of one signal before any
        // thread is started; no handler code is involved.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
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
