//! Differentiable building blocks for the causal LM: fused CPU kernels with a
//! hand-written backward, and composite fallbacks built from candle primitives.
//!
//! candle 0.11's fast ops (`softmax_last_dim`, `rms_norm`, `rope_i`, `sdpa`,
//! `QMatMul`) have no backward: the gradient silently stops there. Every
//! function here propagates gradients in both implementations:
//!
//! * the fused path (f32 on CPU): one `CustomOp` per op, forward and backward
//!   written as plain loops over rows (rayon-parallel), no intermediate
//!   tensors kept in the graph beyond the op's input and output;
//! * the composite path (any other device or dtype, or [`Kernels::composite`]):
//!   candle primitives whose backward candle knows.
//!
//! [`linear`] multiplies by a frozen weight through a custom op whose backward
//! returns only the input gradient (`grad · W`): candle's `matmul` backward
//! would also compute the weight gradient `gradᵀ · x`, a full extra matmul per
//! projection, only to throw it away. That op runs on CPU and CUDA.
//! [`super::lora_linear`] folds a frozen projection and its adapters into
//! one node the same way (CPU f32).

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Storage,
    Tensor, D,
};
use rayon::prelude::*;

/// Which implementation the model's forward uses (the switch exists for
/// equivalence tests and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    /// Fused CPU kernels for norm, rope, masked softmax, SwiGLU and
    /// cross-entropy (ignored off-CPU, where the composite path is used).
    pub fused: bool,
    /// Frozen-weight matmul op (no weight gradient) instead of `matmul`.
    pub frozen_matmul: bool,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels {
            fused: true,
            frozen_matmul: true,
        }
    }
}

impl Kernels {
    /// Only candle primitives: the reference the fused kernels are tested against.
    pub fn composite() -> Self {
        Kernels {
            fused: false,
            frozen_matmul: false,
        }
    }
}

pub(super) fn use_fused(k: Kernels, t: &Tensor) -> bool {
    k.fused && t.device().is_cpu() && t.dtype() == DType::F32
}

/// Rows of at least this many are handed to rayon in one piece.
const MIN_ROWS: usize = 16;

pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("{op}: expected f32 storage"),
    };
    if !l.is_contiguous() {
        bail!("{op}: input must be contiguous")
    }
    let start = l.start_offset();
    Ok(&data[start..start + l.shape().elem_count()])
}

// ---------------------------------------------------------------------------
// Frozen-weight linear.

struct FrozenLinear {
    /// `[out, in]`, never a variable.
    w: Tensor,
}

fn frozen_fwd<S: BackendStorage>(x: &S, xl: &Layout, w: &S, wl: &Layout) -> Result<(S, Shape)> {
    let dims = xl.dims();
    let k = *dims.last().unwrap_or(&0);
    let (out, inp) = wl.shape().dims2()?;
    if inp != k {
        bail!("frozen-linear: input width {k} does not match weight [{out}, {inp}]")
    }
    if !xl.is_contiguous() {
        bail!("frozen-linear: input must be contiguous")
    }
    let m = xl.shape().elem_count() / k.max(1);
    let lhs = Layout::contiguous_with_offset((m, k), xl.start_offset());
    let rhs = Layout::new(
        Shape::from((inp, out)),
        vec![wl.stride()[1], wl.stride()[0]],
        wl.start_offset(),
    );
    let s = x.matmul(w, (1, m, out, k), &lhs, &rhs)?;
    let mut od = dims.to_vec();
    if let Some(l) = od.last_mut() {
        *l = out;
    }
    Ok((s, Shape::from(od)))
}

/// At most this many rows go through [`small_m_matmul`] instead of gemm.
pub const SMALL_M_ROWS: usize = 16;

const LANES: usize = 16;

/// Dot product with four independent accumulator chains (FMA latency hiding).
#[inline]
pub fn dot1(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; LANES]; 4];
    let n4 = a.len() / (4 * LANES) * (4 * LANES);
    for (x, y) in a[..n4]
        .chunks_exact(4 * LANES)
        .zip(b[..n4].chunks_exact(4 * LANES))
    {
        for c in 0..4 {
            for l in 0..LANES {
                acc[c][l] = x[c * LANES + l].mul_add(y[c * LANES + l], acc[c][l]);
            }
        }
    }
    let mut tail = 0f32;
    for (x, y) in a[n4..].iter().zip(&b[n4..]) {
        tail = x.mul_add(*y, tail);
    }
    let mut sum = [0f32; LANES];
    for c in acc {
        for l in 0..LANES {
            sum[l] += c[l];
        }
    }
    sum.iter().sum::<f32>() + tail
}

/// Four dot products of `x0..x3` with the same `w` (one pass over `w`).
#[inline]
fn dot4(x: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
    let mut a0 = [0f32; LANES];
    let mut a1 = [0f32; LANES];
    let mut a2 = [0f32; LANES];
    let mut a3 = [0f32; LANES];
    let it = w
        .chunks_exact(LANES)
        .zip(x[0].chunks_exact(LANES))
        .zip(x[1].chunks_exact(LANES))
        .zip(x[2].chunks_exact(LANES))
        .zip(x[3].chunks_exact(LANES));
    for ((((wc, c0), c1), c2), c3) in it {
        for l in 0..LANES {
            a0[l] = c0[l].mul_add(wc[l], a0[l]);
            a1[l] = c1[l].mul_add(wc[l], a1[l]);
            a2[l] = c2[l].mul_add(wc[l], a2[l]);
            a3[l] = c3[l].mul_add(wc[l], a3[l]);
        }
    }
    let n = w.len() / LANES * LANES;
    let mut out = [
        a0.iter().sum::<f32>(),
        a1.iter().sum(),
        a2.iter().sum(),
        a3.iter().sum(),
    ];
    for (r, o) in out.iter_mut().enumerate() {
        for (a, b) in x[r][n..].iter().zip(&w[n..]) {
            *o = a.mul_add(*b, *o);
        }
    }
    out
}

