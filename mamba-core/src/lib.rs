//! mamba-core: Mamba-1 inference with no operating system and no allocator.
//!
//! - [`gguf`]: a zero-copy reader over the model bytes (flash or mmap).
//! - [`weights`]: resolves the `mamba` architecture's tensors into a [`Model`] view;
//!   weights are borrowed, never copied.
//! - [`step`]: one recurrent step for a token (-> logits) or an input vector
//!   (-> final hidden state), with caller-provided state and scratch.
//! - [`state`]: state layout, reset, save/restore as checked bytes.
//! - [`sample`]: seeded sampling shared by every front end.
//! - [`kernels`]: the compute kernels behind a trait; [`Scalar`] is the reference.
#![no_std]
#![deny(unsafe_code)]

pub mod config;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod math;
pub mod quant;
pub mod sample;
pub mod state;
pub mod step;
pub mod tensor;
pub mod weights;

pub use config::ModelConfig;
pub use error::{Error, Result};
pub use gguf::Gguf;
pub use kernels::{Kernels, Scalar};
pub use sample::{Sampler, SamplingParams};
pub use step::{Scratch, step_embedding, step_token};
pub use tensor::{DType, WeightMatrix};
pub use weights::{LayerWeights, Model, ModelLayout, TensorRef};
