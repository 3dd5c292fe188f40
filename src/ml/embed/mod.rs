//! Sentence embeddings with all-MiniLM-L6-v2: WordPiece tokenisation (its
//! tokenizer.json, truncated at 256 tokens), a BERT encoder, mean pooling
//! over the attention mask and L2 normalisation, matching
//! sentence-transformers (cosine >= 0.999 against its vectors, see
//! tests/fixtures/minilm_reference.json).
//!
//! Texts are sorted by token count and cut into batches of similar lengths;
//! results come back in input order. The encoder is a small inference-only
//! BERT (fused QKV projection with the softmax scale folded in, position and
//! token-type embeddings summed once at load) whose tensor names mirror the
//! Hugging Face checkpoint, as in candle-transformers. It runs two ways:
//! - on a CPU device, [`cpu`]: the same weights as plain arrays, packed token
//!   rows (no padding at all), gemm for every product, fused row passes and
//!   per-(sequence, head) attention. About 2x the speed of candle ops here.
//! - elsewhere (or with [`Backend::CandleOps`]), [`Bert`]: candle tensor ops
//!   on padded batches with an additive mask, skipped when nothing is padded.

use std::path::Path;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use indicatif::ProgressBar;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

mod cpu;
mod lazy;

pub use lazy::{LazyEmbedder, TextEmbedder};

/// Inputs longer than this many tokens ([CLS] and [SEP] included) are cut,
/// as sentence-transformers does for all-MiniLM-L6-v2 (`max_seq_length`).
pub const MAX_TOKENS: usize = 256;

/// Sequences per forward pass unless set with [`Embedder::with_batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Padded tokens per forward pass (beyond its first text) unless set with
/// [`Embedder::with_max_batch_tokens`].
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 4096;

/// Which implementation runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The packed-row CPU kernel on a CPU device, candle ops elsewhere.
    #[default]
    Auto,
    /// candle tensor ops on any device (padded batches with a mask).
    CandleOps,
}

enum Engine {
    /// The CPU kernel and its work buffers (one batch at a time).
    Cpu(Box<(cpu::CpuBert, std::sync::Mutex<cpu::Scratch>)>),
    Candle(Bert),
}

/// Work buffers above this size are released after a batch.
const MAX_SCRATCH_BYTES: usize = 512 << 20;

