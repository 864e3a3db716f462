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
//! - [`simd`]: AVX2 / AVX-512 kernel paths ([`Simd`]), each tested against [`Scalar`].
//! - [`prefill`]: a block of tokens at once (matrix x matrix projections).
#![no_std]
#![deny(unsafe_code)]
// unsafe is allowed only in the SIMD module (intrinsics need raw-pointer loads).

pub mod config;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod math;
pub mod prefill;
pub mod quant;
pub mod sample;
#[allow(unsafe_code)]
pub mod simd;
pub mod state;
pub mod step;
pub mod tensor;
pub mod weights;

pub use config::ModelConfig;
pub use error::{Error, Result};
pub use gguf::Gguf;
pub use kernels::{Kernels, Scalar};
pub use sample::{Sampler, SamplingParams};
pub use simd::{Isa, Simd};
pub use step::{Scratch, step_embedding, step_token};
pub use tensor::{DType, WeightMatrix};
pub use weights::{LayerWeights, Model, ModelLayout, TensorRef};
