//! Tests of the causal LM substrate (src/lm): a tiny random Llama GGUF with a
//! real byte-level BPE vocabulary, written here, drives parity with candle's
//! quantized_llama, LoRA, gradients, masking, adapters and generation; the
//! real SmolLM2 file (when present) checks parity, token ids and the template.

use std::path::{Path, PathBuf};

use crate::common;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, IndexOp, Tensor};
use candle_nn::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use slmforge::call::{Message, Response, Role, ToolCall, ToolDef};
use slmforge::ml::lm::chat::{parse_reply, ToolCallIssueKind};
use slmforge::ml::lm::generate::{generate_tokens, GenerateOptions, SamplingConfig};
use slmforge::ml::lm::model::TrainBatch;
use slmforge::ml::lm::ops::Kernels;
use slmforge::ml::lm::{self, HeadPositions, LanguageModel, LoraConfig, LoraTarget, TrainExample};

const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const REAL_MODEL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

// ---------------------------------------------------------------------------
// Tiny GGUF fixture (written by common::tiny_gguf).

/// Merges of the tiny vocabulary the LM tests use.
pub(crate) const LM_MERGES: &[(&str, &str)] = &[
    (" ", "t"),
    ("h", "e"),
    (" t", "he"),
    ("i", "n"),
    ("e", "r"),
    ("o", "n"),
    (" ", "a"),
    ("r", "e"),
    ("a", "t"),
    ("s", "t"),
    ("e", "n"),
    (" ", "s"),
    ("o", "r"),
    ("l", "l"),
    (" ", "w"),
    ("n", "a"),
    ("m", "e"),
    ("na", "me"),
    ("\"", ":"),
    (" ", "\""),
    ("u", "s"),
    ("us", "er"),
    ("s", "y"),
    ("sy", "st"),
    ("syst", "e"),
    ("syste", "m"),
    ("a", "s"),
    ("as", "s"),
    ("ass", "i"),
    ("assi", "st"),
    ("a", "n"),
    ("assist", "an"),
    ("assistan", "t"),
    ("\n", "\n"),
    (" ", " "),
    ("t", "o"),
    ("o", "l"),
    ("to", "ol"),
    ("_", "c"),
    ("a", "l"),
];

pub(crate) struct TinyOpts {
    pub(crate) tied: bool,
    pub(crate) template: Option<String>,
    pub(crate) pre: &'static str,
    pub(crate) arch: &'static str,
}

impl Default for TinyOpts {
    fn default() -> Self {
        TinyOpts {
            tied: true,
            template: Some(SMOLLM2_TEMPLATE.to_string()),
            pre: "smollm",
            arch: "llama",
        }
    }
}

/// Writes a tiny random Llama GGUF (all tensors F32) and returns its path.
pub(crate) fn tiny_gguf(dir: &Path, name: &str, seed: u64, opts: &TinyOpts) -> PathBuf {
    let path = dir.join(name);
    common::tiny_gguf(
        &path,
        &common::TinyGguf {
            seed,
            merges: LM_MERGES,
            tied: opts.tied,
            template: opts.template.clone(),
            pre: opts.pre,
            arch: opts.arch,
            context_length: 256,
            add_bos: Some(false),
            sliding_window: 512,
        },
    );
    path
}

fn tiny_model(dir: &Path) -> LanguageModel {
    let p = tiny_gguf(dir, "tiny.gguf", 7, &TinyOpts::default());
    lm::load(&p, &Device::Cpu).unwrap()
}

pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub(crate) fn ids_tensor(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Sets every LoRA B to random values (so adapters change the output).
pub(crate) fn randomize_lora_b(m: &lm::CausalLm, seed: u64, scale: f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in m.lora_named_vars() {
        if name.ends_with("lora_b") {
            let n = var.elem_count();
            let data: Vec<f32> = (0..n)
                .map(|_| scale * rng.random_range(-1.0f32..1.0))
                .collect();
            var.set(&Tensor::from_vec(data, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

/// Logits at the last position and 32 greedy tokens from candle's quantized_llama.
fn reference_quantized_llama(gguf_bytes: &[u8], prompt: &[u32], n: usize) -> (Tensor, Vec<u32>) {
    use candle_transformers::models::quantized_llama::ModelWeights;
    let mut cur = std::io::Cursor::new(gguf_bytes);
    let content = gguf_file::Content::read(&mut cur).unwrap();
    let mut m = ModelWeights::from_gguf(content, &mut cur, &Device::Cpu).unwrap();
    let logits = m
        .forward(&ids_tensor(prompt), 0)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut toks = vec![argmax(&logits.to_vec1::<f32>().unwrap())];
    let mut pos = prompt.len();
    while toks.len() < n {
        let l = m
            .forward(&ids_tensor(&toks[toks.len() - 1..]), pos)
            .unwrap()
            .squeeze(0)
            .unwrap();
        pos += 1;
        toks.push(argmax(&l.to_vec1::<f32>().unwrap()));
    }
    (logits, toks)
}

pub(crate) fn our_logits_and_greedy(
    lm: &LanguageModel,
    prompt: &[u32],
    n: usize,
) -> (Tensor, Vec<u32>) {
    let logits = lm
        .model
        .forward(&ids_tensor(prompt), &[])
        .unwrap()
        .i((0, prompt.len() - 1))
        .unwrap();
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(n),
        batch_size: 1,
        ..Default::default()
    };
    let (c, _) = generate_tokens(&lm.model, &[prompt.to_vec()], &[], 0, &opts).unwrap();
    (logits, c[0].tokens.clone())
}

// ---------------------------------------------------------------------------
// Model parity and kernels.

#[test]
fn tiny_parity_with_quantized_llama() {
    let dir = tempfile::tempdir().unwrap();
    for (tied, name) in [(true, "tied.gguf"), (false, "untied.gguf")] {
        let p = tiny_gguf(
            dir.path(),
            name,
            11,
            &TinyOpts {
                tied,
                ..Default::default()
            },
        );
        let lm = lm::load(&p, &Device::Cpu).unwrap();
        let prompt: Vec<u32> = vec![1, 40, 77, 260, 5, 90, 150, 33, 2, 1, 200];
        let (ref_logits, ref_toks) =
            reference_quantized_llama(&std::fs::read(&p).unwrap(), &prompt, 32);
        let (logits, toks) = our_logits_and_greedy(&lm, &prompt, 32);
        let d = max_abs_diff(&logits, &ref_logits);
        assert!(d < 1e-3, "{name}: last-position logits differ by {d}");
        assert_eq!(toks, ref_toks, "{name}: greedy tokens differ");
        // The tokens are not trivially constant.
        eprintln!("{name}: {toks:?}");
        assert!(
            toks.iter().collect::<std::collections::HashSet<_>>().len() > 3,
            "{toks:?}"
        );
    }
}

#[test]
fn fused_kernels_match_composite_forward_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    // All seven projections (fused q|k|v and gate|up nodes whole), then a
    // subset that leaves gaps in the fused projections' columns.
    for targets in [
        LoraTarget::ALL.to_vec(),
        vec![LoraTarget::K, LoraTarget::Up, LoraTarget::Down],
    ] {
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets,
            ..Default::default()
        };
        fused_matches_composite(&lm.model, &cfg);
    }
}

fn fused_matches_composite(base: &lm::CausalLm, cfg: &LoraConfig) {
    let mut m = base.clone();
    m.add_lora(cfg, 3).unwrap();
    randomize_lora_b(&m, 5, 0.05);
    let ids = Tensor::new(
        &[[5u32, 60, 61, 62, 1, 2, 90, 91], [2, 2, 2, 7, 8, 9, 10, 11]],
        &Device::Cpu,
    )
    .unwrap();
    let pads = [0usize, 3];
    let mut composite = m.clone();
    composite.set_kernels(Kernels::composite());
    let a = m.forward(&ids, &pads).unwrap();
    let b = composite.forward(&ids, &pads).unwrap();
    // Compare real (non-padding) positions only.
    let d0 = max_abs_diff(&a.i(0).unwrap(), &b.i(0).unwrap());
    let d1 = max_abs_diff(&a.i((1, 3..)).unwrap(), &b.i((1, 3..)).unwrap());
    assert!(
        d0 < 1e-4 && d1 < 1e-4,
        "fused vs composite logits: {d0} {d1}"
    );

    let ex = vec![
        TrainExample {
            ids: vec![5, 60, 61, 62, 1, 2, 90, 91],
            answer_mask: vec![false, false, false, false, true, true, true, true],
            truncated: false,
        },
        TrainExample {
            ids: vec![7, 8, 9, 10, 11],
            answer_mask: vec![false, false, true, true, true],
            truncated: false,
        },
        // 3 × 12 = 36 rows: more than ops::SMALL_M_ROWS, so the products
        // take the gemm path that real batches take
        TrainExample {
            ids: (20..32).collect(),
            answer_mask: (0..12).map(|t| t >= 5).collect(),
            truncated: false,
        },
    ];
    let batch = TrainBatch::new(&ex, 2, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let la = m
        .loss(&batch, HeadPositions::Answer, Some(&mut rng))
        .unwrap();
    let ga = la.backward().unwrap();
    let lb = composite
        .loss(&batch, HeadPositions::Answer, Some(&mut rng))
        .unwrap();
    let gb = lb.backward().unwrap();
    let (la, lb) = (
        la.to_scalar::<f32>().unwrap(),
        lb.to_scalar::<f32>().unwrap(),
    );
    assert!((la - lb).abs() < 1e-4, "loss {la} vs {lb}");
    for (name, v) in m.lora_named_vars() {
        let x = ga
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no fused grad for {name}"));
        let y = gb
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no composite grad for {name}"));
        let scale = y
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = max_abs_diff(x, y);
        assert!(
            d <= 1e-3 * scale.max(1e-3),
            "{name}: grads differ by {d} (scale {scale})"
        );
    }
}

#[test]
fn cached_forward_matches_full_forward() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let m = &lm.model;
    let ids: Vec<u32> = vec![1, 40, 77, 260, 5, 90, 150, 33, 2, 1];
    let full = m
        .forward(&ids_tensor(&ids), &[])
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut cache = m.new_cache(vec![0], 32).unwrap();
    // A 4-token chunk, then one token at a time.
    let l = m
        .forward_cached(&ids_tensor(&ids[..4]), &mut cache)
        .unwrap();
    assert!(max_abs_diff(&l.squeeze(0).unwrap(), &full.i(3).unwrap()) < 1e-4);
    for t in 4..ids.len() {
        let l = m
            .forward_cached(&ids_tensor(&ids[t..t + 1]), &mut cache)
            .unwrap();
        let d = max_abs_diff(&l.squeeze(0).unwrap(), &full.i(t).unwrap());
        assert!(d < 1e-4, "position {t}: {d}");
    }
    assert_eq!(cache.len(), ids.len());
    assert!(
        m.forward_cached(&ids_tensor(&[1; 30]), &mut cache).is_err(),
        "overflowing the cache must fail"
    );
}

/// A frozen weight stored `[in, out]` (`ops::prefill_layout`, what
/// `for_inference` gives prompt processing) multiplies like the row-major
/// one: forward through the small-row kernels (full 64-column bands and the
/// columns after them, row counts not a multiple of four) and gemm, and
/// the backward's input gradient; the base model's inference copy decodes
/// the same greedy tokens.
#[test]
fn weights_stored_in_out_multiply_like_row_major_ones() {
    use slmforge::ml::lm::ops::{linear, prefill_layout};
    let dev = Device::Cpu;
    for (out, inp) in [(70, 33), (128, 96), (40, 200)] {
        let w = Tensor::randn(0f32, 1.0, (out, inp), &dev).unwrap();
        let wt = prefill_layout(&w).unwrap();
        assert_eq!(wt.dims(), w.dims());
        assert!(!wt.is_contiguous(), "stored [in, out]");
        for m in [1, 3, 4, 5, 16, 17, 40] {
            let x = Tensor::randn(0f32, 1.0, (m, inp), &dev).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            for (name, w) in [("row-major", &w), ("in-out", &wt)] {
                let got = linear(&x, w, Kernels::default()).unwrap();
                let d = max_abs_diff(&got, &want);
                assert!(d < 1e-4, "[{out}, {inp}] {name} at {m} rows: {d}");
            }
            // the input gradient goes through the op's backward
            let xv = candle_core::Var::from_tensor(&x).unwrap();
            let y = linear(xv.as_tensor(), &wt, Kernels::default()).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let dx = g.get(xv.as_tensor()).unwrap();
            let want_dx = (want * 2.0).unwrap().matmul(&w).unwrap();
            assert!(max_abs_diff(dx, &want_dx) < 1e-3, "gradient at {m} rows");
        }
    }
    // a model without adapters: its inference copy prefills on re-laid weights
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let prompts: Vec<Vec<u32>> = vec![vec![1, 40, 77, 260, 5, 90], vec![7, 8, 9]];
    let pad = lm.tokenizer.pad_id();
    let fi = lm.model.for_inference().unwrap();
    assert_eq!(
        greedy_rows(&fi, &prompts, pad, 10),
        greedy_rows(&lm.model, &prompts, pad, 10)
    );
}

// ---------------------------------------------------------------------------
// LoRA.

#[test]
fn lora_zero_b_equals_base_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let ids = ids_tensor(&[1, 40, 77, 260, 5, 90]);
    let base = lm.model.forward(&ids, &[]).unwrap();
    let mut m = lm.model.clone();
    m.add_lora(
        &LoraConfig {
            rank: 8,
            alpha: 16.0,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    assert_eq!(m.lora_vars().len(), common::TINY_LAYERS * 7 * 2);
    let with = m.forward(&ids, &[]).unwrap();
    assert_eq!(max_abs_diff(&base, &with), 0.0);
    // A is initialised in ±1/sqrt(in), B at zero.
    let a = m
        .lora_pair(0, LoraTarget::Down)
        .unwrap()
        .a
        .as_tensor()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    let bound = 1.0 / (common::TINY_FF as f32).sqrt();
    let amax = a.to_scalar::<f32>().unwrap();
    assert!(amax > 0.5 * bound && amax <= bound, "{amax} vs {bound}");
}

#[test]
fn lora_merge_equals_adapter_output() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let mut m = lm.model.clone();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        rslora: true,
        ..Default::default()
    };
    m.add_lora(&cfg, 9).unwrap();
    randomize_lora_b(&m, 10, 0.1);
    let ids = ids_tensor(&[1, 40, 77, 260, 5, 90, 3, 4]);
    let base = lm.model.forward(&ids, &[]).unwrap();
    let adapted = m.forward(&ids, &[]).unwrap();
    assert!(
        max_abs_diff(&base, &adapted) > 1e-2,
        "the adapter must change the output"
    );
    let merged = m.merge_lora().unwrap();
    assert!(merged.lora_config().is_none());
    let d = max_abs_diff(&adapted, &merged.forward(&ids, &[]).unwrap());
    assert!(d < 1e-4, "merged vs adapter: {d}");
    // merged_weight is W + alpha/sqrt(r) * B A.
    let p = m.lora_pair(1, LoraTarget::K).unwrap();
    let expect = (m.base_weight(1, LoraTarget::K).unwrap()
        + (p.b.as_tensor().matmul(p.a.as_tensor()).unwrap() * (8.0 / 2.0)).unwrap())
    .unwrap();
    assert!(max_abs_diff(&m.merged_weight(1, LoraTarget::K).unwrap(), &expect) < 1e-6);
    // The source model still has its adapters.
    assert!(m.lora_config().is_some());
}

#[test]
fn one_adamw_step_updates_every_lora_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let mut m = lm.model.clone();
    m.add_lora(
        &LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.1,
            ..Default::default()
        },
        2,
    )
    .unwrap();
    randomize_lora_b(&m, 4, 0.02);
    let ex = lm
        .encode_for_training(
            &[Message::text(Role::User, "the weather in paris?")],
            &[],
            &Response {
                content: Some("it is sunny".into()),
                ..Default::default()
            },
            128,
        )
        .unwrap();
    let batch = TrainBatch::new(&[ex.clone(), ex], lm.tokenizer.pad_id(), &Device::Cpu).unwrap();
    let vars = m.lora_named_vars();
    let before: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().copy().unwrap())
        .collect();
    let mut opt = candle_nn::AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        candle_nn::ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let loss = m
        .loss(&batch, HeadPositions::Answer, Some(&mut rng))
        .unwrap();
    let mut grads = loss.backward().unwrap();
    for (name, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name} has a zero gradient");
    }
    let vlist: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let norm = slmforge::ml::lm::model::clip_grad_norm(&mut grads, &vlist, 1e-3).unwrap();
    assert!(norm > 1e-3);
    opt.step(&grads).unwrap();
    for ((name, v), b) in vars.iter().zip(&before) {
        assert!(
            max_abs_diff(v.as_tensor(), b) > 0.0,
            "{name} did not change"
        );
    }
    // The frozen base has no variables at all.
    assert_eq!(m.lora_vars().len(), vars.len());
}

