//! The model handle: loading (file or memory), parameters, shape queries, freeing.
//!
//! A `mamba_model*` is an `Arc<mamba_model>` turned into a raw pointer: sessions hold
//! a clone of the Arc, so the model lives until it is freed *and* its last session is.

use crate::boundary::{FfiError, guard, guard_value, obj, read_params, slice_in};
use crate::status::*;
use mamba_rt::LoadedModel;
use mamba_rt::cpu::CpuKernels;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

/// A compute backend, one of the `MAMBA_BACKEND_*` constants. (An int32_t rather
/// than a C enum so that any value C passes is defined behaviour: unknown values
/// are rejected with `MAMBA_ERR_INVALID_ARG`.)
pub type mamba_backend = i32;
/// The CPU backend (SIMD and threads). Always available.
pub const MAMBA_BACKEND_CPU: mamba_backend = 0;
/// The CUDA backend (GPU `gpu_device`): the weights are uploaded to the GPU at load
/// (in f32, GEMMs in f32, so results stay within about 1e-4 relative of the CPU
/// backend's). Token prompts (`mamba_session_prefill()`, the prompt of
/// `mamba_session_generate()`) run there as one parallel pass, from the session's
/// state and back into it. Token steps (`mamba_session_step_token()`, the generated
/// tokens of `mamba_session_generate()`, `mamba_sessions_step()`) and input-vector
/// steps (`mamba_session_step_embedding()`, `mamba_sessions_step_embedding()`) run
/// on the GPU decoder, made at the model's first step with a second f32 copy of the
/// weights: each stepping session keeps its state in a GPU slot (moved there at its
/// first step and kept there, so a step moves only token ids and outputs across the
/// bus); at most 65535 sessions of one model hold a slot at once (the slots grow as
/// needed; `MAMBA_ERR_DEVICE` past that); a session gives its slot back when freed.
/// `mamba_session_prefill_embeddings()` runs on the CPU (`n_threads` workers). The
/// host keeps the model too: the shape queries, and state save/load (the same
/// blobs as the CPU backend's, read from / written to the GPU as needed).
/// Loading fails with `MAMBA_ERR_NO_DEVICE` where there is no usable GPU or no CUDA
/// libraries (fall back to `MAMBA_BACKEND_CPU`), `MAMBA_ERR_UNSUPPORTED` in a
/// library built without CUDA support or for a model the GPU kernels cannot run.
pub const MAMBA_BACKEND_CUDA: mamba_backend = 1;

/// How to load a model. Get one from `mamba_model_default_params()` and change
/// fields; never fill it from scratch (`struct_size` must be set).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mamba_model_params {
    /// `sizeof(mamba_model_params)` as the caller was compiled: lets later versions
    /// of the library add fields at the end without breaking older programs.
    pub struct_size: usize,
    /// `MAMBA_BACKEND_CPU` (default) or `MAMBA_BACKEND_CUDA`.
    pub backend: mamba_backend,
    /// CPU worker threads for the model's sessions; 0 (default) uses all cores.
    pub n_threads: i32,
    /// GPU ordinal for `MAMBA_BACKEND_CUDA` (default 0); ignored by the CPU backend.
    pub gpu_device: i32,
}

impl Default for mamba_model_params {
    fn default() -> Self {
        mamba_model_params {
            struct_size: size_of::<mamba_model_params>(),
            backend: MAMBA_BACKEND_CPU,
            n_threads: 0,
            gpu_device: 0,
        }
    }
}

/// An immutable, loaded model (opaque). Create with `mamba_model_load_file()` or
/// `mamba_model_load_memory()`, release with `mamba_model_free()`. Any number of
/// threads may use one model at the same time (each with its own session). With
/// `MAMBA_BACKEND_CUDA` the GPU work of a model's sessions (prefills, steps, batched
/// steps, state save/load of a GPU-resident state) takes turns (one at a time per
/// model, in any thread); everything else runs concurrently.
pub struct mamba_model {
    pub(crate) loaded: LoadedModel,
    pub(crate) kernels: CpuKernels,
    /// `MAMBA_BACKEND_CUDA`: the weights on the GPU, for prompt prefill.
    #[cfg(feature = "cuda")]
    pub(crate) gpu: Option<crate::gpu::GpuPrefill>,
}

impl mamba_model {
    /// Whether the model was loaded with `MAMBA_BACKEND_CUDA` (prompts on the GPU).
    #[cfg(feature = "cuda")]
    pub(crate) fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Whether the model was loaded with `MAMBA_BACKEND_CUDA` (never, in this build).
    #[cfg(not(feature = "cuda"))]
    pub(crate) fn has_gpu(&self) -> bool {
        false
    }
}

