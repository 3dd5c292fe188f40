//! The causal LM decoder for every supported family (Llama/SmolLM2, Qwen 2
//! and 3, Gemma 3) loaded from GGUF, with LoRA adapters, a differentiable
//! training forward and a KV-cache forward. What differs between families
//! is read from the file into [`LmConfig`] and the blocks' optional tensors
//! (biases, q/k norms, post-norms, sliding windows); the forward follows
//! them, never the family's name.
//!
//! * Weights: the frozen base is dequantized to f32 (`[out, in]`). q/k/v are
//!   stored stacked as one `[q + 2·kv, hidden]` matrix and gate/up as one
//!   `[2·ffn, hidden]` matrix, so each block runs four base matmuls.
//! * q/k rows stay in the GGUF order. llama.cpp permuted Llama's for the
//!   interleaved rotary embedding (pairs `2i, 2i+1`, as candle's
//!   `quantized_llama`); Qwen and Gemma keep the Hugging Face order and use
//!   NEOX RoPE (pairs `i, i + d/2`).
//! * Activations are kept flattened as `[batch·seq, width]` between blocks.
//! * Every op of the forward backpropagates (see [`super::ops`]); only LoRA
//!   tensors are variables. In inference (`train = None`) the adapters are
//!   detached, so no graph is recorded.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, IndexOp, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::decode::GroupSource;
use super::gguf::{md_str, md_u32, GgufFile};
use super::lora::{LoraConfig, LoraTarget};
use super::lora_linear::{lora_linear, LoraPart};
use super::ops::{self, AttnMask, Kernels, RopeTables};
use super::qmat::QMat;

/// Rotary tables are precomputed up to this many positions at most.
const MAX_ROPE_POSITIONS: usize = 16384;

/// The model families this decoder runs, by GGUF `general.architecture`.
/// Everything that differs between them is a property here, read once at
/// load; the forward asks the config, never the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Llama 2/3, SmolLM2, Mistral-style GGUFs (`llama`).
    Llama,
    /// Qwen 2 / 2.5 (`qwen2`): biases on q/k/v.
    Qwen2,
    /// Qwen 3 (`qwen3`): per-head q/k RMSNorm, no biases.
    Qwen3,
    /// Gemma 3 (`gemma3`): scaled embeddings, pre- and post-norms, q/k
    /// norms, GeGLU, sliding-window attention on most layers.
    Gemma3,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma3];

    /// The GGUF `general.architecture` (and metadata key prefix).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }

    pub fn from_gguf_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// Hugging Face `model_type` of the base (PEFT's `adapter_config.json`).
    pub fn hf_model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3_text",
        }
    }

    /// llama.cpp's converter permutes Llama's q/k rows for interleaved
    /// RoPE; the other families keep the Hugging Face row order and use
    /// NEOX RoPE.
    pub fn interleaved_rope(self) -> bool {
        self == Arch::Llama
    }
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LmConfig {
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rope_theta: f32,
    /// Linear RoPE scaling factor (positions are divided by it); 1 for none.
    pub rope_linear_factor: f32,
    pub rms_eps: f64,
    pub context_length: usize,
    /// Sliding-window attention: the window and the RoPE base of the
    /// sliding layers (Gemma 3: 512 and 10,000).
    pub sliding_window: Option<usize>,
    pub rope_theta_local: f32,
    /// Every `n`-th layer (1-based) attends globally; the others slide.
    pub sliding_pattern: usize,
    /// Embeddings multiplied by √hidden (Gemma).
    pub scale_embeddings: bool,
    /// GeGLU (tanh GELU) instead of SwiGLU in the feed-forward.
    pub gelu_ffn: bool,
    /// Attention scores are scaled by `1 / √query_scale_dim`: the head
    /// dimension, except Gemma 3 27B (hidden / heads, as llama.cpp).
    pub query_scale_dim: usize,
}

impl LmConfig {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// `(in, out)` of a target projection.
    pub fn target_dims(&self, t: LoraTarget) -> (usize, usize) {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        match t {
            LoraTarget::Q => (h, self.q_dim()),
            LoraTarget::K | LoraTarget::V => (h, self.kv_dim()),
            LoraTarget::O => (self.q_dim(), h),
            LoraTarget::Gate | LoraTarget::Up => (h, f),
            LoraTarget::Down => (f, h),
        }
    }

