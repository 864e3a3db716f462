//! Batched steps: one step of several sessions of one model at once
//! (`mamba_sessions_step`, `mamba_sessions_step_embedding`). With
//! `MAMBA_BACKEND_CUDA` they are one GPU decoder step for all of them; with the
//! CPU backend the same call steps the sessions one after another, so a program
//! written against the batched API runs on either backend.

use crate::boundary::{FfiError, guard, obj_mut, slice_in, slice_out};
use crate::session::{mamba_session, tokens_from_c};
use crate::status::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The `n` sessions at `sessions` as exclusive references: none NULL, none twice,
/// all of one model.
///
/// # Safety
/// `sessions` must be NULL or point to `n` readable pointers, each NULL or a live
/// session used by no other thread during `'a`.
unsafe fn sessions_mut<'a>(
    sessions: *const *mut mamba_session,
    n: usize,
) -> Result<Vec<&'a mut mamba_session>, FfiError> {
    // SAFETY: the caller's contract.
    let ptrs = unsafe { slice_in(sessions, n, "sessions") }?;
    if ptrs.is_empty() {
        return Err(FfiError::invalid("no sessions (n is 0)"));
    }
    // Duplicates first: two exclusive references to one session must never exist.
    let mut seen: HashMap<usize, usize> = HashMap::with_capacity(n);
    for (i, &p) in ptrs.iter().enumerate() {
        if p.is_null() {
            return Err(FfiError::invalid(format!("sessions[{i}] is NULL")));
        }
        if let Some(j) = seen.insert(p as usize, i) {
            return Err(FfiError::invalid(format!(
                "sessions[{j}] and sessions[{i}] are the same session (each session \
                 may appear once in a batch)"
            )));
        }
    }
    let mut out = Vec::with_capacity(n);
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: non-NULL, distinct from every other entry; live and not used by
        // another thread by the caller's contract.
        out.push(unsafe { obj_mut(p, &format!("sessions[{i}]")) }?);
    }
    let first = Arc::clone(&out[0].model);
    if let Some(i) = out.iter().position(|s| !Arc::ptr_eq(&s.model, &first)) {
        return Err(FfiError::invalid(format!(
            "sessions[{i}] belongs to another model than sessions[0] (a batched step \
             takes sessions of one model)"
        )));
    }
    Ok(out)
}

/// Greedy pick: the first index of the largest logit (ties to the lower id, NaN
/// never wins), as mamba-core's greedy sampling and the GPU argmax pick.
fn argmax(l: &[f32]) -> i32 {
    let mut best = 0usize;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] || l[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best as i32
}

/// One step of `n` sessions (n >= 1) of one model: session `sessions[i]` is fed
/// token `tokens[i]`. Optional outputs: `logits` (NULL, or `logits_len` >= n x V
/// floats; row i = session i's next-token logits, V = `mamba_model_vocab_size()`)
/// and `next_tokens` (NULL, or n ints: the greedy next token of each session, the
/// first largest logit). Both may be NULL (feeding tokens only); with
/// `MAMBA_BACKEND_CUDA`, `next_tokens` alone moves just n ints back from the GPU.
/// Each session ends as `mamba_session_step_token()` with its token would leave it.
///
/// Backends: `MAMBA_BACKEND_CUDA`: one GPU step for the whole batch, each session's
/// state in its own GPU slot (moved there at its first step, once, and kept there:
/// see `MAMBA_BACKEND_CUDA`); a session's results do not depend on the other
/// sessions in the batch beyond float rounding. `MAMBA_BACKEND_CPU`: the sessions are
/// stepped one after another on the CPU (same results as single steps).
///
/// Errors: `MAMBA_ERR_INVALID_ARG` (NULL `sessions`/`tokens` or a NULL entry, n = 0,
/// a session listed twice, sessions of different models),
/// `MAMBA_ERR_BUFFER_TOO_SMALL` (`logits_len` < n x V),
/// `MAMBA_ERR_TOKEN_OUT_OF_RANGE` (the message names the index); everything is
/// checked before any session is stepped, so on these errors no state changes and
/// no output is written. With `MAMBA_BACKEND_CUDA` also `MAMBA_ERR_DEVICE` (a CUDA
/// failure, or more than 65535 sessions of the model stepping on the GPU: the
/// states of the batch's sessions are then unspecified; reset or load them) and
/// `MAMBA_ERR_UNSUPPORTED` (a model the GPU decoder cannot run; nothing changed).
/// Ownership: the arrays stay the caller's. Thread safety: each session by one
/// thread at a time (not used elsewhere during the call); batches of one CUDA model
/// from several threads take turns on the GPU.
///
/// # Safety
/// `sessions` must be NULL or point to `n` pointers, each NULL or a live session;
/// `tokens` NULL or `n` readable ids; `logits` NULL or `logits_len` writable floats;
/// `next_tokens` NULL or `n` writable ints; the outputs not overlapping the inputs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_sessions_step(
    sessions: *const *mut mamba_session,
    tokens: *const i32,
    n: usize,
    logits: *mut f32,
    logits_len: usize,
    next_tokens: *mut i32,
) -> mamba_status {
    guard("mamba_sessions_step", || {
        // SAFETY: the caller's contract.
        let mut ss = unsafe { sessions_mut(sessions, n) }?;
        // SAFETY: the caller's contract.
        let tokens = unsafe { slice_in(tokens, n, "tokens") }?;
        let model = Arc::clone(&ss[0].model);
        let v = model.loaded.config().vocab_size;
        let need = n
            .checked_mul(v)
            .ok_or_else(|| FfiError::invalid(format!("n is {n}: absurd")))?;
        let logits = if logits.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            let out = unsafe { slice_out(logits, logits_len, "logits") }?;
            if logits_len < need {
                return Err(FfiError::new(
                    MAMBA_ERR_BUFFER_TOO_SMALL,
                    format!("logits holds {logits_len} floats, needs n x vocab = {need}"),
                ));
            }
            Some(&mut out[..need])
        };
        let next = if next_tokens.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(unsafe { slice_out(next_tokens, n, "next_tokens") }?)
        };
        let ids = tokens_from_c(tokens, v)?;

        #[cfg(feature = "cuda")]
        if let Some(gpu) = &model.gpu {
            let mut streams: Vec<crate::gpu::Stream<'_>> = ss
                .iter_mut()
                .map(|s| {
                    let s = &mut **s;
                    crate::gpu::Stream {
                        slot: &mut s.gpu,
                        host: s.session.state_mut(),
                    }
                })
                .collect();
            return gpu.step_tokens(&model.loaded, &mut streams, &ids, logits, next);
        }

        // CPU: one session after another (nothing can fail past the checks above).
        let mut row = vec![0f32; v];
        let mut logits = logits;
        let mut next = next;
        for (i, (s, &t)) in ss.iter_mut().zip(&ids).enumerate() {
            let out: &mut [f32] = match logits.as_deref_mut() {
                Some(all) => &mut all[i * v..(i + 1) * v],
                None => &mut row,
            };
            s.step(t, out)?;
            if let Some(nx) = next.as_deref_mut() {
                nx[i] = argmax(out);
            }
        }
        Ok(())
    })
}

