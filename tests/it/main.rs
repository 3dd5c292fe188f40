//! The one integration-test binary: every test module is declared here.
//! Tests that need the real model files run when they are present
//! (`$SLMFORGE_MODELS` or `./models`) and print SKIPPED when not.

mod cluster;
mod common;
mod embed;
mod export;
mod families;
mod guide;
mod ingest;
mod lm;
mod models;
mod pii_eval;
mod qmat;
mod redact;
mod run;
mod select;
mod serving;
mod synth;
mod template;
mod tidy;
mod tune;
