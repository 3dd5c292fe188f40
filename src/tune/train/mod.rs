//! The LoRA training loop of `tune`: AdamW over the LoRA variables (our own,
//! so its moments can be checkpointed), warm-up + decay schedule, global-norm
//! clipping, validation loss with early stopping, `train_log.jsonl`, and
//! atomic checkpoints ([`checkpoint`]) that make a resumed run
//! ([`Start::Resume`]) end with the same adapter as an uninterrupted one.
//!
//! Determinism: the data order is planned up front from the seed (every
//! epoch's batches), LoRA dropout draws from a seeded ChaCha stream whose
//! position is checkpointed, and the optimiser state is saved exactly. A
//! wall-clock budget (`time_budget_secs`) is the one non-deterministic input:
//! when set, it may end training early and the schedule decays by
//! `max(step progress, time progress)`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::artifact::adapter::{StopReason, TrainSummary};
use crate::ml::lm::model::{clip_grad_norm, CausalLm, TrainBatch};
use crate::ml::lm::HeadPositions;
use crate::tune::data::{epoch_plan, eval_batches, BatchLimits, Example};
use crate::tune::{Start, TuneConfig};
use checkpoint::{find_checkpoint, restore, save_checkpoint, RngState, TrainState};
use optim::{learning_rate, AdamW};

pub mod checkpoint;
pub mod optim;

/// Token-weighted mean loss of `examples` (no graph, no dropout).
pub fn mean_loss(
    model: &CausalLm,
    examples: &[&Example],
    pad_id: u32,
    limits: BatchLimits,
) -> Result<(f64, usize)> {
    if examples.is_empty() {
        return Ok((f64::NAN, 0));
    }
    let lens: Vec<usize> = examples.iter().map(|e| e.ex.ids.len()).collect();
    let mut sum = 0f64;
    let mut n = 0usize;
    for b in eval_batches(&lens, limits) {
        let exs: Vec<_> = b.iter().map(|&i| examples[i].ex.clone()).collect();
        let batch = TrainBatch::new(&exs, pad_id, model.device())?;
        let l = model
            .loss(&batch, HeadPositions::Answer, None)?
            .to_scalar::<f32>()? as f64;
        sum += l * batch.n_answer as f64;
        n += batch.n_answer;
    }
    Ok((sum / n.max(1) as f64, n))
}

/// How a training call ended.
pub enum TrainOutcome {
    Finished(TrainSummary),
    /// Stopped by Ctrl-C or `stop_after_steps`, with a checkpoint written.
    Interrupted {
        step: usize,
    },
}

/// Inputs of one cluster's training.
pub struct TrainJob<'a> {
    pub cfg: &'a TuneConfig,
    pub model: &'a CausalLm,
    pub pad_id: u32,
    pub train: &'a [&'a Example],
    pub val: &'a [&'a Example],
    /// The cluster's output directory (checkpoint, train_log.jsonl).
    pub dir: &'a Path,
    /// Fingerprint of config + data (checked on resume).
    pub fingerprint: String,
    pub start: Start,
    pub interrupt: &'a AtomicBool,
    /// Stop (with a checkpoint, as Ctrl-C does) after this many updates in
    /// this call: for tests and time-sliced runs.
    pub stop_after_steps: Option<usize>,
    /// Progress-bar label.
    pub label: String,
}

fn log_line(f: &mut std::fs::File, v: &serde_json::Value) -> Result<()> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    f.write_all(s.as_bytes())?;
    Ok(())
}

