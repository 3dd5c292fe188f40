//! Sentence embedder: a tiny random BERT with a small WordPiece tokenizer
//! (written here) for shapes, normalisation, padding/masking, order and
//! truncation, cross-checked against candle-transformers' BertModel; the real
//! all-MiniLM-L6-v2 against sentence-transformers reference vectors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use slmforge::ml::embed::{self, Backend, Embedder};

use crate::common;

const HIDDEN: usize = 32;
const INTER: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const MAX_POS: usize = 300;

/// Words that are single tokens in the tiny vocabulary.
const WORDS: &[&str] = &[
    "the", "cat", "dog", "sat", "on", "mat", "hello", "world", "a", "big", "red", "ran", "fast",
    "slow",
];

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(WORDS.iter().map(|s| s.to_string()));
    v.extend([".", ",", "!", "?"].iter().map(|s| s.to_string()));
    for c in 'a'..='z' {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    v
}

/// tokenizer.json shaped like the real one, including its fixed padding and
/// truncation at 128, which the embedder must override.
fn tokenizer_json(vocab: &[String]) -> serde_json::Value {
    let ids: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let special = |id: usize, s: &str| serde_json::json!({"id": id, "special": true, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false});
    serde_json::json!({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]"), special(4, "[MASK]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": ids}
    })
}

fn bert_config(vocab_size: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": INTER,
        "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POS, "model_type": "bert",
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 0,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": vocab_size
    })
}

/// Writes config.json, tokenizer.json, model.safetensors and the pooling
/// config of a tiny BERT with seeded random weights into `dir`.
fn write_tiny_bert(dir: &Path, seed: u64) {
    let vocab = vocab();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut t = |shape: &[usize], center: f32, spread: f32| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| center + spread * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    };
    let mut w: HashMap<String, Tensor> = HashMap::new();
    w.insert(
        "embeddings.word_embeddings.weight".into(),
        t(&[vocab.len(), HIDDEN], 0.0, 1.0),
    );
    w.insert(
        "embeddings.position_embeddings.weight".into(),
        t(&[MAX_POS, HIDDEN], 0.0, 0.5),
    );
    w.insert(
        "embeddings.token_type_embeddings.weight".into(),
        t(&[2, HIDDEN], 0.0, 0.5),
    );
    w.insert("embeddings.LayerNorm.weight".into(), t(&[HIDDEN], 1.0, 0.2));
    w.insert("embeddings.LayerNorm.bias".into(), t(&[HIDDEN], 0.0, 0.1));
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", HIDDEN, HIDDEN),
            ("attention.self.key", HIDDEN, HIDDEN),
            ("attention.self.value", HIDDEN, HIDDEN),
            ("attention.output.dense", HIDDEN, HIDDEN),
            ("intermediate.dense", INTER, HIDDEN),
            ("output.dense", HIDDEN, INTER),
        ] {
            w.insert(format!("{p}.{name}.weight"), t(&[out, inp], 0.0, 0.4));
            w.insert(format!("{p}.{name}.bias"), t(&[out], 0.0, 0.1));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            w.insert(format!("{p}.{norm}.weight"), t(&[HIDDEN], 1.0, 0.2));
            w.insert(format!("{p}.{norm}.bias"), t(&[HIDDEN], 0.0, 0.1));
        }
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&bert_config(vocab.len())).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_vec(&tokenizer_json(&vocab)).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        br#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}"#,
    )
    .unwrap();
}

const BACKENDS: [Backend; 2] = [Backend::Auto, Backend::CandleOps];

fn tiny_with(backend: Backend) -> (tempfile::TempDir, Embedder) {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_bert(tmp.path(), 7);
    let e = Embedder::load_with_backend(tmp.path(), &Device::Cpu, backend).unwrap();
    (tmp, e)
}

fn tiny() -> (tempfile::TempDir, Embedder) {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_bert(tmp.path(), 7);
    let e = Embedder::load(tmp.path(), &Device::Cpu).unwrap();
    (tmp, e)
}

