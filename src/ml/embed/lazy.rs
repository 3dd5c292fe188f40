//! The [`TextEmbedder`] interface the stages embed through, and
//! [`LazyEmbedder`], which loads its model only when something is left to
//! embed (a fully cached run never loads it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use indicatif::ProgressBar;

use super::Embedder;
use crate::ml::models::EMBEDDER_ID;
use crate::util::usage;

/// Something that turns texts into unit sentence embeddings.
pub trait TextEmbedder {
    /// sha256 of the model weights (keys the cache).
    fn checksum(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>>;
}

impl TextEmbedder for Embedder {
    fn checksum(&self) -> &str {
        Embedder::checksum(self)
    }
    fn dim(&self) -> usize {
        Embedder::dim(self)
    }
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>> {
        self.embed_with_progress(texts, pb)
    }
}

/// An embedder that loads its model only when asked to embed something:
/// the checksum comes from the weights' verification stamp and the width
/// from `config.json`, so a fully cached run never loads the model.
pub struct LazyEmbedder {
    dir: PathBuf,
    checksum: String,
    dim: usize,
    model: OnceLock<Embedder>,
}

impl LazyEmbedder {
    /// Checks that `dir` holds an embedder; exit 2 with a hint when not.
    pub fn new(dir: &Path) -> anyhow::Result<LazyEmbedder> {
        let weights = dir.join("model.safetensors");
        let config = dir.join("config.json");
        if !weights.is_file() || !config.is_file() || !dir.join("tokenizer.json").is_file() {
            return Err(usage(format!(
                "the sentence embedder is not installed at {}: run `slmforge models fetch {EMBEDDER_ID}` (or pass --embedder DIR)",
                dir.display()
            )));
        }
        let cfg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?,
        )
        .with_context(|| format!("parsing {}", config.display()))?;
        let dim = cfg
            .get("hidden_size")
            .and_then(|v| v.as_u64())
            .with_context(|| format!("{}: no hidden_size", config.display()))?
            as usize;
        let checksum = crate::ml::models::cached_sha256(&weights)?;
        Ok(LazyEmbedder {
            dir: dir.to_path_buf(),
            checksum,
            dim,
            model: OnceLock::new(),
        })
    }

    /// Whether the model has been loaded.
    pub fn loaded(&self) -> bool {
        self.model.get().is_some()
    }

    fn model(&self) -> anyhow::Result<&Embedder> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let m = Embedder::load(&self.dir, &candle_core::Device::Cpu)?;
        anyhow::ensure!(
            m.dim() == self.dim && m.checksum() == self.checksum,
            "the embedder at {} changed while loading",
            self.dir.display()
        );
        Ok(self.model.get_or_init(|| m))
    }
}

impl TextEmbedder for LazyEmbedder {
    fn checksum(&self) -> &str {
        &self.checksum
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str], pb: &ProgressBar) -> anyhow::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model()?.embed_with_progress(texts, pb)
    }
}
