//! The CPU fast path of the sentence encoder: the same BERT as
//! [`super::Bert`] (plain Rust, no candle), run on packed token rows (no padding anywhere) with gemm
//! for every matrix product and fused row passes for bias, GELU, residual and
//! layer norm. Attention runs per (sequence, head) on strided views of the
//! fused QKV rows, so nothing is transposed or copied and no mask is needed.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Rows per parallel task in the row-wise passes.
const ROWS_PER_TASK: usize = 32;

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

/// A dense layer: out = x . weight_t + bias.
pub struct Dense {
    /// (in_dim, out_dim) row-major.
    pub weight_t: Vec<f32>,
    pub bias: Vec<f32>,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Dense {
    /// out (rows, out_dim) = xs (rows, in_dim) . W, without the bias.
    fn matmul(&self, xs: &[f32], out: &mut Vec<f32>, threads: usize) {
        let rows = xs.len() / self.in_dim;
        out.clear();
        out.resize(rows * self.out_dim, 0.0);
        let par = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        assert_eq!(self.weight_t.len(), self.in_dim * self.out_dim);
        // SAFETY: the slices hold rows x in_dim, in_dim x out_dim and
        // rows x out_dim values, all row-major with the strides given.
        unsafe {
            gemm(
                rows,
                self.out_dim,
                self.in_dim,
                out.as_mut_ptr(),
                1,
                self.out_dim as isize,
                false,
                xs.as_ptr(),
                1,
                self.in_dim as isize,
                self.weight_t.as_ptr(),
                1,
                self.out_dim as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    }
}

/// Layer norm parameters.
pub struct Norm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
}

/// One encoder layer; `qkv` is the fused (hidden, 3 * hidden) projection
/// with the query part pre-scaled by 1/sqrt(head_dim).
pub struct CpuLayer {
    pub qkv: Dense,
    pub attention_output: Dense,
    pub attention_norm: Norm,
    pub intermediate: Dense,
    pub output: Dense,
    pub output_norm: Norm,
}

/// The encoder's weights as plain row-major arrays.
pub struct CpuBert {
    pub word_embeddings: Vec<f32>,
    /// position embeddings + token-type 0 embedding, (max_positions, hidden).
    pub position_and_type: Vec<f32>,
    pub embedding_norm: Norm,
    pub layers: Vec<CpuLayer>,
    pub hidden: usize,
    pub heads: usize,
    pub max_positions: usize,
    pub act: Act,
}

impl CpuBert {
    /// Last hidden states of the sequences packed one after the other:
    /// (sum of lengths, hidden), row-major, held in `scratch`.
    pub fn forward<'s>(
        &self,
        seqs: &[&[u32]],
        scratch: &'s mut Scratch,
    ) -> anyhow::Result<&'s [f32]> {
        let h = self.hidden;
        let vocab = self.word_embeddings.len() / h;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for q in seqs {
            if q.len() > self.max_positions {
                anyhow::bail!(
                    "sequence of {} tokens exceeds {} positions",
                    q.len(),
                    self.max_positions
                );
            }
            if let Some(&bad) = q.iter().find(|&&t| t as usize >= vocab) {
                anyhow::bail!("token id {bad} outside the vocabulary of {vocab}");
            }
            spans.push((offset, q.len()));
            offset += q.len();
        }
        let n = offset;
        let threads = rayon::current_num_threads();

        // Embeddings: word + (position + token type), then layer norm.
        let Scratch {
            xs,
            qkv,
            context,
            tmp,
            inter,
            token_ids,
            positions,
        } = scratch;
        token_ids.clear();
        positions.clear();
        for q in seqs {
            positions.extend(0..q.len());
            token_ids.extend(q.iter().map(|&t| t as usize));
        }
        xs.clear();
        xs.resize(n * h, 0.0);
        xs.par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(c, rows)| {
                for (r, row) in rows.chunks_mut(h).enumerate() {
                    let t = c * ROWS_PER_TASK + r;
                    let w = &self.word_embeddings[token_ids[t] * h..][..h];
                    let p = &self.position_and_type[positions[t] * h..][..h];
                    for ((o, a), b) in row.iter_mut().zip(w).zip(p) {
                        *o = a + b;
                    }
                    let n = &self.embedding_norm;
                    layer_norm_row(row, &n.weight, &n.bias, n.eps);
                }
            });