/// Dot products of four x rows with two w rows (one pass over both w rows;
/// eight independent accumulator chains).
#[inline]
fn dot2x4(x: [&[f32]; 4], w0: &[f32], w1: &[f32]) -> [[f32; 4]; 2] {
    let (mut a0, mut a1, mut a2, mut a3) =
        ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let (mut b0, mut b1, mut b2, mut b3) =
        ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let it = w0
        .chunks_exact(LANES)
        .zip(w1.chunks_exact(LANES))
        .zip(x[0].chunks_exact(LANES))
        .zip(x[1].chunks_exact(LANES))
        .zip(x[2].chunks_exact(LANES))
        .zip(x[3].chunks_exact(LANES));
    for (((((u, v), c0), c1), c2), c3) in it {
        for l in 0..LANES {
            a0[l] = c0[l].mul_add(u[l], a0[l]);
            a1[l] = c1[l].mul_add(u[l], a1[l]);
            a2[l] = c2[l].mul_add(u[l], a2[l]);
            a3[l] = c3[l].mul_add(u[l], a3[l]);
            b0[l] = c0[l].mul_add(v[l], b0[l]);
            b1[l] = c1[l].mul_add(v[l], b1[l]);
            b2[l] = c2[l].mul_add(v[l], b2[l]);
            b3[l] = c3[l].mul_add(v[l], b3[l]);
        }
    }
    let n = w0.len() / LANES * LANES;
    let mut out = [
        [
            a0.iter().sum::<f32>(),
            a1.iter().sum(),
            a2.iter().sum(),
            a3.iter().sum(),
        ],
        [
            b0.iter().sum::<f32>(),
            b1.iter().sum(),
            b2.iter().sum(),
            b3.iter().sum(),
        ],
    ];
    for (c, w) in [w0, w1].iter().enumerate() {
        for r in 0..4 {
            for (a, b) in x[r][n..].iter().zip(&w[n..]) {
                out[c][r] = a.mul_add(*b, out[c][r]);
            }
        }
    }
    out
}

/// `x [m, k] · wᵀ` for `w [n, k]` with few rows `m` (decoding): streams each
/// weight row once for all `m` rows, parallel over weight rows. gemm packs
/// the whole weight on every call, which dominates at this size.
pub fn small_m_matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let rows: Vec<&[f32]> = x.chunks_exact(k).collect();
    let mut out_t = vec![0f32; n * m];
    // Pairs of weight rows (the last chunk may hold one).
    out_t
        .par_chunks_mut(2 * m)
        .zip(w.par_chunks(2 * k))
        .with_min_len(32)
        .for_each(|(o, wp)| {
            let wr: Vec<&[f32]> = wp.chunks_exact(k).collect();
            let mut i = 0;
            if wr.len() == 2 {
                while i + 4 <= m {
                    let d = dot2x4(
                        [rows[i], rows[i + 1], rows[i + 2], rows[i + 3]],
                        wr[0],
                        wr[1],
                    );
                    o[i..i + 4].copy_from_slice(&d[0]);
                    o[m + i..m + i + 4].copy_from_slice(&d[1]);
                    i += 4;
                }
            }
            for (c, wrow) in wr.iter().enumerate() {
                let mut r = i;
                while r + 4 <= m {
                    let d = dot4([rows[r], rows[r + 1], rows[r + 2], rows[r + 3]], wrow);
                    o[c * m + r..c * m + r + 4].copy_from_slice(&d);
                    r += 4;
                }
                for rr in r..m {
                    o[c * m + rr] = dot1(rows[rr], wrow);
                }
            }
        });
    if m == 1 {
        return out_t;
    }
    let mut out = vec![0f32; m * n];
    for j in 0..n {
        for i in 0..m {
            out[i * n + j] = out_t[j * m + i];
        }
    }
    out
}

/// `x [m, k] · wt` for a weight stored `wt [k, n]` (see [`prefill_layout`])
/// with few rows `m`: each task owns a band of output columns and adds
/// `x[i, kk] · wt[kk, band]` for every `kk`, four rows at a time, so the
/// band's accumulators stay in registers and `wt` is read once per four rows.
pub fn small_m_matmul_t(x: &[f32], wt: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    const BAND: usize = 4 * LANES;
    assert!(
        x.len() >= m * k && wt.len() >= k * n,
        "small-m matmul: shapes"
    );
    // rows in groups of four, the last padded with zero rows
    let groups: Vec<[Vec<f32>; 4]> = (0..m.div_ceil(4))
        .map(|g| {
            std::array::from_fn(|r| match 4 * g + r {
                i if i < m => x[i * k..(i + 1) * k].to_vec(),
                _ => vec![0f32; k],
            })
        })
        .collect();
    let full = n / BAND;
    let mut out = vec![0f32; m * n];
    let bands: Vec<Vec<[[f32; BAND]; 4]>> = (0..full)
        .into_par_iter()
        .with_min_len(2)
        .map(|c| {
            let j0 = c * BAND;
            groups
                .iter()
                .map(|xs| {
                    let mut acc = [[0f32; BAND]; 4];
                    for kk in 0..k {
                        let w: &[f32; BAND] = wt[kk * n + j0..kk * n + j0 + BAND]
                            .try_into()
                            .expect("a full band");
                        for r in 0..4 {
                            let xv = xs[r][kk];
                            for l in 0..BAND {
                                acc[r][l] = xv.mul_add(w[l], acc[r][l]);
                            }
                        }
                    }
                    acc
                })
                .collect()
        })
        .collect();
    for (c, band) in bands.iter().enumerate() {
        for (g, acc) in band.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                let i = 4 * g + r;
                if i < m {
                    out[i * n + c * BAND..i * n + (c + 1) * BAND].copy_from_slice(a);
                }
            }
        }
    }
    // the columns after the last full band
    for j in full * BAND..n {
        for i in 0..m {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = x[i * k + kk].mul_add(wt[kk * n + j], acc);
            }
            out[i * n + j] = acc;
        }
    }
    out
}

