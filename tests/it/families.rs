//! The model families besides Llama (src/ml/lm/model.rs): Qwen 2, Qwen 3
//! and Gemma 3 on tiny random GGUFs written in each family's layout.
//! Parity: Qwen against candle-transformers' `quantized_qwen2` /
//! `quantized_qwen3` on the same file; Gemma 3 against candle's `gemma3`
//! (the Hugging Face implementation, fed the GGUF's tensors), because
//! candle 0.11's `quantized_gemma3` runs the MLP with SiLU where Gemma 3
//! uses tanh-GELU (huggingface/candle#3745) and has no sliding window when
//! decoding. Then, for every family: fused kernels equal the composite
//! reference (values and LoRA gradients), the KV cache equals the full
//! forward, zero-B LoRA equals the base, and one step gives every LoRA
//! tensor a gradient.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::lm::{
    argmax, ids_tensor, max_abs_diff, our_logits_and_greedy, randomize_lora_b, tiny_gguf, TinyOpts,
};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, IndexOp, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slmforge::ml::lm::model::{Arch, TrainBatch};
use slmforge::ml::lm::ops::Kernels;
use slmforge::ml::lm::{self, HeadPositions, LoraConfig, TrainExample};

const PROMPT: &[u32] = &[1, 40, 77, 260, 5, 90, 150, 33, 2, 1, 200];

fn family_gguf(dir: &Path, arch: &'static str, tied: bool, seed: u64) -> PathBuf {
    tiny_gguf(
        dir,
        &format!("{arch}-{tied}.gguf"),
        seed,
        &TinyOpts {
            tied,
            arch,
            ..Default::default()
        },
    )
}

/// Last-position logits and `n` greedy tokens from a candle model with a
/// `forward(ids, offset) -> [1, vocab]`-like step.
fn greedy_with(
    mut step: impl FnMut(&Tensor, usize) -> Tensor,
    prompt: &[u32],
    n: usize,
) -> (Tensor, Vec<u32>) {
    let logits = step(&ids_tensor(prompt), 0).flatten_all().unwrap();
    let mut toks = vec![argmax(&logits.to_vec1::<f32>().unwrap())];
    let mut pos = prompt.len();
    while toks.len() < n {
        let l = step(&ids_tensor(&toks[toks.len() - 1..]), pos)
            .flatten_all()
            .unwrap();
        pos += 1;
        toks.push(argmax(&l.to_vec1::<f32>().unwrap()));
    }
    (logits, toks)
}

fn reference_qwen(path: &Path, arch: &str, prompt: &[u32], n: usize) -> (Tensor, Vec<u32>) {
    let bytes = std::fs::read(path).unwrap();
    let mut cur = std::io::Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut cur).unwrap();
    let dev = Device::Cpu;
    match arch {
        "qwen2" => {
            use candle_transformers::models::quantized_qwen2::ModelWeights;
            let mut m = ModelWeights::from_gguf(content, &mut cur, &dev).unwrap();
            greedy_with(|x, p| m.forward(x, p).unwrap(), prompt, n)
        }
        "qwen3" => {
            use candle_transformers::models::quantized_qwen3::ModelWeights;
            let mut m = ModelWeights::from_gguf(content, &mut cur, &dev).unwrap();
            greedy_with(|x, p| m.forward(x, p).unwrap(), prompt, n)
        }
        _ => unreachable!(),
    }
}