        context.clear();
        context.resize(n * h, 0.0);
        for layer in &self.layers {
            // Self-attention.
            layer.qkv.matmul(xs, qkv, threads);
            add_bias_rows(qkv, &layer.qkv.bias);
            attention(qkv, &spans, self.heads, h, context);
            layer.attention_output.matmul(context, tmp, threads);
            bias_residual_norm_rows(tmp, &layer.attention_output.bias, xs, &layer.attention_norm);
            std::mem::swap(xs, tmp);
            // Feed-forward.
            layer.intermediate.matmul(xs, inter, threads);
            bias_act_rows(inter, &layer.intermediate.bias, self.act);
            layer.output.matmul(inter, tmp, threads);
            bias_residual_norm_rows(tmp, &layer.output.bias, xs, &layer.output_norm);
            std::mem::swap(xs, tmp);
        }
        Ok(xs)
    }
}

/// Work buffers of [`CpuBert::forward`], kept between batches so their pages
/// are not faulted in again for every batch.
#[derive(Default)]
pub struct Scratch {
    xs: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    token_ids: Vec<usize>,
    positions: Vec<usize>,
}

impl Scratch {
    /// Drops buffers above `max_bytes` in total (after an unusually large batch).
    pub fn trim(&mut self, max_bytes: usize) {
        let f = |v: &Vec<f32>| v.capacity() * 4;
        let total = f(&self.xs) + f(&self.qkv) + f(&self.context) + f(&self.tmp) + f(&self.inter);
        if total > max_bytes {
            *self = Scratch::default();
        }
    }
}

fn add_bias_rows(xs: &mut [f32], bias: &[f32]) {
    let m = bias.len();
    xs.par_chunks_mut(m * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_mut(m) {
            for (x, b) in row.iter_mut().zip(bias) {
                *x += b;
            }
        }
    });
}

fn bias_act_rows(xs: &mut [f32], bias: &[f32], act: Act) {
    // One monomorphic loop per activation so each one vectorises.
    match act {
        Act::GeluErf => map_rows(xs, bias, gelu_erf),
        Act::GeluTanh => map_rows(xs, bias, gelu_tanh),
        Act::Relu => map_rows(xs, bias, |v| v.max(0.0)),
    }
}

/// xs[r][c] = f(xs[r][c] + bias[c]), rows in parallel.
#[inline(always)]
fn map_rows(xs: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32 + Sync + Send + Copy) {
    let m = bias.len();
    xs.par_chunks_mut(m * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_mut(m) {
            for (x, b) in row.iter_mut().zip(bias) {
                *x = f(*x + b);
            }
        }
    });
}

/// xs = layer_norm(xs + bias + residual), row by row.
fn bias_residual_norm_rows(xs: &mut [f32], bias: &[f32], residual: &[f32], norm: &Norm) {
    let m = bias.len();
    xs.par_chunks_mut(m * ROWS_PER_TASK)
        .zip(residual.par_chunks(m * ROWS_PER_TASK))
        .for_each(|(rows, res)| {
            for (row, res) in rows.chunks_mut(m).zip(res.chunks(m)) {
                for ((x, b), r) in row.iter_mut().zip(bias).zip(res) {
                    *x += b + r;
                }
                layer_norm_row(row, &norm.weight, &norm.bias, norm.eps);
            }
        });
}

/// In-place layer norm of one row (two-pass mean and variance).
#[inline]
fn layer_norm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum_f32(row) / n;
    let mut var_lanes = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (l, &x) in var_lanes.iter_mut().zip(c) {
            let d = x - mean;
            *l += d * d;
        }
    }
    let mut var: f32 = chunks
        .remainder()
        .iter()
        .map(|&x| (x - mean) * (x - mean))
        .sum();
    var += var_lanes.iter().sum::<f32>();
    let inv = 1.0 / (var / n + eps).sqrt();
    for ((x, w), b) in row.iter_mut().zip(weight).zip(bias) {
        *x = (*x - mean) * inv * w + b;
    }
}

/// Sum with 16 independent lanes so it vectorises.
#[inline]
fn sum_f32(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline]
fn max_f32(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    let m = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    chunks.remainder().iter().fold(m, |a, &b| a.max(b))
}

