//! The C ABI of mamba: `libmamba.so` / `libmamba.a`, described by the generated
//! `include/mamba.h` (cbindgen; `scripts/gen-header.sh`).
//!
//! Shape of the API (llama.h's): an immutable, thread-shareable model
//! ([`mamba_model`]), one mutable session per stream ([`mamba_session`]), params
//! structs filled by `*_default_params()`, one status type whose numbers are never
//! reused ([`mamba_status`]), and a thread-local message for the last failure.
//!
//! Boundary rules (rustls-ffi's and blazesym's): every export checks its pointers and
//! lengths, runs inside `catch_unwind` (a panic becomes `MAMBA_ERR_PANIC`), writes its
//! out-params only on success, and `*_free(NULL)` does nothing. `extern "C"`, raw
//! pointers and `catch_unwind` live in this crate only.
//!
//! Files: [`status`] (codes), [`boundary`] (panic guard, last error, pointer checks),
//! [`model`], [`session`], [`batch`] (batched steps of several sessions),
//! [`generate`] (sampling), [`version`]; `gpu` holds the `MAMBA_BACKEND_CUDA`
//! prefill and decoder (feature `cuda`, on by default).
#![allow(non_camel_case_types)]

pub mod batch;
pub mod boundary;
pub mod generate;
#[cfg(feature = "cuda")]
mod gpu;
pub mod model;
pub mod session;
pub mod status;
pub mod version;

#[cfg(test)]
mod test_model;
#[cfg(test)]
mod tests;

pub use batch::*;
pub use boundary::mamba_last_error;
pub use generate::*;
pub use model::*;
pub use session::*;
pub use status::*;
pub use version::*;
