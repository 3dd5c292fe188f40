//! Verification on write: every exported adapter (and merged model) is
//! loaded back into our engine and compared with the trained adapter on a
//! few of the cluster's own prompts — the largest logit difference over
//! every position must be within a tolerance set by the tensor type, and
//! the greedy answers must be the same — and the trained adapter must
//! change the base model's logits by more than the export's own error (an
//! adapter that does nothing would pass the first two checks).

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
use crate::ml::lm::{LanguageModel, Llama};

/// Largest |logit difference| accepted per exported tensor type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub f32: f32,
    pub f16: f32,
    pub q8_0: f32,
    /// The merged, re-quantised model.
    pub merged: f32,
}

impl Tolerances {
    pub fn for_dtype(&self, d: TensorDtype) -> f32 {
        match d {
            TensorDtype::F32 => self.f32,
            TensorDtype::F16 => self.f16,
            TensorDtype::Q8_0 => self.q8_0,
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
                merged: 2.0,
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
    greedy: Vec<Vec<u32>>,
    base_diff: f32,
    stop: Vec<u32>,
    pad: u32,
    opts: GenerateOptions,
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn logits(model: &Llama, ids: &[u32]) -> Result<Tensor> {
    let t = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    Ok(model.forward(&t, &[])?.squeeze(0)?)
}

impl Reference {
    /// `lm.model` carries the trained adapter; `base` is the same model
    /// without it; `prune` the rule the adapter was trained with.
    pub fn new(
        lm: &LanguageModel,
        base: &Llama,
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
        let mut base_diff = 0f32;
        for p in &prompts {
            let l = logits(&lm.model, p)?;
            base_diff = base_diff.max(max_abs_diff(&l, &logits(base, p)?)?);
            logits_v.push(l);
        }
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
            logits: logits_v,
            base_diff,
            stop,
            pad,
            opts,
        })
    }

    /// Compares a model (an exported adapter applied, or a merged model).
    pub fn check_model(&self, model: &Llama, tolerance: f32) -> Result<Verification> {
        let mut max_diff = 0f32;
        for (p, want) in self.prompts.iter().zip(&self.logits) {
            max_diff = max_diff.max(max_abs_diff(want, &logits(model, p)?)?);
        }
        let (got, _) = generate_tokens(model, &self.prompts, &self.stop, self.pad, &self.opts)?;
        let same = got
            .iter()
            .zip(&self.greedy)
            .filter(|(g, w)| g.tokens == **w)
            .count();
        let mut failure = None;
        if !max_diff.is_finite() || max_diff > tolerance {
            failure = Some(format!(
                "logits differ from the trained adapter's by {max_diff:.4} (tolerance {tolerance})"
            ));
        } else if same < self.prompts.len() {
            failure = Some(format!(
                "greedy answer differs from the trained adapter's on {} of {} prompts",
                self.prompts.len() - same,
                self.prompts.len()
            ));
        } else if self.base_diff <= max_diff.max(1e-3) {
            failure = Some(format!(
                "the adapter changes the base model's logits by only {:.4}, no more than the export error {max_diff:.4}: it would be indistinguishable from the base",
                self.base_diff
            ));
        }
        Ok(Verification {
            prompts: self.prompts.len(),
            max_logit_diff: max_diff,
            tolerance,
            same_greedy: same,
            base_logit_diff: self.base_diff,
            passed: failure.is_none(),
            failure,
        })
    }

    /// Applies an adapter read back from an exported file to `base` and compares.
    pub fn check_adapter(
        &self,
        base: &Llama,
        adapter: &Adapter,
        tolerance: f32,
    ) -> Result<Verification> {
        let mut m = base.clone();
        m.set_lora_tensors(&adapter.config.lora, &adapter.tensors)?;
        self.check_model(&m, tolerance)
    }
}
