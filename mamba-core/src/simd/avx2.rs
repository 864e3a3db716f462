//! AVX2 + FMA + F16C kernels (x86_64). Every function here is a safe `#[target_feature]`
//! function: calling one is sound only on a CPU with those features, which is what
//! [`super::Simd`] guarantees before dispatching here.

use super::act::Q8Act;
use crate::kernels::SsmStep;
use crate::math::silu;
use core::arch::x86_64::*;

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// f16 bits to f32 with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Dot of a row of little-endian f32 (raw bytes) with `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert!(row.len() >= n * 4);
    let w = row.as_ptr() as *const f32;
    let xp = x.as_ptr();
    let mut a = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads floats i..i+8 with i + 8 <= n; `row` holds n floats (asserted),
    // `x` holds n; loadu has no alignment requirement.
    unsafe {
        while i + 32 <= n {
            for (j, acc) in a.iter_mut().enumerate() {
                let o = i + 8 * j;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(o)), _mm256_loadu_ps(xp.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(i)), _mm256_loadu_ps(xp.add(i)), a[0]);
            i += 8;
        }
    }
    let mut s = hsum(_mm256_add_ps(
        _mm256_add_ps(a[0], a[1]),
        _mm256_add_ps(a[2], a[3]),
    ));
    for (c, &xv) in row[i * 4..n * 4].chunks_exact(4).zip(&x[i..]) {
        s += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
    }
    s
}

/// Dot of a row of f16 (raw bytes) with `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert!(row.len() >= n * 2);
    let w = row.as_ptr();
    let xp = x.as_ptr();
    let mut a = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: loads of 8 halves (16 bytes) at element i with i + 8 <= n inside `row`
    // (n halves, asserted) and 8 floats of `x`; unaligned loads.
    unsafe {
        while i + 32 <= n {
            for (j, acc) in a.iter_mut().enumerate() {
                let o = i + 8 * j;
                let h = _mm_loadu_si128(w.add(o * 2) as *const __m128i);
                *acc = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xp.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let h = _mm_loadu_si128(w.add(i * 2) as *const __m128i);
            a[0] = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xp.add(i)), a[0]);
            i += 8;
        }
    }
    let mut s = hsum(_mm256_add_ps(
        _mm256_add_ps(a[0], a[1]),
        _mm256_add_ps(a[2], a[3]),
    ));
    for (c, &xv) in row[i * 2..n * 2].chunks_exact(2).zip(&x[i..]) {
        s += f16_to_f32(u16::from_le_bytes([c[0], c[1]])) * xv;
    }
    s
}

/// Dot of a row of bf16 (raw bytes) with `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert!(row.len() >= n * 2);
    let w = row.as_ptr();
    let xp = x.as_ptr();
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: as in dot_f16: 8 bf16 values and 8 floats at element i, i + 8 <= n.
    unsafe {
        while i + 16 <= n {
            let h0 = _mm_loadu_si128(w.add(i * 2) as *const __m128i);
            let h1 = _mm_loadu_si128(w.add(i * 2 + 16) as *const __m128i);
            let f0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
            let f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
            a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xp.add(i)), a0);
            a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xp.add(i + 8)), a1);
            i += 16;
        }
    }
    let mut s = hsum(_mm256_add_ps(a0, a1));
    for (c, &xv) in row[i * 2..n * 2].chunks_exact(2).zip(&x[i..]) {
        s += f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) * xv;
    }
    s
}

