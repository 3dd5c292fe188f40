//! Verification on write: every exported adapter (and merged model) is
//! loaded back into our engine and compared with the trained adapter on a
//! few of the cluster's own prompts, and the greedy answers must be the
//! same; the trained adapter must also change the base model's logits by
//! more than the export's own error (an adapter that does nothing would
//! pass the other checks).
//!
//! What "close" means depends on what was written. An adapter file only
//! rounds the LoRA tensors, so the largest logit difference over every
//! position and every vocabulary entry must be within a tolerance set by
//! its tensor type. A merged model re-quantises whole projections: logits
//! of tokens the model gives no weight to move by several units while the
//! distribution does not (4.2 on a pruned SmolLM2 adapter's Q8_0 merge
//! with identical greedy answers, while its KL was 0.0032 on average and
//! 0.197 at the worst of ~600 positions), so it is held to the mean KL
//! divergence over positions from the trained adapter's next-token
//! distributions, the headline figure of llama.cpp's
//! `perplexity --kl-divergence` for quantised models; the maximum and the
//! top-token agreement are recorded beside it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::Tensor;

use crate::artifact::adapter::RunSettings;
use crate::artifact::export::Verification;
use crate::artifact::split::split_point;
use crate::call::RedactedCall;
use crate::ml::lm::export::TensorDtype;
use crate::ml::lm::generate::{generate_tokens, GenerateOptions, SamplingConfig};
use crate::ml::lm::lora::Adapter;
use crate::ml::lm::{CausalLm, LanguageModel};

/// Largest |logit difference| accepted per exported adapter tensor type,
/// and the largest per-position KL divergence (nats) accepted for a
/// merged model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub f32: f32,
    pub f16: f32,
    pub q8_0: f32,
    /// The merged model re-quantised to 8 bits or more (or f16): mean
    /// KL(trained ‖ merged) over positions.
    pub merged_kl: f32,
    /// The same, re-quantised to fewer bits (Q6_K … Q4_0).
    pub merged_kl_low_bit: f32,
}

/// Which figure a check holds to its tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    /// Largest |logit difference| over every position and vocabulary entry.
    MaxLogitDiff(f32),
    /// Mean KL divergence of the positions' next-token distributions.
    MeanKl(f32),
}

impl Tolerances {
    pub fn for_dtype(&self, d: TensorDtype) -> f32 {
        match d {
            TensorDtype::F32 => self.f32,
            TensorDtype::F16 => self.f16,
            TensorDtype::Q8_0 => self.q8_0,
        }
    }

    /// Mean-KL tolerance of a model merged and re-quantised to `quant`.
    pub fn merged(&self, quant: candle_core::quantized::GgmlDType) -> f32 {
        use candle_core::quantized::GgmlDType as Q;
        match quant {
            Q::F32 | Q::F16 | Q::BF16 | Q::Q8_0 | Q::Q8_1 | Q::Q8K => self.merged_kl,
            _ => self.merged_kl_low_bit,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyConfig {
    /// Prompts per cluster.
    pub prompts: usize,
    /// Greedy tokens compared per prompt.
    pub new_tokens: usize,
    pub tolerances: Tolerances,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            prompts: 3,
            new_tokens: 24,
            tolerances: Tolerances {
                f32: 1e-3,
                f16: 0.05,
                q8_0: 0.5,
                merged_kl: 0.02,
                merged_kl_low_bit: 0.2,
            },
        }
    }
}

/// Per cluster, a few of its calls (test split first, then by split position).
pub struct Prompts {
    by_cluster: HashMap<i32, Vec<RedactedCall>>,
    max_len: usize,
}

impl Prompts {
    pub fn read(dataset_dir: &Path, settings: &RunSettings) -> Result<Prompts> {
        let calls = crate::artifact::calls::read_calls(dataset_dir)?;
        let rows = crate::artifact::clusters::read_assignment_rows(dataset_dir)?;
        let cluster_of: HashMap<&str, i32> = rows
            .iter()
            .map(|r| (r.call_id.as_str(), r.cluster))
            .collect();
        let mut by_cluster: HashMap<i32, Vec<(bool, f64, RedactedCall)>> = HashMap::new();
        let test_from = settings.split.train + settings.split.val;
        for c in calls {
            let id = c.id();
            if let Some(&k) = cluster_of.get(id.as_str()) {
                let u = split_point(&id);
                by_cluster.entry(k).or_default().push((u < test_from, u, c));
            }
        }
        let by_cluster = by_cluster
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                (k, v.into_iter().map(|(_, _, c)| c).collect())
            })
            .collect();
        Ok(Prompts {
            by_cluster,
            max_len: settings.max_len,
        })
    }

    /// The calls of a cluster to verify on (with the run's `max_len`).
    pub fn for_cluster(&self, cluster: i32) -> (Vec<&RedactedCall>, usize) {
        let v = self
            .by_cluster
            .get(&cluster)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        (v, self.max_len)
    }
}