/// Multi-head self-attention over packed sequences. `qkv` holds rows of
/// [q | k | v] (3 * hidden wide, query already scaled); `spans` are the
/// (first row, length) of each sequence; the result goes to `context`
/// (hidden wide). Each (sequence, head) is one task: scores = Q K^T, a
/// softmax per row, context = P V, all on strided views of `qkv`.
fn attention(
    qkv: &[f32],
    spans: &[(usize, usize)],
    heads: usize,
    hidden: usize,
    context: &mut [f32],
) {
    let d = hidden / heads;
    let row = 3 * hidden;
    assert_eq!(context.len() * 3, qkv.len());
    assert!(spans
        .iter()
        .all(|&(o, l)| (o + l) * hidden <= context.len()));
    let out = SendPtr(context.as_mut_ptr());
    let tasks: Vec<(usize, usize)> = (0..spans.len())
        .flat_map(|s| (0..heads).map(move |hd| (s, hd)))
        .collect();
    tasks
        .par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, &(s, hd)| {
            let (o, l) = spans[s];
            if l == 0 {
                return;
            }
            scores.clear();
            scores.resize(l * l, 0.0);
            let base = o * row + hd * d;
            // SAFETY: every read stays inside the rows o..o+l of qkv (checked
            // above: spans fit the buffers); scores is l x l; each task writes
            // only rows o..o+l, columns hd*d..(hd+1)*d of context, and no two
            // tasks share a (sequence, head), so writes never overlap.
            unsafe {
                // scores (l x l) = Q (l x d, row stride 3h) . K^T (d x l: K's rows as columns).
                gemm(
                    l,
                    l,
                    d,
                    scores.as_mut_ptr(),
                    1,
                    l as isize,
                    false,
                    qkv.as_ptr().add(base),
                    1,
                    row as isize,
                    qkv.as_ptr().add(base + hidden),
                    row as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                for r in scores.chunks_mut(l) {
                    softmax_in_place(r);
                }
                // context rows (l x d, row stride h) = P (l x l) . V (l x d, row stride 3h).
                gemm(
                    l,
                    d,
                    l,
                    out.get().add(o * hidden + hd * d),
                    1,
                    hidden as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    l as isize,
                    qkv.as_ptr().add(base + 2 * hidden),
                    1,
                    row as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
}

/// A raw pointer that may cross threads (writes go to disjoint regions).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only for the disjoint writes documented in `attention`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[inline]
fn softmax_in_place(xs: &mut [f32]) {
    let max = max_f32(xs);
    for x in xs.iter_mut() {
        *x = exp_fast(*x - max);
    }
    let inv = 1.0 / sum_f32(xs);
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

/// e^x, relative error about 2e-7 (Cephes expf polynomial after the usual
/// 2^n range reduction; inputs clamped to [-87, 88]); branch-free so it
/// vectorises.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn exp_fast(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693359375;
    const LN2_LO: f32 = -2.12194440e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.9875691500e-4_f32;
    let p = p.mul_add(r, 1.3981999507e-3);
    let p = p.mul_add(r, 8.3334519073e-3);
    let p = p.mul_add(r, 4.1665795894e-2);
    let p = p.mul_add(r, 1.6666665459e-1);
    let p = p.mul_add(r, 5.0000001201e-1);
    let e = p.mul_add(r * r, r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x) as a rational function of x (Eigen's float erf, max error ~4e-7);
/// branch-free so it vectorises.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn erf_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.72614225801306e-10_f32;
    let p = p.mul_add(x2, 2.77068142495902e-08);
    let p = p.mul_add(x2, -2.10102402082508e-06);
    let p = p.mul_add(x2, -5.69250639462346e-05);
    let p = p.mul_add(x2, -7.34990630326855e-04);
    let p = p.mul_add(x2, -2.95459980854025e-03);
    let p = p.mul_add(x2, -1.60960333262415e-02);
    let q = -1.45660718464996e-05_f32;
    let q = q.mul_add(x2, -2.13374055278905e-04);
    let q = q.mul_add(x2, -1.68282697438203e-03);
    let q = q.mul_add(x2, -7.37332916720468e-03);
    let q = q.mul_add(x2, -1.42647390514189e-02);
    x * p / q
}

#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    // tanh(y) = 1 - 2 / (e^{2y} + 1)
    let y = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    let t = 1.0 - 2.0 / (exp_fast(2.0 * y) + 1.0);
    0.5 * x * (1.0 + t)
}
