//! Clustering: artifacts and their columns, determinism, the embedding
//! cache (warm and incremental runs), `--k`, minimum cluster size, DBSCAN
//! outliers, bad inputs (exit 2), the adjusted Rand index, feature helpers;
//! all on synth -> ingest datasets with a tiny random BERT. With the real
//! all-MiniLM-L6-v2: ARI >= 0.9 against the synth ground truth with
//! `--k auto`, and `assign` routing held-out calls to their workload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use slmforge::artifact::clusters::ClusterSummary;
use slmforge::cluster::{self, metrics, Algorithm, ClusterConfig};
use slmforge::dev::synth::{self, SynthConfig};
use slmforge::ingest::{self, IngestConfig, KeySource};
use slmforge::ml::embed::Embedder;
use slmforge::ml::embed::LazyEmbedder;
use slmforge::ml::features;
use slmforge::redact::RedactKey;

use crate::common;

// ------------------------------------------------------------- fixtures

const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const INTER: usize = 64;
const MAX_POS: usize = 260;

/// A tiny BERT (seeded random weights) with a word + letter WordPiece
/// vocabulary, written in the layout `Embedder::load` reads.
fn write_tiny_bert(dir: &Path) {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for w in [
        "the", "order", "invoice", "meeting", "ticket", "review", "flight", "hotel", "sql", "json",
        "email", "customer", "notes", "lead", "calendar", "weather", "chat", "you", "are", "and",
        "to", "a", "of", "is", "for", "with", "my", "please",
    ] {
        vocab.push(w.to_string());
    }
    for c in ('a'..='z').chain('0'..='9') {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    for p in [
        ".", ",", "!", "?", "<", ">", "_", ":", "-", "(", ")", "'", "\"", "@", "/",
    ] {
        vocab.push(p.to_string());
    }
    let ids: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let special = |id: usize, s: &str| serde_json::json!({"id": id, "special": true, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false});
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
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
    });
    let config = serde_json::json!({
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02,
        "intermediate_size": INTER, "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POS,
        "model_type": "bert", "num_attention_heads": 4, "num_hidden_layers": LAYERS,
        "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2,
        "vocab_size": vocab.len()
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
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
        t(&[MAX_POS, HIDDEN], 0.0, 0.3),
    );
    w.insert(
        "embeddings.token_type_embeddings.weight".into(),
        t(&[2, HIDDEN], 0.0, 0.3),
    );
    w.insert("embeddings.LayerNorm.weight".into(), t(&[HIDDEN], 1.0, 0.1));
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
            w.insert(format!("{p}.{name}.weight"), t(&[out, inp], 0.0, 0.3));
            w.insert(format!("{p}.{name}.bias"), t(&[out], 0.0, 0.1));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            w.insert(format!("{p}.{norm}.weight"), t(&[HIDDEN], 1.0, 0.1));
            w.insert(format!("{p}.{norm}.bias"), t(&[HIDDEN], 0.0, 0.1));
        }
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}

pub(crate) struct Tiny {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub embedder: Embedder,
}

pub(crate) fn tiny() -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path());
    let embedder = Embedder::load(dir.path(), &Device::Cpu).unwrap();
    Tiny {
        path: dir.path().to_path_buf(),
        _dir: dir,
        embedder,
    }
}

fn ingest_cfg() -> IngestConfig {
    let mut c = IngestConfig::new(
        RedactKey::from_bytes(b"slmforge-cluster-test-key-0123").unwrap(),
        KeySource::File,
    );
    c.progress = false;
    c
}

/// synth `calls` calls (`seed`) into `dir/logs-<seed>.jsonl`; returns the
/// log file and its labels sidecar.
fn synth_logs(dir: &Path, calls: usize, seed: u64) -> (PathBuf, PathBuf) {
    let logs = dir.join(format!("logs-{seed}.jsonl"));
    let cfg = SynthConfig {
        calls,
        seed,
        malformed: Some(0),
        formats: None,
    };
    synth::synthesize(&cfg, &logs).unwrap();
    let labels = synth::labels_path(&logs);
    (logs, labels)
}

/// A dataset directory made by synth -> ingest.
struct Data {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    labels: PathBuf,
    calls: usize,
}

fn dataset(calls: usize, seed: u64) -> Data {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, labels) = synth_logs(tmp.path(), calls, seed);
    let dir = tmp.path().join("ds");
    let out = ingest::run(&ingest_cfg(), &[logs], &dir).unwrap();
    Data {
        calls: out.report.written as usize,
        tmp,
        dir,
        labels,
    }
}

fn cfg() -> ClusterConfig {
    ClusterConfig {
        progress: false,
        min_cluster_size: 5,
        ..ClusterConfig::default()
    }
}

fn bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        slmforge::artifact::ASSIGNMENTS_FILE,
        slmforge::artifact::SUMMARY_FILE,
        slmforge::artifact::PLOT_FILE,
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
    .collect()
}

fn copy_dataset(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("calls.parquet"), to.join("calls.parquet")).unwrap();
}

// ------------------------------------------------------------- artifacts

