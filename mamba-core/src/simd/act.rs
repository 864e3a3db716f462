//! Activations quantized to int8 per block of 32, for the SIMD Q8_0/Q4_0 dot products
//! (the trick ggml uses: an integer dot per block, one float multiply per block).
//! The scalar reference never uses these.

use crate::quant::QK;

/// 32 activations as int8 with an f32 scale. Not a file format: the scale stays f32
/// (ggml rounds it to f16), which keeps a little more precision.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Q8Act {
    /// Scale: value = d * q.
    pub d: f32,
    /// `d * sum(qs)`: the offset term of Q4_0 (nibble - 8) and of the unsigned VNNI trick.
    pub s: f32,
    /// Quants, -127..=127.
    pub qs: [i8; QK],
}

impl Q8Act {
    /// A zero block.
    pub const ZERO: Q8Act = Q8Act {
        d: 0.0,
        s: 0.0,
        qs: [0; QK],
    };

    /// Quantize 32 values (round to nearest, scale = max|x| / 127).
    #[inline]
    pub fn quantize(x: &[f32]) -> Self {
        let amax = x[..QK].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        // A block whose largest value is below f32's normal range (or is inf/NaN)
        // becomes a zero block: 1/d would overflow to infinity and `as i32` saturate.
        // Such blocks add nothing measurable to a dot product.
        if !d.is_normal() {
            return Q8Act::ZERO;
        }
        let id = 1.0 / d;
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(x) {
            // Round half away from zero without a libm call; |v * id| <= 127.
            let t = v * id;
            let r = (t + if t >= 0.0 { 0.5 } else { -0.5 }) as i32;
            *q = r as i8;
            sum += r;
        }
        Q8Act {
            d,
            s: d * sum as f32,
            qs,
        }
    }
}

/// Quantize `x` (a multiple of 32 long) into `out` (x.len() / 32 blocks).
pub fn quantize_row(x: &[f32], out: &mut [Q8Act]) {
    for (o, c) in out.iter_mut().zip(x.chunks_exact(QK)) {
        *o = Q8Act::quantize(c);
    }
}