#[test]
fn masked_targets_do_not_contribute_to_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let ex = vec![
        TrainExample {
            ids: vec![5, 60, 61, 62, 1, 2, 90, 91],
            answer_mask: vec![false, false, false, false, true, true, true, true],
            truncated: false,
        },
        TrainExample {
            ids: vec![7, 8, 9, 10, 11],
            answer_mask: vec![false, false, false, true, true],
            truncated: false,
        },
    ];
    let loss = |ex: &[TrainExample], head| {
        let b = TrainBatch::new(ex, 2, &Device::Cpu).unwrap();
        lm.model
            .loss(&b, head, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let base = loss(&ex, HeadPositions::Answer);
    let all = loss(&ex, HeadPositions::All);
    assert!(
        (base - all).abs() < 1e-5,
        "answer-only head {base} vs all-positions head {all}"
    );
    let b = TrainBatch::new(&ex, 2, &Device::Cpu).unwrap();
    assert_eq!(b.n_answer, 4 + 2, "answer tokens after the first position");
    // Changing a masked target (the token after a masked position) changes no loss term:
    // the last sequence token is never an input, so only its role as a target counts.
    let mut ex2 = ex.clone();
    ex2[1].ids.push(99);
    ex2[1].answer_mask.push(false);
    assert_eq!(loss(&ex2, HeadPositions::Answer), base);
    let all2 = loss(&ex2, HeadPositions::All);
    assert!((all2 - all).abs() < 1e-6, "{all2} vs {all}");
    // ... while changing an answer target does.
    let mut ex3 = ex.clone();
    *ex3[1].ids.last_mut().unwrap() = 99;
    assert!((loss(&ex3, HeadPositions::Answer) - base).abs() > 1e-4);
    // And padding does not change the loss of an example.
    let single = loss(&ex[1..], HeadPositions::Answer);
    let b1 = TrainBatch::new(&ex[..1], 2, &Device::Cpu).unwrap();
    let l0 = lm
        .model
        .loss(&b1, HeadPositions::Answer, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let expect = (l0 * 4.0 + single * 2.0) / 6.0;
    assert!((expect - base).abs() < 1e-4, "{expect} vs {base}");
}

#[test]
fn adapter_save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut lm = tiny_model(dir.path());
    let cfg = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.05,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down],
        rslora: false,
    };
    lm.model.add_lora(&cfg, 5).unwrap();
    randomize_lora_b(&lm.model, 6, 0.1);
    let ids = ids_tensor(&[1, 40, 77, 260, 5]);
    let want = lm.model.forward(&ids, &[]).unwrap();
    let adir = dir.path().join("adapter");
    lm.save_adapter_dir(&adir).unwrap();
    let afile = dir.path().join("one.safetensors");
    lm.save_adapter_file(&afile).unwrap();
    // The same adapter is the same bytes, whatever order the metadata map
    // iterates in (it changes between hash maps).
    let bytes = std::fs::read(&afile).unwrap();
    for i in 0..8 {
        let again = dir.path().join(format!("again{i}.safetensors"));
        lm.save_adapter_file(&again).unwrap();
        assert!(
            std::fs::read(&again).unwrap() == bytes,
            "adapter bytes differ"
        );
    }
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(conf["format"], "slmforge-lora-v1");
    assert_eq!(conf["rank"], 2);
    assert_eq!(conf["targets"], json!(["q_proj", "v_proj", "down_proj"]));
    assert_eq!(conf["base_model_sha256"], json!(lm.base_sha256().unwrap()));

    for path in [&adir, &afile] {
        let mut fresh = tiny_model(dir.path());
        let got_cfg = fresh.apply_adapter(path).unwrap();
        assert_eq!(got_cfg.lora, cfg);
        assert_eq!(fresh.model.lora_vars().len(), common::TINY_LAYERS * 3 * 2);
        for ((n1, a), (n2, b)) in lm
            .model
            .lora_tensors()
            .iter()
            .zip(fresh.model.lora_tensors().iter())
        {
            assert_eq!(n1, n2);
            assert_eq!(max_abs_diff(a, b), 0.0, "{n1}");
        }
        assert_eq!(
            max_abs_diff(&fresh.model.forward(&ids, &[]).unwrap(), &want),
            0.0
        );
    }
    let names: Vec<String> = lm
        .model
        .lora_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"blk.1.attn_q.weight.lora_a".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"blk.0.ffn_down.weight.lora_b".to_string()));

    // A different base model is refused.
    let other = tiny_gguf(dir.path(), "other.gguf", 99, &TinyOpts::default());
    let mut other = lm::load(&other, &Device::Cpu).unwrap();
    let err = other.apply_adapter(&adir).unwrap_err();
    assert!(
        format!("{err:#}").contains("different base model"),
        "{err:#}"
    );
}