#[test]
fn writes_one_row_per_call_with_the_documented_columns() {
    let t = tiny();
    let d = dataset(160, 3);
    let out = cluster::run(&cfg(), &d.dir, &t.embedder).unwrap();

    let df = ParquetReader::new(std::fs::File::open(d.dir.join("clusters.parquet")).unwrap())
        .finish()
        .unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, ["call_id", "cluster", "distance"]);
    assert_eq!(df.column("call_id").unwrap().dtype(), &DataType::String);
    assert_eq!(df.column("cluster").unwrap().dtype(), &DataType::Int32);
    assert_eq!(df.column("distance").unwrap().dtype(), &DataType::Float32);
    assert_eq!(df.height(), d.calls);

    // Same calls, same order as calls.parquet.
    let rows = slmforge::artifact::calls::read_rows(&d.dir).unwrap();
    let assigned = slmforge::artifact::clusters::read_assignment_rows(&d.dir).unwrap();
    assert_eq!(assigned, out.assignments);
    assert_eq!(
        rows.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
        assigned
            .iter()
            .map(|a| a.call_id.as_str())
            .collect::<Vec<_>>()
    );
    let map = slmforge::artifact::clusters::read_assignments(&d.dir).unwrap();
    assert_eq!(map.len(), d.calls);

    let s = slmforge::artifact::clusters::read_summary(&d.dir).unwrap();
    assert_eq!(s, out.summary);
    assert_eq!(s.schema_version, 1);
    assert_eq!(s.algorithm, "kmeans");
    assert_eq!(s.k, s.clusters.len());
    assert_eq!(s.k, out.k);
    assert!(s.k >= 1);
    assert_eq!(s.embedder.checksum, t.embedder.checksum());
    assert_eq!(s.embedder.dim, HIDDEN);
    assert_eq!(
        s.features.dims,
        s.features.blocks.iter().map(|b| b.len).sum::<usize>()
    );
    // Auto k tried 2..=k_max and kept the silhouettes.
    assert!(s.k_search.len() >= 2);
    assert_eq!(s.k_search[0].k, 2);
    assert!(s.k_search.iter().any(|x| x.k == s.k));
    let total: usize = s.clusters.iter().map(|c| c.size).sum::<usize>() + s.outliers;
    assert_eq!(total, d.calls);
    let ids: HashSet<&str> = rows.iter().map(|r| r.call_id.as_str()).collect();
    for (i, c) in s.clusters.iter().enumerate() {
        assert_eq!(c.id, i as i32, "ids are 0..k");
        if i > 0 {
            assert!(s.clusters[i - 1].size >= c.size, "numbered by size");
        }
        assert_eq!(c.centroid.len(), s.features.dims);
        assert_eq!(
            assigned.iter().filter(|a| a.cluster == c.id).count(),
            c.size
        );
        assert!(!c.label_terms.is_empty());
        assert!(ids.contains(c.representative_call_id.as_str()));
        assert_eq!(c.example_call_ids[0], c.representative_call_id);
        // The representative is the member nearest to the centroid.
        let nearest = assigned
            .iter()
            .filter(|a| a.cluster == c.id)
            .map(|a| a.distance)
            .fold(f32::INFINITY, f32::min);
        let rep = assigned
            .iter()
            .find(|a| a.call_id == c.representative_call_id)
            .unwrap();
        assert_eq!(rep.distance, nearest);
        assert!(c.radius > 0.0 && c.request_radius > 0.0);
        let st = &c.stats;
        assert!(st.prompt_tokens.p50 <= st.prompt_tokens.p95);
        assert!(st.completion_tokens.p50 <= st.completion_tokens.p95);
        assert!((st.tool_call_rate + st.json_rate + st.text_rate - 1.0).abs() < 1e-3);
        assert!(["logged", "estimated", "mixed"].contains(&st.tokens_source.as_str()));
        if let Some(p) = c.purity {
            assert!((0.0..=1.0).contains(&p));
            assert!(c.workload_id.is_some());
        }
    }
    let shares: f64 = s.clusters.iter().map(|c| c.share).sum();
    assert!(shares <= 1.0 + 1e-3);
    // The distance of a member is to its own centroid.
    let a = &assigned[0];
    if a.cluster >= 0 {
        assert!(a.distance.is_finite() && a.distance >= 0.0);
    }
    // No truth given, no ARI.
    assert_eq!(s.ari, None);
    let svg = std::fs::read_to_string(d.dir.join("clusters.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.matches("<circle").count() >= s.k);
}

#[test]
fn same_seed_gives_identical_bytes_and_the_cache_serves_reruns() {
    let t = tiny();
    let d = dataset(120, 5);
    let c = ClusterConfig {
        truth: Some(d.labels.clone()),
        ..cfg()
    };
    let first = cluster::run(&c, &d.dir, &t.embedder).unwrap();
    assert!(first.cache.misses > 0);
    assert_eq!(first.cache.hits, 0);
    assert!(first.cache.file.is_file());
    assert_eq!(first.summary.truth_calls, Some(d.calls));
    let ari = first.summary.ari.expect("ARI with --truth");
    assert!((-1.0..=1.0).contains(&ari));
    let a = bytes(&d.dir);

    // Warm: nothing embedded, identical bytes.
    let second = cluster::run(&c, &d.dir, &t.embedder).unwrap();
    assert_eq!(second.cache.misses, 0);
    assert_eq!(second.cache.hits, first.cache.texts);
    assert_eq!(bytes(&d.dir), a);

    // Cold in another directory: identical bytes too.
    let other = d.tmp.path().join("copy");
    copy_dataset(&d.dir, &other);
    cluster::run(&c, &other, &t.embedder).unwrap();
    assert_eq!(bytes(&other), a);

    // Through the lazy embedder (the CLI's): a warm run never loads the model.
    let lazy = LazyEmbedder::new(&t.path).unwrap();
    let third = cluster::run(&c, &d.dir, &lazy).unwrap();
    assert_eq!(third.cache.misses, 0);
    assert!(!lazy.loaded(), "the model was loaded with nothing to embed");
    assert_eq!(bytes(&d.dir), a);

    // Another seed may sample and seed differently but stays well-formed.
    let s9 = ClusterConfig { seed: 9, ..c };
    let out = cluster::run(&s9, &d.dir, &t.embedder).unwrap();
    assert_eq!(out.summary.seed, 9);
    assert_eq!(out.cache.misses, 0);
}

#[test]
fn an_incremental_run_embeds_only_new_texts() {
    let t = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = synth_logs(tmp.path(), 80, 21);
    let (b, _) = synth_logs(tmp.path(), 40, 22);
    let dir = tmp.path().join("ds");
    ingest::run(&ingest_cfg(), std::slice::from_ref(&a), &dir).unwrap();
    let first = cluster::run(&cfg(), &dir, &t.embedder).unwrap();
    // More logs arrive: ingest both files into the same dataset again.
    ingest::run(&ingest_cfg(), &[a, b], &dir).unwrap();
    let second = cluster::run(&cfg(), &dir, &t.embedder).unwrap();
    assert!(second.summary.calls > first.summary.calls);
    assert_eq!(
        second.cache.hits, first.cache.texts,
        "every text of the first run comes from the cache"
    );
    assert!(second.cache.misses > 0);
    assert_eq!(second.cache.hits + second.cache.misses, second.cache.texts);
}

// ------------------------------------------------------------- options

#[test]
fn k_given_is_respected() {
    let t = tiny();
    let d = dataset(100, 7);
    let c = ClusterConfig {
        k: Some(3),
        min_cluster_size: 1,
        outlier_z: None,
        ..cfg()
    };
    let out = cluster::run(&c, &d.dir, &t.embedder).unwrap();
    assert_eq!(out.k, 3);
    assert_eq!(out.summary.k_search.len(), 1);
    assert_eq!(out.summary.k_search[0].k, 3);
    let used: HashSet<i32> = out.assignments.iter().map(|a| a.cluster).collect();
    assert_eq!(used, HashSet::from([0, 1, 2]));

    let c = ClusterConfig { k: Some(1), ..c };
    let out = cluster::run(&c, &d.dir, &t.embedder).unwrap();
    assert_eq!(out.k, 1);
    assert!(out.assignments.iter().all(|a| a.cluster == 0));
}

#[test]
fn clusters_under_the_minimum_size_become_outliers() {
    let t = tiny();
    let d = dataset(120, 8);
    let base = ClusterConfig {
        k: Some(12),
        min_cluster_size: 1,
        outlier_z: None,
        ..cfg()
    };
    let all = cluster::run(&base, &d.dir, &t.embedder).unwrap();
    assert_eq!(all.summary.outliers, 0);
    let mut sizes: Vec<usize> = all.summary.clusters.iter().map(|c| c.size).collect();
    sizes.sort_unstable();
    // A threshold between the smallest and the largest cluster.
    let min = sizes[sizes.len() / 2] + 1;
    let small: usize = sizes.iter().filter(|&&s| s < min).sum();
    assert!(small > 0);
    let c = ClusterConfig {
        min_cluster_size: min,
        ..base
    };
    let out = cluster::run(&c, &d.dir, &t.embedder).unwrap();
    assert_eq!(out.summary.outliers, small);
    assert!(out.summary.clusters.iter().all(|c| c.size >= min));
    let outliers: Vec<_> = out.assignments.iter().filter(|a| a.cluster == -1).collect();
    assert_eq!(outliers.len(), small);
    // An outlier's distance is to the nearest kept centroid.
    for a in outliers.iter().take(5) {
        assert!(a.distance.is_finite() && a.distance > 0.0);
    }
    let ids: Vec<i32> = out.summary.clusters.iter().map(|c| c.id).collect();
    assert_eq!(ids, (0..ids.len() as i32).collect::<Vec<_>>());
}

/// Three calls unlike anything else (their own tools and topics), in the
/// OpenAI chat request/response shape.
fn odd_calls(path: &Path) {
    let lines: Vec<String> = [
        ("You control the launch pad of the rocket range.", "Fuel stage two and start the countdown at T minus ten.", "launch_rocket"),
        ("You align the observatory's telescope mirrors.", "Calibrate the primary mirror for tonight's nebula survey.", "calibrate_telescope"),
        ("Barista robot: brew drinks exactly as ordered.", "Double espresso with oat milk, extra hot, no sugar.", "brew_coffee"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (system, user, tool))| {
        serde_json::json!({
            "workload_id": "odd", "timestamp": 1731000000 + i,
            "request": {"model": "gpt-4o", "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": user}],
                "tools": [{"type": "function", "function": {"name": tool, "description": "Do it",
                    "parameters": {"type": "object", "properties": {"what": {"type": "string"}}}}}]},
            "response": {"id": format!("odd{i}"), "object": "chat.completion", "created": 1731000001, "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": tool,
                        "arguments": "{\"what\": \"now\"}"}}]}}]}
        })
        .to_string()
    })
    .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn dbscan_marks_outliers() {
    let t = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let (logs, _) = synth_logs(tmp.path(), 150, 9);
    let odd = tmp.path().join("odd.jsonl");
    odd_calls(&odd);
    let dir = tmp.path().join("ds");
    let report = ingest::run(&ingest_cfg(), &[logs, odd], &dir)
        .unwrap()
        .report;
    let n = report.written as usize;
    let odd_ids: HashSet<String> = slmforge::artifact::calls::read_rows(&dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.source_file.ends_with("odd.jsonl"))
        .map(|r| r.call_id)
        .collect();
    assert_eq!(odd_ids.len(), 3);

    let dbscan = |eps: Option<f32>| ClusterConfig {
        algorithm: Algorithm::Dbscan { eps, min_points: 4 },
        ..cfg()
    };
    // The radius chosen on the sample: the odd calls are outliers, the
    // synthetic workloads are clustered.
    let auto = cluster::run(&dbscan(None), &dir, &t.embedder).unwrap();
    assert_eq!(auto.summary.algorithm, "dbscan");
    let info = auto.summary.dbscan.clone().unwrap();
    assert!(info.eps_auto && info.eps > 0.0 && !info.eps_search.is_empty());
    assert!(info.eps_search.iter().any(|s| s.eps == info.eps));
    for a in &auto.assignments {
        if odd_ids.contains(&a.call_id) {
            assert_eq!(a.cluster, -1, "an odd call was clustered");
            assert!(a.distance.is_finite() && a.distance > 0.0);
        }
    }
    assert!(auto.k >= 1);
    assert!(auto.summary.outliers >= 3);
    assert!(auto.summary.outliers * 4 < n, "most calls are outliers");
    let kept: usize = auto.summary.clusters.iter().map(|c| c.size).sum();
    assert_eq!(kept + auto.summary.outliers, n);

    // A tiny radius: no dense region, every call an outlier.
    let none = cluster::run(&dbscan(Some(1e-6)), &dir, &t.embedder).unwrap();
    assert_eq!(none.k, 0);
    assert_eq!(none.summary.outliers, n);
    assert!(none.assignments.iter().all(|a| a.cluster == -1));
    // A huge radius: one cluster, no outliers.
    let one = cluster::run(&dbscan(Some(1e6)), &dir, &t.embedder).unwrap();
    assert_eq!(one.k, 1);
    assert_eq!(one.summary.outliers, 0);
}

