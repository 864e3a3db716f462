//! Token sampling with a seeded RNG of our own, so the host, the C API and a
//! microcontroller draw exactly the same tokens from the same logits.

use crate::error::{Error, Result};

/// Sampling parameters (llama.cpp's meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SamplingParams {
    /// Softmax temperature; `<= 0` means greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: u32,
    /// Keep the smallest set whose probability reaches p; 1 disables.
    pub top_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: u32,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

impl SamplingParams {
    /// Reject NaN and out-of-range values.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() {
            return Err(Error::Sampling("temperature is not finite"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Sampling("top_p must be in (0, 1]"));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::Sampling("repeat_penalty must be positive"));
        }
        Ok(())
    }
}

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Debug, Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

/// A sampler: parameters plus RNG state.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Parameters.
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Sampler {
            params,
            rng: Rng::new(params.seed),
        })
    }

    /// Pick the next token. `logits` (len V) is modified; `recent` holds the tokens so
    /// far (only the last `repeat_last_n` are used); `work` needs at least V entries.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32], work: &mut [u32]) -> Result<u32> {
        let v = logits.len();
        if v == 0 {
            return Err(Error::BufferSize {
                what: "logits",
                needed: 1,
                got: 0,
            });
        }
        if work.len() < v {
            return Err(Error::BufferSize {
                what: "sampler work",
                needed: v,
                got: work.len(),
            });
        }
        let p = self.params;
        if p.repeat_penalty != 1.0 {
            let n = (p.repeat_last_n as usize).min(recent.len());
            let window = &recent[recent.len() - n..];
            for (i, &t) in window.iter().enumerate() {
                if (t as usize) < v && !window[..i].contains(&t) {
                    let l = &mut logits[t as usize];
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return Ok(argmax(logits) as u32);
        }
        // Candidates sorted by logit, highest first; ties by lower id (deterministic).
        let idx = &mut work[..v];
        for (i, w) in idx.iter_mut().enumerate() {
            *w = i as u32;
        }
        let cmp = |a: &u32, b: &u32| {
            let (la, lb) = (logits[*a as usize], logits[*b as usize]);
            lb.partial_cmp(&la)
                .unwrap_or(core::cmp::Ordering::Equal)
                .then(a.cmp(b))
        };
        let k = if p.top_k == 0 {
            v
        } else {
            (p.top_k as usize).min(v)
        };
        if k < v {
            idx.select_nth_unstable_by(k - 1, cmp);
        }
        let cand = &mut idx[..k];
        cand.sort_unstable_by(cmp);
        let max = logits[cand[0] as usize];
        // Probabilities (unnormalised) into the logits buffer, in candidate order.
        let mut total = 0.0f32;
        for &t in cand.iter() {
            let e = libm::expf((logits[t as usize] - max) / p.temperature);
            logits[t as usize] = e;
            total += e;
        }
        let mut keep = k;
        if p.top_p < 1.0 {
            let mut cum = 0.0f32;
            for (i, &t) in cand.iter().enumerate() {
                cum += logits[t as usize] / total;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept = &cand[..keep];
        let mass: f32 = kept.iter().map(|&t| logits[t as usize]).sum();
        let mut r = self.rng.next_f32() * mass;
        for &t in kept {
            r -= logits[t as usize];
            if r < 0.0 {
                return Ok(t);
            }
        }
        Ok(kept[keep - 1])
    }
}

/// Index of the largest value (the first on ties; NaN never wins).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            ..Default::default()
        })
        .unwrap();
        let mut l = [0.1, 2.0, -1.0, 1.9];
        let mut w = [0u32; 4];
        assert_eq!(s.sample(&mut l, &[], &mut w).unwrap(), 1);
    }

    #[test]
    fn repeat_penalty_changes_choice() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        })
        .unwrap();
        let mut l = [0.1, 2.0, -1.0, 1.9];
        let mut w = [0u32; 4];
        assert_eq!(s.sample(&mut l, &[1, 1], &mut w).unwrap(), 3);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_respected() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 3,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..Default::default()
        };
        let base: [f32; 8] = [0.5, 0.1, 3.0, 2.9, 2.8, -1.0, 0.0, 0.2];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, ..p }).unwrap();
            let mut out = [0u32; 64];
            let mut w = [0u32; 8];
            for o in out.iter_mut() {
                let mut l = base;
                *o = s.sample(&mut l, &[], &mut w).unwrap();
            }
            out
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        assert!(a.iter().all(|&t| t == 2 || t == 3 || t == 4));
        assert!(a.contains(&2) && a.contains(&3) && a.contains(&4));
    }

    #[test]
    fn top_p_keeps_smallest_set() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repeat_penalty: 1.0,
            seed: 1,
            repeat_last_n: 0,
        };
        let mut s = Sampler::new(p).unwrap();
        let mut w = [0u32; 3];
        for _ in 0..50 {
            let mut l = [10.0, 0.0, 0.0];
            assert_eq!(s.sample(&mut l, &[], &mut w).unwrap(), 0);
        }
    }

    #[test]
    fn rejects_bad_params() {
        assert!(
            Sampler::new(SamplingParams {
                top_p: 0.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Sampler::new(SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            })
            .is_err()
        );
    }
}
