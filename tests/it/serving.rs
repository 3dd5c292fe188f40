//! The serving plan of the select stage (src/select/serving.rs): hardware
//! specs, the memory estimate of a deployment against a hand-computed
//! example, packing (splitting, multi-LoRA sharing, what fits nowhere and
//! why), the cost summary and determinism. No model is loaded.

use slmforge::select::serving::{
    adapter_bytes, concurrency, cost_summary, estimate_memory, kv_bytes_per_token, llm_cost,
    parse_hardware, plan_deployments, ClusterLoad, HardwareConfig, LlmUsage, ModelSpec,
    ServingRequest,
};
use slmforge::util::UsageError;

/// A config with round figures, so that the examples below can be worked
/// out by hand: a 16 GiB device at 1 USD/hour whose single stream of a
/// 1-billion-parameter model decodes 13.5 tok/s, and a CPU.
const TEST_CONFIG: &str = r#"
[[device]]
name = "TEST-16GB"
memory_gib = 16.0
hourly_usd = 1.0
decode_tokens_per_sec_per_gparam = 13.5
prefill_tokens_per_sec_per_gparam = 13500.0
batch_factor = 10.0

[[device]]
name = "cpu"
cpu = true
memory_gib = 4.0
hourly_usd = 0.05
decode_tokens_per_sec_per_gparam = 1.7
prefill_tokens_per_sec_per_gparam = 20.0
batch_factor = 4.2

[[price]]
model = "default"
input_per_mtok = 1.0
output_per_mtok = 4.0

[[price]]
model = "gpt-4o-mini"
input_per_mtok = 0.15
output_per_mtok = 0.60

[overhead]
gpu_runtime_gib = 1.0
cpu_runtime_gib = 0.25
kv_dtype_bytes = 2
adapter_dtype_bytes = 2
adapter_targets = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
hours_per_month = 730.0
"#;

const GIB: u64 = 1 << 30;

fn test_config() -> HardwareConfig {
    HardwareConfig::from_toml(TEST_CONFIG).unwrap()
}

/// SmolLM2-135M's figures (pipelines/models.toml) at Q8_0.
fn smollm2() -> ModelSpec {
    ModelSpec {
        id: "smollm2-135m".into(),
        params: 134_515_008,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        hidden: 576,
        intermediate: 1536,
        context_length: 8192,
        bytes_per_param: 1.0625,
    }
}

/// A 1-billion-parameter model in f16 with a long context: 4 GiB of KV
/// cache per 131,072-token sequence.
fn big_1b() -> ModelSpec {
    ModelSpec {
        id: "big-1b".into(),
        params: 1_000_000_000,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        head_dim: 64,
        hidden: 2048,
        intermediate: 8192,
        context_length: 131_072,
        bytes_per_param: 2.0,
    }
}

fn load(cluster: i32, p95: u64, calls_per_min: f64, completion: f64, rank: u64) -> ClusterLoad {
    ClusterLoad {
        cluster,
        p95_context_tokens: p95,
        peak_calls_per_min: calls_per_min,
        mean_completion_tokens: completion,
        mean_prompt_tokens: 500.0,
        lora_rank: rank,
    }
}

fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UsageError>().is_some()
}

#[test]
fn serving_hardware_specs_parse() {
    let cfg = HardwareConfig::default();
    // what select plans on without --hardware
    assert_eq!(cfg.available.as_deref(), Some("cpu:16"));
    let d = parse_hardware("2xL4-24GB, 1xA100-80GB", &cfg).unwrap();
    let ids: Vec<&str> = d.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["L4-24GB#0", "L4-24GB#1", "A100-80GB#0"]);
    assert_eq!(d[2].memory_bytes, 80 * GIB);
    assert!(!d[0].cpu && d[0].cores == 1);

    // Plain names, any case, and several items of one kind numbered on.
    let d = parse_hardware("a100-80gb,L4-24GB,2Xl4-24gb", &cfg).unwrap();
    let ids: Vec<&str> = d.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["A100-80GB#0", "L4-24GB#0", "L4-24GB#1", "L4-24GB#2"]);

    // cpu:16 takes the config's 4 GiB and price per core.
    let cpu = cfg.device_kind("cpu").unwrap().clone();
    let d = parse_hardware("cpu:16", &cfg).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, "cpu#0");
    assert!(d[0].cpu);
    assert_eq!(d[0].cores, 16);
    assert_eq!(d[0].memory_bytes, 64 * GIB);
    assert!((d[0].hourly_usd - 16.0 * cpu.hourly_usd).abs() < 1e-12);
    assert!(
        (d[0].decode_tokens_per_sec_per_gparam - 16.0 * cpu.decode_tokens_per_sec_per_gparam).abs()
            < 1e-9
    );
    // ... or the memory given.
    let d = parse_hardware("cpu:16:48GB,2xCPU:2:6gib", &cfg).unwrap();
    assert_eq!(d[0].memory_bytes, 48 * GIB);
    assert_eq!((d[1].id.as_str(), d[1].cores), ("cpu#1", 2));
    assert_eq!(d[2].memory_bytes, 6 * GIB);
}

