//! Deployable adapter formats, written from and read back into the training
//! layout ([`super::lora`]): Hugging Face PEFT directories, llama.cpp GGUF
//! LoRA adapters, and a merged, re-quantised GGUF model.
//!
//! * **PEFT**: `adapter_config.json` + `adapter_model.safetensors`
//!   (metadata `{"format":"pt"}`), keys
//!   `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`
//!   and `....mlp.{gate,up,down}_proj.lora_{A,B}.weight`; the `lora_B` rows of
//!   q and k are put in the Hugging Face order ([`super::lora::gguf_rows_to_hf`]).
//! * **llama.cpp**: `general.type = adapter`, `adapter.type = lora`,
//!   `adapter.lora.alpha` as f32 (llama.cpp scales by `alpha / rank`, so an
//!   rsLoRA adapter's `sqrt(rank)` factor is folded into alpha), tensors
//!   under the training names (`blk.{i}.attn_q.weight.lora_a`), q/k rows in
//!   the GGUF order.
//! * **Merged**: every base tensor copied as stored, except the adapted
//!   projections, which become `W + scale · B · A` re-quantised.
//!
//! Readers convert back to the training layout, so every exported file can
//! be loaded into our own engine and compared with the trained adapter.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::gguf::GgufFile;
use super::lora::{
    gguf_rows_to_hf, hf_rows_to_gguf, Adapter, AdapterConfig, LoraConfig, LoraTarget,
};
use super::model::{CausalLm, LmConfig};

/// PEFT's config file.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's weights file.
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Element type of exported adapter tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorDtype {
    F32,
    F16,
    /// llama.cpp only, where the last dimension is a multiple of 32 (f16 otherwise).
    Q8_0,
}

impl TensorDtype {
    pub fn parse(s: &str) -> Option<TensorDtype> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Some(TensorDtype::F32),
            "f16" => Some(TensorDtype::F16),
            "q8_0" | "q8" => Some(TensorDtype::Q8_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TensorDtype::F32 => "f32",
            TensorDtype::F16 => "f16",
            TensorDtype::Q8_0 => "q8_0",
        }
    }
}

/// A quantisation type of the merged model, by its llama.cpp name.
pub fn parse_quant(s: &str) -> Option<GgmlDType> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q8_0" => GgmlDType::Q8_0,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q6_k" => GgmlDType::Q6K,
        "q5_k" => GgmlDType::Q5K,
        "q4_k" => GgmlDType::Q4K,
        "q3_k" => GgmlDType::Q3K,
        "q2_k" => GgmlDType::Q2K,
        _ => return None,
    })
}

/// llama.cpp's name of a tensor type (`q8_0`, `q4_k`...).
pub fn quant_name(d: GgmlDType) -> String {
    match d {
        GgmlDType::Q2K => "q2_k".into(),
        GgmlDType::Q3K => "q3_k".into(),
        GgmlDType::Q4K => "q4_k".into(),
        GgmlDType::Q5K => "q5_k".into(),
        GgmlDType::Q6K => "q6_k".into(),
        GgmlDType::Q8K => "q8_k".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// `(layer, target, is_b)` of a training-layout tensor name.
pub fn parse_training_name(name: &str) -> Option<(usize, LoraTarget, bool)> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (stem, ab) = rest.split_once(".weight.lora_")?;
    let target = LoraTarget::ALL
        .into_iter()
        .find(|t| t.gguf_name() == stem)?;
    match ab {
        "a" => Some((layer, target, false)),
        "b" => Some((layer, target, true)),
        _ => None,
    }
}

/// The PEFT key of a layer's target matrix (`a` or `b`).
pub fn peft_key(layer: usize, target: LoraTarget, is_b: bool) -> String {
    let module = match target {
        LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
        _ => "mlp",
    };
    let ab = if is_b { "B" } else { "A" };
    format!(
        "base_model.model.model.layers.{layer}.{module}.{}.lora_{ab}.weight",
        target.hf_name()
    )
}

fn parse_peft_key(key: &str) -> Option<(usize, LoraTarget, bool)> {
    let rest = key.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, rest) = rest.split_once('.')?; // self_attn | mlp
    let (module, rest) = rest.split_once('.')?;
    let target = LoraTarget::ALL
        .into_iter()
        .find(|t| t.hf_name() == module)?;
    match rest {
        "lora_A.weight" => Some((layer, target, false)),
        "lora_B.weight" => Some((layer, target, true)),
        _ => None,
    }
}

