//! Tests of the select stage (src/select, src/cli/select.rs): the choice
//! rule, eligibility, the measurement cache, and `slmforge select` on a tiny
//! dataset with two tiny models, whose plan.json `tune` follows.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use slmforge::artifact::adapter::{ModelMetrics, Rate};
use slmforge::artifact::calls::CallRow;
use slmforge::artifact::plan::{read_plan, write_plan, PlanCluster, PlanFile, PLAN_FORMAT};
use slmforge::select::choose::{
    self, Candidate, CandidateResult, ChooseConfig, ClusterChoice, Measured, Measurer,
};
use slmforge::select::tune_targets;

use crate::common;

fn result(model: &str, params: u64, score: Option<f64>) -> CandidateResult {
    CandidateResult {
        model: model.into(),
        params,
        context_length: 8192,
        skipped: score.is_none().then(|| "not installed".to_string()),
        zero_shot: None,
        pilot: None,
        pilot_steps: 0,
        pilot_capped: false,
        score,
        cached: false,
        serving_usd_per_mtok: None,
    }
}

fn choice(cands: Vec<CandidateResult>) -> ClusterChoice {
    ClusterChoice {
        cluster: 3,
        calls: 100,
        eligible: true,
        reason: String::new(),
        p95_tokens: 500,
        chosen: None,
        reached_target: false,
        candidates: cands,
    }
}

#[test]
fn the_smallest_candidate_reaching_the_target_is_chosen() {
    // smallest first, as `candidates` orders them
    let mut c = choice(vec![
        result("tiny", 100, Some(0.5)),
        result("small", 200, Some(0.85)),
        result("big", 900, Some(0.95)),
    ]);
    choose::pick(&mut c, 0.8);
    assert_eq!(c.chosen.as_deref(), Some("small"));
    assert!(c.reached_target, "{}", c.reason);
    // none reaches it: the best, flagged; ties go to the smaller
    let mut c = choice(vec![
        result("tiny", 100, Some(0.6)),
        result("absent", 150, None),
        result("small", 200, Some(0.6)),
        result("big", 900, Some(0.4)),
    ]);
    choose::pick(&mut c, 0.8);
    assert_eq!(c.chosen.as_deref(), Some("tiny"));
    assert!(!c.reached_target);
    assert!(c.reason.contains("no candidate reaches"), "{}", c.reason);
    // nothing measured: no choice, and the reason lists why
    let mut c = choice(vec![result("absent", 150, None)]);
    choose::pick(&mut c, 0.8);
    assert_eq!(c.chosen, None);
    assert!(c.reason.contains("absent (not installed)"), "{}", c.reason);
}

/// A measurer that scores by a table and counts its calls.
struct Fake {
    calls: usize,
    rate: HashMap<(String, i32), f64>,
}

fn metrics(rate: f64) -> ModelMetrics {
    let n = 10;
    let k = (rate * n as f64).round() as usize;
    let mut m: ModelMetrics = serde_json::from_value(serde_json::json!({
        "exact_match": {"count": 0, "of": 0, "rate": null},
        "text_exact": {"count": 0, "of": 0, "rate": null},
        "json_valid": {"count": 0, "of": 0, "rate": null},
        "json_equal": {"count": 0, "of": 0, "rate": null},
        "tool_name_accuracy": {"count": 0, "of": 0, "rate": null},
        "tool_call_accuracy": {"count": 0, "of": 0, "rate": null},
        "tool_args_valid": {"count": 0, "of": 0, "rate": null},
        "hit_max_tokens": 0, "mean_loss": null, "perplexity": null, "loss_tokens": 0,
        "prompt_tokens": 0, "generated_tokens": 0, "prefill_secs": 0.0, "decode_secs": 0.0,
        "prefill_tokens_per_sec": 0.0, "decode_tokens_per_sec": 0.0, "latency_ms_per_call": 0.0
    }))
    .unwrap();
    m.exact_match = Rate {
        count: k,
        of: n,
        rate: Some(k as f64 / n as f64),
    };
    m
}