/// Dot of a Q8_0 row (raw 34-byte blocks) with int8 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_q8_0(row: &[u8], xq: &[Q8Act]) -> f32 {
    let nb = xq.len();
    assert!(row.len() >= nb * 34);
    let p = row.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let block = |b: usize| -> __m256 {
        // SAFETY: block b < nb lies inside `row` (asserted: nb * 34 bytes); xq[b] is a
        // checked index; unaligned loads/reads.
        unsafe {
            let bp = p.add(b * 34);
            let d = f16_to_f32(core::ptr::read_unaligned(bp as *const u16));
            let w = _mm256_loadu_si256(bp.add(2) as *const __m256i);
            let a = &xq[b];
            let xv = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
            // |w| (unsigned) times x with w's sign: maddubs needs one unsigned operand.
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
            let p32 = _mm256_madd_epi16(p16, ones);
            _mm256_mul_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * a.d))
        }
    };
    let mut b = 0;
    while b + 2 <= nb {
        acc0 = _mm256_add_ps(acc0, block(b));
        acc1 = _mm256_add_ps(acc1, block(b + 1));
        b += 2;
    }
    if b < nb {
        acc0 = _mm256_add_ps(acc0, block(b));
    }
    hsum(_mm256_add_ps(acc0, acc1))
}

/// Dot of a Q4_0 row (raw 18-byte blocks) with int8 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_q4_0(row: &[u8], xq: &[Q8Act]) -> f32 {
    let nb = xq.len();
    assert!(row.len() >= nb * 18);
    let p = row.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut corr = 0.0f32;
    let mut block = |b: usize| -> __m256 {
        // SAFETY: block b < nb lies inside `row` (asserted: nb * 18 bytes); xq[b] is a
        // checked index; unaligned loads/reads.
        unsafe {
            let bp = p.add(b * 18);
            let d = f16_to_f32(core::ptr::read_unaligned(bp as *const u16));
            let q = _mm_loadu_si128(bp.add(2) as *const __m128i);
            let lo = _mm_and_si128(q, m4);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
            // Elements 0..16 are the low nibbles, 16..32 the high ones.
            let w = _mm256_set_m128i(hi, lo);
            let a = &xq[b];
            let xv = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
            let p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones);
            corr += d * a.s;
            _mm256_mul_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * a.d))
        }
    };
    let mut b = 0;
    while b + 2 <= nb {
        acc0 = _mm256_add_ps(acc0, block(b));
        acc1 = _mm256_add_ps(acc1, block(b + 1));
        b += 2;
    }
    if b < nb {
        acc0 = _mm256_add_ps(acc0, block(b));
    }
    // sum (q - 8) x = sum q x - 8 sum x.
    hsum(_mm256_add_ps(acc0, acc1)) - 8.0 * corr
}

/// e^x on 8 lanes (Cephes' expf: range reduction by ln 2, degree-5 polynomial);
/// about 2 ulp; 0 below -87.3, saturates at e^88.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn exp8(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.336_55), _CMP_LT_OQ);
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.0));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.336_55));
    let fx = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.398_199_9e-3));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.333_452e-3));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.166_579_6e-2));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.666_666_5e-1));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(0.5));
    let x2 = _mm256_mul_ps(x, x);
    y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0)));
    let e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)),
        23,
    );
    let y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    _mm256_andnot_ps(tiny, y)
}

/// Natural log on 8 lanes for x >= 1 (Cephes' logf); used only for softplus.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn ln8(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let xi = _mm256_castps_si256(x);
    let exp = _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(127));
    let mut e = _mm256_add_ps(_mm256_cvtepi32_ps(exp), one);
    // Mantissa in [0.5, 1).
    let m = _mm256_or_ps(
        _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(!0x7f80_0000))),
        _mm256_set1_ps(0.5),
    );
    let mask = _mm256_cmp_ps(
        m,
        _mm256_set1_ps(core::f32::consts::FRAC_1_SQRT_2),
        _CMP_LT_OQ,
    );
    let tmp = _mm256_and_ps(m, mask);
    let mut m = _mm256_sub_ps(m, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
    m = _mm256_add_ps(m, tmp);
    let z = _mm256_mul_ps(m, m);
    let mut y = _mm256_set1_ps(7.037_683_6e-2);
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.151_461_1e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.167_699_9e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.242_014_1e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.424_932_3e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.666_805_8e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.000_071_4e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.499_999_4e-1));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.333_333e-1));
    y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.121_944_4e-4), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5), y);
    let r = _mm256_add_ps(m, y);
    _mm256_fmadd_ps(e, _mm256_set1_ps(0.693_359_4), r)
}

