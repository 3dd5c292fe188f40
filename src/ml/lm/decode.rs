//! The quantized decoder: one token per row per step on quantized weights
//! ([`super::qmat`]), with the KV cache in plain f32 vectors and every
//! per-layer step (norms, RoPE, attention, gated feed-forward, LoRA) a
//! plain loop, so a decoded token costs a few kernel calls per layer rather
//! than dozens of small tensor ops.
//!
//! Prompt processing stays on the f32 path (large matrix products are
//! faster there); its KV cache is then moved into a [`DecodeCache`].
//! LoRA adapters are applied unmerged, `x·Wq + scale·(x·A)·B`, so one
//! quantized base serves every adapter. The arithmetic mirrors the f32
//! path's fused kernels; with the GGUF's own blocks the two differ only in
//! the order of additions (see [`super::qmat`]).
//!
//! Rows of a batch advance independently: a step computes only the rows
//! still generating.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rayon::prelude::*;

use super::lora::LoraTarget;
use super::model::{CausalLm, KvCache};
use super::ops::{dot1, gated_row, rms_norm_row};
use super::qmat::{QMat, QStack};

/// The quantized projections of a model: per layer q/k/v stacked, o,
/// gate/up stacked, down; and the LM head.
#[derive(Debug)]
pub struct DecodeWeights {
    pub(super) layers: Vec<[QStack; 4]>,
    pub(super) head: QStack,
}

impl DecodeWeights {
    /// Bytes of quantized weights.
    pub fn size_bytes(&self) -> usize {
        self.head.size_bytes()
            + self
                .layers
                .iter()
                .flat_map(|l| l.iter().map(QStack::size_bytes))
                .sum::<usize>()
    }

    /// Kinds of blocks used, e.g. `["Q4", "Q8"]`.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .layers
            .iter()
            .flat_map(|l| l.iter())
            .chain([&self.head])
            .flat_map(|s| s.parts().iter().map(|m| format!("{:?}", m.kind())))
            .collect();
        k.sort();
        k.dedup();
        k
    }
}

/// A LoRA pair as f32 rows: `a: [rank, in]` and `bt = Bᵀ: [rank, out]`
/// (so the up-projection adds `rank` contiguous rows).
struct LoraRows {
    a: Vec<f32>,
    bt: Vec<f32>,
    rank: usize,
    scale: f32,
}

impl LoraRows {
    fn new(a: &Tensor, b: &Tensor, scale: f32) -> Result<LoraRows> {
        Ok(LoraRows {
            rank: a.dim(0)?,
            a: vec_of(a)?,
            bt: vec_of(&b.t()?.contiguous()?)?,
            scale,
        })
    }

    /// Adds `scale·B·(A·x)` for each of `n` rows of `x: [n, in]` into
    /// `out: [n, width]` at column `col`.
    fn add(&self, x: &[f32], n: usize, out: &mut [f32], width: usize, col: usize) {
        let inp = x.len() / n;
        let outw = self.bt.len() / self.rank;
        for r in 0..n {
            let xr = &x[r * inp..(r + 1) * inp];
            let o = &mut out[r * width + col..r * width + col + outw];
            for (a, b) in self.a.chunks_exact(inp).zip(self.bt.chunks_exact(outw)) {
                let t = dot1(a, xr) * self.scale;
                for (o, b) in o.iter_mut().zip(b) {
                    *o = t.mul_add(*b, *o);
                }
            }
        }
    }
}

struct LayerPlan {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    post_attn_norm: Option<Vec<f32>>,
    post_ffn_norm: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    bqkv: Option<Vec<f32>>,
    window: Option<usize>,
    lora: [Option<LoraRows>; 7],
}

/// The model's small tensors and adapters as plain vectors, ready to
/// decode (built once per generation call).
pub struct Decoder<'a> {
    model: &'a CausalLm,
    w: Arc<DecodeWeights>,
    layers: Vec<LayerPlan>,
    norm: Vec<f32>,
}

/// The KV cache of the quantized decoder: per layer `[batch, kv_heads,
/// capacity, head_dim]` keys and values, filled up to `len` for every row.
pub struct DecodeCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Tokens written per row (rows that stopped generating are no longer
    /// advanced).
    len: Vec<usize>,
    capacity: usize,
    pad_left: Vec<usize>,
}

impl DecodeCache {
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens the cache holds for `row`.
    pub fn len(&self, row: usize) -> usize {
        self.len[row]
    }
}

