//! Recurrent state: layout, reset, and the versioned byte format for save/restore.
//!
//! Per layer, `(K-1) x E` conv window (oldest first) then `E x N` SSM state, all f32.
//! Blob: magic `MAMBAST1`, u32 version, u32 reserved, u64 config fingerprint,
//! u64 model fingerprint, u64 value count, then the values as little-endian f32.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Model;

/// Blob magic.
pub const STATE_MAGIC: [u8; 8] = *b"MAMBAST1";
/// Blob version.
pub const STATE_VERSION: u32 = 1;
/// Header bytes before the values.
pub const STATE_HEADER_LEN: usize = 40;

/// Zero the state (a fresh stream).
pub fn reset(state: &mut [f32]) {
    state.fill(0.0);
}

/// The conv window and SSM state of layer `l`.
pub fn layer_state<'s>(
    cfg: &ModelConfig,
    state: &'s mut [f32],
    l: usize,
) -> (&'s mut [f32], &'s mut [f32]) {
    let per = cfg.layer_state_len();
    let ls = &mut state[l * per..(l + 1) * per];
    ls.split_at_mut(cfg.conv_state_len())
}

/// Bytes of a state blob for this config.
pub fn blob_len(cfg: &ModelConfig) -> usize {
    STATE_HEADER_LEN + cfg.state_len() * 4
}

fn check_state_len(cfg: &ModelConfig, state: &[f32]) -> Result<()> {
    if state.len() != cfg.state_len() {
        return Err(Error::BufferSize {
            what: "state",
            needed: cfg.state_len(),
            got: state.len(),
        });
    }
    Ok(())
}

/// Write the blob of `state` into `out`; returns the bytes written.
pub fn export(model: &Model<'_>, state: &[f32], out: &mut [u8]) -> Result<usize> {
    let cfg = model.config();
    check_state_len(cfg, state)?;
    let len = blob_len(cfg);
    if out.len() < len {
        return Err(Error::BufferSize {
            what: "state blob",
            needed: len,
            got: out.len(),
        });
    }
    out[0..8].copy_from_slice(&STATE_MAGIC);
    out[8..12].copy_from_slice(&STATE_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&0u32.to_le_bytes());
    out[16..24].copy_from_slice(&cfg.fingerprint().to_le_bytes());
    out[24..32].copy_from_slice(&model.fingerprint().to_le_bytes());
    out[32..40].copy_from_slice(&(state.len() as u64).to_le_bytes());
    for (c, v) in out[STATE_HEADER_LEN..len].chunks_exact_mut(4).zip(state) {
        c.copy_from_slice(&v.to_le_bytes());
    }
    Ok(len)
}

/// Check a blob and load it into `state`. On error `state` is left untouched.
pub fn import(model: &Model<'_>, blob: &[u8], state: &mut [f32]) -> Result<()> {
    let cfg = model.config();
    check_state_len(cfg, state)?;
    if blob.len() < STATE_HEADER_LEN {
        return Err(Error::BadState("shorter than its header"));
    }
    if blob[0..8] != STATE_MAGIC {
        return Err(Error::BadState("bad magic"));
    }
    let u32_at = |o: usize| u32::from_le_bytes([blob[o], blob[o + 1], blob[o + 2], blob[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&blob[o..o + 8]);
        u64::from_le_bytes(a)
    };
    if u32_at(8) != STATE_VERSION {
        return Err(Error::BadState("unsupported version"));
    }
    // Reserved for flags; only 0 is defined.
    if u32_at(12) != 0 {
        return Err(Error::BadState("reserved header field is not zero"));
    }
    if u64_at(16) != cfg.fingerprint() || u64_at(24) != model.fingerprint() {
        return Err(Error::StateMismatch);
    }
    if u64_at(32) != state.len() as u64 || blob.len() != blob_len(cfg) {
        return Err(Error::BadState(
            "length does not match the model's state size",
        ));
    }
    let vals = &blob[STATE_HEADER_LEN..];
    if vals
        .chunks_exact(4)
        .any(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
    {
        return Err(Error::BadState("holds a NaN or infinity"));
    }
    for (v, c) in state.iter_mut().zip(vals.chunks_exact(4)) {
        *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}