/// Heads whose rows a q/k `lora_B` is grouped in, where llama.cpp's
/// converter permuted them for interleaved RoPE (Llama only; Qwen and Gemma
/// GGUFs keep the Hugging Face order); `None` for other targets.
fn permuted_heads(cfg: &LmConfig, target: LoraTarget) -> Option<usize> {
    if !cfg.arch.interleaved_rope() {
        return None;
    }
    match target {
        LoraTarget::Q => Some(cfg.num_heads),
        LoraTarget::K => Some(cfg.num_kv_heads),
        _ => None,
    }
}

/// `adapter_config.json` as PEFT, vLLM, LoRAX and mistral.rs read it.
pub fn peft_config(lora: &LoraConfig, base_model_name_or_path: &str) -> serde_json::Value {
    let targets: Vec<&str> = lora.targets.iter().map(|t| t.hf_name()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": lora.rslora,
        "use_dora": false,
        "modules_to_save": null,
        "inference_mode": true,
        "rank_pattern": {},
        "alpha_pattern": {},
    })
}

fn cast(t: &Tensor, dtype: TensorDtype) -> Result<Tensor> {
    Ok(match dtype {
        TensorDtype::F32 => t.to_dtype(DType::F32)?,
        TensorDtype::F16 | TensorDtype::Q8_0 => t.to_dtype(DType::F16)?,
    })
}

