//! LoRA adapters: configuration, the seven projection targets, and the adapter
//! files (safetensors in the "training layout" plus `adapter_config.json`).
//!
//! Training layout, as written by [`write_adapter`]:
//! * tensor names are llama.cpp's adapter names, `blk.{i}.{target}.weight.lora_a`
//!   (`[rank, in]`) and `blk.{i}.{target}.weight.lora_b` (`[out, rank]`), with
//!   `target` one of `attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down`;
//! * all f32, `q`/`k` in the GGUF (llama.cpp-permuted) row order the model
//!   trains in: converting to Hugging Face order permutes the rows of
//!   `attn_q`/`attn_k` `lora_b` (see shared/reference/adapters.md);
//! * the safetensors header metadata carries `format = slmforge-lora-v1` and
//!   the config JSON under `lora_config`.
//!
//! The applied delta is `scale · B · A` with `scale = alpha / rank`
//! (`alpha / sqrt(rank)` with rsLoRA), as in PEFT.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The projections of a decoder block that can carry an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// Hugging Face / PEFT module name (`q_proj`...).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// Short name (`q`, `gate`...), as the command line takes it.
    pub fn short_name(self) -> &'static str {
        self.hf_name().trim_end_matches("_proj")
    }

    /// GGUF tensor stem (`attn_q`...).
    pub fn gguf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "attn_q",
            LoraTarget::K => "attn_k",
            LoraTarget::V => "attn_v",
            LoraTarget::O => "attn_output",
            LoraTarget::Gate => "ffn_gate",
            LoraTarget::Up => "ffn_up",
            LoraTarget::Down => "ffn_down",
        }
    }

    /// Accepts `q_proj`, `q`, `attn_q`, `o_proj`/`attn_output`...
    pub fn parse(s: &str) -> Option<LoraTarget> {
        let s = s.trim().to_ascii_lowercase();
        LoraTarget::ALL.into_iter().find(|t| {
            s == t.hf_name() || s == t.gguf_name() || s == t.hf_name().trim_end_matches("_proj")
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Tensor names of this target's A and B in the training layout.
    pub fn tensor_names(self, layer: usize) -> (String, String) {
        let stem = format!("blk.{layer}.{}.weight", self.gguf_name());
        (format!("{stem}.lora_a"), format!("{stem}.lora_b"))
    }
}

/// LoRA hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Dropout on the adapter input during training (PEFT's `lora_dropout`).
    #[serde(default)]
    pub dropout: f64,
    pub targets: Vec<LoraTarget>,
    /// Scale by `alpha / sqrt(rank)` instead of `alpha / rank`.
    #[serde(default)]
    pub rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: LoraTarget::ALL.to_vec(),
            rslora: false,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            bail!("LoRA rank must be at least 1")
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("LoRA dropout must be in [0, 1), got {}", self.dropout)
        }
        if self.targets.is_empty() {
            bail!("LoRA needs at least one target module")
        }
        Ok(())
    }

    pub fn targets_set(&self, t: LoraTarget) -> bool {
        self.targets.contains(&t)
    }
}

/// `adapter_config.json`: the LoRA config plus what base model it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always `slmforge-lora-v1`.
    pub format: String,
    #[serde(flatten)]
    pub lora: LoraConfig,
    /// SHA-256 of the base GGUF file the adapter was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_sha256: Option<String>,
    /// File name of the base model (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Tensor row layout: always `gguf` (q/k rows as in the GGUF file).
    pub layout: String,
}

pub const ADAPTER_FORMAT: &str = "slmforge-lora-v1";
pub const ADAPTER_FILE: &str = "adapter.safetensors";
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

impl AdapterConfig {
    pub fn new(
        lora: LoraConfig,
        base_model_sha256: Option<String>,
        base_model: Option<String>,
    ) -> Self {
        AdapterConfig {
            format: ADAPTER_FORMAT.to_string(),
            lora,
            base_model_sha256,
            base_model,
            layout: "gguf".to_string(),
        }
    }
}

/// An adapter read from disk.
pub struct Adapter {
    pub config: AdapterConfig,
    /// Training-layout name to f32 tensor.
    pub tensors: HashMap<String, Tensor>,
}