// The C API lets any number of threads use one model: that needs Send + Sync.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<mamba_model>();
};

/// The default model parameters: CPU backend, all cores, `struct_size` set.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mamba_model_default_params() -> mamba_model_params {
    let d = mamba_model_params::default();
    guard_value("mamba_model_default_params", d, || Ok(d))
}

fn check_params(p: &mamba_model_params) -> Result<CpuKernels, FfiError> {
    match p.backend {
        MAMBA_BACKEND_CPU => {}
        #[cfg(feature = "cuda")]
        MAMBA_BACKEND_CUDA => {}
        #[cfg(not(feature = "cuda"))]
        MAMBA_BACKEND_CUDA => {
            return Err(FfiError::new(
                MAMBA_ERR_UNSUPPORTED,
                "backend MAMBA_BACKEND_CUDA: this libmamba was built without CUDA \
                 support (the `cuda` feature of mamba-ffi); use MAMBA_BACKEND_CPU",
            ));
        }
        b => return Err(FfiError::invalid(format!("unknown backend {b}"))),
    }
    if p.n_threads < 0 {
        return Err(FfiError::invalid(format!(
            "n_threads is {}, must be >= 0 (0 = all cores)",
            p.n_threads
        )));
    }
    if p.gpu_device < 0 {
        return Err(FfiError::invalid(format!(
            "gpu_device is {}, must be >= 0",
            p.gpu_device
        )));
    }
    Ok(CpuKernels::new(p.n_threads as usize))
}

/// Checks `params`, opens the GPU (for `MAMBA_BACKEND_CUDA`: first, so a machine
/// without one fails before the file is read), reads the model with `open`, uploads
/// it to the GPU, and returns the new handle.
fn load(
    params: &mamba_model_params,
    open: impl FnOnce() -> Result<LoadedModel, FfiError>,
) -> Result<*mut mamba_model, FfiError> {
    let kernels = check_params(params)?;
    #[cfg(feature = "cuda")]
    {
        use crate::gpu::GpuPrefill;
        let ctx = if params.backend == MAMBA_BACKEND_CUDA {
            Some(GpuPrefill::open_context(params.gpu_device as usize)?)
        } else {
            None
        };
        let loaded = open()?;
        let gpu = match ctx {
            Some(ctx) => Some(GpuPrefill::upload(ctx, &loaded.view())?),
            None => None,
        };
        let m = mamba_model {
            loaded,
            kernels,
            gpu,
        };
        Ok(Arc::into_raw(Arc::new(m)).cast_mut())
    }
    #[cfg(not(feature = "cuda"))]
    {
        let loaded = open()?;
        Ok(Arc::into_raw(Arc::new(mamba_model { loaded, kernels })).cast_mut())
    }
}

/// Load a model from a GGUF file (mapped, not copied; the file must not change
/// while the model is loaded) or a Hugging Face checkpoint folder (converted in
/// memory). `p` may be NULL for the defaults.
///
/// On success `*out` receives a new model that the caller owns and must release
/// with `mamba_model_free()`; on failure `*out` is left untouched.
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL `path`/`out`, bad params), `MAMBA_ERR_IO`,
/// `MAMBA_ERR_FORMAT`; with `MAMBA_BACKEND_CUDA` also `MAMBA_ERR_NO_DEVICE`,
/// `MAMBA_ERR_UNSUPPORTED` and `MAMBA_ERR_DEVICE` (see `MAMBA_BACKEND_CUDA`).
/// Thread safety: any thread.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `p` NULL or a params struct from
/// `mamba_model_default_params()`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_load_file(
    path: *const c_char,
    p: *const mamba_model_params,
    out: *mut *mut mamba_model,
) -> mamba_status {
    guard("mamba_model_load_file", || {
        if path.is_null() {
            return Err(FfiError::invalid("path is NULL"));
        }
        if out.is_null() {
            return Err(FfiError::invalid("out is NULL"));
        }
        // SAFETY: checked non-NULL; the caller promises a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(path) };
        // SAFETY: NULL or a params struct, the caller's contract.
        let params = unsafe { read_params(p, mamba_model_params::default(), "params") }?;
        let path = path_from_c(path);
        let m = load(&params, || Ok(LoadedModel::open(&path)?))?;
        // SAFETY: `out` checked non-NULL; written only now, on success.
        unsafe { out.write(m) };
        Ok(())
    })
}

#[cfg(unix)]
fn path_from_c(p: &CStr) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p.to_bytes()))
}

