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
use slmforge::ml::lm::gguf::GgufFile;
use slmforge::ml::lm::model::{Arch, LmConfig, TrainBatch};
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

/// candle's Hugging Face Gemma 3 on the GGUF's tensors (dequantized to
/// f32), configured from the file's metadata. llama.cpp's converter stores
/// Gemma's norm weights as `1 + w` (Gemma multiplies by `1 + w`), so the
/// reference gets `w` back.
fn reference_gemma3(path: &Path, prompt: &[u32], n: usize) -> (Tensor, Vec<u32>) {
    use candle_transformers::models::gemma3::{Config, Model};
    let dev = Device::Cpu;
    let ours = LmConfig::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
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
    for l in 0..ours.num_layers {
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
    let cfg = Config {
        attention_bias: false,
        head_dim: ours.head_dim,
        hidden_activation: candle_nn::Activation::GeluPytorchTanh,
        hidden_size: ours.hidden_size,
        intermediate_size: ours.intermediate_size,
        num_attention_heads: ours.num_heads,
        num_hidden_layers: ours.num_layers,
        num_key_value_heads: ours.num_kv_heads,
        rms_norm_eps: ours.rms_eps,
        rope_theta: ours.rope_theta as f64,
        rope_local_base_freq: ours.rope_theta_local as f64,
        vocab_size: ours.vocab_size,
        final_logit_softcapping: None,
        attn_logit_softcapping: None,
        query_pre_attn_scalar: ours.head_dim,
        sliding_window: ours.sliding_window.unwrap(),
        sliding_window_pattern: ours.sliding_pattern,
        max_position_embeddings: 512,
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
    let reference = reference_gemma3(&p, PROMPT, 32);
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
        let grads = |model: &lm::CausalLm| {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let loss = model.loss(&batch, HeadPositions::Answer, Some(&mut rng));
            loss.unwrap().backward().unwrap()
        };
        let (ga, gb) = (grads(&m), grads(&composite));
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

const REAL_GEMMA3: &str = "gemma3-270m/gemma-3-270m-q4_k_m.gguf";

#[test]
fn real_gemma3_matches_candles_gemma3_and_tokenizes() {
    let Some(path) = crate::common::real_file(
        REAL_GEMMA3,
        "real_gemma3_matches_candles_gemma3_and_tokenizes",
    ) else {
        return;
    };
    let mut m = lm::load(&path, &Device::Cpu).unwrap();
    let cfg = m.model.config();
    assert_eq!(cfg.arch, Arch::Gemma3);
    assert_eq!(
        (
            cfg.num_layers,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
            cfg.vocab_size
        ),
        (18, 4, 1, 256, 262_144)
    );
    assert_eq!((cfg.sliding_window, cfg.sliding_pattern), (Some(512), 6));
    assert_eq!(cfg.layer_window(5), None, "every sixth layer is global");
    assert_eq!(cfg.layer_window(4), Some(512));
    // SentencePiece BPE: words with their leading ▁, BOS from the GGUF
    let tok = &m.tokenizer;
    let prompt = m.raw_prompt_ids("The capital of France is").unwrap();
    let pieces: Vec<&str> = prompt.iter().map(|&i| tok.token(i).unwrap()).collect();
    assert_eq!(
        pieces,
        ["<bos>", "The", "▁capital", "▁of", "▁France", "▁is"]
    );
    for text in [
        "Hello, world!  Two spaces,\ttabs\n\nand new lines.",
        "naïve café — 東京 🙂 {\"city\": \"Zürich\", \"n\": 42}",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            text,
            "round trip of {text:?}"
        );
    }
    assert_eq!(
        tok.encode("<start_of_turn>user\nhi<end_of_turn>").unwrap()[0],
        105
    );
    // the base model has no template: Gemma's turn format
    let chat = m
        .chat
        .render(
            &[
                slmforge::call::Message::text(slmforge::call::Role::System, "Be brief."),
                slmforge::call::Message::text(slmforge::call::Role::User, "Hi"),
            ],
            &[],
            true,
        )
        .unwrap();
    assert_eq!(
        chat,
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(m.chat.eot_token(), "<end_of_turn>");
    // parity with candle's Hugging Face Gemma 3 on the same weights (f32)
    m.model.set_quantized_decode(false);
    let ours = our_logits_and_greedy(&m, &prompt, 32);
    let reference = reference_gemma3(&path, &prompt, 32);
    let d = max_abs_diff(&ours.0, &reference.0);
    assert!(d < 1e-3, "last-position logits differ by {d}");
    assert_eq!(ours.1, reference.1, "greedy tokens differ");
    let text = tok.decode(&ours.1, true).unwrap();
    eprintln!("gemma3 270m: {text:?}");
    assert!(text.contains("France") || text.contains("Paris"), "{text}");
    // the quantized decoder on the file's own blocks (Q4_K as 4-bit blocks,
    // Q5_0 and Q8_0 as 8-bit ones, Q6_K as 8-bit with a scale per 16): the
    // same tokens as the f32 path
    m.model.set_quantized_decode(true);
    let w = m.model.decode_weights().expect("decode weights");
    assert_eq!(w.kinds(), vec!["Q4", "Q8", "Q8H"]);
    let q = our_logits_and_greedy(&m, &prompt, 32);
    assert_eq!(q.1, ours.1, "quantized decoder's greedy tokens");
}

#[test]
fn sentencepiece_vocabulary_merges_by_score_and_falls_back_to_bytes() {
    use candle_core::quantized::gguf_file::Value;
    // <pad> <eos> <bos> <unk>, 256 byte tokens, then pieces whose scores
    // rank the merges (higher first)
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3, 3, 3, 2];
    let mut scores = vec![-1000.0f32; 4];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces = [
        "▁",
        "h",
        "e",
        "l",
        "o",
        "w",
        "r",
        "d",
        "ll",
        "he",
        "llo",
        "hello",
        "▁w",
        "or",
        "▁wor",
        "ld",
        "▁world",
        "▁hello",
        "<start_of_turn>",
    ];
    for (i, p) in pieces.iter().enumerate() {
        tokens.push(p.to_string());
        types.push(if p.starts_with('<') { 3 } else { 1 });
        scores.push(-(i as f32) - 1.0);
    }
    let md: HashMap<String, Value> = [
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let tok = lm::LmTokenizer::from_gguf(&md).unwrap();
    let pieces_of = |text: &str| -> Vec<String> {
        tok.encode(text)
            .unwrap()
            .iter()
            .map(|&i| tok.token(i).unwrap().to_string())
            .collect()
    };
    assert_eq!(pieces_of("hello world"), ["hello", "▁world"]);
    assert_eq!(pieces_of("hello hello"), ["hello", "▁hello"]);
    // no piece for é: its UTF-8 bytes
    assert_eq!(pieces_of("hé"), ["h", "<0xC3>", "<0xA9>"]);
    assert_eq!(
        pieces_of("<start_of_turn>hello"),
        ["<start_of_turn>", "hello"]
    );
    for text in ["hello world", "hé wörld", "  hello\n"] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    assert!(tok.add_bos());
    assert_eq!(tok.bos_id(), Some(2));
}
