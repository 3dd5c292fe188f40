//! `slmforge synth`: synthetic agent traffic in every supported log format,
//! with ground-truth labels ([`crate::dev::synth`]).

use std::path::PathBuf;

use crate::call::SourceFormat;
use crate::dev::synth::{labels_path, synthesize_profile, Profile, SynthConfig};
use crate::util::usage;

/// `slmforge synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Number of LLM calls to generate.
    #[arg(long)]
    pub calls: usize,
    /// Which traffic: easy (ten balanced, well-separated workloads) or hard
    /// (a changing tool pool, refusals and clarifying questions, a
    /// multi-API agent, multi-turn tool results, near-duplicate schemas,
    /// unbalanced sizes with one-off tasks).
    #[arg(long, value_enum, default_value_t = Profile::default().into())]
    pub profile: ProfileArg,
    /// RNG seed: the same seed and flags give byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (.jsonl, .jsonl.gz or .jsonl.zst); the labels go next to
    /// it as <name>.labels.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Malformed records to mix in [default: max(3, calls/200)]; 100 or
    /// more include one line over 8 MiB.
    #[arg(long)]
    pub malformed: Option<usize>,
    /// Comma-separated formats to use [default: all]: openai_chat,
    /// openai_batch, anthropic, otel, langfuse, helicone, litellm, langsmith.
    #[arg(long, value_delimiter = ',')]
    pub formats: Option<Vec<String>>,
    /// Also print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--profile` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileArg {
    Easy,
    Hard,
}

impl From<Profile> for ProfileArg {
    fn from(p: Profile) -> ProfileArg {
        match p {
            Profile::Easy => ProfileArg::Easy,
            Profile::Hard => ProfileArg::Hard,
        }
    }
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Easy => Profile::Easy,
            ProfileArg::Hard => Profile::Hard,
        }
    }
}

/// Runs `slmforge synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let formats = match &args.formats {
        None => None,
        Some(names) => {
            let mut fs = Vec::new();
            for n in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                let f = SourceFormat::parse(n).ok_or_else(|| {
                    let known: Vec<&str> = SourceFormat::ALL.iter().map(|f| f.as_str()).collect();
                    usage(format!(
                        "--formats: unknown format {n:?} (known: {})",
                        known.join(", ")
                    ))
                })?;
                if !fs.contains(&f) {
                    fs.push(f);
                }
            }
            Some(fs)
        }
    };
    let cfg = SynthConfig {
        calls: args.calls,
        seed: args.seed,
        malformed: args.malformed,
        formats,
    };
    let s = synthesize_profile(&cfg, args.profile.into(), &args.out)?;
    eprintln!(
        "synth: {} calls ({} profile, {} workloads, {} formats) + {} malformed in {} lines -> {} (labels: {})",
        s.calls,
        s.profile,
        s.per_workload.len(),
        s.per_format.len(),
        s.malformed,
        s.lines,
        args.out.display(),
        labels_path(&args.out).display()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    }
    Ok(())
}