// ---------------------------------------------------------------------------
// Generation.

#[test]
fn batched_generation_equals_unbatched() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 40, 77],
        vec![1, 40, 77, 260, 5, 90, 150, 33, 2, 1, 200],
        vec![9],
        vec![100, 101, 102, 103, 104, 105],
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
    ];
    for sampling in [
        SamplingConfig::greedy(12),
        SamplingConfig {
            max_new_tokens: 12,
            temperature: 0.9,
            top_p: 0.9,
            seed: 42,
        },
    ] {
        let run = |batch_size| {
            let opts = GenerateOptions {
                sampling: sampling.clone(),
                batch_size,
                prefill_chunk: 4,
            };
            generate_tokens(&lm.model, &prompts, &[2], lm.tokenizer.pad_id(), &opts).unwrap()
        };
        let (one, _) = run(1);
        let (three, stats) = run(3);
        assert_eq!(one, three, "batched differs from unbatched ({sampling:?})");
        assert_eq!(stats.prompts, 5);
        assert_eq!(
            stats.prompt_tokens,
            prompts.iter().map(Vec::len).sum::<usize>()
        );
        assert_eq!(
            stats.generated_tokens,
            one.iter().map(|c| c.tokens.len()).sum::<usize>()
        );
        for (c, p) in one.iter().zip(&prompts) {
            assert_eq!(c.prompt_tokens, p.len());
            assert!(c.tokens.len() <= 12 && !c.tokens.contains(&2));
        }
    }
    // Sampling is deterministic for a seed and differs across seeds.
    let gen = |seed| {
        let opts = GenerateOptions {
            sampling: SamplingConfig {
                max_new_tokens: 16,
                temperature: 1.0,
                top_p: 1.0,
                seed,
            },
            ..Default::default()
        };
        generate_tokens(&lm.model, &prompts[..2], &[], 0, &opts)
            .unwrap()
            .0
    };
    assert_eq!(gen(1), gen(1));
    assert_ne!(gen(1), gen(2));
}

#[test]
fn generation_stops_and_text_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let prompt = lm
        .prompt_ids(&[Message::text(Role::User, "hi")], &[])
        .unwrap();
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(40),
        ..Default::default()
    };
    let (c, _) = generate_tokens(&lm.model, std::slice::from_ref(&prompt), &[], 0, &opts).unwrap();
    assert_eq!(c[0].tokens.len(), 40);
    // Stop at the first token greedy decoding produces: nothing is generated.
    let first = c[0].tokens[0];
    let (c2, _) =
        generate_tokens(&lm.model, std::slice::from_ref(&prompt), &[first], 0, &opts).unwrap();
    assert!(c2[0].tokens.is_empty());
    assert_eq!(c2[0].finish, lm::FinishReason::Stop);
    let out = lm.generate(&[prompt], &opts).unwrap();
    assert_eq!(
        out.texts[0],
        lm.tokenizer
            .decode(&out.completions[0].tokens, true)
            .unwrap()
    );
}

// ---------------------------------------------------------------------------
// Tokenizer and chat.

#[test]
fn tokenizer_round_trips_and_specials() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let tok = &lm.tokenizer;
    for s in [
        "héllo wörld — 日本語 🤖 ñ",
        "digits 0123456789 and 3.14159",
        "  leading\tand\ttabs\n\n\nnewlines   trailing  ",
        "fn main() {\n    println!(\"{}\", x[0]);\n}\n",
        r#"{"name": "get_weather", "arguments": {"city": "Paris", "n": [1, 2.5, null]}}"#,
        "",
    ] {
        let ids = tok.encode(s).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), s, "round trip of {s:?}");
    }
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(tok.encode("<|im_end|>").unwrap(), vec![2]);
    assert_eq!(tok.encode("<|im_start|>user\n").unwrap()[0], 1);
    // Digits are split one per token.
    let ids = tok.encode("x 2024").unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| tok.token(i).unwrap()).collect();
    assert_eq!(pieces, ["x", "Ġ", "2", "0", "2", "4"]);
    // Merges are used: " the" is one token.
    assert_eq!(tok.encode(" the").unwrap().len(), 1);
    assert_eq!(tok.decode(&[1, 2], true).unwrap(), "");
    assert!(tok.is_special(2) && !tok.is_special(50));
}

#[test]
fn unsupported_formats_error_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_gguf(
        dir.path(),
        "pre.gguf",
        1,
        &TinyOpts {
            pre: "mystery",
            ..Default::default()
        },
    );
    let err = lm::load(&p, &Device::Cpu)
        .err()
        .expect("unknown pre-tokenizer must fail");
    assert!(
        format!("{err:#}").contains("unsupported pre-tokenizer"),
        "{err:#}"
    );
    let p = tiny_gguf(
        dir.path(),
        "arch.gguf",
        1,
        &TinyOpts {
            arch: "phi3",
            ..Default::default()
        },
    );
    let err = lm::load(&p, &Device::Cpu)
        .err()
        .expect("other architectures must fail");
    assert!(
        format!("{err:#}").contains("unsupported model architecture"),
        "{err:#}"
    );
    // Other supported pre-tokenizers load.
    for pre in ["llama-bpe", "qwen2", "gpt2"] {
        let p = tiny_gguf(
            dir.path(),
            &format!("{pre}.gguf"),
            1,
            &TinyOpts {
                pre,
                ..Default::default()
            },
        );
        let lm = lm::load(&p, &Device::Cpu).unwrap();
        let s = "It's 2024: the end.\n  ok";
        assert_eq!(
            lm.tokenizer
                .decode(&lm.tokenizer.encode(s).unwrap(), false)
                .unwrap(),
            s
        );
    }
}

