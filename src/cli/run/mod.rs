//! `slmforge run PIPELINE.toml`: the whole pipeline from one file, made for
//! scheduled jobs. Stages run in order — ingest → cluster → select → tune →
//! gate → export (+ routing) → report — and each records the hash of its
//! inputs and settings in `WORK/state.json` ([`state`]); a stage whose hash
//! did not change is skipped, so a re-run with nothing new takes seconds.
//!
//! Incremental by construction: only log files whose content was not
//! ingested before are read ([`stages::ingest`]) and their calls merged
//! into the dataset (deduplicated by call id; the same key keeps the
//! pseudonyms); new calls join the existing clusters unless their traffic
//! drifted past a threshold, in which case the dataset is clustered again
//! with ids carried over ([`stages::cluster`]); only clusters whose calls
//! changed by `retune_min_change` are tuned again. A new adapter is
//! promoted to `WORK/deployed/` only when the regression gate passes it
//! ([`gate`]). Every run writes `WORK/runs/RUN_ID/run.json` and the report
//! `REPORTS/RUN_ID/{index.html, summary.md, summary.json}` ([`crate::report`]).
//!
//! Exit codes: 0 done; 1 an export verification failed; 2 unusable
//! invocation or pipeline file; 3 the regression gate refused an adapter;
//! 74 an I/O failure; 130 interrupted (re-run to continue).

pub mod config;
mod emit;
mod gate;
mod stages;
pub mod state;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::artifact::run::{
    write_run, Changes, RunRecord, StageLog, DATASET_DIR, RUNS_DIR, RUN_FORMAT,
};
use crate::ml::runtime::init_runtime;
use config::PipelineFile;
use state::State;

/// Exit code when the regression gate refused at least one adapter.
pub const EXIT_GATE_BLOCKED: u8 = 3;

/// The stages, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Stage {
    Ingest,
    Cluster,
    Select,
    Tune,
    Export,
    Report,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Cluster => "cluster",
            Stage::Select => "select",
            Stage::Tune => "tune",
            Stage::Export => "export",
            Stage::Report => "report",
        }
    }
}

/// `slmforge run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The pipeline file (see pipelines/README.md and pipelines/demo.toml).
    pub pipeline: PathBuf,
    /// Start at this stage (the earlier ones are taken as they are).
    #[arg(long, value_enum, conflicts_with = "only")]
    pub from: Option<Stage>,
    /// Run only this stage.
    #[arg(long, value_enum)]
    pub only: Option<Stage>,
    /// Run the selected stages even when their inputs did not change
    /// (ingest then reads every input file again and rebuilds the dataset).
    #[arg(long)]
    pub force: bool,
    /// Leave promotion to a person: new adapters that pass the gate are
    /// held; promote them later with `--promote RUN_ID`.
    #[arg(long)]
    pub no_promote: bool,
    /// Promote the adapters a held run (`--no-promote`) produced, then
    /// export and report.
    #[arg(long, value_name = "RUN_ID")]
    pub promote: Option<String>,
    /// Instead of tuning here, write per-cluster jobs for a scheduler
    /// (`slurm` or `k8s`) into DIR and stop before tuning; gather their
    /// outputs with `slmforge collect`.
    #[arg(long, num_args = 2, value_names = ["KIND", "DIR"])]
    pub emit: Vec<String>,
    /// Name of this run (default: the UTC time, YYYYMMDD-HHMMSS).
    #[arg(long)]
    pub run_id: Option<String>,
}

/// `slmforge collect`.
#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// The pipeline file the jobs were emitted from.
    pub pipeline: PathBuf,
    /// The run whose jobs to gather.
    #[arg(long, value_name = "RUN_ID")]
    pub run: String,
    /// Leave promotion to a person (see `run --no-promote`).
    #[arg(long)]
    pub no_promote: bool,
}

/// Everything one run works with.
pub(crate) struct Ctx {
    pub file: PipelineFile,
    pub work: PathBuf,
    pub dataset: PathBuf,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub state: State,
    pub force: bool,
    pub promote: bool,
    pub record: RunRecord,
    /// The export found a verification failure.
    pub export_failed: bool,
}

