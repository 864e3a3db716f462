//! The std side of the mamba runtime: model files on disk (GGUF through mmap, HF
//! checkpoint folders), the GGUF writer behind `mamba-cli convert`, sessions, and the
//! CPU kernels with threads and SIMD. The `mamba-cli` program is `src/main.rs`.

pub mod aligned;
pub mod cpu;
pub mod error;
pub mod generate;
pub mod gguf_write;
pub mod hf;
pub mod model;
pub mod prefill;
pub mod safetensors;
pub mod session;
pub mod tokenizer;

pub use error::{Error, Result};
pub use model::LoadedModel;
pub use session::Session;