fn weather_tool() -> ToolDef {
    ToolDef {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

#[test]
fn chat_template_renders_conversations_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let msgs = vec![
        Message::text(Role::System, "Be terse."),
        Message::text(Role::User, "Hi"),
        Message::text(Role::Assistant, "Hello!"),
        Message::text(Role::User, "Bye"),
    ];
    assert_eq!(
        lm.chat.render(&msgs, &[], true).unwrap(),
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without a system turn the template's own default is inserted.
    let r = lm.chat.render(&msgs[1..2], &[], false).unwrap();
    assert!(
        r.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{r}"
    );
    assert!(r.ends_with("<|im_start|>user\nHi<|im_end|>\n"));

    // Tools: schemas in the system turn, calls in the assistant text, results as user turns.
    let call = ToolCall {
        id: Some("c1".into()),
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}),
        arguments_valid: true,
    };
    let conv = vec![
        Message::text(Role::System, "Be terse."),
        Message::text(Role::User, "Weather in Paris?"),
        Message {
            role: Role::Assistant,
            content: None,
            tool_calls: vec![call.clone()],
            tool_call_id: None,
            name: None,
        },
        Message {
            role: Role::Tool,
            content: Some("{\"temp\": 21}".into()),
            tool_calls: vec![],
            tool_call_id: Some("c1".into()),
            name: None,
        },
        Message {
            role: Role::Tool,
            content: Some("sunny".into()),
            tool_calls: vec![],
            tool_call_id: Some("c2".into()),
            name: None,
        },
    ];
    let r = lm.chat.render(&conv, &[weather_tool()], true).unwrap();
    let expected = format!(
        "<|im_start|>system\nBe terse.\n\n{}<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>{{\"name\":\"get_weather\",\"arguments\":{{\"city\":\"Paris\"}}}}</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{{\"temp\": 21}}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
        slmforge::ml::lm::chat::tools_system_block(&[weather_tool()])
    );
    assert_eq!(r, expected);
    assert!(r.contains("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"parameters\":{"));
    // No system turn: one is created for the tools.
    let r = lm
        .chat
        .render(&conv[1..2], &[weather_tool()], true)
        .unwrap();
    assert!(r.starts_with("<|im_start|>system\n# Tools\n"), "{r}");
    // The answer text parses back into the same call.
    let answer = Response {
        content: Some("Checking.".into()),
        tool_calls: vec![call.clone()],
        finish_reason: None,
    };
    let text = lm.chat.render_answer(&answer);
    let parsed = parse_reply(&text);
    assert_eq!(parsed.content.as_deref(), Some("Checking."));
    assert_eq!(parsed.tool_calls.len(), 1);
    assert_eq!(parsed.tool_calls[0].name, "get_weather");
    assert_eq!(parsed.tool_calls[0].arguments, json!({"city": "Paris"}));
}

#[test]
fn template_with_tool_support_gets_tools_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    let tmpl = "{%- if tools %}{{ '<|im_start|>system\nTOOLS:' }}{% for t in tools %}{{ t | tojson }}{% endfor %}{{ '<|im_end|>\n' }}{% endif %}\
{%- for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content }}{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}\
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let p = tiny_gguf(
        dir.path(),
        "tools.gguf",
        1,
        &TinyOpts {
            template: Some(tmpl.into()),
            ..Default::default()
        },
    );
    let lm = lm::load(&p, &Device::Cpu).unwrap();
    assert!(lm.chat.supports_tools());
    let call = ToolCall {
        id: None,
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}),
        arguments_valid: true,
    };
    let conv = vec![
        Message::text(Role::User, "Weather?"),
        Message {
            role: Role::Assistant,
            content: None,
            tool_calls: vec![call],
            tool_call_id: None,
            name: None,
        },
        Message {
            role: Role::Tool,
            content: Some("21C".into()),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        },
    ];
    let r = lm.chat.render(&conv, &[weather_tool()], true).unwrap();
    assert!(r.starts_with("<|im_start|>system\nTOOLS:{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a city\""), "{r}");
    assert!(
        r.contains("<|im_start|>assistant\nCALL get_weather {\"city\": \"Paris\"}<|im_end|>\n"),
        "{r}"
    );
    assert!(r.contains("<|im_start|>tool\n21C<|im_end|>\n"), "{r}");
    // raise_exception surfaces as an error, not a panic.
    let bad = "{{ raise_exception('no system role') }}";
    let p = tiny_gguf(
        dir.path(),
        "raise.gguf",
        1,
        &TinyOpts {
            template: Some(bad.into()),
            ..Default::default()
        },
    );
    let lm = lm::load(&p, &Device::Cpu).unwrap();
    let err = lm.chat.render(&conv, &[], true).unwrap_err();
    assert!(format!("{err:#}").contains("no system role"), "{err:#}");
}