impl Measurer for Fake {
    fn measure(
        &mut self,
        _cfg: &ChooseConfig,
        cand: &Candidate,
        _path: &Path,
        clusters: &[(i32, Vec<String>)],
    ) -> anyhow::Result<Vec<Measured>> {
        self.calls += clusters.len();
        Ok(clusters
            .iter()
            .map(|(k, _)| Measured {
                zero_shot: Some(metrics(self.rate[&(cand.id.clone(), *k)])),
                pilot: None,
                pilot_steps: 0,
                pilot_capped: false,
            })
            .collect())
    }
}

fn rows(n: usize, prefix: &str, tokens: u64) -> Vec<CallRow> {
    (0..n)
        .map(|i| CallRow {
            call_id: format!("{prefix}{i:03}"),
            prompt_tokens: Some(tokens),
            completion_tokens: Some(10),
            ..Default::default()
        })
        .collect()
}

#[test]
fn eligibility_choice_and_the_measurement_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, big) = (tmp.path().join("small.gguf"), tmp.path().join("big.gguf"));
    std::fs::write(&small, b"small model bytes").unwrap();
    std::fs::write(&big, b"big model bytes").unwrap();
    let cand = |id: &str, params, ctx, path: Option<PathBuf>, family: &str| Candidate {
        id: id.into(),
        params,
        family: family.into(),
        context_length: ctx,
        path,
    };
    let cands = vec![
        cand("small", 100, 1024, Some(small), "llama"),
        cand("absent", 150, 8192, None, "qwen2"),
        cand("odd", 160, 8192, Some(big.clone()), "phi3"),
        cand("big", 900, 8192, Some(big), "gemma3"),
    ];
    // cluster 0: 60 short calls; 1: 60 long calls (p95 2010 > small's 1024);
    // 2: 10 calls; -1: outliers
    let mut all = rows(60, "a", 100);
    all.extend(rows(60, "b", 2000));
    all.extend(rows(10, "c", 100));
    all.extend(rows(70, "o", 100));
    let by_id: HashMap<String, &CallRow> = all.iter().map(|r| (r.call_id.clone(), r)).collect();
    let mut members: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in &all {
        let k = match &r.call_id[..1] {
            "a" => 0,
            "b" => 1,
            "c" => 2,
            _ => -1,
        };
        members.entry(k).or_default().push(r.call_id.clone());
    }
    let rate: HashMap<(String, i32), f64> = [
        (("small".to_string(), 0), 0.9),
        (("big".to_string(), 0), 1.0),
        (("big".to_string(), 1), 0.7),
    ]
    .into();
    let cfg = ChooseConfig::default();
    let mut fake = Fake { calls: 0, rate };
    let run =
        |fake: &mut Fake| choose::choose(&cfg, tmp.path(), &members, &by_id, &cands, fake).unwrap();
    let first = run(&mut fake);
    assert_eq!(fake.calls, 3, "small on 0; big on 0 and 1");
    let by: HashMap<i32, &ClusterChoice> = first.iter().map(|c| (c.cluster, c)).collect();
    assert!(!by[&-1].eligible && by[&-1].reason.contains("outlier"));
    assert!(!by[&2].eligible && by[&2].reason.contains("fewer than the minimum of 50"));
    assert_eq!(by[&0].chosen.as_deref(), Some("small"));
    assert!(by[&0].reached_target);
    assert_eq!(by[&1].p95_tokens, 2010);
    assert_eq!(
        by[&1].chosen.as_deref(),
        Some("big"),
        "small's context is too short"
    );
    assert!(!by[&1].reached_target, "0.7 < 0.8: flagged");
    let skipped: HashMap<&str, &str> = by[&1]
        .candidates
        .iter()
        .filter_map(|c| c.skipped.as_deref().map(|s| (c.model.as_str(), s)))
        .collect();
    assert!(skipped["small"].contains("exceeds its context of 1024"));
    assert!(skipped["absent"].contains("not installed"));
    assert!(skipped["odd"].contains("phi3 is not supported"));
    // a second run takes every measurement from the cache, same choices
    let second = run(&mut fake);
    assert_eq!(fake.calls, 3, "nothing measured again");
    let strip = |v: &[ClusterChoice]| {
        let mut v = v.to_vec();
        v.iter_mut()
            .flat_map(|c| c.candidates.iter_mut())
            .for_each(|c| c.cached = false);
        v
    };
    assert_eq!(strip(&first), strip(&second));
    assert!(second
        .iter()
        .flat_map(|c| &c.candidates)
        .filter(|c| c.score.is_some())
        .all(|c| c.cached));
}

