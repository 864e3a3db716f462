//! aarch64 NEON kernels (baseline on every aarch64 CPU). f32 arithmetic throughout: the
//! quantized rows are widened to f32 per block (no int8 activations yet; the `dotprod`
//! path is still to write). Every function is a safe `#[target_feature(enable = "neon")]`
//! function; NEON is always present on aarch64.

use crate::kernels::SsmStep;
use crate::tensor::DType;
use core::arch::aarch64::*;

/// f16 bits (4 lanes, in u32) to f32: shift into the f32 field and rescale by 2^112
/// (exact for normals and subnormals); infinities and NaNs get the f32 exponent back.
#[inline]
#[target_feature(enable = "neon")]
fn f16x4_to_f32(h: uint32x4_t) -> float32x4_t {
    let sign = vshlq_n_u32(vandq_u32(h, vdupq_n_u32(0x8000)), 16);
    let mag = vshlq_n_u32(vandq_u32(h, vdupq_n_u32(0x7fff)), 13);
    let f = vmulq_f32(vreinterpretq_f32_u32(mag), vdupq_n_f32(5.192_297e33));
    let special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
    let inf_nan = vorrq_u32(mag, vdupq_n_u32(0x7f80_0000));
    let bits = vbslq_u32(special, inf_nan, vreinterpretq_u32_f32(f));
    vreinterpretq_f32_u32(vorrq_u32(bits, sign))
}

#[inline]
fn f16_scalar(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Dot of one raw row with f32 activations.
#[target_feature(enable = "neon")]
pub fn dot_row(dtype: DType, row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let p = row.as_ptr();
    let xp = x.as_ptr();
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    match dtype {
        DType::F32 => {
            assert!(row.len() >= 4 * n);
            while i + 16 <= n {
                for (j, a) in acc.iter_mut().enumerate() {
                    // SAFETY: elements i + 4j .. i + 4j + 4 < n of row (4n bytes) and x.
                    unsafe {
                        let w = vld1q_f32(p.add(4 * (i + 4 * j)) as *const f32);
                        *a = vfmaq_f32(*a, w, vld1q_f32(xp.add(i + 4 * j)));
                    }
                }
                i += 16;
            }
        }
        DType::F16 | DType::BF16 => {
            assert!(row.len() >= 2 * n);
            while i + 16 <= n {
                for (j, a) in acc.iter_mut().enumerate() {
                    // SAFETY: halves i + 4j .. i + 4j + 4 < n of row (2n bytes) and x.
                    unsafe {
                        let h = vmovl_u16(vld1_u16(p.add(2 * (i + 4 * j)) as *const u16));
                        let w = if dtype == DType::F16 {
                            f16x4_to_f32(h)
                        } else {
                            vreinterpretq_f32_u32(vshlq_n_u32(h, 16))
                        };
                        *a = vfmaq_f32(*a, w, vld1q_f32(xp.add(i + 4 * j)));
                    }
                }
                i += 16;
            }
        }
        DType::Q8_0 | DType::Q4_0 => {
            let bb = if dtype == DType::Q8_0 { 34 } else { 18 };
            let nb = n / 32;
            assert!(row.len() >= nb * bb && n % 32 == 0);
            for b in 0..nb {
                // SAFETY: block b < nb lies in row (asserted); x has 32 floats at 32b.
                unsafe {
                    let bp = p.add(b * bb);
                    let d = f16_scalar(core::ptr::read_unaligned(bp as *const u16));
                    let (q0, q1) = if dtype == DType::Q8_0 {
                        (
                            vld1q_s8(bp.add(2) as *const i8),
                            vld1q_s8(bp.add(18) as *const i8),
                        )
                    } else {
                        let q = vld1q_u8(bp.add(2));
                        let eight = vdupq_n_s8(8);
                        (
                            vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), eight),
                            vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight),
                        )
                    };
                    let mut s = vdupq_n_f32(0.0);
                    for (h, q) in [q0, q1].into_iter().enumerate() {
                        let lo = vmovl_s8(vget_low_s8(q));
                        let hi = vmovl_s8(vget_high_s8(q));
                        let parts = [
                            vmovl_s16(vget_low_s16(lo)),
                            vmovl_s16(vget_high_s16(lo)),
                            vmovl_s16(vget_low_s16(hi)),
                            vmovl_s16(vget_high_s16(hi)),
                        ];
                        for (k, v) in parts.into_iter().enumerate() {
                            let xv = vld1q_f32(xp.add(32 * b + 16 * h + 4 * k));
                            s = vfmaq_f32(s, vcvtq_f32_s32(v), xv);
                        }
                    }
                    acc[b % 4] = vfmaq_n_f32(acc[b % 4], s, d);
                }
            }
            i = n;
        }
    }
    let mut sum = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ));
    if i < n {
        sum += crate::tensor::dot_row_scalar(dtype, &row[dtype.row_bytes(i)..], &x[i..]);
    }
    sum
}

