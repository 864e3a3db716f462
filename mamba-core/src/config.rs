//! Model hyper-parameters. Every size is a parameter; nothing is assumed from mamba-130m.

use crate::error::{Error, Result};

/// The shape and options of a Mamba-1 model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelConfig {
    /// D: hidden size (d_model).
    pub d_model: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// E: d_inner = expand * D.
    pub d_inner: usize,
    /// N: SSM state size.
    pub d_state: usize,
    /// K: causal conv width.
    pub d_conv: usize,
    /// R: rank of the delta projection.
    pub dt_rank: usize,
    /// V: vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// in_proj has a bias.
    pub in_proj_bias: bool,
    /// out_proj has a bias.
    pub out_proj_bias: bool,
    /// conv1d has a bias.
    pub conv_bias: bool,
    /// The head is the embedding (no separate output matrix).
    pub tied_head: bool,
    /// Falcon-Mamba: weightless RMSNorm over dt, B and C after x_proj.
    pub dt_b_c_rms: bool,
}

/// Upper bound on any single dimension; larger values are treated as corrupt.
pub const MAX_DIM: usize = 1 << 24;
/// Upper bound on layers.
pub const MAX_LAYERS: usize = 4096;

impl ModelConfig {
    /// Check that the sizes are consistent and sane.
    pub fn validate(&self) -> Result<()> {
        let dims = [
            (self.d_model, "d_model is zero or absurd"),
            (self.d_inner, "d_inner is zero or absurd"),
            (self.d_state, "d_state is zero or absurd"),
            (self.d_conv, "d_conv is zero or absurd"),
            (self.dt_rank, "dt_rank is zero or absurd"),
            (self.vocab_size, "vocab_size is zero or absurd"),
        ];
        for (v, msg) in dims {
            if v == 0 || v > MAX_DIM {
                return Err(Error::Config(msg));
            }
        }
        if self.n_layer == 0 || self.n_layer > MAX_LAYERS {
            return Err(Error::Config("n_layer is zero or absurd"));
        }
        if self.d_state > 4096 {
            return Err(Error::Config("d_state larger than 4096"));
        }
        if self.d_conv > 64 {
            return Err(Error::Config("d_conv larger than 64"));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::Config("rms eps is negative or not finite"));
        }
        // Every buffer size must fit in usize (matters on 32-bit microcontrollers).
        self.state_len_checked()
            .ok_or(Error::Config("state size overflows"))?;
        self.scratch_len_checked()
            .ok_or(Error::Config("scratch size overflows"))?;
        Ok(())
    }

    /// f32 values of conv window per layer: (K - 1) x E.
    pub fn conv_state_len(&self) -> usize {
        (self.d_conv - 1) * self.d_inner
    }

    /// f32 values of SSM state per layer: E x N.
    pub fn ssm_state_len(&self) -> usize {
        self.d_inner * self.d_state
    }

    /// f32 values of recurrent state per layer.
    pub fn layer_state_len(&self) -> usize {
        self.conv_state_len() + self.ssm_state_len()
    }

    fn state_len_checked(&self) -> Option<usize> {
        (self.d_conv - 1)
            .checked_add(self.d_state)?
            .checked_mul(self.d_inner)?
            .checked_mul(self.n_layer)
    }

    /// f32 values of recurrent state for one stream: `(K - 1 + N) * E * n_layer`.
    pub fn state_len(&self) -> usize {
        self.state_len_checked().unwrap_or(usize::MAX)
    }

    /// Width of x_proj's output: R + 2N (dt, B, C).
    pub fn xdbc_len(&self) -> usize {
        self.dt_rank + 2 * self.d_state
    }

    fn scratch_len_checked(&self) -> Option<usize> {
        let d = self.d_model;
        let e = self.d_inner;
        // h, u, out (D each); xz (2E); xc, delta, y (E each); xdbc.
        d.checked_mul(3)?
            .checked_add(e.checked_mul(5)?)?
            .checked_add(self.xdbc_len())
    }

    /// f32 values of scratch one step needs (see [`crate::Scratch`]).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len_checked().unwrap_or(usize::MAX)
    }

    /// A 64-bit FNV-1a hash of every field, used to tie state blobs to a shape.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        for v in [
            self.d_model,
            self.n_layer,
            self.d_inner,
            self.d_state,
            self.d_conv,
            self.dt_rank,
            self.vocab_size,
        ] {
            h.write(&(v as u64).to_le_bytes());
        }
        h.write(&self.eps.to_bits().to_le_bytes());
        h.write(&[
            self.in_proj_bias as u8,
            self.out_proj_bias as u8,
            self.conv_bias as u8,
            self.tied_head as u8,
            self.dt_b_c_rms as u8,
        ]);
        h.finish()
    }
}

/// 64-bit FNV-1a, enough to tell models apart (not a cryptographic hash).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    /// A fresh hasher.
    pub const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    /// Feed bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c130m() -> ModelConfig {
        ModelConfig {
            d_model: 768,
            n_layer: 24,
            d_inner: 1536,
            d_state: 16,
            d_conv: 4,
            dt_rank: 48,
            vocab_size: 50280,
            eps: 1e-5,
            in_proj_bias: false,
            out_proj_bias: false,
            conv_bias: true,
            tied_head: true,
            dt_b_c_rms: false,
        }
    }

    #[test]
    fn state_size_matches_spec() {
        // 2.67 MiB for 130m per MAMBA_SPEC.md.
        let bytes = c130m().state_len() * 4;
        assert_eq!(bytes, (3 + 16) * 1536 * 24 * 4);
        assert!((bytes as f64 / (1024.0 * 1024.0) - 2.67).abs() < 0.01);
    }

    #[test]
    fn validate_rejects_inconsistent() {
        let mut c = c130m();
        assert!(c.validate().is_ok());
        c.d_state = 0;
        assert_eq!(
            c.validate(),
            Err(Error::Config("d_state is zero or absurd"))
        );
        let mut c = c130m();
        c.n_layer = 0;
        assert!(c.validate().is_err());
        let mut c = c130m();
        c.eps = f32::NAN;
        assert!(c.validate().is_err());
    }

    #[test]
    fn fingerprint_differs() {
        let a = c130m();
        let mut b = a;
        b.d_state = 8;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