/// Trains the model's LoRA adapters (already added) on `job.train`. On
/// return with `Finished`, the adapter in the model is the one to keep.
pub fn train(job: &TrainJob) -> Result<TrainOutcome> {
    let cfg = job.cfg;
    let mut run = Run::start(job)?;
    let pb = progress_bar(job, &run.st);
    let session_start = Instant::now();
    let base_secs = run.st.train_secs;
    let mut steps_this_call = 0usize;
    let mut last_loss: Option<f64> = None;
    while run.st.stop_reason.is_none() {
        if let Some(reason) = plan_end(&run.st) {
            run.st.stop_reason = Some(reason);
            break;
        }
        if job.interrupt.load(Ordering::SeqCst)
            || job.stop_after_steps.is_some_and(|k| steps_this_call >= k)
        {
            run.checkpoint()?;
            pb.abandon_with_message(format!(
                "stopped at step {} (checkpoint saved)",
                run.st.step
            ));
            return Ok(TrainOutcome::Interrupted { step: run.st.step });
        }
        let elapsed = base_secs + session_start.elapsed().as_secs_f64();
        if cfg.time_budget_secs.is_some_and(|b| elapsed >= b) {
            run.st.stop_reason = Some(StopReason::TimeBudget);
            break;
        }
        let lr = learning_rate(cfg, run.st.step, progress(cfg, &run.st, elapsed));
        let loss = run.update(lr, &pb, || {
            base_secs + session_start.elapsed().as_secs_f64()
        })?;
        steps_this_call += 1;
        last_loss = Some(loss);
        run.after_update()?;
    }
    run.finish(last_loss, &pb)
}

/// Where the planned data ends, why training stops there.
fn plan_end(st: &TrainState) -> Option<StopReason> {
    (st.step >= st.planned_steps || st.epoch >= st.plan.len()).then(|| {
        if st.planned_steps < total_batches(&st.plan) {
            StopReason::StepBudget
        } else {
            StopReason::Epochs
        }
    })
}

/// Fraction of the budget used: steps, or wall clock when that is further.
fn progress(cfg: &TuneConfig, st: &TrainState, elapsed: f64) -> f64 {
    let p = st.step as f64 / st.planned_steps.max(1) as f64;
    match cfg.time_budget_secs {
        Some(b) if b > 0.0 => p.max(elapsed / b),
        _ => p,
    }
}

fn progress_bar(job: &TrainJob, st: &TrainState) -> indicatif::ProgressBar {
    let pb = crate::util::count_bar(st.planned_steps as u64, "tune");
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_prefix(job.label.clone());
    pb.set_position(st.step as u64);
    pb
}

/// One training call in progress: the variables, optimiser, state, best
/// adapter, log and dropout RNG.
struct Run<'j, 'a> {
    job: &'j TrainJob<'a>,
    vars: Vec<(String, Var)>,
    var_list: Vec<Var>,
    opt: AdamW,
    st: TrainState,
    best: Option<checkpoint::Snapshot>,
    log: std::fs::File,
    log_path: PathBuf,
    rng: ChaCha8Rng,
    val_limits: BatchLimits,
    has_val: bool,
}

impl<'j, 'a> Run<'j, 'a> {
    /// From the checkpoint when resuming (and one exists), else from a fresh
    /// data plan; the log is cut to where the state was taken, and the base
    /// validation loss is measured once.
    fn start(job: &'j TrainJob<'a>) -> Result<Self> {
        let cfg = job.cfg;
        let vars = job.model.lora_named_vars();
        if vars.is_empty() {
            bail!("the model has no LoRA variables to train")
        }
        let var_list: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
        let mut opt = AdamW::new(vars.clone(), cfg.weight_decay)?;
        let resumed = match job.start {
            Start::Resume => find_checkpoint(job.dir),
            Start::Fresh => None,
        };
        let (st, best) = match &resumed {
            Some(ck) => restore(ck, &job.fingerprint, &vars, &mut opt, job.model.device())?,
            None => (fresh_state(job), None),
        };
        let log_path = job.dir.join("train_log.jsonl");
        // The log continues exactly where the checkpoint was taken.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        log.set_len(st.log_len)?;
        {
            use std::io::Seek;
            log.seek(std::io::SeekFrom::End(0))?;
        }
        let rng = st.dropout_rng.restore()?;
        let mut run = Run {
            job,
            vars,
            var_list,
            opt,
            st,
            best,
            log,
            log_path,
            rng,
            val_limits: BatchLimits {
                max_examples: cfg.eval.batch_size.max(1),
                max_tokens: cfg.batch_tokens.max(1) * 2,
            },
            has_val: !job.val.is_empty(),
        };
        if run.has_val && run.st.val_loss_base.is_none() && run.st.stop_reason.is_none() {
            let (l, _) = mean_loss(job.model, job.val, job.pad_id, run.val_limits)?;
            run.st.val_loss_base = Some(l);
            log_line(&mut run.log, &serde_json::json!({"step": 0, "val_loss": l}))?;
        }
        Ok(run)
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.log.sync_data()?;
        self.st.log_len = self.log.metadata()?.len();
        self.st.dropout_rng = RngState::of(&self.rng);
        save_checkpoint(
            self.job.dir,
            &self.st,
            &self.vars,
            &self.opt,
            self.best.as_deref(),
        )
    }

