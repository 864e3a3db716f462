//! Chunked prefill on a [`Session`]: a block of tokens or input vectors at once, with
//! the projections as matrix x matrix products (see `mamba_core::prefill`). The state
//! afterwards is the state after feeding the same inputs one step at a time.

use crate::error::{Error, Result};
use crate::session::Session;
use mamba_core::math::rmsnorm;
use mamba_core::{Kernels, prefill};

/// Tokens per block (a multiple of 32, the AVX-512 f32 GEMM's token tile; the threads
/// split the weight rows, not the tokens): large enough that each weight is read once for
/// many tokens, small enough that a block's activations stay in cache (about 5 MB of
/// scratch at 130m).
pub const PREFILL_CHUNK: usize = 128;

impl Session<'_> {
    /// Feed `tokens` (T >= 1) as one prefill; write the logits after the last token
    /// (len V) into `logits_last`. On an out-of-range token or a wrong buffer size the
    /// state is left unchanged.
    pub fn prefill_tokens<K: Kernels>(
        &mut self,
        k: &K,
        tokens: &[u32],
        logits_last: &mut [f32],
    ) -> Result<()> {
        let v = self.model().config().vocab_size;
        if logits_last.len() != v {
            return Err(Error::Invalid(format!(
                "logits buffer holds {} floats, the vocabulary is {v}",
                logits_last.len()
            )));
        }
        self.prefill_tokens_impl(k, tokens, Out::Last(logits_last))
    }

    /// Feed `tokens` (T >= 1) as one prefill; write the logits after every position,
    /// T x V row-major (row t = the prediction after tokens[..=t]), into `logits`.
    pub fn prefill_tokens_all<K: Kernels>(
        &mut self,
        k: &K,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<()> {
        let v = self.model().config().vocab_size;
        if logits.len() != tokens.len() * v {
            return Err(Error::Invalid(format!(
                "logits buffer holds {} floats, T x V is {} x {v}",
                logits.len(),
                tokens.len()
            )));
        }
        self.prefill_tokens_impl(k, tokens, Out::All(logits))
    }

    /// Feed T input vectors `x` (T x D, row-major) as one prefill; write the final hidden
    /// state after norm_f for every position into `hidden` (T x D).
    pub fn prefill_embeddings<K: Kernels>(
        &mut self,
        k: &K,
        x: &[f32],
        hidden: &mut [f32],
    ) -> Result<()> {
        let model = self.model();
        let c = model.config();
        let d = c.d_model;
        if x.is_empty() || x.len() % d != 0 || hidden.len() != x.len() {
            return Err(Error::Invalid(format!(
                "prefill_embeddings: x has {} floats and hidden {}, both must be T x {d} (T >= 1)",
                x.len(),
                hidden.len()
            )));
        }
        let view = model.view();
        let mut scratch = vec![0.0f32; prefill::scratch_len(c, PREFILL_CHUNK)];
        for (xc, hc) in x
            .chunks(PREFILL_CHUNK * d)
            .zip(hidden.chunks_mut(PREFILL_CHUNK * d))
        {
            let t = xc.len() / d;
            let mut h = xc.to_vec();
            prefill::blocks(&view, k, self.state_mut(), &mut h, t, &mut scratch)?;
            for (ht, ot) in h.chunks_exact(d).zip(hc.chunks_exact_mut(d)) {
                rmsnorm(ot, ht, view.norm_f(), c.eps);
            }
        }
        Ok(())
    }

    fn prefill_tokens_impl<K: Kernels>(
        &mut self,
        k: &K,
        tokens: &[u32],
        mut out: Out<'_>,
    ) -> Result<()> {
        let model = self.model();
        let c = model.config();
        let (d, v) = (c.d_model, c.vocab_size);
        if tokens.is_empty() {
            return Err(Error::Invalid("prefill of zero tokens".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(Error::Invalid(format!(
                "token id {bad} out of range (vocabulary {v})"
            )));
        }
        let view = model.view();
        let mut scratch = vec![0.0f32; prefill::scratch_len(c, PREFILL_CHUNK)];
        let mut h = vec![0.0f32; PREFILL_CHUNK * d];
        let mut normed = vec![0.0f32; PREFILL_CHUNK * d];
        let n_chunks = tokens.len().div_ceil(PREFILL_CHUNK);
        for (ci, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let t = chunk.len();
            let h = &mut h[..t * d];
            prefill::embed_tokens(&view, chunk, h)?;
            prefill::blocks(&view, k, self.state_mut(), h, t, &mut scratch)?;
            match &mut out {
                Out::Last(logits) => {
                    if ci + 1 == n_chunks {
                        let last = &h[(t - 1) * d..];
                        rmsnorm(&mut normed[..d], last, view.norm_f(), c.eps);
                        k.matvec(&view.head(), &normed[..d], logits);
                    }
                }
                Out::All(logits) => {
                    for (ht, nt) in h.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
                        rmsnorm(nt, ht, view.norm_f(), c.eps);
                    }
                    let base = ci * PREFILL_CHUNK * v;
                    k.matmat(
                        &view.head(),
                        &normed[..t * d],
                        t,
                        &mut logits[base..base + t * v],
                    );
                }
            }
        }
        Ok(())
    }
}

enum Out<'a> {
    Last(&'a mut [f32]),
    All(&'a mut [f32]),
}