/// Whether `l` is a `[out, in]` weight stored `[in, out]` ([`prefill_layout`]).
fn stored_transposed(l: &Layout) -> bool {
    let dims = l.dims();
    dims.len() == 2 && l.stride() == [1, dims[0]]
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (ws, wl) = self.w.storage_and_layout();
        let w = match &*ws {
            Storage::Cpu(w) => w,
            _ => bail!("frozen-linear: weight and input on different devices"),
        };
        let k = *l.dims().last().unwrap_or(&0);
        let m = l.shape().elem_count() / k.max(1);
        let transposed = stored_transposed(wl);
        if let (true, CpuStorage::F32(_), CpuStorage::F32(wv)) = (
            m <= SMALL_M_ROWS && (transposed || wl.is_contiguous()),
            s,
            w,
        ) {
            let (n, inp) = wl.shape().dims2()?;
            if inp != k {
                bail!("frozen-linear: input width {k} does not match weight [{n}, {inp}]")
            }
            let x = f32_slice(s, l, "frozen-linear")?;
            let mut od = l.dims().to_vec();
            if let Some(v) = od.last_mut() {
                *v = n;
            }
            let y = match transposed {
                true => {
                    let o = wl.start_offset();
                    let Some(wt) = wv.get(o..o + n * k) else {
                        bail!("frozen-linear: weight storage shorter than [{n}, {k}]")
                    };
                    small_m_matmul_t(x, wt, m, n, k)
                }
                false => small_m_matmul(x, f32_slice(w, wl, "frozen-linear")?, m, n, k),
            };
            return Ok((CpuStorage::F32(y), Shape::from(od)));
        }
        frozen_fwd(s, l, w, wl)
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (ws, wl) = self.w.storage_and_layout();
        match &*ws {
            Storage::Cuda(w) => frozen_fwd(s, l, w, wl),
            _ => bail!("frozen-linear: weight and input on different devices"),
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let out = self.w.dim(0)?;
        let g = grad.reshape(((), out))?;
        Ok(Some(g.matmul(&self.w)?.reshape(arg.shape())?))
    }
}

/// The frozen weight `w: [out, in]` stored `[in, out]` (the same tensor,
/// transposed in memory). gemm multiplies `x · Wᵀ` with it without
/// repacking `W` across its long rows: for a projection that narrows
/// (`in > out`, the feed-forward's down projection) at a few hundred rows
/// this is 1.5–2× faster (`slmforge bench lm-gemm --rows 256`).
pub fn prefill_layout(w: &Tensor) -> Result<Tensor> {
    w.t()?.contiguous()?.t()
}

/// `x · Wᵀ` for a frozen weight `w: [out, in]` and `x: [.., in]`.
pub fn linear(x: &Tensor, w: &Tensor, k: Kernels) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let supported = x.device().is_cpu() || x.device().is_cuda();
    if k.frozen_matmul && supported && x.dtype() == w.dtype() {
        let x = x.contiguous()?;
        return x.apply_op1(FrozenLinear { w: w.clone() });
    }
    let mut od = x.dims().to_vec();
    if let Some(l) = od.last_mut() {
        *l = out;
    }
    x.reshape(((), inp))?.matmul(&w.t()?)?.reshape(od)
}

// ---------------------------------------------------------------------------
// RMS norm.

struct RmsNormOp {
    w: Tensor,
    eps: f32,
}

struct RmsNormBwd {
    w: Tensor,
    eps: f32,
}

fn weight_vec(w: &Tensor) -> Result<Vec<f32>> {
    w.to_vec1::<f32>()
}

impl CustomOp1 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "rms-norm")?;
        let w = weight_vec(&self.w)?;
        let h = w.len();
        let eps = self.eps;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, x)| {
                rms_norm_row(x, &w, eps, o);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        let x = arg.contiguous()?;
        Ok(Some(g.apply_op2_no_bwd(
            &x,
            &RmsNormBwd {
                w: self.w.clone(),
                eps: self.eps,
            },
        )?))
    }
}

impl CustomOp2 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-fused-bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(gs, gl, "rms-norm-bwd")?;
        let x = f32_slice(xs, xl, "rms-norm-bwd")?;
        let w = weight_vec(&self.w)?;
        let h = w.len();
        let eps = self.eps;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h).zip(g.par_chunks(h)))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, (x, g))| {
                let ss: f32 = x.iter().map(|v| v * v).sum();
                let r = 1.0 / (ss / h as f32 + eps).sqrt();
                let dot: f32 = x.iter().zip(g).zip(&w).map(|((x, g), w)| x * g * w).sum();
                let c = r * r * r * dot / h as f32;
                for (((o, x), g), w) in o.iter_mut().zip(x).zip(g).zip(&w) {
                    *o = r * g * w - c * x;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// RMS norm over the last dimension with a frozen weight.
/// RMSNorm of one row: `out = x / rms(x) · w` (the fused kernel's arithmetic).
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let r = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
        *o = x * r * w;
    }
}

pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, k: Kernels) -> Result<Tensor> {
    if use_fused(k, x) {
        return x.contiguous()?.apply_op1(RmsNormOp {
            w: w.clone(),
            eps: eps as f32,
        });
    }
    let h = x.dim(D::Minus1)? as f64;
    let ms = (x.sqr()?.sum_keepdim(D::Minus1)? / h)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

// ---------------------------------------------------------------------------
// Interleaved rotary embedding (llama.cpp's "normal" rope, candle's rope_i).

/// Rotation tables: `cos`/`sin` of `[max_positions, rot_dim / 2]`.
#[derive(Clone, Debug)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
    cos_v: Arc<Vec<f32>>,
    sin_v: Arc<Vec<f32>>,
    half: usize,
}

impl RopeTables {
    /// `inv_freq[i]` is the angle per position of pair `i`; positions are
    /// multiplied by `pos_scale` (linear rope scaling: `1 / factor`).
    pub fn new(
        inv_freq: &[f32],
        max_pos: usize,
        pos_scale: f32,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for f in inv_freq {
                // Same arithmetic as candle's quantized_llama: f32 product, then cos/sin.
                let a = (p as f32 * pos_scale) * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(RopeTables {
            cos: Tensor::from_slice(&cos, (max_pos, half), device)?,
            sin: Tensor::from_slice(&sin, (max_pos, half), device)?,
            cos_v: Arc::new(cos),
            sin_v: Arc::new(sin),
            half,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos_v.len() / self.half.max(1)
    }

    /// Rotates one head vector `x` (`2·half` values) in place to position
    /// `pos` (the fused kernel's arithmetic; `neox` as in [`rope`]).
    pub fn rotate(&self, x: &mut [f32], pos: usize, neox: bool) {
        let half = self.half;
        let c = &self.cos_v[pos * half..(pos + 1) * half];
        let sn = &self.sin_v[pos * half..(pos + 1) * half];
        let (stride, off) = if neox { (1, half) } else { (2, 1) };
        for j in 0..half {
            let (a, b) = (stride * j, stride * j + off);
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * c[j] - x1 * sn[j];
            x[b] = x0 * sn[j] + x1 * c[j];
        }
    }
}

struct RopeOp {
    tables: RopeTables,
    /// Position of each (batch, token): `[b * s]`.
    positions: Arc<Vec<u32>>,
    inverse: bool,
    /// Pairs `(i, i + d/2)` (llama.cpp's NEOX rope, Hugging Face's
    /// `rotate_half`) instead of `(2i, 2i + 1)`.
    neox: bool,
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope-i-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "rope")?;
        let (b, h, t, d) = l.shape().dims4()?;
        let half = self.tables.half;
        if d != 2 * half || self.positions.len() != b * t {
            bail!("rope: shape {:?} does not match tables/positions", l.dims())
        }
        let (cos, sin) = (&self.tables.cos_v, &self.tables.sin_v);
        let max_pos = cos.len() / half;
        if let Some(&p) = self.positions.iter().max() {
            if p as usize >= max_pos {
                bail!("rope: position {p} beyond the {max_pos} precomputed positions")
            }
        }
        let sign = if self.inverse { -1f32 } else { 1f32 };
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(row, (o, x))| {
                let bi = row / (h * t);
                let ti = row % t;
                let p = self.positions[bi * t + ti] as usize;
                let c = &cos[p * half..(p + 1) * half];
                let sn = &sin[p * half..(p + 1) * half];
                let (stride, off) = if self.neox { (1, half) } else { (2, 1) };
                for j in 0..half {
                    let (a, b) = (stride * j, stride * j + off);
                    let (x0, x1) = (x[a], x[b]);
                    let s = sign * sn[j];
                    o[a] = x0 * c[j] - x1 * s;
                    o[b] = x0 * s + x1 * c[j];
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // A rotation's adjoint is the rotation by the opposite angle.
        let inv = RopeOp {
            tables: self.tables.clone(),
            positions: self.positions.clone(),
            inverse: !self.inverse,
            neox: self.neox,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inv)?))
    }
}

/// Interleaved RoPE (pairs `2i, 2i+1`) on `x: [b, heads, s, d]` with one
/// position per (batch row, token): `positions.len() == b * s`.
pub fn rope_i(
    x: &Tensor,
    tables: &RopeTables,
    positions: &Arc<Vec<u32>>,
    k: Kernels,
) -> Result<Tensor> {
    rope(x, tables, positions, false, k)
}

/// RoPE on `x: [b, heads, s, d]`: interleaved pairs `2i, 2i+1` (llama.cpp's
/// "normal" rope, as its converter permutes Llama's q/k rows) or, with
/// `neox`, pairs `i, i + d/2` (Qwen, Gemma: the Hugging Face layout).
pub fn rope(
    x: &Tensor,
    tables: &RopeTables,
    positions: &Arc<Vec<u32>>,
    neox: bool,
    k: Kernels,
) -> Result<Tensor> {
    if use_fused(k, x) {
        let op = RopeOp {
            tables: tables.clone(),
            positions: positions.clone(),
            inverse: false,
            neox,
        };
        return x.contiguous()?.apply_op1(op);
    }
    let (b, h, t, d) = x.dims4()?;
    let half = d / 2;
    let idx = Tensor::from_slice(positions.as_slice(), b * t, x.device())?;
    let table = |tb: &Tensor| -> Result<Tensor> {
        let shape = if neox {
            (b, 1, t, 1, half)
        } else {
            (b, 1, t, half, 1)
        };
        tb.index_select(&idx, 0)?
            .reshape(shape)?
            .to_dtype(x.dtype())
    };
    let (cos, sin) = (table(&tables.cos)?, table(&tables.sin)?);
    let (x, axis) = if neox {
        (x.reshape((b, h, t, 2, half))?, 3)
    } else {
        (x.reshape((b, h, t, half, 2))?, 4)
    };
    let x0 = x.narrow(axis, 0, 1)?;
    let x1 = x.narrow(axis, 1, 1)?;
    let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let y1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Tensor::cat(&[y0, y1], axis)?.reshape((b, h, t, d))
}

// ---------------------------------------------------------------------------
// Scaled, causally and left-pad masked softmax over attention scores.

/// Which keys each query may attend to. Scores are `[b, kv_heads, rows, kv_len]`
/// with `rows = group * q_len` (query heads sharing a KV head stacked along
/// the rows); row `r` is query token `r % q_len`, at cache position
/// `q_offset + r % q_len`. It sees keys `pad_left[b] ..= q_offset + r % q_len`.
#[derive(Clone, Debug)]
pub struct AttnMask {
    pub q_len: usize,
    pub q_offset: usize,
    pub pad_left: Arc<Vec<usize>>,
    /// Sliding-window attention: a query sees only itself and the
    /// `window - 1` keys before it (llama.cpp's `n_swa`); `None`: all.
    pub window: Option<usize>,
}

impl AttnMask {
    fn range(&self, bi: usize, row: usize, kv_len: usize) -> (usize, usize) {
        let pos = self.q_offset + row % self.q_len;
        let mut lo = self.pad_left.get(bi).copied().unwrap_or(0);
        if let Some(w) = self.window {
            lo = lo.max((pos + 1).saturating_sub(w));
        }
        let hi = (pos + 1).min(kv_len);
        (lo, hi)
    }

