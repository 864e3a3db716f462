//! The session handle: one stream's recurrent state over a shared model. Stepping
//! tokens or input vectors, prefill, reset, and state save/load.

use crate::boundary::{FfiError, guard, guard_value, obj, obj_mut, slice_in, slice_out};
use crate::model::{mamba_model, model_ref};
use crate::status::*;
use mamba_core::state;
use mamba_rt::{LoadedModel, Session};
use std::ffi::c_void;
use std::sync::Arc;

/// One stream's mutable state over a model (opaque): the recurrent state (constant
/// size, whatever the sequence length) and scratch. Create with
/// `mamba_session_init()`, release with `mamba_session_free()`. A session must be
/// used by one thread at a time; give each concurrent stream its own session.
/// With `MAMBA_BACKEND_CUDA` a session's state moves to the GPU at its first step
/// and stays there (see `mamba_sessions_step()`).
pub struct mamba_session {
    // Declared before `model`: fields drop in declaration order, so the session's
    // borrow of the model ends before this session's reference to it is released.
    pub(crate) session: Session<'static>,
    /// `MAMBA_BACKEND_CUDA`: whether the state is in a GPU decoder slot.
    #[cfg(feature = "cuda")]
    pub(crate) gpu: crate::gpu::GpuSlot,
    pub(crate) model: Arc<mamba_model>,
}

impl Drop for mamba_session {
    fn drop(&mut self) {
        // A CUDA session gives its decoder slot back.
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.model.gpu {
            g.release(&mut self.gpu);
        }
    }
}

impl mamba_session {
    fn new(model: Arc<mamba_model>) -> Self {
        let loaded: *const LoadedModel = &model.loaded;
        // SAFETY: the LoadedModel lives inside the Arc's heap allocation, which does not
        // move and is kept alive by `model`, a field of the same struct that is dropped
        // after `session`. The 'static never escapes this crate.
        let loaded: &'static LoadedModel = unsafe { &*loaded };
        mamba_session {
            session: Session::new(loaded),
            #[cfg(feature = "cuda")]
            gpu: crate::gpu::GpuSlot::default(),
            model,
        }
    }

    /// The host session, its state current (a GPU-resident state is brought back
    /// first, once), for work that runs from the host state. Whatever that work does
    /// to the state, the host copy stays the current one.
    pub(crate) fn host(&mut self) -> Result<&mut Session<'static>, FfiError> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.model.gpu {
            g.to_host(&mut self.gpu, self.session.state_mut())?;
        }
        Ok(&mut self.session)
    }

    /// The host state was replaced whatever it was (reset, load): it is current now.
    fn host_replaced(&mut self) {
        #[cfg(feature = "cuda")]
        self.gpu.host_replaced();
    }

    /// The state in mamba-core's layout, read from the GPU when it is there.
    pub(crate) fn state_copy(&self) -> Result<std::borrow::Cow<'_, [f32]>, FfiError> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.model.gpu
            && self.gpu.on_device()
        {
            let mut v = vec![0f32; self.session.state().len()];
            g.read_state(&self.gpu, &mut v)?;
            return Ok(std::borrow::Cow::Owned(v));
        }
        Ok(std::borrow::Cow::Borrowed(self.session.state()))
    }

    fn vocab(&self) -> usize {
        self.model.loaded.config().vocab_size
    }

    fn d_model(&self) -> usize {
        self.model.loaded.config().d_model
    }

    /// Feed `tokens` (all checked first, so a bad id changes nothing); the logits
    /// after the last token go to `logits` (exactly V long). The prompt backend: the
    /// GPU prefill for a `MAMBA_BACKEND_CUDA` model (state in and out through the
    /// host), else mamba_rt's chunked CPU prefill. On error the state is unchanged.
    pub(crate) fn prefill(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<(), FfiError> {
        let v = self.vocab();
        if tokens.is_empty() {
            return Err(FfiError::invalid("no tokens (n is 0)"));
        }
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, t)| **t as usize >= v) {
            return Err(FfiError::new(
                MAMBA_ERR_TOKEN_OUT_OF_RANGE,
                format!("tokens[{i}] is {t}, out of range (vocabulary {v})"),
            ));
        }
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.model.gpu {
            gpu.to_host(&mut self.gpu, self.session.state_mut())?;
            return gpu.prefill(tokens, self.session.state_mut(), logits);
        }
        let k = &self.model.kernels;
        self.session.prefill_tokens(k, tokens, logits)?;
        Ok(())
    }

    /// Whether prompts of this session take another path than mamba_rt's CPU
    /// generate loop would (its prompt is fed step by step on the CPU).
    pub(crate) fn prefill_on_gpu(&self) -> bool {
        self.model.has_gpu()
    }

    /// One token step (checked), logits to `logits` (exactly V long). The step
    /// backend: the GPU decoder for a `MAMBA_BACKEND_CUDA` model (the state moves
    /// to the session's slot once and stays there), else the CPU.
    pub(crate) fn step(&mut self, token: u32, logits: &mut [f32]) -> Result<(), FfiError> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.model.gpu {
            let mut streams = [crate::gpu::Stream {
                slot: &mut self.gpu,
                host: self.session.state_mut(),
            }];
            return gpu.step_tokens(
                &self.model.loaded,
                &mut streams,
                &[token],
                Some(logits),
                None,
            );
        }
        let k = &self.model.kernels;
        self.session.step_token(k, token, logits)?;
        Ok(())
    }

    /// One input-vector step (`x` is D long, `hidden` exactly D): the GPU decoder
    /// for a `MAMBA_BACKEND_CUDA` model, else the CPU.
    pub(crate) fn step_embedding(&mut self, x: &[f32], hidden: &mut [f32]) -> Result<(), FfiError> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.model.gpu {
            let mut streams = [crate::gpu::Stream {
                slot: &mut self.gpu,
                host: self.session.state_mut(),
            }];
            return gpu.step_embeddings(&self.model.loaded, &mut streams, x, hidden);
        }
        let k = &self.model.kernels;
        self.session.step_embedding(k, x, hidden)?;
        Ok(())
    }
}

