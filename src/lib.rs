//! slmforge: turn production LLM call logs into small specialised models.
//!
//! One module per pipeline stage; stages talk only through typed artifacts
//! (see ARCHITECTURE.md).

pub mod bench;
pub mod call;
pub mod cli;
pub mod lm;
pub mod util;
