//! CUDA backend for Mamba-1: the hardware-aware parallel selective scan and a
//! fused causal conv1d + SiLU, as CUDA C++ kernels (`kernels/*.cu`, one op per
//! file) compiled by NVRTC at load for the device's own architecture and cached
//! on disk.
//!
//! Whole-model prefill: [`GpuModel::upload`] puts a `mamba_core::Model`'s
//! weights on the GPU once (GEMMs through cuBLAS in [`GemmPrecision`] f32,
//! tf32, f16 or bf16), and [`GpuModel::prefill`] / [`PrefillRun`] run a batch
//! of token sequences through every layer, taking and returning the recurrent
//! state in mamba-core's layout so a CPU session can continue it.
//!
//! Streaming decode for many streams: [`GpuDecoder`] keeps one state slot per
//! stream on the device and steps any subset of them at once (fused per-layer
//! kernels reading F32/F16/BF16/Q8_0/Q4_0 weights directly, cuBLAS above a
//! batch threshold, the whole step replayed from a CUDA graph).
//!
//! The CUDA libraries are loaded at run time (cudarc, dynamic loading): the
//! crate builds, and its tests pass, on machines with no CUDA at all.
//! [`GpuContext::is_available`] says why no GPU can be used, without panicking.
//!
//! ```no_run
//! use mamba_cuda::{GpuContext, ScanShape, HostScanInputs};
//! # fn main() -> Result<(), mamba_cuda::GpuError> {
//! if let Err(why) = GpuContext::is_available() {
//!     eprintln!("skipping: {why}");
//!     return Ok(());
//! }
//! let gpu = GpuContext::new(0)?;
//! let shape = ScanShape { batch: 1, len: 3, channels: 2, state: 1 };
//! let x = [0.5f32; 6];
//! let out = gpu.selective_scan_host(shape, &HostScanInputs {
//!     u: &x, delta: &x, z: None, b: &[1.0; 3], c: &[1.0; 3], a: &[-1.0, -1.0],
//!     d: None, delta_bias: None, initial_state: None, chunk_len: None,
//!     split: Default::default(),
//! })?;
//! assert_eq!(out.y.len(), 6);
//! # Ok(()) }
//! ```

//!
//! # Tuning aids (environment, read at run time)
//! - `MAMBA_CUDA_CACHE_DIR`: where compiled kernels are cached (default
//!   `$XDG_CACHE_HOME/mamba-cuda`, else `~/.cache/mamba-cuda`).
//! - `MAMBA_CUDA_NVRTC_OPTIONS`: extra NVRTC options, e.g. `-DSCAN_MIN_BLOCKS=5`
//!   to try a kernel variant (see the knobs at the top of `selective_scan.cu`).
//! - `MAMBA_CUDA_SCAN_MAX_NT`: cap on the scan's states per thread.
//! - `MAMBA_CUDA_SCAN_FUSED`: for [`ScanSplit::Auto`] calls, `0` runs a split
//!   scan as three kernels, `1` as one cooperative launch wherever it fits.
//! - The `MAMBA_CUDA_SCAN_*` settings are read once, at the first scan call
//!   of the process (each read is a lock and a scan of the environment, and a
//!   call's latency includes the host's work before its first launch).

mod buffer;
mod causal_conv1d;
mod compile;
mod context;
mod decode;
mod error;
mod gemm;
mod gpu_model;
mod loader;
mod model_ops;
mod selective_scan;

pub use buffer::{Element, GpuBuffer, MatView, MatViewMut};
pub use causal_conv1d::{ConvInputs, ConvOutput, ConvShape, MAX_CONV_WIDTH};
pub use context::GpuContext;
pub use decode::{DecodeOptions, DecodeWeights, GpuDecoder, WeightPlacement};
pub use error::{GpuError, NoGpu};
pub use gemm::GemmPrecision;
pub use gpu_model::{GpuModel, LogitsWanted, PrefillRun};
pub use selective_scan::{
    HostScanInputs, MAX_STATE, ScanInputs, ScanOutput, ScanPath, ScanShape, ScanSplit,
};

/// The `.cu` files of the crate, by name.
pub fn kernel_names() -> Vec<&'static str> {
    compile::ALL_KERNELS.iter().map(|k| k.name).collect()
}

/// Compiles every kernel for `compute_{arch}` (e.g. 87 for a Jetson Orin)
/// with NVRTC, bypassing the cache. Needs NVRTC only, no GPU.
pub fn compile_kernels(arch: u32) -> Result<(), GpuError> {
    for k in compile::ALL_KERNELS {
        compile::compile_ptx(k, arch, false)?;
    }
    Ok(())
}

/// The `compute_XY` architectures (as XY) the NVRTC found here can target,
/// or why NVRTC cannot be loaded.
pub fn nvrtc_supported_archs() -> Result<Vec<u32>, GpuError> {
    compile::supported_archs()
}

/// NVRTC's (major, minor) version, or why NVRTC cannot be loaded.
pub fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    compile::nvrtc_version()
}