    /// The same mask with a sliding window.
    pub fn with_window(&self, window: Option<usize>) -> AttnMask {
        AttnMask {
            window,
            ..self.clone()
        }
    }

    /// Additive mask `[b, 1, 1, q_len, kv_len]` (0 or -1e30) for the composite path.
    fn additive(&self, b: usize, kv_len: usize, device: &candle_core::Device) -> Result<Tensor> {
        let mut m = vec![0f32; b * self.q_len * kv_len];
        for bi in 0..b {
            for i in 0..self.q_len {
                let (lo, hi) = self.range(bi, i, kv_len);
                for j in 0..kv_len {
                    if j < lo || j >= hi {
                        m[(bi * self.q_len + i) * kv_len + j] = -1e30;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, 1, self.q_len, kv_len), device)
    }
}

struct MaskedSoftmax {
    scale: f32,
    mask: AttnMask,
}

struct MaskedSoftmaxBwd {
    scale: f32,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "masked-softmax")?;
        let (b, _kvh, rows, kv) = l.shape().dims4()?;
        let per_b = x.len() / (b * kv).max(1);
        let mut out = vec![0f32; x.len()];
        let scale = self.scale;
        out.par_chunks_mut(kv)
            .zip(x.par_chunks(kv))
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, (o, x))| {
                let bi = r / per_b;
                let (lo, hi) = self.mask.range(bi, r % rows, kv);
                if lo >= hi {
                    return; // a padding query with nothing to attend to: zeros
                }
                let xs = &x[lo..hi];
                let max = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
                let mut sum = 0f32;
                for (o, &v) in o[lo..hi].iter_mut().zip(xs) {
                    let e = (v * scale - max).exp();
                    *o = e;
                    sum += e;
                }
                let inv = 1.0 / sum;
                o[lo..hi].iter_mut().for_each(|v| *v *= inv);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        Ok(Some(g.apply_op2_no_bwd(
            res,
            &MaskedSoftmaxBwd { scale: self.scale },
        )?))
    }
}

impl CustomOp2 for MaskedSoftmaxBwd {
    fn name(&self) -> &'static str {
        "masked-softmax-fused-bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(gs, gl, "masked-softmax-bwd")?;
        let y = f32_slice(ys, yl, "masked-softmax-bwd")?;
        let kv = *yl.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; y.len()];
        let scale = self.scale;
        out.par_chunks_mut(kv)
            .zip(y.par_chunks(kv).zip(g.par_chunks(kv)))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, (y, g))| {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                    *o = scale * y * (g - dot);
                }
            });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

/// `softmax(scale · scores)` over the last dim of `[b, kv_heads, rows, kv_len]`
/// with the causal and left-padding mask; fully masked rows (padding queries)
/// come out as zeros (fused) or uniform (composite), never NaN.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: &AttnMask, k: Kernels) -> Result<Tensor> {
    if use_fused(k, scores) {
        return scores.contiguous()?.apply_op1(MaskedSoftmax {
            scale: scale as f32,
            mask: mask.clone(),
        });
    }
    let (b, kvh, rows, kv) = scores.dims4()?;
    let g = rows / mask.q_len;
    let add = mask
        .additive(b, kv, scores.device())?
        .to_dtype(scores.dtype())?;
    let s = (scores * scale)?
        .reshape((b, kvh, g, mask.q_len, kv))?
        .broadcast_add(&add)?;
    let max = s.max_keepdim(D::Minus1)?;
    let e = s.broadcast_sub(&max)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    p.reshape((b, kvh, rows, kv))
}

