//! Text generation: greedy or temperature/top-p sampling with a seed, stop
//! tokens, batched left-padded prompts over a KV cache, timing, and an
//! optional per-row [`TokenConstraint`] (schema-guided decoding, see
//! [`super::guide`]) that masks the logits before each pick. (The
//! `slmforge generate` command is `cli::generate`.)

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::model::{left_padded, CausalLm};

/// How tokens are picked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SamplingConfig {
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling mass (1 = no cut); ignored when greedy.
    pub top_p: f64,
    /// Each prompt draws from its own stream of this seed, so results do not
    /// depend on batching.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    pub fn greedy(max_new_tokens: usize) -> Self {
        SamplingConfig {
            max_new_tokens,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            bail!("max_new_tokens must be at least 1")
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            bail!("temperature must be >= 0, got {}", self.temperature)
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("top_p must be in (0, 1], got {}", self.top_p)
        }
        Ok(())
    }
}

/// Sampling plus batching.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateOptions {
    pub sampling: SamplingConfig,
    /// Prompts per forward pass (sorted by length, left-padded).
    pub batch_size: usize,
    /// Prompt tokens fed per prefill forward (bounds attention memory).
    pub prefill_chunk: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            sampling: SamplingConfig::default(),
            batch_size: 8,
            prefill_chunk: 512,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token was generated (not included in `tokens`).
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

impl FinishReason {
    /// OpenAI's wording: `stop` / `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One prompt's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
}

/// Counts and timings of a generation run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GenerationStats {
    pub prompts: usize,
    pub prompt_tokens: usize,
    /// Prompt tokens including left padding (what prefill actually computed).
    pub padded_prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Of `decode_secs`, the time spent computing constraint masks and
    /// advancing the constraints (schema-guided decoding).
    pub guide_secs: f64,
}

impl GenerationStats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_secs.max(1e-9)
    }

    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.generated_tokens as f64 / self.decode_secs.max(1e-9)
    }
}

/// A per-row constraint on what may be generated next (one state per row,
/// so batched rows advance independently).
pub trait TokenConstraint: Send {
    /// Sets the logits of tokens that may not come next to `-inf`. A stop
    /// token stays allowed only where the output may end here. When nothing
    /// at all is allowed the constraint is broken; the row then stops.
    fn mask_logits(&mut self, logits: &mut [f32], stop_ids: &[u32]) -> Result<()>;
    /// Whether `token` may come next (a stop token: whether the output may
    /// end here); much cheaper than a whole mask. Greedy decoding tries the
    /// unconstrained best token first and masks only when it is refused,
    /// which picks the same token.
    fn allows(&mut self, token: u32, is_stop: bool) -> Result<bool>;
    /// Advances past the picked (non-stop) token. A constraint that cannot
    /// follow (a broken state) should end its row through `mask_logits`
    /// rather than fail: `Err` aborts the whole generation.
    fn accept(&mut self, token: u32) -> Result<()>;
}

/// One row's constraint, if any.
pub type RowConstraint = Option<Box<dyn TokenConstraint>>;

/// Picks the next token from `logits` (one row).
fn pick(logits: &[f32], s: &SamplingConfig, rng: &mut ChaCha8Rng) -> u32 {
    if s.temperature <= 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, ((v as f64 - max) / s.temperature).exp()))
        .filter(|p| p.1 > 0.0)
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if s.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p.1 / total;
            if acc >= s.top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f64>() * mass;
    for (id, p) in &probs {
        r -= p;
        if r <= 0.0 {
            return *id;
        }
    }
    probs.last().map(|p| p.0).unwrap_or(0)
}

/// Picks the next token of a constrained row: greedy tries the best token
/// first and masks only when the constraint refuses it (the same pick, far
/// cheaper); sampling always masks. `None` when nothing is allowed.
fn guided_pick(
    g: &mut dyn TokenConstraint,
    logits: &mut [f32],
    stop_ids: &[u32],
    s: &SamplingConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Option<u32>> {
    if s.temperature <= 0.0 {
        let best = pick(logits, s, rng);
        if g.allows(best, stop_ids.contains(&best))? {
            return Ok(Some(best));
        }
    }
    g.mask_logits(logits, stop_ids)?;
    if logits.iter().all(|v| *v == f32::NEG_INFINITY) {
        return Ok(None);
    }
    Ok(Some(pick(logits, s, rng)))
}

/// One generating row's state at a step.
struct RowState<'a> {
    logits: &'a mut [f32],
    guide: &'a mut RowConstraint,
    rng: &'a mut ChaCha8Rng,
    out: &'a mut Vec<u32>,
    done: &'a mut Option<FinishReason>,
}

/// Picks a row's next token from its logits (under its constraint, if
/// any), records it, and says whether the row goes on: `Some(token)` to
/// feed next, `None` when it stopped.
fn advance_row(
    row: RowState<'_>,
    stop_ids: &[u32],
    s: &SamplingConfig,
    stats: &mut GenerationStats,
) -> Result<Option<u32>> {
    let tok = match row.guide.as_mut() {
        None => pick(row.logits, s, row.rng),
        Some(g) => {
            let tg = Instant::now();
            let tok = guided_pick(g.as_mut(), row.logits, stop_ids, s, row.rng)?;
            stats.guide_secs += tg.elapsed().as_secs_f64();
            match tok {
                Some(t) => t,
                None => {
                    *row.done = Some(FinishReason::Stop);
                    return Ok(None);
                }
            }
        }
    };
    if stop_ids.contains(&tok) {
        *row.done = Some(FinishReason::Stop);
        return Ok(None);
    }
    if let Some(g) = row.guide.as_mut() {
        let tg = Instant::now();
        g.accept(tok)?;
        stats.guide_secs += tg.elapsed().as_secs_f64();
    }
    row.out.push(tok);
    stats.generated_tokens += 1;
    if row.out.len() >= s.max_new_tokens {
        *row.done = Some(FinishReason::Length);
    }
    Ok(Some(tok))
}