    /// The sliding window of layer `layer` (0-based), `None` for a global one.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        let w = self.sliding_window?;
        let global = self.sliding_pattern > 0 && (layer + 1).is_multiple_of(self.sliding_pattern);
        (!global).then_some(w)
    }

    /// Reads `{arch}.*` keys. Other architectures are refused with a clear error.
    pub fn from_gguf(f: &GgufFile) -> Result<LmConfig> {
        let md = f.metadata();
        let name = md_str(md, "general.architecture").unwrap_or("llama");
        let Some(arch) = Arch::from_gguf_name(name) else {
            bail!(
                "unsupported model architecture {name:?}: supported are {}",
                Arch::ALL.map(|a| a.gguf_name()).join(", ")
            )
        };
        let pre = arch.gguf_name();
        let key = |k: &str| format!("{pre}.{k}");
        let get = |k: &str| md_u32(md, &key(k)).map(|v| v as usize);
        let getf = |k: &str| super::gguf::md_f32(md, &key(k));
        let hidden_size = get("embedding_length")?;
        let num_heads = get("attention.head_count")?;
        let num_kv_heads = get("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = get("attention.key_length").unwrap_or(hidden_size / num_heads.max(1));
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            bail!("invalid head counts: {num_heads} heads, {num_kv_heads} KV heads")
        }
        if head_dim % 2 != 0 {
            bail!("head dimension {head_dim} is odd")
        }
        if let Ok(vd) = get("attention.value_length") {
            if vd != head_dim {
                bail!("value head dimension {vd} differs from the key's {head_dim}")
            }
        }
        if let Ok(rd) = get("rope.dimension_count") {
            if rd != head_dim {
                bail!("partial rotary embeddings (rope dim {rd} < head dim {head_dim}) are not supported")
            }
        }
        let vocab_size = match get("vocab_size") {
            Ok(v) => v,
            Err(_) => super::gguf::md_array(md, "tokenizer.ggml.tokens")
                .map(|a| a.len())
                .unwrap_or(0),
        };
        let rope_linear_factor = match md_str(md, &key("rope.scaling.type")) {
            Ok("linear") => getf("rope.scaling.factor").unwrap_or(1.0),
            _ => 1.0,
        };
        let gemma = arch == Arch::Gemma3;
        let sliding_window = if gemma {
            Some(get("attention.sliding_window").unwrap_or(512))
        } else {
            None
        };
        if sliding_window == Some(0) {
            bail!("sliding window of 0 tokens")
        }
        Ok(LmConfig {
            arch,
            hidden_size,
            intermediate_size: get("feed_forward_length")?,
            num_layers: get("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rope_theta: getf("rope.freq_base").unwrap_or(if gemma {
                1_000_000.0
            } else {
                10_000.0
            }),
            rope_linear_factor,
            rms_eps: getf("attention.layer_norm_rms_epsilon").unwrap_or(if gemma {
                1e-6
            } else {
                1e-5
            }) as f64,
            context_length: get("context_length").unwrap_or(2048),
            sliding_window,
            rope_theta_local: getf("rope.local_freq_base").unwrap_or(10_000.0),
            // Gemma 3: five sliding layers, then a global one
            sliding_pattern: get("attention.sliding_window_pattern").unwrap_or(6),
            scale_embeddings: gemma,
            gelu_ffn: gemma,
            query_scale_dim: if gemma && get("block_count")? == 62 {
                hidden_size / num_heads
            } else {
                head_dim
            },
        })
    }
}

/// One LoRA adapter: `A: [rank, in]`, `B: [out, rank]`.
#[derive(Clone, Debug)]
pub struct LoraPair {
    pub a: Var,
    pub b: Var,
}

#[derive(Clone, Debug)]
pub(super) struct Block {
    pub(super) attn_norm: Tensor,
    pub(super) ffn_norm: Tensor,
    /// Norms of the attention and feed-forward outputs (Gemma).
    pub(super) post_attn_norm: Option<Tensor>,
    pub(super) post_ffn_norm: Option<Tensor>,
    /// Per-head RMSNorm weights `[head_dim]` of q and k (Qwen 3, Gemma 3).
    pub(super) q_norm: Option<Tensor>,
    pub(super) k_norm: Option<Tensor>,
    /// `[q_dim + 2·kv_dim]` biases of q, k, v (Qwen 2), frozen.
    pub(super) bqkv: Option<Tensor>,
    /// Sliding window of this layer (`None`: global attention).
    pub(super) window: Option<usize>,
    /// `[q_dim + 2·kv_dim, hidden]`: q rows, then k, then v.
    pub(super) wqkv: Tensor,
    /// `[hidden, q_dim]`.
    pub(super) wo: Tensor,
    /// `[2·ffn, hidden]`: gate rows, then up.
    pub(super) wgu: Tensor,
    /// `[hidden, ffn]`.
    pub(super) wdown: Tensor,
    /// Indexed by [`LoraTarget::index`].
    pub(super) lora: [Option<LoraPair>; 7],
}

/// The model. Cloning is cheap (tensors are shared); a clone shares the
/// LoRA variables too.
#[derive(Clone, Debug)]
pub struct CausalLm {
    pub(super) cfg: LmConfig,
    pub(super) device: Device,
    pub(super) kernels: Kernels,
    pub(super) embed: Tensor,
    pub(super) lm_head: Tensor,
    pub(super) norm: Tensor,
    pub(super) blocks: Vec<Block>,
    pub(super) rope: RopeTables,
    /// RoPE tables of the sliding-window layers, when their base differs.
    pub(super) rope_local: Option<RopeTables>,
    pub(super) lora_cfg: Option<LoraConfig>,
    /// Quantized weights for decoding ([`super::decode`]); `None` after
    /// a merge or where a width does not fit the blocks.
    pub(super) qdec: Option<Arc<super::decode::DecodeWeights>>,
    /// Whether generation decodes on `qdec` (on by default).
    pub(super) quantized_decode: bool,
    /// The same model with its adapters merged, for prompt processing
    /// (large products are faster on merged f32 weights than with the
    /// adapters' extra products); decoding stays on the unmerged adapters.
    pub(super) prefill: Option<Arc<CausalLm>>,
}

/// Per-layer key/value cache for generation: `[batch, kv_heads, capacity, head_dim]`,
/// filled up to `len`. Row `b` of the batch is left-padded by `pad_left[b]`.
pub struct KvCache {
    pub(super) layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
    pad_left: Arc<Vec<usize>>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn batch(&self) -> usize {
        self.pad_left.len()
    }

    pub fn pad_left(&self) -> &[usize] {
        &self.pad_left
    }
}

/// Where the LM head is applied when computing a training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadPositions {
    /// Only at the positions that predict an answer token (cheaper).
    Answer,
    /// At every position, with the loss masked afterwards (reference).
    All,
}

/// A right-padded training batch built from [`super::chat::TrainExample`]s.
pub struct TrainBatch {
    /// `[batch, seq]` u32.
    pub ids: Tensor,
    /// Flattened positions (`b·seq + t`) whose next token is an answer token.
    pub rows: Tensor,
    /// The answer token predicted at each of `rows`.
    pub targets: Arc<Vec<u32>>,
    /// Next token at every flattened position (0 where there is none).
    pub all_targets: Arc<Vec<u32>>,
    /// 1.0 where `all_targets` is an answer token, else 0.0: `[batch·seq]`.
    pub all_weights: Tensor,
    /// Number of answer tokens the loss averages over.
    pub n_answer: usize,
    /// Non-padding tokens in the batch.
    pub n_tokens: usize,
}