/// A loaded sentence embedder.
pub struct Embedder {
    engine: Engine,
    hidden_size: usize,
    tokenizer: Tokenizer,
    device: Device,
    batch_size: usize,
    max_batch_tokens: usize,
    max_tokens: usize,
    checksum: String,
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json`, `model.safetensors` (and checks
    /// `1_Pooling/config.json` asks for mean pooling when it is there) from
    /// `dir`, an all-MiniLM-L6-v2 folder as installed by `slmforge models fetch`.
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Embedder> {
        Self::load_with_backend(dir, device, Backend::Auto)
    }

    /// As [`Embedder::load`], choosing the encoder implementation.
    pub fn load_with_backend(
        dir: &Path,
        device: &Device,
        backend: Backend,
    ) -> anyhow::Result<Embedder> {
        let config_path = dir.join("config.json");
        let config: Config =
            serde_json::from_slice(&std::fs::read(&config_path).with_context(|| {
                format!(
                    "reading {} (run `slmforge models fetch`)",
                    config_path.display()
                )
            })?)
            .with_context(|| format!("parsing BERT config {}", config_path.display()))?;
        check_pooling(dir)?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", tokenizer_path.display()))?;
        let max_tokens = MAX_TOKENS.min(config.max_position_embeddings);
        // The shipped tokenizer.json pads and truncates to 128; we truncate at
        // MAX_TOKENS and pad per batch ourselves.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("configuring tokenizer truncation: {e}"))?;
        tokenizer.with_padding(None::<PaddingParams>);

        let weights = dir.join("model.safetensors");
        let checksum = crate::ml::models::cached_sha256(&weights)?;
        // SAFETY: the file is memory-mapped read-only; slmforge never writes
        // model files in place (fetch renames complete files over them).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("loading {}", weights.display()))?;
        let model = Bert::load(vb, &config)
            .with_context(|| format!("building BERT from {}", weights.display()))?;
        let hidden_size = model.hidden_size;
        let engine = match (backend, device) {
            (Backend::Auto, Device::Cpu) => {
                Engine::Cpu(Box::new((cpu_weights(&model)?, Default::default())))
            }
            _ => Engine::Candle(model),
        };
        Ok(Embedder {
            engine,
            hidden_size,
            tokenizer,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_tokens,
            checksum,
        })
    }

    /// Sets the number of sequences per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets the padded-token budget per forward pass (a batch always takes
    /// at least one text).
    pub fn with_max_batch_tokens(mut self, tokens: usize) -> Self {
        self.max_batch_tokens = tokens.max(1);
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.hidden_size
    }

    /// The encoder implementation in use: "cpu-packed" or "candle-ops".
    pub fn backend_name(&self) -> &'static str {
        match self.engine {
            Engine::Cpu(..) => "cpu-packed",
            Engine::Candle(_) => "candle-ops",
        }
    }

    /// Token limit per text, [CLS] and [SEP] included; longer texts are cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// sha256 of the `model.safetensors` the embedder was loaded from.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// Unit-length embeddings of `texts`, in input order.
    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        self.embed_with_progress(texts, &ProgressBar::hidden())
    }

    /// As [`Embedder::embed`], advancing `pb` by the number of texts done.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        pb: &ProgressBar,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts)?;
        let mut out = vec![Vec::new(); texts.len()];
        for batch in plan_batches(&ids, self.batch_size, self.max_batch_tokens) {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let vectors = self.embed_ids(&seqs)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
            pb.inc(batch.len() as u64);
        }
        Ok(out)
    }

    /// Token ids of each text ([CLS] ... [SEP], truncated to `max_tokens`).
    pub fn tokenize(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing {} texts: {e}", texts.len()))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Embeds one batch of token id sequences.
    fn embed_ids(&self, seqs: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        match &self.engine {
            Engine::Cpu(cpu) => {
                let (model, scratch) = &**cpu;
                let mut scratch = scratch.lock().unwrap_or_else(|e| e.into_inner());
                let hidden = model.forward(seqs, &mut scratch)?;
                let pooled = pool_packed(hidden, seqs.iter().map(|q| q.len()), self.hidden_size);
                scratch.trim(MAX_SCRATCH_BYTES);
                Ok(pooled)
            }
            Engine::Candle(model) => self.embed_ids_candle(model, seqs),
        }
    }

    /// The candle-ops path: padded (b, s) batch, masked attention and pooling.
    fn embed_ids_candle(&self, model: &Bert, seqs: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let b = seqs.len();
        let s = seqs.iter().map(|q| q.len()).max().unwrap_or(0).max(1);
        let lengths: Vec<usize> = seqs.iter().map(|q| q.len()).collect();
        let mut ids = vec![0u32; b * s];
        let mut mask = vec![0f32; b * s];
        for (row, q) in seqs.iter().enumerate() {
            ids[row * s..row * s + q.len()].copy_from_slice(q);
            mask[row * s..row * s + q.len()].fill(1.0);
        }
        let ids = Tensor::from_vec(ids, (b, s), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, s), &self.device)?;
        let hidden = model.forward(&ids, &lengths)?;
        let pooled = mean_pool(&hidden, &mask)?;
        let normed = l2_normalize(&pooled)?;
        Ok(normed.to_vec2::<f32>()?)
    }
}

/// Copies the weights of a loaded [`Bert`] (fused QKV, folded scale and
/// summed position + token-type embeddings included) for the CPU kernel.
fn cpu_weights(bert: &Bert) -> candle_core::Result<cpu::CpuBert> {
    let dense = |l: &Linear| -> candle_core::Result<cpu::Dense> {
        let (in_dim, out_dim) = l.weight_t.dims2()?;
        Ok(cpu::Dense {
            weight_t: l.weight_t.flatten_all()?.to_vec1()?,
            bias: l.bias.to_vec1()?,
            in_dim,
            out_dim,
        })
    };
    let norm = |n: &LayerNorm| -> candle_core::Result<cpu::Norm> {
        Ok(cpu::Norm {
            weight: n.weight.to_vec1()?,
            bias: n.bias.to_vec1()?,
            eps: n.eps,
        })
    };
    let layers = bert
        .layers
        .iter()
        .map(|l| {
            Ok(cpu::CpuLayer {
                qkv: dense(&l.qkv)?,
                attention_output: dense(&l.attention_output)?,
                attention_norm: norm(&l.attention_norm)?,
                intermediate: dense(&l.intermediate)?,
                output: dense(&l.output)?,
                output_norm: norm(&l.output_norm)?,
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let e = &bert.embeddings;
    let first = bert.layers.first();
    Ok(cpu::CpuBert {
        word_embeddings: e.word_embeddings.flatten_all()?.to_vec1()?,
        position_and_type: e.position_and_type.flatten_all()?.to_vec1()?,
        max_positions: e.position_and_type.dim(0)?,
        embedding_norm: norm(&e.layer_norm)?,
        layers,
        hidden: bert.hidden_size,
        heads: first.map_or(1, |l| l.heads),
        act: match first.map_or(HiddenAct::Gelu, |l| l.act) {
            HiddenAct::Gelu => cpu::Act::GeluErf,
            HiddenAct::GeluApproximate => cpu::Act::GeluTanh,
            HiddenAct::Relu => cpu::Act::Relu,
        },
    })
}

/// Mean of each sequence's rows of the packed hidden states, L2-normalised.
fn pool_packed(hidden: &[f32], lengths: impl Iterator<Item = usize>, h: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let mut row = 0;
    for len in lengths {
        let mut v = vec![0f32; h];
        for r in row..row + len {
            for (a, x) in v.iter_mut().zip(&hidden[r * h..(r + 1) * h]) {
                *a += x;
            }
        }
        row += len;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        // The mean's 1/len cancels in the normalisation.
        for a in v.iter_mut() {
            *a /= norm;
        }
        out.push(v);
    }
    out
}

/// Refuses pooling configs other than plain mean pooling.
fn check_pooling(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("1_Pooling").join("config.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(()); // absent: mean pooling, the all-MiniLM-L6-v2 default
    };
    let cfg: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing pooling config {}", path.display()))?;
    let flag = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    if !flag("pooling_mode_mean_tokens")
        || [
            "pooling_mode_cls_token",
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        ]
        .iter()
        .any(|k| flag(k))
    {
        bail!("{}: only mean pooling is supported", path.display());
    }
    Ok(())
}

/// Groups text indices into batches, longest first, so each batch holds
/// texts of similar token counts: at most `batch_size` texts and, beyond the
/// first text, at most `max_batch_tokens` padded tokens (keeps the
/// activations of long texts in cache-friendly sizes).
pub fn plan_batches(
    ids: &[Vec<u32>],
    batch_size: usize,
    max_batch_tokens: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    // Stable: equal lengths keep input order, so results are deterministic.
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted longest first: the first text of a batch sets its padded length.
        let padded_len = current
            .first()
            .map_or(ids[i].len(), |&f| ids[f].len())
            .max(1);
        if !current.is_empty()
            && (current.len() >= batch_size.max(1)
                || (current.len() + 1) * padded_len > max_batch_tokens)
        {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean of the token vectors where `mask` is 1: (b, s, h), (b, s) -> (b, h).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// Rows scaled to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norms = xs
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norms)
}

// ---------------------------------------------------------------------------
// The encoder: inference-only BERT, names as in the Hugging Face checkpoint.

/// A dense layer stored as (in, out) so the matmul reads the weight row-major.
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Self::from_parts(&weight, bias)
    }

    fn from_parts(weight: &Tensor, bias: Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }
}

impl Module for Linear {
    /// (n, in) -> (n, out).
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}

struct Embeddings {
    word_embeddings: Tensor,
    /// position_embeddings + token_type_embeddings[0] (single-segment input).
    position_and_type: Tensor,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let word_embeddings =
            vb.get((cfg.vocab_size, cfg.hidden_size), "word_embeddings.weight")?;
        let positions = vb.get(
            (cfg.max_position_embeddings, cfg.hidden_size),
            "position_embeddings.weight",
        )?;
        let types = vb.get(
            (cfg.type_vocab_size, cfg.hidden_size),
            "token_type_embeddings.weight",
        )?;
        let position_and_type = positions.broadcast_add(&types.narrow(0, 0, 1)?)?;
        let layer_norm = LayerNorm::load(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?;
        Ok(Self {
            word_embeddings,
            position_and_type,
            layer_norm,
        })
    }

    /// (b, s) token ids -> (b * s, h).
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let h = self.word_embeddings.dim(1)?;
        let words = self
            .word_embeddings
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, h))?;
        let xs = words.broadcast_add(&self.position_and_type.narrow(0, 0, s)?)?;
        self.layer_norm.forward(&xs.reshape((b * s, h))?)
    }
}

struct Layer {
    /// query, key and value in one (h, 3h) projection; query pre-scaled by 1/sqrt(head_dim).
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    act: HiddenAct,
}

impl Layer {
    fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let head_dim = h / cfg.num_attention_heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let sa = vb.pp("attention.self");
        let part = |name: &str| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((
                sa.get((h, h), &format!("{name}.weight"))?,
                sa.get(h, &format!("{name}.bias"))?,
            ))
        };
        let (qw, qb) = part("query")?;
        let (kw, kb) = part("key")?;
        let (vw, vb_) = part("value")?;
        let qkv = Linear::from_parts(
            &Tensor::cat(&[(qw * scale)?, kw, vw], 0)?,
            Tensor::cat(&[(qb * scale)?, kb, vb_], 0)?,
        )?;
        Ok(Self {
            qkv,
            attention_output: Linear::load(h, h, vb.pp("attention.output.dense"))?,
            attention_norm: LayerNorm::load(
                h,
                cfg.layer_norm_eps,
                vb.pp("attention.output.LayerNorm"),
            )?,
            intermediate: Linear::load(h, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
            output: Linear::load(cfg.intermediate_size, h, vb.pp("output.dense"))?,
            output_norm: LayerNorm::load(h, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    /// xs: (b * s, h) for b sequences padded to s tokens.
    fn forward(
        &self,
        xs: &Tensor,
        b: usize,
        s: usize,
        attn: &AttentionPlan,
    ) -> candle_core::Result<Tensor> {
        let h = xs.dim(1)?;
        let d = h / self.heads;
        let qkv = self.qkv.forward(xs)?.reshape((b, s, 3, self.heads, d))?;
        let head = |i: usize| {
            qkv.narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        // (b, heads, s, d) each.
        let (q, k, v) = (head(0)?, head(1)?, head(2)?);
        // A few sequences at a time so the (n, heads, s, s) scores stay small.
        let mut parts = Vec::with_capacity(attn.groups.len());
        for g in &attn.groups {
            let q = q.narrow(0, g.start, g.len)?;
            let k = k.narrow(0, g.start, g.len)?;
            let v = v.narrow(0, g.start, g.len)?;
            let mut scores = q.matmul(&k.t()?)?; // already scaled
            if let Some(bias) = &g.mask_bias {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            parts.push(probs.matmul(&v)?.transpose(1, 2)?.reshape((g.len * s, h))?);
        }
        let context = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 0)?
        };
        let attn_out = self
            .attention_norm
            .forward(&(self.attention_output.forward(&context)? + xs)?)?;
        let inter = self.intermediate.forward(&attn_out)?;
        let inter = match self.act {
            HiddenAct::Gelu => inter.gelu_erf()?,
            HiddenAct::GeluApproximate => inter.gelu()?,
            HiddenAct::Relu => inter.relu()?,
        };
        self.output_norm
            .forward(&(self.output.forward(&inter)? + attn_out)?)
    }
}

/// Attention scores above this many elements per group are split by sequence.
const ATTENTION_GROUP_SCORES: usize = 1 << 20;

/// How a batch is cut into sequence groups for attention, with each group's
/// additive padding mask ((n, 1, 1, s): 0 on tokens, -1e9 on padding) or None
/// when none of its sequences is padded.
struct AttentionPlan {
    groups: Vec<AttentionGroup>,
}

struct AttentionGroup {
    start: usize,
    len: usize,
    mask_bias: Option<Tensor>,
}

impl AttentionPlan {
    fn new(
        lengths: &[usize],
        s: usize,
        heads: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let per_group = (ATTENTION_GROUP_SCORES / (heads * s * s).max(1)).max(1);
        let mut groups = Vec::new();
        for start in (0..lengths.len()).step_by(per_group) {
            let lens = &lengths[start..lengths.len().min(start + per_group)];
            let mask_bias = if lens.iter().all(|&l| l == s) {
                None
            } else {
                let bias: Vec<f32> = lens
                    .iter()
                    .flat_map(|&l| (0..s).map(move |j| if j < l { 0.0 } else { -1e9 }))
                    .collect();
                Some(Tensor::from_vec(bias, (lens.len(), 1, 1, s), device)?)
            };
            groups.push(AttentionGroup {
                start,
                len: lens.len(),
                mask_bias,
            });
        }
        Ok(Self { groups })
    }
}

/// The BERT encoder (no pooler): token ids to last hidden states.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    hidden_size: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {} not divisible by {} heads",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        let embeddings = Embeddings::load(cfg, vb.pp("embeddings"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(cfg, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            hidden_size: cfg.hidden_size,
        })
    }

    /// ids: (b, s) u32, sequence `i` holding `lengths[i]` real tokens followed
    /// by padding. Returns the last hidden states, (b, s, h).
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&l| l > s) {
            candle_core::bail!("lengths {lengths:?} do not fit ids of shape ({b}, {s})");
        }
        let heads = self.layers.first().map_or(1, |l| l.heads);
        let plan = AttentionPlan::new(lengths, s, heads, ids.device())?;
        let mut xs = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, b, s, &plan)?;
        }
        xs.reshape((b, s, self.hidden_size))
    }
}
