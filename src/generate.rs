//! The generation loop shared by `mamba-cli generate` and the C API, so the same model,
//! prompt, seed and parameters give the same tokens everywhere.

use crate::error::{Error, Result};
use crate::session::Session;
use mamba_core::{Kernels, Sampler, SamplingParams};

/// What a generation run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateStats {
    /// Prompt tokens fed.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated: usize,
    /// Seconds spent on the prompt.
    pub prompt_secs: f64,
    /// Seconds spent generating.
    pub gen_secs: f64,
}

/// Feed `prompt` (at least one token), then sample up to `max_tokens` tokens.
/// `on_token` is called with each token as soon as it is sampled; returning `false`
/// stops the run (the result is then `Ok` with the tokens so far, and `stopped = true`).
///
/// The order is fixed: logits of the last prompt token -> sample -> report -> feed the
/// token -> logits. The repeat penalty sees the prompt and the generated tokens.
pub fn generate<K: Kernels>(
    session: &mut Session<'_>,
    k: &K,
    prompt: &[u32],
    params: &SamplingParams,
    max_tokens: usize,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(GenerateStats, bool)> {
    if prompt.is_empty() {
        return Err(Error::Invalid(
            "the prompt must hold at least one token".into(),
        ));
    }
    let mut sampler = Sampler::new(*params)?;
    let v = session.model().config().vocab_size;
    let mut logits = vec![0f32; v];
    let mut work = vec![0u32; v];
    let t0 = std::time::Instant::now();
    session.prefill_last(k, prompt, &mut logits)?;
    let prompt_secs = t0.elapsed().as_secs_f64();
    let mut history: Vec<u32> = prompt.to_vec();
    let t1 = std::time::Instant::now();
    let mut stats = GenerateStats {
        prompt_tokens: prompt.len(),
        prompt_secs,
        ..Default::default()
    };
    for _ in 0..max_tokens {
        let tok = sampler.sample(&mut logits, &history, &mut work)?;
        stats.generated += 1;
        if !on_token(tok) {
            stats.gen_secs = t1.elapsed().as_secs_f64();
            return Ok((stats, true));
        }
        history.push(tok);
        session.step_token(k, tok, &mut logits)?;
    }
    stats.gen_secs = t1.elapsed().as_secs_f64();
    Ok((stats, false))
}
