//! `slmforge bench TARGET`: benchmarks of the hot paths, one file per
//! target (ingest, redact, embed, cluster, tune, route, lm-infer / lm-train /
//! lm-gemm) plus the shared measuring helpers ([`measure`]). Each prints a
//! human summary to stderr and one JSON object with the figures to stdout.
//! Timing lives here, never in tests.

pub mod cluster;
pub mod embed;
pub mod ingest;
pub mod lm;
pub mod measure;
pub mod redact;
pub mod route;
pub mod tune;