/// `n` words cycling through WORDS from `start`: one token per word.
fn words(n: usize, start: usize) -> String {
    (0..n)
        .map(|i| WORDS[(start + i) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn tiny_bert_loads_with_shapes_unit_norm_and_checksum() {
    let (tmp, e) = tiny();
    assert_eq!(e.dim(), HIDDEN);
    assert_eq!(e.max_tokens(), 256);
    let weights = tmp.path().join("model.safetensors");
    assert_eq!(e.checksum(), slmforge::util::sha256_file(&weights).unwrap());
    // The checksum is cached beside the file for the next load.
    assert!(tmp.path().join(".model.safetensors.verified").is_file());
    assert_eq!(
        slmforge::ml::models::stamped_sha256(&weights).as_deref(),
        Some(e.checksum())
    );

    let texts = ["hello world", "The cat sat on the mat.", "zebra!", ""];
    let v = e.embed(&texts).unwrap();
    assert_eq!(v.len(), texts.len());
    for (t, x) in texts.iter().zip(&v) {
        assert_eq!(x.len(), HIDDEN);
        let norm = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{t:?}: norm {norm}");
        assert!(x.iter().all(|a| a.is_finite()));
    }
    // Different texts, different vectors; the same text, the same vector.
    assert!(max_abs_diff(&v[0], &v[1]) > 1e-3);
    assert!(e.embed(&[]).unwrap().is_empty());
    let again = e.embed(&["hello world"]).unwrap();
    assert!(max_abs_diff(&again[0], &v[0]) < 1e-6);
}

#[test]
fn tokenizer_settings_are_overridden() {
    let (_tmp, e) = tiny();
    let ids = e.tokenize(&["Hello, zebra"]).unwrap();
    // [CLS] hello , z ##e ##b ##r ##a [SEP]: no padding to 128 from tokenizer.json.
    let v = vocab();
    let tok = |s: &str| v.iter().position(|t| t == s).unwrap() as u32;
    assert_eq!(
        ids[0],
        [
            tok("[CLS]"),
            tok("hello"),
            tok(","),
            tok("z"),
            tok("##e"),
            tok("##b"),
            tok("##r"),
            tok("##a"),
            tok("[SEP]")
        ]
    );
    // Truncation at 256 (not the file's 128), [SEP] kept at the end.
    let long = e.tokenize(&[&words(400, 0)]).unwrap();
    assert_eq!(long[0].len(), 256);
    assert_eq!(long[0][0], tok("[CLS]"));
    assert_eq!(long[0][255], tok("[SEP]"));
}

#[test]
fn padding_and_masking_do_not_change_vectors() {
    for backend in BACKENDS {
        let (_tmp, e) = tiny_with(backend);
        let short = "the cat sat";
        let alone = e.embed(&[short]).unwrap().remove(0);
        // In one batch with much longer texts (the candle path pads the short one).
        let e = e.with_batch_size(16);
        let long1 = words(120, 3);
        let long2 = words(60, 5);
        let mixed = e.embed(&[long1.as_str(), short, long2.as_str()]).unwrap();
        let d = max_abs_diff(&alone, &mixed[1]);
        assert!(d < 1e-5, "{backend:?}: padded vs alone differ by {d}");
    }
}

#[test]
fn batching_preserves_order_and_values() {
    for backend in BACKENDS {
        let (tmp, e) = tiny_with(backend);
        // Lengths out of order so that sorting by length reorders them inside.
        // With batch size 64 all 11 share one batch; on the candle path it is
        // padded to 202 tokens and its attention runs in two sequence groups
        // (4 heads x 202^2 scores each).
        let texts: Vec<String> = [5, 40, 1, 77, 12, 3, 40, 200, 9, 0, 25]
            .iter()
            .enumerate()
            .map(|(i, &n)| words(n, i))
            .collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let one_by_one: Vec<Vec<f32>> = refs
            .iter()
            .map(|t| e.embed(&[t]).unwrap().remove(0))
            .collect();
        for bs in [1, 3, 4, 64] {
            let e = Embedder::load_with_backend(tmp.path(), &Device::Cpu, backend)
                .unwrap()
                .with_batch_size(bs);
            let batched = e.embed(&refs).unwrap();
            for (i, (a, b)) in one_by_one.iter().zip(&batched).enumerate() {
                let d = max_abs_diff(a, b);
                assert!(
                    d < 1e-5,
                    "{backend:?}, batch size {bs}, text {i}: differs by {d}"
                );
            }
        }
        // A small token budget splits the same texts differently: same vectors.
        let e = Embedder::load_with_backend(tmp.path(), &Device::Cpu, backend)
            .unwrap()
            .with_max_batch_tokens(100);
        for (i, (a, b)) in one_by_one.iter().zip(&e.embed(&refs).unwrap()).enumerate() {
            assert!(
                max_abs_diff(a, b) < 1e-5,
                "{backend:?}, token budget 100, text {i}"
            );
        }
        // The progress bar advances by the number of texts.
        let pb = indicatif::ProgressBar::hidden();
        e.embed_with_progress(&refs, &pb).unwrap();
        assert_eq!(pb.position(), refs.len() as u64);
    }
}

#[test]
fn cpu_kernel_matches_candle_ops() {
    let (tmp, fast) = tiny_with(Backend::Auto);
    assert_eq!(fast.backend_name(), "cpu-packed");
    let reference =
        Embedder::load_with_backend(tmp.path(), &Device::Cpu, Backend::CandleOps).unwrap();
    assert_eq!(reference.backend_name(), "candle-ops");
    let texts: Vec<String> = [0, 1, 2, 7, 31, 64, 130, 254, 400]
        .iter()
        .enumerate()
        .map(|(i, &n)| words(n, 2 * i))
        .collect();
    let mut refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    refs.extend(["Hello, zebra!", "UPPER case and ünïcödé?", "x"]);
    let a = fast.embed(&refs).unwrap();
    let b = reference.embed(&refs).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = max_abs_diff(x, y);
        assert!(
            d < 1e-5,
            "text {i}: cpu kernel and candle ops differ by {d}"
        );
    }
}

#[test]
fn long_inputs_are_truncated() {
    let (_tmp, e) = tiny();
    // Both cut to their first 254 word tokens: same vector.
    let a = e.embed(&[&words(400, 0)]).unwrap().remove(0);
    let b = e.embed(&[&words(300, 0)]).unwrap().remove(0);
    assert!(max_abs_diff(&a, &b) < 1e-5);
    // Under the limit the extra words count.
    let c = e.embed(&[&words(200, 0)]).unwrap().remove(0);
    assert!(max_abs_diff(&a, &c) > 1e-4);
}

#[test]
fn plan_batches_groups_by_length_and_covers_all() {
    let ids: Vec<Vec<u32>> = [3, 9, 1, 9, 4, 7].iter().map(|&n| vec![1; n]).collect();
    let batches = embed::plan_batches(&ids, 4, usize::MAX);
    assert_eq!(batches, vec![vec![1, 3, 5, 4], vec![0, 2]]);
    // A token budget of 20: 9 + 9 padded tokens fit, a third text would make 27.
    assert_eq!(
        embed::plan_batches(&ids, 4, 20),
        vec![vec![1, 3], vec![5, 4], vec![0, 2]]
    );
    // A text longer than the budget still gets a batch of its own.
    assert_eq!(
        embed::plan_batches(&ids, 4, 5),
        vec![vec![1], vec![3], vec![5], vec![4], vec![0], vec![2]]
    );
    assert!(embed::plan_batches(&[], 4, 20).is_empty());
}

#[test]
fn encoder_matches_candle_transformers_bert() {
    // Our inference BERT (fused QKV, folded scale, mask only when padded)
    // against candle-transformers' reference implementation, with padding.
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_bert(tmp.path(), 11);
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap()).unwrap();
    let load = || {
        unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[tmp.path().join("model.safetensors")],
                DType::F32,
                &Device::Cpu,
            )
        }
        .unwrap()
    };
    let ours = embed::Bert::load(load(), &cfg).unwrap();
    let theirs = candle_transformers::models::bert::BertModel::load(load(), &cfg).unwrap();

    let seqs: [&[u32]; 3] = [&[2, 5, 6, 7, 8, 9, 3], &[2, 10, 11, 3], &[2, 3]];
    let (b, s) = (seqs.len(), 7);
    let mut ids = vec![0u32; b * s];
    let mut mask = vec![0f32; b * s];
    for (r, q) in seqs.iter().enumerate() {
        ids[r * s..r * s + q.len()].copy_from_slice(q);
        mask[r * s..r * s + q.len()].fill(1.0);
    }
    let ids = Tensor::from_vec(ids, (b, s), &Device::Cpu).unwrap();
    let mask_f = Tensor::from_vec(mask, (b, s), &Device::Cpu).unwrap();
    let ours_h = ours.forward(&ids, &[7, 4, 2]).unwrap();
    let theirs_h = theirs
        .forward(
            &ids,
            &ids.zeros_like().unwrap(),
            Some(&mask_f.to_dtype(DType::U32).unwrap()),
        )
        .unwrap();
    // Compare real (unpadded) positions only.
    for (r, q) in seqs.iter().enumerate() {
        let a = ours_h
            .get(r)
            .unwrap()
            .narrow(0, 0, q.len())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let t = theirs_h
            .get(r)
            .unwrap()
            .narrow(0, 0, q.len())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let d = max_abs_diff(&a, &t);
        assert!(d < 1e-4, "row {r}: hidden states differ by {d}");
    }
    // Without a mask (no padding) both agree as well.
    let full = Tensor::new(&[[2u32, 5, 6, 3]], &Device::Cpu).unwrap();
    let a = ours
        .forward(&full, &[4])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let t = theirs
        .forward(&full, &full.zeros_like().unwrap(), None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(max_abs_diff(&a, &t) < 1e-4);
}

