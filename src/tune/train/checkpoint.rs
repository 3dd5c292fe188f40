//! Training checkpoints: `checkpoint/state.json` (step, data order, RNG
//! position, budgets, the log length) with the adapter, optimiser moments and
//! best adapter as safetensors, written atomically (a crash between the two
//! renames leaves `checkpoint.old/`, which resume also reads).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use crate::artifact::adapter::StopReason;

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

impl TrainState {
    /// The state before the first update of a planned run.
    pub fn new(
        fingerprint: String,
        plan: Vec<Vec<Vec<usize>>>,
        planned_steps: usize,
        seed: u64,
    ) -> Self {
        TrainState {
            format: CHECKPOINT_FORMAT.into(),
            fingerprint,
            step: 0,
            epoch: 0,
            batch: 0,
            plan,
            planned_steps,
            dropout_rng: RngState::of(&ChaCha8Rng::seed_from_u64(seed ^ 0xd50f)),
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
}

/// Named copies of the adapter tensors (the best adapter so far).
pub type Snapshot = Vec<(String, Tensor)>;

pub const CHECKPOINT_DIR: &str = "checkpoint";
const CHECKPOINT_FORMAT: &str = "slmforge-tune-checkpoint-v1";

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
pub fn save_checkpoint(
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

/// Loads the checkpoint in `ck`: sets the adapter variables and the
/// optimiser moments, and returns the state and the best adapter so far.
/// A checkpoint of other settings or data (`fingerprint`) is refused.
pub fn restore(
    ck: &Path,
    fingerprint: &str,
    vars: &[(String, Var)],
    opt: &mut AdamW,
    device: &Device,
) -> Result<(TrainState, Option<Snapshot>)> {
    let state: TrainState = serde_json::from_slice(&std::fs::read(ck.join("state.json"))?)
        .with_context(|| format!("reading {}", ck.join("state.json").display()))?;
    if state.format != CHECKPOINT_FORMAT {
        bail!(
            "{} has format {:?}, expected {CHECKPOINT_FORMAT}",
            ck.display(),
            state.format
        )
    }
    if state.fingerprint != fingerprint {
        return Err(crate::util::usage(format!(
            "checkpoint {} was made with other training settings or data; resume with the same options, or remove it to start over",
            ck.display()
        )));
    }
    let adapter = load_tensors(&ck.join("adapter.safetensors"), device)?;
    for (n, v) in vars {
        let t = adapter
            .get(n)
            .with_context(|| format!("checkpoint lacks adapter tensor {n}"))?;
        v.set(t)?;
    }
    opt.load_state(
        state.step,
        &load_tensors(&ck.join("optimizer.safetensors"), device)?,
    )?;
    let bp = ck.join("best.safetensors");
    let mut best = None;
    if bp.is_file() {
        let b = load_tensors(&bp, device)?;
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
    Ok((state, best))
}
