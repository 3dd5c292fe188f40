//! `slmforge tune`: flags → [`TuneConfig`] and [`Session`], the clusters to
//! tune from [`crate::select`], then [`crate::tune::run`]; `--dry-run`
//! prints the encoding figures; Ctrl-C saves a checkpoint (exit 130).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::artifact::adapter::SUMMARY_MD;
use crate::artifact::plan::TuneTarget;
use crate::artifact::split::SplitFractions;
use crate::ml::lm::{LoraConfig, LoraTarget};
use crate::ml::runtime::{device_from_name, init_runtime};
use crate::select::tune_targets;
use crate::tune::train::optim::Schedule;
use crate::tune::{self, interrupt_flag, EvalConfig, Outcome, Session, Start, TuneConfig};
use crate::tune::{Overlong, Prune};
use crate::util::usage;

/// `slmforge tune DATASET_DIR --out adapters/RUN`.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Dataset directory (calls.parquet + clusters.parquet, optional plan.json).
    pub dataset: PathBuf,
    /// Output run directory (one sub-directory per cluster).
    #[arg(long)]
    pub out: PathBuf,
    /// Tune only these clusters (repeatable).
    #[arg(long = "cluster", value_name = "ID", allow_negative_numbers = true)]
    pub clusters: Vec<i32>,
    /// Continue an interrupted run in --out (same options).
    #[arg(long)]
    pub resume: bool,
    /// Show the clusters, example counts and token lengths, then stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub opts: TuneOpts,
}

/// The training and evaluation options of `tune` (also used by `bench tune`).
#[derive(clap::Args, Debug, Clone)]
pub struct TuneOpts {
    /// Base model: catalogue id or GGUF path.
    #[arg(long, default_value_t = TuneConfig::default().base_model)]
    pub model: String,
    /// LoRA rank.
    #[arg(long, default_value_t = TuneConfig::default().lora.rank)]
    pub rank: usize,
    /// LoRA alpha (default: 2 x rank).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// LoRA dropout (costly on CPU: a mask per adapter input).
    #[arg(long, default_value_t = TuneConfig::default().lora.dropout)]
    pub lora_dropout: f64,
    /// Target projections, comma-separated (q,k,v,o,gate,up,down).
    #[arg(long, value_delimiter = ',', default_values_t = TuneConfig::default().lora.targets.iter().map(|t| t.short_name().to_string()))]
    pub targets: Vec<String>,
    /// Peak learning rate.
    #[arg(long, default_value_t = TuneConfig::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = TuneConfig::default().warmup_steps)]
    pub warmup_steps: usize,
    /// Learning-rate schedule after warm-up.
    #[arg(long, default_value_t = TuneConfig::default().schedule,
          value_parser = PossibleValuesParser::new(Schedule::NAMES).map(|s| s.parse::<Schedule>().expect("a listed value")))]
    pub schedule: Schedule,
    #[arg(long, default_value_t = TuneConfig::default().weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = TuneConfig::default().clip_norm)]
    pub clip_norm: f64,
    /// Most examples per batch.
    #[arg(long, default_value_t = TuneConfig::default().batch_size)]
    pub batch_size: usize,
    /// Most padded tokens per batch.
    #[arg(long, default_value_t = TuneConfig::default().batch_tokens)]
    pub batch_tokens: usize,
    /// Longest example in tokens (longer calls lose earlier turns, or are dropped).
    #[arg(long, default_value_t = TuneConfig::default().max_len)]
    pub max_len: usize,
    /// Calls longer than --max-len: truncate (drop earlier turns from the
    /// middle of the conversation; the system prompt, tools and last user
    /// turn are never cut, and a call that still does not fit is dropped)
    /// or drop.
    #[arg(long, default_value_t = TuneConfig::default().overlong,
          value_parser = PossibleValuesParser::new(Overlong::NAMES).map(|s| s.parse::<Overlong>().expect("a listed value")))]
    pub overlong: Overlong,
    /// Train on pruned prompts: each cluster's static system prompt and tool
    /// definitions replaced by short markers (recorded in prompt.json and
    /// applied wherever the adapter is used). auto: when they are long.
    #[arg(long, default_value_t = TuneConfig::default().prune,
          value_parser = PossibleValuesParser::new(Prune::NAMES).map(|s| s.parse::<Prune>().expect("a listed value")))]
    pub prune: Prune,
    /// A prompt piece is static when this share of the cluster's calls hold it exactly.
    #[arg(long, default_value_t = TuneConfig::default().static_threshold)]
    pub static_threshold: f64,
    /// --prune auto prunes when the static pieces average this many characters per call.
    #[arg(long, default_value_t = TuneConfig::default().prune_min_chars)]
    pub prune_min_chars: usize,
    #[arg(long, default_value_t = TuneConfig::default().epochs)]
    pub epochs: usize,
    /// Most optimiser updates per cluster.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Most training tokens per cluster (deterministic time proxy).
    #[arg(long)]
    pub max_train_tokens: Option<usize>,
    /// Wall-clock training budget per cluster in seconds (0: none).
    #[arg(long, default_value_t = TuneConfig::default().time_budget_secs.unwrap_or(0.0))]
    pub time_budget: f64,
    /// Validation loss every N updates.
    #[arg(long, default_value_t = TuneConfig::default().eval_every)]
    pub eval_every: usize,
    /// Early stopping after N validation losses without improvement (0: off).
    #[arg(long, default_value_t = TuneConfig::default().patience)]
    pub patience: usize,
    #[arg(long, default_value_t = TuneConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Clusters with fewer calls are not tuned.
    #[arg(long, default_value_t = TuneConfig::default().min_examples)]
    pub min_examples: usize,
    /// Train and validation fractions (the test split is the rest).
    #[arg(long, value_delimiter = ',', default_values_t = [SplitFractions::default().train, SplitFractions::default().val])]
    pub split: Vec<f64>,
    #[arg(long, default_value_t = TuneConfig::default().seed)]
    pub seed: u64,
    /// Decode cap at evaluation (default: longest training answer + 16).
    #[arg(long)]
    pub eval_max_new_tokens: Option<usize>,
    #[arg(long, default_value_t = TuneConfig::default().eval.batch_size)]
    pub eval_batch_size: usize,
    /// Skip the schema-guided evaluation passes (by default base and tuned
    /// are also scored with tool calls and JSON constrained to their schemas).
    #[arg(long)]
    pub no_guided_eval: bool,
    /// Test calls evaluated per cluster.
    #[arg(long, default_value_t = TuneConfig::default().eval.max_test_calls)]
    pub max_test_calls: usize,
    /// `cpu` or `cuda` (needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Keep checkpoints of finished clusters.
    #[arg(long)]
    pub keep_checkpoints: bool,
}