#[test]
fn non_mean_pooling_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_bert(tmp.path(), 3);
    std::fs::write(
        tmp.path().join("1_Pooling/config.json"),
        br#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let err = Embedder::load(tmp.path(), &Device::Cpu)
        .err()
        .expect("cls pooling must be refused");
    assert!(format!("{err:#}").contains("only mean pooling"), "{err:#}");
}

#[derive(serde::Deserialize)]
struct Reference {
    model_safetensors_sha256: String,
    max_seq_length: usize,
    items: Vec<RefItem>,
}

#[derive(serde::Deserialize)]
struct RefItem {
    text: String,
    tokens_untruncated: usize,
    embedding: Vec<f32>,
}

#[test]
fn real_minilm_matches_sentence_transformers() {
    let Some(weights) = common::real_file(
        "all-minilm-l6-v2/model.safetensors",
        "real_minilm_matches_sentence_transformers",
    ) else {
        return;
    };
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let r: Reference = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let e = Embedder::load(weights.parent().unwrap(), &Device::Cpu).unwrap();
    assert_eq!(e.checksum(), r.model_safetensors_sha256);
    assert_eq!(e.max_tokens(), r.max_seq_length);
    assert_eq!(e.dim(), 384);
    assert!(
        r.items.iter().any(|it| it.tokens_untruncated > 256),
        "fixture must exercise truncation"
    );
    let texts: Vec<&str> = r.items.iter().map(|it| it.text.as_str()).collect();
    // Token counts agree with the Python tokenizer (capped at 256).
    for (ids, it) in e.tokenize(&texts).unwrap().iter().zip(&r.items) {
        assert_eq!(ids.len(), it.tokens_untruncated.min(256), "{:?}", it.text);
    }
    let mut worst = 1f32;
    for (backend, bs) in [
        (Backend::Auto, 32),
        (Backend::Auto, 3),
        (Backend::CandleOps, 32),
    ] {
        let got = Embedder::load_with_backend(weights.parent().unwrap(), &Device::Cpu, backend)
            .unwrap()
            .with_batch_size(bs)
            .embed(&texts)
            .unwrap();
        for (g, it) in got.iter().zip(&r.items) {
            let c = cosine(g, &it.embedding);
            worst = worst.min(c);
            assert!(
                c >= 0.999,
                "{backend:?}, batch size {bs}: cosine {c} for {:?}",
                it.text
            );
        }
    }
    eprintln!("real_minilm_matches_sentence_transformers: lowest cosine {worst:.7}");
}
