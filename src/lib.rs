//! slmforge: turn production LLM call logs into small specialised models.
//!
//! The folder tree reads as the pipeline (see ARCHITECTURE.md for the code
//! map and the import rules the `tidy` test enforces):
//!
//! * [`cli`]: the command line (the only module that knows clap);
//! * [`ingest`] → [`cluster`] → [`select`] → [`tune`] → [`route`]: the
//!   stages, each a `Config` and a `run`, meeting only in [`artifact`],
//!   [`call`] and [`ml`];
//! * [`redact`]: PII and secret redaction (used by ingest, before anything is written);
//! * [`artifact`]: every on-disk format and its reader/writer;
//! * [`ml`]: models (causal LM, embedder, call features, catalogue,
//!   runtime), free of stages;
//! * [`dev`]: developer tools (synthetic traffic, benchmarks).

pub mod artifact;
pub mod call;
pub mod cli;
pub mod cluster;
pub mod dev;
pub mod export;
pub mod ingest;
pub mod ml;
pub mod redact;
pub mod report;
pub mod route;
pub mod select;
pub mod tune;
pub mod util;