/// The trained adapter's outputs on the verification prompts.
pub struct Reference {
    prompts: Vec<Vec<u32>>,
    logits: Vec<Tensor>,
    /// log-softmax of `logits`.
    logprobs: Vec<Tensor>,
    greedy: Vec<Vec<u32>>,
    base_diff: f32,
    /// Mean KL(trained ‖ base) over positions.
    base_kl: f32,
    stop: Vec<u32>,
    pad: u32,
    opts: GenerateOptions,
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Per position, KL(p ‖ q) from log-probabilities `[positions, vocab]`.
fn kl_per_position(lp: &Tensor, lq: &Tensor) -> Result<Vec<f32>> {
    let kl = (lp.exp()? * (lp - lq)?)?.sum(1)?;
    Ok(kl.to_vec1::<f32>()?)
}

fn log_softmax(l: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(l, candle_core::D::Minus1)?)
}

fn argmax_rows(l: &Tensor) -> Result<Vec<u32>> {
    Ok(l.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?)
}

fn logits(model: &CausalLm, ids: &[u32]) -> Result<Tensor> {
    let t = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    Ok(model.forward(&t, &[])?.squeeze(0)?)
}

impl Reference {
    /// `lm.model` carries the trained adapter; `base` is the same model
    /// without it; `prune` the rule the adapter was trained with.
    pub fn new(
        lm: &LanguageModel,
        base: &CausalLm,
        calls: &(Vec<&RedactedCall>, usize),
        prune: Option<&crate::ml::lm::prune::PruneRule>,
        cfg: &VerifyConfig,
    ) -> Result<Reference> {
        let (calls, max_len) = calls;
        let mut prompts = Vec::new();
        for c in calls.iter() {
            if prompts.len() >= cfg.prompts {
                break;
            }
            let pruned = prune.map(|r| r.apply(&c.messages, &c.tools));
            let (m, t) = match &pruned {
                Some(p) => (&p.messages[..], &p.tools[..]),
                None => (&c.messages[..], &c.tools[..]),
            };
            if let Ok(mut ids) = lm.prompt_ids(m, t) {
                if ids.len() > *max_len {
                    ids.drain(..ids.len() - max_len);
                }
                prompts.push(ids);
            }
        }
        anyhow::ensure!(
            !prompts.is_empty(),
            "none of the cluster's calls in the dataset could be rendered for verification (is --dataset the dataset the run was tuned on?)"
        );
        let mut logits_v = Vec::new();
        let (mut base_diff, mut kl_sum, mut positions) = (0f32, 0f64, 0usize);
        for p in &prompts {
            let l = logits(&lm.model, p)?;
            let b = logits(base, p)?;
            base_diff = base_diff.max(max_abs_diff(&l, &b)?);
            let kl = kl_per_position(&log_softmax(&l)?, &log_softmax(&b)?)?;
            kl_sum += kl.iter().map(|&x| x as f64).sum::<f64>();
            positions += kl.len();
            logits_v.push(l);
        }
        let base_kl = (kl_sum / positions.max(1) as f64) as f32;
        let opts = GenerateOptions {
            sampling: SamplingConfig::greedy(cfg.new_tokens.max(1)),
            batch_size: prompts.len(),
            ..Default::default()
        };
        let stop = lm.stop_ids();
        let pad = lm.tokenizer.pad_id();
        let (greedy, _) = generate_tokens(&lm.model, &prompts, &stop, pad, &opts)?;
        Ok(Reference {
            greedy: greedy.into_iter().map(|c| c.tokens).collect(),
            prompts,
            logprobs: logits_v.iter().map(log_softmax).collect::<Result<_>>()?,
            logits: logits_v,
            base_diff,
            base_kl,
            stop,
            pad,
            opts,
        })
    }

