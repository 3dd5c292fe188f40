//! Benchmarks of the causal LM (`slmforge bench lm-infer`, `bench lm-train`):
//! prompt-processing and decode throughput, and one LoRA training step's
//! time, token rate and peak RSS. Human summary on stderr, JSON on stdout.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use candle_nn::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::measure::peak_rss_bytes;
use crate::ml::lm::generate::{generate_tokens, GenerateOptions, SamplingConfig};
use crate::ml::lm::model::{HeadPositions, TrainBatch};
use crate::ml::lm::ops::Kernels;
use crate::ml::lm::{LoraConfig, LoraTarget, TrainExample};
use crate::ml::models::resolve_model;
use crate::ml::runtime::init_runtime;

#[derive(Clone, Debug)]
pub struct LmInferBench {
    /// GGUF path or catalogue id.
    pub model: String,
    /// Prompt length for the prompt-processing measurement.
    pub prompt_len: usize,
    /// Tokens generated per row in the decode measurements.
    pub decode_tokens: usize,
    /// Batch sizes of the decode measurements.
    pub batches: Vec<usize>,
    /// Repetitions of the prompt-processing measurement (best is reported).
    pub repeats: usize,
    /// Use only candle primitives (no fused kernels, plain matmul).
    pub composite: bool,
    /// Decode on the f32 weights instead of the quantized decoder.
    pub f32_decode: bool,
}

#[derive(Clone, Debug)]
pub struct LmTrainBench {
    pub model: String,
    pub batch: usize,
    pub seq: usize,
    pub rank: usize,
    /// Timed steps after one warm-up step.
    pub steps: usize,
    /// Fraction of each sequence (its end) that is answer tokens.
    pub answer_frac: f64,
    /// Apply the LM head at every position instead of the answer positions only.
    pub all_positions: bool,
    /// Plain matmul (computes the frozen weights' gradients) instead of the frozen-weight op.
    pub no_frozen_op: bool,
    /// Composite candle ops instead of the fused kernels.
    pub no_fused: bool,
}

impl Default for LmInferBench {
    fn default() -> Self {
        LmInferBench {
            model: "smollm2-135m".into(),
            prompt_len: 256,
            decode_tokens: 64,
            batches: vec![1, 8, 16],
            repeats: 3,
            composite: false,
            f32_decode: false,
        }
    }
}

impl Default for LmTrainBench {
    fn default() -> Self {
        LmTrainBench {
            model: "smollm2-135m".into(),
            batch: 4,
            seq: 256,
            rank: 8,
            steps: 3,
            answer_frac: 0.5,
            all_positions: false,
            no_frozen_op: false,
            no_fused: false,
        }
    }
}

fn random_ids(rng: &mut ChaCha8Rng, n: usize, vocab: usize) -> Vec<u32> {
    // Skip the control tokens at the start of the vocabulary.
    (0..n)
        .map(|_| rng.random_range(100..vocab as u32))
        .collect()
}