// ---------------------------------------------------------------------------
// Gated feed-forward activations on the packed gate|up projection:
// SwiGLU (`silu(gate) * up`, Llama, Qwen) and GeGLU with the tanh-approximated
// GELU (`gelu_tanh(gate) * up`, Gemma).

/// The gated activation of one feed-forward row: `out = act(gate) · up`
/// with `gu = [gate | up]`.
pub fn gated_row(gu: &[f32], gelu: bool, out: &mut [f32]) {
    let (g, u) = gu.split_at(gu.len() / 2);
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = gate_act(gelu, *g).0 * u;
    }
}

/// Activation and derivative of the gate.
fn gate_act(gelu: bool, g: f32) -> (f32, f32) {
    if gelu {
        // 0.5·g·(1 + tanh(u)), u = c·(g + 0.044715·g³), c = √(2/π); as
        // 1 + tanh(u) = 2·sigmoid(2u): g·s with s = sigmoid(2u) (one exp,
        // no libm tanh, no cancellation), and 1 − tanh²(u) = 4·s·(1 − s)
        const C: f32 = 0.797_884_6;
        let u = C * (g + 0.044_715 * g * g * g);
        let s = sigmoid(2.0 * u);
        let act = g * s;
        let d = s + 2.0 * g * s * (1.0 - s) * C * (1.0 + 3.0 * 0.044_715 * g * g);
        (act, d)
    } else {
        let s = sigmoid(g);
        (g * s, s * (1.0 + g * (1.0 - s)))
    }
}

struct Gated {
    gelu: bool,
}
struct GatedBwd {
    gelu: bool,
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        if self.gelu {
            "geglu-fused"
        } else {
            "swiglu-fused"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gated-ffn")?;
        let w = *l.dims().last().unwrap_or(&0);
        let f = w / 2;
        let mut out = vec![0f32; x.len() / 2];
        let gelu = self.gelu;
        out.par_chunks_mut(f)
            .zip(x.par_chunks(w))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, x)| {
                let (g, u) = x.split_at(f);
                for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                    *o = gate_act(gelu, *g).0 * u;
                }
            });
        let mut od = l.dims().to_vec();
        if let Some(v) = od.last_mut() {
            *v = f;
        }
        Ok((CpuStorage::F32(out), Shape::from(od)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        Ok(Some(g.apply_op2_no_bwd(
            &arg.contiguous()?,
            &GatedBwd { gelu: self.gelu },
        )?))
    }
}

