//! Tests of `slmforge tune` (src/tune) on a tiny random Llama GGUF and a tiny
//! two-cluster dataset (review sentiment as text, weather look-ups as tool
//! calls) ingested through the real pipeline: the loss drops on an overfit
//! set, resume equals an uninterrupted run bit for bit (also after a crash
//! that lost steps past the last checkpoint), masked tokens carry no loss,
//! the split is stable when another cluster grows, the output files carry
//! the documented fields, the evaluation rules, bad inputs exit 2, and
//! `generate --adapter` uses a tuned adapter. The real SmolLM2 file, when
//! present, runs a few steps on the bundled sample.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use slmforge::artifact::adapter::ClusterStatus;
use slmforge::artifact::split::{split_of, Split, SplitFractions};
use slmforge::call::{Response, ToolCall};
use slmforge::dev::synth::truth::{clusters_from_labels, write_clusters};
use slmforge::ingest::{self, IngestConfig, KeySource};
use slmforge::ml::lm::score::{
    arguments_match, calls_match, names_match, score_reply, values_match,
};
use slmforge::redact::RedactKey;
use slmforge::select::tune_targets;
use slmforge::tune::data::{self, BatchLimits};
use slmforge::tune::{self, Outcome, Session, Start, TuneConfig, TuneOutput};

use crate::common;

// ---------------------------------------------------------------------------
// Tiny model.

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A random 2-layer Llama (hidden 64) with a byte-level vocabulary and a
/// few merges, ChatML template, context 2048.
pub(crate) fn tiny_gguf(path: &Path, seed: u64) {
    common::tiny_gguf(
        path,
        &common::TinyGguf {
            seed,
            merges: &[
                (" ", "t"),
                ("h", "e"),
                ("e", "r"),
                ("i", "n"),
                ("\"", ":"),
                ("a", "t"),
            ],
            tied: true,
            template: Some(CHATML.into()),
            pre: "smollm",
            arch: "llama",
            context_length: 2048,
            add_bos: None,
            sliding_window: 512,
        },
    );
}

// ---------------------------------------------------------------------------
// Tiny dataset.

const WORDS: [&str; 8] = [
    "good", "fine", "great", "nice", "bad", "poor", "awful", "sad",
];
const CITIES: [&str; 8] = [
    "Lisbon", "Oslo", "Rome", "Quito", "Lima", "Paris", "Porto", "Kyiv",
];

pub(crate) fn review_line(i: usize) -> Value {
    let w = WORDS[i % WORDS.len()];
    let label = if i % WORDS.len() < 4 {
        "positive"
    } else {
        "negative"
    };
    json!({"request": {"messages": [
            {"role": "system", "content": "Label the review."},
            {"role": "user", "content": format!("review {i}: it was {w}")}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": label}, "finish_reason": "stop"}]}})
}

pub(crate) fn weather_line(i: usize) -> Value {
    let c = CITIES[i % CITIES.len()];
    let args = json!({"city": c, "days": 1 + i % 3}).to_string();
    json!({"request": {"messages": [
            {"role": "system", "content": "Use the tool."},
            {"role": "user", "content": format!("weather {i} in {c}")}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            "finish_reason": "tool_calls"}]}})
}

/// Ingests `reviews` review calls and `weathers` weather calls into `dir`
/// and writes clusters.parquet (0 = reviews, 1 = weather).
fn make_dataset(dir: &Path, reviews: usize, weathers: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("logs.jsonl");
    let mut f = std::fs::File::create(&log).unwrap();
    for i in 0..reviews {
        writeln!(f, "{}", review_line(i)).unwrap();
    }
    for i in 0..weathers {
        writeln!(f, "{}", weather_line(i)).unwrap();
    }
    drop(f);
    let mut cfg = IngestConfig::new(
        RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        KeySource::File,
    );
    cfg.progress = false;
    ingest::run(&cfg, &[log], dir).unwrap();
    let rows = slmforge::artifact::calls::read_rows(dir).unwrap();
    let assignments: Vec<(String, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.call_id.clone(),
                if r.tool_names.is_empty() { 0 } else { 1 },
            )
        })
        .collect();
    let labels: BTreeMap<i32, String> =
        [(0, "reviews".to_string()), (1, "weather".to_string())].into();
    write_clusters(dir, &assignments, &labels).unwrap();
}

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub model: PathBuf,
    pub dataset: PathBuf,
}

pub(crate) fn fixture(reviews: usize, weathers: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let model = root.join("tiny.gguf");
    tiny_gguf(&model, 11);
    let dataset = root.join("ds");
    make_dataset(&dataset, reviews, weathers);
    Fixture {
        _tmp: tmp,
        root,
        model,
        dataset,
    }
}

/// Chooses the clusters as `slmforge tune` does, then runs the stage.
pub(crate) fn run_tune(
    cfg: &TuneConfig,
    ds: &Path,
    out: &Path,
    named: Option<&[i32]>,
    start: Start,
    stop_after_steps: Option<usize>,
) -> anyhow::Result<TuneOutput> {
    let targets = tune_targets(ds, named, &cfg.base_model, cfg.min_examples)?;
    let session = Session {
        start,
        stop_after_steps,
        ..Default::default()
    };
    tune::run(cfg, &session, ds, &targets, out)
}

/// The clusters' encoded calls, as `tune --dry-run` sees them.
fn prepare(cfg: &TuneConfig, ds: &Path, named: Option<&[i32]>) -> Vec<tune::Prepared> {
    let targets = tune_targets(ds, named, &cfg.base_model, cfg.min_examples).unwrap();
    tune::prepare(cfg, &Device::Cpu, ds, &targets).unwrap()
}