pub fn run_infer(a: LmInferBench) -> Result<()> {
    init_runtime();
    let path = resolve_model(&a.model)?;
    let t0 = Instant::now();
    let mut lm = crate::ml::lm::load(&path, &Device::Cpu)?;
    if a.composite {
        lm.model.set_kernels(Kernels::composite());
    }
    if a.f32_decode {
        lm.model.set_quantized_decode(false);
    }
    let weights = match (a.f32_decode, lm.model.decode_weights()) {
        (false, Some(w)) if !a.composite => format!(
            "quantized {} ({:.0} MB), {} kernels",
            w.kinds().join("+"),
            w.size_bytes() as f64 / 1e6,
            crate::ml::lm::qmat::Kernel::detect().name()
        ),
        _ => "f32".to_string(),
    };
    eprintln!("decode weights: {weights}");
    let load_secs = t0.elapsed().as_secs_f64();
    // the model as `generate` uses it (which drops the loaded one)
    lm.model.make_inference()?;
    let m = &lm.model;
    let vocab = m.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    // Prompt processing: one forward over the prompt into a KV cache (LM head
    // at the last position only, as generation does).
    let prompt = random_ids(&mut rng, a.prompt_len, vocab);
    let ids = candle_core::Tensor::new(prompt.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let mut best = f64::MAX;
    for _ in 0..a.repeats.max(1) {
        let p = m.prefill_model();
        let mut cache = p.new_cache(vec![0], a.prompt_len)?;
        let t = Instant::now();
        let _ = p.forward_cached(&ids, &mut cache)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let pp = a.prompt_len as f64 / best;
    eprintln!(
        "prompt processing: {} tokens in {best:.3}s = {pp:.1} tok/s",
        a.prompt_len
    );

    // Decode at batch 1 and batch N (no stop tokens: every row runs to the end).
    let mut decode = Vec::new();
    for &b in &a.batches {
        let prompts: Vec<Vec<u32>> = (0..b).map(|_| random_ids(&mut rng, 32, vocab)).collect();
        let opts = GenerateOptions {
            sampling: SamplingConfig::greedy(a.decode_tokens),
            batch_size: b,
            ..Default::default()
        };
        let (_, st) = generate_tokens(m, &prompts, &[], lm.tokenizer.pad_id(), &opts)?;
        let rate = st.decode_tokens_per_sec();
        eprintln!(
            "decode batch {b}: {} tokens in {:.3}s = {rate:.1} tok/s",
            st.generated_tokens, st.decode_secs
        );
        // The same rows under a tool-call grammar (schema-guided decoding):
        // the decode rate, and the share of it spent on the masks.
        let constraint = bench_tool_constraint();
        let (rows, _) = lm.row_guides(&vec![Some(constraint); b])?;
        let (_, gs) = crate::ml::lm::generate::generate_constrained(
            m,
            &prompts,
            rows,
            &lm.stop_ids(),
            lm.tokenizer.pad_id(),
            &opts,
        )?;
        let grate = gs.decode_tokens_per_sec();
        let per_token_ms = 1e3 * gs.guide_secs / gs.generated_tokens.max(1) as f64;
        eprintln!(
            "decode batch {b}, guided: {} tokens in {:.3}s = {grate:.1} tok/s; masks {:.3} ms/token = {:.1}% of decode time",
            gs.generated_tokens,
            gs.decode_secs,
            per_token_ms,
            100.0 * gs.guide_secs / gs.decode_secs.max(1e-9)
        );
        // Sampling masks at every step (greedy checks the best token first):
        // the worst case of the mask's cost.
        let sampled = GenerateOptions {
            sampling: SamplingConfig {
                temperature: 1.0,
                ..opts.sampling.clone()
            },
            ..opts.clone()
        };
        let (rows, _) = lm.row_guides(&vec![Some(bench_tool_constraint()); b])?;
        let (_, ss) = crate::ml::lm::generate::generate_constrained(
            m,
            &prompts,
            rows,
            &lm.stop_ids(),
            lm.tokenizer.pad_id(),
            &sampled,
        )?;
        let masked_ms = 1e3 * ss.guide_secs / ss.generated_tokens.max(1) as f64;
        eprintln!(
            "decode batch {b}, guided and sampled (a mask every step): {} tokens = {:.1} tok/s; masks {masked_ms:.3} ms/token = {:.1}% of decode time",
            ss.generated_tokens,
            ss.decode_tokens_per_sec(),
            100.0 * ss.guide_secs / ss.decode_secs.max(1e-9)
        );
        decode.push(json!({"batch": b, "tokens": st.generated_tokens, "secs": st.decode_secs, "tokens_per_sec": rate,
            "guided": {"tokens": gs.generated_tokens, "secs": gs.decode_secs, "tokens_per_sec": grate,
                       "mask_secs": gs.guide_secs, "mask_ms_per_token": per_token_ms,
                       "mask_share_of_decode": gs.guide_secs / gs.decode_secs.max(1e-9)},
            "guided_sampled": {"tokens": ss.generated_tokens, "secs": ss.decode_secs,
                       "tokens_per_sec": ss.decode_tokens_per_sec(), "mask_ms_per_token": masked_ms,
                       "mask_share_of_decode": ss.guide_secs / ss.decode_secs.max(1e-9)}}));
    }
    let out = json!({
        "bench": "lm-infer",
        "model": path.display().to_string(),
        "kernels": if a.composite { "composite" } else { "fused" },
        "decode_weights": weights,
        "threads": rayon::current_num_threads(),
        "load_secs": load_secs,
        "prompt_len": a.prompt_len,
        "prompt_secs": best,
        "prompt_tokens_per_sec": pp,
        "decode": decode,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// A tool-calling constraint like the sample's: two tools, an enum, an
/// integer, a nested object, an array, free strings.
fn bench_tool_constraint() -> crate::ml::lm::guide::Constraint {
    let ticket = json!({"type": "object", "properties": {
        "title": {"type": "string"},
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "customer": {"type": "object", "properties": {"name": {"type": "string"}, "id": {"type": "integer"}}, "required": ["name"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"}
    }, "required": ["title", "priority", "description"]});
    let status = json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]});
    crate::ml::lm::guide::Constraint::Tools {
        tools: vec![
            ("create_ticket".into(), ticket),
            ("get_order_status".into(), status),
        ],
        choice: crate::ml::lm::guide::ToolChoice::Required,
        text: false,
        max_calls: Some(1),
    }
}

pub fn run_train(a: LmTrainBench) -> Result<()> {
    init_runtime();
    let path = resolve_model(&a.model)?;
    let mut lm = crate::ml::lm::load(&path, &Device::Cpu)?;
    lm.model.set_kernels(Kernels {
        fused: !a.no_fused,
        frozen_matmul: !a.no_frozen_op,
    });
    let cfg = LoraConfig {
        rank: a.rank,
        alpha: 2.0 * a.rank as f64,
        targets: LoraTarget::ALL.to_vec(),
        ..Default::default()
    };
    lm.model.add_lora(&cfg, 0)?;
    let vars = lm.model.lora_vars();
    let n_params: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut opt = candle_nn::AdamW::new(
        vars.clone(),
        candle_nn::ParamsAdamW {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let vocab = lm.model.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n_answer = ((a.seq as f64) * a.answer_frac).round() as usize;
    let examples: Vec<TrainExample> = (0..a.batch)
        .map(|_| TrainExample {
            ids: random_ids(&mut rng, a.seq, vocab),
            answer_mask: (0..a.seq).map(|t| t >= a.seq - n_answer).collect(),
            truncated: false,
        })
        .collect();
    let batch = TrainBatch::new(&examples, lm.tokenizer.pad_id(), &Device::Cpu)?;
    let head = if a.all_positions {
        HeadPositions::All
    } else {
        HeadPositions::Answer
    };
    let mut times = Vec::new();
    let mut fwd_times = Vec::new();
    let mut losses = Vec::new();
    for step in 0..=a.steps {
        let t = Instant::now();
        let loss = lm.model.loss(&batch, head, Some(&mut rng))?;
        let tf = t.elapsed().as_secs_f64();
        opt.backward_step(&loss)?;
        let dt = t.elapsed().as_secs_f64();
        losses.push(loss.to_scalar::<f32>()?);
        eprintln!(
            "step {step}: {dt:.3}s (forward {tf:.3}s){}",
            if step == 0 { " [warm-up]" } else { "" }
        );
        if step > 0 {
            times.push(dt);
            fwd_times.push(tf);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let fwd = fwd_times.iter().sum::<f64>() / fwd_times.len().max(1) as f64;
    let tokens = a.batch * a.seq;
    let rss = peak_rss_bytes();
    eprintln!(
        "train step: {mean:.3}s = {:.1} trained tok/s; peak RSS {:.2} GB",
        tokens as f64 / mean,
        rss.unwrap_or(0) as f64 / 1e9
    );
    let out = json!({
        "bench": "lm-train",
        "model": path.display().to_string(),
        "threads": rayon::current_num_threads(),
        "batch": a.batch,
        "seq": a.seq,
        "rank": a.rank,
        "lora_params": n_params,
        "answer_tokens": batch.n_answer,
        "head": if a.all_positions { "all_positions" } else { "answer_positions" },
        "frozen_weight_op": !a.no_frozen_op,
        "fused_kernels": !a.no_fused,
        "step_secs": mean,
        "forward_secs": fwd,
        "step_secs_all": times,
        "tokens_per_sec": tokens as f64 / mean,
        "losses": losses,
        "peak_rss_bytes": rss,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[derive(Clone, Debug)]
pub struct LmGemmBench {
    /// Rows (tokens) of the activation matrix.
    pub rows: usize,
    pub repeats: usize,
    /// The quantized decoder's products instead (Q4_1 blocks, the head
    /// Q8_0, as SmolLM2's GGUF) with f32 activations.
    pub quantized: bool,
}

impl Default for LmGemmBench {
    fn default() -> Self {
        LmGemmBench {
            rows: 1024,
            repeats: 5,
            quantized: false,
        }
    }
}

/// Raw f32 matmul throughput of candle's CPU backend on the projection
/// shapes of SmolLM2-135M and Gemma 3 270M (`x [rows, in] · Wᵀ`): the ceiling
/// for training and prompt processing. Each f32 shape is measured with the
/// frozen weight stored as loaded (`[out, in]`, row-major) and stored
/// `[in, out]` ([`crate::ml::lm::ops::prefill_layout`]), forward and the
/// backward's input gradient (`g · W`).
pub fn run_gemm(a: LmGemmBench) -> Result<()> {
    init_runtime();
    let dev = Device::Cpu;
    let shapes = [
        ("smollm2 qkv", 576, 960),
        ("smollm2 o", 576, 576),
        ("smollm2 gate_up", 576, 3072),
        ("smollm2 down", 1536, 576),
        ("smollm2 lm_head", 576, 49152),
        ("gemma3 qkv", 640, 1536),
        ("gemma3 o", 1024, 640),
        ("gemma3 gate_up", 640, 4096),
        ("gemma3 down", 2048, 640),
    ];
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..a.repeats.max(1) {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let mut rows = Vec::new();
    for (name, inp, out) in shapes {
        if a.quantized && name.starts_with("gemma3") {
            continue;
        }
        let x = candle_core::Tensor::randn(0f32, 1.0, (a.rows, inp), &dev)?;
        let w = candle_core::Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
        let flops = 2.0 * (a.rows * inp * out) as f64;
        let gf = |secs: f64| flops / secs / 1e9;
        if a.quantized {
            use candle_core::quantized::{GgmlDType, QTensor};
            let dt = if name.ends_with("lm_head") {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q4_1
            };
            let q = crate::ml::lm::qmat::QMat::from_qtensor(&QTensor::quantize(&w, dt)?)?
                .context("the decoder has no kernel for these blocks")?;
            let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let secs = time(&mut || {
                std::hint::black_box(q.matmul(&xv, a.rows));
                Ok(())
            })?;
            eprintln!(
                "{name:>16}: [{}, {inp}] x [{inp}, {out}] in {:.2} ms = {:.1} GFLOP/s",
                a.rows,
                secs * 1e3,
                gf(secs)
            );
            rows.push(
                json!({"name": name, "in": inp, "out": out, "secs": secs, "gflops": gf(secs)}),
            );
            continue;
        }
        let g = candle_core::Tensor::randn(0f32, 1.0, (a.rows, out), &dev)?;
        let mut row = json!({"name": name, "in": inp, "out": out});
        let mut line = format!("{name:>16}: [{}, {inp}] x [{inp}, {out}]", a.rows);
        for (layout, wl) in [
            ("out_in", w.clone()),
            ("in_out", crate::ml::lm::ops::prefill_layout(&w)?),
        ] {
            let fwd = time(&mut || {
                let y = crate::ml::lm::ops::linear(&x, &wl, Kernels::default())?;
                std::hint::black_box(y.dims());
                Ok(())
            })?;
            let bwd = time(&mut || {
                std::hint::black_box(g.matmul(&wl)?.dims().len());
                Ok(())
            })?;
            line += &format!(
                "  W[{layout}]: forward {:.1}, g·W {:.1} GFLOP/s",
                gf(fwd),
                gf(bwd)
            );
            row[layout] = json!({"forward_secs": fwd, "forward_gflops": gf(fwd), "backward_secs": bwd, "backward_gflops": gf(bwd)});
        }
        eprintln!("{line}");
        rows.push(row);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({"bench": "lm-gemm", "rows": a.rows, "quantized": a.quantized, "threads": rayon::current_num_threads(), "shapes": rows})
        )?
    );
    Ok(())
}