    /// Compares a model (an exported adapter applied, or a merged model).
    pub fn check_model(&self, model: &CausalLm, measure: Measure) -> Result<Verification> {
        let mut max_diff = 0f32;
        let (mut max_kl, mut kl_sum, mut positions, mut top1) = (0f32, 0f64, 0usize, 0usize);
        for ((p, want), want_lp) in self.prompts.iter().zip(&self.logits).zip(&self.logprobs) {
            let got = logits(model, p)?;
            max_diff = max_diff.max(max_abs_diff(want, &got)?);
            for kl in kl_per_position(want_lp, &log_softmax(&got)?)? {
                // NaN must fail, not vanish in `max`.
                max_kl = if kl.is_nan() {
                    f32::NAN
                } else {
                    max_kl.max(kl)
                };
                kl_sum += kl as f64;
            }
            let (a, b) = (argmax_rows(want)?, argmax_rows(&got)?);
            top1 += a.iter().zip(&b).filter(|(x, y)| x == y).count();
            positions += a.len();
        }
        let mean_kl = (kl_sum / positions.max(1) as f64) as f32;
        let (got, _) = generate_tokens(model, &self.prompts, &self.stop, self.pad, &self.opts)?;
        let same = got
            .iter()
            .zip(&self.greedy)
            .filter(|(g, w)| g.tokens == **w)
            .count();
        let (figure, tolerance, what) = match measure {
            Measure::MaxLogitDiff(t) => {
                (max_diff, t, "logits differ from the trained adapter's by")
            }
            Measure::MeanKl(t) => (
                mean_kl,
                t,
                "next-token distributions diverge from the trained adapter's by a mean KL of",
            ),
        };
        let mut failure = None;
        if !figure.is_finite() || figure > tolerance {
            failure = Some(format!("{what} {figure:.4} (tolerance {tolerance})"));
        } else if same < self.prompts.len() {
            failure = Some(format!(
                "greedy answer differs from the trained adapter's on {} of {} prompts",
                self.prompts.len() - same,
                self.prompts.len()
            ));
        } else {
            let (base, floor) = match measure {
                Measure::MaxLogitDiff(_) => (self.base_diff, 1e-3),
                Measure::MeanKl(_) => (self.base_kl, 1e-6),
            };
            if base <= figure.max(floor) {
                failure = Some(format!(
                    "the adapter changes the base model by only {base:.4}, no more than the export error {figure:.4}: it would be indistinguishable from the base"
                ));
            }
        }
        Ok(Verification {
            prompts: self.prompts.len(),
            measure: match measure {
                Measure::MaxLogitDiff(_) => "max_logit_diff",
                Measure::MeanKl(_) => "mean_kl",
            }
            .to_string(),
            max_logit_diff: max_diff,
            max_kl,
            mean_kl,
            top1_agreement: top1 as f32 / positions.max(1) as f32,
            tolerance,
            same_greedy: same,
            base_logit_diff: self.base_diff,
            base_mean_kl: self.base_kl,
            passed: failure.is_none(),
            failure,
        })
    }

    /// Applies an adapter read back from an exported file to `base` and compares.
    pub fn check_adapter(
        &self,
        base: &CausalLm,
        adapter: &Adapter,
        tolerance: f32,
    ) -> Result<Verification> {
        let mut m = base.clone();
        m.set_lora_tensors(&adapter.config.lora, &adapter.tensors)?;
        self.check_model(&m, Measure::MaxLogitDiff(tolerance))
    }
}
