//! Quantized weight matrices for decoding: 4-bit blocks (GGUF Q4_0, Q4_1)
//! and 8-bit blocks (Q8_0, or any other weight re-quantized once), multiplied
//! with f32 activations by matrix-vector kernels (AVX-512F, or AVX2 + FMA,
//! when the CPU has them, found at run time; portable code otherwise).
//!
//! The activations stay f32 (llama.cpp quantizes them to 8 bits): a product
//! with a GGUF's own blocks then equals the product with the same weights
//! dequantized to f32 up to the order of the additions, so the quantized
//! decoder picks the same tokens as the f32 path.
//!
//! Layout: each 32-weight block keeps its quants (16 bytes of nibbles, or 32
//! signed bytes) and its scale (and offset) as f32, row after row. A block
//! of 4-bit weights is `q · d + m` with `q` in `0..16` (Q4_0's `(q − 8) · d`
//! is `m = −8d`); an 8-bit one is `q · d`. Q4_K's 32-weight sub-blocks are
//! such 4-bit blocks too (`d · sc`, `−dmin · m`: the same values, read from
//! the file's own quants), and Q6_K's values are 8-bit blocks with a scale
//! per 16 weights ([`QKind::Q8H`]), Q5_0's `q − 16` 8-bit blocks, Q5_1's and
//! Q5_K's 8-bit blocks with an offset ([`QKind::Q8M`]). The other quantized
//! types (Q2_K, Q3_K...) are re-quantized once to 8-bit blocks, within half a step of
//! 1/127 of each block's largest weight. F32, F16 and BF16 weights are multiplied as
//! the f32 tensor the model already holds ([`QKind::F32`], no copy), exact.

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, DType, Storage, Tensor};
use half::f16;
use rayon::prelude::*;

/// Weights per block.
pub const BLOCK: usize = 32;

/// Weights per k-quant super-block (Q4_K, Q5_K, Q6_K).
const SUPER: usize = 256;

/// Activation rows multiplied per pass over a weight row (8 or 4).
const GROUP_MAX: usize = 8;

/// How a [`QMat`]'s blocks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QKind {
    /// 16 bytes of nibbles (element `j` low, `j + 16` high), `d`, `m`.
    Q4,
    /// 32 signed bytes, `d`.
    Q8,
    /// 32 signed bytes with a scale per 16 (`d` holds two per block): Q6_K's
    /// values exactly.
    Q8H,
    /// 32 bytes `q` in `0..32` with `d` and an offset `m`: `q·d + m` (Q5_1's
    /// and Q5_K's values exactly).
    Q8M,
    /// The model's f32 weights (shared with the f32 path).
    F32,
}

/// A `[rows, cols]` weight matrix in blocks of [`BLOCK`] along `cols`.
#[derive(Clone, Debug)]
pub struct QMat {
    kind: QKind,
    rows: usize,
    cols: usize,
    qs: Vec<u8>,
    d: Vec<f32>,
    /// Offsets of 4-bit blocks (empty for 8-bit).
    m: Vec<f32>,
    /// The weights of [`QKind::F32`].
    f32w: Option<Tensor>,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Whether every activation row holds `nb` blocks (the SIMD kernels read
/// them unchecked).
#[cfg(target_arch = "x86_64")]
fn rows_hold(x: &[&[f32]], nb: usize) -> bool {
    x.iter().all(|r| r.len() >= nb * BLOCK)
}

/// Scale and min `j` of a k-quant super-block's 12 bytes (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 32 five-bit values of a Q5_0/Q5_1 block: nibbles (element `e` low,
/// `e + 16` high) and the fifth bits in a 32-bit mask (bit `e`).
fn five_bits<'a>(qh: &[u8], qs: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    (0..32).map(move |e| {
        let nib = if e < 16 {
            qs[e] & 0x0F
        } else {
            qs[e - 16] >> 4
        };
        nib | ((((qh >> e) & 1) as u8) << 4)
    })
}