#[cfg(not(unix))]
fn path_from_c(p: &CStr) -> std::path::PathBuf {
    std::path::PathBuf::from(p.to_string_lossy().into_owned())
}

/// Load a model from a GGUF file held in memory. The `len` bytes at `data` are
/// copied: the caller may free them as soon as this returns. `p` may be NULL.
///
/// On success `*out` receives a new model owned by the caller (release with
/// `mamba_model_free()`); on failure `*out` is left untouched.
/// Errors: `MAMBA_ERR_INVALID_ARG`, `MAMBA_ERR_FORMAT`; with `MAMBA_BACKEND_CUDA`
/// also `MAMBA_ERR_NO_DEVICE`, `MAMBA_ERR_UNSUPPORTED` and `MAMBA_ERR_DEVICE`.
/// Thread safety: any thread.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes; `p` NULL or a params struct
/// from `mamba_model_default_params()`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_load_memory(
    data: *const c_void,
    len: usize,
    p: *const mamba_model_params,
    out: *mut *mut mamba_model,
) -> mamba_status {
    guard("mamba_model_load_memory", || {
        // SAFETY: checked by slice_in; `len` readable bytes is the caller's contract.
        let bytes = unsafe { slice_in(data.cast::<u8>(), len, "data") }?;
        if out.is_null() {
            return Err(FfiError::invalid("out is NULL"));
        }
        // SAFETY: NULL or a params struct, the caller's contract.
        let params = unsafe { read_params(p, mamba_model_params::default(), "params") }?;
        let m = load(&params, || Ok(LoadedModel::from_gguf_bytes(bytes)?))?;
        // SAFETY: `out` checked non-NULL; written only now, on success.
        unsafe { out.write(m) };
        Ok(())
    })
}

/// Release the caller's reference to a model. Sessions made from it keep their own
/// reference, so the memory goes when the model *and* all its sessions are freed.
/// `mamba_model_free(NULL)` does nothing.
///
/// Thread safety: any thread, but the caller must not use `m` afterwards (nor free
/// it twice).
///
/// # Safety
/// `m` must be NULL or a model from `mamba_model_load_*()` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_free(m: *mut mamba_model) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !m.is_null() {
            // SAFETY: `m` came from Arc::into_raw in publish() and is released once.
            drop(unsafe { Arc::from_raw(m.cast_const()) });
        }
    }));
}

/// # Safety
/// `m` must be NULL or a live model.
pub(crate) unsafe fn model_ref<'a>(m: *const mamba_model) -> Result<&'a mamba_model, FfiError> {
    // SAFETY: the caller's contract.
    unsafe { obj(m, "model") }
}

/// # Safety
/// `m` must be NULL or a live model.
unsafe fn query(name: &str, m: *const mamba_model, f: impl FnOnce(&mamba_model) -> i32) -> i32 {
    guard_value(name, 0, || {
        // SAFETY: this function's contract: NULL or a live model.
        let m = unsafe { model_ref(m) }?;
        Ok(f(m))
    })
}

/// Vocabulary size V: token ids are `0..V-1`, and logits buffers hold V floats.
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_vocab_size(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_vocab_size", m, |m| {
            let c = m.loaded.config();
            c.vocab_size as i32
        })
    }
}

/// Hidden size D: `mamba_session_step_embedding()` takes and gives D floats.
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_d_model(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_d_model", m, |m| {
            let c = m.loaded.config();
            c.d_model as i32
        })
    }
}

/// Number of Mamba blocks.
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_n_layer(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_n_layer", m, |m| {
            let c = m.loaded.config();
            c.n_layer as i32
        })
    }
}

/// Inner size E (expand * D).
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_d_inner(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_d_inner", m, |m| {
            let c = m.loaded.config();
            c.d_inner as i32
        })
    }
}

/// SSM state size N.
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_d_state(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_d_state", m, |m| {
            let c = m.loaded.config();
            c.d_state as i32
        })
    }
}

/// 1 for a byte-level model (at most 256 tokens and no tokenizer in the file: the
/// token id is the byte value), else 0.
///
/// Returns 0 (and sets the last error) when `m` is NULL.
/// Thread safety: any thread, concurrently with any other use of the model.
///
/// # Safety
/// `m` must be NULL or a live model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_model_is_byte_level(m: *const mamba_model) -> i32 {
    // SAFETY: passed on from this export's contract.
    unsafe {
        query("mamba_model_is_byte_level", m, |m| {
            i32::from(m.loaded.is_byte_level())
        })
    }
}
