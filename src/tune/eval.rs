//! Evaluation of a tuned adapter against its base model on the held-out test
//! split: same prompts (the exact context the model trains on), greedy
//! decoding, answers parsed with [`crate::ml::lm::parse_reply`], and the metrics
//! of `eval.json` with the counts behind every rate.
//!
//! The comparison rules are in [`crate::ml::lm::score`].

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use super::data::{BatchLimits, Example};
use crate::artifact::adapter::{ModelMetrics, Rate};
use crate::ml::lm::generate::{generate_constrained, GenerateOptions, SamplingConfig};
use crate::ml::lm::guide::{AnswerShape, Constraint, Fallbacks};
use crate::ml::lm::score::{score_reply, CallScore};
use crate::ml::lm::{CausalLm, FinishReason, LanguageModel};

// ---------------------------------------------------------------------------
// Metrics.

/// Metrics from per-call scores.
pub fn aggregate(scores: &[CallScore]) -> ModelMetrics {
    ModelMetrics {
        exact_match: Rate::of_outcomes(scores.iter().map(|s| s.exact_match)),
        text_exact: Rate::of_outcomes(scores.iter().map(|s| s.text_exact)),
        json_valid: Rate::of_outcomes(scores.iter().filter_map(|s| s.json_valid)),
        json_equal: Rate::of_outcomes(scores.iter().filter_map(|s| s.json_equal)),
        tool_name_accuracy: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_name)),
        tool_call_accuracy: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_call)),
        tool_args_valid: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_args_valid)),
        tool_schema_valid: Rate::of_outcomes(scores.iter().filter_map(|s| s.tool_schema_valid)),
        ..Default::default()
    }
}

/// One generation pass's outputs.
pub struct Generated {
    pub texts: Vec<String>,
    pub finish: Vec<FinishReason>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Examples that had a constraint which could not be compiled (decoded
    /// free): (example index, reason).
    pub fallbacks: Fallbacks,
}

/// Greedy generation for each example's prompt, in chunks of the batch size
/// (longest first), checking `interrupt` between chunks; guided by
/// `constraints[i]` for example `i` when given. `None` when interrupted.
pub fn generate_all(
    lm: &LanguageModel,
    model: &CausalLm,
    examples: &[&Example],
    constraints: Option<&[Option<Constraint>]>,
    max_new_tokens: usize,
    batch_size: usize,
    interrupt: &AtomicBool,
) -> Result<Option<Generated>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(examples[i].prompt_len()), i));
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(max_new_tokens.max(1)),
        batch_size: batch_size.max(1),
        ..Default::default()
    };
    let mut texts = vec![String::new(); examples.len()];
    let mut finish = vec![FinishReason::Stop; examples.len()];
    let mut out = Generated {
        texts: Vec::new(),
        finish: Vec::new(),
        prompt_tokens: 0,
        generated_tokens: 0,
        prefill_secs: 0.0,
        decode_secs: 0.0,
        fallbacks: Vec::new(),
    };
    let stop = lm.stop_ids();
    for chunk in order.chunks(batch_size.max(1)) {
        if interrupt.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let prompts: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&i| examples[i].prompt_ids().to_vec())
            .collect();
        let rows = match constraints {
            Some(cs) => {
                let mine: Vec<Option<Constraint>> = chunk.iter().map(|&i| cs[i].clone()).collect();
                let (rows, fallbacks) = lm.row_guides(&mine)?;
                out.fallbacks
                    .extend(fallbacks.into_iter().map(|(r, why)| (chunk[r], why)));
                rows
            }
            None => Vec::new(),
        };
        let (comps, st) =
            generate_constrained(model, &prompts, rows, &stop, lm.tokenizer.pad_id(), &opts)?;
        out.prompt_tokens += st.prompt_tokens;
        out.generated_tokens += st.generated_tokens;
        out.prefill_secs += st.prefill_secs;
        out.decode_secs += st.decode_secs;
        for (c, &i) in comps.iter().zip(chunk) {
            texts[i] = lm.tokenizer.decode(&c.tokens, true)?;
            finish[i] = c.finish;
        }
    }
    out.fallbacks.sort_by_key(|f| f.0);
    out.texts = texts;
    out.finish = finish;
    Ok(Some(out))
}

/// Each example's constraint under the workload's answer shape (`None`:
/// free text), from the tools its call offers.
pub fn constraints_for(examples: &[&Example], shape: &AnswerShape) -> Vec<Option<Constraint>> {
    examples
        .iter()
        .map(|e| {
            let tools: Vec<(String, serde_json::Value)> = e
                .tool_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            shape.constraint(&tools, &e.demands)
        })
        .collect()
}

/// Scores and timing figures of one model.
pub fn model_metrics(
    lm: &LanguageModel,
    examples: &[&Example],
    gen: &Generated,
    loss: (f64, usize),
) -> (ModelMetrics, Vec<CallScore>) {
    let scores: Vec<CallScore> = examples
        .iter()
        .zip(&gen.texts)
        .map(|(e, text)| {
            let rendered = lm.chat.render_answer(&e.answer);
            let schema_of = |name: &str| e.tool_params.get(name).cloned();
            score_reply(&e.answer, e.kind, &rendered, text, &schema_of)
        })
        .collect();
    let mut m = aggregate(&scores);
    m.hit_max_tokens = gen
        .finish
        .iter()
        .filter(|f| **f == FinishReason::Length)
        .count();
    if loss.1 > 0 && loss.0.is_finite() {
        m.mean_loss = Some(loss.0);
        m.perplexity = Some(loss.0.exp());
    }
    m.loss_tokens = loss.1;
    m.prompt_tokens = gen.prompt_tokens;
    m.generated_tokens = gen.generated_tokens;
    m.prefill_secs = gen.prefill_secs;
    m.decode_secs = gen.decode_secs;
    m.prefill_tokens_per_sec = gen.prompt_tokens as f64 / gen.prefill_secs.max(1e-9);
    m.decode_tokens_per_sec = gen.generated_tokens as f64 / gen.decode_secs.max(1e-9);
    m.latency_ms_per_call =
        1e3 * (gen.prefill_secs + gen.decode_secs) / examples.len().max(1) as f64;
    (m, scores)
}

/// Limits for loss passes at evaluation time.
pub fn loss_limits(batch_size: usize, batch_tokens: usize) -> BatchLimits {
    BatchLimits {
        max_examples: batch_size.max(1),
        max_tokens: batch_tokens.max(1) * 2,
    }
}