/// A token id from C as the core's u32, or TOKEN_OUT_OF_RANGE.
pub(crate) fn token_id(t: i32, vocab: usize) -> Result<u32, FfiError> {
    if t < 0 || t as usize >= vocab {
        return Err(FfiError::new(
            MAMBA_ERR_TOKEN_OUT_OF_RANGE,
            format!("token id {t} out of range (vocabulary {vocab})"),
        ));
    }
    Ok(t as u32)
}

/// The first `need` elements of an output buffer of `len`, or BUFFER_TOO_SMALL.
///
/// # Safety
/// `p` must be NULL or point to `len` writable floats not otherwise accessed.
unsafe fn out_floats<'a>(
    p: *mut f32,
    len: usize,
    need: usize,
    what: &str,
) -> Result<&'a mut [f32], FfiError> {
    // SAFETY: the caller's contract.
    let buf = unsafe { slice_out(p, len, what) }?;
    if len < need {
        return Err(FfiError::new(
            MAMBA_ERR_BUFFER_TOO_SMALL,
            format!("{what} holds {len} floats, needs {need}"),
        ));
    }
    Ok(&mut buf[..need])
}

/// # Safety
/// `s` must be NULL or a live session used by no other thread.
pub(crate) unsafe fn session_mut<'a>(
    s: *mut mamba_session,
) -> Result<&'a mut mamba_session, FfiError> {
    // SAFETY: the caller's contract.
    unsafe { obj_mut(s, "session") }
}

/// Start a stream on a model, with the zero state.
///
/// On success `*out` receives a new session owned by the caller (release with
/// `mamba_session_free()`); it holds its own reference to the model, so the model
/// may be freed first. On failure `*out` is left untouched.
/// Thread safety: any number of threads may create sessions on one model at once.
///
/// # Safety
/// `m` must be NULL or a live model; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_init(
    m: *const mamba_model,
    out: *mut *mut mamba_session,
) -> mamba_status {
    guard("mamba_session_init", || {
        // SAFETY: the caller's contract: NULL or a live model.
        unsafe { model_ref(m) }?;
        if out.is_null() {
            return Err(FfiError::invalid("out is NULL"));
        }
        // SAFETY: `m` is a live model, so it came from Arc::into_raw and its count is
        // at least one; the increment gives this session its own reference.
        let model = unsafe {
            Arc::increment_strong_count(m);
            Arc::from_raw(m)
        };
        let s = Box::new(mamba_session::new(model));
        // SAFETY: `out` checked non-NULL; written only now, on success.
        unsafe { out.write(Box::into_raw(s)) };
        Ok(())
    })
}

/// Release a session (and its reference to the model). `mamba_session_free(NULL)`
/// does nothing.
///
/// Thread safety: not concurrently with any other use of `s`; `s` must not be used
/// afterwards.
///
/// # Safety
/// `s` must be NULL or a session from `mamba_session_init()` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_free(s: *mut mamba_session) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !s.is_null() {
            // SAFETY: `s` came from Box::into_raw in mamba_session_init, freed once.
            drop(unsafe { Box::from_raw(s) });
        }
    }));
}

/// Back to the zero state (a fresh stream), keeping the buffers.
///
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_reset(s: *mut mamba_session) -> mamba_status {
    guard("mamba_session_reset", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        s.session.reset();
        s.host_replaced();
        Ok(())
    })
}