/// Writes `tensors` (training-layout names) to a safetensors file with the
/// config in its header metadata.
pub fn write_safetensors(
    path: &Path,
    config: &AdapterConfig,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v: Vec<f32> = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((name.clone(), t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow::anyhow!("building tensor {n}: {e}"))
        })
        .collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), ADAPTER_FORMAT.to_string());
    meta.insert("lora_config".to_string(), serde_json::to_string(config)?);
    let bytes =
        safetensors::serialize(views, Some(meta)).context("serialising adapter safetensors")?;
    crate::util::write_atomic(path, &sorted_metadata(bytes)?)
}

/// safetensors writes its `__metadata__` map in hash order, which changes
/// from process to process; sorting its keys makes the same adapter the same
/// bytes. The header keeps its length (same entries, other order).
fn sorted_metadata(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().context("safetensors header")?) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).context("safetensors header")?;
    if let Some(serde_json::Value::Object(m)) = header.get_mut("__metadata__") {
        m.sort_keys();
    }
    let text = serde_json::to_string(&header)?;
    anyhow::ensure!(text.len() <= n, "safetensors header grew when sorted");
    bytes[8..8 + text.len()].copy_from_slice(text.as_bytes());
    bytes[8 + text.len()..8 + n].fill(b' ');
    Ok(bytes)
}

/// Reads a training-layout adapter safetensors file; the config comes from
/// its metadata (or `config_override`, e.g. from `adapter_config.json`).
pub fn read_safetensors(
    path: &Path,
    config_override: Option<AdapterConfig>,
    device: &Device,
) -> Result<Adapter> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading adapter {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("parsing adapter safetensors {}", path.display()))?;
    let config = match config_override {
        Some(c) => c,
        None => {
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
                .with_context(|| format!("reading adapter header of {}", path.display()))?;
            let json = meta
                .metadata()
                .as_ref()
                .and_then(|m| m.get("lora_config").cloned())
                .with_context(|| {
                    format!("{} has no lora_config metadata; pass a directory with {ADAPTER_CONFIG_FILE}", path.display())
                })?;
            serde_json::from_str(&json)
                .with_context(|| format!("parsing lora_config in {}", path.display()))?
        }
    };
    if config.format != ADAPTER_FORMAT {
        bail!(
            "adapter {} has format {:?}, expected {ADAPTER_FORMAT}",
            path.display(),
            config.format
        )
    }
    config.lora.validate()?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            d => bail!("adapter tensor {name} has dtype {d:?}, expected F32"),
        };
        tensors.insert(
            name.clone(),
            Tensor::from_vec(data, view.shape().to_vec(), device)?,
        );
    }
    Ok(Adapter { config, tensors })
}

/// Writes an adapter directory: `adapter.safetensors` + `adapter_config.json`.
pub fn write_adapter_dir(
    dir: &Path,
    config: &AdapterConfig,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_safetensors(&dir.join(ADAPTER_FILE), config, tensors)?;
    crate::util::write_json(&dir.join(ADAPTER_CONFIG_FILE), config)
}

/// Reads an adapter from a safetensors file or a directory holding
/// `adapter.safetensors` and `adapter_config.json`.
pub fn read_adapter(path: &Path, device: &Device) -> Result<Adapter> {
    if path.is_dir() {
        let cfg_path = path.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?;
        let cfg: AdapterConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", cfg_path.display()))?;
        read_safetensors(&path.join(ADAPTER_FILE), Some(cfg), device)
    } else {
        read_safetensors(path, None, device)
    }
}

/// The file an adapter path points at (for messages).
pub fn adapter_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(ADAPTER_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reorders the rows of a q/k projection (or its LoRA `B`) from the GGUF
/// layout (llama.cpp permuted each head's rows for the interleaved rotary
/// embedding) to the Hugging Face layout (half-split rotary embedding):
/// `t.reshape(heads, d/2, 2, cols).swap(1, 2).reshape(heads·d, cols)`.
pub fn gguf_rows_to_hf(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        bail!("cannot split {rows} rows into {heads} heads of even size")
    }
    let half = rows / heads / 2;
    Ok(t.reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Inverse of [`gguf_rows_to_hf`].
pub fn hf_rows_to_gguf(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        bail!("cannot split {rows} rows into {heads} heads of even size")
    }
    let half = rows / heads / 2;
    Ok(t.reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}