impl QMat {
    pub fn kind(&self) -> QKind {
        self.kind
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes read per product (quants and scales, or f32 weights).
    pub fn size_bytes(&self) -> usize {
        match self.kind {
            QKind::F32 => 4 * self.rows * self.cols,
            _ => self.qs.len() + 4 * (self.d.len() + self.m.len()),
        }
    }

    /// Multiplies with a contiguous f32 CPU tensor `[rows, cols]` as it is
    /// (`None` for another dtype, device or layout).
    pub fn from_f32(t: &Tensor) -> Result<Option<QMat>> {
        let (rows, cols) = t.dims2()?;
        if t.dtype() != DType::F32 || !t.device().is_cpu() || !t.is_contiguous() {
            return Ok(None);
        }
        Ok(Some(QMat {
            kind: QKind::F32,
            rows,
            cols,
            qs: Vec::new(),
            d: Vec::new(),
            m: Vec::new(),
            f32w: Some(t.clone()),
        }))
    }

    /// What the decoder multiplies for a GGUF tensor (`f32w`: the same
    /// weights dequantized): its own blocks ([`QMat::from_qtensor`]), else
    /// for other quantized types the weights re-quantized to 8 bits; `None`
    /// for float types (F32, F16, BF16: decoded on `f32w`, exact).
    pub fn for_decoding(t: &QTensor, f32w: &Tensor) -> Result<Option<QMat>> {
        if let Some(m) = QMat::from_qtensor(t)? {
            return Ok(Some(m));
        }
        if matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return Ok(None);
        }
        let (rows, cols) = f32w.dims2()?;
        let w: Vec<f32> = f32w.flatten_all()?.to_vec1()?;
        Ok(QMat::quantize_q8(&w, rows, cols))
    }

    /// The GGUF tensor's own blocks when they are Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    /// Q4_K, Q5_K or Q6_K
    /// (`None` for other types, which [`QMat::quantize_q8`] can re-quantize).
    pub fn from_qtensor(t: &QTensor) -> Result<Option<QMat>> {
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        match t.dtype() {
            GgmlDType::Q4K => return QMat::from_q4k(&t.data()?, rows, cols).map(Some),
            GgmlDType::Q6K => return QMat::from_q6k(&t.data()?, rows, cols).map(Some),
            GgmlDType::Q5K => return QMat::from_q5k(&t.data()?, rows, cols).map(Some),
            _ => {}
        }
        let (bytes, kind) = match t.dtype() {
            GgmlDType::Q4_0 => (18, QKind::Q4),
            GgmlDType::Q4_1 => (20, QKind::Q4),
            GgmlDType::Q5_0 => (22, QKind::Q8),
            GgmlDType::Q5_1 => (24, QKind::Q8M),
            GgmlDType::Q8_0 => (34, QKind::Q8),
            _ => return Ok(None),
        };
        let data = t.data()?;
        let nb = rows * cols / BLOCK;
        if data.len() != nb * bytes {
            bail!(
                "quantized tensor holds {} bytes, expected {}",
                data.len(),
                nb * bytes
            )
        }
        let qlen = if kind == QKind::Q4 { 16 } else { 32 };
        let mut out = QMat {
            kind,
            rows,
            cols,
            qs: Vec::with_capacity(nb * qlen),
            d: Vec::with_capacity(nb),
            m: Vec::new(),
            f32w: None,
        };
        for blk in data.chunks_exact(bytes) {
            let d = f16_at(blk, 0);
            out.d.push(d);
            match t.dtype() {
                GgmlDType::Q4_0 => {
                    out.m.push(-8.0 * d);
                    out.qs.extend_from_slice(&blk[2..18]);
                }
                GgmlDType::Q4_1 => {
                    out.m.push(f16_at(blk, 2));
                    out.qs.extend_from_slice(&blk[4..20]);
                }
                GgmlDType::Q5_0 => {
                    // 5-bit `q − 16`: nibbles, high bits in a 32-bit mask
                    for q in five_bits(&blk[2..6], &blk[6..22]) {
                        out.qs.push((q as i8 - 16) as u8);
                    }
                }
                GgmlDType::Q5_1 => {
                    out.m.push(f16_at(blk, 2));
                    out.qs.extend(five_bits(&blk[4..8], &blk[8..24]));
                }
                _ => out.qs.extend_from_slice(&blk[2..34]),
            }
        }
        Ok(Some(out))
    }