/// One step of `n` sessions (n >= 1) of one model fed input vectors instead of
/// tokens (the audio / sensor path): `xs` holds n vectors of D floats one after
/// another (`xs_len` must be exactly n x D, D = `mamba_model_d_model()`), vector i
/// for `sessions[i]`; the final hidden states (after the last norm) go to `hidden`
/// (`hidden_len` >= n x D), row i for session i. Each session ends as
/// `mamba_session_step_embedding()` would leave it. Backends, errors (with
/// `MAMBA_ERR_INVALID_ARG` also for a wrong `xs_len`), ownership and thread safety
/// as `mamba_sessions_step()`.
///
/// # Safety
/// `sessions` must be NULL or point to `n` pointers, each NULL or a live session;
/// `xs` NULL or `xs_len` readable floats; `hidden` NULL or `hidden_len` writable
/// floats, not overlapping `xs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mamba_sessions_step_embedding(
    sessions: *const *mut mamba_session,
    n: usize,
    xs: *const f32,
    xs_len: usize,
    hidden: *mut f32,
    hidden_len: usize,
) -> mamba_status {
    guard("mamba_sessions_step_embedding", || {
        // SAFETY: the caller's contract.
        let mut ss = unsafe { sessions_mut(sessions, n) }?;
        let model = Arc::clone(&ss[0].model);
        let d = model.loaded.config().d_model;
        // SAFETY: the caller's contract.
        let xs = unsafe { slice_in(xs, xs_len, "xs") }?;
        let need = n
            .checked_mul(d)
            .ok_or_else(|| FfiError::invalid(format!("n is {n}: absurd")))?;
        if xs.len() != need {
            return Err(FfiError::invalid(format!(
                "xs_len is {xs_len}, must be n x d_model = {need}"
            )));
        }
        // SAFETY: the caller's contract.
        let out = unsafe { slice_out(hidden, hidden_len, "hidden") }?;
        if hidden_len < need {
            return Err(FfiError::new(
                MAMBA_ERR_BUFFER_TOO_SMALL,
                format!("hidden holds {hidden_len} floats, needs n x d_model = {need}"),
            ));
        }
        let out = &mut out[..need];

        #[cfg(feature = "cuda")]
        if let Some(gpu) = &model.gpu {
            let mut streams: Vec<crate::gpu::Stream<'_>> = ss
                .iter_mut()
                .map(|s| {
                    let s = &mut **s;
                    crate::gpu::Stream {
                        slot: &mut s.gpu,
                        host: s.session.state_mut(),
                    }
                })
                .collect();
            return gpu.step_embeddings(&model.loaded, &mut streams, xs, out);
        }

        for ((s, x), h) in ss
            .iter_mut()
            .zip(xs.chunks_exact(d))
            .zip(out.chunks_exact_mut(d))
        {
            s.step_embedding(x, h)?;
        }
        Ok(())
    })
}