/// Settings for fast tiny runs: step budget only, no wall clock.
pub(crate) fn tiny_cfg(model: &Path) -> TuneConfig {
    let mut c = TuneConfig {
        base_model: model.display().to_string(),
        lr: 1e-2,
        warmup_steps: 2,
        batch_size: 4,
        batch_tokens: 4096,
        max_len: 1024,
        epochs: 50,
        max_steps: Some(12),
        time_budget_secs: None,
        eval_every: 4,
        patience: 0,
        checkpoint_every: 4,
        min_examples: 10,
        seed: 3,
        ..Default::default()
    };
    c.lora.rank = 4;
    c.lora.alpha = 8.0;
    c.eval.max_test_calls = 4;
    c.eval.batch_size = 4;
    c
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn log_entries(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("secs");
            v
        })
        .collect()
}

/// The adapter's tensors as raw f32 bits (the file's header order is not
/// part of the comparison).
fn adapter_bits(dir: &Path) -> BTreeMap<String, Vec<u32>> {
    candle_core::safetensors::load(dir.join("adapter.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (k, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Training.

#[test]
fn overfit_loss_drops_and_outputs_have_documented_fields() {
    let fx = fixture(40, 0);
    let mut cfg = tiny_cfg(&fx.model);
    cfg.max_steps = Some(30);
    cfg.eval_every = 10;
    let out = fx.root.join("run");
    let res = run_tune(&cfg, &fx.dataset, &out, None, Start::Fresh, None).unwrap();
    assert_eq!(res.outcome, Outcome::Finished);
    assert_eq!(res.clusters.len(), 1, "only the review cluster exists");
    let r = &res.clusters[0];
    assert_eq!(r.status, ClusterStatus::Tuned);
    let dir = out.join("cluster-0");
    // The loss on a tiny overfit set falls a lot.
    let log = log_entries(&dir);
    let losses: Vec<f64> = log.iter().filter_map(|v| v["loss"].as_f64()).collect();
    assert_eq!(losses.len(), 30);
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[27..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.3 * first, "loss {first} -> {last}");
    for v in log.iter().filter(|v| v.get("loss").is_some()) {
        for k in [
            "step",
            "epoch",
            "loss",
            "lr",
            "grad_norm",
            "tokens",
            "answer_tokens",
        ] {
            assert!(v.get(k).is_some(), "train_log entry lacks {k}: {v}");
        }
    }
    let vals: Vec<&Value> = log.iter().filter(|v| v.get("val_loss").is_some()).collect();
    assert_eq!(
        vals.iter()
            .map(|v| v["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 10, 20, 30]
    );
    // Files and fields.
    for f in [
        "adapter.safetensors",
        "adapter_config.json",
        "train_log.jsonl",
        "eval.json",
        "eval_samples.jsonl",
        "tune.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    assert!(
        !dir.join("checkpoint").exists(),
        "checkpoint removed when finished"
    );
    let ac = read_json(&dir.join("adapter_config.json"));
    assert_eq!(ac["rank"], 4);
    assert_eq!(ac["alpha"], 8.0);
    assert_eq!(ac["base_model_sha256"].as_str().unwrap().len(), 64);
    let tj = read_json(&dir.join("tune.json"));
    assert_eq!(tj["train_data_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(tj["base_model_sha256"], ac["base_model_sha256"]);
    assert_eq!(tj["counts"]["calls"], 40);
    assert_eq!(tj["counts"]["examples"], 40);
    let c = &tj["counts"];
    assert_eq!(
        c["train"].as_u64().unwrap() + c["val"].as_u64().unwrap() + c["test"].as_u64().unwrap(),
        40
    );
    assert_eq!(tj["train"]["steps"], 30);
    assert_eq!(tj["train"]["stop_reason"], "step_budget");
    assert!(tj["train"]["tokens"].as_u64().unwrap() > 0);
    let ev = read_json(&dir.join("eval.json"));
    assert_eq!(ev["format"], "slmforge-tune-eval-v1");
    let n = ev["evaluated"].as_u64().unwrap();
    assert!((1..=4).contains(&n));
    for m in ["base", "tuned"] {
        for k in [
            "exact_match",
            "text_exact",
            "json_valid",
            "tool_call_accuracy",
            "tool_name_accuracy",
        ] {
            let r = &ev[m][k];
            assert!(
                r.get("count").is_some() && r.get("of").is_some(),
                "{m}.{k}: {r}"
            );
        }
        assert_eq!(ev[m]["exact_match"]["of"].as_u64().unwrap(), n);
        assert!(ev[m]["mean_loss"].as_f64().unwrap() > 0.0);
        assert!(ev[m]["perplexity"].as_f64().unwrap() >= 1.0);
        assert!(ev[m]["decode_tokens_per_sec"].as_f64().unwrap() > 0.0);
    }
    // Training lowered the loss on calls it never saw.
    assert!(ev["tuned"]["mean_loss"].as_f64().unwrap() < ev["base"]["mean_loss"].as_f64().unwrap());
    let sm = read_json(&out.join("summary.json"));
    assert_eq!(sm["clusters"][0]["cluster"], 0);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| 0 | reviews | tuned |"), "{md}");
    // A second run into the same directory needs --resume; with it, the
    // finished cluster is skipped.
    let again = run_tune(&cfg, &fx.dataset, &out, None, Start::Fresh, None).unwrap_err();
    assert!(
        again.downcast_ref::<slmforge::util::UsageError>().is_some(),
        "{again:#}"
    );
    let before = adapter_bits(&dir);
    let res2 = run_tune(&cfg, &fx.dataset, &out, None, Start::Resume, None).unwrap();
    assert_eq!(res2.clusters[0].status, ClusterStatus::AlreadyDone);
    assert_eq!(res2.clusters[0].train.as_ref().unwrap().steps, 30);
    assert_eq!(
        adapter_bits(&dir),
        before,
        "a finished cluster is left alone"
    );
}

#[test]
fn resume_after_stop_or_crash_equals_uninterrupted_run() {
    let fx = fixture(0, 36);
    let cfg = tiny_cfg(&fx.model);
    // Uninterrupted.
    let a = fx.root.join("a");
    run_tune(&cfg, &fx.dataset, &a, None, Start::Fresh, None).unwrap();
    let a_dir = a.join("cluster-1");
    // Stopped after 5 updates (as Ctrl-C does), then resumed.
    let b = fx.root.join("b");
    let res = run_tune(&cfg, &fx.dataset, &b, None, Start::Fresh, Some(5)).unwrap();
    assert_eq!(res.outcome, Outcome::Interrupted);
    assert_eq!(res.clusters[0].status, ClusterStatus::Interrupted);
    let b_dir = b.join("cluster-1");
    assert!(b_dir.join("checkpoint/state.json").is_file());
    assert!(!b_dir.join("eval.json").exists());
    let st = read_json(&b_dir.join("checkpoint/state.json"));
    assert_eq!(st["step"], 5);
    let res = run_tune(&cfg, &fx.dataset, &b, None, Start::Resume, None).unwrap();
    assert_eq!(res.outcome, Outcome::Finished);
    assert!(
        adapter_bits(&a_dir) == adapter_bits(&b_dir),
        "resumed adapter differs"
    );
    // The same bytes too (the header metadata is written in sorted order).
    assert!(
        std::fs::read(a_dir.join("adapter.safetensors")).unwrap()
            == std::fs::read(b_dir.join("adapter.safetensors")).unwrap(),
        "resumed adapter.safetensors differs byte for byte"
    );
    let bytes = std::fs::read(a_dir.join("adapter.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let (f, l) = (
        header.find("\"format\"").unwrap(),
        header.find("\"lora_config\"").unwrap(),
    );
    assert!(f < l, "metadata keys not in sorted order: {header}");
    assert_eq!(
        log_entries(&a_dir),
        log_entries(&b_dir),
        "resumed log differs"
    );

    // A crash: the last durable checkpoint is step 8 but the process had run
    // on to step 11 (and logged it).
    let c = fx.root.join("c");
    run_tune(&cfg, &fx.dataset, &c, None, Start::Fresh, Some(8)).unwrap();
    let c_dir = c.join("cluster-1");
    let saved = fx.root.join("ck8");
    copy_dir(&c_dir.join("checkpoint"), &saved);
    run_tune(&cfg, &fx.dataset, &c, None, Start::Resume, Some(3)).unwrap();
    assert_eq!(read_json(&c_dir.join("checkpoint/state.json"))["step"], 11);
    std::fs::remove_dir_all(c_dir.join("checkpoint")).unwrap();
    copy_dir(&saved, &c_dir.join("checkpoint"));
    run_tune(&cfg, &fx.dataset, &c, None, Start::Resume, None).unwrap();
    assert!(
        adapter_bits(&a_dir) == adapter_bits(&c_dir),
        "adapter after crash + resume differs"
    );
    assert_eq!(
        log_entries(&a_dir),
        log_entries(&c_dir),
        "log after crash + resume differs"
    );

    // Other training settings refuse the checkpoint.
    let d = fx.root.join("d");
    run_tune(&cfg, &fx.dataset, &d, None, Start::Fresh, Some(5)).unwrap();
    let mut other = cfg.clone();
    other.lr = 5e-3;
    let err = run_tune(&other, &fx.dataset, &d, None, Start::Resume, None).unwrap_err();
    assert!(
        format!("{err:#}").contains("other training settings"),
        "{err:#}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn masked_tokens_contribute_no_loss() {
    let fx = fixture(12, 12);
    let cfg = tiny_cfg(&fx.model);
    let prepared = prepare(&cfg, &fx.dataset, None);
    let lm = slmforge::ml::lm::load(&fx.model, &Device::Cpu).unwrap();
    let exs: Vec<&data::Example> = prepared
        .iter()
        .flat_map(|p| p.data.examples.iter())
        .take(6)
        .collect();
    let limits = BatchLimits {
        max_examples: 3,
        max_tokens: 1 << 20,
    };
    let (loss, n) = tune::train::mean_loss(&lm.model, &exs, lm.tokenizer.pad_id(), limits).unwrap();
    // The same loss by hand from the logits at every position, answer
    // positions only; the mean over all positions is different.
    let (mut ans_sum, mut ans_n, mut all_sum, mut all_n) = (0f64, 0usize, 0f64, 0usize);
    for e in &exs {
        let ids = Tensor::new(e.ex.ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<Vec<f32>> = lm
            .model
            .forward(&ids, &[])
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for t in 1..e.ex.ids.len() {
            let row = &logits[t - 1];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let nll = lse - row[e.ex.ids[t] as usize] as f64;
            all_sum += nll;
            all_n += 1;
            if e.ex.answer_mask[t] {
                ans_sum += nll;
                ans_n += 1;
            }
        }
    }
    assert_eq!(n, ans_n);
    assert!(
        (loss - ans_sum / ans_n as f64).abs() < 1e-4,
        "{loss} vs {}",
        ans_sum / ans_n as f64
    );
    assert!(
        (all_sum / all_n as f64 - loss).abs() > 1e-2,
        "prompt positions would change the mean"
    );
    // Padding in a batch adds nothing: the batched loss is the token-weighted
    // mean of the single-example losses.
    let mut w = 0f64;
    for e in &exs {
        let (l, k) =
            tune::train::mean_loss(&lm.model, &[*e], lm.tokenizer.pad_id(), limits).unwrap();
        w += l * k as f64;
    }
    assert!((loss - w / n as f64).abs() < 1e-4);
    // The answer mask covers exactly the answer and the end-of-turn token.
    for e in &exs {
        let answer = lm.chat.render_answer(&e.answer);
        let ans_ids = lm.tokenizer.encode(&answer).unwrap();
        assert_eq!(e.ex.answer_len(), ans_ids.len() + 1);
        assert_eq!(*e.ex.ids.last().unwrap(), lm.chat.eot_id());
        assert!(e.ex.answer_mask[e.prompt_len()..].iter().all(|&m| m));
    }
}

#[test]
fn split_is_stable_when_another_cluster_grows() {
    let fx = fixture(30, 10);
    let cfg = tiny_cfg(&fx.model);
    let grown = fx.root.join("grown");
    make_dataset(&grown, 30, 60);
    let splits = |ds: &Path| -> (HashMap<String, Split>, String) {
        let p = prepare(&cfg, ds, Some(&[0]));
        let d = &p[0].data;
        let map = d
            .examples
            .iter()
            .map(|e| (e.call_id.clone(), e.split))
            .collect();
        (map, data::train_data_sha256(&d.split(Split::Train)))
    };
    let (a, ha) = splits(&fx.dataset);
    let (b, hb) = splits(&grown);
    assert_eq!(a.len(), 30);
    assert_eq!(a, b, "cluster 0's split changed when cluster 1 grew");
    assert_eq!(ha, hb);
    // The split is a function of the id alone, and follows the fractions.
    let f = SplitFractions {
        train: 0.8,
        val: 0.1,
    };
    let ids: Vec<String> = (0..4000).map(|i| format!("{i:016x}")).collect();
    let n_train = ids
        .iter()
        .filter(|id| split_of(id, &f) == Split::Train)
        .count();
    let n_val = ids
        .iter()
        .filter(|id| split_of(id, &f) == Split::Val)
        .count();
    assert!((3050..3350).contains(&n_train), "{n_train}");
    assert!((300..500).contains(&n_val), "{n_val}");
    assert_eq!(
        split_of("00000000000000ab", &f),
        split_of("00000000000000ab", &f)
    );
}

#[test]
fn length_batches_respect_limits_and_cover_every_example() {
    let lens: Vec<usize> = (0..50).map(|i| 10 + (i * 37) % 90).collect();
    let limits = BatchLimits {
        max_examples: 4,
        max_tokens: 200,
    };
    let plan = data::epoch_plan(lens.len(), &lens, limits, 2, 9);
    assert_eq!(
        plan,
        data::epoch_plan(lens.len(), &lens, limits, 2, 9),
        "deterministic"
    );
    assert_ne!(plan[0], plan[1], "epochs are reshuffled");
    for epoch in &plan {
        let mut seen: Vec<usize> = epoch.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        for b in epoch {
            let longest = b.iter().map(|&i| lens[i]).max().unwrap();
            assert!(
                b.len() <= 4 && (b.len() * longest <= 200 || b.len() == 1),
                "{b:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation rules.

fn tc(name: &str, args: Value) -> ToolCall {
    ToolCall {
        id: None,
        name: name.into(),
        arguments: args,
        arguments_valid: true,
    }
}

#[test]
fn argument_comparison_rules() {
    // (expected, generated, match?, the rule)
    let values = [
        (
            json!({"a": 1, "b": "x"}),
            json!({"b": " x ", "a": 1.0}),
            true,
            "key order, numbers by value, trimmed strings",
        ),
        (json!(20), json!(2e1), true, "numbers by value"),
        (json!(1), json!("1"), false, "no type coercion"),
        (json!("Lisbon"), json!("lisbon"), false, "case sensitive"),
        (json!([1, 2]), json!([2, 1]), false, "arrays in order"),
        (
            json!({"a": 1, "iban": null}),
            json!({"a": 1}),
            true,
            "missing == null",
        ),
        (
            json!({"o": {"x": null}}),
            json!({"o": {}}),
            true,
            "missing == null at any depth",
        ),
        (
            json!({"a": 1, "b": 2}),
            json!({"a": 1}),
            false,
            "a missing value is not a given one",
        ),
    ];
    for (want, got, ok, rule) in &values {
        assert_eq!(values_match(want, got), *ok, "{rule}: {want} vs {got}");
    }
    // Optional arguments: a schema default may be left out, a required one not.
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"},
        "unit": {"type": "string", "default": "c"}, "days": {"type": "integer", "default": 1}}, "required": ["city", "days"]});
    let arguments = [
        (
            json!({"city": "Oslo", "unit": "c", "days": 1}),
            json!({"city": "Oslo", "days": 1}),
            Some(&schema),
            true,
            "a default left out",
        ),
        (
            json!({"city": "Oslo", "days": 1}),
            json!({"city": "Oslo", "unit": "c", "days": 1}),
            Some(&schema),
            true,
            "a default given",
        ),
        (
            json!({"city": "Oslo", "unit": "f", "days": 1}),
            json!({"city": "Oslo", "days": 1}),
            Some(&schema),
            false,
            "not the default",
        ),
        (
            json!({"city": "Oslo", "days": 1}),
            json!({"city": "Oslo"}),
            Some(&schema),
            false,
            "required",
        ),
        (
            json!({"city": "Oslo", "unit": "c"}),
            json!({"city": "Oslo"}),
            None,
            false,
            "no schema, no default",
        ),
    ];
    for (want, got, schema, ok, rule) in &arguments {
        assert_eq!(
            arguments_match(want, got, *schema),
            *ok,
            "{rule}: {want} vs {got}"
        );
    }
    // Parallel calls in any order; names as a multiset.
    let none = |_: &str| None;
    let exp = vec![tc("a", json!({"x": 1})), tc("b", json!({}))];
    assert!(calls_match(
        &exp,
        &[tc("b", json!({})), tc("a", json!({"x": 1.0}))],
        &none
    ));
    assert!(!calls_match(&exp, &[tc("a", json!({"x": 1}))], &none));
    assert!(!calls_match(
        &exp,
        &[tc("a", json!({"x": 2})), tc("b", json!({}))],
        &none
    ));
    assert!(names_match(
        &exp,
        &[tc("b", json!({"z": 0})), tc("a", json!({}))]
    ));
    assert!(!names_match(
        &exp,
        &[tc("a", json!({})), tc("a", json!({}))]
    ));
    let mut broken = tc("a", json!("{x:"));
    broken.arguments_valid = false;
    assert!(
        !calls_match(&exp[..1], &[broken], &none),
        "unparsed arguments never match"
    );
}

#[test]
fn reply_scores_per_answer_kind() {
    let none = |_: &str| None;
    // Tool calls.
    let want = Response {
        tool_calls: vec![tc("get_weather", json!({"city": "Oslo", "days": 2}))],
        ..Default::default()
    };
    let rendered =
        r#"<tool_call>{"name":"get_weather","arguments":{"city":"Oslo","days":2}}</tool_call>"#;
    let s = score_reply(&want, "tool_call", rendered, rendered, &none);
    assert!(
        s.exact_match
            && s.text_exact
            && s.tool_call == Some(true)
            && s.tool_args_valid == Some(true)
    );
    let reordered = r#"<tool_call>{"name": "get_weather", "arguments": {"days": 2.0, "city": "Oslo"}}</tool_call>"#;
    let s = score_reply(&want, "tool_call", rendered, reordered, &none);
    assert!(
        s.exact_match && !s.text_exact,
        "parsed comparison, not text"
    );
    let wrong_arg =
        r#"<tool_call>{"name":"get_weather","arguments":{"city":"Oslo","days":3}}</tool_call>"#;
    let s = score_reply(&want, "tool_call", rendered, wrong_arg, &none);
    assert_eq!(
        (s.tool_name, s.tool_call, s.exact_match),
        (Some(true), Some(false), false)
    );
    let bad_json = r#"<tool_call>{"name":"get_weather","arguments":{"city":"Oslo",</tool_call>"#;
    let s = score_reply(&want, "tool_call", rendered, bad_json, &none);
    assert_eq!((s.tool_args_valid, s.tool_call), (Some(false), Some(false)));
    let s = score_reply(&want, "tool_call", rendered, "It is sunny in Oslo.", &none);
    assert_eq!((s.tool_name, s.tool_args_valid), (Some(false), Some(false)));
    // JSON answers: validity, parsed equality, text equality reported apart.
    let want = Response {
        content: Some(r#"{"total":12.5,"iban":null}"#.into()),
        ..Default::default()
    };
    let s = score_reply(
        &want,
        "json",
        r#"{"total":12.5,"iban":null}"#,
        r#"{"iban": null, "total": 12.50}"#,
        &none,
    );
    assert!(
        s.exact_match && s.json_valid == Some(true) && s.json_equal == Some(true) && !s.text_exact
    );
    let s = score_reply(
        &want,
        "json",
        r#"{"total":12.5,"iban":null}"#,
        r#"{"total":12.5,"iban":"#,
        &none,
    );
    assert_eq!(
        (s.json_valid, s.json_equal, s.exact_match),
        (Some(false), Some(false), false)
    );
    let s = score_reply(
        &want,
        "json",
        r#"{"total":12.5,"iban":null}"#,
        r#"{"total":13}"#,
        &none,
    );
    assert_eq!((s.json_valid, s.json_equal), (Some(true), Some(false)));
    // Text answers: trimmed equality.
    let want = Response {
        content: Some("positive".into()),
        ..Default::default()
    };
    assert!(score_reply(&want, "text", "positive", " positive\n", &none).exact_match);
    assert!(!score_reply(&want, "text", "positive", "Positive", &none).exact_match);
    // Aggregation keeps the counts.
    let scores = vec![
        score_reply(&want, "text", "positive", "positive", &none),
        score_reply(&want, "text", "positive", "negative", &none),
    ];
    let m = slmforge::tune::eval::aggregate(&scores);
    assert_eq!(
        (m.exact_match.count, m.exact_match.of, m.exact_match.rate),
        (1, 2, Some(0.5))
    );
    assert_eq!((m.json_valid.of, m.json_valid.rate), (0, None));
}

// ---------------------------------------------------------------------------
// CLI.

fn tune_cmd(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("tune")
        .args(args)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap()
}

#[test]
fn bad_inputs_exit_2_with_clear_messages() {
    let fx = fixture(12, 12);
    let model = fx.model.display().to_string();
    let out = fx.root.join("out").display().to_string();
    let check = |args: &[&str], needle: &str| {
        let o = tune_cmd(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    };
    let missing = fx.root.join("nope").display().to_string();
    check(
        &[&missing, "--out", &out, "--model", &model],
        "does not exist",
    );
    let empty = fx.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    check(
        &[empty.to_str().unwrap(), "--out", &out, "--model", &model],
        "slmforge ingest",
    );
    let no_clusters = fx.root.join("nc");
    std::fs::create_dir_all(&no_clusters).unwrap();
    std::fs::copy(
        fx.dataset.join("calls.parquet"),
        no_clusters.join("calls.parquet"),
    )
    .unwrap();
    check(
        &[
            no_clusters.to_str().unwrap(),
            "--out",
            &out,
            "--model",
            &model,
        ],
        "slmforge cluster",
    );
    let ds = fx.dataset.to_str().unwrap();
    check(
        &[
            ds,
            "--out",
            &out,
            "--model",
            &model,
            "--cluster",
            "7",
            "--min-examples",
            "5",
        ],
        "unknown cluster id 7",
    );
    check(
        &[
            ds,
            "--out",
            &out,
            "--model",
            &model,
            "--cluster",
            "-1",
            "--min-examples",
            "5",
        ],
        "outliers",
    );
    check(&[ds, "--out", &out, "--model", &model], "at least 50 calls");
    check(
        &[ds, "--out", &out, "--model", &model, "--cluster", "0"],
        "fewer than the minimum",
    );
    check(
        &[
            ds,
            "--out",
            &out,
            "--model",
            "no-such-model",
            "--min-examples",
            "5",
        ],
        "no-such-model",
    );
    check(
        &[
            ds,
            "--out",
            &out,
            "--model",
            &model,
            "--min-examples",
            "5",
            "--lr",
            "0",
        ],
        "learning rate",
    );
    check(
        &[
            ds,
            "--out",
            &out,
            "--model",
            &model,
            "--min-examples",
            "5",
            "--split",
            "0.9,0.3",
        ],
        "split",
    );
    // A plan naming an unknown cluster.
    std::fs::write(
        fx.dataset.join("plan.json"),
        r#"{"clusters": [{"id": 5, "decision": "tune"}]}"#,
    )
    .unwrap();
    check(
        &[ds, "--out", &out, "--model", &model, "--min-examples", "5"],
        "names cluster 5",
    );
    std::fs::remove_file(fx.dataset.join("plan.json")).unwrap();
    // A broken clusters.json is an error, not silently ignored; one of
    // another schema version says so.
    let summary = fx.dataset.join("clusters.json");
    let good = std::fs::read(&summary).unwrap();
    let dry = [
        ds,
        "--out",
        &out,
        "--model",
        &model,
        "--min-examples",
        "5",
        "--dry-run",
    ];
    std::fs::write(&summary, b"{\"schema_version\": 1, \"clusters\": [").unwrap();
    check(&dry, "clusters.json");
    std::fs::write(&summary, br#"{"schema_version": 99, "clusters": []}"#).unwrap();
    check(&dry, "schema version 99");
    std::fs::write(&summary, good).unwrap();
}

#[test]
fn cli_run_then_generate_with_the_adapter() {
    let fx = fixture(0, 24);
    let ds = fx.dataset.display().to_string();
    let model = fx.model.display().to_string();
    let out = fx.root.join("run");
    // plan.json chooses the cluster.
    std::fs::write(
        fx.dataset.join("plan.json"),
        r#"{"clusters": [{"id": 1, "decision": "tune"}, {"id": 0, "decision": "keep_llm"}]}"#,
    )
    .unwrap();
    let o = tune_cmd(&[
        &ds,
        "--out",
        out.to_str().unwrap(),
        "--model",
        &model,
        "--max-steps",
        "3",
        "--rank",
        "2",
        "--min-examples",
        "5",
        "--max-test-calls",
        "2",
        "--eval-max-new-tokens",
        "4",
        "--time-budget",
        "0",
        "--max-len",
        "1024",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("cluster 1"), "{err}");
    let adir = out.join("cluster-1");
    assert!(adir.join("eval.json").is_file());
    assert_eq!(read_json(&out.join("tune_config.json"))["lora"]["rank"], 2);
    let gen = |adapter: Option<&Path>| {
        let mut c = Command::new(common::bin());
        c.args([
            "generate",
            "--model",
            &model,
            "--prompt",
            "weather in Oslo",
            "--max-tokens",
            "6",
            "--json",
        ]);
        if let Some(a) = adapter {
            c.arg("--adapter").arg(a);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["text"].clone()
    };
    let with = gen(Some(&adir));
    assert!(with.is_string());
    // prompt.json holds the cluster's usual context; generate uses it with
    // the adapter unless told otherwise.
    let p = read_json(&adir.join("prompt.json"));
    assert_eq!(p["system"], "Use the tool.");
    assert_eq!(p["tools"][0]["name"], "get_weather");
    assert_eq!(p["calls"], p["calls_with_this_context"]);
    let gen_err = |extra: &[&str]| {
        let o = Command::new(common::bin())
            .args(["generate", "--model", &model, "--prompt", "weather in Oslo"])
            .args(["--max-tokens", "2", "--adapter"])
            .arg(&adir)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    assert!(gen_err(&[]).contains("using the cluster's system prompt and 1 tools"));
    assert!(!gen_err(&["--no-cluster-prompt"]).contains("using the cluster's"));
    assert!(!gen_err(&["--system", "Be brief."]).contains("using the cluster's"));
    // An adapter for another base model is refused.
    let other = fx.root.join("other.gguf");
    tiny_gguf(&other, 12);
    let o = Command::new(common::bin())
        .args([
            "generate",
            "--model",
            other.to_str().unwrap(),
            "--prompt",
            "x",
            "--max-tokens",
            "2",
            "--adapter",
        ])
        .arg(&adir)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("different base model"));
}

// ---------------------------------------------------------------------------
// Real model.

#[test]
fn real_smollm2_tunes_a_few_steps_on_the_sample() {
    let Some(model) = common::real_file(
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        "real_smollm2_tunes_a_few_steps_on_the_sample",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample");
    let mut icfg = IngestConfig::new(
        RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        KeySource::File,
    );
    icfg.progress = false;
    ingest::run(&icfg, std::slice::from_ref(&sample), &ds).unwrap();
    let labels = clusters_from_labels(&ds, &sample.join("calls.labels.jsonl")).unwrap();
    assert_eq!(labels.len(), 10);
    let sentiment = *labels
        .iter()
        .find(|(_, v)| *v == "sentiment_classification")
        .unwrap()
        .0;
    let mut cfg = TuneConfig {
        base_model: model.display().to_string(),
        max_steps: Some(2),
        batch_size: 2,
        time_budget_secs: None,
        max_val_calls: 2,
        ..Default::default()
    };
    cfg.eval.max_test_calls = 4;
    let out = tmp.path().join("run");
    let res = run_tune(&cfg, &ds, &out, Some(&[sentiment]), Start::Fresh, None).unwrap();
    let r = &res.clusters[0];
    assert_eq!(r.status, ClusterStatus::Tuned);
    assert_eq!(r.counts.calls, 300);
    let ev = r.eval.as_ref().unwrap();
    assert_eq!(ev.evaluated, 4);
    assert!(
        ev.tuned.mean_loss.unwrap() < ev.base.mean_loss.unwrap(),
        "two steps lower the answer loss"
    );
    assert!(
        ev.max_new_tokens <= 2 + 16,
        "decode cap from the longest answer"
    );
}

// ---------------------------------------------------------------------------
// Static prompt pieces and pruning.

/// A long system prompt (well over `prune_min_chars`).
fn long_system(variant: usize) -> String {
    let mut s =
        "You are the weather desk of a travel agency. Answer only with a call to get_weather. "
            .repeat(14);
    if variant > 0 {
        s.push_str(&format!(" Desk {variant}."));
    }
    s
}

fn desk_line(i: usize, system: &str, tool_desc: &str) -> Value {
    let c = CITIES[i % CITIES.len()];
    let args = json!({"city": c, "days": 1 + i % 3}).to_string();
    json!({"request": {"messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": format!("forecast {i} for {c}")}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": tool_desc,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            "finish_reason": "tool_calls"}]}})
}

/// Three workloads: 0 identical prompts, 1 near-identical (the system prompt
/// differs in 40% of the calls), 2 a different system prompt on every call.
fn static_dataset(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("logs.jsonl");
    let mut f = std::fs::File::create(&log).unwrap();
    for i in 0..40 {
        writeln!(f, "{}", desk_line(i, &long_system(0), "Weather for a city")).unwrap();
    }
    for i in 100..130 {
        let v = if i % 5 < 2 { i } else { 0 };
        let sys = format!("Near: {}", long_system(v));
        writeln!(f, "{}", desk_line(i, &sys, "Weather by city")).unwrap();
    }
    for i in 200..230 {
        writeln!(
            f,
            "{}",
            desk_line(
                i,
                &format!("Unique desk {i}: {}", long_system(i)),
                "Weather"
            )
        )
        .unwrap();
    }
    // Few-shot: the same example exchange before every real request.
    for i in 300..330 {
        let mut v = desk_line(i, "Few-shot desk. Call get_weather.", "Weather for a city");
        let msgs = v["request"]["messages"].as_array_mut().unwrap();
        msgs.insert(
            1,
            json!({"role": "user", "content": "example: forecast for Oslo"}),
        );
        msgs.insert(
            2,
            json!({"role": "assistant", "content": "example answer: get_weather(Oslo)"}),
        );
        writeln!(f, "{v}").unwrap();
    }
    drop(f);
    let mut cfg = IngestConfig::new(
        RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        KeySource::File,
    );
    cfg.progress = false;
    ingest::run(&cfg, &[log], dir).unwrap();
    let calls = slmforge::artifact::calls::read_calls(dir).unwrap();
    let assignments: Vec<(String, i32)> = calls
        .iter()
        .map(|c| {
            let s = c.messages[0].content.as_deref().unwrap_or("");
            let k = if s.starts_with("Near") {
                1
            } else if s.starts_with("Unique") {
                2
            } else if s.starts_with("Few-shot") {
                3
            } else {
                0
            };
            (c.id(), k)
        })
        .collect();
    let labels: BTreeMap<i32, String> = [
        (0, "same".to_string()),
        (1, "near".to_string()),
        (2, "none".to_string()),
        (3, "few-shot".to_string()),
    ]
    .into();
    write_clusters(dir, &assignments, &labels).unwrap();
}

fn cluster_calls(dir: &Path, k: i32) -> Vec<slmforge::call::RedactedCall> {
    let rows = slmforge::artifact::clusters::read_assignment_rows(dir).unwrap();
    let ids: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| r.cluster == k)
        .map(|r| r.call_id.clone())
        .collect();
    slmforge::artifact::calls::read_calls(dir)
        .unwrap()
        .into_iter()
        .filter(|c| ids.contains(&c.id()))
        .collect()
}

#[test]
fn static_pieces_are_detected_identical_near_identical_and_none() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    static_dataset(&ds);
    let parts = |k| {
        let calls = cluster_calls(&ds, k);
        let refs: Vec<&slmforge::call::RedactedCall> = calls.iter().collect();
        data::static_parts(&refs, 0.8)
    };
    let same = parts(0);
    let sys = same.system.as_ref().unwrap();
    assert!(sys.is_static && sys.share == 1.0);
    assert_eq!(
        sys.sha256,
        slmforge::ml::lm::prune::text_sha256(&long_system(0))
    );
    assert_eq!(same.tools.len(), 1);
    assert!(same.tools[0].is_static && same.tools[0].share == 1.0);
    assert!(
        same.mean_static_chars > 1000.0,
        "{}",
        same.mean_static_chars
    );
    let mut p = same.clone();
    let rule = data::prune_rule(&mut p, tune::Prune::Auto, 1000, "cluster-0").unwrap();
    assert!(p.pruned);
    assert_eq!(rule.system_sha256.as_deref(), Some(sys.sha256.as_str()));
    assert_eq!(rule.tools.keys().collect::<Vec<_>>(), ["get_weather"]);
    let mut p = same.clone();
    assert!(data::prune_rule(&mut p, tune::Prune::Off, 1000, "cluster-0").is_none());

    // Near-identical: the system prompt is the same in 60% of the calls
    // (below the 0.8 threshold); the tool is identical everywhere.
    let near = parts(1);
    let sys = near.system.as_ref().unwrap();
    assert!(!sys.is_static, "{sys:?}");
    assert!((sys.share - 0.6).abs() < 1e-9, "{}", sys.share);
    assert!(near.tools[0].is_static);
    let mut p = near.clone();
    let rule = data::prune_rule(&mut p, tune::Prune::On, 1000, "cluster-1").unwrap();
    assert!(
        rule.system_sha256.is_none(),
        "a non-static system prompt is kept"
    );

    // None: every system prompt differs.
    let none = parts(2);
    assert!(!none.system.as_ref().unwrap().is_static);
    let mut p = none.clone();
    assert!(data::prune_rule(&mut p, tune::Prune::Auto, 1000, "cluster-2").is_none());
    assert!(
        !p.pruned && p.decision.starts_with("auto"),
        "{}",
        p.decision
    );
    assert!(none.leading.is_none());

    // Leading messages: the repeated example exchange is found (2 messages)
    // and pruning removes it, keeping the real request.
    let few = parts(3);
    let lead = few.leading.as_ref().expect("a static lead");
    assert_eq!(lead.messages, Some(2));
    assert_eq!(lead.share, 1.0);
    let mut p = few.clone();
    let rule = data::prune_rule(&mut p, tune::Prune::On, 1000, "cluster-3").unwrap();
    let calls = cluster_calls(&ds, 3);
    let pr = rule.apply(&calls[0].messages, &calls[0].tools);
    assert_eq!(pr.leading, 2);
    assert_eq!(pr.messages.len(), 2);
    assert!(pr.messages[1]
        .content
        .as_deref()
        .unwrap()
        .starts_with("forecast"));
}

#[test]
fn pruned_training_prompts_are_what_generation_rebuilds_and_overlong_calls_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    static_dataset(&ds);
    let model = tmp.path().join("tiny.gguf");
    tiny_gguf(&model, 11);
    let mut cfg = tiny_cfg(&model);
    cfg.max_steps = Some(2);
    cfg.min_examples = 5;
    let run = tmp.path().join("run");
    run_tune(&cfg, &ds, &run, Some(&[0]), Start::Fresh, None).unwrap();
    let prompt =
        slmforge::artifact::adapter::read_prompt(&run.join("cluster-0/prompt.json")).unwrap();
    let rule = prompt.prune.clone().expect("cluster 0 trains pruned");
    assert!(prompt.static_parts.pruned);
    let tj: Value = read_json(&run.join("cluster-0/tune.json"));
    assert_eq!(tj["counts"]["pruned"], 40);

    // The training prompt of each call is what applying the recorded rule
    // to the call rebuilds (as generate, export and route do).
    let prepared = prepare(&cfg, &ds, Some(&[0]));
    let lm = slmforge::ml::lm::load(&model, &Device::Cpu).unwrap();
    let calls = cluster_calls(&ds, 0);
    let by_id: HashMap<String, &slmforge::call::RedactedCall> =
        calls.iter().map(|c| (c.id(), c)).collect();
    let full_len = lm
        .prompt_ids(&calls[0].messages, &calls[0].tools)
        .unwrap()
        .len();
    for e in &prepared[0].data.examples {
        let c = by_id[&e.call_id];
        let p = rule.apply(&c.messages, &c.tools);
        assert!(p.system && p.tools_pruned == 1);
        assert_eq!(
            lm.prompt_ids(&p.messages, &p.tools).unwrap(),
            e.prompt_ids()
        );
        assert!(
            e.prompt_len() * 2 < full_len,
            "pruned {} vs full {full_len}",
            e.prompt_len()
        );
    }

    // Unpruned, the same calls do not fit a small max_len: they are dropped
    // and counted, never cut inside the system prompt or the tools.
    let mut small = cfg.clone();
    small.prune = tune::Prune::Off;
    small.max_len = 120;
    let p = prepare(&small, &ds, Some(&[0]));
    assert_eq!(p[0].data.counts.dropped_overlong, 40);
    assert_eq!(p[0].data.counts.examples, 0);
}