/// softplus(v) = v for v > 20, else log1p(e^v), on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn softplus8(v: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let t = exp8(v);
    let u = _mm256_add_ps(one, t);
    // log1p(t) = log(u) - ((u - 1) - t) / u: corrects the rounding of 1 + t.
    let r = _mm256_sub_ps(
        ln8(u),
        _mm256_div_ps(_mm256_sub_ps(_mm256_sub_ps(u, one), t), u),
    );
    let big = _mm256_cmp_ps(v, _mm256_set1_ps(20.0), _CMP_GT_OQ);
    _mm256_blendv_ps(r, v, big)
}

/// x * sigmoid(x) on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn silu8(x: __m256) -> __m256 {
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// `delta[e] = softplus(delta[e] + bias[e])`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn softplus_bias(delta: &mut [f32], bias: &[f32]) {
    let n = delta.len().min(bias.len());
    let mut i = 0;
    while i + 8 <= n {
        let d: &mut [f32; 8] = (&mut delta[i..i + 8])
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        let b: &[f32; 8] = (&bias[i..i + 8])
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        // SAFETY: d and b are 8-float arrays; unaligned loads and stores.
        unsafe {
            let v = _mm256_add_ps(_mm256_loadu_ps(d.as_ptr()), _mm256_loadu_ps(b.as_ptr()));
            _mm256_storeu_ps(d.as_mut_ptr(), softplus8(v));
        }
        i += 8;
    }
    for (v, &b) in delta[i..n].iter_mut().zip(&bias[i..n]) {
        *v = crate::math::softplus(*v + b);
    }
}

/// `x = silu(x)` in place.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn silu_inplace(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: c has exactly 8 floats; unaligned load and store.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            _mm256_storeu_ps(c.as_mut_ptr(), silu8(v));
        }
    }
    for v in chunks.into_remainder() {
        *v = silu(*v);
    }
}

/// The selective-state update for one token (see [`crate::kernels::scalar_ssm_step`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn ssm_step(p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
    let n = p.b.len();
    let e_len = y.len();
    assert!(p.a.len() >= e_len * n && state.len() >= e_len * n && p.c.len() >= n);
    assert!(p.delta.len() >= e_len && p.xc.len() >= e_len && p.z.len() >= e_len);
    assert!(p.d.len() >= e_len);
    let n8 = n / 8 * 8;
    // silu(z) for every channel first, vectorized.
    let mut zc = [0.0f32; 8];
    let mut e0 = 0;
    while e0 < e_len {
        let m = (e_len - e0).min(8);
        zc[..m].copy_from_slice(&p.z[e0..e0 + m]);
        silu_inplace(&mut zc[..m]);
        for (j, &g) in zc[..m].iter().enumerate() {
            let e = e0 + j;
            let dt = p.delta[e];
            let x = p.xc[e];
            let a = &p.a[e * n..(e + 1) * n];
            let s = &mut state[e * n..(e + 1) * n];
            let mut acc = _mm256_setzero_ps();
            let vdt = _mm256_set1_ps(dt);
            let vdx = _mm256_set1_ps(dt * x);
            let mut i = 0;
            while i < n8 {
                // SAFETY: i + 8 <= n8 <= n; a, s are n long, b and c at least n (asserted).
                unsafe {
                    let da = exp8(_mm256_mul_ps(vdt, _mm256_loadu_ps(a.as_ptr().add(i))));
                    let sv = _mm256_loadu_ps(s.as_ptr().add(i));
                    let bv = _mm256_loadu_ps(p.b.as_ptr().add(i));
                    let sv = _mm256_fmadd_ps(da, sv, _mm256_mul_ps(vdx, bv));
                    _mm256_storeu_ps(s.as_mut_ptr().add(i), sv);
                    acc = _mm256_fmadd_ps(sv, _mm256_loadu_ps(p.c.as_ptr().add(i)), acc);
                }
                i += 8;
            }
            let mut sum = hsum(acc);
            for i in n8..n {
                let da = libm::expf(dt * a[i]);
                s[i] = da * s[i] + dt * p.b[i] * x;
                sum += s[i] * p.c[i];
            }
            y[e] = (sum + p.d[e] * x) * g;
        }
        e0 += m;
    }
}