#[test]
fn tune_follows_a_typed_plan_with_one_cluster_on_each_of_two_models() {
    let f = crate::tune::fixture(60, 60);
    let qwen = f.root.join("tiny-qwen3.gguf");
    common::tiny_gguf(
        &qwen,
        &common::TinyGguf {
            seed: 3,
            merges: crate::lm::LM_MERGES,
            tied: true,
            template: None,
            pre: "smollm",
            arch: "qwen3",
            context_length: 256,
            add_bos: None,
            sliding_window: 512,
        },
    );
    let cluster = |id, model: &Path| PlanCluster {
        id,
        decision: "tune".into(),
        base_model: Some(model.display().to_string()),
        calls: 60,
        p95_tokens: 100,
        reason: "test".into(),
        reached_target: true,
        candidates: vec![],
    };
    write_plan(
        &f.dataset,
        &PlanFile {
            format: PLAN_FORMAT.into(),
            settings: serde_json::json!({}),
            clusters: vec![cluster(0, &f.model), cluster(1, &qwen)],
            serving: None,
            cost: None,
        },
    )
    .unwrap();
    let plan = read_plan(&f.dataset).unwrap().unwrap();
    assert_eq!(plan.len(), 2);
    let targets = tune_targets(&f.dataset, None, "smollm2-135m", 50).unwrap();
    let bases: Vec<(i32, String)> = targets
        .iter()
        .map(|t| (t.cluster, t.base_model.clone()))
        .collect();
    assert_eq!(
        bases,
        [
            (0, f.model.display().to_string()),
            (1, qwen.display().to_string())
        ]
    );
    // and `tune --dry-run` encodes each cluster with its own model
    let out = std::process::Command::new(common::bin())
        .args(["tune", f.dataset.to_str().unwrap(), "--out"])
        .arg(f.root.join("run"))
        .arg("--dry-run")
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("tiny-qwen3.gguf"), "{text}");
}