/// Generates a continuation for each prompt. Prompts are processed in
/// batches of similar length (left-padded); results come back in the order
/// of `prompts`. Generation of a row stops at any of `stop_ids`.
pub fn generate_tokens(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    stop_ids: &[u32],
    pad_id: u32,
    opts: &GenerateOptions,
) -> Result<(Vec<Completion>, GenerationStats)> {
    generate_constrained(model, prompts, Vec::new(), stop_ids, pad_id, opts)
}

/// [`generate_tokens`] with a constraint per prompt (`constraints[i]` for
/// `prompts[i]`; an empty vector means none at all).
pub fn generate_constrained(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    mut constraints: Vec<RowConstraint>,
    stop_ids: &[u32],
    pad_id: u32,
    opts: &GenerateOptions,
) -> Result<(Vec<Completion>, GenerationStats)> {
    if constraints.is_empty() {
        constraints.resize_with(prompts.len(), || None);
    }
    if constraints.len() != prompts.len() {
        bail!(
            "{} constraints for {} prompts",
            constraints.len(),
            prompts.len()
        )
    }
    let s = &opts.sampling;
    s.validate()?;
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        bail!("prompt {i} is empty")
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut results: Vec<Option<Completion>> = vec![None; prompts.len()];
    let mut stats = GenerationStats {
        prompts: prompts.len(),
        ..Default::default()
    };
    let device = model.device().clone();
    let decoder = model.decoder()?;
    for chunk in order.chunks(opts.batch_size.max(1)) {
        let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let (ids, pads) = left_padded(&rows, pad_id, &device)?;
        let (b, len) = ids.dims2()?;
        let capacity = len + s.max_new_tokens;
        if capacity > model.max_positions() {
            bail!(
                "prompt of {len} tokens + {} new tokens exceeds the model's {} positions",
                s.max_new_tokens,
                model.max_positions()
            )
        }
        stats.prompt_tokens += rows.iter().map(Vec::len).sum::<usize>();
        stats.padded_prompt_tokens += b * len;
        let mut rngs: Vec<ChaCha8Rng> = chunk
            .iter()
            .map(|&i| {
                let mut r = ChaCha8Rng::seed_from_u64(s.seed);
                r.set_stream(i as u64);
                r
            })
            .collect();

        let t0 = Instant::now();
        let mut slow = None;
        let prefill = model.prefill_model();
        let mut cache = prefill.new_cache(pads, capacity)?;
        let step = opts.prefill_chunk.max(1);
        let mut logits = None;
        let mut start = 0;
        while start < len {
            let n = step.min(len - start);
            logits = Some(prefill.forward_cached(&ids.narrow(1, start, n)?, &mut cache)?);
            start += n;
        }
        let logits = logits.context("empty batch")?;
        let t1 = Instant::now();
        stats.prefill_secs += (t1 - t0).as_secs_f64();

        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done: Vec<Option<FinishReason>> = vec![None; b];
        let mut guides: Vec<RowConstraint> = chunk.iter().map(|&i| constraints[i].take()).collect();
        // the quantized decoder takes over the cache after the prompt
        let mut fast = match &decoder {
            Some(d) => Some(d.cache_from(cache)?),
            None => {
                slow = Some(cache);
                None
            }
        };
        let mut rows_logits: Vec<Vec<f32>> = logits.to_vec2()?;
        loop {
            let mut next = vec![pad_id; b];
            for r in 0..b {
                if done[r].is_some() {
                    continue;
                }
                let row = RowState {
                    logits: &mut rows_logits[r],
                    guide: &mut guides[r],
                    rng: &mut rngs[r],
                    out: &mut out[r],
                    done: &mut done[r],
                };
                if let Some(tok) = advance_row(row, stop_ids, s, &mut stats)? {
                    next[r] = tok;
                }
            }
            if done.iter().all(Option::is_some) {
                break;
            }
            match (&decoder, fast.as_mut(), slow.as_mut()) {
                (Some(d), Some(c), _) => {
                    // only the rows still generating
                    let active: Vec<usize> = (0..b).filter(|&r| done[r].is_none()).collect();
                    let toks: Vec<u32> = active.iter().map(|&r| next[r]).collect();
                    let flat = d.step(c, &active, &toks)?;
                    let vocab = flat.len() / active.len();
                    for (i, &r) in active.iter().enumerate() {
                        rows_logits[r].copy_from_slice(&flat[i * vocab..(i + 1) * vocab]);
                    }
                }
                (_, _, Some(c)) => {
                    let next = Tensor::from_vec(next, (b, 1), &device)?;
                    rows_logits = model.forward_cached(&next, c)?.to_vec2()?;
                }
                _ => bail!("generation lost its KV cache"),
            }
        }
        stats.decode_secs += t1.elapsed().as_secs_f64();
        for (r, &i) in chunk.iter().enumerate() {
            results[i] = Some(Completion {
                tokens: std::mem::take(&mut out[r]),
                finish: done[r].unwrap_or(FinishReason::Length),
                prompt_tokens: prompts[i].len(),
            });
        }
    }
    Ok((
        results
            .into_iter()
            .map(|c| c.expect("every prompt processed"))
            .collect(),
        stats,
    ))
}