/// candle's Hugging Face Gemma 3 on the GGUF's tensors. llama.cpp's
/// converter stores Gemma's norm weights as `1 + w` (Gemma multiplies by
/// `1 + w`), so the reference gets `w` back.
fn reference_gemma3(path: &Path, window: usize, prompt: &[u32], n: usize) -> (Tensor, Vec<u32>) {
    use candle_transformers::models::gemma3::{Config, Model};
    let dev = Device::Cpu;
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut get = |name: &str| {
        content
            .tensor(&mut f, name, &dev)
            .unwrap()
            .dequantize(&dev)
            .unwrap()
    };
    let minus_one = |t: Tensor| (t - 1.0).unwrap();
    let mut map: HashMap<String, Tensor> = HashMap::new();
    map.insert("model.embed_tokens.weight".into(), get("token_embd.weight"));
    map.insert(
        "model.norm.weight".into(),
        minus_one(get("output_norm.weight")),
    );
    for l in 0..crate::common::TINY_LAYERS {
        let hf = |n: &str| format!("model.layers.{l}.{n}.weight");
        let gg = |n: &str| format!("blk.{l}.{n}.weight");
        for (h, g) in [
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ] {
            map.insert(hf(h), get(&gg(g)));
        }
        for (h, g) in [
            ("self_attn.q_norm", "attn_q_norm"),
            ("self_attn.k_norm", "attn_k_norm"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"),
            ("post_feedforward_layernorm", "post_ffw_norm"),
        ] {
            map.insert(hf(h), minus_one(get(&gg(g))));
        }
    }
    let vocab = map["model.embed_tokens.weight"].dim(0).unwrap();
    let hd = 2 * crate::common::TINY_H / crate::common::TINY_HEADS;
    let cfg = Config {
        attention_bias: false,
        head_dim: hd,
        hidden_activation: candle_nn::Activation::GeluPytorchTanh,
        hidden_size: crate::common::TINY_H,
        intermediate_size: crate::common::TINY_FF,
        num_attention_heads: crate::common::TINY_HEADS,
        num_hidden_layers: crate::common::TINY_LAYERS,
        num_key_value_heads: crate::common::TINY_KV_HEADS,
        rms_norm_eps: 1e-5,
        rope_theta: 1_000_000.0,
        rope_local_base_freq: 10_000.0,
        vocab_size: vocab,
        final_logit_softcapping: None,
        attn_logit_softcapping: None,
        query_pre_attn_scalar: hd,
        sliding_window: window,
        sliding_window_pattern: 6,
        max_position_embeddings: 256,
    };
    let vb = candle_nn::VarBuilder::from_tensors(map, DType::F32, &dev);
    let mut m = Model::new(false, &cfg, vb).unwrap();
    greedy_with(|x, p| m.forward(x, p).unwrap(), prompt, n)
}

fn assert_parity(name: &str, ours: (Tensor, Vec<u32>), reference: (Tensor, Vec<u32>)) {
    let d = max_abs_diff(&ours.0, &reference.0);
    assert!(d < 1e-3, "{name}: last-position logits differ by {d}");
    assert_eq!(ours.1, reference.1, "{name}: greedy tokens differ");
    let distinct = ours
        .1
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(
        distinct > 3,
        "{name}: degenerate greedy output {:?}",
        ours.1
    );
}

#[test]
fn qwen2_and_qwen3_match_candles_quantized_models() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["qwen2", "qwen3"] {
        for tied in [true, false] {
            let p = family_gguf(dir.path(), arch, tied, 21);
            let m = lm::load(&p, &Device::Cpu).unwrap();
            assert_eq!(m.model.config().arch.gguf_name(), arch);
            let ours = our_logits_and_greedy(&m, PROMPT, 32);
            let reference = reference_qwen(&p, arch, PROMPT, 32);
            assert_parity(&format!("{arch} tied={tied}"), ours, reference);
        }
    }
}

#[test]
fn gemma3_matches_candles_gemma3() {
    let dir = tempfile::tempdir().unwrap();
    let p = family_gguf(dir.path(), "gemma3", true, 23);
    let m = lm::load(&p, &Device::Cpu).unwrap();
    let cfg = m.model.config();
    assert_eq!(cfg.arch, Arch::Gemma3);
    assert!(cfg.scale_embeddings && cfg.gelu_ffn);
    assert_eq!((cfg.sliding_window, cfg.sliding_pattern), (Some(512), 6));
    // prompt and generation stay inside the window (candle's mask keeps
    // one key more than llama.cpp's and Hugging Face's)
    let ours = our_logits_and_greedy(&m, PROMPT, 32);
    let reference = reference_gemma3(&p, 512, PROMPT, 32);
    assert_parity("gemma3", ours, reference);
}

