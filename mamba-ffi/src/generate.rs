//! Sampling parameters and `mamba_session_generate`: prompt, then seeded sampling
//! through `mamba_rt::generate`, the loop `mamba-cli generate` runs, so the C API and
//! the CLI give the same tokens for the same seed.

use crate::boundary::{FfiError, guard, read_params, slice_in};
use crate::session::{mamba_session, session_mut, tokens_from_c};
use crate::status::*;
use mamba_core::{Sampler, SamplingParams};
use mamba_rt::generate::generate;
use std::ffi::c_void;

/// How to pick tokens (llama.cpp's meanings). Get one from
/// `mamba_sampling_default_params()` and change fields (`struct_size` must be set).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct mamba_sampling_params {
    /// `sizeof(mamba_sampling_params)` as the caller was compiled (ABI evolution).
    pub struct_size: usize,
    /// Softmax temperature; <= 0 picks the most likely token (greedy). Default 0.8.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all. Default 40.
    pub top_k: i32,
    /// Keep the smallest set of tokens whose probability reaches p, in (0, 1];
    /// 1 disables. Default 0.95.
    pub top_p: f32,
    /// Penalty on tokens seen in the last `repeat_last_n` (prompt included);
    /// 1 disables. Default 1.1.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at (>= 0). Default 64.
    pub repeat_last_n: i32,
    /// RNG seed: the same seed, prompt and params give the same tokens. Default 42.
    pub seed: u64,
}

impl Default for mamba_sampling_params {
    fn default() -> Self {
        let d = SamplingParams::default();
        mamba_sampling_params {
            struct_size: size_of::<mamba_sampling_params>(),
            temperature: d.temperature,
            top_k: d.top_k as i32,
            top_p: d.top_p,
            repeat_penalty: d.repeat_penalty,
            repeat_last_n: d.repeat_last_n as i32,
            seed: d.seed,
        }
    }
}

impl mamba_sampling_params {
    /// The core's parameters, or INVALID_ARG naming the bad field.
    pub fn to_core(&self) -> Result<SamplingParams, FfiError> {
        if self.top_k < 0 {
            return Err(FfiError::invalid(format!(
                "top_k is {}, must be >= 0",
                self.top_k
            )));
        }
        if self.repeat_last_n < 0 {
            return Err(FfiError::invalid(format!(
                "repeat_last_n is {}, must be >= 0",
                self.repeat_last_n
            )));
        }
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k as u32,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n as u32,
            seed: self.seed,
        };
        p.validate()?;
        Ok(p)
    }
}

/// The default sampling parameters (temperature 0.8, top_k 40, top_p 0.95,
/// repeat_penalty 1.1 over the last 64 tokens, seed 42), `struct_size` set.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mamba_sampling_default_params() -> mamba_sampling_params {
    let d = mamba_sampling_params::default();
    crate::boundary::guard_value("mamba_sampling_default_params", d, || Ok(d))
}

/// Called by `mamba_session_generate()` with each new token, as soon as it is
/// sampled, on the calling thread. Return 0 to go on, nonzero to stop (the call
/// then returns `MAMBA_ERR_ABORTED`).
pub type mamba_token_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, token: i32) -> i32>;

/// Feed the `n` prompt tokens (n >= 1), then sample up to `max_tokens` tokens with
/// `p` (NULL for the defaults), calling `cb(user_data, token)` for each. Every
/// emitted token is fed back, so afterwards the session's state covers the prompt
/// and all emitted tokens and can be continued (a token whose callback returned
/// nonzero is not fed). The repeat penalty sees the prompt and the emitted tokens.
/// With `MAMBA_BACKEND_CUDA` the prompt runs on the GPU (as in
/// `mamba_session_prefill()`) and the emitted tokens on the GPU decoder (as in
/// `mamba_session_step_token()`); sampling runs on the CPU.
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL `s`/`prompt`/`cb`, n = 0, bad params),
/// `MAMBA_ERR_TOKEN_OUT_OF_RANGE` (a prompt id; checked before anything is fed),
/// `MAMBA_ERR_ABORTED` (the callback returned nonzero).
/// Ownership: `prompt` and `user_data` stay the caller's; the library keeps no
/// pointer after the call. Thread safety: one thread at a time per session; `cb`
/// runs on the calling thread and must not use this session.
///
/// # Safety
/// `s` must be NULL or a live session; `prompt` NULL or `n` readable ids; `p` NULL
/// or a struct from `mamba_sampling_default_params()`; `cb` safe to call with
/// `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_session_generate(
    s: *mut mamba_session,
    prompt: *const i32,
    n: usize,
    p: *const mamba_sampling_params,
    max_tokens: usize,
    cb: mamba_token_callback,
    user_data: *mut c_void,
) -> mamba_status {
    guard("mamba_session_generate", || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(s) }?;
        // SAFETY: the caller's contract.
        let prompt = unsafe { slice_in(prompt, n, "prompt") }?;
        let Some(cb) = cb else {
            return Err(FfiError::invalid("cb is NULL"));
        };
        // SAFETY: NULL or a params struct, the caller's contract.
        let params = unsafe { read_params(p, mamba_sampling_params::default(), "params") }?;
        let params = params.to_core()?;
        let prompt = tokens_from_c(prompt, s.model.loaded.config().vocab_size)?;
        if prompt.is_empty() {
            return Err(FfiError::invalid("the prompt is empty (n is 0)"));
        }
        let (mut stop_rc, mut at) = (0, 0usize);
        let on_token = |t: u32| {
            // SAFETY: `cb` and `user_data` come together from the caller, who promises
            // the call is safe.
            stop_rc = unsafe { cb(user_data, t as i32) };
            at += 1;
            stop_rc == 0
        };
        let stopped = if s.prefill_on_gpu() {
            generate_with_backends(s, &prompt, params, max_tokens, on_token)?
        } else {
            // The loop mamba-cli generate runs (mamba_rt::generate), so both give the
            // same tokens for the same model, prompt, seed and parameters.
            let k = &s.model.kernels;
            generate(&mut s.session, k, &prompt, &params, max_tokens, on_token)?.1
        };
        if stopped {
            return Err(FfiError::new(
                MAMBA_ERR_ABORTED,
                format!("the callback returned {stop_rc} at token {}", at - 1),
            ));
        }
        Ok(())
    })
}

/// mamba_rt::generate's loop (the same sampler calls, so the same tokens for the same
/// logits) over the session's prompt and step backends: the prompt through
/// `mamba_session::prefill` (the GPU for a `MAMBA_BACKEND_CUDA` model), each emitted
/// token through `mamba_session::step`. Returns whether `on_token` stopped it.
fn generate_with_backends(
    s: &mut mamba_session,
    prompt: &[u32],
    params: SamplingParams,
    max_tokens: usize,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<bool, FfiError> {
    let mut sampler = Sampler::new(params)?;
    let v = s.model.loaded.config().vocab_size;
    let mut logits = vec![0f32; v];
    let mut work = vec![0u32; v];
    s.prefill(prompt, &mut logits)?;
    let mut history = prompt.to_vec();
    for _ in 0..max_tokens {
        let tok = sampler.sample(&mut logits, &history, &mut work)?;
        if !on_token(tok) {
            return Ok(true);
        }
        history.push(tok);
        s.step(tok, &mut logits)?;
    }
    Ok(false)
}