#[test]
fn select_writes_a_plan_that_tune_follows_and_reruns_from_the_cache() {
    let f = crate::tune::fixture(60, 60);
    // a catalogue of two tiny models installed in a models dir of their own
    let models = f.root.join("models");
    for (dir, arch, seed) in [("tiny-llama", "llama", 11u64), ("tiny-qwen3", "qwen3", 3)] {
        std::fs::create_dir_all(models.join(dir)).unwrap();
        common::tiny_gguf(
            &models.join(dir).join("model.gguf"),
            &common::TinyGguf {
                seed,
                merges: crate::lm::LM_MERGES,
                tied: true,
                template: None,
                pre: "smollm",
                arch,
                context_length: 2048,
                add_bos: None,
                sliding_window: 512,
            },
        );
    }
    let entry = |id: &str, dir: &str, family: &str, params: u64| {
        format!(
            r#"
[[model]]
id = "{id}"
role = "base-slm"
description = "tiny"
family = "{family}"
params = {params}
context_length = 2048
layers = 2
hidden = 64
intermediate = 128
heads = 4
kv_heads = 2
head_dim = 16
tools_template = false
licence = "test"
licence_url = "https://example.com"
hf_repo = "example/{id}"
dir = "{dir}"
optional = true
quant = "f16"

[[model.file]]
dest = "model.gguf"
"#
        )
    };
    let catalog = f.root.join("models.toml");
    std::fs::write(
        &catalog,
        format!(
            "[bytes_per_param]\nf16 = 2.0\nq8_0 = 1.0625\n{}{}",
            entry("tiny-a", "tiny-llama", "llama", 1000),
            entry("tiny-b", "tiny-qwen3", "qwen3", 2000)
        ),
    )
    .unwrap();
    // No --hardware: the hardware config's `available` decides.
    let hw_config = f.root.join("hardware.toml");
    std::fs::write(
        &hw_config,
        slmforge::select::serving::DEFAULT_HARDWARE_TOML
            .replace("available = \"cpu:16\"", "available = \"cpu:4\""),
    )
    .unwrap();
    let select = || {
        std::process::Command::new(common::bin())
            .args(["select", f.dataset.to_str().unwrap(), "--catalog"])
            .arg(&catalog)
            .args(["--val-calls", "3", "--hardware-config"])
            .arg(&hw_config)
            .env("SLMFORGE_MODELS", &models)
            .env("SLMFORGE_NO_PROGRESS", "1")
            .output()
            .unwrap()
    };
    let out = select();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = std::fs::read(f.dataset.join("plan.json")).unwrap();
    let plan: PlanFile = serde_json::from_slice(&first).unwrap();
    assert_eq!(plan.format, PLAN_FORMAT);
    assert_eq!(plan.settings["hardware"], "cpu:4");
    assert_eq!(plan.clusters.len(), 2);
    for c in &plan.clusters {
        assert_eq!(c.decision, "tune", "{c:?}");
        // random tiny models score 0: the smaller one, flagged (named by
        // its path: the built-in catalogue does not know it)
        assert!(
            c.base_model
                .as_deref()
                .unwrap()
                .ends_with("tiny-llama/model.gguf"),
            "{c:?}"
        );
        assert!(!c.reached_target);
        assert_eq!(c.candidates.len(), 2);
        assert!(c
            .candidates
            .iter()
            .all(|r| r.zero_shot.is_some() && !r.cached));
        // the larger model costs more per generated token on the same device
        let usd: Vec<f64> = c
            .candidates
            .iter()
            .map(|r| r.serving_usd_per_mtok.unwrap())
            .collect();
        assert!(usd[0] > 0.0 && usd[1] > usd[0], "{usd:?}");
    }
    let serving = plan.serving.as_ref().unwrap();
    assert_eq!(
        serving["deployments"].as_array().unwrap().len(),
        1,
        "one base, two adapters"
    );
    assert!(plan.cost.as_ref().unwrap()["llm_monthly_usd"].is_number());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tiny-a (!)") && text.contains("cost per month"),
        "{text}"
    );
    // again: every measurement from the cache, the same plan bytes
    let out = select();
    assert!(out.status.success());
    let again = std::fs::read(f.dataset.join("plan.json")).unwrap();
    let plan2: PlanFile = serde_json::from_slice(&again).unwrap();
    assert!(plan2
        .clusters
        .iter()
        .flat_map(|c| &c.candidates)
        .all(|r| r.cached));
    let uncached = |p: &PlanFile| {
        let mut p = p.clone();
        p.clusters
            .iter_mut()
            .flat_map(|c| c.candidates.iter_mut())
            .for_each(|r| r.cached = false);
        serde_json::to_string(&p).unwrap()
    };
    assert_eq!(uncached(&plan), uncached(&plan2), "deterministic");
    // a pilot: a few LoRA steps before scoring, recorded per candidate
    let out = std::process::Command::new(common::bin())
        .args(["select", f.dataset.to_str().unwrap(), "--catalog"])
        .arg(&catalog)
        .args([
            "--val-calls",
            "2",
            "--hardware",
            "cpu:4",
            "--pilot-steps",
            "2",
        ])
        .env("SLMFORGE_MODELS", &models)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan3: PlanFile =
        serde_json::from_slice(&std::fs::read(f.dataset.join("plan.json")).unwrap()).unwrap();
    for r in plan3.clusters.iter().flat_map(|c| &c.candidates) {
        assert!(
            r.pilot.is_some() && r.pilot_steps == 2 && !r.pilot_capped && !r.cached,
            "{r:?}"
        );
    }
    // tune follows the plan: the catalogue id resolves in the models dir
    let out = std::process::Command::new(common::bin())
        .args(["tune", f.dataset.to_str().unwrap(), "--out"])
        .arg(f.root.join("run"))
        .arg("--dry-run")
        .env("SLMFORGE_MODELS", &models)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
}