#[test]
fn a_sliding_window_bounds_what_the_last_token_sees() {
    // Window 3, both tiny layers sliding: the last token sees at most
    // 2 · (3 - 1) = 4 tokens back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gemma3-w3.gguf");
    crate::common::tiny_gguf(
        &path,
        &crate::common::TinyGguf {
            seed: 5,
            merges: crate::lm::LM_MERGES,
            tied: true,
            template: None,
            pre: "smollm",
            arch: "gemma3",
            context_length: 256,
            add_bos: Some(false),
            sliding_window: 3,
        },
    );
    let m = lm::load(&path, &Device::Cpu).unwrap();
    assert_eq!(m.model.config().layer_window(0), Some(3));
    let ids: Vec<u32> = vec![10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
    let last = |ids: &[u32]| {
        m.model
            .forward(&ids_tensor(ids), &[])
            .unwrap()
            .i((0, ids.len() - 1))
            .unwrap()
    };
    let base = last(&ids);
    let mut far = ids.clone();
    far[4] = 99; // 5 back from the last token
    assert_eq!(
        max_abs_diff(&base, &last(&far)),
        0.0,
        "a token beyond the window leaks in"
    );
    let mut near = ids.clone();
    near[6] = 99; // 3 back: reached through the two layers
    assert!(
        max_abs_diff(&base, &last(&near)) > 1e-4,
        "a token inside the window is ignored"
    );
    // Decoding with the cache applies the same window.
    let mut cache = m.model.new_cache(vec![0], 16).unwrap();
    m.model
        .forward_cached(&ids_tensor(&ids[..4]), &mut cache)
        .unwrap();
    let mut l = None;
    for t in 4..ids.len() {
        l = Some(
            m.model
                .forward_cached(&ids_tensor(&ids[t..t + 1]), &mut cache)
                .unwrap(),
        );
    }
    let d = max_abs_diff(&l.unwrap().squeeze(0).unwrap(), &base);
    assert!(d < 1e-4, "cached decoding vs full forward: {d}");
}

#[test]
fn every_family_trains_like_llama() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["qwen2", "qwen3", "gemma3"] {
        let p = family_gguf(dir.path(), arch, arch != "gemma3", 31);
        let base = lm::load(&p, &Device::Cpu).unwrap().model;
        let ids = Tensor::new(
            &[[5u32, 60, 61, 62, 1, 2, 90, 91], [2, 2, 2, 7, 8, 9, 10, 11]],
            &Device::Cpu,
        )
        .unwrap();
        let pads = [0usize, 3];
        // zero-B LoRA is the base, exactly
        let mut m = base.clone();
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..Default::default()
        };
        m.add_lora(&cfg, 3).unwrap();
        let b0 = base.forward(&ids, &pads).unwrap();
        assert_eq!(
            max_abs_diff(&b0, &m.forward(&ids, &pads).unwrap()),
            0.0,
            "{arch}"
        );
        // fused kernels vs composite, on real (non-padding) positions
        randomize_lora_b(&m, 5, 0.05);
        let mut composite = m.clone();
        composite.set_kernels(Kernels::composite());
        let a = m.forward(&ids, &pads).unwrap();
        let b = composite.forward(&ids, &pads).unwrap();
        let d0 = max_abs_diff(&a.i(0).unwrap(), &b.i(0).unwrap());
        let d1 = max_abs_diff(&a.i((1, 3..)).unwrap(), &b.i((1, 3..)).unwrap());
        assert!(
            d0 < 1e-4 && d1 < 1e-4,
            "{arch}: fused vs composite {d0} {d1}"
        );
        // the KV cache gives the full forward's logits
        let row: Vec<u32> = vec![5, 60, 61, 62, 1, 2, 90, 91];
        let full = m
            .forward(&ids_tensor(&row), &[])
            .unwrap()
            .squeeze(0)
            .unwrap();
        let mut cache = m.new_cache(vec![0], 16).unwrap();
        m.forward_cached(&ids_tensor(&row[..3]), &mut cache)
            .unwrap();
        for t in 3..row.len() {
            let l = m
                .forward_cached(&ids_tensor(&row[t..t + 1]), &mut cache)
                .unwrap();
            let d = max_abs_diff(&l.squeeze(0).unwrap(), &full.i(t).unwrap());
            assert!(d < 1e-4, "{arch}: cached position {t}: {d}");
        }
        // gradients: every LoRA tensor gets one, fused equal to composite
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
        ];
        let batch = TrainBatch::new(&ex, 2, &Device::Cpu).unwrap();
        let ga = m
            .loss(
                &batch,
                HeadPositions::Answer,
                Some(&mut ChaCha8Rng::seed_from_u64(1)),
            )
            .unwrap()
            .backward()
            .unwrap();
        let gb = composite
            .loss(
                &batch,
                HeadPositions::Answer,
                Some(&mut ChaCha8Rng::seed_from_u64(1)),
            )
            .unwrap()
            .backward()
            .unwrap();
        let vars = m.lora_named_vars();
        assert_eq!(vars.len(), crate::common::TINY_LAYERS * 7 * 2, "{arch}");
        for (name, v) in vars {
            let x = ga
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no grad for {name}"));
            let y = gb
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no composite grad for {name}"));
            let scale = y
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(scale > 0.0, "{arch}: {name} has a zero gradient");
            let d = max_abs_diff(x, y);
            assert!(
                d <= 1e-3 * scale.max(1e-3),
                "{arch}: {name}: grads differ by {d} (scale {scale})"
            );
        }
    }
}
