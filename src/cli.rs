//! Command-line interface: clap types and dispatch. Logic lives in the stage
//! modules; each subcommand calls one entry function.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::util::UsageError;

#[derive(Parser, Debug)]
#[command(name = "slmforge", version, about = "Turn production LLM call logs into small specialised models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmark a hot path (prints JSON figures on stdout).
    Bench {
        #[command(subcommand)]
        target: crate::bench::BenchTarget,
    },
    /// Generate a reply with a causal LM (GGUF), optionally with a LoRA adapter.
    Generate(crate::lm::generate::GenerateArgs),
}

/// Parses arguments, runs the command, maps errors to exit codes:
/// 0 success, 1 a finished run that `--strict` rejects (set by the command),
/// 2 an unusable invocation.
pub fn main() -> ExitCode {
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
        Command::Bench { target } => {
            crate::bench::run(target)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            crate::lm::generate::run_generate(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