    /// One optimiser update on the next planned batch; logs it and returns
    /// its loss. `train_secs` gives the training time so far.
    fn update(
        &mut self,
        lr: f64,
        pb: &indicatif::ProgressBar,
        train_secs: impl Fn() -> f64,
    ) -> Result<f64> {
        let (job, cfg) = (self.job, self.job.cfg);
        let st = &mut self.st;
        let idx = &st.plan[st.epoch][st.batch];
        let t0 = Instant::now();
        let exs: Vec<_> = idx.iter().map(|&i| job.train[i].ex.clone()).collect();
        let batch = TrainBatch::new(&exs, job.pad_id, job.model.device())?;
        let loss_t = job
            .model
            .loss(&batch, HeadPositions::Answer, Some(&mut self.rng))?;
        let loss = loss_t.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            bail!(
                "training loss is {loss} at step {}: lower the learning rate",
                st.step + 1
            )
        }
        let mut grads = loss_t.backward()?;
        let gnorm = clip_grad_norm(&mut grads, &self.var_list, cfg.clip_norm)?;
        self.opt.step(&grads, lr)?;
        drop(grads);
        let dt = t0.elapsed().as_secs_f64();
        let examples = idx.len();
        st.step += 1;
        st.tokens += batch.n_tokens;
        st.answer_tokens += batch.n_answer;
        st.padded_tokens += batch.ids.elem_count();
        st.train_secs = train_secs();
        st.batch += 1;
        if st.batch >= st.plan[st.epoch].len() {
            st.epoch += 1;
            st.batch = 0;
        }
        log_line(
            &mut self.log,
            &serde_json::json!({
                "step": st.step, "epoch": st.epoch as f64 + st.batch as f64 / st.plan.get(st.epoch).map_or(1, |e| e.len().max(1)) as f64,
                "loss": loss, "lr": lr, "grad_norm": gnorm,
                "examples": examples, "tokens": batch.n_tokens, "answer_tokens": batch.n_answer,
                "secs": dt,
            }),
        )?;
        pb.set_position(st.step as u64);
        pb.set_message(format!(
            "loss {loss:.3} {:.0} tok/s",
            batch.n_tokens as f64 / dt.max(1e-9)
        ));
        Ok(loss)
    }

    /// After an update: validation (and early stopping) every `eval_every`
    /// updates and at the end; a checkpoint every `checkpoint_every`.
    fn after_update(&mut self) -> Result<()> {
        let cfg = self.job.cfg;
        let at_end = self.st.step >= self.st.planned_steps;
        if self.has_val && (self.st.step.is_multiple_of(cfg.eval_every.max(1)) || at_end) {
            if self.validate()? {
                self.st.evals_since_best = 0;
            } else {
                self.st.evals_since_best += 1;
                if cfg.patience > 0 && self.st.evals_since_best >= cfg.patience {
                    self.st.stop_reason = Some(StopReason::EarlyStopping);
                }
            }
        }
        if cfg.checkpoint_every > 0
            && self.st.step.is_multiple_of(cfg.checkpoint_every)
            && self.st.stop_reason.is_none()
            && !at_end
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Validation loss at the current step: logged, and when it is the best
    /// so far, recorded with a snapshot of the adapter. Returns whether it
    /// improved.
    fn validate(&mut self) -> Result<bool> {
        let job = self.job;
        let (vl, _) = mean_loss(job.model, job.val, job.pad_id, self.val_limits)?;
        log_line(
            &mut self.log,
            &serde_json::json!({"step": self.st.step, "val_loss": vl}),
        )?;
        self.st.last_eval_step = self.st.step;
        let improved = self.st.best_val_loss.is_none_or(|b| vl < b);
        if improved {
            self.st.best_val_loss = Some(vl);
            self.st.best_step = self.st.step;
            self.best = Some(snapshot(&self.vars)?);
        }
        Ok(improved)
    }

    /// The end of training: a last validation loss for the final weights
    /// when the last one was earlier, the best adapter put back, a final
    /// checkpoint (a crash during evaluation resumes straight into
    /// evaluation), and the summary.
    fn finish(
        mut self,
        last_loss: Option<f64>,
        pb: &indicatif::ProgressBar,
    ) -> Result<TrainOutcome> {
        if self.has_val && self.st.last_eval_step != self.st.step && self.st.step > 0 {
            self.validate()?;
        }
        match &self.best {
            Some(b) if self.has_val => {
                for ((n, v), (bn, t)) in self.vars.iter().zip(b) {
                    debug_assert_eq!(n, bn);
                    v.set(t)?;
                }
            }
            _ => self.st.best_step = self.st.step,
        }
        self.checkpoint()?;
        pb.finish_and_clear();
        let st = &self.st;
        let epochs_done = st.epoch as f64
            + st.plan
                .get(st.epoch)
                .map_or(0.0, |e| st.batch as f64 / e.len().max(1) as f64);
        Ok(TrainOutcome::Finished(TrainSummary {
            steps: st.step,
            planned_steps: st.planned_steps,
            epochs: epochs_done,
            tokens: st.tokens,
            answer_tokens: st.answer_tokens,
            padded_tokens: st.padded_tokens,
            train_secs: st.train_secs,
            tokens_per_sec: st.tokens as f64 / st.train_secs.max(1e-9),
            stop_reason: st.stop_reason.expect("set when the loop ends"),
            val_loss_base: st.val_loss_base,
            best_val_loss: st.best_val_loss,
            best_step: st.best_step,
            final_train_loss: last_loss.or_else(|| last_logged_loss(&self.log_path)),
        }))
    }
}

