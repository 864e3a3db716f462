//! `MAMBA_BACKEND_CUDA`: a model's weights on one GPU, for prompt prefill and
//! token steps.
//!
//! A CUDA model keeps everything a CPU model has (the GGUF on the host, the CPU
//! kernels) plus a [`GpuPrefill`]: the GPU context, the uploaded prefill weights
//! ([`GpuModel`]) and, made on the first GPU step, a [`GpuDecoder`] (its own copy of
//! the weights in f32, [`DecodeWeights::F32`], and one state slot per stepping
//! session).
//!
//! Where a session's state lives ([`GpuSlot`]): on the host (mamba_rt's `Session`)
//! or in its decoder slot. A GPU step (`mamba_session_step_token`, the tokens of
//! `mamba_session_generate`, `mamba_sessions_step`, the input vectors of
//! `mamba_session_step_embedding` / `mamba_sessions_step_embedding`) first uploads
//! the host state into the session's slot if the host copy is the newer one (once:
//! the state then stays on the device, and later steps move only the token ids and
//! the outputs across the bus). Whatever runs from the host state (the GPU prompt
//! prefill, which takes the state in and hands it back, the CPU input-vector prefill,
//! reset, state load) first brings a device-resident state back to the host (once)
//! and leaves the host copy the newer one. State save reads the slot when the state
//! is there. A session takes a slot at its first GPU step and gives it back when it
//! is freed.
//!
//! Slots: the decoder starts with [`FIRST_SLOTS`] and doubles (a new decoder, the
//! live slots' states copied over under the same numbers) when all are taken, up to
//! [`MAX_GPU_SESSIONS`] stepping sessions per model; past that, and when the device
//! runs out of memory for a larger decoder, a step fails with `MAMBA_ERR_DEVICE`.
//!
//! GEMMs and decode weights are f32 ([`GemmPrecision::F32`], [`DecodeWeights::F32`]):
//! the C API promises results close to the CPU backend's (within about 1e-4
//! relative), which TF32/F16/BF16 do not keep. Steps of two or more sessions run
//! their projections through cuBLAS f32 GEMMs, one session through the decoder's GEMV
//! kernel: a session's results depend on the batch it is stepped in only by float
//! rounding (tested within 1e-5 relative; the greedy tokens are the same).
//!
//! Status codes: no driver, NVRTC or cuBLAS, no device, or an ordinal out of range
//! give `MAMBA_ERR_NO_DEVICE`; a model the GPU kernels cannot run (Falcon-Mamba's
//! dt/B/C norms, a conv width or state size over the kernels' limits)
//! `MAMBA_ERR_UNSUPPORTED`; a CUDA failure after that (out of memory, a failed
//! launch, NVRTC refusing a kernel) `MAMBA_ERR_DEVICE`. The decoder is made on the
//! first GPU step: a model it cannot run fails there with `MAMBA_ERR_UNSUPPORTED`.

use crate::boundary::FfiError;
use crate::status::*;
use mamba_core::Model;
use mamba_cuda::{
    DecodeOptions, DecodeWeights, GemmPrecision, GpuContext, GpuDecoder, GpuError, GpuModel,
    LogitsWanted, PrefillRun,
};
use mamba_rt::LoadedModel;
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

/// Slots of a model's first decoder; it doubles when they are all taken.
pub(crate) const FIRST_SLOTS: usize = 8;
/// The most sessions of one CUDA model that can hold a GPU state at once (the
/// decoder's slot limit).
pub(crate) const MAX_GPU_SESSIONS: usize = 65535;

/// Where one session's state is (see the module docs). The default: no slot, the
/// state on the host.
#[derive(Debug, Default)]
pub(crate) struct GpuSlot {
    /// The session's decoder slot, taken at its first GPU step.
    slot: Option<u32>,
    /// The slot holds the session's current state (the host copy is stale).
    on_device: bool,
}

impl GpuSlot {
    /// Whether the session's current state is in its slot (not on the host).
    pub(crate) fn on_device(&self) -> bool {
        self.on_device
    }

    /// The host copy was just replaced (reset, state load): it is the state now.
    pub(crate) fn host_replaced(&mut self) {
        self.on_device = false;
    }
}

/// One session of a GPU step: where its state is, and its host copy.
pub(crate) struct Stream<'a> {
    pub(crate) slot: &'a mut GpuSlot,
    pub(crate) host: &'a mut [f32],
}

/// The decoder and which of its slots are taken.
struct Decoder {
    dec: GpuDecoder<'static>,
    live: Vec<bool>,
}

/// What the model's mutex guards: all GPU work of one model.
struct Inner {
    // Both borrow the context in `GpuPrefill::ctx`, dropped after them.
    model: GpuModel<'static>,
    dec: Option<Decoder>,
}

/// The GPU half of a CUDA model: its context, its uploaded weights and its decoder.
pub(crate) struct GpuPrefill {
    // Declared before `ctx`: fields drop in declaration order, so the weights (which
    // borrow the context) are freed while the context is still alive.
    inner: Mutex<Inner>,
    // In an Arc (not a Box, which asserts unique access when moved) so its address
    // never changes while `inner` borrows it.
    ctx: Arc<GpuContext>,
}

