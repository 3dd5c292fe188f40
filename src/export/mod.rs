//! Phase 6, deployable artifacts: `slmforge export adapters/RUN`.
//!
//! Per tuned cluster of the run, the adapter in the formats serving engines
//! load — a Hugging Face PEFT directory (vLLM, LoRAX, PEFT), a llama.cpp
//! GGUF LoRA adapter (llama-server, Ollama) and a merged, re-quantised GGUF
//! model for engines without LoRA — plus the chat template that renders our
//! training format (`chat_template.jinja`), `DEPLOY.md` with the commands
//! to serve them, an Ollama `Modelfile` and `manifest.json` (every file with
//! its checksum). Formats are in [`crate::ml::lm::export`].
//!
//! Steps: read the run (settings, results) → load the base once → per
//! cluster: apply the adapter, write each format, **verify** it (reload it in
//! our engine and compare logits and greedy answers with the trained
//! adapter, and check that the adapter changes the base's output: serving
//! engines silently serve the base model when an adapter's names match
//! nothing, so "it loaded" proves nothing) → template, deploy notes,
//! manifest.

mod deploy;
mod verify;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::Device;

use crate::artifact::adapter::{
    cluster_dir, read_prompt, read_results, read_run_settings, ClusterResult, ClusterStatus,
    EVAL_FILE, PROMPT_FILE,
};
use crate::artifact::export::{
    gguf_adapter_name, merged_name, BaseModel, EvalFigures, ExportedAdapter, ExportedFile, FileSum,
    Manifest, CHAT_TEMPLATE_FILE, DEPLOY_FILE, MANIFEST_FILE, MANIFEST_FORMAT, MODELFILE,
    MODELFILE_ADAPTER, PEFT_DIR, SIDECAR_FILE,
};
use crate::ml::lm::export::{
    quant_name, read_gguf_adapter, read_peft, write_gguf_adapter, write_merged_gguf, write_peft,
    TensorDtype, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE,
};
use crate::ml::lm::lora::ADAPTER_FILE;
use crate::ml::lm::template::serving_template;
use crate::ml::lm::{self, LanguageModel};
use crate::util::usage;

pub use deploy::llama_server_command;
pub use verify::{Tolerances, VerifyConfig};

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Peft,
    Gguf,
    Merged,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Peft, Format::Gguf, Format::Merged];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Peft => "peft",
            Format::Gguf => "gguf",
            Format::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s.trim())
    }
}

/// Everything `export` needs besides its inputs.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub formats: Vec<Format>,
    /// Adapter tensor type (PEFT: f16 or f32; GGUF: f16, f32 or q8_0).
    pub dtype: TensorDtype,
    /// Weight type of the merged model's adapted projections.
    pub merged_quant: GgmlDType,
    /// Only these clusters (default: every tuned cluster of the run).
    pub clusters: Option<Vec<i32>>,
    pub verify: VerifyConfig,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            formats: Format::ALL.to_vec(),
            dtype: TensorDtype::F16,
            merged_quant: GgmlDType::Q8_0,
            clusters: None,
            verify: VerifyConfig::default(),
        }
    }
}

/// What `export` produced.
pub struct ExportOutput {
    pub manifest: Manifest,
    pub out: PathBuf,
    /// Exported files that failed verification (`format cluster-ID: why`).
    pub failures: Vec<String>,
}

/// The tuned clusters of a run that `cfg` selects.
fn selected(cfg: &ExportConfig, results: Vec<ClusterResult>) -> Result<Vec<ClusterResult>> {
    let tuned =
        |r: &ClusterResult| matches!(r.status, ClusterStatus::Tuned | ClusterStatus::AlreadyDone);
    match &cfg.clusters {
        None => {
            let v: Vec<ClusterResult> = results.into_iter().filter(tuned).collect();
            if v.is_empty() {
                return Err(usage("the run has no tuned cluster to export"));
            }
            Ok(v)
        }
        Some(ids) => {
            let mut seen = std::collections::BTreeSet::new();
            ids.iter()
                .filter(|id| seen.insert(**id))
                .collect::<Vec<_>>()
        }
        .into_iter()
        .map(|id| {
            let r = results
                .iter()
                .find(|r| r.cluster == *id)
                .ok_or_else(|| usage(format!("cluster {id} is not part of this run")))?;
            if !tuned(r) {
                return Err(usage(format!(
                    "cluster {id} was not tuned in this run ({:?})",
                    r.status
                )));
            }
            Ok(r.clone())
        })
        .collect(),
    }
}