/// Writes a PEFT directory from training-layout tensors. `dtype` f32 or f16
/// (q8_0 is not a safetensors type and is refused).
pub fn write_peft(
    dir: &Path,
    lora: &LoraConfig,
    tensors: &[(String, Tensor)],
    model: &LmConfig,
    base_model_name_or_path: &str,
    dtype: TensorDtype,
) -> Result<()> {
    if dtype == TensorDtype::Q8_0 {
        bail!("PEFT adapters are f16 or f32 (q8_0 is for llama.cpp adapters)")
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (layer, target, is_b) = parse_training_name(name)
            .with_context(|| format!("{name} is not a training-layout adapter tensor"))?;
        let t = match (is_b, permuted_heads(model, target)) {
            (true, Some(h)) => gguf_rows_to_hf(t, h)?,
            _ => t.clone(),
        };
        out.push((
            peft_key(layer, target, is_b),
            cast(&t, dtype)?.contiguous()?,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let bytes = safetensors::serialize(out.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
        .context("serialising the PEFT safetensors")?;
    crate::util::write_atomic(&dir.join(PEFT_WEIGHTS_FILE), &bytes)?;
    crate::util::write_json(
        &dir.join(PEFT_CONFIG_FILE),
        &peft_config(lora, base_model_name_or_path),
    )
}

/// Reads a PEFT directory back into the training layout (f32, q/k rows in
/// GGUF order), checking that it matches the model's shapes.
pub fn read_peft(dir: &Path, model: &LmConfig, device: &Device) -> Result<Adapter> {
    let cfg_path = dir.join(PEFT_CONFIG_FILE);
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?,
    )
    .with_context(|| format!("parsing {}", cfg_path.display()))?;
    let rank = cfg["r"]
        .as_u64()
        .context("adapter_config.json: `r` is missing")? as usize;
    let alpha = cfg["lora_alpha"]
        .as_f64()
        .context("adapter_config.json: `lora_alpha` is missing")?;
    let targets = cfg["target_modules"]
        .as_array()
        .context("adapter_config.json: `target_modules` must be a list")?
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(LoraTarget::parse)
                .with_context(|| format!("unknown target module {v}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let lora = LoraConfig {
        rank,
        alpha,
        dropout: cfg["lora_dropout"].as_f64().unwrap_or(0.0),
        targets,
        rslora: cfg["use_rslora"].as_bool().unwrap_or(false),
    };
    let path = dir.join(PEFT_WEIGHTS_FILE);
    let loaded = candle_core::safetensors::load(&path, device)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut tensors = HashMap::new();
    for (key, t) in loaded {
        let (layer, target, is_b) =
            parse_peft_key(&key).with_context(|| format!("unexpected PEFT key {key}"))?;
        let t = t.to_dtype(DType::F32)?;
        let t = match (is_b, permuted_heads(model, target)) {
            (true, Some(h)) => hf_rows_to_gguf(&t, h)?,
            _ => t,
        };
        let (a, b) = target.tensor_names(layer);
        tensors.insert(if is_b { b } else { a }, t);
    }
    Ok(Adapter {
        config: AdapterConfig::new(lora, None, None),
        tensors,
    })
}

/// The alpha llama.cpp needs to apply `lora.scale()` (it computes `alpha / rank`).
pub fn llama_cpp_alpha(lora: &LoraConfig) -> f32 {
    (lora.scale() * lora.rank as f64) as f32
}

/// Writes a llama.cpp GGUF LoRA adapter. Returns the tensors that could not
/// take `dtype` (q8_0 needs the last dimension divisible by 32) and were
/// written as f16.
pub fn write_gguf_adapter(
    path: &Path,
    architecture: &str,
    lora: &LoraConfig,
    tensors: &[(String, Tensor)],
    dtype: TensorDtype,
) -> Result<Vec<String>> {
    let mut fallbacks = Vec::new();
    let mut qs: Vec<(String, QTensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        parse_training_name(name)
            .with_context(|| format!("{name} is not a training-layout adapter tensor"))?;
        let last = *t.dims().last().unwrap_or(&0);
        let ggml = match dtype {
            TensorDtype::F32 => GgmlDType::F32,
            TensorDtype::F16 => GgmlDType::F16,
            TensorDtype::Q8_0 if last % 32 == 0 => GgmlDType::Q8_0,
            TensorDtype::Q8_0 => {
                fallbacks.push(name.clone());
                GgmlDType::F16
            }
        };
        let t = t.to_dtype(DType::F32)?.contiguous()?;
        qs.push((name.clone(), QTensor::quantize(&t, ggml)?));
    }
    let md: Vec<(&str, Value)> = vec![
        (
            "general.architecture",
            Value::String(architecture.to_string()),
        ),
        ("general.type", Value::String("adapter".into())),
        (
            "general.name",
            Value::String("slmforge LoRA adapter".into()),
        ),
        ("adapter.type", Value::String("lora".into())),
        ("adapter.lora.alpha", Value::F32(llama_cpp_alpha(lora))),
        ("general.quantization_version", Value::U32(2)),
    ];
    write_gguf_file(path, &md, &qs)?;
    Ok(fallbacks)
}

fn write_gguf_file(path: &Path, md: &[(&str, Value)], qs: &[(String, QTensor)]) -> Result<()> {
    let tmp = path.with_extension("gguf.tmp");
    {
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::new(f);
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut w, &md_refs, &t_refs)
            .with_context(|| format!("writing {}", path.display()))?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Reads a llama.cpp GGUF LoRA adapter into the training layout. The alpha
/// must be stored as f32, as llama.cpp requires.
pub fn read_gguf_adapter(path: &Path, device: &Device) -> Result<Adapter> {
    let mut f = GgufFile::open(path)?;
    if f.string("general.type").ok() != Some("adapter")
        || f.string("adapter.type").ok() != Some("lora")
    {
        bail!(
            "{} is not a GGUF LoRA adapter (general.type / adapter.type)",
            path.display()
        )
    }
    let alpha = match f.get("adapter.lora.alpha") {
        Some(Value::F32(a)) => *a as f64,
        Some(_) => bail!(
            "{}: adapter.lora.alpha is not f32 (llama.cpp would ignore it)",
            path.display()
        ),
        None => bail!("{}: adapter.lora.alpha is missing", path.display()),
    };
    let names: Vec<String> = f.tensor_names_in_order();
    let mut tensors = HashMap::new();
    let mut targets = Vec::new();
    let mut rank = None;
    for name in names {
        let (_, target, is_b) = parse_training_name(&name)
            .with_context(|| format!("unexpected adapter tensor {name}"))?;
        let t = f.tensor_f32(&name, device)?;
        if is_b {
            rank = Some(t.dim(1)?);
        }
        if !targets.contains(&target) {
            targets.push(target);
        }
        tensors.insert(name, t);
    }
    targets.sort();
    let rank = rank.context("the adapter holds no lora_b tensor")?;
    let lora = LoraConfig {
        rank,
        alpha,
        dropout: 0.0,
        targets,
        rslora: false,
    };
    Ok(Adapter {
        config: AdapterConfig::new(lora, None, None),
        tensors,
    })
}

/// What [`write_merged_gguf`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MergedReport {
    /// Adapted projections written in the requested type.
    pub requantised: usize,
    /// Adapted projections whose shape did not fit the requested type's
    /// blocks, with the type used instead.
    pub fallbacks: Vec<(String, String)>,
    /// Base tensors copied as stored.
    pub copied: usize,
}

/// The type a `[.., last]` tensor gets when `want` does not fit its blocks:
/// q8_0 (blocks of 32) when it fits, else f16.
fn fitting_quant(want: GgmlDType, last: usize) -> GgmlDType {
    if last.is_multiple_of(want.block_size()) {
        want
    } else if last.is_multiple_of(GgmlDType::Q8_0.block_size()) {
        GgmlDType::Q8_0
    } else {
        GgmlDType::F16
    }
}

/// llama.cpp's `general.file_type` ("mostly" this type) of a quantisation.
fn llama_file_type(q: GgmlDType) -> Option<u32> {
    Some(match q {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 12,
        GgmlDType::Q4K => 15,
        GgmlDType::Q5K => 17,
        GgmlDType::Q6K => 18,
        _ => return None,
    })
}

/// Writes `model`'s base file with every adapted projection replaced by the
/// merged weight, re-quantised to `quant`; all other tensors and the
/// metadata (tokenizer, hyper-parameters) are copied as stored, except
/// `general.file_type` (set from `quant`) and, when given, the chat template
/// (engines without a template file then prompt in the training format).
pub fn write_merged_gguf(
    base: &Path,
    model: &CausalLm,
    out: &Path,
    quant: GgmlDType,
    chat_template: Option<&str>,
) -> Result<MergedReport> {
    let lora = model
        .lora_config()
        .context("the model has no adapter to merge")?
        .clone();
    let mut f = GgufFile::open(base)?;
    let mut report = MergedReport::default();
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    let cpu = Device::Cpu;
    for name in f.tensor_names_in_order() {
        let adapted = name.strip_prefix("blk.").and_then(|rest| {
            let (layer, stem) = rest.split_once('.')?;
            let stem = stem.strip_suffix(".weight")?;
            let t = LoraTarget::ALL
                .into_iter()
                .find(|t| t.gguf_name() == stem)?;
            Some((layer.parse::<usize>().ok()?, t))
        });
        match adapted {
            Some((layer, t)) if lora.targets_set(t) => {
                let w = model.merged_weight(layer, t)?.to_device(&cpu)?;
                let last = *w.dims().last().unwrap_or(&0);
                let q = fitting_quant(quant, last);
                if q != quant {
                    report.fallbacks.push((name.clone(), quant_name(q)));
                } else {
                    report.requantised += 1;
                }
                qs.push((name, QTensor::quantize(&w, q)?));
            }
            _ => {
                report.copied += 1;
                let q = f.qtensor(&name, &cpu)?;
                qs.push((name, q));
            }
        }
    }
    let mut md: Vec<(String, Value)> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .filter(|(k, _)| !(chat_template.is_some() && k.as_str() == "tokenizer.chat_template"))
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(t) = chat_template {
        md.push((
            "tokenizer.chat_template".into(),
            Value::String(t.to_string()),
        ));
    }
    if let Some(ft) = llama_file_type(quant) {
        md.push(("general.file_type".into(), Value::U32(ft)));
    }
    md.sort_by(|a, b| a.0.cmp(&b.0));
    let md: Vec<(&str, Value)> = md.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    write_gguf_file(out, &md, &qs)?;
    Ok(report)
}