// The C API lets any number of threads share a model; GPU work is serialized by the
// mutex (one cuBLAS handle and one stream per model, one decoder).
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
            inner: Mutex::new(Inner {
                model: gm,
                dec: None,
            }),
            ctx,
        })
    }

    /// The context with the lifetime the GPU objects in `inner` carry.
    fn ctx_static(&self) -> &'static GpuContext {
        let p: *const GpuContext = &*self.ctx;
        // SAFETY: as in `upload`: the context lives in the Arc's allocation, which does
        // not move and outlives everything in `inner` (field order); the 'static
        // reference is only given to objects stored in `inner`.
        unsafe { &*p }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while locked (caught at the boundary) leaves no half-written shared
        // state: the weights are never written after the upload, and a slot's state
        // is only ever the session's (a failed step is documented to leave it
        // unspecified).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        let g = self.lock();
        let gm = &g.model;
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
            let mut run = PrefillRun::new(gm, 1, chunk.len(), wanted).map_err(err)?;
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

    /// A decoder slot for a session (making or growing the decoder as needed).
    fn alloc_slot(&self, g: &mut Inner, lm: &LoadedModel) -> Result<u32, FfiError> {
        let err = |e| gpu_error(e, false);
        let full = match &g.dec {
            None => {
                g.dec = Some(Decoder::new(self.ctx_static(), lm, FIRST_SLOTS)?);
                false
            }
            Some(d) => d.live.iter().all(|&u| u),
        };
        if full {
            let Some(old) = g.dec.take() else {
                return Err(FfiError::new(MAMBA_ERR_DEVICE, "no GPU decoder"));
            };
            let cap = old.live.len();
            if cap >= MAX_GPU_SESSIONS {
                g.dec = Some(old);
                return Err(FfiError::new(
                    MAMBA_ERR_DEVICE,
                    format!(
                        "MAMBA_BACKEND_CUDA: {cap} sessions of this model already hold a \
                         GPU state, the most there can be; free some"
                    ),
                ));
            }
            // On failure the old decoder (and every session's state in it) stays.
            match old.grown(self.ctx_static(), lm, (cap * 2).min(MAX_GPU_SESSIONS)) {
                Ok(new) => g.dec = Some(new),
                Err(e) => {
                    g.dec = Some(old);
                    return Err(e);
                }
            }
        }
        let Some(d) = g.dec.as_mut() else {
            return Err(FfiError::new(MAMBA_ERR_DEVICE, "no GPU decoder"));
        };
        let s = d.dec.alloc_slot().map_err(err)?;
        d.live[s as usize] = true;
        Ok(s)
    }

    /// Gives every stream a slot holding its current state (uploading the host copy
    /// where it is the newer one); returns the slots, in order.
    fn attach(
        &self,
        g: &mut Inner,
        lm: &LoadedModel,
        streams: &mut [Stream<'_>],
    ) -> Result<Vec<u32>, FfiError> {
        let mut slots = Vec::with_capacity(streams.len());
        for st in streams.iter_mut() {
            let slot = match st.slot.slot {
                Some(s) => s,
                None => {
                    let s = self.alloc_slot(g, lm)?;
                    st.slot.slot = Some(s);
                    st.slot.on_device = false;
                    s
                }
            };
            if !st.slot.on_device {
                let d = decoder(g)?;
                d.dec
                    .load_slot(slot, st.host)
                    .map_err(|e| gpu_error(e, false))?;
                st.slot.on_device = true;
            }
            slots.push(slot);
        }
        Ok(slots)
    }

    /// One GPU step of `streams` (distinct sessions of this model), stream i fed
    /// `tokens[i]` (checked by the caller). Writes the logits (`streams.len()` x V)
    /// and the greedy next tokens (argmax on the device, ties to the lower id) to
    /// whichever of `logits` / `next` is given, only on success. On a device error
    /// the streams' states are unspecified.
    pub(crate) fn step_tokens(
        &self,
        lm: &LoadedModel,
        streams: &mut [Stream<'_>],
        tokens: &[u32],
        logits: Option<&mut [f32]>,
        next: Option<&mut [i32]>,
    ) -> Result<(), FfiError> {
        let err = |e| gpu_error(e, false);
        let mut g = self.lock();
        let slots = self.attach(&mut g, lm, streams)?;
        let d = decoder(&mut g)?;
        let pairs: Vec<(u32, u32)> = slots.iter().copied().zip(tokens.iter().copied()).collect();
        d.dec.step_tokens(&pairs).map_err(err)?;
        let l = match &logits {
            Some(out) => {
                let mut l = vec![0f32; out.len()];
                d.dec.logits_into(&mut l).map_err(err)?;
                Some(l)
            }
            None => None,
        };
        let a = match next {
            Some(_) => Some(d.dec.argmax().map_err(err)?),
            None => None,
        };
        if let (Some(out), Some(l)) = (logits, l) {
            out.copy_from_slice(&l);
        }
        if let (Some(out), Some(a)) = (next, a) {
            for (o, t) in out.iter_mut().zip(a) {
                *o = t as i32;
            }
        }
        Ok(())
    }

    /// One GPU step of `streams`, stream i fed input vector i of `xs` (`streams.len()`
    /// x D, checked by the caller); the final hidden states go to `hidden` (same
    /// size), only on success.
    pub(crate) fn step_embeddings(
        &self,
        lm: &LoadedModel,
        streams: &mut [Stream<'_>],
        xs: &[f32],
        hidden: &mut [f32],
    ) -> Result<(), FfiError> {
        let d_model = lm.config().d_model;
        let mut g = self.lock();
        let slots = self.attach(&mut g, lm, streams)?;
        let d = decoder(&mut g)?;
        let batch: Vec<(u32, &[f32])> = slots
            .iter()
            .copied()
            .zip(xs.chunks_exact(d_model))
            .collect();
        let h = d
            .dec
            .step_embeddings(&batch)
            .map_err(|e| gpu_error(e, false))?;
        if h.len() != hidden.len() {
            return Err(FfiError::new(
                MAMBA_ERR_DEVICE,
                format!(
                    "GPU step gave {} hidden values, expected {}",
                    h.len(),
                    hidden.len()
                ),
            ));
        }
        hidden.copy_from_slice(&h);
        Ok(())
    }

    /// Brings a device-resident state back into `host` (once); afterwards the host
    /// copy is the state. On error nothing changes.
    pub(crate) fn to_host(&self, slot: &mut GpuSlot, host: &mut [f32]) -> Result<(), FfiError> {
        if !slot.on_device {
            return Ok(());
        }
        let mut tmp = vec![0f32; host.len()];
        self.read_state(slot, &mut tmp)?;
        host.copy_from_slice(&tmp);
        slot.on_device = false;
        Ok(())
    }

    /// The state of a session whose state is on the device, into `out`.
    pub(crate) fn read_state(&self, slot: &GpuSlot, out: &mut [f32]) -> Result<(), FfiError> {
        let Some(s) = slot.slot.filter(|_| slot.on_device) else {
            return Err(FfiError::new(
                MAMBA_ERR_DEVICE,
                "internal: the session's state is not on the GPU",
            ));
        };
        let mut g = self.lock();
        let d = decoder(&mut g)?;
        d.dec
            .save_slot_into(s, out)
            .map_err(|e| gpu_error(e, false))
    }

    /// Gives a freed session's slot back (errors are ignored: the slot is then
    /// lost until the model is freed, nothing else).
    pub(crate) fn release(&self, slot: &mut GpuSlot) {
        slot.on_device = false;
        if let Some(s) = slot.slot.take() {
            let mut g = self.lock();
            if let Some(d) = g.dec.as_mut()
                && d.dec.free_slot(s).is_ok()
            {
                d.live[s as usize] = false;
            }
        }
    }
}

fn decoder(g: &mut Inner) -> Result<&mut Decoder, FfiError> {
    g.dec
        .as_mut()
        .ok_or_else(|| FfiError::new(MAMBA_ERR_DEVICE, "internal: no GPU decoder"))
}

impl Decoder {
    /// A decoder of `slots` slots, all free, with f32 weights (see the module docs).
    fn new(ctx: &'static GpuContext, lm: &LoadedModel, slots: usize) -> Result<Self, FfiError> {
        let opts = DecodeOptions {
            weights: DecodeWeights::F32,
            max_slots: slots,
            ..DecodeOptions::default()
        };
        // An invalid argument here is a model the decoder cannot run (UNSUPPORTED).
        let dec = GpuDecoder::new(ctx, &lm.view(), opts).map_err(|e| gpu_error(e, true))?;
        Ok(Decoder {
            dec,
            live: vec![false; slots],
        })
    }

    /// A decoder of `slots` slots with this one's live slots (same numbers, same
    /// states); this one is left as it was.
    fn grown(
        &self,
        ctx: &'static GpuContext,
        lm: &LoadedModel,
        slots: usize,
    ) -> Result<Self, FfiError> {
        let err = |e| gpu_error(e, false);
        let mut new = Decoder::new(ctx, lm, slots)?;
        let mut state = vec![0f32; self.dec.state_len()];
        // alloc_slot takes the lowest free slot: allocating them all in order keeps
        // every number; the ones not live are freed again.
        for (i, &live) in self.live.iter().enumerate() {
            let s = new.dec.alloc_slot().map_err(err)?;
            if s as usize != i {
                return Err(FfiError::new(
                    MAMBA_ERR_DEVICE,
                    format!("internal: growing the GPU decoder gave slot {s} for {i}"),
                ));
            }
            if live {
                self.dec.save_slot_into(s, &mut state).map_err(err)?;
                new.dec.load_slot(s, &state).map_err(err)?;
                new.live[i] = true;
            } else {
                new.dec.free_slot(s).map_err(err)?;
            }
        }
        Ok(new)
    }
}
