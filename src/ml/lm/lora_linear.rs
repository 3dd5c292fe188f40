//! A frozen projection and its LoRA adapters as one graph node (training).
//!
//! The composite form `x·Wᵀ + scale·(x·Aᵀ)·Bᵀ` keeps the base output, each
//! adapter's output and their sum in candle's graph: three to four
//! output-sized tensors per projection, held until the backward ends. On
//! SmolLM2-135M at batch 4 × 256 that was 1.8 GB of a 4.4 GB training step.
//! [`lora_linear`] is one node that keeps only its output, and writes every
//! product straight into its destination with gemm's accumulate mode: the
//! adapters' `(x·Aᵀ)·Bᵀ` are added into their columns of `x·Wᵀ`, and the
//! backward's two input-gradient terms into one buffer, so no temporary
//! output-sized tensor, concatenation or sum is made either. The rank-sized
//! `x·Aᵀ` is recomputed in the backward.
//!
//! Stacked projections (q|k|v, gate|up) have one adapter per part: the parts'
//! `A`s come stacked as `a: [parts·rank, in]` and their `B`s as
//! `b: [Σ widths, rank]`; [`LoraPart`] says which output columns each part
//! owns (a part without an adapter simply has none).

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use gemm::{gemm, Parallelism};

use super::ops::{f32_slice, small_m_matmul, use_fused, Kernels, SMALL_M_ROWS};

/// Where one adapter's output goes in the projection's output: columns
/// `[offset, offset + width)`.
#[derive(Clone, Copy, Debug)]
pub struct LoraPart {
    pub offset: usize,
    pub width: usize,
}

/// A row-major matrix view: `rows × cols` values at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn rows(data: &'a [f32], width: usize) -> Self {
        Mat {
            data,
            rs: width,
            cs: 1,
        }
    }

    /// The transpose of this view.
    fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The view starting at row `i`, column `j`.
    fn at(self, i: usize, j: usize) -> Self {
        Mat {
            data: &self.data[i * self.rs + j * self.cs..],
            ..self
        }
    }

    /// Whether an `m × n` matrix fits in the slice.
    fn holds(&self, m: usize, n: usize) -> bool {
        let last = (m.saturating_sub(1))
            .checked_mul(self.rs)
            .zip((n.saturating_sub(1)).checked_mul(self.cs))
            .and_then(|(a, b)| a.checked_add(b));
        m == 0 || n == 0 || last.is_some_and(|l| l < self.data.len())
    }
}

/// `dst[m × n] (+)= beta · lhs[m × k] · rhs[k × n]`; `dst` is row-major
/// with row stride `dst_rs`; `accumulate` adds to what `dst` holds.
#[allow(clippy::too_many_arguments)]
fn matmul_into(
    dst: &mut [f32],
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    accumulate: bool,
) {
    // in bounds, and destination rows that do not overlap (gemm's threads
    // write them in parallel)
    assert!(
        Mat::rows(dst, dst_rs).holds(m, n)
            && lhs.holds(m, k)
            && rhs.holds(k, n)
            && (m <= 1 || dst_rs >= n),
        "lora-linear: matrix out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    let par = match m * n * k {
        v if v >= 1 << 18 => Parallelism::Rayon(rayon::current_num_threads()),
        _ => Parallelism::None,
    };
    // SAFETY: the asserts above keep every element gemm touches inside the
    // slices (dst is borrowed mutably, lhs and rhs shared; they never alias).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        )
    }
}

/// The adapters of one fused projection.
#[derive(Clone, Debug)]
struct Spec {
    parts: Vec<LoraPart>,
    rank: usize,
    scale: f32,
}

struct LoraLinear {
    /// `[out, in]`, frozen.
    w: Tensor,
    spec: Spec,
}

/// The op's operands as slices: `x: [m, in]`, `w: [out, in]`, `a: [P·r, in]`, `b: [Σw, r]`.
struct Operands<'a> {
    x: &'a [f32],
    w: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
    m: usize,
    inp: usize,
    out: usize,
}

impl Spec {
    /// `x·Aᵀ` (`[m, P·r]`, times `scale` when `scaled`).
    fn xa(&self, o: &Operands, scaled: bool) -> Vec<f32> {
        let pr = self.parts.len() * self.rank;
        let mut xa = vec![0f32; o.m * pr];
        let beta = if scaled { self.scale } else { 1.0 };
        let (x, a) = (Mat::rows(o.x, o.inp), Mat::rows(o.a, o.inp));
        matmul_into(&mut xa, pr, (o.m, pr, o.inp), x, a.t(), beta, false);
        xa
    }

    fn forward(&self, o: &Operands) -> Vec<f32> {
        let (m, out, r) = (o.m, o.out, self.rank);
        if m == 0 {
            return Vec::new();
        }
        let pr = self.parts.len() * r;
        // The base product as `ops::linear` computes it (same kernel, same
        // order of additions): a zero adapter leaves the output exact.
        let mut y = if m <= SMALL_M_ROWS {
            small_m_matmul(o.x, o.w, m, out, o.inp)
        } else {
            let mut y = vec![0f32; m * out];
            let (x, w) = (Mat::rows(o.x, o.inp), Mat::rows(o.w, o.inp));
            matmul_into(&mut y, out, (m, out, o.inp), x, w.t(), 1.0, false);
            y
        };
        let xa = self.xa(o, true);
        let mut brow = 0;
        for (j, p) in self.parts.iter().enumerate() {
            let lhs = Mat::rows(&xa, pr).at(0, j * r);
            let rhs = Mat::rows(o.b, r).at(brow, 0).t();
            let dst = &mut y[p.offset..];
            matmul_into(dst, out, (m, p.width, r), lhs, rhs, 1.0, true);
            brow += p.width;
        }
        y
    }