impl TrainBatch {
    pub fn new(
        examples: &[super::chat::TrainExample],
        pad_id: u32,
        device: &Device,
    ) -> Result<TrainBatch> {
        if examples.is_empty() {
            bail!("empty training batch")
        }
        let s = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        if s < 2 {
            bail!("training examples need at least two tokens")
        }
        let b = examples.len();
        let mut ids = vec![pad_id; b * s];
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut all_targets = vec![0u32; b * s];
        let mut weights = vec![0f32; b * s];
        let mut n_tokens = 0;
        for (bi, e) in examples.iter().enumerate() {
            if e.answer_mask.len() != e.ids.len() {
                bail!(
                    "training example {bi}: mask length {} != {} ids",
                    e.answer_mask.len(),
                    e.ids.len()
                )
            }
            n_tokens += e.ids.len();
            ids[bi * s..bi * s + e.ids.len()].copy_from_slice(&e.ids);
            for t in 1..e.ids.len() {
                let row = bi * s + t - 1;
                all_targets[row] = e.ids[t];
                if e.answer_mask[t] {
                    rows.push(row as u32);
                    targets.push(e.ids[t]);
                    weights[row] = 1.0;
                }
            }
        }
        if rows.is_empty() {
            bail!("training batch has no answer tokens")
        }
        Ok(TrainBatch {
            ids: Tensor::from_vec(ids, (b, s), device)?,
            n_answer: rows.len(),
            rows: Tensor::new(rows.as_slice(), device)?,
            targets: Arc::new(targets),
            all_targets: Arc::new(all_targets),
            all_weights: Tensor::from_vec(weights, b * s, device)?,
            n_tokens,
        })
    }
}

struct AttnCtx {
    b: usize,
    s: usize,
    positions: Arc<Vec<u32>>,
    mask: AttnMask,
}

fn check_shape(t: &Tensor, dims: &[usize], name: &str) -> Result<()> {
    if t.dims() != dims {
        bail!("tensor {name} has shape {:?}, expected {dims:?}", t.dims())
    }
    Ok(())
}