    /// An empty matrix of `kind` for a k-quant tensor `[rows, cols]` of
    /// `bytes` per super-block of [`SUPER`] weights, once its size is checked.
    fn for_super_blocks(
        name: &str,
        kind: QKind,
        bytes: usize,
        data: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<QMat> {
        let n = rows * cols / SUPER;
        if !cols.is_multiple_of(SUPER) || data.len() != n * bytes {
            bail!(
                "{name} tensor [{rows}, {cols}] holds {} bytes, expected {}",
                data.len(),
                n * bytes
            )
        }
        let nb = rows * cols / BLOCK;
        let (qlen, scales) = match kind {
            QKind::Q4 => (16, 1),
            QKind::Q8H => (32, 2),
            _ => (32, 1),
        };
        Ok(QMat {
            kind,
            rows,
            cols,
            qs: Vec::with_capacity(nb * qlen),
            d: Vec::with_capacity(nb * scales),
            m: Vec::with_capacity(if matches!(kind, QKind::Q4 | QKind::Q8M) {
                nb
            } else {
                0
            }),
            f32w: None,
        })
    }

    /// Q4_K super-blocks (256 weights: `d`, `dmin`, 12 bytes of 6-bit scales
    /// and mins, 128 bytes of nibbles) as eight 4-bit blocks each, with
    /// `d·sc` and `−dmin·m` as candle computes them.
    fn from_q4k(data: &[u8], rows: usize, cols: usize) -> Result<QMat> {
        const BYTES: usize = 144;
        let mut out = QMat::for_super_blocks("Q4_K", QKind::Q4, BYTES, data, rows, cols)?;
        for blk in data.chunks_exact(BYTES) {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let scales = &blk[4..16];
            for j in 0..4 {
                let q = &blk[16 + 32 * j..16 + 32 * (j + 1)];
                for (half, sub) in [(0, 2 * j), (4, 2 * j + 1)] {
                    let (sc, m) = scale_min_k4(sub, scales);
                    out.d.push(d * sc as f32);
                    out.m.push(-(dmin * m as f32));
                    let v = |e: usize| (q[e] >> half) & 0x0F;
                    out.qs.extend((0..16).map(|e| v(e) | (v(e + 16) << 4)));
                }
            }
        }
        Ok(out)
    }

    /// Q5_K super-blocks (256 weights: `d`, `dmin`, 12 bytes of 6-bit scales
    /// and mins, 32 bytes of high bits, 128 of nibbles) as eight 8-bit
    /// blocks `q·(d·sc) + (−dmin·m)`, `q` in `0..32`, as candle computes them.
    fn from_q5k(data: &[u8], rows: usize, cols: usize) -> Result<QMat> {
        const BYTES: usize = 176;
        let mut out = QMat::for_super_blocks("Q5_K", QKind::Q8M, BYTES, data, rows, cols)?;
        for blk in data.chunks_exact(BYTES) {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let (scales, qh, qs) = (&blk[4..16], &blk[16..48], &blk[48..176]);
            for j in 0..4 {
                let ql = &qs[32 * j..32 * (j + 1)];
                for (half, sub) in [(0, 2 * j), (1, 2 * j + 1)] {
                    let (sc, m) = scale_min_k4(sub, scales);
                    out.d.push(d * sc as f32);
                    out.m.push(-(dmin * m as f32));
                    let bit = 1u8 << (2 * j + half);
                    out.qs.extend(ql.iter().zip(qh).map(|(l, h)| {
                        let low = (l >> (4 * half)) & 0x0F;
                        low + if h & bit != 0 { 16 } else { 0 }
                    }));
                }
            }
        }
        Ok(out)
    }

    /// Q6_K super-blocks (256 weights: 128 bytes of low nibbles, 64 of high
    /// bit pairs, 16 signed scales, `d`) as eight 8-bit blocks of `q − 32`
    /// with `d·sc` per 16 weights, as candle computes them.
    fn from_q6k(data: &[u8], rows: usize, cols: usize) -> Result<QMat> {
        const BYTES: usize = 210;
        let mut out = QMat::for_super_blocks("Q6_K", QKind::Q8H, BYTES, data, rows, cols)?;
        for blk in data.chunks_exact(BYTES) {
            let (ql, qh, sc) = (&blk[..128], &blk[128..192], &blk[192..208]);
            let d = f16_at(blk, 208);
            // element p: 128-halves, then quarters of 32 (ggml's order)
            for p in 0..SUPER {
                let (idx, quarter, l) = (p / 128, (p % 128) / 32, p % 32);
                let (ql, qh) = (&ql[64 * idx..], &qh[32 * idx..]);
                let lo = match quarter {
                    0 => ql[l] & 0xF,
                    1 => ql[l + 32] & 0xF,
                    2 => ql[l] >> 4,
                    _ => ql[l + 32] >> 4,
                };
                let hi = (qh[l] >> (2 * quarter)) & 3;
                out.qs.push(((lo | (hi << 4)) as i8 - 32) as u8);
            }
            out.d.extend(sc.iter().map(|&s| d * s as i8 as f32));
        }
        Ok(out)
    }

    /// Re-quantizes f32 weights `[rows, cols]` to 8-bit blocks (as ggml's
    /// Q8_0, with the scale kept in f32). `None` when `cols` is not a
    /// multiple of [`BLOCK`].
    pub fn quantize_q8(w: &[f32], rows: usize, cols: usize) -> Option<QMat> {
        if !cols.is_multiple_of(BLOCK) || w.len() != rows * cols {
            return None;
        }
        let nb = w.len() / BLOCK;
        let mut qs = Vec::with_capacity(w.len());
        let mut d = Vec::with_capacity(nb);
        for blk in w.chunks_exact(BLOCK) {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = amax / 127.0;
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            d.push(s);
            qs.extend(blk.iter().map(|v| (v * inv).round() as i8 as u8));
        }
        Some(QMat {
            kind: QKind::Q8,
            rows,
            cols,
            qs,
            d,
            m: Vec::new(),
            f32w: None,
        })
    }

    /// Stacks matrices with the same kind and width along the rows (`None`
    /// when they differ).
    pub fn stack(parts: &[&QMat]) -> Option<QMat> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.kind != first.kind || p.cols != first.cols || p.kind == QKind::F32)
        {
            return None;
        }
        let mut out = QMat {
            kind: first.kind,
            rows: 0,
            cols: first.cols,
            qs: Vec::new(),
            d: Vec::new(),
            m: Vec::new(),
            f32w: None,
        };
        for p in parts {
            out.rows += p.rows;
            out.qs.extend_from_slice(&p.qs);
            out.d.extend_from_slice(&p.d);
            out.m.extend_from_slice(&p.m);
        }
        Some(out)
    }

    /// The f32 values of row `r` (tests and the embedding of tied heads).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        if let Some(w) = &self.f32w {
            let row = w.get(r).and_then(|t| t.to_vec1::<f32>());
            out.copy_from_slice(&row.expect("f32 weight row"));
            return;
        }
        let nb = self.cols / BLOCK;
        for (k, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.block_values(r * nb + k, o);
        }
    }

    /// The 32 values of block `b` (of a quantized kind): `q·d + m` or `q·d`,
    /// rounded as candle dequantizes.
    fn block_values(&self, b: usize, o: &mut [f32]) {
        match self.kind {
            QKind::Q4 => {
                let q = &self.qs[b * 16..(b + 1) * 16];
                for j in 0..16 {
                    o[j] = (q[j] & 0x0F) as f32 * self.d[b] + self.m[b];
                    o[j + 16] = (q[j] >> 4) as f32 * self.d[b] + self.m[b];
                }
            }
            QKind::Q8 => {
                let q = &self.qs[b * 32..(b + 1) * 32];
                for (o, q) in o.iter_mut().zip(q) {
                    *o = *q as i8 as f32 * self.d[b];
                }
            }
            QKind::Q8H => {
                let q = &self.qs[b * 32..(b + 1) * 32];
                for (e, (o, q)) in o.iter_mut().zip(q).enumerate() {
                    *o = *q as i8 as f32 * self.d[2 * b + e / 16];
                }
            }
            QKind::Q8M => {
                let q = &self.qs[b * 32..(b + 1) * 32];
                for (o, q) in o.iter_mut().zip(q) {
                    *o = *q as f32 * self.d[b] + self.m[b];
                }
            }
            QKind::F32 => unreachable!("f32 weights have no blocks"),
        }
    }

    /// The portable kernel: each block's values, then a plain dot product
    /// with each of the `N` activation rows.
    fn portable_dot<const N: usize>(&self, r: usize, x: &[&[f32]; N]) -> [f32; N] {
        let nb = self.cols / BLOCK;
        let mut out = [0f32; N];
        let mut w = [0f32; BLOCK];
        for k in 0..nb {
            self.block_values(r * nb + k, &mut w);
            for (o, xr) in out.iter_mut().zip(x) {
                let xb = &xr[k * BLOCK..(k + 1) * BLOCK];
                *o += w.iter().zip(xb).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        out
    }

    /// `x · Wᵀ` for `n` rows of activations `x: [n, cols]`: returns `[n, rows]`.
    /// Output rows are split between the threads; each weight block is read
    /// once for all `n` activation rows.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with(Kernel::detect(), x, n)
    }

    /// [`QMat::matmul`] with the given kernels (tests compare them).
    pub fn matmul_with(&self, kern: Kernel, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "qmat: activation shape");
        // the SIMD kernels below rely on it: never run them on a CPU without
        assert!(
            kern.supported(),
            "qmat: this CPU has no {} kernels",
            kern.name()
        );
        if let Some(w) = &self.f32w {
            let (st, l) = w.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(v)) = &*st else {
                unreachable!("QMat::from_f32 checks for f32 CPU weights")
            };
            let w = &v[l.start_offset()..l.start_offset() + self.rows * self.cols];
            return super::ops::small_m_matmul(x, w, n, self.rows, self.cols);
        }
        let rows: Vec<&[f32]> = x.chunks_exact(self.cols).collect();
        let mut t = vec![0f32; n * self.rows];
        // one contiguous share of the weight rows per thread: fewer, larger
        // tasks (a decoded token makes over a hundred of these calls)
        let per = self
            .rows
            .div_ceil(rayon::current_num_threads().max(1))
            .max(16);
        t.par_chunks_mut(n * per).enumerate().for_each(|(c, o)| {
            for (i, o) in o.chunks_exact_mut(n).enumerate() {
                self.row_dot(kern, c * per + i, &rows, o);
            }
        });
        if n == 1 {
            return t;
        }
        // [rows, n] -> [n, rows], in tiles of weight rows (contiguous writes)
        let mut out = vec![0f32; n * self.rows];
        const TILE: usize = 64;
        for r0 in (0..self.rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(self.rows);
            for b in 0..n {
                let dst = &mut out[b * self.rows + r0..b * self.rows + r1];
                for (d, r) in dst.iter_mut().zip(r0..r1) {
                    *d = t[r * n + b];
                }
            }
        }
        out
    }

    /// Weight row `r` against every activation row, in groups of 8, 4, 2, 1.
    fn row_dot(&self, kern: Kernel, r: usize, x: &[&[f32]], out: &mut [f32]) {
        let mut b = 0;
        while b < x.len() {
            let left = x.len() - b;
            let g = if left >= GROUP_MAX {
                GROUP_MAX
            } else if left >= 4 {
                4
            } else if left >= 2 {
                2
            } else {
                1
            };
            let (xs, o) = (&x[b..b + g], &mut out[b..b + g]);
            match g {
                8 => self.group::<8>(kern, r, xs, o),
                4 => self.group::<4>(kern, r, xs, o),
                2 => self.group::<2>(kern, r, xs, o),
                _ => self.group::<1>(kern, r, xs, o),
            }
            b += g;
        }
    }

    fn group<const N: usize>(&self, kern: Kernel, r: usize, x: &[&[f32]], out: &mut [f32]) {
        let x: [&[f32]; N] = std::array::from_fn(|i| x[i]);
        // row r's quants and scales (Q8H: two scales per block)
        let nb = self.cols / BLOCK;
        let (ql, h) = match self.kind {
            QKind::Q4 => (16, 1),
            QKind::Q8 => (32, 1),
            QKind::Q8H => (32, 2),
            QKind::Q8M => (32, 1),
            QKind::F32 => unreachable!("f32 weights are multiplied in matmul_with"),
        };
        let qs = &self.qs[r * nb * ql..(r + 1) * nb * ql];
        let d = &self.d[r * nb * h..(r + 1) * nb * h];
        let m = if matches!(self.kind, QKind::Q4 | QKind::Q8M) {
            &self.m[r * nb..(r + 1) * nb]
        } else {
            &[][..]
        };
        let four = self.kind == QKind::Q4;
        let off = self.kind == QKind::Q8M;
        let res: [f32; N] = match kern {
            // SAFETY (all six): these kernels are only chosen where the CPU
            // has their features (`Kernel::supported`, asserted in
            // `matmul_with`); the slices hold `nb` blocks (asserted inside).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if four => unsafe { avx2::q4_dot::<N>(qs, d, m, &x) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if off => unsafe { avx2::q8_dot::<N, true>(qs, d, h, m, &x) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::q8_dot::<N, false>(qs, d, h, m, &x) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if four => unsafe { avx512::q4_dot::<N>(qs, d, m, &x) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if off => unsafe { avx512::q8_dot::<N, true>(qs, d, h, m, &x) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::q8_dot::<N, false>(qs, d, h, m, &x) },
            Kernel::Portable => self.portable_dot::<N>(r, &x),
        };
        out.copy_from_slice(&res);
    }
}