/// The state of a new run: the whole data order planned from the seed, cut
/// at the step and token budgets.
fn fresh_state(job: &TrainJob) -> TrainState {
    let cfg = job.cfg;
    let lens: Vec<usize> = job.train.iter().map(|e| e.ex.ids.len()).collect();
    let limits = BatchLimits {
        max_examples: cfg.batch_size,
        max_tokens: cfg.batch_tokens,
    };
    let plan_full = epoch_plan(job.train.len(), &lens, limits, cfg.epochs.max(1), cfg.seed);
    let (plan, planned_steps) = cut_plan(plan_full, &lens, cfg);
    TrainState::new(job.fingerprint.clone(), plan, planned_steps, cfg.seed)
}

fn snapshot(vars: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
        .collect()
}

fn total_batches(plan: &[Vec<Vec<usize>>]) -> usize {
    plan.iter().map(Vec::len).sum()
}

/// Cuts the plan at `max_steps` / `max_train_tokens`; returns it with the
/// number of updates it allows.
fn cut_plan(
    plan: Vec<Vec<Vec<usize>>>,
    lens: &[usize],
    cfg: &TuneConfig,
) -> (Vec<Vec<Vec<usize>>>, usize) {
    let mut steps = 0usize;
    let mut tokens = 0usize;
    'outer: for epoch in &plan {
        for b in epoch {
            if cfg.max_steps.is_some_and(|m| steps >= m) {
                break 'outer;
            }
            if cfg.max_train_tokens.is_some_and(|m| tokens >= m) {
                break 'outer;
            }
            steps += 1;
            tokens += b.iter().map(|&i| lens[i]).sum::<usize>();
        }
    }
    (plan, steps)
}

/// The last training loss in a log (for a run that resumed after its last step).
fn last_logged_loss(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("loss").and_then(|x| x.as_f64()))
}
