//! The quantized decoder's weight blocks and kernels (src/ml/lm/qmat.rs):
//! products against the same weights dequantized to f32, for every block
//! type (Q4_K read as 4-bit blocks, the other quantized types re-quantized
//! to 8 bits), activation-row count and kernel; stacking.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slmforge::ml::lm::qmat::{Kernel, QKind, QMat, QStack};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// The values candle dequantizes a tensor to.
fn candle_values(q: &QTensor) -> Vec<f32> {
    q.dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn dequantized(m: &QMat) -> Vec<f32> {
    let mut out = vec![0f32; m.rows() * m.cols()];
    for r in 0..m.rows() {
        m.dequantize_row(r, &mut out[r * m.cols()..(r + 1) * m.cols()]);
    }
    out
}

#[test]
fn quantized_products_match_the_dequantized_weights() {
    let (rows, cols) = (37, 96);
    let w = random(rows * cols, 1);
    let wt = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
    let mut mats = Vec::new();
    for dt in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let q = QTensor::quantize(&wt, dt).unwrap();
        let deq = candle_values(&q);
        let m = QMat::from_qtensor(&q)
            .unwrap()
            .expect("a kernel for this type");
        // the blocks read back as candle dequantizes them
        let mine = dequantized(&m);
        let err = mine
            .iter()
            .zip(&deq)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(err < 1e-6, "{dt:?}: {err}");
        mats.push((format!("{dt:?}"), m, deq));
    }
    // Q4_K, Q6_K, Q5_0, Q5_1 and Q5_K: their own quants as 4-bit blocks, as
    // 8-bit blocks with a scale per 16, as 8-bit blocks, and as 8-bit blocks
    // with an offset: the values candle dequantizes
    let (kr, kc) = (5, 512);
    let kt = Tensor::from_vec(random(kr * kc, 4), (kr, kc), &Device::Cpu).unwrap();
    for (dt, kind) in [
        (GgmlDType::Q4K, QKind::Q4),
        (GgmlDType::Q6K, QKind::Q8H),
        (GgmlDType::Q5_0, QKind::Q8),
        (GgmlDType::Q5_1, QKind::Q8M),
        (GgmlDType::Q5K, QKind::Q8M),
    ] {
        let q = QTensor::quantize(&kt, dt).unwrap();
        let m = QMat::from_qtensor(&q).unwrap().expect("taken as they are");
        assert_eq!(m.kind(), kind);
        let deq = candle_values(&q);
        assert_eq!(dequantized(&m), deq, "{dt:?} read back exactly");
        // 1, 2, 4 and 8 rows at a time (13 = 8 + 4 + 1), every kernel
        for n in [1, 3, 13] {
            let x = random(n * kc, 8 + n as u64);
            for kern in Kernel::available() {
                let got = m.matmul_with(kern, &x, n);
                for b in 0..n {
                    for r in 0..kr {
                        let want: f32 = (0..kc).map(|c| x[b * kc + c] * deq[r * kc + c]).sum();
                        let g = got[b * kr + r];
                        assert!(
                            (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{dt:?} {kern:?} n={n}: {g} vs {want}"
                        );
                    }
                }
            }
        }
        // stacked with itself: the rows of both, scales in place
        let st = QMat::stack(&[&m, &m]).expect("one kind");
        assert_eq!(st.rows(), 2 * kr);
        let (mut a, mut b) = (vec![0f32; kc], vec![0f32; kc]);
        st.dequantize_row(kr + 2, &mut a);
        m.dequantize_row(2, &mut b);
        assert_eq!(a, b, "{dt:?} stacked");
    }
    // other quantized types are not taken as they are; the decoder
    // re-quantizes them to 8 bits (close to their values); float types
    // stay f32
    for dt in [GgmlDType::Q2K, GgmlDType::Q3K] {
        let q = QTensor::quantize(&kt, dt).unwrap();
        assert!(QMat::from_qtensor(&q).unwrap().is_none(), "{dt:?}");
        let f = q.dequantize(&Device::Cpu).unwrap();
        let m = QMat::for_decoding(&q, &f).unwrap().expect("re-quantized");
        assert_eq!(m.kind(), QKind::Q8, "{dt:?}");
        let fv: Vec<f32> = f.flatten_all().unwrap().to_vec1().unwrap();
        let err = dequantized(&m)
            .iter()
            .zip(&fv)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(err < 1.0 / 200.0, "{dt:?}: {err}");
    }
    for dt in [GgmlDType::F16, GgmlDType::F32] {
        let q = QTensor::quantize(&kt, dt).unwrap();
        let f = q.dequantize(&Device::Cpu).unwrap();
        assert!(QMat::for_decoding(&q, &f).unwrap().is_none(), "{dt:?}");
    }
    // re-quantized to 8 bits: close to the originals
    let q8 = QMat::quantize_q8(&w, rows, cols).unwrap();
    let deq8 = dequantized(&q8);
    let err = w
        .iter()
        .zip(&deq8)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(err < 1.0 / 200.0, "{err}");
    mats.push(("q8 re-quantized".into(), q8, deq8));
    // f32 weights, shared with the tensor
    let f = QMat::from_f32(&wt).unwrap().unwrap();
    assert_eq!(f.kind(), QKind::F32);
    mats.push(("f32".into(), f, w.clone()));
    for (name, m, deq) in &mats {
        for n in [1, 2, 3, 5, 8, 13] {
            let x = random(n * cols, 7 + n as u64);
            for kern in Kernel::available() {
                let got = m.matmul_with(kern, &x, n);
                for b in 0..n {
                    for r in 0..rows {
                        let want: f32 =
                            (0..cols).map(|c| x[b * cols + c] * deq[r * cols + c]).sum();
                        let g = got[b * rows + r];
                        assert!(
                            (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{name} {kern:?} n={n} b={b} r={r}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn stacks_merge_one_kind_and_place_mixed_kinds_side_by_side() {
    let a = QMat::quantize_q8(&random(2 * 32, 1), 2, 32).unwrap();
    let b = QMat::quantize_q8(&random(3 * 32, 2), 3, 32).unwrap();
    let s = QMat::stack(&[&a, &b]).unwrap();
    assert_eq!(s.rows(), 5);
    let (mut r0, mut r1) = (vec![0f32; 32], vec![0f32; 32]);
    s.dequantize_row(3, &mut r0);
    b.dequantize_row(1, &mut r1);
    assert_eq!(r0, r1);
    let t = Tensor::from_vec(random(64, 3), (2, 32), &Device::Cpu).unwrap();
    let q4 = QMat::from_qtensor(&QTensor::quantize(&t, GgmlDType::Q4_1).unwrap())
        .unwrap()
        .unwrap();
    assert!(QMat::stack(&[&a, &q4]).is_none());
    assert!(QMat::quantize_q8(&random(40, 1), 1, 40).is_none());
    // a mixed stack: one product, each part's rows in place
    let st = QStack::new(vec![a.clone(), q4.clone(), b.clone()]);
    assert_eq!((st.parts().len(), st.rows()), (3, 7));
    let merged = QStack::new(vec![a.clone(), b.clone()]);
    assert_eq!(merged.parts().len(), 1);
    let x = random(3 * 32, 9);
    let y = st.matmul(&x, 3);
    let parts = [a.matmul(&x, 3), q4.matmul(&x, 3), b.matmul(&x, 3)];
    for row in 0..3 {
        let want: Vec<f32> = parts
            .iter()
            .zip([2, 2, 3])
            .flat_map(|(p, w)| p[row * w..(row + 1) * w].to_vec())
            .collect();
        assert_eq!(y[row * 7..(row + 1) * 7], want[..]);
    }
}

/// With the AVX-512 kernels a row's product is the same bits whatever the
/// number of rows multiplied with it (one accumulator scheme at every group
/// size), so a decoded row does not depend on its batch.
#[test]
fn avx512_products_do_not_depend_on_the_batch() {
    let Some(kern) = Kernel::available()
        .into_iter()
        .find(|k| k.name() == "avx512f")
    else {
        eprintln!("SKIPPED: this CPU has no AVX-512");
        return;
    };
    let (rows, cols) = (24, 96);
    let w = random(rows * cols, 3);
    let q8 = QMat::quantize_q8(&w, rows, cols).unwrap();
    let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let q4 = QMat::from_qtensor(&QTensor::quantize(&t, GgmlDType::Q4_1).unwrap())
        .unwrap()
        .unwrap();
    let n = 13;
    let x = random(n * cols, 9);
    for (name, m) in [("q8", &q8), ("q4", &q4)] {
        let all = m.matmul_with(kern, &x, n);
        for b in 0..n {
            let one = m.matmul_with(kern, &x[b * cols..(b + 1) * cols], 1);
            assert_eq!(one, all[b * rows..(b + 1) * rows], "{name} row {b}");
        }
    }
}