impl CustomOp2 for GatedBwd {
    fn name(&self) -> &'static str {
        "gated-ffn-fused-bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let go = f32_slice(gs, gl, "gated-ffn-bwd")?;
        let x = f32_slice(xs, xl, "gated-ffn-bwd")?;
        let w = *xl.dims().last().unwrap_or(&0);
        let f = w / 2;
        let mut out = vec![0f32; x.len()];
        let gelu = self.gelu;
        out.par_chunks_mut(w)
            .zip(x.par_chunks(w).zip(go.par_chunks(f)))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, (x, go))| {
                let (g, u) = x.split_at(f);
                let (dg, du) = o.split_at_mut(f);
                for j in 0..f {
                    let (act, d) = gate_act(gelu, g[j]);
                    dg[j] = go[j] * u[j] * d;
                    du[j] = go[j] * act;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// `silu(gate) * up` for `x = [gate | up]` of `[.., 2F]`, giving `[.., F]`.
pub fn swiglu(x: &Tensor, k: Kernels) -> Result<Tensor> {
    gated(x, false, k)
}

/// `act(gate) * up` for `x = [gate | up]` of `[.., 2F]`: SiLU, or with
/// `gelu` the tanh-approximated GELU (GeGLU).
pub fn gated(x: &Tensor, gelu: bool, k: Kernels) -> Result<Tensor> {
    if use_fused(k, x) {
        return x.contiguous()?.apply_op1(Gated { gelu });
    }
    let f = x.dim(D::Minus1)? / 2;
    let g = x.narrow(D::Minus1, 0, f)?;
    let u = x.narrow(D::Minus1, f, f)?;
    let act = if gelu {
        // candle's `gelu` is the tanh approximation, with a backward
        g.gelu()?
    } else {
        candle_nn::ops::silu(&g)?
    };
    act * u
}

// ---------------------------------------------------------------------------
// Cross-entropy.

struct CrossEntropy {
    targets: Arc<Vec<u32>>,
}

struct CrossEntropyBwd {
    targets: Arc<Vec<u32>>,
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "cross-entropy")?;
        let (m, v) = l.shape().dims2()?;
        if self.targets.len() != m {
            bail!("cross-entropy: {} targets for {m} rows", self.targets.len())
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            bail!("cross-entropy: target {t} outside the vocabulary of {v}")
        }
        let mut out = vec![0f32; m];
        out.par_iter_mut()
            .zip(x.par_chunks(v))
            .enumerate()
            .for_each(|(r, (o, x))| {
                let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
                *o = (sum.ln() as f32 + max) - x[self.targets[r] as usize];
            });
        Ok((CpuStorage::F32(out), Shape::from(m)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        Ok(Some(g.apply_op2_no_bwd(
            &arg.contiguous()?,
            &CrossEntropyBwd {
                targets: self.targets.clone(),
            },
        )?))
    }
}

impl CustomOp2 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "cross-entropy-fused-bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(gs, gl, "cross-entropy-bwd")?;
        let x = f32_slice(xs, xl, "cross-entropy-bwd")?;
        let (_m, v) = xl.shape().dims2()?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .enumerate()
            .for_each(|(r, (o, x))| {
                let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0f64;
                for (o, &v) in o.iter_mut().zip(x) {
                    let e = (v - max).exp();
                    *o = e;
                    sum += e as f64;
                }
                let c = g[r] / sum as f32;
                o.iter_mut().for_each(|v| *v *= c);
                o[self.targets[r] as usize] -= g[r];
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// Per-row negative log-likelihood `[m]` of `targets` under `logits: [m, vocab]`.
pub fn cross_entropy(logits: &Tensor, targets: &Arc<Vec<u32>>, k: Kernels) -> Result<Tensor> {
    if use_fused(k, logits) {
        return logits.contiguous()?.apply_op1(CrossEntropy {
            targets: targets.clone(),
        });
    }
    let m = logits.dim(0)?;
    let idx = Tensor::from_slice(targets.as_slice(), (m, 1), logits.device())?;
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    lsm.gather(&idx, 1)?.squeeze(1)?.neg()
}

// ---------------------------------------------------------------------------
// Graph nodes with a precomputed forward and a hand-written backward.
//
// The forward value is computed with ordinary (detached, so unrecorded) ops,
// then attached to the graph as one custom op whose `cpu_fwd` hands back that
// value and whose `bwd` recomputes what it needs. Intermediates (attention
// probabilities, full-vocabulary logits) are then never kept in the graph.

/// Takes the precomputed value out of its slot as CPU storage.
fn take_precomputed(
    slot: &std::sync::Mutex<Option<Tensor>>,
    op: &str,
) -> Result<(CpuStorage, Shape)> {
    let t = slot
        .lock()
        .map_err(|_| candle_core::Error::Msg(format!("{op}: poisoned lock")))?
        .take()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: forward run twice")))?;
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let n = l.shape().elem_count();
            let start = l.start_offset();
            Ok((
                CpuStorage::F32(v[start..start + n].to_vec()),
                l.shape().clone(),
            ))
        }
        _ => bail!("{op}: expected f32 CPU storage"),
    }
}

struct AttnCore {
    out: std::sync::Mutex<Option<Tensor>>,
    scale: f64,
    mask: AttnMask,
    kern: Kernels,
}

fn attention_plain(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttnMask,
    kern: Kernels,
) -> Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    let kvh = k.dim(1)?;
    let qg = q.reshape((b, kvh, (h / kvh) * s, d))?;
    let p = masked_softmax(&qg.matmul(&k.t()?)?, scale, mask, kern)?;
    p.matmul(v)?.reshape((b, h, s, d))
}

impl candle_core::CustomOp3 for AttnCore {
    fn name(&self) -> &'static str {
        "attention-core"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        take_precomputed(&self.out, "attention-core")
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let (b, h, s, d) = q.dims4()?;
        let kvh = k.dim(1)?;
        let gs = (h / kvh) * s;
        let qg = q.reshape((b, kvh, gs, d))?;
        let go = grad.contiguous()?.reshape((b, kvh, gs, d))?;
        let p = masked_softmax(&qg.matmul(&k.t()?)?, self.scale, &self.mask, self.kern)?;
        let dv = p.t()?.matmul(&go)?;
        let dp = go.matmul(&v.t()?)?;
        let ds = dp.apply_op2_no_bwd(
            &p,
            &MaskedSoftmaxBwd {
                scale: self.scale as f32,
            },
        )?;
        let dq = ds.matmul(&k)?.reshape((b, h, s, d))?;
        let dk = ds.t()?.matmul(&qg)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Attention `softmax(scale · q kᵀ + mask) v` for `q: [b, heads, s, d]` and
/// `k, v: [b, kv_heads, t, d]` (grouped-query: head `i` uses KV head
/// `i / (heads / kv_heads)`), giving `[b, heads, s, d]`. When gradients are
/// tracked (training, fused kernels), the probabilities are recomputed in the
/// backward instead of being kept: one graph node, no `[b, h, s, t]` tensors
/// held per layer.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttnMask,
    kern: Kernels,
) -> Result<Tensor> {
    let tracked = q.track_op() || k.track_op() || v.track_op();
    if !(tracked && use_fused(kern, q)) {
        return attention_plain(q, k, v, scale, mask, kern);
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let out = attention_plain(&q.detach(), &k.detach(), &v.detach(), scale, mask, kern)?;
    let op = AttnCore {
        out: std::sync::Mutex::new(Some(out)),
        scale,
        mask: mask.clone(),
        kern,
    };
    q.apply_op3(&k, &v, op)
}

struct HeadCrossEntropy {
    nll: std::sync::Mutex<Option<Tensor>>,
    head: Tensor,
    targets: Arc<Vec<u32>>,
    chunk: usize,
    kern: Kernels,
}

/// Rows of hidden states per LM-head chunk: 128 × 49152 f32 logits = 25 MB.
const HEAD_CHUNK_ROWS: usize = 128;

impl CustomOp1 for HeadCrossEntropy {
    fn name(&self) -> &'static str {
        "lm-head-cross-entropy"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        take_precomputed(&self.nll, "lm-head-cross-entropy")
    }

    fn bwd(&self, hidden: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let hidden = hidden.detach();
        let m = hidden.dim(0)?;
        let grad = grad.contiguous()?;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < m {
            let n = self.chunk.min(m - start);
            let logits = linear(&hidden.narrow(0, start, n)?, &self.head, self.kern)?;
            let t = Arc::new(self.targets[start..start + n].to_vec());
            let g = grad.narrow(0, start, n)?.contiguous()?;
            let dl = g.apply_op2_no_bwd(&logits, &CrossEntropyBwd { targets: t })?;
            parts.push(dl.matmul(&self.head)?);
            start += n;
        }
        Ok(Some(Tensor::cat(&parts, 0)?))
    }
}

/// Per-row negative log-likelihood of `targets` under the LM head applied to
/// `hidden: [m, hidden]` (head `[vocab, hidden]`, frozen). The logits are
/// computed in chunks of rows and recomputed in the backward, so the
/// `[m, vocab]` matrix is never materialised whole nor kept in the graph.
pub fn head_cross_entropy(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Arc<Vec<u32>>,
    kern: Kernels,
) -> Result<Tensor> {
    let m = hidden.dim(0)?;
    if targets.len() != m {
        bail!("head-cross-entropy: {} targets for {m} rows", targets.len())
    }
    if !use_fused(kern, hidden) {
        return cross_entropy(&linear(hidden, head, kern)?, targets, kern);
    }
    let detached = hidden.detach();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < m {
        let n = HEAD_CHUNK_ROWS.min(m - start);
        let logits = linear(&detached.narrow(0, start, n)?, head, kern)?;
        let t = Arc::new(targets[start..start + n].to_vec());
        parts.push(cross_entropy(&logits, &t, kern)?);
        start += n;
    }
    let nll = Tensor::cat(&parts, 0)?;
    if !hidden.track_op() {
        return Ok(nll);
    }
    let op = HeadCrossEntropy {
        nll: std::sync::Mutex::new(Some(nll)),
        head: head.clone(),
        targets: targets.clone(),
        chunk: HEAD_CHUNK_ROWS,
        kern,
    };
    hidden.contiguous()?.apply_op1(op)
}

// ---------------------------------------------------------------------------
// Attention for a few query tokens (decoding), straight from the KV cache.

/// At most this many query tokens use [`DecodeAttention`].
const DECODE_ATTN_MAX_Q: usize = 16;

struct DecodeAttention {
    scale: f32,
    mask: AttnMask,
}

impl candle_core::CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = f32_slice(qs, ql, "decode-attention")?;
        let (_b, h, s, d) = ql.shape().dims4()?;
        let (_, kvh, t, _) = kl.shape().dims4()?;
        let g = h / kvh;
        let full = |st: &CpuStorage, l: &Layout| -> Result<(Vec<usize>, usize)> {
            if l.stride()[3] != 1 {
                bail!("decode-attention: cache rows must be contiguous")
            }
            match st {
                CpuStorage::F32(_) => (),
                _ => bail!("decode-attention: expected f32"),
            };
            Ok((l.stride().to_vec(), l.start_offset()))
        };
        let (kst, koff) = full(ks, kl)?;
        let (vst, voff) = full(vs, vl)?;
        let (CpuStorage::F32(kd), CpuStorage::F32(vd)) = (ks, vs) else {
            bail!("decode-attention: expected f32")
        };
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(s * d).enumerate().for_each(|(bh, o)| {
            let (bi, hi) = (bh / h, bh % h);
            let kh = hi / g;
            let kbase = koff + bi * kst[0] + kh * kst[1];
            let vbase = voff + bi * vst[0] + kh * vst[1];
            let mut p = vec![0f32; t];
            for i in 0..s {
                let (lo, hi_k) = self.mask.range(bi, i, t);
                if lo >= hi_k {
                    continue;
                }
                let qi = &q[(bh * s + i) * d..(bh * s + i + 1) * d];
                let mut max = f32::NEG_INFINITY;
                for j in lo..hi_k {
                    let kj = &kd[kbase + j * kst[2]..kbase + j * kst[2] + d];
                    let sc = dot1(qi, kj) * self.scale;
                    p[j] = sc;
                    max = max.max(sc);
                }
                let mut sum = 0f32;
                for pj in &mut p[lo..hi_k] {
                    *pj = (*pj - max).exp();
                    sum += *pj;
                }
                let oi = &mut o[i * d..(i + 1) * d];
                for j in lo..hi_k {
                    let w = p[j] / sum;
                    let vj = &vd[vbase + j * vst[2]..vbase + j * vst[2] + d];
                    for (o, v) in oi.iter_mut().zip(vj) {
                        *o = w.mul_add(*v, *o);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }
}

/// Inference attention for up to 16 query tokens per row, reading keys and
/// values in place (e.g. from a KV cache view); `None` when not applicable.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttnMask,
    kern: Kernels,
) -> Result<Option<Tensor>> {
    let tracked = q.track_op() || k.track_op() || v.track_op();
    let (_, _, s, _) = q.dims4()?;
    if tracked || !use_fused(kern, q) || s > DECODE_ATTN_MAX_Q || k.dtype() != DType::F32 {
        return Ok(None);
    }
    let q = q.contiguous()?;
    Ok(Some(q.apply_op3_no_bwd(
        k,
        v,
        &DecodeAttention {
            scale: scale as f32,
            mask: mask.clone(),
        },
    )?))
}
