//! Models, free of the pipeline's stages: the causal LM with LoRA ([`lm`]),
//! the sentence embedder ([`embed`]), call featurisation ([`features`]), the
//! model catalogue and its one resolve function ([`models`]), and the process
//! runtime set-up ([`runtime`]). Nothing here knows clap, a stage, or an
//! artifact's file name.

pub mod embed;
pub mod features;
pub mod lm;
pub mod models;
pub mod runtime;