fn file_sum(out: &Path, path: &Path) -> Result<FileSum> {
    Ok(FileSum {
        path: rel(out, path),
        sha256: crate::util::sha256_file(path)?,
        bytes: std::fs::metadata(path)?.len(),
    })
}

fn rel(out: &Path, path: &Path) -> String {
    path.strip_prefix(out)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The base's catalogue entry: by id, or by its main file's name (a run
/// records the path it resolved).
fn base_info(lm: &LanguageModel, spec: &str, settings_spec: &str) -> Result<BaseModel> {
    let file_name = lm
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = crate::ml::models::find(spec)
        .or_else(|| crate::ml::models::find(settings_spec))
        .or_else(|| {
            crate::ml::models::catalog().iter().find(|e| {
                Path::new(e.main_file().dest)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    == Some(file_name.clone())
            })
        });
    let gguf = lm::gguf::GgufFile::open(lm.path())?;
    let arch = gguf
        .string("general.architecture")
        .unwrap_or("llama")
        .to_string();
    // A base outside the catalogue: the repository its GGUF names, if any.
    let repo_of = |key: &str| {
        gguf.string(key).ok().map(|u| {
            u.trim_start_matches("https://huggingface.co/")
                .trim_end_matches('/')
                .to_string()
        })
    };
    let gguf_repo = repo_of("general.base_model.0.repo_url")
        .or_else(|| repo_of("general.source.repo_url"))
        .or_else(|| repo_of("general.source.huggingface.repository"));
    Ok(BaseModel {
        id: entry.map(|e| e.id.to_string()).unwrap_or(file_name.clone()),
        hf_repo: entry
            .map(|e| e.hf_repo.to_string())
            .or(gguf_repo)
            .unwrap_or(file_name),
        // Absolute: DEPLOY.md's commands and the Modelfile run from elsewhere.
        path: std::fs::canonicalize(lm.path())
            .unwrap_or_else(|_| lm.path().to_path_buf())
            .to_string_lossy()
            .into_owned(),
        sha256: lm.base_sha256()?,
        architecture: arch,
    })
}

fn eval_figures(dir: &Path) -> Option<EvalFigures> {
    let bytes = std::fs::read(dir.join(EVAL_FILE)).ok()?;
    let e: crate::artifact::adapter::EvalReport = serde_json::from_slice(&bytes).ok()?;
    Some(EvalFigures {
        test_calls: e.test_calls,
        evaluated: e.evaluated,
        base_exact_match: e.base.exact_match,
        tuned_exact_match: e.tuned.exact_match,
    })
}

/// Exports every selected cluster of `run_dir` into `out`. `dataset_dir`
/// supplies the verification prompts (the cluster's own calls).
pub fn run(
    cfg: &ExportConfig,
    run_dir: &Path,
    dataset_dir: &Path,
    out: &Path,
) -> Result<ExportOutput> {
    if cfg.formats.is_empty() {
        return Err(usage("choose at least one export format"));
    }
    let settings = read_run_settings(run_dir)?;
    let targets = selected(cfg, read_results(run_dir)?)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let device = Device::Cpu;
    let base_spec = targets[0].base_model.clone();
    if let Some(other) = targets.iter().find(|t| t.base_model != base_spec) {
        return Err(usage(format!(
            "the run's clusters use different base models ({base_spec}, {}): export them with --cluster, one base at a time",
            other.base_model
        )));
    }
    // The run records the path it resolved (relative to where it ran); the
    // catalogue id of the run's settings finds the same file from elsewhere
    // (the adapter's recorded sha256 is checked when it is applied).
    let path = crate::ml::models::resolve_model(&base_spec)
        .or_else(|_| crate::ml::models::resolve_model(&settings.base_model))?;
    let mut lm = lm::load(&path, &device)?;
    let base = base_info(&lm, &base_spec, &settings.base_model)?;
    let base_model = lm.model.clone();
    let prompts = verify::Prompts::read(dataset_dir, &settings)?;
    let mut adapters = Vec::new();
    let mut failures = Vec::new();
    let bar = crate::util::count_bar(targets.len() as u64, "exporting");
    for t in &targets {
        bar.set_message(format!("cluster {}", t.cluster));
        let a = export_cluster(cfg, &mut lm, &base_model, &base, t, run_dir, out, &prompts)?;
        for f in &a.files {
            if !f.verification.passed {
                failures.push(format!(
                    "{} {}: {}",
                    f.format,
                    a.name,
                    f.verification.failure.as_deref().unwrap_or("failed")
                ));
            }
        }
        adapters.push(a);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let template = serving_template(lm.chat.source(), lm.chat.supports_tools());
    crate::util::write_atomic(&out.join(CHAT_TEMPLATE_FILE), template.as_bytes())?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        slmforge_version: env!("CARGO_PKG_VERSION").to_string(),
        run: run_dir.to_string_lossy().into_owned(),
        base_model: base,
        chat_template: CHAT_TEMPLATE_FILE.to_string(),
        formats: cfg.formats.iter().map(|f| f.as_str().to_string()).collect(),
        adapters,
    };
    crate::util::write_atomic(
        &out.join(DEPLOY_FILE),
        deploy::markdown(&manifest, out).as_bytes(),
    )?;
    for a in &manifest.adapters {
        if let Some(text) = deploy::modelfile(&manifest, a, true) {
            crate::util::write_atomic(&out.join(&a.name).join(MODELFILE), text.as_bytes())?;
        }
        if let Some(text) = deploy::modelfile(&manifest, a, false) {
            crate::util::write_atomic(&out.join(&a.name).join(MODELFILE_ADAPTER), text.as_bytes())?;
        }
    }
    crate::util::write_json(&out.join(MANIFEST_FILE), &manifest)?;
    Ok(ExportOutput {
        manifest,
        out: out.to_path_buf(),
        failures,
    })
}

#[allow(clippy::too_many_arguments)]
fn export_cluster(
    cfg: &ExportConfig,
    lm: &mut LanguageModel,
    base_model: &lm::CausalLm,
    base: &BaseModel,
    t: &ClusterResult,
    run_dir: &Path,
    out: &Path,
    prompts: &verify::Prompts,
) -> Result<ExportedAdapter> {
    let src = cluster_dir(run_dir, t.cluster);
    lm.model = base_model.clone();
    let acfg = lm
        .apply_adapter(&src)
        .with_context(|| format!("loading the adapter of cluster {}", t.cluster))?;
    let lora = acfg.lora.clone();
    let tensors = lm.model.lora_tensors();
    let name = format!("cluster-{}", t.cluster);
    let dir = out.join(&name);
    std::fs::create_dir_all(&dir)?;
    let prune = read_prompt(&src.join(PROMPT_FILE))
        .ok()
        .and_then(|p| p.prune);
    let reference = verify::Reference::new(
        lm,
        base_model,
        &prompts.for_cluster(t.cluster),
        prune.as_ref(),
        &cfg.verify,
    )
    .with_context(|| format!("verifying the exports of cluster {}", t.cluster))?;
    let mut files = Vec::new();
    let dt = cfg.dtype.as_str().to_string();
    let model_cfg = lm.model.config().clone();
    for f in &cfg.formats {
        let file = match f {
            Format::Peft => {
                // safetensors has no q8_0: a q8_0 export writes PEFT in f16.
                let pdt = match cfg.dtype {
                    TensorDtype::Q8_0 => TensorDtype::F16,
                    d => d,
                };
                let pdir = dir.join(PEFT_DIR);
                write_peft(&pdir, &lora, &tensors, &model_cfg, &base.hf_repo, pdt)?;
                let sidecar = serde_json::json!({
                    "format": "slmforge-adapter-sidecar-v1",
                    "base_model": base.id, "base_model_sha256": base.sha256,
                    "layout": "hf (q/k lora_B rows in the Hugging Face order)",
                    "trained_from": src.join(ADAPTER_FILE).to_string_lossy(),
                    "train_data_sha256": t.train_data_sha256,
                    "prune": prune,
                    "eval": eval_figures(&src),
                });
                crate::util::write_json(&pdir.join(SIDECAR_FILE), &sidecar)?;
                let back = read_peft(&pdir, &model_cfg, lm.model.device())?;
                let v = reference.check_adapter(
                    base_model,
                    &back,
                    cfg.verify.tolerances.for_dtype(pdt),
                )?;
                ExportedFile {
                    format: f.as_str().into(),
                    path: rel(out, &pdir),
                    files: [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, SIDECAR_FILE]
                        .iter()
                        .map(|n| file_sum(out, &pdir.join(n)))
                        .collect::<Result<_>>()?,
                    dtype: pdt.as_str().into(),
                    fallbacks: if pdt != cfg.dtype {
                        vec!["all tensors: f16 (safetensors has no q8_0)".into()]
                    } else {
                        Vec::new()
                    },
                    verification: v,
                }
            }
            Format::Gguf => {
                let p = dir.join(gguf_adapter_name(&name, cfg.dtype.as_str()));
                let fb = write_gguf_adapter(&p, &base.architecture, &lora, &tensors, cfg.dtype)?;
                let back = read_gguf_adapter(&p, lm.model.device())?;
                let tol = if fb.is_empty() {
                    cfg.verify.tolerances.for_dtype(cfg.dtype)
                } else {
                    cfg.verify
                        .tolerances
                        .for_dtype(cfg.dtype)
                        .max(cfg.verify.tolerances.f16)
                };
                let v = reference.check_adapter(base_model, &back, tol)?;
                ExportedFile {
                    format: f.as_str().into(),
                    path: rel(out, &p),
                    files: vec![file_sum(out, &p)?],
                    dtype: dt.clone(),
                    fallbacks: fb.into_iter().map(|n| format!("{n}: f16")).collect(),
                    verification: v,
                }
            }
            Format::Merged => {
                let q = quant_name(cfg.merged_quant);
                let p = dir.join(merged_name(&name, &q));
                let template = serving_template(lm.chat.source(), lm.chat.supports_tools());
                let rep =
                    write_merged_gguf(lm.path(), &lm.model, &p, cfg.merged_quant, Some(&template))?;
                let merged = lm::load(&p, lm.model.device())?;
                let v = reference.check_model(
                    &merged.model,
                    verify::Measure::MeanKl(cfg.verify.tolerances.merged(cfg.merged_quant)),
                )?;
                ExportedFile {
                    format: f.as_str().into(),
                    path: rel(out, &p),
                    files: vec![file_sum(out, &p)?],
                    dtype: q,
                    fallbacks: rep
                        .fallbacks
                        .into_iter()
                        .map(|(n, q)| format!("{n}: {q}"))
                        .collect(),
                    verification: v,
                }
            }
        };
        files.push(file);
    }
    lm.model = base_model.clone();
    Ok(ExportedAdapter {
        cluster: t.cluster,
        name: name.clone(),
        label_terms: t.label_terms.clone(),
        rank: lora.rank,
        alpha: lora.alpha,
        rslora: lora.rslora,
        targets: lora
            .targets
            .iter()
            .map(|t| t.hf_name().to_string())
            .collect(),
        train_data_sha256: t.train_data_sha256.clone(),
        files,
        eval: eval_figures(&src),
        route: name,
        prune,
    })
}
