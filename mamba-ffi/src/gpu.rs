//! `MAMBA_BACKEND_CUDA`: a model's weights on one GPU, for prompt prefill.
//!
//! A CUDA model keeps everything a CPU model has (the GGUF on the host, the CPU
//! kernels) plus a [`GpuPrefill`]: the GPU context and the uploaded weights. A
//! session's prompt (`mamba_session_prefill`, the prompt of
//! `mamba_session_generate`) runs on the GPU, starting from the session's state
//! and handing the final state back to the host; single steps and input vectors
//! run on the CPU from that state (until the GPU decode exists: it slots in at
//! `mamba_session::step`).
//!
//! GEMMs are f32 ([`GemmPrecision::F32`]): the C API promises results close to the
//! CPU backend's (within about 1e-4 relative), which TF32/F16/BF16 do not keep.
//!
//! Status codes: no driver, NVRTC or cuBLAS, no device, or an ordinal out of range
//! give `MAMBA_ERR_NO_DEVICE`; a model the GPU kernels cannot run (Falcon-Mamba's
//! dt/B/C norms, a conv width or state size over the kernels' limits)
//! `MAMBA_ERR_UNSUPPORTED`; a CUDA failure after that (out of memory, a failed
//! launch, NVRTC refusing a kernel) `MAMBA_ERR_DEVICE`.

use crate::boundary::FfiError;
use crate::status::*;
use mamba_core::Model;
use mamba_cuda::{GemmPrecision, GpuContext, GpuError, GpuModel, LogitsWanted, PrefillRun};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tokens per GPU pass: longer prompts go through in chunks of this many, the
/// state carried between them (bounds the activations' device memory).
pub(crate) const GPU_PREFILL_CHUNK: usize = 8192;

/// The status and message of a GPU failure; `loading` is true while the model is
/// being uploaded (an invalid argument then means a model the kernels cannot run).
pub(crate) fn gpu_error(e: GpuError, loading: bool) -> FfiError {
    let status = match &e {
        GpuError::NoGpu(_) => MAMBA_ERR_NO_DEVICE,
        GpuError::InvalidArgument(_) if loading => MAMBA_ERR_UNSUPPORTED,
        GpuError::InvalidArgument(_) => MAMBA_ERR_INVALID_ARG,
        GpuError::Driver { .. } | GpuError::Compile { .. } => MAMBA_ERR_DEVICE,
    };
    FfiError::new(status, format!("MAMBA_BACKEND_CUDA: {e}"))
}

/// The GPU half of a CUDA model: its context and its uploaded weights.
pub(crate) struct GpuPrefill {
    // Declared before `ctx`: fields drop in declaration order, so the weights (which
    // borrow the context) are freed while the context is still alive.
    model: Mutex<GpuModel<'static>>,
    // In an Arc (not a Box, which asserts unique access when moved) so its address
    // never changes while `model` borrows it. Never read: it is here to outlive `model`.
    #[allow(dead_code)]
    ctx: Arc<GpuContext>,
}

// The C API lets any number of threads share a model; GPU work is serialized by the
// mutex (one cuBLAS handle and one stream per model).
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<GpuPrefill>();
};

impl GpuPrefill {
    /// Opens GPU `ordinal` (the cheap check: fails before any weight is read).
    pub(crate) fn open_context(ordinal: usize) -> Result<Arc<GpuContext>, FfiError> {
        if let Err(why) = GpuContext::is_available() {
            return Err(gpu_error(GpuError::NoGpu(why), true));
        }
        match GpuContext::new(ordinal) {
            Ok(c) => Ok(Arc::new(c)),
            // A context that cannot be made on a machine with a driver: most often an
            // ordinal past the last device. Either way there is no device to use.
            Err(GpuError::Driver { what, message }) => Err(FfiError::new(
                MAMBA_ERR_NO_DEVICE,
                format!("MAMBA_BACKEND_CUDA: cannot open GPU {ordinal} ({what}: {message})"),
            )),
            Err(e) => Err(gpu_error(e, true)),
        }
    }

    /// Uploads `model`'s weights (f32 GEMMs) to `ctx`'s device.
    pub(crate) fn upload(ctx: Arc<GpuContext>, model: &Model<'_>) -> Result<Self, FfiError> {
        let ctx_ref: *const GpuContext = &*ctx;
        // SAFETY: the context lives in the Arc's heap allocation, which does not move
        // and is kept alive by `ctx`, a field of the same struct that is dropped after
        // `model` (field order); nothing mutates it (GpuContext is used through & only). The 'static never escapes this type:
        // `lock` hands out the GpuModel only behind a guard borrowed from `self`.
        let ctx_static: &'static GpuContext = unsafe { &*ctx_ref };
        let gm = GpuModel::upload(ctx_static, model, GemmPrecision::F32)
            .map_err(|e| gpu_error(e, true))?;
        Ok(GpuPrefill {
            model: Mutex::new(gm),
            ctx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, GpuModel<'static>> {
        // A panic while locked (caught at the boundary) leaves no half-written shared
        // state: the weights are never written after the upload.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `tokens` (checked by the caller: non-empty, in range) on the GPU from
    /// `state` (mamba-core's layout), replacing it with the final state, and writes
    /// the logits after the last token to `logits` (V floats). On error `state` is
    /// unchanged.
    pub(crate) fn prefill(
        &self,
        tokens: &[u32],
        state: &mut [f32],
        logits: &mut [f32],
    ) -> Result<(), FfiError> {
        let gm = self.lock();
        let err = |e| gpu_error(e, false);
        let mut cur = state.to_vec();
        let n_chunks = tokens.len().div_ceil(GPU_PREFILL_CHUNK);
        for (i, chunk) in tokens.chunks(GPU_PREFILL_CHUNK).enumerate() {
            let last = i + 1 == n_chunks;
            let wanted = if last {
                LogitsWanted::Last
            } else {
                LogitsWanted::None
            };
            let mut run = PrefillRun::new(&gm, 1, chunk.len(), wanted).map_err(err)?;
            run.set_tokens(chunk).map_err(err)?;
            run.set_state(&cur).map_err(err)?;
            run.forward().map_err(err)?;
            cur = run.state().map_err(err)?;
            if last {
                let l = run.logits().map_err(err)?;
                if l.len() != logits.len() {
                    return Err(FfiError::invalid(format!(
                        "GPU prefill gave {} logits, expected {}",
                        l.len(),
                        logits.len()
                    )));
                }
                logits.copy_from_slice(&l);
            }
        }
        if cur.len() != state.len() {
            return Err(FfiError::invalid(format!(
                "GPU prefill gave a state of {} floats, expected {}",
                cur.len(),
                state.len()
            )));
        }
        state.copy_from_slice(&cur);
        Ok(())
    }
}
