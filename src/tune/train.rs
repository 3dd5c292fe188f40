//! The LoRA training loop of `tune`: AdamW over the LoRA variables (our own,
//! so its moments can be checkpointed), warm-up + decay schedule, global-norm
//! clipping, validation loss with early stopping, `train_log.jsonl`, and
//! atomic checkpoints that make `--resume` end with the same adapter as an
//! uninterrupted run.
//!
//! Determinism: the data order is planned up front from the seed (every
//! epoch's batches), LoRA dropout draws from a seeded ChaCha stream whose
//! position is checkpointed, and the optimiser state is saved exactly. A
//! wall-clock budget (`time_budget_secs`) is the one non-deterministic input:
//! when set, it may end training early and the schedule decays by
//! `max(step progress, time progress)`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::{epoch_plan, eval_batches, BatchLimits, Example};
use super::TuneConfig;
use crate::lm::llama::{clip_grad_norm, Llama, TrainBatch};
use crate::lm::HeadPositions;

// ---------------------------------------------------------------------------
// Optimiser.

/// AdamW (decoupled weight decay, bias-corrected moments), as PyTorch and
/// candle define it, over named variables.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64) -> Result<AdamW> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            m: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            v: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            vars,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// One update with learning rate `lr`; variables without a gradient are
    /// an error (a cut in the graph would otherwise train nothing silently).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let g = grads
                .get(var.as_tensor())
                .with_context(|| format!("no gradient reached LoRA tensor {name}"))?;
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&m / bc1)?;
            let v_hat = (&v / bc2)?;
            let theta = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            let upd = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            var.set(&(theta - (upd * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (n, _)) in self.vars.iter().enumerate() {
            out.push((format!("m.{n}"), self.m[i].clone()));
            out.push((format!("v.{n}"), self.v[i].clone()));
        }
        out
    }

    pub fn load_state(&mut self, t: usize, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (n, var)) in self.vars.iter().enumerate() {
            for (which, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{which}.{n}");
                let x = tensors
                    .get(&key)
                    .with_context(|| format!("checkpoint lacks optimiser tensor {key}"))?;
                if x.dims() != var.dims() {
                    bail!(
                        "checkpoint optimiser tensor {key} has shape {:?}, expected {:?}",
                        x.dims(),
                        var.dims()
                    )
                }
                *slot = x.clone();
            }
        }
        self.t = t;
        Ok(())
    }
}

/// Learning-rate schedule after the linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `min_lr_ratio · lr`.
    Cosine,
    /// Linear decay to `min_lr_ratio · lr`.
    Linear,
    /// Constant after warm-up.
    Constant,
}

/// The learning rate for the update after `step` updates, given the fraction
/// of the budget used (`progress` in [0, 1]).
pub fn learning_rate(cfg: &TuneConfig, step: usize, progress: f64) -> f64 {
    if cfg.warmup_steps > 0 && step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let p = progress.clamp(0.0, 1.0);
    let floor = cfg.min_lr_ratio * cfg.lr;
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::Linear => floor + (cfg.lr - floor) * (1.0 - p),
        Schedule::Cosine => {
            floor + (cfg.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    }
}

// ---------------------------------------------------------------------------
// Losses.

/// Token-weighted mean loss of `examples` (no graph, no dropout).
pub fn mean_loss(
    model: &Llama,
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

// ---------------------------------------------------------------------------
// Checkpoints.

/// A ChaCha stream position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: String,
    pub stream: u64,
    pub word_pos: String,
}

impl RngState {
    pub fn of(r: &ChaCha8Rng) -> RngState {
        RngState {
            seed: hex::encode(r.get_seed()),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> Result<ChaCha8Rng> {
        let seed: [u8; 32] = hex::decode(&self.seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("bad RNG seed in checkpoint")?;
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(
            self.word_pos
                .parse()
                .context("bad RNG position in checkpoint")?,
        );
        Ok(r)
    }
}

/// `checkpoint/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    pub format: String,
    /// Fingerprint of the training-relevant config and data; a checkpoint
    /// made with other settings is refused.
    pub fingerprint: String,
    /// Optimiser updates done.
    pub step: usize,
    /// Position in the plan: epoch and batch index of the next update.
    pub epoch: usize,
    pub batch: usize,
    /// Every epoch's batches (indices into the training examples).
    pub plan: Vec<Vec<Vec<usize>>>,
    /// Total updates the plan allows under the step/token budgets.
    pub planned_steps: usize,
    pub dropout_rng: RngState,
    pub tokens: usize,
    pub answer_tokens: usize,
    pub padded_tokens: usize,
    pub train_secs: f64,
    pub best_val_loss: Option<f64>,
    pub best_step: usize,
    pub evals_since_best: usize,
    /// Step of the last validation loss.
    pub last_eval_step: usize,
    pub val_loss_base: Option<f64>,
    /// Byte length of `train_log.jsonl` at this checkpoint.
    pub log_len: u64,
    /// Set when training finished (the adapter is final).
    pub stop_reason: Option<StopReason>,
}

pub const CHECKPOINT_DIR: &str = "checkpoint";
const CHECKPOINT_FORMAT: &str = "slmforge-tune-checkpoint-v1";

/// Why training ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The planned epochs ran out.
    Epochs,
    /// `max_steps` or `max_train_tokens` reached.
    StepBudget,
    /// `time_budget_secs` reached.
    TimeBudget,
    /// Validation loss stopped improving for `patience` evaluations.
    EarlyStopping,
}

fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, path)
        .with_context(|| format!("writing {}", path.display()))
}

fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .with_context(|| format!("reading {}", path.display()))
}

/// Writes a checkpoint atomically: into `checkpoint.tmp/`, then renamed over
/// `checkpoint/` (the previous one is kept as `checkpoint.old/` until the
/// new one is in place).
fn save_checkpoint(
    dir: &Path,
    state: &TrainState,
    vars: &[(String, Var)],
    opt: &AdamW,
    best: Option<&[(String, Tensor)]>,
) -> Result<()> {
    let tmp = dir.join("checkpoint.tmp");
    let old = dir.join("checkpoint.old");
    let cur = dir.join(CHECKPOINT_DIR);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let adapter: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    save_tensors(&tmp.join("adapter.safetensors"), &adapter)?;
    save_tensors(&tmp.join("optimizer.safetensors"), &opt.state_tensors())?;
    if let Some(b) = best {
        save_tensors(&tmp.join("best.safetensors"), b)?;
    }
    crate::util::write_json(&tmp.join("state.json"), state)?;
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(&cur, &old)?;
    }
    std::fs::rename(&tmp, &cur)
        .with_context(|| format!("moving checkpoint into {}", cur.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The checkpoint directory to resume from (`checkpoint/`, or
/// `checkpoint.old/` when a crash hit between the two renames).
pub fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    [CHECKPOINT_DIR, "checkpoint.old"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.join("state.json").is_file())
}

/// Removes checkpoint directories (after a cluster is finished).
pub fn remove_checkpoints(dir: &Path) -> Result<()> {
    for n in [CHECKPOINT_DIR, "checkpoint.old", "checkpoint.tmp"] {
        let p = dir.join(n);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The loop.

/// What training did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub planned_steps: usize,
    /// Epochs completed, fractional.
    pub epochs: f64,
    /// Non-padding tokens processed by training steps.
    pub tokens: usize,
    /// Answer tokens (the ones that carry loss).
    pub answer_tokens: usize,
    /// Tokens including padding.
    pub padded_tokens: usize,
    pub train_secs: f64,
    pub tokens_per_sec: f64,
    pub stop_reason: StopReason,
    pub val_loss_base: Option<f64>,
    pub best_val_loss: Option<f64>,
    /// Step whose adapter was kept (best validation loss; the last step
    /// when there is no validation split).
    pub best_step: usize,
    pub final_train_loss: Option<f64>,
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
    pub model: &'a Llama,
    pub pad_id: u32,
    pub train: &'a [&'a Example],
    pub val: &'a [&'a Example],
    /// The cluster's output directory (checkpoint, train_log.jsonl).
    pub dir: &'a Path,
    /// Fingerprint of config + data (checked on resume).
    pub fingerprint: String,
    pub resume: bool,
    pub interrupt: &'a AtomicBool,
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
    let model = job.model;
    let device = model.device().clone();
    let vars = model.lora_named_vars();
    if vars.is_empty() {
        bail!("the model has no LoRA variables to train")
    }
    let var_list: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars.clone(), cfg.weight_decay)?;
    let limits = BatchLimits {
        max_examples: cfg.batch_size,
        max_tokens: cfg.batch_tokens,
    };
    let lens: Vec<usize> = job.train.iter().map(|e| e.ex.ids.len()).collect();
    let log_path = job.dir.join("train_log.jsonl");

    let resumed = if job.resume {
        find_checkpoint(job.dir)
    } else {
        None
    };
    let mut best: Option<Vec<(String, Tensor)>> = None;
    let mut st = match &resumed {
        Some(ck) => {
            let state: TrainState = serde_json::from_slice(&std::fs::read(ck.join("state.json"))?)
                .with_context(|| format!("reading {}", ck.join("state.json").display()))?;
            if state.format != CHECKPOINT_FORMAT {
                bail!(
                    "{} has format {:?}, expected {CHECKPOINT_FORMAT}",
                    ck.display(),
                    state.format
                )
            }
            if state.fingerprint != job.fingerprint {
                return Err(crate::util::usage(format!(
                    "checkpoint {} was made with other training settings or data; resume with the same options, or remove it to start over",
                    ck.display()
                )));
            }
            let adapter = load_tensors(&ck.join("adapter.safetensors"), &device)?;
            for (n, v) in &vars {
                let t = adapter
                    .get(n)
                    .with_context(|| format!("checkpoint lacks adapter tensor {n}"))?;
                v.set(t)?;
            }
            opt.load_state(
                state.step,
                &load_tensors(&ck.join("optimizer.safetensors"), &device)?,
            )?;
            let bp = ck.join("best.safetensors");
            if bp.is_file() {
                let b = load_tensors(&bp, &device)?;
                best = Some(
                    vars.iter()
                        .map(|(n, _)| {
                            Ok((
                                n.clone(),
                                b.get(n).context("best adapter incomplete")?.clone(),
                            ))
                        })
                        .collect::<Result<_>>()?,
                );
            }
            state
        }
        None => {
            let plan_full = epoch_plan(job.train.len(), &lens, limits, cfg.epochs.max(1), cfg.seed);
            let (plan, planned_steps) = cut_plan(plan_full, &lens, cfg);
            TrainState {
                format: CHECKPOINT_FORMAT.into(),
                fingerprint: job.fingerprint.clone(),
                step: 0,
                epoch: 0,
                batch: 0,
                plan,
                planned_steps,
                dropout_rng: RngState::of(&ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xd50f)),
                tokens: 0,
                answer_tokens: 0,
                padded_tokens: 0,
                train_secs: 0.0,
                best_val_loss: None,
                best_step: 0,
                evals_since_best: 0,
                last_eval_step: 0,
                val_loss_base: None,
                log_len: 0,
                stop_reason: None,
            }
        }
    };
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
    let mut rng = st.dropout_rng.restore()?;
    let val_limits = BatchLimits {
        max_examples: cfg.eval.batch_size.max(1),
        max_tokens: cfg.batch_tokens.max(1) * 2,
    };
    let has_val = !job.val.is_empty();
    if has_val && st.val_loss_base.is_none() && st.stop_reason.is_none() {
        let (l, _) = mean_loss(model, job.val, job.pad_id, val_limits)?;
        st.val_loss_base = Some(l);
        log_line(&mut log, &serde_json::json!({"step": 0, "val_loss": l}))?;
    }

    let pb = crate::util::count_bar(st.planned_steps as u64, "tune");
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_prefix(job.label.clone());
    pb.set_position(st.step as u64);

    let session_start = Instant::now();
    let base_secs = st.train_secs;
    let mut steps_this_call = 0usize;
    let mut last_loss: Option<f64> = None;
    let checkpoint_now = |st: &mut TrainState,
                          rng: &ChaCha8Rng,
                          opt: &AdamW,
                          best: &Option<Vec<(String, Tensor)>>,
                          log: &mut std::fs::File|
     -> Result<()> {
        log.sync_data()?;
        st.log_len = log.metadata()?.len();
        st.dropout_rng = RngState::of(rng);
        save_checkpoint(job.dir, st, &vars, opt, best.as_deref())
    };

    while st.stop_reason.is_none() {
        // The end of the plan.
        if st.step >= st.planned_steps || st.epoch >= st.plan.len() {
            st.stop_reason = Some(if st.planned_steps < total_batches(&st.plan) {
                StopReason::StepBudget
            } else {
                StopReason::Epochs
            });
            break;
        }
        if job.interrupt.load(Ordering::SeqCst)
            || cfg.stop_after_steps.is_some_and(|k| steps_this_call >= k)
        {
            checkpoint_now(&mut st, &rng, &opt, &best, &mut log)?;
            pb.abandon_with_message(format!("stopped at step {} (checkpoint saved)", st.step));
            return Ok(TrainOutcome::Interrupted { step: st.step });
        }
        let elapsed = base_secs + session_start.elapsed().as_secs_f64();
        if cfg.time_budget_secs.is_some_and(|b| elapsed >= b) {
            st.stop_reason = Some(StopReason::TimeBudget);
            break;
        }
        let progress = {
            let p = st.step as f64 / st.planned_steps.max(1) as f64;
            match cfg.time_budget_secs {
                Some(b) if b > 0.0 => p.max(elapsed / b),
                _ => p,
            }
        };
        let lr = learning_rate(cfg, st.step, progress);
        let idx = &st.plan[st.epoch][st.batch];
        let t0 = Instant::now();
        let exs: Vec<_> = idx.iter().map(|&i| job.train[i].ex.clone()).collect();
        let batch = TrainBatch::new(&exs, job.pad_id, &device)?;
        let loss_t = model.loss(&batch, HeadPositions::Answer, Some(&mut rng))?;
        let loss = loss_t.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            bail!(
                "training loss is {loss} at step {}: lower the learning rate",
                st.step + 1
            )
        }
        let mut grads = loss_t.backward()?;
        let gnorm = clip_grad_norm(&mut grads, &var_list, cfg.clip_norm)?;
        opt.step(&grads, lr)?;
        drop(grads);
        let dt = t0.elapsed().as_secs_f64();
        st.step += 1;
        steps_this_call += 1;
        st.tokens += batch.n_tokens;
        st.answer_tokens += batch.n_answer;
        st.padded_tokens += batch.ids.elem_count();
        st.train_secs = base_secs + session_start.elapsed().as_secs_f64();
        st.batch += 1;
        if st.batch >= st.plan[st.epoch].len() {
            st.epoch += 1;
            st.batch = 0;
        }
        last_loss = Some(loss);
        log_line(
            &mut log,
            &serde_json::json!({
                "step": st.step, "epoch": st.epoch as f64 + st.batch as f64 / st.plan.get(st.epoch).map_or(1, |e| e.len().max(1)) as f64,
                "loss": loss, "lr": lr, "grad_norm": gnorm,
                "examples": idx.len(), "tokens": batch.n_tokens, "answer_tokens": batch.n_answer,
                "secs": dt,
            }),
        )?;
        pb.set_position(st.step as u64);
        pb.set_message(format!(
            "loss {loss:.3} {:.0} tok/s",
            batch.n_tokens as f64 / dt.max(1e-9)
        ));

        let at_end = st.step >= st.planned_steps;
        if has_val && (st.step % cfg.eval_every.max(1) == 0 || at_end) {
            if validate(job, val_limits, &vars, &mut st, &mut best, &mut log)? {
                st.evals_since_best = 0;
            } else {
                st.evals_since_best += 1;
                if cfg.patience > 0 && st.evals_since_best >= cfg.patience {
                    st.stop_reason = Some(StopReason::EarlyStopping);
                }
            }
        }
        if cfg.checkpoint_every > 0
            && st.step % cfg.checkpoint_every == 0
            && st.stop_reason.is_none()
            && !at_end
        {
            checkpoint_now(&mut st, &rng, &opt, &best, &mut log)?;
        }
    }
    // A validation loss for the final weights when the last evaluation was
    // earlier (time budget, step budget between evaluations).
    if has_val && st.last_eval_step != st.step && st.step > 0 {
        validate(job, val_limits, &vars, &mut st, &mut best, &mut log)?;
    }
    // Keep the best adapter (by validation loss).
    match &best {
        Some(b) if has_val => {
            for ((n, v), (bn, t)) in vars.iter().zip(b) {
                debug_assert_eq!(n, bn);
                v.set(t)?;
            }
        }
        _ => st.best_step = st.step,
    }
    // Final checkpoint: training is complete; a crash during evaluation
    // resumes straight into evaluation.
    checkpoint_now(&mut st, &rng, &opt, &best, &mut log)?;
    pb.finish_and_clear();
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
        final_train_loss: last_loss.or_else(|| last_logged_loss(&log_path)),
    }))
}

/// Detached copies of the variables' current values.
/// Validation loss at the current step: logged, and when it is the best so
/// far, recorded with a snapshot of the adapter. Returns whether it improved.
fn validate(
    job: &TrainJob,
    limits: BatchLimits,
    vars: &[(String, Var)],
    st: &mut TrainState,
    best: &mut Option<Vec<(String, Tensor)>>,
    log: &mut std::fs::File,
) -> Result<bool> {
    let (vl, _) = mean_loss(job.model, job.val, job.pad_id, limits)?;
    log_line(log, &serde_json::json!({"step": st.step, "val_loss": vl}))?;
    st.last_eval_step = st.step;
    let improved = st.best_val_loss.is_none_or(|b| vl < b);
    if improved {
        st.best_val_loss = Some(vl);
        st.best_step = st.step;
        *best = Some(snapshot(vars)?);
    }
    Ok(improved)
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
