//! Developer tools, apart from the pipeline: synthetic agent traffic with
//! ground truth ([`synth`]) and the benchmarks of the hot paths ([`bench`]).
//! Nothing outside `dev/` (and the CLI that dispatches to it) imports it.

pub mod bench;
pub mod synth;