/// The GEMM micro-kernel: for 4 weight rows `w` (each `kc` floats, row stride `ws`) and
/// 3 activation rows `x` (stride `xs`), `out[t][r] = sum_k w[r][k] x[t][k]`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn tile_4x3(w: &[f32], ws: usize, x: &[f32], xs: usize, kc: usize) -> [[f32; 4]; 3] {
    assert!(kc <= ws && kc <= xs && w.len() >= 3 * ws + kc && x.len() >= 2 * xs + kc);
    let k8 = kc / 8 * 8;
    let mut acc = [[_mm256_setzero_ps(); 4]; 3];
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let mut k = 0;
    while k < k8 {
        // SAFETY: k + 8 <= kc; rows r < 4 of w start at r * ws with r * ws + kc <= w.len(),
        // rows t < 3 of x at t * xs with t * xs + kc <= x.len() (asserted).
        unsafe {
            let x0 = _mm256_loadu_ps(xp.add(k));
            let x1 = _mm256_loadu_ps(xp.add(xs + k));
            let x2 = _mm256_loadu_ps(xp.add(2 * xs + k));
            #[allow(clippy::needless_range_loop)]
            for r in 0..4 {
                let wv = _mm256_loadu_ps(wp.add(r * ws + k));
                acc[0][r] = _mm256_fmadd_ps(wv, x0, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(wv, x1, acc[1][r]);
                acc[2][r] = _mm256_fmadd_ps(wv, x2, acc[2][r]);
            }
        }
        k += 8;
    }
    let mut out = [[0.0f32; 4]; 3];
    for t in 0..3 {
        for r in 0..4 {
            let mut s = hsum(acc[t][r]);
            for kk in k8..kc {
                s += w[r * ws + kk] * x[t * xs + kk];
            }
            out[t][r] = s;
        }
    }
    out
}

/// Dequantize a run of raw `dtype` bytes into `out` (the prefill weight panel).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dequant(dtype: crate::tensor::DType, bytes: &[u8], out: &mut [f32]) {
    use crate::tensor::DType;
    let n = out.len();
    let p = bytes.as_ptr();
    let o = out.as_mut_ptr();
    match dtype {
        DType::F16 => {
            assert!(bytes.len() >= 2 * n);
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: 8 halves at element i (i + 8 <= n, bytes holds 2n) and 8 floats
                // of out; unaligned.
                unsafe {
                    let h = _mm_loadu_si128(p.add(2 * i) as *const __m128i);
                    _mm256_storeu_ps(o.add(i), _mm256_cvtph_ps(h));
                }
                i += 8;
            }
            crate::tensor::row_to_f32(dtype, &bytes[2 * i..2 * n], &mut out[i..]);
        }
        DType::Q8_0 => {
            let nb = n / 32;
            assert!(bytes.len() >= nb * 34 && n % 32 == 0);
            for b in 0..nb {
                // SAFETY: block b < nb lies in bytes (asserted); out has 32 floats at 32b.
                unsafe {
                    let bp = p.add(b * 34);
                    let d = _mm256_set1_ps(f16_to_f32(core::ptr::read_unaligned(bp as *const u16)));
                    for j in 0..4 {
                        let q = _mm_loadl_epi64(bp.add(2 + 8 * j) as *const __m128i);
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                        _mm256_storeu_ps(o.add(32 * b + 8 * j), _mm256_mul_ps(f, d));
                    }
                }
            }
        }
        DType::Q4_0 => {
            let nb = n / 32;
            assert!(bytes.len() >= nb * 18 && n % 32 == 0);
            let m4 = _mm_set1_epi8(0x0f);
            let eight = _mm_set1_epi8(8);
            for b in 0..nb {
                // SAFETY: block b < nb lies in bytes (asserted); out has 32 floats at 32b.
                unsafe {
                    let bp = p.add(b * 18);
                    let d = _mm256_set1_ps(f16_to_f32(core::ptr::read_unaligned(bp as *const u16)));
                    let q = _mm_loadu_si128(bp.add(2) as *const __m128i);
                    let lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
                    let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
                    for (j, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
                        .into_iter()
                        .enumerate()
                    {
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
                        _mm256_storeu_ps(o.add(32 * b + 8 * j), _mm256_mul_ps(f, d));
                    }
                }
            }
        }
        _ => crate::tensor::row_to_f32(dtype, bytes, out),
    }
}

