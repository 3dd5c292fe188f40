//! Shared test helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The models directory tests look in.
pub fn models_dir() -> PathBuf {
    slmforge::util::models_dir()
}

/// Path of the slmforge binary built alongside this test binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slmforge"))
}

/// Returns `Some(path)` when a real model file exists, else prints a clear
/// SKIPPED line and returns `None`.
pub fn real_file(rel: &str, test: &str) -> Option<PathBuf> {
    let p = models_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED {test}: real model file {} not present (run `slmforge models fetch`)",
            p.display()
        );
        None
    }
}

/// GPT-2's byte-to-unicode table.
pub fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(&cs) {
        table[*b as usize] = char::from_u32(*c).unwrap();
    }
    table
}

/// A GPT-2 byte-level string: each byte as its token character.
pub fn byte_level(s: &str) -> String {
    let t = byte_chars();
    s.bytes().map(|b| t[b as usize]).collect()
}

/// What a tiny random Llama GGUF holds besides its random weights.
pub struct TinyGguf {
    pub seed: u64,
    /// BPE merges on top of the 3 control tokens and 256 byte tokens.
    pub merges: &'static [(&'static str, &'static str)],
    /// Whether the LM head shares the token embedding.
    pub tied: bool,
    pub template: Option<String>,
    pub pre: &'static str,
    pub arch: &'static str,
    pub context_length: u32,
    /// `tokenizer.ggml.add_bos_token`, when the file sets it.
    pub add_bos: Option<bool>,
    /// Sliding window of a `gemma3` file (ignored by the other families).
    pub sliding_window: u32,
}

/// Vocabulary (3 control tokens, 256 byte tokens, merged tokens), token
/// types and merges.
pub fn tiny_vocab(pairs: &[(&str, &str)]) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types = vec![3, 3, 3];
    for c in byte_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let mut merges = Vec::new();
    for (a, b) in pairs {
        let (a, b) = (byte_level(a), byte_level(b));
        let m = format!("{a}{b}");
        assert!(
            tokens.contains(&a) && tokens.contains(&b),
            "merge parts {a} {b}"
        );
        merges.push(format!("{a} {b}"));
        if !tokens.contains(&m) {
            tokens.push(m);
            types.push(1);
        }
    }
    (tokens, types, merges)
}

/// Shape of the tiny model: hidden, feed-forward, heads, KV heads, layers.
pub const TINY_H: usize = 64;
pub const TINY_FF: usize = 128;
pub const TINY_HEADS: usize = 4;
pub const TINY_KV_HEADS: usize = 2;
pub const TINY_LAYERS: usize = 2;

