//! The export artifacts `export` writes under `RUN/export/` and `route`
//! reads: `manifest.json` ([`Manifest`]: every exported file with its
//! checksum, per cluster) and the file names of an export.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::adapter::Rate;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: &str = "slmforge-export-v1";
pub const DEPLOY_FILE: &str = "DEPLOY.md";
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// Our own fields next to a PEFT directory's `adapter_config.json`.
pub const SIDECAR_FILE: &str = "slmforge_adapter.json";
/// The default export directory inside a run.
pub const EXPORT_DIR: &str = "export";
/// Per adapter: the PEFT directory inside `cluster-ID/`.
pub const PEFT_DIR: &str = "peft";
/// Per adapter: Ollama's Modelfile (the merged model when exported).
pub const MODELFILE: &str = "Modelfile";
/// Per adapter: Ollama's Modelfile with the base and the GGUF adapter.
pub const MODELFILE_ADAPTER: &str = "Modelfile.adapter";

/// `cluster-ID-lora-DTYPE.gguf`: the llama.cpp adapter of a cluster.
pub fn gguf_adapter_name(name: &str, dtype: &str) -> String {
    format!("{name}-lora-{dtype}.gguf")
}

/// `cluster-ID-merged-QUANT.gguf`: a cluster's merged model.
pub fn merged_name(name: &str, quant: &str) -> String {
    format!("{name}-merged-{quant}.gguf")
}

/// The base model every adapter of the export belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// Catalogue id, or the file name when the base is not in the catalogue.
    pub id: String,
    /// The Hugging Face repository PEFT's `base_model_name_or_path` names:
    /// the catalogue's, else the one the GGUF metadata names, else the file
    /// name (then set it by hand in `adapter_config.json` for vLLM/LoRAX).
    pub hf_repo: String,
    /// The GGUF file as the run resolved it.
    pub path: String,
    pub sha256: String,
    pub architecture: String,
}

/// One exported file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// `peft`, `gguf` or `merged`.
    pub format: String,
    /// Relative to the export directory (a directory for `peft`).
    pub path: String,
    /// Per file inside, for a directory.
    pub files: Vec<FileSum>,
    /// Tensor type (`f16`, `q8_0`...).
    pub dtype: String,
    /// Tensors that could not take `dtype` and the type they got instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    pub verification: Verification,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The exported file reloaded in our engine and compared with the trained
/// adapter on a few prompts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub prompts: usize,
    /// The figure held to `tolerance`: `max_logit_diff` (adapter files) or
    /// `mean_kl` (merged models).
    pub measure: String,
    /// Largest |logit difference| against the trained adapter, over every
    /// position of every prompt.
    pub max_logit_diff: f32,
    /// Largest KL(trained ‖ exported) of one position's next-token
    /// distribution, in nats, and its mean over positions.
    pub max_kl: f32,
    pub mean_kl: f32,
    /// Share of positions whose most likely next token is the same.
    pub top1_agreement: f32,
    pub tolerance: f32,
    /// Prompts whose greedy answer equals the trained adapter's.
    pub same_greedy: usize,
    /// Largest |logit difference| between the trained adapter and the base
    /// model: an adapter that changes nothing would be 0.
    pub base_logit_diff: f32,
    /// Mean KL(trained ‖ base): what the adapter changes, in the merged
    /// model's measure.
    pub base_mean_kl: f32,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Verification {
    /// The measured figure against its tolerance, for people:
    /// "max logit diff 0.0153 (tolerance 0.05)" or
    /// "mean KL 0.0032 nats (tolerance 0.02; max 0.1967, same top token at 97.9% of positions)".
    pub fn describe(&self) -> String {
        if self.measure == "mean_kl" {
            format!(
                "mean KL {:.4} nats (tolerance {}; max {:.4}, same top token at {:.1}% of positions)",
                self.mean_kl,
                self.tolerance,
                self.max_kl,
                100.0 * self.top1_agreement
            )
        } else {
            format!(
                "max logit diff {:.4} (tolerance {})",
                self.max_logit_diff, self.tolerance
            )
        }
    }

    /// What the adapter changes in the base model, in the same measure.
    pub fn base_change(&self) -> String {
        if self.measure == "mean_kl" {
            format!("mean KL {:.3}", self.base_mean_kl)
        } else {
            format!("{:.3}", self.base_logit_diff)
        }
    }
}

/// Base vs tuned on the test split, from `eval.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalFigures {
    pub test_calls: usize,
    pub evaluated: usize,
    pub base_exact_match: Rate,
    pub tuned_exact_match: Rate,
}

/// One cluster's adapter in every exported format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedAdapter {
    pub cluster: i32,
    /// Adapter and route name (`cluster-ID`): the vLLM/LoRAX model name,
    /// the route in `routing.json`.
    pub name: String,
    pub label_terms: Vec<String>,
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    pub targets: Vec<String>,
    pub train_data_sha256: Option<String>,
    pub files: Vec<ExportedFile>,
    pub eval: Option<EvalFigures>,
    /// The name of this workload's route in `routing.json`; whether the
    /// route sends traffic here (and why not) is decided there.
    pub route: String,
    /// The adapter was trained on pruned prompts: apply this rule to a
    /// request before generating with it (static system prompt → marker,
    /// static tools → their names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::ml::lm::prune::PruneRule>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub slmforge_version: String,
    /// The adapter run exported.
    pub run: String,
    pub base_model: BaseModel,
    /// Relative to the export directory.
    pub chat_template: String,
    pub formats: Vec<String>,
    pub adapters: Vec<ExportedAdapter>,
}

impl Manifest {
    pub fn adapter(&self, cluster: i32) -> Option<&ExportedAdapter> {
        self.adapters.iter().find(|a| a.cluster == cluster)
    }
}

impl ExportedAdapter {
    pub fn file(&self, format: &str) -> Option<&ExportedFile> {
        self.files.iter().find(|f| f.format == format)
    }
}

/// Reads `EXPORT_DIR/manifest.json`.
pub fn read_manifest(export_dir: &Path) -> Result<Manifest> {
    let path = export_dir.join(MANIFEST_FILE);
    let m: Manifest = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        m.format == MANIFEST_FORMAT,
        "{} has format {:?}, expected {MANIFEST_FORMAT}",
        path.display(),
        m.format
    );
    Ok(m)
}
