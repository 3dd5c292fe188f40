//! The causal language model substrate: a trainable decoder (Llama/SmolLM2,
//! Qwen 2/3, Gemma 3) with LoRA (loaded from GGUF), its tokenizer and chat
//! template, and generation. It knows nothing of the pipeline; `tune` and `generate`
//! build on this API.
//!
//! * [`model`]: the decoder and its families ([`model::Arch`]), LoRA
//!   application, training loss, KV-cache forward.
//! * [`ops`]: differentiable fused kernels (and the frozen-weight matmul).
//! * [`lora`]: LoRA config and adapter files.
//! * [`tokenizer`], [`chat`]: text to ids, conversations to text, tool calls.
//! * [`generate`]: batched greedy/sampled generation.
//! * [`decode`], [`qmat`]: the quantized decoder generation steps on
//!   (quantized weight blocks, matrix-vector kernels, unmerged LoRA).
//! * [`guide`]: schema-guided decoding (tool calls and JSON that follow their schemas).
//! * [`template`]: the chat template to ship for serving (tool convention in Jinja).
//!
//! Invariants: the base weights are never trainable (only LoRA tensors are
//! `Var`s); the prompt ids of a training example are exactly the ids
//! generation starts from; results are deterministic for a given seed.

pub mod chat;
pub mod decode;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod guide;
pub mod lora;
pub mod lora_linear;
pub mod model;
pub mod ops;
pub mod prune;
pub mod qmat;
pub mod score;
pub mod template;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use candle_core::Device;

pub use chat::{parse_reply, ChatTemplate, EncodeError, ParsedReply, TrainExample};
pub use generate::{Completion, FinishReason, GenerateOptions, GenerationStats, SamplingConfig};
pub use lora::{AdapterConfig, LoraConfig, LoraTarget};
pub use model::{CausalLm, HeadPositions, KvCache, LmConfig, TrainBatch};
pub use tokenizer::LmTokenizer;

use crate::call::{Message, Response, ToolDef};

/// Model, tokenizer and chat template loaded from one GGUF file.
pub struct LanguageModel {
    pub model: CausalLm,
    pub tokenizer: LmTokenizer,
    pub chat: ChatTemplate,
    path: PathBuf,
    sha256: OnceLock<String>,
    guide: OnceLock<guide::Guide>,
}

/// What [`LanguageModel::generate`] returns.
pub struct GenerateOutput {
    pub completions: Vec<Completion>,
    /// Decoded completions (special tokens skipped).
    pub texts: Vec<String>,
    pub stats: GenerationStats,
}

/// Loads a GGUF of a supported family (weights dequantized to f32 on `device`).
pub fn load(path: &Path, device: &Device) -> Result<LanguageModel> {
    let mut f = gguf::GgufFile::open(path)?;
    let tokenizer = LmTokenizer::from_gguf(f.metadata())
        .with_context(|| format!("tokenizer of {}", path.display()))?;
    let chat = ChatTemplate::from_gguf(f.metadata(), &tokenizer)?;
    let model = CausalLm::load(&mut f, device)
        .with_context(|| format!("loading model {}", path.display()))?;
    if tokenizer.vocab_size() > model.config().vocab_size {
        bail!(
            "tokenizer has {} tokens but the embedding only {} rows",
            tokenizer.vocab_size(),
            model.config().vocab_size
        )
    }
    Ok(LanguageModel {
        model,
        tokenizer,
        chat,
        path: path.to_path_buf(),
        sha256: OnceLock::new(),
        guide: OnceLock::new(),
    })
}

impl LanguageModel {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the GGUF file (computed once).
    pub fn base_sha256(&self) -> Result<String> {
        if let Some(s) = self.sha256.get() {
            return Ok(s.clone());
        }
        let s = crate::util::sha256_file(&self.path)?;
        Ok(self.sha256.get_or_init(|| s).clone())
    }

