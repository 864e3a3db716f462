//! One recurrent step through the whole model (MAMBA_SPEC.md, "One step").

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kernels::{Kernels, SsmStep};
use crate::math::{rmsnorm, rmsnorm_inplace, silu};
use crate::state::layer_state;
use crate::weights::Model;

/// Named views into a caller-provided scratch buffer of `config.scratch_len()` f32.
pub struct Scratch<'s> {
    /// (D) residual stream.
    pub h: &'s mut [f32],
    /// (D) normed input of a block.
    pub u: &'s mut [f32],
    /// (D) block output / final norm output.
    pub out: &'s mut [f32],
    /// (2E) in_proj output: x then z.
    pub xz: &'s mut [f32],
    /// (E) conv + SiLU output.
    pub xc: &'s mut [f32],
    /// (E) delta.
    pub delta: &'s mut [f32],
    /// (E) gated SSM output.
    pub y: &'s mut [f32],
    /// (R + 2N) x_proj output: dt, B, C.
    pub xdbc: &'s mut [f32],
    /// Unused tail.
    pub spare: &'s mut [f32],
}

impl<'s> Scratch<'s> {
    /// Split `buf` (at least `cfg.scratch_len()` long).
    pub fn new(cfg: &ModelConfig, buf: &'s mut [f32]) -> Result<Self> {
        let need = cfg.scratch_len();
        if buf.len() < need {
            return Err(Error::BufferSize {
                what: "scratch",
                needed: need,
                got: buf.len(),
            });
        }
        let (d, e) = (cfg.d_model, cfg.d_inner);
        let (h, r) = buf.split_at_mut(d);
        let (u, r) = r.split_at_mut(d);
        let (out, r) = r.split_at_mut(d);
        let (xz, r) = r.split_at_mut(2 * e);
        let (xc, r) = r.split_at_mut(e);
        let (delta, r) = r.split_at_mut(e);
        let (y, r) = r.split_at_mut(e);
        let (xdbc, spare) = r.split_at_mut(cfg.xdbc_len());
        Ok(Scratch {
            h,
            u,
            out,
            xz,
            xc,
            delta,
            y,
            xdbc,
            spare,
        })
    }
}

fn check_state(cfg: &ModelConfig, state: &[f32]) -> Result<()> {
    if state.len() != cfg.state_len() {
        return Err(Error::BufferSize {
            what: "state",
            needed: cfg.state_len(),
            got: state.len(),
        });
    }
    Ok(())
}

/// Causal depthwise conv for one token, then SiLU; shifts the window.
/// `window` is (K-1, E), oldest first; `w` is (E, K).
pub fn conv_step(
    window: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    k: usize,
    out: &mut [f32],
) {
    conv_step_linear(window, x, w, bias, k, out);
    for o in out.iter_mut().take(x.len()) {
        *o = silu(*o);
    }
}

/// The causal depthwise conv of [`conv_step`] without the SiLU (SIMD kernels apply it
/// vectorized afterwards); shifts the window the same way.
pub fn conv_step_linear(
    window: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    k: usize,
    out: &mut [f32],
) {
    let e_len = x.len();
    for e in 0..e_len {
        let we = &w[e * k..(e + 1) * k];
        let mut acc = if bias.is_empty() { 0.0 } else { bias[e] };
        for j in 0..k - 1 {
            acc += window[j * e_len + e] * we[j];
        }
        acc += x[e] * we[k - 1];
        out[e] = acc;
    }
    if k > 1 {
        // Shift the window one token left and append x.
        window.copy_within(e_len..(k - 1) * e_len, 0);
        window[(k - 2) * e_len..(k - 1) * e_len].copy_from_slice(x);
    }
}