impl CausalLm {
    /// Loads the model from an opened GGUF file onto `device`.
    pub fn load(f: &mut GgufFile, device: &Device) -> Result<CausalLm> {
        let cfg = LmConfig::from_gguf(f)?;
        let h = cfg.hidden_size;
        let vocab = f
            .tensor_dims("token_embd.weight")?
            .first()
            .copied()
            .unwrap_or(0);
        // the embedding is the decoder's head only when the file ties them
        let tied = !f.has_tensor("output.weight");
        let (embed, embed_q) = read_weight(f, "token_embd.weight", &[vocab, h], device, tied)?;
        let (lm_head, head_q) = if tied {
            (embed.clone(), embed_q)
        } else {
            read_weight(f, "output.weight", &[vocab, h], device, true)?
        };
        let norm = f.tensor_f32("output_norm.weight", device)?;
        check_shape(&norm, &[h], "output_norm.weight")?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        let mut qparts = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let (blk, own) = load_block(f, i, &cfg, device)?;
            blocks.push(blk);
            qparts.push(own);
        }
        let half = cfg.head_dim / 2;
        let freqs = |theta: f32| -> Vec<f32> {
            (0..half)
                .map(|i| 1f32 / theta.powf((2 * i) as f32 / cfg.head_dim as f32))
                .collect()
        };
        let mut inv_freq = freqs(cfg.rope_theta);
        if f.has_tensor("rope_freqs.weight") {
            // Llama 3.x frequency factors: llama.cpp divides each pair's frequency.
            let factors: Vec<f32> = f
                .tensor_f32("rope_freqs.weight", device)?
                .flatten_all()?
                .to_vec1()?;
            if factors.len() != half {
                bail!(
                    "rope_freqs.weight has {} factors, expected {half}",
                    factors.len()
                )
            }
            inv_freq.iter_mut().zip(&factors).for_each(|(f, d)| *f /= d);
        }
        let max_pos = cfg.context_length.clamp(1, MAX_ROPE_POSITIONS);
        let rope = RopeTables::new(&inv_freq, max_pos, 1.0 / cfg.rope_linear_factor, device)?;
        // sliding layers: their own base, no frequency factors or scaling
        // (llama.cpp's freq_base_swa / freq_scale_swa = 1)
        let rope_local = match cfg.sliding_window {
            Some(_) if cfg.rope_theta_local != cfg.rope_theta || cfg.rope_linear_factor != 1.0 => {
                Some(RopeTables::new(
                    &freqs(cfg.rope_theta_local),
                    max_pos,
                    1.0,
                    device,
                )?)
            }
            _ => None,
        };
        let cfg = LmConfig {
            vocab_size: vocab,
            ..cfg
        };
        let qdec = if device.is_cpu() {
            Some(Arc::new(decode_weights(
                qparts, &blocks, head_q, &lm_head, &cfg,
            )?))
        } else {
            None
        };
        Ok(CausalLm {
            cfg,
            device: device.clone(),
            kernels: Kernels::default(),
            embed,
            lm_head,
            norm,
            blocks,
            rope,
            rope_local,
            lora_cfg: None,
            qdec,
            quantized_decode: std::env::var_os("SLMFORGE_F32_DECODE").is_none(),
            prefill: None,
        })
    }

    /// `x · Wᵀ` with weight `i` of block `blk` (0 qkv, 1 o, 2 gate-up, 3 down).
    fn proj(&self, blk: &Block, i: usize, x: &Tensor) -> Result<Tensor> {
        let w = [&blk.wqkv, &blk.wo, &blk.wgu, &blk.wdown][i];
        Ok(ops::linear(x, w, self.kernels)?)
    }

    /// Whether generation decodes on quantized weights (the default when
    /// the model has them: see [`super::decode`]); off, every step runs
    /// the f32 path.
    pub fn set_quantized_decode(&mut self, on: bool) {
        self.quantized_decode = on;
    }

    /// The quantized decode weights, when there are any.
    pub fn decode_weights(&self) -> Option<&super::decode::DecodeWeights> {
        self.qdec.as_deref()
    }

    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn set_kernels(&mut self, k: Kernels) {
        self.kernels = k;
    }

    /// The rotary tables of a layer with this sliding window (`None`: global).
    pub(super) fn rope_for(&self, window: Option<usize>) -> &RopeTables {
        match (&self.rope_local, window) {
            (Some(local), Some(_)) => local,
            _ => &self.rope,
        }
    }

    /// Largest position the rotary tables cover.
    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }

    // -----------------------------------------------------------------------
    // LoRA.

    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora_cfg.as_ref()
    }

    /// Adds fresh adapters (A uniform in ±1/√in, B zero, as PEFT does) on
    /// every target of every block, replacing any present.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        cfg.validate()?;
        self.prefill = None;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let r = cfg.rank;
        for blk in &mut self.blocks {
            blk.lora = Default::default();
            for t in LoraTarget::ALL {
                if !cfg.targets_set(t) {
                    continue;
                }
                let (inp, out) = self.cfg.target_dims(t);
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..r * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &self.device)?)?;
                let b = Var::from_tensor(&Tensor::zeros((out, r), DType::F32, &self.device)?)?;
                blk.lora[t.index()] = Some(LoraPair { a, b });
            }
        }
        self.lora_cfg = Some(cfg.clone());
        Ok(())
    }

    /// Installs adapters from training-layout tensors; every tensor the config
    /// implies must be present with the right shape, and no other.
    pub fn set_lora_tensors(
        &mut self,
        cfg: &LoraConfig,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        cfg.validate()?;
        self.prefill = None;
        let mut used = 0;
        let mut blocks = self.blocks.clone();
        for (i, blk) in blocks.iter_mut().enumerate() {
            blk.lora = Default::default();
            for t in LoraTarget::ALL {
                if !cfg.targets_set(t) {
                    continue;
                }
                let (inp, out) = self.cfg.target_dims(t);
                let (an, bn) = t.tensor_names(i);
                let a = tensors
                    .get(&an)
                    .with_context(|| format!("adapter tensor {an} is missing"))?;
                let b = tensors
                    .get(&bn)
                    .with_context(|| format!("adapter tensor {bn} is missing"))?;
                check_shape(a, &[cfg.rank, inp], &an)?;
                check_shape(b, &[out, cfg.rank], &bn)?;
                let a = Var::from_tensor(&a.to_dtype(DType::F32)?.to_device(&self.device)?)?;
                let b = Var::from_tensor(&b.to_dtype(DType::F32)?.to_device(&self.device)?)?;
                blk.lora[t.index()] = Some(LoraPair { a, b });
                used += 2;
            }
        }
        if used != tensors.len() {
            let mut extra: Vec<&String> = tensors
                .keys()
                .filter(|n| {
                    !(0..self.cfg.num_layers).any(|i| {
                        cfg.targets.iter().any(|t| {
                            let (a, b) = t.tensor_names(i);
                            **n == a || **n == b
                        })
                    })
                })
                .collect();
            extra.sort();
            bail!(
                "adapter holds {} unexpected tensors (first: {:?})",
                extra.len(),
                extra.first()
            )
        }
        self.blocks = blocks;
        self.lora_cfg = Some(cfg.clone());
        Ok(())
    }

    /// Drops all adapters.
    pub fn remove_lora(&mut self) {
        self.prefill = None;
        for blk in &mut self.blocks {
            blk.lora = Default::default();
        }
        self.lora_cfg = None;
    }

    /// Adapter variables with their training-layout names, by layer then target.
    pub fn lora_named_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, blk) in self.blocks.iter().enumerate() {
            for t in LoraTarget::ALL {
                if let Some(p) = &blk.lora[t.index()] {
                    let (an, bn) = t.tensor_names(i);
                    out.push((an, p.a.clone()));
                    out.push((bn, p.b.clone()));
                }
            }
        }
        out
    }

    /// The trainable variables (for the optimizer).
    pub fn lora_vars(&self) -> Vec<Var> {
        self.lora_named_vars().into_iter().map(|(_, v)| v).collect()
    }

    /// Snapshot of the adapter tensors (detached copies of the values).
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        self.lora_named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect()
    }

    pub fn lora_pair(&self, layer: usize, target: LoraTarget) -> Option<&LoraPair> {
        self.blocks.get(layer)?.lora[target.index()].as_ref()
    }

    /// The frozen base weight `[out, in]` of a projection.
    pub fn base_weight(&self, layer: usize, target: LoraTarget) -> Result<Tensor> {
        let blk = self
            .blocks
            .get(layer)
            .with_context(|| format!("no layer {layer}"))?;
        let (qd, kvd, ff) = (
            self.cfg.q_dim(),
            self.cfg.kv_dim(),
            self.cfg.intermediate_size,
        );
        let w = match target {
            LoraTarget::Q => blk.wqkv.narrow(0, 0, qd)?,
            LoraTarget::K => blk.wqkv.narrow(0, qd, kvd)?,
            LoraTarget::V => blk.wqkv.narrow(0, qd + kvd, kvd)?,
            LoraTarget::O => blk.wo.clone(),
            LoraTarget::Gate => blk.wgu.narrow(0, 0, ff)?,
            LoraTarget::Up => blk.wgu.narrow(0, ff, ff)?,
            LoraTarget::Down => blk.wdown.clone(),
        };
        Ok(w.contiguous()?)
    }

    /// `W + scale · B · A` for a projection (just `W` without an adapter there).
    pub fn merged_weight(&self, layer: usize, target: LoraTarget) -> Result<Tensor> {
        let w = self.base_weight(layer, target)?;
        match (self.lora_pair(layer, target), &self.lora_cfg) {
            (Some(p), Some(cfg)) => {
                let delta =
                    (p.b.as_tensor().detach().matmul(&p.a.as_tensor().detach())? * cfg.scale())?;
                Ok((w + delta)?)
            }
            _ => Ok(w),
        }
    }

    /// A copy of the model with every adapter folded into the base weights
    /// (for fast inference and export); the copy has no adapters.
    pub fn merge_lora(&self) -> Result<CausalLm> {
        self.merged_copy(false)
    }

    /// [`Self::merge_lora`]; with `prefill`, each merged projection is
    /// stored `[in, out]` ([`ops::prefill_layout`]) as it is made, for a
    /// model that only processes prompts.
    fn merged_copy(&self, prefill: bool) -> Result<CausalLm> {
        let mut out = self.clone();
        let lay = |w: Tensor| -> Result<Tensor> {
            match prefill {
                true => Ok(ops::prefill_layout(&w)?),
                false => Ok(w),
            }
        };
        for (i, blk) in out.blocks.iter_mut().enumerate() {
            let m = |t| self.merged_weight(i, t);
            blk.wqkv = lay(Tensor::cat(
                &[m(LoraTarget::Q)?, m(LoraTarget::K)?, m(LoraTarget::V)?],
                0,
            )?)?;
            blk.wo = lay(m(LoraTarget::O)?)?;
            blk.wgu = lay(Tensor::cat(&[m(LoraTarget::Gate)?, m(LoraTarget::Up)?], 0)?)?;
            blk.wdown = lay(m(LoraTarget::Down)?)?;
            blk.lora = Default::default();
        }
        // the quantized base would not hold the merged adapters
        out.qdec = None;
        out.prefill = None;
        out.lora_cfg = None;
        Ok(out)
    }

    /// The model to generate with. When it decodes on quantized weights:
    /// this one, adapters unmerged for decoding (one base serves every
    /// adapter, and quantized decoding is faster than merged f32 weights),
    /// with a copy for prompt processing, adapters merged. The projections
    /// that process prompts are stored `[in, out]` (gemm's faster layout
    /// for prompts of a few to a few hundred tokens: `slmforge bench
    /// lm-gemm`); the f32 weights of a model without adapters are re-laid
    /// in place. Otherwise a copy with the adapters merged.
    pub fn for_inference(&self) -> Result<CausalLm> {
        let mut m = self.clone();
        m.make_inference()?;
        Ok(m)
    }

    /// [`Self::for_inference`] in place: a weight that nothing else shares
    /// is freed as its re-laid copy is made.
    pub fn make_inference(&mut self) -> Result<()> {
        let decodes = self.qdec.is_some() && self.quantized_decode && self.device.is_cpu();
        match (decodes && self.kernels.fused, &self.lora_cfg) {
            (true, Some(_)) => self.prefill = Some(Arc::new(self.merged_copy(true)?)),
            (true, None) => {
                for blk in &mut self.blocks {
                    for w in [&mut blk.wqkv, &mut blk.wo, &mut blk.wgu, &mut blk.wdown] {
                        *w = ops::prefill_layout(w)?;
                    }
                }
            }
            (false, Some(_)) => *self = self.merge_lora()?,
            (false, None) => {}
        }
        Ok(())
    }

    /// The model prompts are processed with: the copy
    /// [`CausalLm::for_inference`] made, else this one.
    pub fn prefill_model(&self) -> &CausalLm {
        self.prefill.as_deref().unwrap_or(self)
    }

    fn lora_delta(
        &self,
        p: &LoraPair,
        x: &Tensor,
        train: &mut Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let cfg = self
            .lora_cfg
            .as_ref()
            .context("adapter without a LoRA config")?;
        let (a, b) = match train {
            Some(_) => (p.a.as_tensor().clone(), p.b.as_tensor().clone()),
            None => (p.a.as_tensor().detach(), p.b.as_tensor().detach()),
        };
        let x = match train {
            Some(rng) if cfg.dropout > 0.0 => dropout(x, cfg.dropout, rng)?,
            _ => x.clone(),
        };
        // Scale the rank-r intermediate, not the full-width output.
        Ok((x.matmul(&a.t()?)? * cfg.scale())?.matmul(&b.t()?)?)
    }

    /// Projection `i` (0 q|k|v, 1 o, 2 gate|up, 3 down) of `x` with the
    /// adapters of its parts as one graph node ([`lora_linear`]), when
    /// the kernels allow and no LoRA dropout applies; `None`: the caller
    /// adds each adapter's delta to [`Self::proj`] (the composite form).
    fn fused_proj(
        &self,
        blk: &Block,
        i: usize,
        x: &Tensor,
        training: bool,
    ) -> Result<Option<Tensor>> {
        let Some(lcfg) = &self.lora_cfg else {
            return Ok(None);
        };
        if training && lcfg.dropout > 0.0 {
            return Ok(None);
        }
        let c = &self.cfg;
        let (h, f, qd, kvd) = (c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
        let targets: &[(LoraTarget, usize)] = match i {
            0 => &[
                (LoraTarget::Q, qd),
                (LoraTarget::K, kvd),
                (LoraTarget::V, kvd),
            ],
            1 => &[(LoraTarget::O, h)],
            2 => &[(LoraTarget::Gate, f), (LoraTarget::Up, f)],
            _ => &[(LoraTarget::Down, h)],
        };
        let (mut parts, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0;
        for &(t, width) in targets {
            if let Some(p) = &blk.lora[t.index()] {
                parts.push(LoraPart { offset, width });
                let (pa, pb) = (p.a.as_tensor(), p.b.as_tensor());
                match training {
                    true => (a.push(pa.clone()), b.push(pb.clone())),
                    false => (a.push(pa.detach()), b.push(pb.detach())),
                };
            }
            offset += width;
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let w = [&blk.wqkv, &blk.wo, &blk.wgu, &blk.wdown][i];
        let stack = |mut v: Vec<Tensor>| match v.len() {
            1 => Ok(v.pop().expect("one tensor")),
            _ => Tensor::cat(&v, 0),
        };
        let (a, b) = (stack(a)?, stack(b)?);
        let mut dims = x.dims().to_vec();
        let x2 = x.reshape(((), *dims.last().context("projection of a scalar")?))?;
        let Some(y) = lora_linear(&x2, w, &a, &b, &parts, lcfg.scale(), self.kernels)? else {
            return Ok(None);
        };
        if let Some(l) = dims.last_mut() {
            *l = w.dim(0)?;
        }
        Ok(Some(y.reshape(dims)?))
    }

    /// Projection `i` (o or down: one part, adapter `t`) of `x` with its
    /// adapter: fused when [`Self::fused_proj`] can, else composite.
    fn single_proj(
        &self,
        blk: &Block,
        i: usize,
        t: LoraTarget,
        x: &Tensor,
        train: &mut Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        if let Some(y) = self.fused_proj(blk, i, x, train.is_some())? {
            return Ok(y);
        }
        let y = self.proj(blk, i, x)?;
        match &blk.lora[t.index()] {
            Some(p) => Ok((y + self.lora_delta(p, x, train)?)?),
            None => Ok(y),
        }
    }

    // -----------------------------------------------------------------------
    // Forward.

    fn block_forward(
        &self,
        li: usize,
        x: &Tensor,
        ctx: &AttnCtx,
        cache: Option<(&mut (Tensor, Tensor), usize)>,
        train: &mut Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let blk = &self.blocks[li];
        let cfg = &self.cfg;
        let k = self.kernels;
        let (b, s) = (ctx.b, ctx.s);
        let (nh, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);

        // Attention.
        let h = ops::rms_norm(x, &blk.attn_norm, cfg.rms_eps, k)?;
        let fused_qkv = self.fused_proj(blk, 0, &h, train.is_some())?;
        let adapters_in_qkv = fused_qkv.is_none();
        let mut qkv = match fused_qkv {
            Some(y) => y,
            None => self.proj(blk, 0, &h)?,
        };
        if let Some(bias) = &blk.bqkv {
            qkv = qkv.broadcast_add(bias)?;
        }
        let qkv = qkv.reshape((b, s, nh + 2 * kvh, hd))?;
        let mut q = qkv.narrow(2, 0, nh)?;
        let mut kk = qkv.narrow(2, nh, kvh)?;
        let mut v = qkv.narrow(2, nh + kvh, kvh)?;
        for (t, dst, heads) in [
            (LoraTarget::Q, &mut q, nh),
            (LoraTarget::K, &mut kk, kvh),
            (LoraTarget::V, &mut v, kvh),
        ] {
            if let Some(p) = blk.lora[t.index()].as_ref().filter(|_| adapters_in_qkv) {
                let d = self.lora_delta(p, &h, train)?.reshape((b, s, heads, hd))?;
                *dst = (&*dst + d)?;
            }
        }
        // per-head RMSNorm of q and k before the rotation (Qwen 3, Gemma 3)
        let head_norm = |t: Tensor, w: &Option<Tensor>| -> Result<Tensor> {
            match w {
                Some(w) => Ok(ops::rms_norm(&t, w, cfg.rms_eps, k)?),
                None => Ok(t),
            }
        };
        let q = head_norm(q, &blk.q_norm)?;
        let kk = head_norm(kk, &blk.k_norm)?;
        let rope = self.rope_for(blk.window);
        let neox = !cfg.arch.interleaved_rope();
        let q = ops::rope(&q.transpose(1, 2)?, rope, &ctx.positions, neox, k)?;
        let kk = ops::rope(&kk.transpose(1, 2)?, rope, &ctx.positions, neox, k)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (k_all, v_all) = match cache {
            Some((c, offset)) => {
                c.0.slice_set(&kk, 2, offset)?;
                c.1.slice_set(&v, 2, offset)?;
                (c.0.narrow(2, 0, offset + s)?, c.1.narrow(2, 0, offset + s)?)
            }
            None => (kk, v),
        };
        let scale = 1.0 / (cfg.query_scale_dim as f64).sqrt();
        let windowed;
        let mask = match blk.window {
            Some(w) => {
                windowed = ctx.mask.with_window(Some(w));
                &windowed
            }
            None => &ctx.mask,
        };
        let o = match ops::decode_attention(&q, &k_all, &v_all, scale, mask, k)? {
            Some(o) => o,
            None => ops::attention(&q, &k_all, &v_all, scale, mask, k)?,
        };
        let o = o.transpose(1, 2)?.reshape((b * s, nh * hd))?;
        let mut attn = self.single_proj(blk, 1, LoraTarget::O, &o, train)?;
        if let Some(w) = &blk.post_attn_norm {
            attn = ops::rms_norm(&attn, w, cfg.rms_eps, k)?;
        }
        let x = (x + attn)?;

        // SwiGLU feed-forward.
        let h = ops::rms_norm(&x, &blk.ffn_norm, cfg.rms_eps, k)?;
        let fused_gu = self.fused_proj(blk, 2, &h, train.is_some())?;
        let adapters_in_gu = fused_gu.is_none();
        let mut gu = match fused_gu {
            Some(y) => y,
            None => self.proj(blk, 2, &h)?,
        };
        let (lg, lu) = (
            &blk.lora[LoraTarget::Gate.index()],
            &blk.lora[LoraTarget::Up.index()],
        );
        if adapters_in_gu && (lg.is_some() || lu.is_some()) {
            let n = b * s;
            let ff = cfg.intermediate_size;
            let part =
                |p: &Option<LoraPair>, train: &mut Option<&mut ChaCha8Rng>| -> Result<Tensor> {
                    match p {
                        Some(p) => self.lora_delta(p, &h, train),
                        None => Ok(Tensor::zeros((n, ff), DType::F32, &self.device)?),
                    }
                };
            let dg = part(lg, train)?;
            let du = part(lu, train)?;
            gu = (gu + Tensor::cat(&[dg, du], 1)?)?;
        }
        let act = ops::gated(&gu, cfg.gelu_ffn, k)?;
        let mut down = self.single_proj(blk, 3, LoraTarget::Down, &act, train)?;
        if let Some(w) = &blk.post_ffn_norm {
            down = ops::rms_norm(&down, w, cfg.rms_eps, k)?;
        }
        Ok((x + down)?)
    }

    fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let flat = ids.flatten_all()?;
        if let Some(&bad) = flat
            .to_vec1::<u32>()?
            .iter()
            .find(|&&t| t as usize >= self.cfg.vocab_size)
        {
            bail!(
                "token id {bad} outside the vocabulary of {}",
                self.cfg.vocab_size
            )
        }
        let x = self.embed.index_select(&flat, 0)?;
        if self.cfg.scale_embeddings {
            // Gemma: the normaliser √hidden, rounded to the activations' type
            let norm = (self.cfg.hidden_size as f32).sqrt();
            return Ok((x * norm as f64)?);
        }
        Ok(x)
    }

    /// Hidden states after the final norm, `[batch, seq, hidden]`, for whole
    /// sequences `ids: [batch, seq]` (u32). `pad_left[b]` leading tokens of
    /// row `b` are padding (empty slice: none). `train = Some(rng)` records
    /// the graph through the adapters and applies LoRA dropout with `rng`.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        pad_left: &[usize],
        mut train: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let pad = normalize_pad(pad_left, b, s)?;
        let positions: Vec<u32> = (0..b)
            .flat_map(|bi| {
                let p = pad[bi];
                (0..s).map(move |t| t.saturating_sub(p) as u32)
            })
            .collect();
        let ctx = AttnCtx {
            b,
            s,
            positions: Arc::new(positions),
            mask: AttnMask {
                q_len: s,
                q_offset: 0,
                pad_left: Arc::new(pad),
                window: None,
            },
        };
        let mut x = self.embed_ids(ids)?;
        for li in 0..self.blocks.len() {
            x = self.block_forward(li, &x, &ctx, None, &mut train)?;
        }
        let x = ops::rms_norm(&x, &self.norm, self.cfg.rms_eps, self.kernels)?;
        Ok(x.reshape((b, s, self.cfg.hidden_size))?)
    }

    /// The LM head on hidden states `[.., hidden]`, giving `[.., vocab]`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(ops::linear(hidden, &self.lm_head, self.kernels)?)
    }

    /// Logits at every position, `[batch, seq, vocab]` (inference, no graph).
    pub fn forward(&self, ids: &Tensor, pad_left: &[usize]) -> Result<Tensor> {
        let h = self.forward_hidden(ids, pad_left, None)?;
        self.lm_head(&h)
    }

    /// An empty cache for `pad_left.len()` rows and up to `capacity` tokens.
    pub fn new_cache(&self, pad_left: Vec<usize>, capacity: usize) -> Result<KvCache> {
        let b = pad_left.len();
        if b == 0 {
            bail!("a KV cache needs at least one row")
        }
        let shape = (b, self.cfg.num_kv_heads, capacity, self.cfg.head_dim);
        let layers = (0..self.blocks.len())
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, DType::F32, &self.device)?,
                    Tensor::zeros(shape, DType::F32, &self.device)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
            pad_left: Arc::new(pad_left),
        })
    }

    /// Feeds `ids: [batch, s]` after what the cache holds; returns the logits of
    /// the last fed position of each row, `[batch, vocab]`.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if b != cache.batch() {
            bail!("batch of {b} rows fed to a cache for {}", cache.batch())
        }
        let offset = cache.len;
        if offset + s > cache.capacity {
            bail!(
                "KV cache full: {offset} + {s} tokens > capacity {}",
                cache.capacity
            )
        }
        let pad = cache.pad_left.clone();
        let positions: Vec<u32> = (0..b)
            .flat_map(|bi| {
                let p = pad[bi];
                (0..s).map(move |t| (offset + t).saturating_sub(p) as u32)
            })
            .collect();
        let ctx = AttnCtx {
            b,
            s,
            positions: Arc::new(positions),
            mask: AttnMask {
                q_len: s,
                q_offset: offset,
                pad_left: cache.pad_left.clone(),
                window: None,
            },
        };
        let mut x = self.embed_ids(ids)?;
        let mut none = None;
        for (li, c) in cache.layers.iter_mut().enumerate() {
            x = self.block_forward(li, &x, &ctx, Some((c, offset)), &mut none)?;
        }
        cache.len += s;
        let last = x
            .reshape((b, s, self.cfg.hidden_size))?
            .i((.., s - 1, ..))?
            .contiguous()?;
        let last = ops::rms_norm(&last, &self.norm, self.cfg.rms_eps, self.kernels)?;
        self.lm_head(&last)
    }

    /// Mean negative log-likelihood of the answer tokens of `batch`.
    /// `train = Some(rng)` for a training step (graph through the adapters).
    pub fn loss(
        &self,
        batch: &TrainBatch,
        head: HeadPositions,
        train: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(&batch.ids, &[], train)?;
        let flat = hidden.reshape(((), self.cfg.hidden_size))?;
        match head {
            HeadPositions::Answer => {
                let sel = flat.index_select(&batch.rows, 0)?;
                let nll =
                    ops::head_cross_entropy(&sel, &self.lm_head, &batch.targets, self.kernels)?;
                Ok(nll.mean_all()?)
            }
            HeadPositions::All => {
                let logits = self.lm_head(&flat)?;
                let nll = ops::cross_entropy(&logits, &batch.all_targets, self.kernels)?;
                Ok(((nll * &batch.all_weights)?.sum_all()? / batch.n_answer as f64)?)
            }
        }
    }
}