    /// Ids of a plain text prompt (no chat template): BOS first when the
    /// GGUF's `tokenizer.ggml.add_bos_token` says so.
    pub fn raw_prompt_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(text)?);
        Ok(ids)
    }

    /// Generation prompt ids for a conversation.
    pub fn prompt_ids(&self, messages: &[Message], tools: &[ToolDef]) -> Result<Vec<u32>> {
        chat::prompt_ids(&self.tokenizer, &self.chat, messages, tools)
    }

    /// See [`chat::encode_for_training`].
    pub fn encode_for_training(
        &self,
        messages: &[Message],
        tools: &[ToolDef],
        answer: &Response,
        max_len: usize,
    ) -> Result<TrainExample> {
        chat::encode_for_training(
            &self.tokenizer,
            &self.chat,
            messages,
            tools,
            answer,
            max_len,
        )
    }

    /// Tokens that end a reply: EOS and the template's end-of-turn token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut v = vec![self.tokenizer.eos_id(), self.chat.eot_id()];
        v.dedup();
        v
    }

    /// The guided-decoding machinery for this tokenizer (built on first use).
    pub fn guide(&self) -> Result<&guide::Guide> {
        if let Some(g) = self.guide.get() {
            return Ok(g);
        }
        let g = guide::Guide::new(&self.tokenizer)?;
        Ok(self.guide.get_or_init(|| g))
    }

    /// Constraints for `constraints` (one per prompt, `None` = free): a
    /// constraint that cannot be compiled leaves its prompt free and is
    /// reported in the second value as (prompt index, reason).
    pub fn row_guides(
        &self,
        constraints: &[Option<guide::Constraint>],
    ) -> Result<(Vec<generate::RowConstraint>, guide::Fallbacks)> {
        let mut rows: Vec<generate::RowConstraint> = Vec::with_capacity(constraints.len());
        let mut fallbacks = Vec::new();
        for (i, c) in constraints.iter().enumerate() {
            let Some(c) = c else {
                rows.push(None);
                continue;
            };
            match self.guide()?.start(c) {
                Ok(g) => rows.push(Some(Box::new(g))),
                Err(e) => {
                    fallbacks.push((i, format!("{e:#}")));
                    rows.push(None);
                }
            }
        }
        Ok((rows, fallbacks))
    }

    /// Generates for token prompts and decodes the results.
    pub fn generate(&self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<GenerateOutput> {
        self.generate_guided(prompts, Vec::new(), opts)
    }

    /// [`LanguageModel::generate`] with a constraint per prompt (see
    /// [`LanguageModel::row_guides`]; empty: none).
    pub fn generate_guided(
        &self,
        prompts: &[Vec<u32>],
        constraints: Vec<generate::RowConstraint>,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        let (completions, stats) = generate::generate_constrained(
            &self.model,
            prompts,
            constraints,
            &self.stop_ids(),
            self.tokenizer.pad_id(),
            opts,
        )?;
        let texts = completions
            .iter()
            .map(|c| self.tokenizer.decode(&c.tokens, true))
            .collect::<Result<_>>()?;
        Ok(GenerateOutput {
            completions,
            texts,
            stats,
        })
    }

    /// Loads an adapter (file or directory) onto the model, checking that it
    /// was trained on this base file when it records a checksum.
    pub fn apply_adapter(&mut self, path: &Path) -> Result<AdapterConfig> {
        let adapter = lora::read_adapter(path, self.model.device())?;
        if let Some(want) = &adapter.config.base_model_sha256 {
            let have = self.base_sha256()?;
            if *want != have {
                bail!(
                    "adapter {} was trained on a different base model (sha256 {want}, this model is {have})",
                    lora::adapter_file(path).display()
                )
            }
        }
        self.model
            .set_lora_tensors(&adapter.config.lora, &adapter.tensors)
            .with_context(|| format!("applying adapter {}", lora::adapter_file(path).display()))?;
        Ok(adapter.config)
    }

    /// The adapter config of the model's current LoRA, with this base's checksum.
    pub fn adapter_config(&self) -> Result<AdapterConfig> {
        let lora = self
            .model
            .lora_config()
            .context("the model has no LoRA adapter")?
            .clone();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        Ok(AdapterConfig::new(lora, Some(self.base_sha256()?), name))
    }

    /// Writes the current adapter as a directory (`adapter.safetensors` +
    /// `adapter_config.json`).
    pub fn save_adapter_dir(&self, dir: &Path) -> Result<()> {
        lora::write_adapter_dir(dir, &self.adapter_config()?, &self.model.lora_tensors())
    }

    /// Writes the current adapter as one safetensors file (config in its metadata).
    pub fn save_adapter_file(&self, path: &Path) -> Result<()> {
        lora::write_safetensors(path, &self.adapter_config()?, &self.model.lora_tensors())
    }
}