impl Ctx {
    fn new(file: PipelineFile, run_id: Option<String>, force: bool) -> anyhow::Result<Ctx> {
        let work = file.pipeline.work.clone();
        let state = State::load(&work, &file.pipeline.name)?;
        let run_id = match run_id {
            Some(id) => {
                check_run_id(&id)?;
                id
            }
            None => new_run_id(&work),
        };
        let run_dir = work.join(RUNS_DIR).join(&run_id);
        let record = RunRecord {
            format: RUN_FORMAT.into(),
            run_id: run_id.clone(),
            pipeline: file.pipeline.name.clone(),
            previous_run: state.runs.last().cloned(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            work: work.clone(),
            changes: Changes::default(),
            ..Default::default()
        };
        Ok(Ctx {
            dataset: work.join(DATASET_DIR),
            promote: file.gate.promote,
            file,
            work,
            run_id,
            run_dir,
            state,
            force,
            record,
            export_failed: false,
        })
    }

    /// The exit code of a run that finished its stages.
    fn exit_code(&self) -> u8 {
        if self.record.gate.iter().any(|g| g.decision == "blocked") {
            EXIT_GATE_BLOCKED
        } else if self.export_failed {
            1
        } else {
            0
        }
    }

    /// Notes a stage's outcome (and prints it).
    pub fn log(&mut self, stage: Stage, status: &str, reason: String, t0: Instant) {
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "run {}: {} {status} ({reason}) [{secs:.1} s]",
            self.run_id,
            stage.name()
        );
        self.record.stages.push(StageLog {
            stage: stage.name().into(),
            status: status.into(),
            reason,
            secs,
        });
    }

    pub fn save_state(&self) -> anyhow::Result<()> {
        self.state.save(&self.work)
    }
}