/// Matrices stacked along the rows (e.g. q, k and v), multiplied as one:
/// parts of one kind are merged into one matrix; parts of different kinds
/// stay apart and their outputs are placed side by side.
#[derive(Clone, Debug)]
pub struct QStack {
    parts: Vec<QMat>,
    rows: usize,
}

impl QStack {
    pub fn new(parts: Vec<QMat>) -> QStack {
        let merged = QMat::stack(&parts.iter().collect::<Vec<_>>());
        let rows = parts.iter().map(|p| p.rows).sum();
        QStack {
            parts: merged.map(|m| vec![m]).unwrap_or(parts),
            rows,
        }
    }

    pub fn parts(&self) -> &[QMat] {
        &self.parts
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(QMat::size_bytes).sum()
    }

    /// `x · Wᵀ` for `x: [n, cols]`: `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        if let [one] = self.parts.as_slice() {
            return one.matmul(x, n);
        }
        let mut out = vec![0f32; n * self.rows];
        let mut col = 0;
        for p in &self.parts {
            let y = p.matmul(x, n);
            for (o, y) in out.chunks_exact_mut(self.rows).zip(y.chunks_exact(p.rows)) {
                o[col..col + p.rows].copy_from_slice(y);
            }
            col += p.rows;
        }
        out
    }
}

