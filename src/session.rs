//! A stream: its recurrent state and scratch over a shared [`LoadedModel`].

use crate::error::Result;
use crate::model::LoadedModel;
use mamba_core::{Kernels, state};

/// One stream's state. Not shared between threads; create one per stream.
pub struct Session<'m> {
    model: &'m LoadedModel,
    state: Vec<f32>,
    scratch: Vec<f32>,
}

impl<'m> Session<'m> {
    /// A fresh stream (zero state).
    pub fn new(model: &'m LoadedModel) -> Self {
        let c = model.config();
        Session {
            model,
            state: vec![0.0; c.state_len()],
            scratch: vec![0.0; c.scratch_len()],
        }
    }
    /// The model.
    pub fn model(&self) -> &'m LoadedModel {
        self.model
    }
    /// Back to the zero state.
    pub fn reset(&mut self) {
        state::reset(&mut self.state);
    }
    /// Feed a token, get the next-token logits (len V).
    pub fn step_token<K: Kernels>(&mut self, k: &K, token: u32, logits: &mut [f32]) -> Result<()> {
        mamba_core::step_token(
            &self.model.view(),
            k,
            &mut self.state,
            &mut self.scratch,
            token,
            logits,
        )?;
        Ok(())
    }
    /// Feed an input vector (len D), get the final hidden state (len D).
    pub fn step_embedding<K: Kernels>(
        &mut self,
        k: &K,
        x: &[f32],
        hidden: &mut [f32],
    ) -> Result<()> {
        mamba_core::step_embedding(
            &self.model.view(),
            k,
            &mut self.state,
            &mut self.scratch,
            x,
            hidden,
        )?;
        Ok(())
    }
    /// Feed a sequence of tokens; write the logits after the last one (len V).
    /// Every token is checked before any state changes.
    pub fn prefill_last<K: Kernels>(
        &mut self,
        k: &K,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<()> {
        let v = self.model.config().vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(mamba_core::Error::TokenOutOfRange {
                token: bad,
                vocab: v as u32,
            }
            .into());
        }
        for &t in tokens {
            self.step_token(k, t, logits)?;
        }
        Ok(())
    }
    /// The raw state values.
    pub fn state(&self) -> &[f32] {
        &self.state
    }
    /// The raw state values, mutable (for prefill paths).
    pub fn state_mut(&mut self) -> &mut [f32] {
        &mut self.state
    }
    /// Save the state as a checked blob.
    pub fn save_state(&self) -> Vec<u8> {
        let mut out = vec![0u8; state::blob_len(self.model.config())];
        // The buffer has exactly blob_len bytes and the state has state_len values.
        let n = state::export(&self.model.view(), &self.state, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }
    /// Restore a blob saved from this model; on error the state is unchanged.
    pub fn load_state(&mut self, blob: &[u8]) -> Result<()> {
        state::import(&self.model.view(), blob, &mut self.state)?;
        Ok(())
    }
}