// ------------------------------------------------------------- bad input

fn cli(args: &[&str], embedder: &Path) -> std::process::Output {
    std::process::Command::new(common::bin())
        .arg("cluster")
        .args(args)
        .arg("--embedder")
        .arg(embedder)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap()
}

fn assert_exit2(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("internal error"), "{err}");
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let t = tiny();
    let tmp = tempfile::tempdir().unwrap();

    // Missing dataset.
    let missing = tmp.path().join("nothing-here");
    assert_exit2(
        &cli(&[missing.to_str().unwrap()], &t.path),
        "slmforge ingest",
    );

    // Empty dataset.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let w = slmforge::artifact::calls::CallsWriter::create(&empty.join("calls.parquet")).unwrap();
    w.finish().unwrap();
    assert_exit2(&cli(&[empty.to_str().unwrap()], &t.path), "no calls");

    // Another schema version.
    let d = dataset(30, 4);
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut df = ParquetReader::new(std::fs::File::open(d.dir.join("calls.parquet")).unwrap())
        .finish()
        .unwrap();
    let n = df.height();
    df.with_column(Column::new("schema_version".into(), vec![99u32; n]))
        .unwrap();
    ParquetWriter::new(std::fs::File::create(old.join("calls.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    assert_exit2(&cli(&[old.to_str().unwrap()], &t.path), "schema version 99");

    // More clusters than calls.
    let ds = d.dir.to_str().unwrap();
    let k = (d.calls + 1).to_string();
    assert_exit2(&cli(&[ds, "--k", &k], &t.path), "needs at least");
    assert!(!d.dir.join("clusters.json").exists());

    // Unusable option values.
    assert_exit2(&cli(&[ds, "--k", "many"], &t.path), "auto");
    assert_exit2(&cli(&[ds, "--weight", "colour=1"], &t.path), "unknown part");
    // No embedder installed.
    assert_exit2(
        &cli(&[ds], &tmp.path().join("no-model")),
        "slmforge models fetch",
    );

    // And a good run through the CLI succeeds.
    let ok = cli(&[ds, "--k", "2", "--min-cluster-size", "1"], &t.path);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("2 clusters"));
}

// ------------------------------------------------------------- pieces

#[test]
fn adjusted_rand_index_matches_known_values() {
    let ari = |a: &[i32], b: &[i32]| metrics::adjusted_rand_index(a, b);
    // Identical up to renaming.
    assert!((ari(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
    // scikit-learn: adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) = 4/7.
    assert!((ari(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 4.0 / 7.0).abs() < 1e-12);
    assert!((ari(&[0, 0, 1, 2], &[0, 0, 1, 1]) - 4.0 / 7.0).abs() < 1e-12);
    // scikit-learn: adjusted_rand_score([0, 0, 0, 0], [0, 1, 2, 3]) = 0.
    assert!(ari(&[0, 0, 0, 0], &[0, 1, 2, 3]).abs() < 1e-12);
    // scikit-learn: adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1]) = -0.5.
    assert!((ari(&[0, 0, 1, 1], &[0, 1, 0, 1]) + 0.5).abs() < 1e-12);
    // Hubert & Arabie's worked example: a 3x3 table.
    let a = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2];
    let b = [0, 0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 2, 2, 2, 1];
    // By hand: sum C(n_ij,2) = C(4,2)+C(1,2)+C(3,2)+C(1,2)+C(4,2)+C(1,2) = 6+0+3+0+6+0 = 15
    // a: 3 * C(5,2) = 30; b: C(5,2)+C(5,2)+C(5,2) = 30; n: C(15,2) = 105
    // expected = 30*30/105 = 8.5714; ARI = (15 - 8.5714) / (30 - 8.5714) = 0.3
    assert!((ari(&a, &b) - 0.3).abs() < 1e-9);
    // Mixed label types.
    let names = ["x", "x", "y", "y"];
    assert!((metrics::adjusted_rand_index(&[7, 7, 3, 3], &names) - 1.0).abs() < 1e-12);
}

#[test]
fn normalized_mutual_info_matches_known_values() {
    let nmi = |a: &[i32], b: &[i32]| metrics::normalized_mutual_info(a, b);
    assert!((nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
    // Independent: every cluster holds each class equally.
    assert!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).abs() < 1e-12);
    // scikit-learn: normalized_mutual_info_score([0, 0, 1, 1], [0, 0, 1, 2]) = 0.8
    assert!((nmi(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.8).abs() < 1e-9);
    // scikit-learn: normalized_mutual_info_score([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.5158037429793889
    assert!((nmi(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]) - 0.515_803_742_979_388_9).abs() < 1e-9);
    assert!((nmi(&[3, 3], &[1, 1]) - 1.0).abs() < 1e-12);
}

#[test]
fn ids_follow_the_earlier_clusters_when_the_data_grows() {
    use slmforge::cluster::ids::match_previous;
    // Earlier run: calls a0..a9 in cluster 0, b0..b9 in 1, c0..c4 in 2.
    let mut prev = HashMap::new();
    for (prefix, id, n) in [("a", 0, 10), ("b", 1, 10), ("c", 2, 5)] {
        for i in 0..n {
            prev.insert(format!("{prefix}{i}"), id);
        }
    }
    // New run on grown data numbers by size: b grew most (new 0), a (new 1),
    // a brand-new workload d (new 2); c vanished (its calls are outliers).
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    for (prefix, l, n) in [("b", 0, 30), ("a", 1, 12), ("d", 2, 11), ("c", -1, 5)] {
        for i in 0..n {
            ids.push(format!("{prefix}{i}"));
            labels.push(l);
        }
    }
    let (map, m) = match_previous(&prev, &ids, &labels, 3);
    assert_eq!(
        map,
        vec![1, 0, 3],
        "b keeps 1, a keeps 0, d gets the next id"
    );
    assert_eq!((m.previous_clusters, m.kept, m.new), (3, 2, 1));
    assert_eq!(m.retired, vec![2]);
    // A cluster that took only a third of an earlier one does not inherit it.
    let labels2: Vec<i32> = ids
        .iter()
        .map(|id| {
            if id.starts_with('a') && id.len() == 2 && id.as_bytes()[1] < b'3' {
                0
            } else {
                1
            }
        })
        .collect();
    let (map2, _) = match_previous(&prev, &ids, &labels2, 2);
    assert_ne!(map2[0], 0);
}

#[test]
fn homogeneity_flags_refusals_mixed_with_tool_calls_but_not_agent_loops() {
    use slmforge::cluster::describe::homogeneity;
    let fact = |kind: usize, called: &[&str], after_tool: bool| features::CallFacts {
        system: String::new(),
        user: "u".into(),
        offered: vec!["get".into(), "set".into()],
        called: called.iter().map(|s| s.to_string()).collect(),
        json_keys: Vec::new(),
        kind: Some(kind),
        after_tool,
        prompt_tokens: 1,
        prompt_logged: false,
        completion_tokens: 1,
        completion_logged: false,
        workload_id: None,
    };
    // 7 calls and 3 text refusals to the user: mixed.
    let mut v: Vec<features::CallFacts> = (0..7).map(|_| fact(0, &["get"], false)).collect();
    v.extend((0..3).map(|_| fact(2, &[], false)));
    let refs: Vec<&features::CallFacts> = v.iter().collect();
    let (h, mixed) = homogeneity(&refs);
    assert_eq!((h.class.as_str(), h.class_share), ("act", 0.7));
    assert_eq!(
        (h.kind.as_str(), h.signature.as_str()),
        ("tool_call", "tool:get")
    );
    let why = mixed.expect("refusals mixed with calls are flagged");
    assert!(why.contains("70% act") && why.contains("30% text"), "{why}");
    // The same text answers after a tool result: one agent loop, not mixed.
    let mut v: Vec<features::CallFacts> = (0..7).map(|_| fact(0, &["get"], false)).collect();
    v.extend((0..3).map(|_| fact(2, &[], true)));
    let refs: Vec<&features::CallFacts> = v.iter().collect();
    let (h, mixed) = homogeneity(&refs);
    assert_eq!((h.class_share, h.kind_share), (1.0, 0.7));
    assert!(mixed.is_none());
    assert_eq!(
        features::AnswerClass::of(&fact(2, &[], true)),
        features::AnswerClass::Act
    );
    assert_eq!(
        features::AnswerClass::of(&fact(2, &[], false)),
        features::AnswerClass::Text
    );
}

#[test]
fn placeholders_lose_their_numbers_and_texts_are_cut_at_words() {
    assert_eq!(
        features::normalise_placeholders("mail <EMAIL_12> or <CREDIT_CARD_3>, not <b>"),
        "mail <EMAIL> or <CREDIT_CARD>, not <b>"
    );
    assert_eq!(
        features::clean_and_truncate("  one   two\n\nthree  ", 100),
        "one two three"
    );
    assert_eq!(
        features::clean_and_truncate("alpha beta gamma delta", 12),
        "alpha beta"
    );
    // A long first word is cut inside it.
    assert_eq!(features::clean_and_truncate("abcdefghijkl", 5), "abcde");
    let cut = features::task_text("ask <PERSON_7> about <PERSON_8>", 1000, true);
    assert_eq!(cut, "ask <PERSON> about <PERSON>");
    // Weight overrides.
    let w = features::FeatureWeights::default()
        .parse_overrides(&["user=0.5".into(), "length=0".into()])
        .unwrap();
    assert_eq!((w.user, w.length), (0.5, 0.0));
    assert!(features::FeatureWeights::default()
        .parse_overrides(&["user=-1".into()])
        .is_err());
}

// ------------------------------------------------------------- real model

fn real_embedder(test: &str) -> Option<Embedder> {
    common::real_file("all-minilm-l6-v2/model.safetensors", test)?;
    Some(Embedder::load(&slmforge::ml::models::embedder_dir(), &Device::Cpu).unwrap())
}

/// Workload of each call of a dataset, from the synth sidecar.
fn truth_of(dir: &Path, labels: &Path) -> HashMap<String, String> {
    let truth = metrics::read_truth(labels).unwrap();
    slmforge::artifact::calls::read_rows(dir)
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            truth
                .get(&(r.source_line, r.source_index))
                .map(|w| (r.call_id, w.clone()))
        })
        .collect()
}

#[test]
fn real_minilm_finds_the_synth_workloads_and_routes_new_calls() {
    let Some(e) = real_embedder("real_minilm_finds_the_synth_workloads_and_routes_new_calls")
    else {
        return;
    };
    // 600 synthetic calls plus three calls unlike any workload.
    let tmp = tempfile::tempdir().unwrap();
    let (logs, labels) = synth_logs(tmp.path(), 600, 42);
    let odd = tmp.path().join("odd.jsonl");
    odd_calls(&odd);
    let dir = tmp.path().join("ds");
    ingest::run(&ingest_cfg(), &[logs, odd], &dir).unwrap();
    let d = Data {
        calls: 603,
        tmp,
        dir,
        labels,
    };
    let c = ClusterConfig {
        truth: Some(d.labels.clone()),
        plot: false,
        progress: false,
        ..ClusterConfig::default()
    };
    let out = cluster::run(&c, &d.dir, &e).unwrap();
    let s = &out.summary;
    let ari = s.ari.unwrap();
    eprintln!(
        "real MiniLM: {} calls, k = {}, ARI {ari:.3}, outliers {}",
        s.calls, s.k, s.outliers
    );
    assert!(ari >= 0.95, "ARI {ari} < 0.95 (k = {})", s.k);
    assert_eq!(s.k, synth::workload_names().len());
    assert_eq!(s.calls, d.calls);

    // Each cluster's workload, by majority of its members.
    let truth = truth_of(&d.dir, &d.labels);
    let mut votes: BTreeMap<i32, BTreeMap<&str, usize>> = BTreeMap::new();
    for a in &out.assignments {
        if let Some(w) = truth.get(&a.call_id) {
            *votes
                .entry(a.cluster)
                .or_default()
                .entry(w.as_str())
                .or_default() += 1;
        }
    }
    let workload_of: HashMap<i32, &str> = votes
        .iter()
        .map(|(c, v)| (*c, *v.iter().max_by_key(|x| x.1).unwrap().0))
        .collect();

    // Held-out calls (another seed), with and without their response.
    let h = dataset(50, 4242);
    let held_truth = truth_of(&h.dir, &h.labels);
    let rows = slmforge::artifact::calls::read_rows(&h.dir).unwrap();
    let summary = slmforge::artifact::clusters::read_summary(&d.dir).unwrap();
    let (mut right, mut right_request, mut total) = (0, 0, 0);
    for r in &rows {
        let Some(w) = held_truth.get(&r.call_id) else {
            continue;
        };
        let call = r.to_call().unwrap().into_inner();
        total += 1;
        if let Some(c) = slmforge::route::assign(&summary, &call, &e) {
            right += usize::from(workload_of.get(&c) == Some(&w.as_str()));
        }
        let mut request = call.clone();
        request.response = Default::default();
        if let Some(c) = slmforge::route::assign(&summary, &request, &e) {
            right_request += usize::from(workload_of.get(&c) == Some(&w.as_str()));
        }
    }
    assert!(total >= 45);
    assert!(
        right * 10 >= total * 9,
        "assign put {right} of {total} held-out calls in their workload's cluster"
    );
    assert!(
        right_request * 10 >= total * 9,
        "request-only assign put {right_request} of {total} in their workload's cluster"
    );
    // A call unlike any workload is not routed.
    let mut odd = rows[0].to_call().unwrap().into_inner();
    odd.messages = vec![slmforge::call::Message::text(
        slmforge::call::Role::User,
        "Quantum chromodynamics lattice gauge simulation of gluon plasma viscosity",
    )];
    odd.tools.clear();
    odd.response = Default::default();
    assert_eq!(slmforge::route::assign(&summary, &odd, &e), None);

    // DBSCAN with its chosen radius finds the workloads too, and leaves the
    // odd calls out (embeddings from the cache now).
    let db = ClusterConfig {
        algorithm: Algorithm::Dbscan {
            eps: None,
            min_points: 5,
        },
        ..c
    };
    let out = cluster::run(&db, &d.dir, &e).unwrap();
    assert_eq!(out.cache.misses, 0);
    let ari = out.summary.ari.unwrap();
    eprintln!(
        "real MiniLM, DBSCAN: k = {}, ARI {ari:.3}, outliers {}",
        out.k, out.summary.outliers
    );
    assert!(ari >= 0.9, "DBSCAN ARI {ari}");
    let odd_ids: HashSet<String> = slmforge::artifact::calls::read_rows(&d.dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.source_file.ends_with("odd.jsonl"))
        .map(|r| r.call_id)
        .collect();
    assert_eq!(odd_ids.len(), 3);
    for a in out
        .assignments
        .iter()
        .filter(|a| odd_ids.contains(&a.call_id))
    {
        assert_eq!(a.cluster, -1, "DBSCAN clustered an odd call");
    }
}

/// Each cluster's calls by true workload (one-offs as `oneoff_*`).
fn mix_of(
    assignments: &[slmforge::artifact::clusters::Assignment],
    truth: &HashMap<String, String>,
) -> BTreeMap<i32, BTreeMap<String, usize>> {
    let mut mix: BTreeMap<i32, BTreeMap<String, usize>> = BTreeMap::new();
    for a in assignments {
        if let Some(w) = truth.get(&a.call_id) {
            let w = if w.starts_with("oneoff_") {
                "oneoff_*".to_string()
            } else {
                w.clone()
            };
            *mix.entry(a.cluster).or_default().entry(w).or_default() += 1;
        }
    }
    mix
}

/// The committed hard sample (`datasets/hard`: generic function calling
/// with changing tool sets, refusals and clarifying questions on the same
/// tools, a multi-API agent, an agent loop, two extraction workloads that
/// differ only in their output schema, unbalanced sizes and a tail of
/// one-offs) with default options; then grown data keeps the cluster ids.
#[test]
fn real_minilm_clusters_the_hard_sample_and_keeps_ids_when_it_grows() {
    let Some(e) = real_embedder("real_minilm_clusters_the_hard_sample_and_keeps_ids_when_it_grows")
    else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/hard");
    let (logs, labels) = (root.join("calls.jsonl.gz"), root.join("calls.labels.jsonl"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    ingest::run(&ingest_cfg(), std::slice::from_ref(&logs), &dir).unwrap();
    let c = ClusterConfig {
        truth: Some(labels.clone()),
        plot: false,
        progress: false,
        ..ClusterConfig::default()
    };
    let out = cluster::run(&c, &dir, &e).unwrap();
    let s = &out.summary;
    let (ari, nmi) = (s.ari.unwrap(), s.nmi.unwrap());
    eprintln!(
        "real MiniLM, hard sample: {} calls, k = {}, ARI {ari:.3}, NMI {nmi:.3}, outliers {}",
        s.calls, s.k, s.outliers
    );
    assert!(ari >= 0.8 && nmi >= 0.85, "ARI {ari}, NMI {nmi}");
    let truth = truth_of(&dir, &labels);
    let mix = mix_of(&out.assignments, &truth);
    // The cluster holding most of a workload.
    let home = |w: &str| -> i32 {
        *mix.iter()
            .filter(|(c, _)| **c >= 0)
            .max_by_key(|(_, m)| m.get(w).copied().unwrap_or(0))
            .unwrap()
            .0
    };
    let share_in = |w: &str, c: i32| -> f64 {
        let total: usize = mix.values().map(|m| m.get(w).copied().unwrap_or(0)).sum();
        mix[&c].get(w).copied().unwrap_or(0) as f64 / total as f64
    };
    // Refusals and clarifying questions never share a cluster with the
    // tool calls on the same tools; each has its own.
    for (call, text) in [("fc_call", "fc_refusal"), ("bank_call", "bank_no_call")] {
        let (a, b) = (home(call), home(text));
        assert_ne!(a, b, "{call} and {text} share cluster {a}");
        assert_eq!(mix[&a].get(text), None, "{text} calls in {call}'s cluster");
        assert_eq!(mix[&b].get(call), None, "{call} calls in {text}'s cluster");
        assert!(share_in(call, a) >= 0.9 && share_in(text, b) >= 0.9);
    }
    // Near-duplicate workloads that differ only in the output schema.
    assert_ne!(home("extract_schema_a"), home("extract_schema_b"));
    // The agent loop (next tool call and final text answer after a tool
    // result) is one workload, and every workload of 60 calls or more has
    // a cluster where it is at least 90% of the calls.
    assert!(share_in("ops_agent", home("ops_agent")) >= 0.9);
    for w in [
        "fc_call",
        "bank_call",
        "ops_agent",
        "order_status",
        "travel_agent",
        "sql_generation",
    ] {
        let c = home(w);
        let size: usize = mix[&c].values().sum();
        assert!(
            mix[&c][w] * 10 >= size * 9,
            "cluster {c} of {w}: {:?}",
            mix[&c]
        );
    }
    // The multi-API agent (one prompt, one tool list, one API per
    // conversation) stays one cluster of its own; its APIs show in its tools.
    let m = home("multiapi_flights");
    assert_eq!(home("multiapi_hotels"), m);
    assert_eq!(home("multiapi_cars"), m);
    let cl = s.clusters.iter().find(|x| x.id == m).unwrap();
    assert!(
        cl.tools.iter().any(|t| t.name.starts_with("hotels_")),
        "{:?}",
        cl.tools
    );
    // The long tail of one-offs goes to the outliers (the LLM).
    let oneoffs: usize = mix
        .values()
        .map(|m| m.get("oneoff_*").copied().unwrap_or(0))
        .sum();
    let caught = mix
        .get(&-1)
        .and_then(|m| m.get("oneoff_*"))
        .copied()
        .unwrap_or(0);
    assert!(
        oneoffs >= 35 && caught * 4 >= oneoffs * 3,
        "{caught} of {oneoffs} one-offs are outliers"
    );
    assert!(s.outliers <= s.calls / 20, "{} outliers", s.outliers);
    // Readable: labels from tools or request words, not the boilerplate;
    // example requests; homogeneity; nothing mixed.
    for cl in &s.clusters {
        assert!(
            !cl.label.is_empty() && (2..=3).contains(&cl.example_requests.len()),
            "{cl:?}"
        );
        assert!(
            cl.homogeneity.class_share >= 0.9 && cl.mixed.is_none(),
            "{:?}",
            cl.homogeneity
        );
        assert!(!cl.label.contains("functions"), "{}", cl.label);
    }
    let json = s
        .clusters
        .iter()
        .find(|x| x.id == home("extract_schema_b"))
        .unwrap();
    assert!(json.label.starts_with('{') && json.homogeneity.signature.starts_with("keys:"));

    // Grown data: 400 more calls; clusters keep their ids.
    let more = tmp.path().join("more.jsonl");
    let cfg = SynthConfig {
        calls: 400,
        seed: 99,
        malformed: Some(0),
        formats: None,
    };
    synth::synthesize_profile(&cfg, synth::Profile::Hard, &more).unwrap();
    ingest::run(&ingest_cfg(), &[logs, more], &dir).unwrap();
    let before: HashMap<&str, i32> = out
        .assignments
        .iter()
        .map(|a| (a.call_id.as_str(), a.cluster))
        .collect();
    let grown = cluster::run(&c, &dir, &e).unwrap();
    assert!(grown.summary.calls > s.calls);
    let (mut same, mut both) = (0, 0);
    for a in &grown.assignments {
        if let Some(&b) = before.get(a.call_id.as_str()) {
            if a.cluster >= 0 && b >= 0 {
                both += 1;
                same += usize::from(a.cluster == b);
            }
        }
    }
    eprintln!(
        "grown: {same} of {both} calls kept their cluster id; {:?}",
        grown.summary.id_matching
    );
    assert!(both >= 1800 && same * 100 >= both * 97, "{same} of {both}");
}

#[test]
fn demo_tunes_a_tool_cluster_and_a_json_cluster_first() {
    let summary = |id: i32, size: usize, tool: f64, json: f64| -> ClusterSummary {
        serde_json::from_value(serde_json::json!({
            "id": id, "label_terms": [], "tools": [], "size": size, "share": 0.1,
            "representative_call_id": "x", "example_call_ids": [], "centroid": [],
            "radius": 1.0, "request_radius": 1.0,
            "stats": {"prompt_tokens": {"p50": 1, "p95": 2}, "completion_tokens": {"p50": 1, "p95": 2},
                      "tokens_source": "logged", "tool_call_rate": tool, "json_rate": json,
                      "text_rate": 1.0 - tool - json},
            "purity": null, "workload_id": null
        }))
        .unwrap()
    };
    let clusters = vec![
        summary(0, 500, 0.0, 0.0),
        summary(1, 300, 0.9, 0.0),
        summary(2, 200, 0.0, 0.8),
        summary(3, 400, 1.0, 0.0),
        summary(4, 40, 0.0, 1.0),
        summary(-1, 900, 0.0, 1.0),
    ];
    use slmforge::select::demo_clusters;
    // The largest tool cluster, the largest JSON cluster, then by size.
    assert_eq!(demo_clusters(&clusters, 2, 50), vec![3, 2]);
    assert_eq!(demo_clusters(&clusters, 3, 50), vec![3, 2, 0]);
    assert_eq!(demo_clusters(&clusters, usize::MAX, 50), vec![3, 2, 0, 1]);
    assert_eq!(demo_clusters(&clusters, 1, 50), vec![3]);
    assert!(demo_clusters(&clusters, 0, 50).is_empty());
    // Cluster 4 qualifies under a lower minimum; the outlier group never does.
    assert_eq!(demo_clusters(&clusters, 9, 30), vec![3, 2, 0, 1, 4]);
}