/// Run every block on the residual stream in `sc.h`, updating `state`.
pub fn blocks<K: Kernels>(
    model: &Model<'_>,
    k: &K,
    state: &mut [f32],
    sc: &mut Scratch<'_>,
) -> Result<()> {
    let cfg = model.config();
    check_state(cfg, state)?;
    let (e, n, r) = (cfg.d_inner, cfg.d_state, cfg.dt_rank);
    for (l, lw) in model.layers().iter().enumerate() {
        let (conv_win, ssm) = layer_state(cfg, state, l);
        rmsnorm(sc.u, sc.h, model.f32s(&lw.norm), cfg.eps);
        k.matvec(&model.matrix(&lw.in_proj), sc.u, sc.xz);
        if cfg.in_proj_bias {
            for (v, b) in sc.xz.iter_mut().zip(model.f32s(&lw.in_proj_b)) {
                *v += b;
            }
        }
        let (x, z) = sc.xz.split_at(e);
        k.conv_step(
            conv_win,
            x,
            model.f32s(&lw.conv_w),
            model.f32s(&lw.conv_b),
            cfg.d_conv,
            sc.xc,
        );
        k.matvec(&model.matrix(&lw.x_proj), sc.xc, sc.xdbc);
        if cfg.dt_b_c_rms {
            let (dt, bc) = sc.xdbc.split_at_mut(r);
            let (b, c) = bc.split_at_mut(n);
            rmsnorm_inplace(dt, cfg.eps);
            rmsnorm_inplace(b, cfg.eps);
            rmsnorm_inplace(c, cfg.eps);
        }
        let (dt, bc) = sc.xdbc.split_at(r);
        let (b, c) = bc.split_at(n);
        k.matvec(&model.matrix(&lw.dt_proj), dt, sc.delta);
        k.softplus_bias(sc.delta, model.f32s(&lw.dt_b));
        let p = SsmStep {
            a: model.f32s(&lw.a),
            d: model.f32s(&lw.d),
            delta: sc.delta,
            b,
            c,
            xc: sc.xc,
            z,
        };
        k.ssm_step(&p, ssm, sc.y);
        k.matvec(&model.matrix(&lw.out_proj), sc.y, sc.out);
        if cfg.out_proj_bias {
            for (v, b) in sc.out.iter_mut().zip(model.f32s(&lw.out_proj_b)) {
                *v += b;
            }
        }
        for (hv, o) in sc.h.iter_mut().zip(sc.out.iter()) {
            *hv += o;
        }
    }
    Ok(())
}

/// Feed one token; write the V logits of the next token.
pub fn step_token<K: Kernels>(
    model: &Model<'_>,
    k: &K,
    state: &mut [f32],
    scratch: &mut [f32],
    token: u32,
    logits: &mut [f32],
) -> Result<()> {
    let cfg = model.config();
    if token as usize >= cfg.vocab_size {
        return Err(Error::TokenOutOfRange {
            token,
            vocab: cfg.vocab_size as u32,
        });
    }
    if logits.len() != cfg.vocab_size {
        return Err(Error::BufferSize {
            what: "logits",
            needed: cfg.vocab_size,
            got: logits.len(),
        });
    }
    let mut sc = Scratch::new(cfg, scratch)?;
    model.embed().row_to_f32(token as usize, sc.h);
    blocks(model, k, state, &mut sc)?;
    rmsnorm(sc.out, sc.h, model.norm_f(), cfg.eps);
    k.matvec(&model.head(), sc.out, logits);
    Ok(())
}

/// Feed one input vector of D floats (the audio/sensor path); write the final hidden
/// state after norm_f (D floats).
pub fn step_embedding<K: Kernels>(
    model: &Model<'_>,
    k: &K,
    state: &mut [f32],
    scratch: &mut [f32],
    x: &[f32],
    hidden: &mut [f32],
) -> Result<()> {
    let cfg = model.config();
    if x.len() != cfg.d_model {
        return Err(Error::BufferSize {
            what: "input vector",
            needed: cfg.d_model,
            got: x.len(),
        });
    }
    if hidden.len() != cfg.d_model {
        return Err(Error::BufferSize {
            what: "hidden",
            needed: cfg.d_model,
            got: hidden.len(),
        });
    }
    let mut sc = Scratch::new(cfg, scratch)?;
    sc.h.copy_from_slice(x);
    blocks(model, k, state, &mut sc)?;
    rmsnorm(hidden, sc.h, model.norm_f(), cfg.eps);
    Ok(())
}
