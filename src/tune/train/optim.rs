//! The optimiser and schedule of `tune`'s training loop: AdamW over the LoRA
//! variables (our own, so its moments can be checkpointed exactly) and the
//! warm-up + decay learning-rate schedule.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::tune::TuneConfig;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

impl Schedule {
    /// The names [`Schedule`] parses from.
    pub const NAMES: [&'static str; 3] = ["cosine", "linear", "constant"];
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosine" => Ok(Schedule::Cosine),
            "linear" => Ok(Schedule::Linear),
            "constant" => Ok(Schedule::Constant),
            _ => Err(format!(
                "expected `cosine`, `linear` or `constant`, got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Schedule::Cosine => "cosine",
            Schedule::Linear => "linear",
            Schedule::Constant => "constant",
        })
    }
}
