//! Scalar elementwise functions shared by every path.

/// softplus as mamba_ssm and HF compute it: v for v > 20, else log1p(exp(v)).
#[inline]
pub fn softplus(v: f32) -> f32 {
    if v > 20.0 {
        v
    } else {
        libm::log1pf(libm::expf(v))
    }
}

/// x * sigmoid(x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// `out = x / sqrt(mean(x^2) + eps) * w` (w may be empty for a weightless norm).
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    let scale = 1.0 / libm::sqrtf(ss / x.len() as f32 + eps);
    if w.is_empty() {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v * scale;
        }
    } else {
        for ((o, &v), &wv) in out.iter_mut().zip(x).zip(w) {
            *o = v * scale * wv;
        }
    }
}

/// In-place weightless RMSNorm.
pub fn rmsnorm_inplace(x: &mut [f32], eps: f32) {
    let mut ss = 0.0f32;
    for &v in x.iter() {
        ss += v * v;
    }
    let scale = 1.0 / libm::sqrtf(ss / x.len() as f32 + eps);
    for v in x.iter_mut() {
        *v *= scale;
    }
}