/// A tensor as f32 and, when `decoder`, as the decoder multiplies it
/// ([`QMat::for_decoding`]).
fn read_weight(
    f: &mut GgufFile,
    name: &str,
    dims: &[usize],
    device: &Device,
    decoder: bool,
) -> Result<(Tensor, Option<QMat>)> {
    let q = f.qtensor(name, device)?;
    let t = q
        .dequantize(device)
        .with_context(|| format!("dequantizing tensor {name}"))?;
    check_shape(&t, dims, name)?;
    let own = if decoder && t.rank() == 2 && device.is_cpu() {
        QMat::for_decoding(&q, &t)?
    } else {
        None
    };
    Ok((t, own))
}

/// Block `i` of the file, with the own blocks of its projections (q/k/v,
/// o, gate/up, down) for the decoder.
#[allow(clippy::type_complexity)]
fn load_block(
    f: &mut GgufFile,
    i: usize,
    cfg: &LmConfig,
    device: &Device,
) -> Result<(Block, [Vec<Option<QMat>>; 4])> {
    let (h, ff, qd, kvd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    let mut getq = |n: &str, dims: &[usize]| {
        read_weight(f, &format!("blk.{i}.{n}.weight"), dims, device, true)
    };
    let (q, qq) = getq("attn_q", &[qd, h])?;
    let (k, kq) = getq("attn_k", &[kvd, h])?;
    let (v, vq) = getq("attn_v", &[kvd, h])?;
    let (wo, oq) = getq("attn_output", &[h, qd])?;
    let (gate, gq) = getq("ffn_gate", &[ff, h])?;
    let (up, uq) = getq("ffn_up", &[ff, h])?;
    let (wdown, dq) = getq("ffn_down", &[h, ff])?;
    let mut get = |n: &str, dims: &[usize]| -> Result<Tensor> {
        let name = format!("blk.{i}.{n}.weight");
        let t = f.tensor_f32(&name, device)?;
        check_shape(&t, dims, &name)?;
        Ok(t)
    };
    let attn_norm = get("attn_norm", &[h])?;
    let ffn_norm = get("ffn_norm", &[h])?;
    let hd = cfg.head_dim;
    let mut opt = |n: &str, dims: &[usize]| -> Result<Option<Tensor>> {
        let name = format!("blk.{i}.{n}");
        if !f.has_tensor(&name) {
            return Ok(None);
        }
        let t = f.tensor_f32(&name, device)?;
        check_shape(&t, dims, &name)?;
        Ok(Some(t))
    };
    let q_norm = opt("attn_q_norm.weight", &[hd])?;
    let k_norm = opt("attn_k_norm.weight", &[hd])?;
    let post_attn_norm = opt("post_attention_norm.weight", &[h])?;
    let post_ffn_norm = opt("post_ffw_norm.weight", &[h])?;
    let biases = [
        opt("attn_q.bias", &[qd])?,
        opt("attn_k.bias", &[kvd])?,
        opt("attn_v.bias", &[kvd])?,
    ];
    let bqkv = match biases {
        [None, None, None] => None,
        [Some(bq), Some(bk), Some(bv)] => Some(Tensor::cat(&[bq, bk, bv], 0)?),
        _ => bail!("layer {i}: biases on some of q/k/v but not all"),
    };
    let needs_qk_norm = matches!(cfg.arch, Arch::Qwen3 | Arch::Gemma3);
    if needs_qk_norm && (q_norm.is_none() || k_norm.is_none()) {
        bail!(
            "layer {i}: {} needs attn_q_norm and attn_k_norm",
            cfg.arch.gguf_name()
        )
    }
    if cfg.arch == Arch::Gemma3 && (post_attn_norm.is_none() || post_ffn_norm.is_none()) {
        bail!("layer {i}: gemma3 needs post_attention_norm and post_ffw_norm")
    }
    let blk = Block {
        attn_norm,
        ffn_norm,
        post_attn_norm,
        post_ffn_norm,
        q_norm,
        k_norm,
        bqkv,
        window: cfg.layer_window(i),
        wqkv: Tensor::cat(&[q, k, v], 0)?,
        wo,
        wgu: Tensor::cat(&[gate, up], 0)?,
        wdown,
        lora: Default::default(),
    };
    Ok((blk, [vec![qq, kq, vq], vec![oq], vec![gq, uq], vec![dq]]))
}

/// The decoder's weights from the file's own blocks of each projection
/// (`own`: q/k/v, o, gate/up, down per layer) and the blocks' f32 weights.
fn decode_weights(
    own: Vec<[Vec<Option<QMat>>; 4]>,
    blocks: &[Block],
    head: Option<QMat>,
    lm_head: &Tensor,
    cfg: &LmConfig,
) -> Result<super::decode::DecodeWeights> {
    let (h, ff, qd, kvd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    let group = |own: Vec<Option<QMat>>, rows: Vec<usize>, f32w: &Tensor| GroupSource {
        own,
        rows,
        f32w: f32w.clone(),
    };
    let layers = own
        .into_iter()
        .zip(blocks)
        .map(|([qkv, o, gu, down], b)| {
            [
                group(qkv, vec![qd, kvd, kvd], &b.wqkv),
                group(o, vec![h], &b.wo),
                group(gu, vec![ff, ff], &b.wgu),
                group(down, vec![h], &b.wdown),
            ]
        })
        .collect();
    let head = group(vec![head], vec![cfg.vocab_size], lm_head);
    super::decode::build_weights(layers, head)
}

fn normalize_pad(pad_left: &[usize], b: usize, s: usize) -> Result<Vec<usize>> {
    if pad_left.is_empty() {
        return Ok(vec![0; b]);
    }
    if pad_left.len() != b {
        bail!("{} padding counts for a batch of {b}", pad_left.len())
    }
    if let Some(&p) = pad_left.iter().find(|&&p| p > s) {
        bail!("padding {p} longer than the sequence ({s})")
    }
    Ok(pad_left.to_vec())
}

/// Inverted dropout with a seeded generator (deterministic for a seed).
fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

/// Scales the gradients of `vars` so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm && norm > 0.0 {
        let c = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * c)?);
            }
        }
    }
    Ok(norm)
}

/// Stacks token rows into `[batch, max_len]` u32, left-padded with `pad_id`;
/// returns the tensor and the padding count of each row.
pub fn left_padded(
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Vec<usize>)> {
    let s = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * s);
    let mut pads = Vec::with_capacity(rows.len());
    for r in rows {
        let p = s - r.len();
        pads.push(p);
        ids.extend(std::iter::repeat_n(pad_id, p));
        ids.extend_from_slice(r);
    }
    Ok((Tensor::from_vec(ids, (rows.len(), s), device)?, pads))
}
