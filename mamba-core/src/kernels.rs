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