impl TuneOpts {
    pub fn config(&self) -> Result<TuneConfig> {
        let targets = self
            .targets
            .iter()
            .map(|t| {
                LoraTarget::parse(t).ok_or_else(|| {
                    usage(format!("unknown LoRA target {t:?} (q,k,v,o,gate,up,down)"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if self.split.len() != 2 {
            return Err(usage("--split takes two fractions: TRAIN,VAL"));
        }
        let d = TuneConfig::default();
        Ok(TuneConfig {
            base_model: self.model.clone(),
            lora: LoraConfig {
                rank: self.rank,
                alpha: self.alpha.unwrap_or(2.0 * self.rank as f64),
                dropout: self.lora_dropout,
                targets,
                rslora: false,
            },
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            schedule: self.schedule,
            weight_decay: self.weight_decay,
            clip_norm: self.clip_norm,
            batch_size: self.batch_size,
            batch_tokens: self.batch_tokens,
            max_len: self.max_len,
            overlong: self.overlong,
            prune: self.prune,
            static_threshold: self.static_threshold,
            prune_min_chars: self.prune_min_chars,
            epochs: self.epochs,
            max_steps: self.max_steps,
            max_train_tokens: self.max_train_tokens,
            time_budget_secs: (self.time_budget > 0.0).then_some(self.time_budget),
            eval_every: self.eval_every,
            patience: self.patience,
            checkpoint_every: self.checkpoint_every,
            min_examples: self.min_examples,
            split: SplitFractions {
                train: self.split[0],
                val: self.split[1],
            },
            seed: self.seed,
            eval: EvalConfig {
                max_new_tokens: self.eval_max_new_tokens,
                batch_size: self.eval_batch_size,
                max_test_calls: self.max_test_calls,
                guided: !self.no_guided_eval,
                ..d.eval.clone()
            },
            keep_checkpoints: self.keep_checkpoints,
            ..d
        })
    }
}

/// Per-cluster encoding figures without training (`--dry-run`): a line per
/// cluster on stderr, JSON on stdout.
fn dry_run(
    cfg: &TuneConfig,
    session: &Session,
    dataset_dir: &Path,
    targets: &[TuneTarget],
) -> Result<()> {
    let prepared = tune::prepare(cfg, &session.device, dataset_dir, targets)?;
    let (text, json) = tune::report::dry_run(cfg, &prepared);
    eprint!("{text}");
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// `slmforge tune`: exit 0 when done, 130 when stopped by Ctrl-C (after
/// saving a checkpoint), 2 on unusable input.
pub fn run(args: TuneArgs) -> Result<ExitCode> {
    init_runtime();
    let cfg = args.opts.config()?;
    cfg.validate()?;
    let session = Session {
        device: device_from_name(&args.opts.device)?,
        start: if args.resume {
            Start::Resume
        } else {
            Start::Fresh
        },
        stop_after_steps: None,
    };
    let named = (!args.clusters.is_empty()).then_some(args.clusters.as_slice());
    let targets = tune_targets(&args.dataset, named, &cfg.base_model, cfg.min_examples)?;
    if args.dry_run {
        dry_run(&cfg, &session, &args.dataset, &targets)?;
        return Ok(ExitCode::SUCCESS);
    }
    install_ctrlc();
    let out = tune::run(&cfg, &session, &args.dataset, &targets, &args.out)?;
    eprint!("{}", tune::report::summary_text(&out));
    if out.outcome == Outcome::Interrupted {
        eprintln!(
            "tune: interrupted; the state is saved. Continue with the same command plus --resume (out: {})",
            out.out.display()
        );
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "tune: done. Summary: {}",
        out.out.join(SUMMARY_MD).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// First Ctrl-C: finish the current step, save a checkpoint, exit 130.
/// Second Ctrl-C: exit at once.
pub fn install_ctrlc() {
    let res = ctrlc::set_handler(|| {
        if interrupt_flag().swap(true, Ordering::SeqCst) {
            eprintln!("\ntune: second interrupt, exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\ntune: interrupt received, stopping after the current step (Ctrl-C again to quit now)");
    });
    if res.is_err() {
        eprintln!("tune: note: could not install the Ctrl-C handler; an interrupt will not save a checkpoint");
    }
}