/// Writes a tiny random Llama GGUF (all tensors F32), the one fixture of
/// every test that needs a causal LM without the real model.
pub fn tiny_gguf(path: &Path, spec: &TinyGguf) {
    let (tokens, types, merges) = tiny_vocab(spec.merges);
    let (v, h, ff) = (tokens.len(), TINY_H, TINY_FF);
    let (heads, kv) = (TINY_HEADS, TINY_KV_HEADS);
    let arch = spec.arch;
    // Qwen 3 and Gemma 3 have heads wider than hidden / heads
    let hd = if matches!(arch, "qwen3" | "gemma3") {
        2 * h / heads
    } else {
        h / heads
    };
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut rand_t = |dims: &[usize], scale: f32, offset: f32| -> Tensor {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| offset + scale * rng.random_range(-1.0f32..1.0))
            .collect();
        Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
    };
    let mut tensors: Vec<(String, Tensor)> = vec![
        // Gemma multiplies embeddings by √hidden: smaller ones keep a tied
        // random model from echoing its input
        (
            "token_embd.weight".into(),
            rand_t(&[v, h], if arch == "gemma3" { 0.03 } else { 0.2 }, 0.0),
        ),
        ("output_norm.weight".into(), rand_t(&[h], 0.1, 1.0)),
    ];
    if !spec.tied {
        tensors.push(("output.weight".into(), rand_t(&[v, h], 0.3, 0.0)));
    }
    let w = |i: usize| 1.5 / (i as f32).sqrt();
    for l in 0..TINY_LAYERS {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        tensors.push((p("attn_norm"), rand_t(&[h], 0.1, 1.0)));
        tensors.push((p("ffn_norm"), rand_t(&[h], 0.1, 1.0)));
        tensors.push((p("attn_q"), rand_t(&[heads * hd, h], w(h), 0.0)));
        tensors.push((p("attn_k"), rand_t(&[kv * hd, h], w(h), 0.0)));
        tensors.push((p("attn_v"), rand_t(&[kv * hd, h], w(h), 0.0)));
        tensors.push((p("attn_output"), rand_t(&[h, heads * hd], 3.0 * w(h), 0.0)));
        tensors.push((p("ffn_gate"), rand_t(&[ff, h], w(h), 0.0)));
        tensors.push((p("ffn_up"), rand_t(&[ff, h], w(h), 0.0)));
        tensors.push((p("ffn_down"), rand_t(&[h, ff], 3.0 * w(ff), 0.0)));
        if arch == "qwen2" {
            let b = |n: &str| format!("blk.{l}.{n}.bias");
            tensors.push((b("attn_q"), rand_t(&[heads * hd], 0.3, 0.0)));
            tensors.push((b("attn_k"), rand_t(&[kv * hd], 0.3, 0.0)));
            tensors.push((b("attn_v"), rand_t(&[kv * hd], 0.3, 0.0)));
        }
        if matches!(arch, "qwen3" | "gemma3") {
            tensors.push((p("attn_q_norm"), rand_t(&[hd], 0.2, 1.0)));
            tensors.push((p("attn_k_norm"), rand_t(&[hd], 0.2, 1.0)));
        }
        if arch == "gemma3" {
            tensors.push((p("post_attention_norm"), rand_t(&[h], 0.2, 1.0)));
            tensors.push((p("post_ffw_norm"), rand_t(&[h], 0.2, 1.0)));
        }
    }
    let u = |x: usize| Value::U32(x as u32);
    let k = |key: &str| format!("{arch}.{key}");
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (k("block_count"), u(TINY_LAYERS)),
        (k("context_length"), Value::U32(spec.context_length)),
        (k("embedding_length"), u(h)),
        (k("feed_forward_length"), u(ff)),
        (k("attention.head_count"), u(heads)),
        (k("attention.head_count_kv"), u(kv)),
        (k("attention.key_length"), u(hd)),
        (k("attention.value_length"), u(hd)),
        (
            k("rope.freq_base"),
            Value::F32(if arch == "gemma3" {
                1_000_000.0
            } else {
                10000.0
            }),
        ),
        (k("rope.dimension_count"), u(hd)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (k("vocab_size"), u(v)),
        // f32 activations in candle's quantized_qwen3 (the parity reference)
        ("general.dtype".into(), Value::U32(0)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(spec.pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|m| Value::String(m.clone())).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u(1)),
        ("tokenizer.ggml.eos_token_id".into(), u(2)),
        ("tokenizer.ggml.padding_token_id".into(), u(2)),
    ];
    if arch == "gemma3" {
        md.push((
            k("attention.sliding_window"),
            Value::U32(spec.sliding_window),
        ));
        md.push((k("rope.local_freq_base"), Value::F32(10000.0)));
    }
    if let Some(b) = spec.add_bos {
        md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
    }
    if let Some(t) = &spec.template {
        md.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }
    write_gguf(path, &md, &tensors);
}

/// Writes a GGUF file with these metadata and F32 tensors.
pub fn write_gguf(path: &Path, md: &[(String, Value)], tensors: &[(String, Tensor)]) {
    let qt: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qt.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// Copies a GGUF with its 2-D tensors stored as `dtype` blocks (the other
/// tensors and the metadata as they are).
pub fn requantized_gguf(src: &Path, dst: &Path, dtype: GgmlDType) {
    let mut r = std::io::BufReader::new(std::fs::File::open(src).unwrap());
    let c = gguf_file::Content::read(&mut r).unwrap();
    let mut names: Vec<String> = c.tensor_infos.keys().cloned().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|n| {
            let t = c.tensor(&mut r, &n, &Device::Cpu).unwrap();
            let t = if t.shape().rank() == 2 {
                QTensor::quantize(&t.dequantize(&Device::Cpu).unwrap(), dtype).unwrap()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let md_refs: Vec<(&str, &Value)> = c.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}
