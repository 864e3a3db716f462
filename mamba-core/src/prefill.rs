//! Prefill: a block of tokens (or input vectors) through the model at once. The
//! projections of the whole block are one matrix x matrix product ([`Kernels::matmat`]:
//! each weight is read once per block instead of once per token); the conv and the scan
//! then run token by token per channel with the same kernels as the recurrent step, so
//! the state after a block equals the state after the same tokens fed to
//! [`crate::step_token`] within float rounding of the products.
//!
//! No allocation: the caller gives a scratch of [`scratch_len`] floats.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kernels::{Kernels, SsmScan};
use crate::math::{rmsnorm, rmsnorm_inplace};
use crate::state::layer_state;
use crate::weights::Model;

/// f32 values of scratch [`blocks`] needs for blocks of up to `t_max` tokens:
/// `t_max * (2D + 5E + 2R + 2N)`.
pub fn scratch_len(cfg: &ModelConfig, t_max: usize) -> usize {
    t_max * per_token(cfg)
}

fn per_token(c: &ModelConfig) -> usize {
    2 * c.d_model + 5 * c.d_inner + 2 * c.dt_rank + 2 * c.d_state
}

/// Run every block over `t` tokens whose residual streams are the rows of `h`
/// (t x D, updated in place), advancing `state` by those `t` steps.
pub fn blocks<K: Kernels>(
    model: &Model<'_>,
    k: &K,
    state: &mut [f32],
    h: &mut [f32],
    t: usize,
    scratch: &mut [f32],
) -> Result<()> {
    let cfg = model.config();
    let (d, e, n, r) = (cfg.d_model, cfg.d_inner, cfg.d_state, cfg.dt_rank);
    let xl = r + 2 * n;
    if state.len() != cfg.state_len() {
        return Err(Error::BufferSize {
            what: "state",
            needed: cfg.state_len(),
            got: state.len(),
        });
    }
    if h.len() != t * d {
        return Err(Error::BufferSize {
            what: "prefill hidden rows (t x D)",
            needed: t * d,
            got: h.len(),
        });
    }
    if scratch.len() < scratch_len(cfg, t) {
        return Err(Error::BufferSize {
            what: "prefill scratch",
            needed: scratch_len(cfg, t),
            got: scratch.len(),
        });
    }
    // Shapes per token: u (D), xz (2E), xc (E), xdbc (R + 2N), dt (R), delta (E),
    // y (E), out (D).
    let (u, rest) = scratch.split_at_mut(t * d);
    let (xz, rest) = rest.split_at_mut(t * 2 * e);
    let (xc, rest) = rest.split_at_mut(t * e);
    let (xdbc, rest) = rest.split_at_mut(t * xl);
    let (dts, rest) = rest.split_at_mut(t * r);
    let (delta, rest) = rest.split_at_mut(t * e);
    let (y, rest) = rest.split_at_mut(t * e);
    let out = &mut rest[..t * d];
    for (l, lw) in model.layers().iter().enumerate() {
        let (conv_win, ssm) = layer_state(cfg, state, l);
        let norm = model.f32s(&lw.norm);
        for (ut, ht) in u.chunks_exact_mut(d).zip(h.chunks_exact(d)) {
            rmsnorm(ut, ht, norm, cfg.eps);
        }
        k.matmat(&model.matrix(&lw.in_proj), u, t, xz);
        if cfg.in_proj_bias {
            let b = model.f32s(&lw.in_proj_b);
            for row in xz.chunks_exact_mut(2 * e) {
                for (v, bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
            }
        }
        let (cw, cb) = (model.f32s(&lw.conv_w), model.f32s(&lw.conv_b));
        k.conv_block(conv_win, xz, 2 * e, t, cw, cb, cfg.d_conv, xc);
        k.matmat(&model.matrix(&lw.x_proj), xc, t, xdbc);
        for (row, dt) in xdbc.chunks_exact_mut(xl).zip(dts.chunks_exact_mut(r)) {
            if cfg.dt_b_c_rms {
                let (dtp, bc) = row.split_at_mut(r);
                let (b, c) = bc.split_at_mut(n);
                rmsnorm_inplace(dtp, cfg.eps);
                rmsnorm_inplace(b, cfg.eps);
                rmsnorm_inplace(c, cfg.eps);
            }
            dt.copy_from_slice(&row[..r]);
        }
        k.matmat(&model.matrix(&lw.dt_proj), dts, t, delta);
        let dt_b = model.f32s(&lw.dt_b);
        k.softplus_bias_block(delta, dt_b);
        let scan = SsmScan {
            a: model.f32s(&lw.a),
            d: model.f32s(&lw.d),
            delta,
            xdbc,
            dt_rank: r,
            xc,
            xz,
            t,
        };
        k.ssm_scan(&scan, ssm, y);
        k.matmat(&model.matrix(&lw.out_proj), y, t, out);
        let ob = if cfg.out_proj_bias {
            model.f32s(&lw.out_proj_b)
        } else {
            &[]
        };
        for (ht, ot) in h.chunks_exact_mut(d).zip(out.chunks_exact(d)) {
            if ob.is_empty() {
                for (hv, o) in ht.iter_mut().zip(ot) {
                    *hv += o;
                }
            } else {
                for ((hv, o), b) in ht.iter_mut().zip(ot).zip(ob) {
                    *hv += o + b;
                }
            }
        }
    }
    Ok(())
}

/// Embed `tokens` into the rows of `h` (t x D). Errors on an id outside the vocabulary.
pub fn embed_tokens(model: &Model<'_>, tokens: &[u32], h: &mut [f32]) -> Result<()> {
    let cfg = model.config();
    let d = cfg.d_model;
    if h.len() != tokens.len() * d {
        return Err(Error::BufferSize {
            what: "prefill hidden rows (t x D)",
            needed: tokens.len() * d,
            got: h.len(),
        });
    }
    for (&tok, ht) in tokens.iter().zip(h.chunks_exact_mut(d)) {
        if tok as usize >= cfg.vocab_size {
            return Err(Error::TokenOutOfRange {
                token: tok,
                vocab: cfg.vocab_size as u32,
            });
        }
        model.embed().row_to_f32(tok as usize, ht);
    }
    Ok(())
}
