//! The compute kernels the step is built from, behind one trait so the std side can
//! plug in threads and SIMD. [`Scalar`] is the reference every other path is tested against.

use crate::math::{silu, softplus};
use crate::tensor::WeightMatrix;

/// Inputs of one selective-state update for one layer and one token.
#[derive(Debug, Clone, Copy)]
pub struct SsmStep<'a> {
    /// (E, N) A = -exp(A_log).
    pub a: &'a [f32],
    /// (E) skip.
    pub d: &'a [f32],
    /// (E) softplus-ed delta.
    pub delta: &'a [f32],
    /// (N)
    pub b: &'a [f32],
    /// (N)
    pub c: &'a [f32],
    /// (E) conv output.
    pub xc: &'a [f32],
    /// (E) gate input.
    pub z: &'a [f32],
}

/// Inputs of the selective scan over a block of `t` tokens (prefill) for one layer; each
/// per-token input is a row of a (t x ...) matrix.
#[derive(Debug, Clone, Copy)]
pub struct SsmScan<'a> {
    /// (E, N) A = -exp(A_log).
    pub a: &'a [f32],
    /// (E) skip.
    pub d: &'a [f32],
    /// (t, E) softplus-ed delta.
    pub delta: &'a [f32],
    /// (t, R + 2N) x_proj output: B is columns R..R+N, C is R+N..R+2N.
    pub xdbc: &'a [f32],
    /// R.
    pub dt_rank: usize,
    /// (t, E) conv output.
    pub xc: &'a [f32],
    /// (t, 2E) in_proj output: z is columns E..2E.
    pub xz: &'a [f32],
    /// Tokens.
    pub t: usize,
}

impl<'a> SsmScan<'a> {
    /// The [`SsmStep`] of token `tt` restricted to channels `e0..e1`.
    pub fn step(&self, tt: usize, e0: usize, e1: usize) -> SsmStep<'a> {
        let e = self.d.len();
        let n = self.a.len() / e.max(1);
        let xl = self.dt_rank + 2 * n;
        let bc = &self.xdbc[tt * xl + self.dt_rank..(tt + 1) * xl];
        SsmStep {
            a: &self.a[e0 * n..e1 * n],
            d: &self.d[e0..e1],
            delta: &self.delta[tt * e + e0..tt * e + e1],
            b: &bc[..n],
            c: &bc[n..],
            xc: &self.xc[tt * e + e0..tt * e + e1],
            z: &self.xz[tt * 2 * e + e + e0..tt * 2 * e + e + e1],
        }
    }
}

/// Compute kernels. Implementations must give the scalar reference's results within
/// float rounding.
pub trait Kernels {
    /// `y[r] = W[r, :] . x` for every row of `w` (y.len() == w.rows, x.len() == w.cols).
    fn matvec(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]);

    /// `delta[e] = softplus(delta[e] + bias[e])` over the vector.
    fn softplus_bias(&self, delta: &mut [f32], bias: &[f32]) {
        scalar_softplus_bias(delta, bias)
    }

    /// The state update, D skip and z gate for one token:
    /// `s[e,n] = exp(delta[e] A[e,n]) s[e,n] + delta[e] B[n] xc[e]`,
    /// `y[e] = (sum_n s[e,n] C[n] + D[e] xc[e]) * silu(z[e])`.
    fn ssm_step(&self, p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
        scalar_ssm_step(p, state, y)
    }

    /// The scan of a block of tokens: [`Kernels::ssm_step`] for each token in order,
    /// `y` is (t, E). Fast paths split the (independent) channels across threads.
    fn ssm_scan(&self, p: &SsmScan<'_>, state: &mut [f32], y: &mut [f32]) {
        let e = p.d.len();
        for (tt, yt) in y.chunks_exact_mut(e).enumerate().take(p.t) {
            self.ssm_step(&p.step(tt, 0, e), state, yt);
        }
    }

    /// The causal depthwise conv of one token then SiLU, shifting the window
    /// (see [`crate::step::conv_step`]: `window` (K-1, E) oldest first, `w` (E, K)).
    fn conv_step(
        &self,
        window: &mut [f32],
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        crate::step::conv_step(window, x, w, bias, k, out)
    }

    /// The conv of a block of `t` tokens ([`Kernels::conv_step`] for each in order):
    /// token tt's input is `x[tt * ldx..tt * ldx + E]`, its output row tt of `out`
    /// (t x E).
    #[allow(clippy::too_many_arguments)]
    fn conv_block(
        &self,
        window: &mut [f32],
        x: &[f32],
        ldx: usize,
        t: usize,
        w: &[f32],
        bias: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        let e = out.len().checked_div(t).unwrap_or(0);
        for (tt, o) in out.chunks_exact_mut(e.max(1)).enumerate().take(t) {
            self.conv_step(window, &x[tt * ldx..tt * ldx + e], w, bias, k, o);
        }
    }

    /// [`Kernels::softplus_bias`] on every row of `delta` (rows of `bias.len()`).
    fn softplus_bias_block(&self, delta: &mut [f32], bias: &[f32]) {
        for row in delta.chunks_exact_mut(bias.len().max(1)) {
            self.softplus_bias(row, bias);
        }
    }

    /// The prefill product: `Y (t x w.rows) = X (t x w.cols) W^T`, one row of X and Y per
    /// token. The default runs [`Kernels::matvec`] per token; fast paths read each
    /// weight once for the whole block.
    fn matmat(&self, w: &WeightMatrix<'_>, x: &[f32], t: usize, y: &mut [f32]) {
        for (xt, yt) in x
            .chunks_exact(w.cols)
            .zip(y.chunks_exact_mut(w.rows))
            .take(t)
        {
            self.matvec(w, xt, yt);
        }
    }
}

/// Plain scalar kernels: no SIMD, no threads, no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar;

impl Kernels for Scalar {
    fn matvec(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
        scalar_matvec(w, x, y)
    }
}

/// Reference mat-vec.
pub fn scalar_matvec(w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
    for (r, out) in y.iter_mut().enumerate().take(w.rows) {
        *out = w.dot_row(r, x);
    }
}

/// Reference softplus with bias.
pub fn scalar_softplus_bias(delta: &mut [f32], bias: &[f32]) {
    for (v, &b) in delta.iter_mut().zip(bias) {
        *v = softplus(*v + b);
    }
}

/// Reference state update.
pub fn scalar_ssm_step(p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
    let n = p.b.len();
    for (e, (s, ye)) in state.chunks_exact_mut(n).zip(y.iter_mut()).enumerate() {
        let dt = p.delta[e];
        let x = p.xc[e];
        let a = &p.a[e * n..(e + 1) * n];
        let mut acc = 0.0f32;
        for i in 0..n {
            let da = libm::expf(dt * a[i]);
            s[i] = da * s[i] + dt * p.b[i] * x;
            acc += s[i] * p.c[i];
        }
        *ye = (acc + p.d[e] * x) * silu(p.z[e]);
    }
}