/// Which kernels this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

/// Environment variable naming the decode kernels to use instead of the
/// best available (`avx512f`, `avx2+fma`, `portable`), for comparisons.
pub const KERNEL_ENV: &str = "SLMFORGE_DECODE_KERNEL";

impl Kernel {
    /// The kernels this CPU runs, best first.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(Kernel::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Kernel::Avx2);
            }
        }
        v.push(Kernel::Portable);
        v
    }

    /// Whether this CPU runs these kernels (checked once).
    pub fn supported(self) -> bool {
        static AVAILABLE: std::sync::OnceLock<Vec<Kernel>> = std::sync::OnceLock::new();
        AVAILABLE.get_or_init(Kernel::available).contains(&self)
    }

    /// The best kernels this CPU has, or the ones [`KERNEL_ENV`] names
    /// when this CPU has them (checked once).
    pub fn detect() -> Kernel {
        static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *K.get_or_init(|| {
            let all = Kernel::available();
            let wanted = std::env::var(KERNEL_ENV).ok();
            all.iter()
                .copied()
                .find(|k| wanted.as_deref() == Some(k.name()))
                .unwrap_or(all[0])
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512f",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2+fma",
            Kernel::Portable => "portable",
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! As [`super::avx2`] with 16-lane vectors: a block's 32 weights are two
    //! vectors (`q·d + m`, one rounding), multiplied into every activation
    //! row with two FMAs per row and block. Each row keeps the same two
    //! accumulators (one per half block) at every group size, so a row's
    //! result does not depend on how many rows are decoded with it.
    use std::arch::x86_64::*;

    use super::BLOCK;

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows<const N: usize>(
        w: [__m512; 2],
        x: &[&[f32]; N],
        off: usize,
        acc: &mut [[__m512; 2]; N],
    ) {
        for r in 0..N {
            let xp = x[r].as_ptr().add(off);
            acc[r][0] = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(xp), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(xp.add(16)), acc[r][1]);
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn finish<const N: usize>(acc: [[__m512; 2]; N]) -> [f32; N] {
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
        }
        out
    }

    /// Σ over blocks of `(q·d + m)·x` for `N` activation rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn q4_dot<const N: usize>(
        qs: &[u8],
        d: &[f32],
        m: &[f32],
        x: &[&[f32]; N],
    ) -> [f32; N] {
        let nb = d.len();
        assert!(qs.len() >= nb * 16 && m.len() >= nb);
        assert!(super::rows_hold(x, nb));
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = [[_mm512_setzero_ps(); 2]; N];
        for k in 0..nb {
            let raw = _mm_loadu_si128(qs.as_ptr().add(k * 16) as *const __m128i);
            let lo = _mm_and_si128(raw, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            let dk = _mm512_set1_ps(*d.get_unchecked(k));
            let mk = _mm512_set1_ps(*m.get_unchecked(k));
            let f =
                |v: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), dk, mk);
            rows::<N>([f(lo), f(hi)], x, k * BLOCK, &mut acc);
        }
        finish(acc)
    }

    /// Σ over blocks of `(q·d)·x` for `N` activation rows; `h` scales
    /// per block (1, or 2: one per 16 weights).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn q8_dot<const N: usize, const OFF: bool>(
        qs: &[u8],
        d: &[f32],
        h: usize,
        m: &[f32],
        x: &[&[f32]; N],
    ) -> [f32; N] {
        assert!(h == 1 || h == 2);
        let nb = d.len() / h;
        assert!(qs.len() >= nb * 32 && (!OFF || m.len() >= nb));
        assert!(super::rows_hold(x, nb));
        let mut acc = [[_mm512_setzero_ps(); 2]; N];
        for k in 0..nb {
            let p = qs.as_ptr().add(k * 32);
            let d0 = _mm512_set1_ps(*d.get_unchecked(k * h));
            let d1 = _mm512_set1_ps(*d.get_unchecked(k * h + h - 1));
            let f = |o: usize, dk: __m512| {
                let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                    p.add(o) as *const __m128i
                )));
                match OFF {
                    false => _mm512_mul_ps(q, dk),
                    true => _mm512_fmadd_ps(q, dk, _mm512_set1_ps(*m.get_unchecked(k))),
                }
            };
            rows::<N>([f(0, d0), f(16, d1)], x, k * BLOCK, &mut acc);
        }
        finish(acc)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! Each block's 32 weights are dequantized once into four vectors
    //! (`q·d + m` with one rounding), then multiplied into every activation
    //! row: four FMAs per row and block, no per-block scaling or offset
    //! terms. Rows keep two accumulators (one with eight rows, for the
    //! registers), so the FMA chains overlap.
    use std::arch::x86_64::*;

    use super::BLOCK;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The weights of one block times `N` activation rows, into `acc`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rows<const N: usize>(
        w: [__m256; 4],
        x: &[&[f32]; N],
        off: usize,
        acc: &mut [[__m256; 2]; N],
    ) {
        for r in 0..N {
            let xp = x[r].as_ptr().add(off);
            if N >= 8 {
                let mut a = acc[r][0];
                a = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xp), a);
                a = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xp.add(8)), a);
                a = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xp.add(16)), a);
                acc[r][0] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xp.add(24)), a);
            } else {
                let (mut a, mut b) = (acc[r][0], acc[r][1]);
                a = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xp), a);
                b = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xp.add(8)), b);
                a = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xp.add(16)), a);
                b = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xp.add(24)), b);
                acc[r] = [a, b];
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish<const N: usize>(acc: [[__m256; 2]; N]) -> [f32; N] {
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
        }
        out
    }

    /// Σ over blocks of `(q·d + m)·x` for `N` activation rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4_dot<const N: usize>(
        qs: &[u8],
        d: &[f32],
        m: &[f32],
        x: &[&[f32]; N],
    ) -> [f32; N] {
        let nb = d.len();
        assert!(qs.len() >= nb * 16 && m.len() >= nb);
        assert!(super::rows_hold(x, nb));
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        for k in 0..nb {
            let raw = _mm_loadu_si128(qs.as_ptr().add(k * 16) as *const __m128i);
            let lo = _mm_and_si128(raw, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            let dk = _mm256_set1_ps(*d.get_unchecked(k));
            let mk = _mm256_set1_ps(*m.get_unchecked(k));
            let f =
                |v: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), dk, mk);
            let w = [
                f(lo),
                f(_mm_srli_si128(lo, 8)),
                f(hi),
                f(_mm_srli_si128(hi, 8)),
            ];
            rows::<N>(w, x, k * BLOCK, &mut acc);
        }
        finish(acc)
    }

    /// Σ over blocks of `(q·d)·x` for `N` activation rows; `h` scales
    /// per block (1, or 2: one per 16 weights).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q8_dot<const N: usize, const OFF: bool>(
        qs: &[u8],
        d: &[f32],
        h: usize,
        m: &[f32],
        x: &[&[f32]; N],
    ) -> [f32; N] {
        assert!(h == 1 || h == 2);
        let nb = d.len() / h;
        assert!(qs.len() >= nb * 32 && (!OFF || m.len() >= nb));
        assert!(super::rows_hold(x, nb));
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        for k in 0..nb {
            let p = qs.as_ptr().add(k * 32);
            let d0 = _mm256_set1_ps(*d.get_unchecked(k * h));
            let d1 = _mm256_set1_ps(*d.get_unchecked(k * h + h - 1));
            let f = |o: usize, dk: __m256| {
                let q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    p.add(o) as *const __m128i
                )));
                match OFF {
                    false => _mm256_mul_ps(q, dk),
                    true => _mm256_fmadd_ps(q, dk, _mm256_set1_ps(*m.get_unchecked(k))),
                }
            };
            let w = [f(0, d0), f(8, d0), f(16, d1), f(24, d1)];
            rows::<N>(w, x, k * BLOCK, &mut acc);
        }
        finish(acc)
    }
}