/// `x += y`, with `y` first RMS-normalized row by row when the block has
/// a post-norm (Gemma).
fn add_residual(x: &mut [f32], y: &[f32], post_norm: Option<&[f32]>, eps: f32, width: usize) {
    let mut row = vec![0f32; width];
    for (xr, yr) in x.chunks_exact_mut(width).zip(y.chunks_exact(width)) {
        let yr = match post_norm {
            Some(w) => {
                rms_norm_row(yr, w, eps, &mut row);
                &row[..]
            }
            None => yr,
        };
        xr.iter_mut().zip(yr).for_each(|(x, y)| *x += y);
    }
}

fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn opt_vec(t: &Option<Tensor>) -> Result<Option<Vec<f32>>> {
    t.as_ref().map(vec_of).transpose()
}

impl<'a> Decoder<'a> {
    pub(super) fn new(model: &'a CausalLm, w: Arc<DecodeWeights>) -> Result<Decoder<'a>> {
        let scale = model.lora_config().map(|c| c.scale() as f32).unwrap_or(1.0);
        let mut layers = Vec::with_capacity(model.blocks.len());
        for blk in &model.blocks {
            let mut lora: [Option<LoraRows>; 7] = Default::default();
            for t in LoraTarget::ALL {
                if let Some(p) = &blk.lora[t.index()] {
                    lora[t.index()] = Some(LoraRows::new(p.a.as_tensor(), p.b.as_tensor(), scale)?);
                }
            }
            layers.push(LayerPlan {
                attn_norm: vec_of(&blk.attn_norm)?,
                ffn_norm: vec_of(&blk.ffn_norm)?,
                post_attn_norm: opt_vec(&blk.post_attn_norm)?,
                post_ffn_norm: opt_vec(&blk.post_ffn_norm)?,
                q_norm: opt_vec(&blk.q_norm)?,
                k_norm: opt_vec(&blk.k_norm)?,
                bqkv: opt_vec(&blk.bqkv)?,
                window: blk.window,
                lora,
            });
        }
        Ok(Decoder {
            model,
            w,
            layers,
            norm: vec_of(&model.norm)?,
        })
    }

    /// Moves the f32 path's cache (after prompt processing) into a decode cache.
    pub fn cache_from(&self, kv: KvCache) -> Result<DecodeCache> {
        let cfg = self.model.config();
        let (b, cap, len) = (kv.batch(), kv.capacity(), kv.len());
        let (kvh, hd) = (cfg.num_kv_heads, cfg.head_dim);
        let pad_left = kv.pad_left().to_vec();
        let mut k = Vec::with_capacity(kv.layers.len());
        let mut v = Vec::with_capacity(kv.layers.len());
        for (kt, vt) in kv.layers {
            for (src, dst) in [(kt, &mut k), (vt, &mut v)] {
                let mut buf = vec![0f32; b * kvh * cap * hd];
                if len > 0 {
                    let filled = vec_of(&src.narrow(2, 0, len)?)?;
                    for (i, chunk) in filled.chunks_exact(len * hd).enumerate() {
                        buf[i * cap * hd..i * cap * hd + len * hd].copy_from_slice(chunk);
                    }
                }
                dst.push(buf);
            }
        }
        Ok(DecodeCache {
            k,
            v,
            len: vec![len; b],
            capacity: cap,
            pad_left,
        })
    }

    /// Feeds `tokens[i]` to cache row `rows[i]`; returns the logits of each,
    /// `[rows.len(), vocab]` flattened.
    pub fn step(
        &self,
        cache: &mut DecodeCache,
        rows: &[usize],
        tokens: &[u32],
    ) -> Result<Vec<f32>> {
        let m = self.model;
        let cfg = m.config();
        let n = rows.len();
        if n == 0 || tokens.len() != n {
            bail!("decode step: {} tokens for {n} rows", tokens.len())
        }
        for &r in rows {
            if r >= cache.len.len() {
                bail!(
                    "decode step: row {r} outside the cache's {}",
                    cache.len.len()
                )
            }
            if cache.len[r] >= cache.capacity {
                bail!(
                    "KV cache full: {} tokens, capacity {}",
                    cache.len[r],
                    cache.capacity
                )
            }
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            bail!("token id {t} outside the vocabulary of {}", cfg.vocab_size)
        }
        let h = cfg.hidden_size;
        let ids = Tensor::new(tokens, m.device())?;
        let mut x = vec_of(&m.embed.index_select(&ids, 0)?)?;
        if cfg.scale_embeddings {
            let s = (h as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }
        for li in 0..self.layers.len() {
            self.layer(li, &mut x, cache, rows)?;
        }
        for &r in rows {
            cache.len[r] += 1;
        }
        let eps = cfg.rms_eps as f32;
        let mut xn = vec![0f32; x.len()];
        for (xr, o) in x.chunks_exact(h).zip(xn.chunks_exact_mut(h)) {
            rms_norm_row(xr, &self.norm, eps, o);
        }
        Ok(self.w.head.matmul(&xn, n))
    }

    /// Attention of each row's new query heads over its cached keys and
    /// values: one task per (row, query head), so a single row's heads
    /// spread over the threads even when they share one KV head (Gemma 3
    /// 270M has one). `qkv`: the rows' projections after RoPE; returns
    /// `[n, q_dim]`.
    fn attend(&self, li: usize, qkv: &[f32], cache: &DecodeCache, rows: &[usize]) -> Vec<f32> {
        let cfg = self.model.config();
        let lp = &self.layers[li];
        let n = rows.len();
        let (nh, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let width = qd + 2 * kvd;
        let cap = cache.capacity;
        let scale = 1.0 / (cfg.query_scale_dim as f32).sqrt();
        let g = nh / kvh;
        let (kc, vc) = (&cache.k[li], &cache.v[li]);
        let mut o = vec![0f32; n * qd];
        o.par_chunks_mut(hd).enumerate().for_each(|(task, out)| {
            let (i, hq) = (task / nh, task % nh);
            let kh = hq / g;
            let r = rows[i];
            let pos = cache.len[r];
            let mut lo = cache.pad_left[r];
            if let Some(w) = lp.window {
                lo = lo.max((pos + 1).saturating_sub(w));
            }
            let base = (r * kvh + kh) * cap * hd;
            let keys = &kc[base + lo * hd..base + (pos + 1) * hd];
            let vals = &vc[base + lo * hd..base + (pos + 1) * hd];
            let q = &qkv[i * width + hq * hd..i * width + (hq + 1) * hd];
            let mut p = vec![0f32; pos + 1 - lo];
            let mut max = f32::NEG_INFINITY;
            for (pj, k) in p.iter_mut().zip(keys.chunks_exact(hd)) {
                *pj = dot1(q, k) * scale;
                max = max.max(*pj);
            }
            let mut sum = 0f32;
            for v in &mut p {
                *v = (*v - max).exp();
                sum += *v;
            }
            for (pj, v) in p.iter().zip(vals.chunks_exact(hd)) {
                let w = pj / sum;
                for (o, v) in out.iter_mut().zip(v) {
                    *o = w.mul_add(*v, *o);
                }
            }
        });
        o
    }

    fn layer(
        &self,
        li: usize,
        x: &mut [f32],
        cache: &mut DecodeCache,
        rows: &[usize],
    ) -> Result<()> {
        let cfg = self.model.config();
        let lp = &self.layers[li];
        let [wqkv, wo, wgu, wdown] = &self.w.layers[li];
        let n = rows.len();
        let (h, nh, kvh, hd) = (
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        );
        let (qd, kvd, ff) = (cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        let eps = cfg.rms_eps as f32;
        let norm_rows = |x: &[f32], w: &[f32], width: usize| -> Vec<f32> {
            let mut o = vec![0f32; x.len()];
            for (xr, or) in x.chunks_exact(width).zip(o.chunks_exact_mut(width)) {
                rms_norm_row(xr, w, eps, or);
            }
            o
        };

        // q, k, v
        let hn = norm_rows(x, &lp.attn_norm, h);
        let width = qd + 2 * kvd;
        let mut qkv = wqkv.matmul(&hn, n);
        if let Some(b) = &lp.bqkv {
            for r in qkv.chunks_exact_mut(width) {
                r.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        for (t, col) in [
            (LoraTarget::Q, 0),
            (LoraTarget::K, qd),
            (LoraTarget::V, qd + kvd),
        ] {
            if let Some(l) = &lp.lora[t.index()] {
                l.add(&hn, n, &mut qkv, width, col);
            }
        }
        let rope = self.model.rope_for(lp.window);
        let neox = !cfg.arch.interleaved_rope();
        let cap = cache.capacity;
        for (i, &r) in rows.iter().enumerate() {
            let row = &mut qkv[i * width..(i + 1) * width];
            let pos = cache.len[r].saturating_sub(cache.pad_left[r]);
            if pos >= rope.max_positions() {
                bail!(
                    "position {pos} beyond the {} precomputed positions",
                    rope.max_positions()
                )
            }
            for hi in 0..nh + kvh {
                let head = &mut row[hi * hd..(hi + 1) * hd];
                let w = if hi < nh { &lp.q_norm } else { &lp.k_norm };
                if let Some(w) = w {
                    let src = head.to_vec();
                    rms_norm_row(&src, w, eps, head);
                }
                rope.rotate(head, pos, neox);
            }
            // append k and v at this row's next slot
            let at = cache.len[r];
            for kh in 0..kvh {
                let dst = ((r * kvh + kh) * cap + at) * hd;
                cache.k[li][dst..dst + hd].copy_from_slice(&row[qd + kh * hd..qd + (kh + 1) * hd]);
                cache.v[li][dst..dst + hd]
                    .copy_from_slice(&row[qd + kvd + kh * hd..qd + kvd + (kh + 1) * hd]);
            }
        }

        let o = self.attend(li, &qkv, cache, rows);
        let mut attn = wo.matmul(&o, n);
        if let Some(l) = &lp.lora[LoraTarget::O.index()] {
            l.add(&o, n, &mut attn, h, 0);
        }
        add_residual(x, &attn, lp.post_attn_norm.as_deref(), eps, h);

        // feed-forward
        let hn = norm_rows(x, &lp.ffn_norm, h);
        let mut gu = wgu.matmul(&hn, n);
        for (t, col) in [(LoraTarget::Gate, 0), (LoraTarget::Up, ff)] {
            if let Some(l) = &lp.lora[t.index()] {
                l.add(&hn, n, &mut gu, 2 * ff, col);
            }
        }
        let mut act = vec![0f32; n * ff];
        for (g, a) in gu.chunks_exact(2 * ff).zip(act.chunks_exact_mut(ff)) {
            gated_row(g, cfg.gelu_ffn, a);
        }
        let mut down = wdown.matmul(&act, n);
        if let Some(l) = &lp.lora[LoraTarget::Down.index()] {
            l.add(&act, n, &mut down, h, 0);
        }
        add_residual(x, &down, lp.post_ffn_norm.as_deref(), eps, h);
        Ok(())
    }
}

/// One stacked projection as found in the file: each part's own blocks
/// when the decoder has a kernel for them, and the stacked f32 weights.
pub(super) struct GroupSource {
    pub own: Vec<Option<QMat>>,
    pub rows: Vec<usize>,
    pub f32w: Tensor,
}

impl GroupSource {
    /// The parts' own blocks where there are some, the f32 weights (no
    /// copy) elsewhere; all f32 as one matrix.
    fn build(self) -> Result<QStack> {
        if self.own.iter().all(Option::is_none) {
            let m = QMat::from_f32(&self.f32w)?.context("f32 weights for the decoder")?;
            return Ok(QStack::new(vec![m]));
        }
        let mut parts = Vec::with_capacity(self.own.len());
        let mut off = 0;
        for (own, rows) in self.own.into_iter().zip(self.rows) {
            parts.push(match own {
                Some(m) => m,
                None => QMat::from_f32(&self.f32w.narrow(0, off, rows)?)?
                    .context("f32 weights for the decoder")?,
            });
            off += rows;
        }
        Ok(QStack::new(parts))
    }
}

/// Builds the decoder's weights: per layer q/k/v, o, gate/up and down, then
/// the head.
pub(super) fn build_weights(
    layers: Vec<[GroupSource; 4]>,
    head: GroupSource,
) -> Result<DecodeWeights> {
    let layers = layers
        .into_iter()
        .map(|l| {
            let [a, b, c, d] = l;
            Ok([a.build()?, b.build()?, c.build()?, d.build()?])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DecodeWeights {
        layers,
        head: head.build()?,
    })
}

impl CausalLm {
    /// The quantized decoder, when this model has quantized weights, runs
    /// on the CPU with the fused kernels, and quantized decoding is on.
    pub fn decoder(&self) -> Result<Option<Decoder<'_>>> {
        match &self.qdec {
            Some(w) if self.quantized_decode && self.device.is_cpu() && self.kernels.fused => Ok(
                Some(Decoder::new(self, w.clone()).context("preparing the quantized decoder")?),
            ),
            _ => Ok(None),
        }
    }
}