/// Feed one token; write the V next-token logits (V = `mamba_model_vocab_size()`)
/// to `logits`, which must hold at least V floats (`logits_len` >= V).
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL), `MAMBA_ERR_BUFFER_TOO_SMALL`,
/// `MAMBA_ERR_TOKEN_OUT_OF_RANGE`. On error the state is unchanged. With
/// `MAMBA_BACKEND_CUDA` the step runs on the GPU decoder (see `mamba_sessions_step()`
/// to step several sessions at once); also `MAMBA_ERR_DEVICE` (the state is then
/// unspecified) and `MAMBA_ERR_UNSUPPORTED` (a model the GPU decoder cannot run).
/// Ownership: `logits` stays the caller's. Thread safety: one thread at a time per
/// session.
///
/// # Safety
/// `s` must be NULL or a live session; `logits` NULL or `logits_len` writable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_step_token(
    s: *mut mamba_session,
    token: i32,
    logits: *mut f32,
    logits_len: usize,
) -> mamba_status {
    guard("mamba_session_step_token", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        // SAFETY: the caller's contract.
        let out = unsafe { out_floats(logits, logits_len, s.vocab(), "logits") }?;
        let t = token_id(token, s.vocab())?;
        s.step(t, out)
    })
}

/// Feed one input vector of D floats (D = `mamba_model_d_model()`; `x_len` must be
/// exactly D) instead of a token (the audio / sensor path); write the final hidden
/// state (after the last norm, D floats) to `hidden` (`hidden_len` >= D).
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL, `x_len` != D), `MAMBA_ERR_BUFFER_TOO_SMALL`.
/// On error the state is unchanged. With `MAMBA_BACKEND_CUDA` the step runs on the
/// GPU decoder (as `mamba_session_step_token()`, with its errors).
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session; `x` NULL or `x_len` readable floats;
/// `hidden` NULL or `hidden_len` writable floats, not overlapping `x`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_step_embedding(
    s: *mut mamba_session,
    x: *const f32,
    x_len: usize,
    hidden: *mut f32,
    hidden_len: usize,
) -> mamba_status {
    guard("mamba_session_step_embedding", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        let d = s.d_model();
        // SAFETY: the caller's contract.
        let x = unsafe { slice_in(x, x_len, "x") }?;
        if x.len() != d {
            return Err(FfiError::invalid(format!(
                "x_len is {x_len}, must be d_model = {d}"
            )));
        }
        // SAFETY: the caller's contract.
        let out = unsafe { out_floats(hidden, hidden_len, d, "hidden") }?;
        s.step_embedding(x, out)
    })
}

/// Feed `n` tokens (n >= 1) in order and write the logits after the last one to
/// `last_logits` (`logits_len` >= V). The same as `n` calls of
/// `mamba_session_step_token()` up to float rounding, and faster for long prompts
/// (the tokens go through the model in chunks). With `MAMBA_BACKEND_CUDA` they run
/// on the GPU (`MAMBA_ERR_DEVICE` if it fails; the state is then unchanged).
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL, n = 0), `MAMBA_ERR_BUFFER_TOO_SMALL`,
/// `MAMBA_ERR_TOKEN_OUT_OF_RANGE` (every id is checked before any is fed, so on
/// error the state is unchanged). Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session; `tokens` NULL or `n` readable ids;
/// `last_logits` NULL or `logits_len` writable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_prefill(
    s: *mut mamba_session,
    tokens: *const i32,
    n: usize,
    last_logits: *mut f32,
    logits_len: usize,
) -> mamba_status {
    guard("mamba_session_prefill", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        // SAFETY: the caller's contract.
        let tokens = unsafe { slice_in(tokens, n, "tokens") }?;
        // SAFETY: the caller's contract.
        let out = unsafe { out_floats(last_logits, logits_len, s.vocab(), "last_logits") }?;
        let ids = tokens_from_c(tokens, s.vocab())?;
        s.prefill(&ids, out)
    })
}

/// Token ids from C, all checked against the vocabulary.
pub(crate) fn tokens_from_c(tokens: &[i32], vocab: usize) -> Result<Vec<u32>, FfiError> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            token_id(t, vocab).map_err(|mut e| {
                e.msg = format!("tokens[{i}]: {}", e.msg);
                e
            })
        })
        .collect()
}