#[test]
fn serving_hardware_specs_reject_unknown_and_zero() {
    let cfg = HardwareConfig::default();
    let e = parse_hardware("1xV100-32GB", &cfg).unwrap_err();
    assert!(is_usage(&e));
    let msg = e.to_string();
    assert!(msg.contains("unknown device kind `V100-32GB`"), "{msg}");
    for kind in [
        "T4-16GB",
        "L4-24GB",
        "A10G-24GB",
        "A100-40GB",
        "A100-80GB",
        "H100-80GB",
        "cpu",
    ] {
        assert!(msg.contains(kind), "{msg} names {kind}");
    }
    for bad in ["0xL4-24GB", "cpu:0", "cpu:4:0GB"] {
        let e = parse_hardware(bad, &cfg).unwrap_err();
        assert!(is_usage(&e), "{bad}");
        assert!(
            e.to_string().contains("zero") || e.to_string().contains("> 0"),
            "{bad}: {e}"
        );
    }
    for bad in ["", "L4-24GB,,cpu:2", "cpu", "L4-24GB:2", "cpu:many"] {
        assert!(is_usage(&parse_hardware(bad, &cfg).unwrap_err()), "{bad}");
    }
}

#[test]
fn serving_config_is_checked_and_prices_match_by_prefix() {
    let cfg = HardwareConfig::default();
    let entry = |m: &str| cfg.price_for(m).entry;
    assert_eq!(entry("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
    assert_eq!(entry("gpt-4o-2024-08-06"), "gpt-4o");
    assert_eq!(entry("GPT-4O"), "gpt-4o");
    assert_eq!(entry("openai/gpt-4.1-mini"), "gpt-4.1-mini");
    assert_eq!(entry("gpt-4.1-2025-04-14"), "gpt-4.1");
    assert_eq!(
        entry("anthropic.claude-3-5-sonnet-20240620-v1:0"),
        "claude-3-5-sonnet"
    );
    assert_eq!(entry("anthropic/claude-3.5-haiku"), "claude-3-5-haiku");
    assert_eq!(entry("o3-mini-high"), "o3-mini");
    // `gpt-4` is no entry, and `gpt-4o` is not a prefix of it at a boundary.
    let p = cfg.price_for("gpt-4");
    assert!(p.default_used);
    assert_eq!(p.entry, "default");

    let no_default = TEST_CONFIG.replace("model = \"default\"", "model = \"other\"");
    let e = HardwareConfig::from_toml(&no_default).unwrap_err();
    assert!(is_usage(&e) && e.to_string().contains("default"), "{e}");
    let bad_target = TEST_CONFIG.replace("\"ffn_down\"]", "\"ffn_sideways\"]");
    let e = HardwareConfig::from_toml(&bad_target).unwrap_err();
    assert!(e.to_string().contains("ffn_sideways"), "{e}");
}

/// SmolLM2-135M at Q8_0 serving two clusters (rank-16 adapters, p95
/// context 1024 tokens) on TEST-16GB, by hand:
///
/// * weights: 134,515,008 params × 1.0625 = 134,515,008 + 134,515,008 / 16
///   = 134,515,008 + 8,407,188 = 142,922,196 bytes.
/// * concurrency: one stream decodes 13.5 / 0.134515008 = 100.36 tok/s and
///   prefills 100,360 tok/s, so a call (150 completion and 500 prompt
///   tokens) takes 150 / 100.36 + 500 / 100,360 = 1.4996 s. Cluster 1 at
///   60 calls/min: 1/s × 1.4996 s = 1.4996 → 2 sequences. Cluster 2 at 6
///   calls/min: 0.1 × 1.4996 = 0.15 → 1 (the minimum).
/// * KV per token: 2 × 30 layers × 3 kv heads × 64 head dim × 2 bytes =
///   23,040. Cluster 1: 23,040 × 1024 × 2 = 47,185,920; cluster 2: 23,040 ×
///   1024 × 1 = 23,592,960; together 70,778,880.
/// * one rank-16 adapter over all seven projections, in + out features:
///   q 576+576 = 1152, k 576+192 = 768, v 768, o 1152, gate 576+1536 =
///   2112, up 2112, down 2112: 10,176 per layer; × 16 × 30 layers × 2
///   bytes = 9,768,960. Two: 19,537,920.
/// * runtime overhead: 1 GiB = 1,073,741,824.
/// * total: 142,922,196 + 70,778,880 + 19,537,920 + 1,073,741,824 =
///   1,306,980,820 bytes.
#[test]
fn serving_memory_estimate_matches_the_hand_computed_example() {
    let cfg = test_config();
    let dev = &parse_hardware("TEST-16GB", &cfg).unwrap()[0];
    let m = smollm2();
    let clusters = [
        load(1, 1024, 60.0, 150.0, 16),
        load(2, 1024, 6.0, 150.0, 16),
    ];
    assert_eq!(concurrency(&clusters[0], &m, dev), 2);
    assert_eq!(concurrency(&clusters[1], &m, dev), 1);
    assert_eq!(kv_bytes_per_token(&m, &cfg), 23_040);
    assert_eq!(adapter_bytes(&m, 16, &cfg), 9_768_960);
    assert_eq!(adapter_bytes(&m, 0, &cfg), 0);

    let est = estimate_memory(&m, &clusters, dev, &cfg);
    assert_eq!(est.weights_bytes, 142_922_196);
    assert_eq!(est.clusters[0].kv_cache_bytes, 47_185_920);
    assert_eq!(est.clusters[1].kv_cache_bytes, 23_592_960);
    assert_eq!(est.kv_cache_bytes, 70_778_880);
    assert_eq!(est.adapter_bytes, 19_537_920);
    assert_eq!(est.runtime_overhead_bytes, 1_073_741_824);
    assert_eq!(est.total_bytes, 1_306_980_820);
    assert_eq!(est.base_model, "smollm2-135m");
    assert_eq!(est.device_kind, "TEST-16GB");

    // The context is capped at the model's: 20,000 tokens count as 8192.
    let long = estimate_memory(&m, &[load(3, 20_000, 6.0, 150.0, 0)], dev, &cfg);
    assert_eq!(long.clusters[0].context_tokens, 8192);
    assert_eq!(long.kv_cache_bytes, 23_040 * 8192);
}

/// Four clusters of 4 GiB KV each (one 131,072-token sequence) on big-1b:
/// base 2.0e9 bytes + 1 GiB overhead + 4 × (4 GiB + 10.75 MiB adapter) =
/// 20.3e9 bytes, more than one 16 GiB device; three clusters (16.0e9
/// bytes) fit, the fourth goes to a second device with its own copy of the
/// base.
#[test]
fn serving_packing_splits_a_deployment_across_two_devices() {
    let cfg = test_config();
    let devices = parse_hardware("2xTEST-16GB", &cfg).unwrap();
    let clusters: Vec<ClusterLoad> = (1..=4).map(|c| load(c, 131_072, 1.0, 100.0, 8)).collect();
    let req = [ServingRequest {
        base: big_1b(),
        clusters,
    }];
    let plan = plan_deployments(&req, &devices, &cfg).unwrap();
    assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced);
    assert_eq!(plan.deployments.len(), 2);
    let (a, b) = (&plan.deployments[0], &plan.deployments[1]);
    assert_eq!(
        (a.id.as_str(), a.device.as_str()),
        ("big-1b#r0", "TEST-16GB#0")
    );
    assert_eq!(
        (b.id.as_str(), b.device.as_str()),
        ("big-1b#r1", "TEST-16GB#1")
    );
    assert_eq!(a.clusters, [1, 2, 3]);
    assert_eq!(b.clusters, [4]);
    // Each replica holds the base once.
    assert_eq!(a.memory.weights_bytes, 2_000_000_000);
    assert_eq!(b.memory.weights_bytes, 2_000_000_000);
    assert_eq!(a.memory.kv_cache_bytes, 3 * 4 * GIB);
    assert_eq!(
        a.memory.total_bytes,
        2_000_000_000 + GIB + 3 * (4 * GIB + 11_272_192)
    );
    assert!(a.memory.total_bytes <= 16 * GIB);
    let d0 = &plan.devices[0];
    assert!(d0.in_use);
    assert_eq!(d0.deployments, ["big-1b#r0"]);
    assert_eq!(d0.memory_used_bytes, a.memory.total_bytes);
    assert_eq!(d0.memory_capacity_bytes, 16 * GIB);
    assert!(
        (d0.memory_utilisation - a.memory.total_bytes as f64 / (16 * GIB) as f64).abs() < 1e-12
    );
    assert!(d0.compute_utilisation > 0.0 && d0.compute_utilisation < 1.0);
}

#[test]
fn serving_a_cluster_that_fits_no_device_says_why() {
    let cfg = test_config();
    // 9e9 params in f16 are 18e9 bytes (16.8 GiB) of weights alone.
    let huge = ModelSpec {
        id: "huge-9b".into(),
        params: 9_000_000_000,
        ..big_1b()
    };
    let devices = parse_hardware("TEST-16GB", &cfg).unwrap();
    let req = [ServingRequest {
        base: huge.clone(),
        clusters: vec![load(7, 1024, 1.0, 100.0, 8)],
    }];
    let plan = plan_deployments(&req, &devices, &cfg).unwrap();
    assert!(plan.deployments.is_empty());
    assert!(!plan.devices[0].in_use);
    assert_eq!(plan.unplaced.len(), 1);
    let u = &plan.unplaced[0];
    assert_eq!((u.base_model.as_str(), u.cluster), ("huge-9b", 7));
    let need = estimate_memory(&huge, &req[0].clusters, &devices[0], &cfg).total_bytes;
    assert_eq!(u.memory_needed_bytes, need);
    let expected = format!(
        "needs {:.1} GiB (huge-9b with cluster 7), largest free device has 16.0 GiB (TEST-16GB#0)",
        need as f64 / GIB as f64
    );
    assert_eq!(u.reason, expected);
    assert!(u.reason.starts_with("needs 17.8 GiB"), "{}", u.reason);

    // Memory is there on a 2-core CPU, but not the decoding: 600 calls/min
    // of 200 tokens are 2000 tok/s; two cores give SmolLM2
    // 2 × 1.7 / 0.134515008 × 4.2 = 106 tok/s.
    let cpu = parse_hardware("cpu:2", &cfg).unwrap();
    let req = [ServingRequest {
        base: smollm2(),
        clusters: vec![load(8, 1024, 600.0, 200.0, 8)],
    }];
    let plan = plan_deployments(&req, &cpu, &cfg).unwrap();
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(
        plan.unplaced[0].reason,
        "throughput 2000 tok/s of decoding needed (smollm2-135m with cluster 8), cpu#0 gives at most 106 tok/s for this model"
    );

    // No devices at all.
    let plan = plan_deployments(&req, &[], &cfg).unwrap();
    assert_eq!(plan.unplaced[0].reason, "no devices in the hardware spec");
}

#[test]
fn serving_clusters_on_one_base_share_one_deployment() {
    let cfg = test_config();
    let devices = parse_hardware("TEST-16GB", &cfg).unwrap();
    let (a, b) = (
        load(1, 1024, 60.0, 150.0, 16),
        load(2, 2048, 6.0, 150.0, 16),
    );
    // Two requests naming the same base become one deployment.
    let req = [
        ServingRequest {
            base: smollm2(),
            clusters: vec![b.clone()],
        },
        ServingRequest {
            base: smollm2(),
            clusters: vec![a.clone()],
        },
    ];
    let plan = plan_deployments(&req, &devices, &cfg).unwrap();
    assert_eq!(plan.deployments.len(), 1);
    let d = &plan.deployments[0];
    assert_eq!(d.id, "smollm2-135m");
    assert_eq!(d.clusters, [1, 2]);
    assert_eq!(d.memory.weights_bytes, 142_922_196);
    let alone_a = estimate_memory(&smollm2(), std::slice::from_ref(&a), &devices[0], &cfg);
    let alone_b = estimate_memory(&smollm2(), std::slice::from_ref(&b), &devices[0], &cfg);
    let separate = alone_a.total_bytes + alone_b.total_bytes;
    assert!(d.memory.total_bytes < separate);
    // Exactly one copy of the weights and one runtime overhead saved.
    assert_eq!(
        d.memory.total_bytes,
        separate - alone_a.weights_bytes - alone_a.runtime_overhead_bytes
    );
    assert_eq!(plan.devices[0].deployments, ["smollm2-135m"]);

    // A cluster asked for under two bases is an error.
    let twice = [
        ServingRequest {
            base: smollm2(),
            clusters: vec![a.clone()],
        },
        ServingRequest {
            base: big_1b(),
            clusters: vec![a],
        },
    ];
    assert!(is_usage(
        &plan_deployments(&twice, &devices, &cfg).unwrap_err()
    ));
}

#[test]
fn serving_cost_summary_prices_known_and_unknown_models() {
    let cfg = test_config();
    let devices = parse_hardware("TEST-16GB", &cfg).unwrap();
    let req = [ServingRequest {
        base: smollm2(),
        clusters: vec![
            load(1, 1024, 60.0, 150.0, 16),
            load(2, 1024, 6.0, 150.0, 16),
        ],
    }];
    let plan = plan_deployments(&req, &devices, &cfg).unwrap();
    let usage = vec![
        LlmUsage {
            cluster: 1,
            model: "gpt-4o-mini-2024-07-18".into(),
            calls: 1000,
            input_tokens: 2_000_000,
            output_tokens: 500_000,
        },
        LlmUsage {
            cluster: 2,
            model: "acme-internal-llm".into(),
            calls: 100,
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
        },
        // An outlier cluster: on the LLM, not in the plan.
        LlmUsage {
            cluster: -1,
            model: "gpt-4o-mini".into(),
            calls: 10,
            input_tokens: 1_000_000,
            output_tokens: 0,
        },
    ];
    // One week of log; a month is 730 h = 2,628,000 s: × 4.345238.
    let week = 7.0 * 24.0 * 3600.0;
    let factor = 730.0 * 3600.0 / week;
    let llm = llm_cost(&usage, week, &cfg).unwrap();
    assert!((llm.month_factor - factor).abs() < 1e-12);
    // Cluster 1: 2 M in × 0.15 + 0.5 M out × 0.60 = 0.60 USD.
    // Cluster 2 (default 1 / 4): 1 M × 1 + 1 M × 4 = 5.00 USD.
    // Cluster -1: 1 M × 0.15 = 0.15 USD.
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
    assert!(close(llm.observed_usd, 5.75), "{}", llm.observed_usd);
    assert!(close(llm.monthly_usd, 5.75 * factor));
    let by_model: Vec<(&str, &str, bool)> = llm
        .models
        .iter()
        .map(|m| {
            (
                m.model.as_str(),
                m.price.entry.as_str(),
                m.price.default_used,
            )
        })
        .collect();
    assert_eq!(
        by_model,
        [
            ("acme-internal-llm", "default", true),
            ("gpt-4o-mini", "gpt-4o-mini", false),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", false),
        ]
    );
    assert!(llm
        .assumptions
        .iter()
        .any(|a| a.contains("`acme-internal-llm`") && a.contains("default")));
    assert!(!llm.assumptions.iter().any(|a| a.contains("`gpt-4o-mini")));

    let s = cost_summary(&plan, &usage, week, &cfg).unwrap();
    // One device holding something, billed whole: 1 USD × 730 h.
    assert_eq!(s.hardware.len(), 1);
    assert!(close(s.hardware_monthly_usd, 730.0));
    assert!(close(s.llm_monthly_usd, 5.75 * factor));
    assert!(close(s.llm_monthly_usd_replaced, 5.60 * factor));
    assert!(close(s.llm_monthly_usd_remaining, 0.15 * factor));
    assert!(close(s.savings_monthly_usd, 5.60 * factor - 730.0));
    let ids: Vec<(i32, bool)> = s.clusters.iter().map(|c| (c.cluster, c.placed)).collect();
    assert_eq!(ids, [(-1, false), (1, true), (2, true)]);
    let outlier = &s.clusters[0];
    assert_eq!(
        (outlier.hardware_monthly_usd, outlier.savings_monthly_usd),
        (0.0, 0.0)
    );
    // The hardware is shared out by memory: the shares add up to the bill,
    // and cluster 1 (two sequences of KV) takes more than cluster 2.
    let (c1, c2) = (&s.clusters[1], &s.clusters[2]);
    assert!(close(
        c1.hardware_monthly_usd + c2.hardware_monthly_usd,
        730.0
    ));
    assert!(c1.hardware_monthly_usd > c2.hardware_monthly_usd);
    assert!(close(c1.llm_monthly_usd, 0.60 * factor));
    assert!(close(
        c1.savings_monthly_usd,
        c1.llm_monthly_usd - c1.hardware_monthly_usd
    ));
    assert!(s.assumptions.iter().any(|a| a.contains("whole devices")));
    assert!(s
        .assumptions
        .iter()
        .any(|a| a.contains("`acme-internal-llm`")));

    assert!(is_usage(&llm_cost(&usage, 0.0, &cfg).unwrap_err()));
}

#[test]
fn serving_plan_and_costs_are_deterministic() {
    let cfg = HardwareConfig::default();
    let devices = parse_hardware("2xL4-24GB,1xA100-80GB,cpu:8", &cfg).unwrap();
    let gemma = ModelSpec {
        id: "gemma3-270m".into(),
        params: 268_098_176,
        layers: 18,
        heads: 4,
        kv_heads: 1,
        head_dim: 256,
        hidden: 640,
        intermediate: 2048,
        context_length: 32_768,
        bytes_per_param: 1.0625,
    };
    let requests = vec![
        ServingRequest {
            base: smollm2(),
            clusters: vec![
                load(3, 900, 30.0, 80.0, 16),
                load(1, 2000, 120.0, 300.0, 16),
            ],
        },
        ServingRequest {
            base: gemma,
            clusters: vec![load(2, 4000, 10.0, 500.0, 8), load(5, 1024, 1.0, 50.0, 8)],
        },
        ServingRequest {
            base: big_1b(),
            clusters: (10..16).map(|c| load(c, 131_072, 2.0, 200.0, 8)).collect(),
        },
    ];
    let usage: Vec<LlmUsage> = [1, 2, 3, 5, 10, 11, 12, 13, 14, 15, -1]
        .iter()
        .enumerate()
        .map(|(i, &c)| LlmUsage {
            cluster: c,
            model: ["gpt-4o", "claude-3-5-haiku-latest", "mystery"][i % 3].into(),
            calls: 100 + i as u64,
            input_tokens: 50_000 * (i as u64 + 1),
            output_tokens: 7_000 * (i as u64 + 1),
        })
        .collect();
    let run = |reqs: &[ServingRequest], rows: &[LlmUsage]| {
        let plan = plan_deployments(reqs, &devices, &cfg).unwrap();
        let cost = cost_summary(&plan, rows, 3.5 * 24.0 * 3600.0, &cfg).unwrap();
        serde_json::to_string(&(plan, cost)).unwrap()
    };
    let first = run(&requests, &usage);
    assert_eq!(first, run(&requests, &usage));
    // The input's order does not matter either.
    let mut reversed: Vec<ServingRequest> = requests.iter().rev().cloned().collect();
    for r in &mut reversed {
        r.clusters.reverse();
    }
    let rows: Vec<LlmUsage> = usage.iter().rev().cloned().collect();
    assert_eq!(first, run(&reversed, &rows));
}