fn check_run_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || id.starts_with('.')
    {
        return Err(crate::util::usage(format!(
            "--run-id {id:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

fn new_run_id(work: &Path) -> String {
    let base = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut id = base.clone();
    let mut n = 1;
    while work.join(RUNS_DIR).join(&id).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

/// Which stages this invocation runs.
fn selected(args: &RunArgs, s: Stage) -> bool {
    match (args.only, args.from) {
        (Some(o), _) => o == s || s == Stage::Report,
        (None, Some(f)) => s >= f,
        (None, None) => true,
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_runtime();
    let started = Instant::now();
    let file = config::load(&args.pipeline)?;
    let emit_to = emit::parse_emit(&args.emit)?;
    // The lock first: the state is read under it.
    let _lock = stages::lock_work(&file.pipeline.work)?;
    let mut ctx = Ctx::new(file, args.run_id.clone(), args.force)?;
    if args.no_promote {
        ctx.promote = false;
    }
    eprintln!(
        "run {}: pipeline {:?}, work {}",
        ctx.run_id,
        ctx.file.pipeline.name,
        ctx.work.display()
    );
    let outcome = match &args.promote {
        Some(held) => gate::promote_held(&mut ctx, held).map(|()| None),
        None => run_stages(&mut ctx, &args, emit_to.as_ref()),
    };
    match outcome {
        Ok(code) => {
            let code = code.unwrap_or_else(|| ctx.exit_code());
            finish(&mut ctx, started, code)
        }
        Err(e) => fail(&mut ctx, started, e),
    }
}

/// A stage failed: the error is printed, and the run record and report are
/// still written (with the error and its exit code), so a scheduled job
/// always has a report to show.
fn fail(ctx: &mut Ctx, started: Instant, e: anyhow::Error) -> anyhow::Result<ExitCode> {
    let code = super::exit_code_of(&e);
    eprintln!("slmforge: error: {e:#}");
    ctx.record.error = Some(format!("{e:#}"));
    if let Err(e2) = finish(ctx, started, code) {
        eprintln!("slmforge: the run record and report could not be written: {e2:#}");
    }
    Ok(ExitCode::from(code))
}

/// The stages of a normal run; `Some(code)` ends the run early.
fn run_stages(
    ctx: &mut Ctx,
    args: &RunArgs,
    emit_to: Option<&(emit::Kind, PathBuf)>,
) -> anyhow::Result<Option<u8>> {
    let embedder = stages::embedder(&ctx.file)?;
    for stage in [Stage::Ingest, Stage::Cluster, Stage::Select] {
        let t0 = Instant::now();
        if !selected(args, stage) {
            ctx.log(stage, "not_selected", "--only/--from".into(), t0);
            continue;
        }
        match stage {
            Stage::Ingest => stages::ingest(ctx, t0)?,
            Stage::Cluster => stages::cluster(ctx, &embedder, t0)?,
            _ => stages::select(ctx, t0)?,
        }
        ctx.save_state()?;
    }
    if let Some((kind, dir)) = emit_to {
        let t0 = Instant::now();
        emit::emit(ctx, *kind, dir)?;
        ctx.log(
            Stage::Tune,
            "emitted",
            format!("{} jobs in {}", kind.name(), dir.display()),
            t0,
        );
        return Ok(Some(0));
    }
    let t0 = Instant::now();
    if selected(args, Stage::Tune) {
        if let Some(code) = stages::tune(ctx, t0)? {
            return Ok(Some(code));
        }
    } else {
        ctx.log(Stage::Tune, "not_selected", "--only/--from".into(), t0);
    }
    ctx.save_state()?;
    let t0 = Instant::now();
    if selected(args, Stage::Export) {
        stages::export(ctx, &embedder, t0)?;
    } else {
        ctx.log(Stage::Export, "not_selected", "--only/--from".into(), t0);
    }
    ctx.save_state()?;
    if crate::tune::interrupt_flag().load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "run {}: interrupted (Ctrl-C); run again to continue",
            ctx.run_id
        );
        return Ok(Some(130));
    }
    Ok(None)
}

/// Writes run.json and the report, records the run, returns the exit code.
fn finish(ctx: &mut Ctx, started: Instant, code: u8) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    ctx.record.exit_code = code;
    ctx.record.secs = started.elapsed().as_secs_f64();
    if !ctx.state.runs.contains(&ctx.run_id) {
        ctx.state.runs.push(ctx.run_id.clone());
    }
    write_run(&ctx.run_dir, &ctx.record)?;
    ctx.save_state()?;
    let out = ctx.file.pipeline.reports.join(&ctx.run_id);
    let report = crate::report::write(&ctx.work, &ctx.run_id, &out)?;
    ctx.log(Stage::Report, "ran", format!("{}", out.display()), t0);
    ctx.record.secs = started.elapsed().as_secs_f64();
    write_run(&ctx.run_dir, &ctx.record)?;
    eprint!("{}", report.headline_text());
    eprintln!(
        "run {}: done in {:.0} s, exit {code}; report: {}",
        ctx.run_id,
        ctx.record.secs,
        out.join(crate::report::HTML_FILE).display()
    );
    Ok(ExitCode::from(code))
}

/// `slmforge collect`: gathers the per-cluster outputs of emitted jobs, then
/// gates, promotes, exports and reports as `run` would have.
pub fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    init_runtime();
    let started = Instant::now();
    let file = config::load(&args.pipeline)?;
    let _lock = stages::lock_work(&file.pipeline.work)?;
    let mut ctx = Ctx::new(file, Some(format!("{}-collect", args.run)), false)?;
    if args.no_promote {
        ctx.promote = false;
    }
    let t0 = Instant::now();
    emit::collect(&mut ctx, &args.run, t0)?;
    let gathered = ctx.save_state().and_then(|()| {
        let embedder = stages::embedder(&ctx.file)?;
        stages::export(&mut ctx, &embedder, Instant::now())
    });
    match gathered {
        Ok(()) => {
            let code = ctx.exit_code();
            finish(&mut ctx, started, code)
        }
        Err(e) => fail(&mut ctx, started, e),
    }
}