/// Feed `xs_len / D` input vectors (`xs` holds them one after another; `xs_len` must
/// be a nonzero multiple of D) and write the final hidden state after the last one
/// to `last_hidden` (`hidden_len` >= D). The same as one
/// `mamba_session_step_embedding()` per vector up to float rounding (chunked, like
/// `mamba_session_prefill()`). Runs on the CPU with every backend (with
/// `MAMBA_BACKEND_CUDA`, from the state brought back from the GPU if it is there).
///
/// Errors: `MAMBA_ERR_INVALID_ARG`, `MAMBA_ERR_BUFFER_TOO_SMALL`; with
/// `MAMBA_BACKEND_CUDA` also `MAMBA_ERR_DEVICE`; on error the state is unchanged.
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session; `xs` NULL or `xs_len` readable floats;
/// `last_hidden` NULL or `hidden_len` writable floats, not overlapping `xs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_prefill_embeddings(
    s: *mut mamba_session,
    xs: *const f32,
    xs_len: usize,
    last_hidden: *mut f32,
    hidden_len: usize,
) -> mamba_status {
    guard("mamba_session_prefill_embeddings", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        let d = s.d_model();
        // SAFETY: the caller's contract.
        let xs = unsafe { slice_in(xs, xs_len, "xs") }?;
        if xs.is_empty() || xs.len() % d != 0 {
            return Err(FfiError::invalid(format!(
                "xs_len is {xs_len}, must be a nonzero multiple of d_model = {d}"
            )));
        }
        // SAFETY: the caller's contract.
        let out = unsafe { out_floats(last_hidden, hidden_len, d, "last_hidden") }?;
        // The chunked prefill writes every position's hidden state: feed block by block
        // so the buffer stays small for long streams, and keep the last row.
        let block = mamba_rt::prefill::PREFILL_CHUNK * d;
        let mut hidden = vec![0.0f32; block.min(xs.len())];
        // The CPU prefill (every backend), from the host state.
        let model = Arc::clone(&s.model);
        let session = s.host()?;
        for x in xs.chunks(block) {
            let h = &mut hidden[..x.len()];
            session.prefill_embeddings(&model.kernels, x, h)?;
        }
        let last = xs.len() - (xs.len() - 1) / block * block;
        out.copy_from_slice(&hidden[last - d..last]);
        Ok(())
    })
}

/// Bytes of this session's state blob (what `mamba_session_state_save()` writes):
/// a fixed header plus the recurrent state, constant for a model whatever the
/// number of tokens fed. Returns 0 (and sets the last error) when `s` is NULL.
///
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_state_size(s: *const mamba_session) -> usize {
    guard_value("mamba_session_state_size", 0, || {
        // SAFETY: the caller's contract.
        let s = unsafe { obj(s, "session") }?;
        Ok(state::blob_len(s.model.loaded.config()))
    })
}

/// Save the session's state as a checked blob (tied to this model's shape and
/// weights) into `buf`, which must hold `mamba_session_state_size()` bytes or more.
/// On success `*written` (if `written` is not NULL) receives the byte count.
///
/// Errors: `MAMBA_ERR_INVALID_ARG`, `MAMBA_ERR_BUFFER_TOO_SMALL`; with
/// `MAMBA_BACKEND_CUDA`, `MAMBA_ERR_DEVICE` (reading a state held on the GPU).
/// Ownership: `buf` stays the caller's; the blob is plain bytes that may be stored
/// and loaded into any session of the same model, in this or another process.
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session; `buf` NULL or `len` writable bytes;
/// `written` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_state_save(
    s: *const mamba_session,
    buf: *mut c_void,
    len: usize,
    written: *mut usize,
) -> mamba_status {
    guard("mamba_session_state_save", || {
        // SAFETY: the caller's contract.
        let s = unsafe { obj(s, "session") }?;
        // SAFETY: the caller's contract.
        let out = unsafe { slice_out(buf.cast::<u8>(), len, "buf") }?;
        let need = state::blob_len(s.model.loaded.config());
        if len < need {
            return Err(FfiError::new(
                MAMBA_ERR_BUFFER_TOO_SMALL,
                format!("buf holds {len} bytes, the state needs {need}"),
            ));
        }
        let st = s.state_copy()?;
        let n = state::export(&s.model.loaded.view(), &st, out)?;
        if !written.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract; success.
            unsafe { written.write(n) };
        }
        Ok(())
    })
}

/// Load a blob saved by `mamba_session_state_save()` from a session of the same
/// model. Continuing after the load gives exactly the outputs the saved session
/// gave after the save.
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL), `MAMBA_ERR_STATE_MISMATCH` (a blob from
/// another model), `MAMBA_ERR_BAD_STATE` (not a state blob, wrong length, NaN).
/// On error the state is unchanged. The blob is copied; `buf` stays the caller's.
/// Thread safety: one thread at a time per session.
///
/// # Safety
/// `s` must be NULL or a live session; `buf` NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_state_load(
    s: *mut mamba_session,
    buf: *const c_void,
    len: usize,
) -> mamba_status {
    guard("mamba_session_state_load", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        // SAFETY: the caller's contract.
        let blob = unsafe { slice_in(buf.cast::<u8>(), len, "buf") }?;
        s.session.load_state(blob)?;
        s.host_replaced();
        Ok(())
    })
}
