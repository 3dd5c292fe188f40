//! slmforge: turn production LLM call logs into small specialised models.
//!
//! One module per pipeline stage; stages talk only through typed artifacts
//! (see ARCHITECTURE.md).

pub mod bench;
pub mod call;
pub mod cli;
pub mod cluster;
pub mod dataset;
pub mod demo;
pub mod embed;
pub mod ingest;
pub mod lm;
pub mod models;
pub mod redact;
pub mod synth;
pub mod tune;
pub mod util;