#[test]
fn training_encoding_prefix_mask_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny_model(dir.path());
    let msgs = vec![
        Message::text(Role::System, "Be terse."),
        Message::text(Role::User, "What is the name?"),
    ];
    let call = ToolCall {
        id: None,
        name: "tool_call".into(),
        arguments: json!({"name": "x"}),
        arguments_valid: true,
    };
    let answer = Response {
        content: Some("the name".into()),
        tool_calls: vec![call],
        finish_reason: None,
    };
    let prompt = lm.prompt_ids(&msgs, &[weather_tool()]).unwrap();
    let ex = lm
        .encode_for_training(&msgs, &[weather_tool()], &answer, 4096)
        .unwrap();
    assert!(!ex.truncated);
    assert_eq!(
        &ex.ids[..prompt.len()],
        prompt.as_slice(),
        "prompt ids are a prefix of the training ids"
    );
    assert!(ex.answer_mask[..prompt.len()].iter().all(|m| !m));
    assert!(ex.answer_mask[prompt.len()..].iter().all(|m| *m));
    assert_eq!(*ex.ids.last().unwrap(), lm.chat.eot_id());
    assert_eq!(lm.chat.eot_token(), "<|im_end|>");
    let ans_text = lm.tokenizer.decode(&ex.ids[prompt.len()..], false).unwrap();
    assert_eq!(
        ans_text,
        format!("{}<|im_end|>", lm.chat.render_answer(&answer))
    );

    // Too long: earlier turns go, oldest first (an assistant call with
    // its tool result); the system prompt, the tools and the last user turn
    // stay; when even those do not fit, the call cannot be encoded.
    let tc = ToolCall {
        id: Some("c1".into()),
        name: "get_weather".into(),
        arguments: json!({"city": "Oslo"}),
        arguments_valid: true,
    };
    let long = vec![
        Message::text(Role::System, "Be terse."),
        Message::text(Role::User, "first question about the weather in oslo"),
        Message {
            role: Role::Assistant,
            content: None,
            tool_calls: vec![tc],
            tool_call_id: None,
            name: None,
        },
        Message {
            role: Role::Tool,
            content: Some("rainy and cold all week".into()),
            tool_calls: vec![],
            tool_call_id: Some("c1".into()),
            name: None,
        },
        Message::text(Role::User, "What is the name?"),
    ];
    let full = lm
        .encode_for_training(&long, &[weather_tool()], &answer, 4096)
        .unwrap();
    assert!(!full.truncated);
    let fit = ex.ids.len() + 2;
    assert!(fit < full.ids.len());
    let cut = lm
        .encode_for_training(&long, &[weather_tool()], &answer, fit)
        .unwrap();
    assert!(cut.truncated);
    assert_eq!(
        cut.ids, ex.ids,
        "exactly the system prompt, tools and last user turn remain"
    );
    assert_eq!(cut.answer_len(), ex.answer_len());
    let text = lm.tokenizer.decode(&cut.ids, false).unwrap();
    assert!(
        text.contains("Be terse.")
            && text.contains("get_weather")
            && text.contains("What is the name?")
    );
    assert!(
        !text.contains("first question") && !text.contains("rainy"),
        "{text}"
    );
    let err = lm
        .encode_for_training(&msgs, &[weather_tool()], &answer, ex.ids.len() - 1)
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<lm::EncodeError>(),
            Some(lm::EncodeError::DoesNotFit { .. })
        ),
        "{err}"
    );
    let err = lm
        .encode_for_training(&msgs, &[], &answer, ex.answer_len())
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<lm::EncodeError>(),
            Some(lm::EncodeError::AnswerTooLong { .. })
        ),
        "{err}"
    );
}