/// Token-major activations for [`matmat_t_rows`] without AVX-512: the layout of
/// `avx512::pack_xt` (tiles of 32 tokens, column by column, tokens past `t` zero),
/// transposed with plain loads and stores. `xt` starts at tile `tile0`.
pub fn pack_xt(x: &[f32], t: usize, cols: usize, tile0: usize, xt: &mut [f32]) {
    const TT: usize = 32;
    assert!(x.len() >= t * cols);
    let tiles = (xt.len() / (cols * TT).max(1)).min(t.div_ceil(TT).saturating_sub(tile0));
    for i in 0..tiles {
        let tile = tile0 + i;
        let slab = &mut xt[i * cols * TT..(i + 1) * cols * TT];
        let n = (t - tile * TT).min(TT);
        for l in 0..TT {
            if l < n {
                let row = &x[(tile * TT + l) * cols..(tile * TT + l + 1) * cols];
                for (k, &v) in row.iter().enumerate() {
                    slab[k * TT + l] = v;
                }
            } else {
                for k in 0..cols {
                    slab[k * TT + l] = 0.0;
                }
            }
        }
    }
}

/// `MR` f32 weight rows (row r at `w[r * ws..]`) x 16 tokens of a token-major slab
/// (`xs[k * 32..]`, the first or second half of a 32-token tile) over `kc` columns.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_t<const MR: usize>(w: &[f32], ws: usize, xs: &[f32], kc: usize) -> [[__m256; 2]; MR] {
    assert!(MR >= 1 && kc >= 1 && w.len() >= (MR - 1) * ws + kc && xs.len() >= (kc - 1) * 32 + 16);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let wp = w.as_ptr();
    let xp = xs.as_ptr();
    for k in 0..kc {
        // SAFETY: k < kc: xs holds 16 floats at k * 32 and row r < MR of w holds kc
        // from r * ws (asserted); unaligned loads.
        unsafe {
            let x0 = _mm256_loadu_ps(xp.add(k * 32));
            let x1 = _mm256_loadu_ps(xp.add(k * 32 + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let wb = _mm256_broadcast_ss(&*wp.add(r * ws + k));
                a[0] = _mm256_fmadd_ps(wb, x0, a[0]);
                a[1] = _mm256_fmadd_ps(wb, x1, a[1]);
            }
        }
    }
    acc
}