    /// Gradients of `x`, `a` and `b` for the output gradient `g: [m, out]`.
    fn backward(&self, o: &Operands, g: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (m, out, inp, r) = (o.m, o.out, o.inp, self.rank);
        let pr = self.parts.len() * r;
        if m == 0 {
            return (Vec::new(), vec![0f32; pr * inp], vec![0f32; o.b.len()]);
        }
        let xa = self.xa(o, false);
        let gm = Mat::rows(g, out);
        // gb = scale · [g_j · B_j]_j (`[m, P·r]`) and dB_j = scale · g_jᵀ · (x·A_jᵀ).
        let mut gb = vec![0f32; m * pr];
        let mut db = vec![0f32; o.b.len()];
        let mut brow = 0;
        for (j, p) in self.parts.iter().enumerate() {
            let gj = gm.at(0, p.offset);
            let bj = Mat::rows(o.b, r).at(brow, 0);
            let dst = &mut gb[j * r..];
            matmul_into(dst, pr, (m, r, p.width), gj, bj, self.scale, false);
            let xaj = Mat::rows(&xa, pr).at(0, j * r);
            let dst = &mut db[brow * r..];
            matmul_into(dst, r, (p.width, r, m), gj.t(), xaj, self.scale, false);
            brow += p.width;
        }
        // dA = gbᵀ · x; dx = g · W + gb · A.
        let (x, w, a) = (
            Mat::rows(o.x, inp),
            Mat::rows(o.w, inp),
            Mat::rows(o.a, inp),
        );
        let gbm = Mat::rows(&gb, pr);
        let mut da = vec![0f32; pr * inp];
        matmul_into(&mut da, inp, (pr, inp, m), gbm.t(), x, 1.0, false);
        let mut dx = vec![0f32; m * inp];
        matmul_into(&mut dx, inp, (m, inp, out), gm, w, 1.0, false);
        matmul_into(&mut dx, inp, (m, inp, pr), gbm, a, 1.0, true);
        (dx, da, db)
    }
}

/// Runs `f` on the operands as slices (all contiguous f32 on the CPU).
fn with_operands<T>(
    w: &Tensor,
    (xs, xl): (&CpuStorage, &Layout),
    (as_, al): (&CpuStorage, &Layout),
    (bs, bl): (&CpuStorage, &Layout),
    f: impl FnOnce(&Operands) -> T,
) -> Result<T> {
    let (ws, wl) = w.storage_and_layout();
    let Storage::Cpu(wc) = &*ws else {
        bail!("lora-linear: weight not on the CPU")
    };
    let (out, inp) = wl.shape().dims2()?;
    let o = Operands {
        x: f32_slice(xs, xl, "lora-linear")?,
        w: f32_slice(wc, wl, "lora-linear")?,
        a: f32_slice(as_, al, "lora-linear")?,
        b: f32_slice(bs, bl, "lora-linear")?,
        m: xl.shape().elem_count() / inp.max(1),
        inp,
        out,
    };
    Ok(f(&o))
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, m, out) = with_operands(&self.w, (xs, xl), (as_, al), (bs, bl), |o| {
            (self.spec.forward(o), o.m, o.out)
        })?;
        Ok((CpuStorage::F32(y), Shape::from((m, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let (gs, gl) = g.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (as_, al) = a.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (Storage::Cpu(gs), Storage::Cpu(xs), Storage::Cpu(as_), Storage::Cpu(bs)) =
            (&*gs, &*xs, &*as_, &*bs)
        else {
            bail!("lora-linear: backward off the CPU")
        };
        let g = f32_slice(gs, gl, "lora-linear")?;
        let (dx, da, db) = with_operands(&self.w, (xs, xl), (as_, al), (bs, bl), |o| {
            self.spec.backward(o, g)
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(da, a.shape(), dev)?),
            Some(Tensor::from_vec(db, b.shape(), dev)?),
        ))
    }
}

/// `x·Wᵀ + scale · (x·A_jᵀ)·B_jᵀ` written into part `j`'s columns, as one
/// graph node, for `x: [m, in]`, a frozen `w: [out, in]`, `a: [parts·rank, in]`
/// (the parts' `A`s stacked) and `b: [Σ widths, rank]` (their `B`s stacked).
/// CPU f32 with fused kernels; `None` elsewhere (the caller uses the
/// composite form, which [`Kernels::composite`] tests compare against).
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    parts: &[LoraPart],
    scale: f64,
    kern: Kernels,
) -> Result<Option<Tensor>> {
    if !use_fused(kern, x) || parts.is_empty() {
        return Ok(None);
    }
    let (out, inp) = w.dims2()?;
    let (pr, a_in) = a.dims2()?;
    let (bw, rank) = b.dims2()?;
    let widths: usize = parts.iter().map(|p| p.width).sum();
    let fits = parts.iter().all(|p| p.offset + p.width <= out);
    if x.dims2()?.1 != inp || a_in != inp || pr != parts.len() * rank || bw != widths || !fits {
        bail!(
            "lora-linear: shapes do not fit: x {:?}, w {:?}, a {:?}, b {:?}",
            x.dims(),
            w.dims(),
            a.dims(),
            b.dims()
        )
    }
    let op = LoraLinear {
        w: w.contiguous()?,
        spec: Spec {
            parts: parts.to_vec(),
            rank,
            scale: scale as f32,
        },
    };
    let (x, a, b) = (x.contiguous()?, a.contiguous()?, b.contiguous()?);
    Ok(Some(x.apply_op3(&a, &b, op)?))
}