#[test]
fn tool_call_parser_cases() {
    // Plain text.
    let r = parse_reply("  just text \n");
    assert_eq!(r.content.as_deref(), Some("just text"));
    assert!(r.tool_calls.is_empty() && r.issues.is_empty());
    // Whitespace and newlines around the JSON, two calls, text around.
    let r = parse_reply("Sure.\n<tool_call>\n  {\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>");
    assert_eq!(r.content.as_deref(), Some("Sure."));
    assert_eq!(
        r.tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(r.tool_calls[0].arguments, json!({"x": 1}));
    assert!(r.issues.is_empty());
    // Arguments as a JSON string, "parameters" alias, missing arguments.
    let r = parse_reply(
        r#"<tool_call>{"name": "a", "arguments": "{\"x\": 2}"}</tool_call><tool_call>{"name": "b", "parameters": {"y": 3}}</tool_call><tool_call>{"name": "c"}</tool_call>"#,
    );
    assert_eq!(r.tool_calls[0].arguments, json!({"x": 2}));
    assert_eq!(r.tool_calls[1].arguments, json!({"y": 3}));
    assert_eq!(r.tool_calls[2].arguments, json!({}));
    assert!(r.tool_calls.iter().all(|c| c.arguments_valid) && r.content.is_none());
    // Bad JSON with a readable name: kept as an invalid call, reported.
    let r = parse_reply(r#"<tool_call>{"name": "a", "arguments": {"x": }</tool_call>"#);
    assert_eq!(
        r.issues,
        vec![slmforge::ml::lm::chat::ToolCallIssue {
            index: 0,
            kind: ToolCallIssueKind::InvalidJson
        }]
    );
    assert_eq!(r.tool_calls.len(), 1);
    assert!(!r.tool_calls[0].arguments_valid);
    assert_eq!(r.tool_calls[0].name, "a");
    // Garbage: reported, no call.
    let r = parse_reply("<tool_call>not json at all</tool_call>");
    assert_eq!(r.issues[0].kind, ToolCallIssueKind::InvalidJson);
    assert!(r.tool_calls.is_empty());
    // Missing name, non-object, arguments of the wrong type.
    let r = parse_reply(
        r#"<tool_call>{"arguments": {}}</tool_call><tool_call>[1, 2]</tool_call><tool_call>{"name": "z", "arguments": 5}</tool_call>"#,
    );
    let kinds: Vec<_> = r.issues.iter().map(|i| (i.index, i.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0, ToolCallIssueKind::MissingName),
            (1, ToolCallIssueKind::NotAnObject),
            (2, ToolCallIssueKind::ArgumentsNotObject)
        ]
    );
    assert_eq!(r.tool_calls.len(), 1);
    assert!(!r.tool_calls[0].arguments_valid);
    // Unterminated (generation cut at a stop token): the call is still read.
    let r = parse_reply("<tool_call>{\"name\": \"a\", \"arguments\": {\"q\": \"x\"}}");
    assert_eq!(r.issues[0].kind, ToolCallIssueKind::Unterminated);
    assert_eq!(r.tool_calls[0].name, "a");
    let r = parse_reply("<tool_call>{\"name\": \"a\", \"argu");
    assert_eq!(
        r.issues.iter().map(|i| i.kind).collect::<Vec<_>>(),
        [
            ToolCallIssueKind::Unterminated,
            ToolCallIssueKind::InvalidJson
        ]
    );
    // Round trip of the writer.
    let call = ToolCall {
        id: None,
        name: "f".into(),
        arguments: json!({"s": "<tool_call>", "n": [1, {"k": null}]}),
        arguments_valid: true,
    };
    let r = parse_reply(&slmforge::ml::lm::chat::tool_call_text(&call));
    assert_eq!(r.tool_calls, vec![call]);
}

#[test]
fn generate_cli_runs_on_a_gguf_and_rejects_bad_models() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny_gguf(dir.path(), "tiny.gguf", 7, &TinyOpts::default());
    let out = std::process::Command::new(crate::common::bin())
        .args([
            "generate",
            "--model",
            p.to_str().unwrap(),
            "--prompt",
            "hi",
            "--max-tokens",
            "5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["completion_tokens"].as_u64().unwrap() <= 5);
    assert!(v["prompt_tokens"].as_u64().unwrap() > 5);
    // --raw: the text alone, no template (this file adds no BOS)
    let raw = std::process::Command::new(crate::common::bin())
        .args(["generate", "--model", p.to_str().unwrap(), "--raw"])
        .args(["--prompt", "the", "--max-tokens", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let want = lm::load(&p, &Device::Cpu)
        .unwrap()
        .tokenizer
        .encode("the")
        .unwrap()
        .len();
    assert_eq!(v["prompt_tokens"].as_u64().unwrap() as usize, want);
    // With an adapter directory (merged for generation): same as the adapter model.
    let mut lm = lm::load(&p, &Device::Cpu).unwrap();
    lm.model
        .add_lora(
            &LoraConfig {
                rank: 2,
                alpha: 4.0,
                ..Default::default()
            },
            1,
        )
        .unwrap();
    randomize_lora_b(&lm.model, 2, 0.5);
    let adir = dir.path().join("adapter");
    lm.save_adapter_dir(&adir).unwrap();
    let prompt = lm
        .prompt_ids(&[Message::text(Role::User, "hi")], &[])
        .unwrap();
    let want = lm
        .generate(
            &[prompt],
            &GenerateOptions {
                sampling: SamplingConfig::greedy(6),
                ..Default::default()
            },
        )
        .unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .args([
            "generate",
            "--model",
            p.to_str().unwrap(),
            "--adapter",
            adir.to_str().unwrap(),
        ])
        .args(["--prompt", "hi", "--max-tokens", "6", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["text"], json!(want.texts[0]));
    let out = std::process::Command::new(crate::common::bin())
        .args(["generate", "--model", "no-such-model", "--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(crate::common::bin())
        .args([
            "generate",
            "--model",
            p.to_str().unwrap(),
            "--prompt",
            "hi",
            "--top-p",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// Real SmolLM2 file.

/// The GGUF with every tensor dequantized to F32, in memory.
fn f32_copy_of(path: &Path) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            let t = content
                .tensor(&mut f, n, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            (
                n.to_string(),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
        .collect();
    let md: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md, &t).unwrap();
    buf.into_inner()
}

#[test]
fn real_smollm2_parity_with_quantized_llama() {
    let Some(path) =
        crate::common::real_file(REAL_MODEL, "real_smollm2_parity_with_quantized_llama")
    else {
        return;
    };
    let lm = lm::load(&path, &Device::Cpu).unwrap();
    assert_eq!(lm.model.config().num_layers, 30);
    assert_eq!(lm.model.config().num_kv_heads, 3);
    let prompt = lm
        .prompt_ids(
            &[Message::text(Role::User, "What is the capital of France?")],
            &[],
        )
        .unwrap();
    let (ref_logits, ref_toks) = reference_quantized_llama(&f32_copy_of(&path), &prompt, 32);
    let (logits, toks) = our_logits_and_greedy(&lm, &prompt, 32);
    let d = max_abs_diff(&logits, &ref_logits);
    assert!(d < 1e-3, "last-position logits differ by {d}");
    assert_eq!(toks, ref_toks);
    let text = lm.tokenizer.decode(&toks, true).unwrap();
    assert!(text.contains("Paris"), "{text}");
}

#[test]
fn real_smollm2_tokenizer_ids() {
    let Some(path) = crate::common::real_file(REAL_MODEL, "real_smollm2_tokenizer_ids") else {
        return;
    };
    let f = lm::gguf::GgufFile::open(&path).unwrap();
    let tok = lm::LmTokenizer::from_gguf(f.metadata()).unwrap();
    // Ids as Hugging Face's SmolLM2 tokenizer gives them.
    let cases: &[(&str, &[u32])] = &[
        ("Hello, world!", &[19556, 28, 905, 17]),
        (
            "<|im_start|>user\nHi<|im_end|>\n",
            &[1, 4093, 198, 26843, 2, 198],
        ),
        (
            "The quick brown fox jumps over the lazy dog.",
            &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
        ),
        (
            "12345 apples cost $3.50",
            &[33, 34, 35, 36, 37, 13855, 1708, 1885, 35, 30, 37, 32],
        ),
        (
            "  leading spaces\tand\ttabs\n\nnewlines",
            &[
                216, 2899, 5600, 197, 397, 197, 100, 7366, 198, 198, 2241, 5110,
            ],
        ),
        (
            "def f(x):\n    return {\"a\": [1, 2]}",
            &[
                1604, 275, 24, 104, 727, 472, 1003, 9583, 81, 1799, 933, 33, 28, 216, 34, 28852,
            ],
        ),
        (
            "héllo wörld 日本語 🤖",
            &[
                88, 2756, 31394, 267, 29989, 400, 17097, 241, 115, 40993, 179, 120, 248, 15107,
                114, 240,
            ],
        ),
    ];
    for (s, want) in cases {
        assert_eq!(tok.encode(s).unwrap(), *want, "{s:?}");
        assert_eq!(tok.decode(want, false).unwrap(), *s);
    }
    assert_eq!(tok.eos_id(), 2);
    assert_eq!(tok.bos_id(), Some(1));
    // Digits one per token, also after a space.
    let ids = tok.encode("in 2024").unwrap();
    assert_eq!(ids.len(), 6, "{ids:?}");
}

#[test]
fn real_smollm2_chat_render() {
    let Some(path) = crate::common::real_file(REAL_MODEL, "real_smollm2_chat_render") else {
        return;
    };
    let f = lm::gguf::GgufFile::open(&path).unwrap();
    let tok = lm::LmTokenizer::from_gguf(f.metadata()).unwrap();
    let chat = lm::ChatTemplate::from_gguf(f.metadata(), &tok).unwrap();
    let msgs = vec![
        Message::text(Role::User, "Hi"),
        Message::text(Role::Assistant, "Hello! How can I help?"),
        Message::text(Role::User, "Tell me a joke."),
    ];
    assert_eq!(
        chat.render(&msgs, &[], true).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n\
<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(chat.eot_id(), 2);
    assert!(!chat.supports_tools());
}

#[test]
fn gguf_hf_row_permutation_matches_the_two_rope_layouts() {
    use slmforge::ml::lm::lora::{gguf_rows_to_hf, hf_rows_to_gguf};
    let dev = Device::Cpu;
    // One head of dim 4: GGUF rows (x0, y0, x1, y1) are HF rows (x0, x1, y0, y1).
    let t = Tensor::new(&[[0f32], [1.], [2.], [3.]], &dev).unwrap();
    let hf = gguf_rows_to_hf(&t, 1).unwrap();
    assert_eq!(
        hf.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [0., 2., 1., 3.]
    );
    // Round trip on a [heads * d, r] matrix.
    let (heads, d, r) = (3, 8, 5);
    let b = Tensor::randn(0f32, 1.0, (heads * d, r), &dev).unwrap();
    let back = hf_rows_to_gguf(&gguf_rows_to_hf(&b, heads).unwrap(), heads).unwrap();
    assert_eq!(max_abs_diff(&b, &back), 0.0);
    // Semantics: interleaved rope on GGUF-ordered projections equals half-split
    // rope on HF-ordered ones (up to the same row permutation), so q·k agree.
    let w = Tensor::randn(0f32, 1.0, (heads * d, 6), &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (5, 6), &dev).unwrap();
    let (cos, sin) = {
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
            .collect();
        let t = slmforge::ml::lm::ops::RopeTables::new(&inv, 5, 1.0, &dev).unwrap();
        (t.cos.clone(), t.sin.clone())
    };
    let proj = |w: &Tensor| {
        x.matmul(&w.t().unwrap())
            .unwrap()
            .reshape((1, 5, heads, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let g = candle_nn::rotary_emb::rope_i(&proj(&w), &cos, &sin).unwrap();
    let h = candle_nn::rotary_emb::rope(&proj(&gguf_rows_to_hf(&w, heads).unwrap()), &cos, &sin)
        .unwrap();
    let g_as_hf = gguf_rows_to_hf(
        &g.transpose(2, 3).unwrap().reshape((heads * d, 5)).unwrap(),
        heads,
    )
    .unwrap();
    let h_flat = h.transpose(2, 3).unwrap().reshape((heads * d, 5)).unwrap();
    assert!(max_abs_diff(&g_as_hf, &h_flat) < 1e-5);
}

/// Greedy tokens and the first decoded step's logits of `prompts` (one batch,
/// left-padded), on the quantized decoder or the f32 path.
fn decode_both(
    lm: &mut LanguageModel,
    prompts: &[Vec<u32>],
    n: usize,
) -> [(Vec<Vec<u32>>, Vec<f32>); 2] {
    [true, false].map(|quantized| {
        lm.model.set_quantized_decode(quantized);
        let tokens = greedy_rows(&lm.model, prompts, lm.tokenizer.pad_id(), n);
        // one decoded step by hand: prompt through the f32 path, then a token
        let (ids, pads) =
            lm::model::left_padded(prompts, lm.tokenizer.pad_id(), &Device::Cpu).unwrap();
        let (b, len) = ids.dims2().unwrap();
        let mut cache = lm.model.new_cache(pads, len + 2).unwrap();
        lm.model.forward_cached(&ids, &mut cache).unwrap();
        let next: Vec<u32> = (0..b as u32).map(|r| 40 + r).collect();
        let logits: Vec<f32> = match lm.model.decoder().unwrap() {
            Some(d) => {
                let mut dc = d.cache_from(cache).unwrap();
                d.step(&mut dc, &(0..b).collect::<Vec<_>>(), &next).unwrap()
            }
            None => {
                let t = Tensor::from_vec(next, (b, 1), &Device::Cpu).unwrap();
                lm.model
                    .forward_cached(&t, &mut cache)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            }
        };
        (tokens, logits)
    })
}

/// Greedy tokens of `prompts` decoded as one batch.
fn greedy_rows(model: &lm::CausalLm, prompts: &[Vec<u32>], pad: u32, n: usize) -> Vec<Vec<u32>> {
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(n),
        batch_size: prompts.len(),
        ..Default::default()
    };
    let (c, _) = generate_tokens(model, prompts, &[], pad, &opts).unwrap();
    c.into_iter().map(|c| c.tokens).collect()
}

/// The largest difference between two logit vectors, and the largest
/// magnitude of `want` (the scale a tolerance is relative to).
fn diff_and_scale(got: &[f32], want: &[f32]) -> (f32, f32) {
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = got
        .iter()
        .zip(want)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    (d, scale)
}

/// The quantized decoder against the f32 path, in every family, with an
/// unmerged adapter on all seven projections, three left-padded rows:
/// * on a GGUF of Q4_1 blocks (decoded on those very blocks) and on an F32
///   GGUF (decoded on the f32 weights) the greedy tokens are the same and a
///   step's logits agree to float rounding;
/// * the same on the real SmolLM2 (Q4_1 and a Q8_0 head), when present.
#[test]
fn quantized_decoder_matches_the_f32_path() {
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 40, 77, 260, 5, 90, 150, 33, 2, 1, 200],
        vec![7, 8, 9],
        vec![100, 101, 102, 103, 104, 105],
    ];
    for arch in ["llama", "qwen2", "qwen3", "gemma3"] {
        let f32_path = tiny_gguf(
            dir.path(),
            &format!("{arch}.gguf"),
            11,
            &TinyOpts {
                arch,
                ..Default::default()
            },
        );
        let q4_path = dir.path().join(format!("{arch}-q4_1.gguf"));
        common::requantized_gguf(&f32_path, &q4_path, GgmlDType::Q4_1);
        for (path, kind) in [(&q4_path, "Q4"), (&f32_path, "F32")] {
            let mut lm = lm::load(path, &Device::Cpu).unwrap();
            let w = lm.model.decode_weights().expect("decode weights");
            assert_eq!(w.kinds(), vec![kind], "{arch}");
            let cfg = LoraConfig {
                rank: 4,
                alpha: 8.0,
                ..Default::default()
            };
            lm.model.add_lora(&cfg, 3).unwrap();
            randomize_lora_b(&lm.model, 5, 0.05);
            let [(qt, ql), (ft, fl)] = decode_both(&mut lm, &prompts, 12);
            let (d, scale) = diff_and_scale(&ql, &fl);
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "{arch} {kind}: logits differ by {d} (scale {scale})"
            );
            assert_eq!(qt, ft, "{arch} {kind}: greedy tokens");
            // as tune and route generate: prompts on the merged copy, decoding unmerged
            lm.model.set_quantized_decode(true);
            let fi = lm.model.for_inference().unwrap();
            assert!(
                !std::ptr::eq(fi.prefill_model(), &fi),
                "{arch}: a merged copy for prompts"
            );
            let it = greedy_rows(&fi, &prompts, lm.tokenizer.pad_id(), 12);
            assert_eq!(it, ft, "{arch} {kind}: for_inference's greedy tokens");
        }
    }
    if let Some(p) = common::real_file(REAL_MODEL, "quantized_decoder_matches_the_f32_path (real)")
    {
        let mut lm = lm::load(&p, &Device::Cpu).unwrap();
        let texts = ["The weather in Paris is", "user: cancel my order 42 please"];
        let prompts: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| lm.tokenizer.encode(t).unwrap())
            .collect();
        let [(qt, ql), (ft, fl)] = decode_both(&mut lm, &prompts, 16);
        let (d, scale) = diff_and_scale(&ql, &fl);
        assert!(
            d < 1e-3 * scale,
            "smollm2: logits differ by {d} (scale {scale})"
        );
        assert_eq!(qt, ft, "smollm2: greedy tokens");
    }
}