/// Write (or add) a [`tile_t`] result: rows r0.., tokens tok0..tok0 + 16 below `t`.
///
/// # Safety
/// `y` valid for writes at `tok * ldy + r0 + r` for those tokens and r < MR, accessed by
/// no one else.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_t<const MR: usize>(
    acc: &[[__m256; 2]; MR],
    y: *mut f32,
    ldy: usize,
    tok0: usize,
    t: usize,
    r0: usize,
    add: bool,
) {
    let n = t.saturating_sub(tok0).min(16);
    let mut buf = [[0f32; 16]; MR];
    for (b, a) in buf.iter_mut().zip(acc) {
        // SAFETY: b holds 16 floats.
        unsafe {
            _mm256_storeu_ps(b.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(b.as_mut_ptr().add(8), a[1]);
        }
    }
    #[allow(clippy::needless_range_loop)]
    for l in 0..n {
        // SAFETY: y by the caller's contract (l < n, r < MR).
        let o = unsafe { core::slice::from_raw_parts_mut(y.add((tok0 + l) * ldy + r0), MR) };
        for (r, v) in o.iter_mut().enumerate() {
            if add { *v += buf[r][l] } else { *v = buf[r][l] }
        }
    }
}

/// The token-major f32 prefill product of `avx512::matmat_t_rows` on AVX2: register
/// tiles of 6 rows x 16 tokens (12 accumulators), F32 weights in place, F16/BF16
/// dequantized 6 rows x 1024 columns at a time. Returns false for a block-quantized
/// dtype.
///
/// # Safety
/// `y` must be valid for writes at `tok * ldy + r` for every `tok < t`, `r0 <= r < r1`,
/// and no other thread may access those elements during the call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn matmat_t_rows(
    dtype: crate::tensor::DType,
    data: &[u8],
    rows: usize,
    cols: usize,
    r0: usize,
    r1: usize,
    xt: &[f32],
    t: usize,
    y: *mut f32,
    ldy: usize,
) -> bool {
    use crate::tensor::DType;
    const MR: usize = 6;
    const KC: usize = 1024;
    let es = match dtype {
        DType::F32 => 4,
        DType::F16 | DType::BF16 => 2,
        _ => return false,
    };
    let tiles = t.div_ceil(32);
    assert!(r1 <= rows && data.len() >= rows * cols * es && xt.len() >= tiles * 32 * cols);
    let direct: Option<&[f32]> = if dtype == DType::F32 {
        bytemuck::try_cast_slice(&data[..rows * cols * 4]).ok()
    } else {
        None
    };
    let mut panel = [0f32; MR * KC];
    let kc_pass = cols.div_ceil(cols.div_ceil(KC));
    let mut k0 = 0;
    while k0 < cols {
        let kc = (cols - k0).min(kc_pass);
        let add = k0 > 0;
        let mut rr = r0;
        while rr < r1 {
            let mg = (r1 - rr).min(MR);
            let (wsl, ws): (&[f32], usize) = match direct {
                Some(wf) => (&wf[rr * cols + k0..], cols),
                None => {
                    for i in 0..mg {
                        let o = (rr + i) * cols;
                        dequant(
                            dtype,
                            &data[(o + k0) * es..(o + k0 + kc) * es],
                            &mut panel[i * kc..(i + 1) * kc],
                        );
                    }
                    (&panel[..], kc)
                }
            };
            for half in 0..2 * tiles {
                let tok0 = half * 16;
                if tok0 >= t {
                    break;
                }
                let xs = &xt[((half / 2) * cols + k0) * 32 + (half % 2) * 16..];
                let mut r = 0;
                // SAFETY: (the stores) rows rr + r.. < r1 and tokens < t are the
                // caller's.
                unsafe {
                    while r + MR <= mg {
                        let a = tile_t::<MR>(&wsl[r * ws..], ws, xs, kc);
                        store_t(&a, y, ldy, tok0, t, rr + r, add);
                        r += MR;
                    }
                    while r < mg {
                        let a = tile_t::<1>(&wsl[r * ws..], ws, xs, kc);
                        store_t(&a, y, ldy, tok0, t, rr + r, add);
                        r += 1;
                    }
                }
            }
            rr += mg;
        }
        k0 += kc;
    }
    true
}