/// e^x on 4 lanes (the Cephes scheme of the x86 paths).
#[inline]
#[target_feature(enable = "neon")]
pub fn exp4(x: float32x4_t) -> float32x4_t {
    let ok = vcgeq_f32(x, vdupq_n_f32(-87.336_55));
    let x = vminq_f32(x, vdupq_n_f32(88.0));
    let x = vmaxq_f32(x, vdupq_n_f32(-87.336_55));
    let fx = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(core::f32::consts::LOG2_E)));
    let x = vfmsq_f32(x, fx, vdupq_n_f32(0.693_359_4));
    let x = vfmsq_f32(x, fx, vdupq_n_f32(-2.121_944_4e-4));
    let mut y = vdupq_n_f32(1.987_569_1e-4);
    y = vfmaq_f32(vdupq_n_f32(1.398_199_9e-3), y, x);
    y = vfmaq_f32(vdupq_n_f32(8.333_452e-3), y, x);
    y = vfmaq_f32(vdupq_n_f32(4.166_579_6e-2), y, x);
    y = vfmaq_f32(vdupq_n_f32(1.666_666_5e-1), y, x);
    y = vfmaq_f32(vdupq_n_f32(0.5), y, x);
    let x2 = vmulq_f32(x, x);
    y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0)), y, x2);
    let e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fx), vdupq_n_s32(127)), 23);
    let r = vmulq_f32(y, vreinterpretq_f32_s32(e));
    vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(r), ok))
}

/// x * sigmoid(x) on 4 lanes.
#[inline]
#[target_feature(enable = "neon")]
pub fn silu4(x: float32x4_t) -> float32x4_t {
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp4(vnegq_f32(x))))
}

/// `x = silu(x)` in place.
#[target_feature(enable = "neon")]
pub fn silu_inplace(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: c has exactly 4 floats.
        unsafe { vst1q_f32(c.as_mut_ptr(), silu4(vld1q_f32(c.as_ptr()))) };
    }
    for v in chunks.into_remainder() {
        *v = crate::math::silu(*v);
    }
}

/// The state update for one token (see [`crate::kernels::scalar_ssm_step`]); N lanes
/// in groups of 4, the rest scalar. softplus stays on the scalar path (E values a token).
#[target_feature(enable = "neon")]
pub fn ssm_step(p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
    let n = p.b.len();
    let e_len = y.len();
    assert!(p.a.len() >= e_len * n && state.len() >= e_len * n && p.c.len() >= n);
    assert!(p.delta.len() >= e_len && p.xc.len() >= e_len && p.z.len() >= e_len);
    assert!(p.d.len() >= e_len);
    let n4 = n / 4 * 4;
    for e in 0..e_len {
        let dt = p.delta[e];
        let x = p.xc[e];
        let a = &p.a[e * n..(e + 1) * n];
        let s = &mut state[e * n..(e + 1) * n];
        let mut acc = vdupq_n_f32(0.0);
        let mut i = 0;
        while i < n4 {
            // SAFETY: i + 4 <= n4 <= n; a, s hold n floats, b and c at least n (asserted).
            unsafe {
                let da = exp4(vmulq_n_f32(vld1q_f32(a.as_ptr().add(i)), dt));
                let sv = vfmaq_f32(
                    vmulq_n_f32(vld1q_f32(p.b.as_ptr().add(i)), dt * x),
                    da,
                    vld1q_f32(s.as_ptr().add(i)),
                );
                vst1q_f32(s.as_mut_ptr().add(i), sv);
                acc = vfmaq_f32(acc, sv, vld1q_f32(p.c.as_ptr().add(i)));
            }
            i += 4;
        }
        let mut sum = vaddvq_f32(acc);
        for i in n4..n {
            let da = libm::expf(dt * a[i]);
            s[i] = da * s[i] + dt * p.b[i] * x;
            sum += s[i] * p.c[i];
        }
        y[e] = (sum + p.d[e] * x) * crate::math::silu(p.z[e]);
    }
}

/// `acc + a . b` per group of 4 bytes (`sdot`, the `dotprod` extension). Written as
/// inline assembly: the `vdotq_s32` intrinsic is not stable yet.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: one register-only instruction of the dotprod extension, which this
    // function's target features (guaranteed by the caller) include.
    unsafe {
        core::arch::asm!(
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) acc,
            in(vreg) a,
            in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Dot of a Q8_0 or Q4_0 row with int8 activations (`xq`: one block per 32 columns):
/// signed int8 dots per block with `sdot` (no offset trick: both sides are signed), one
/// f32 multiply-add per block. Other dtypes return None.
#[target_feature(enable = "neon,dotprod")]
pub fn dot_row_q(dtype: DType, row: &[u8], xq: &[super::act::Q8Act]) -> Option<f32> {
    let nb = xq.len();
    let bb = match dtype {
        DType::Q8_0 => 34,
        DType::Q4_0 => 18,
        _ => return None,
    };
    assert!(row.len() >= nb * bb);
    let p = row.as_ptr();
    let m4 = vdupq_n_u8(0x0f);
    let eight = vdupq_n_s8(8);
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, a) in xq.iter().enumerate() {
        // SAFETY: block b < nb lies inside `row` (asserted nb * bb bytes); the
        // activation loads read the 32-byte `qs` array; unaligned loads.
        let (w0, w1, d, x0, x1) = unsafe {
            let bp = p.add(b * bb);
            let d = f16_scalar(core::ptr::read_unaligned(bp as *const u16));
            let (w0, w1) = if bb == 34 {
                (
                    vld1q_s8(bp.add(2) as *const i8),
                    vld1q_s8(bp.add(18) as *const i8),
                )
            } else {
                let q = vld1q_u8(bp.add(2));
                (
                    vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight),
                    vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight),
                )
            };
            let x0 = vld1q_s8(a.qs.as_ptr());
            let x1 = vld1q_s8(a.qs.as_ptr().add(16));
            (w0, w1, d, x0, x1)
        };
        let i = sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1);
        let f = &mut acc[b & 1];
        *f = vfmaq_n_f32(*f, vcvtq_f32_s32(i), d * a.d);
    }
    Some(vaddvq_f32(vaddq_f32(acc[0], acc[1])))
}
