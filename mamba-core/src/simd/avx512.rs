//! AVX-512 kernels (x86_64: F, BW, DQ, VL and VNNI on top of AVX2/FMA/F16C), where the
//! wider registers pay: the int8 dot products (VNNI's `vpdpbusd` does 64 multiply-adds
//! per instruction), the f32/f16 dot products, the GEMM tile and the N = 16 scan (one
//! state row per register). Everything else goes to [`super::avx2`].
//! Every function is a safe `#[target_feature]` function; [`super::Simd`] guarantees the
//! features before dispatching here.

use super::act::Q8Act;
use super::avx2;
use crate::kernels::SsmStep;
use crate::tensor::DType;
use core::arch::x86_64::*;

/// Dispatch one row's dot product on its type.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn dot_row(dtype: DType, row: &[u8], x: &[f32], xq: &[Q8Act]) -> f32 {
    match dtype {
        DType::F32 => dot_f32(row, x),
        DType::F16 => dot_f16(row, x),
        DType::BF16 => avx2::dot_bf16(row, x),
        DType::Q8_0 => dot_q8_0(row, xq),
        DType::Q4_0 => dot_q4_0(row, xq),
    }
}

/// Dot of a row of f32 (raw bytes) with `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert!(row.len() >= n * 4);
    let w = row.as_ptr() as *const f32;
    let xp = x.as_ptr();
    let mut a = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: each load reads 16 floats at i with i + 16 <= n (the masked load only the
    // n - i remaining ones); `row` holds n floats (asserted) and `x` n.
    unsafe {
        while i + 64 <= n {
            for (j, acc) in a.iter_mut().enumerate() {
                let o = i + 16 * j;
                *acc = _mm512_fmadd_ps(_mm512_loadu_ps(w.add(o)), _mm512_loadu_ps(xp.add(o)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            a[0] = _mm512_fmadd_ps(_mm512_loadu_ps(w.add(i)), _mm512_loadu_ps(xp.add(i)), a[0]);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let wv = _mm512_maskz_loadu_ps(m, w.add(i));
            let xv = _mm512_maskz_loadu_ps(m, xp.add(i));
            a[1] = _mm512_fmadd_ps(wv, xv, a[1]);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(a[0], a[1]),
        _mm512_add_ps(a[2], a[3]),
    ))
}

/// Dot of a row of f16 (raw bytes) with `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert!(row.len() >= n * 2);
    let w = row.as_ptr();
    let xp = x.as_ptr();
    let mut a = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: 16 halves (32 bytes) and 16 floats at element i with i + 16 <= n, or masked
    // to the remaining n - i; `row` holds n halves (asserted).
    unsafe {
        while i + 64 <= n {
            for (j, acc) in a.iter_mut().enumerate() {
                let o = i + 16 * j;
                let h = _mm256_loadu_si256(w.add(o * 2) as *const __m256i);
                *acc = _mm512_fmadd_ps(_mm512_cvtph_ps(h), _mm512_loadu_ps(xp.add(o)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            let h = _mm256_loadu_si256(w.add(i * 2) as *const __m256i);
            a[0] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), _mm512_loadu_ps(xp.add(i)), a[0]);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let h = _mm256_maskz_loadu_epi16(m, w.add(i * 2) as *const i16);
            let xv = _mm512_maskz_loadu_ps(m, xp.add(i));
            a[1] = _mm512_fmadd_ps(_mm512_cvtph_ps(h), xv, a[1]);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(a[0], a[1]),
        _mm512_add_ps(a[2], a[3]),
    ))
}

/// Two blocks' scales, one per 256-bit half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scales2(s0: f32, s1: f32) -> __m512 {
    _mm512_insertf32x8(
        _mm512_castps256_ps512(_mm256_set1_ps(s0)),
        _mm256_set1_ps(s1),
        1,
    )
}

/// Dot of a Q8_0 row with int8 activations: two blocks per VNNI instruction. `vpdpbusd`
/// multiplies unsigned by signed bytes, so the weights are offset by 128 and
/// 128 * sum(x) is taken back out.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn dot_q8_0(row: &[u8], xq: &[Q8Act]) -> f32 {
    let nb = xq.len();
    assert!(row.len() >= nb * 34);
    let p = row.as_ptr();
    let flip = _mm512_set1_epi8(-128);
    let mut acc = _mm512_setzero_ps();
    let mut corr = 0.0f32;
    let mut b = 0;
    while b + 2 <= nb {
        let (a0, a1) = (&xq[b], &xq[b + 1]);
        // SAFETY: blocks b and b + 1 < nb lie inside `row` (asserted nb * 34 bytes);
        // the activation loads read the 32-byte `qs` arrays; unaligned loads.
        let (w, xv, d0, d1) = unsafe {
            let bp0 = p.add(b * 34);
            let bp1 = bp0.add(34);
            let d0 = avx2::f16_to_f32(core::ptr::read_unaligned(bp0 as *const u16));
            let d1 = avx2::f16_to_f32(core::ptr::read_unaligned(bp1 as *const u16));
            let w = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(bp0.add(2) as *const __m256i)),
                _mm256_loadu_si256(bp1.add(2) as *const __m256i),
                1,
            );
            let xv = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i)),
                _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i),
                1,
            );
            (w, xv, d0, d1)
        };
        let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(w, flip), xv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), scales2(d0 * a0.d, d1 * a1.d), acc);
        corr += d0 * a0.s + d1 * a1.s;
        b += 2;
    }
    let mut s = _mm512_reduce_add_ps(acc) - 128.0 * corr;
    if b < nb {
        s += avx2::dot_q8_0(&row[b * 34..nb * 34], &xq[b..]);
    }
    s
}

/// Dot of a Q4_0 row with int8 activations: two blocks per VNNI instruction; the nibble
/// offset 8 comes back out through sum(x).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn dot_q4_0(row: &[u8], xq: &[Q8Act]) -> f32 {
    let nb = xq.len();
    assert!(row.len() >= nb * 18);
    let p = row.as_ptr();
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm512_setzero_ps();
    let mut corr = 0.0f32;
    let mut b = 0;
    while b + 2 <= nb {
        let (a0, a1) = (&xq[b], &xq[b + 1]);
        // SAFETY: blocks b and b + 1 < nb lie inside `row` (asserted nb * 18 bytes);
        // activation loads read the 32-byte `qs` arrays; unaligned loads.
        let (q0, q1, xv, d0, d1) = unsafe {
            let bp0 = p.add(b * 18);
            let bp1 = bp0.add(18);
            let d0 = avx2::f16_to_f32(core::ptr::read_unaligned(bp0 as *const u16));
            let d1 = avx2::f16_to_f32(core::ptr::read_unaligned(bp1 as *const u16));
            let q0 = _mm_loadu_si128(bp0.add(2) as *const __m128i);
            let q1 = _mm_loadu_si128(bp1.add(2) as *const __m128i);
            let xv = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i)),
                _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i),
                1,
            );
            (q0, q1, xv, d0, d1)
        };
        let nib = |q: __m128i| {
            _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(q, 4), m4),
                _mm_and_si128(q, m4),
            )
        };
        let w = _mm512_inserti64x4(_mm512_castsi256_si512(nib(q0)), nib(q1), 1);
        let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), scales2(d0 * a0.d, d1 * a1.d), acc);
        corr += d0 * a0.s + d1 * a1.s;
        b += 2;
    }
    let mut s = _mm512_reduce_add_ps(acc) - 8.0 * corr;
    if b < nb {
        s += avx2::dot_q4_0(&row[b * 18..nb * 18], &xq[b..]);
    }
    s
}

/// e^x on 16 lanes (the same Cephes scheme as [`avx2::exp8`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn exp16(x: __m512) -> __m512 {
    let ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.336_55), _CMP_GE_OQ);
    let x = _mm512_min_ps(x, _mm512_set1_ps(88.0));
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.336_55));
    let fx = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(core::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693_359_4), x);
    let x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.121_944_4e-4), x);
    let mut y = _mm512_set1_ps(1.987_569_1e-4);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.398_199_9e-3));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.333_452e-3));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.166_579_6e-2));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.666_666_5e-1));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(0.5));
    let x2 = _mm512_mul_ps(x, x);
    y = _mm512_fmadd_ps(y, x2, _mm512_add_ps(x, _mm512_set1_ps(1.0)));
    let e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)),
        23,
    );
    _mm512_maskz_mul_ps(ok, y, _mm512_castsi512_ps(e))
}

/// The state update for N = 16: one state row per register.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn ssm_step_n16(p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
    const N: usize = 16;
    let e_len = y.len();
    assert!(p.b.len() == N && p.c.len() >= N);
    assert!(p.a.len() >= e_len * N && state.len() >= e_len * N);
    assert!(p.delta.len() >= e_len && p.xc.len() >= e_len && p.z.len() >= e_len);
    assert!(p.d.len() >= e_len);
    // SAFETY: b and c hold 16 floats (asserted).
    let (bv, cv) = unsafe { (_mm512_loadu_ps(p.b.as_ptr()), _mm512_loadu_ps(p.c.as_ptr())) };
    let mut g = [0.0f32; 16];
    let mut e0 = 0;
    while e0 < e_len {
        let m = (e_len - e0).min(16);
        g[..m].copy_from_slice(&p.z[e0..e0 + m]);
        avx2::silu_inplace(&mut g[..m]);
        for (j, &gate) in g[..m].iter().enumerate() {
            let e = e0 + j;
            let dt = p.delta[e];
            let x = p.xc[e];
            let a = &p.a[e * N..(e + 1) * N];
            let s = &mut state[e * N..(e + 1) * N];
            // SAFETY: a and s are 16-float slices.
            let sum = unsafe {
                let da = exp16(_mm512_mul_ps(
                    _mm512_set1_ps(dt),
                    _mm512_loadu_ps(a.as_ptr()),
                ));
                let sv = _mm512_fmadd_ps(
                    da,
                    _mm512_loadu_ps(s.as_ptr()),
                    _mm512_mul_ps(_mm512_set1_ps(dt * x), bv),
                );
                _mm512_storeu_ps(s.as_mut_ptr(), sv);
                _mm512_reduce_add_ps(_mm512_mul_ps(sv, cv))
            };
            y[e] = (sum + p.d[e] * x) * gate;
        }
        e0 += m;
    }
}

/// The GEMM micro-kernel of [`avx2::tile_4x3`] with 16-wide registers and a masked tail.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn tile_4x3(w: &[f32], ws: usize, x: &[f32], xs: usize, kc: usize) -> [[f32; 4]; 3] {
    assert!(kc <= ws && kc <= xs && w.len() >= 3 * ws + kc && x.len() >= 2 * xs + kc);
    let mut acc = [[_mm512_setzero_ps(); 4]; 3];
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let mut k = 0;
    while k < kc {
        let left = kc - k;
        let m: __mmask16 = if left >= 16 {
            0xffff
        } else {
            (1u32 << left) as u16 - 1
        };
        // SAFETY: masked loads read only elements k..min(k + 16, kc) of rows r < 4 of w
        // (r * ws + kc <= w.len()) and rows t < 3 of x (t * xs + kc <= x.len()), asserted.
        unsafe {
            let x0 = _mm512_maskz_loadu_ps(m, xp.add(k));
            let x1 = _mm512_maskz_loadu_ps(m, xp.add(xs + k));
            let x2 = _mm512_maskz_loadu_ps(m, xp.add(2 * xs + k));
            #[allow(clippy::needless_range_loop)]
            for r in 0..4 {
                let wv = _mm512_maskz_loadu_ps(m, wp.add(r * ws + k));
                acc[0][r] = _mm512_fmadd_ps(wv, x0, acc[0][r]);
                acc[1][r] = _mm512_fmadd_ps(wv, x1, acc[1][r]);
                acc[2][r] = _mm512_fmadd_ps(wv, x2, acc[2][r]);
            }
        }
        k += 16;
    }
    let mut out = [[0.0f32; 4]; 3];
    for t in 0..3 {
        for r in 0..4 {
            out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
        }
    }
    out
}

/// Most blocks per row [`matvec_q`] handles (8192 columns).
pub const MATVEC_Q_MAX_BLOCKS: usize = 256;

/// Q8_0 / Q4_0 mat-vec over whole rows, four rows at a time: `y[i] = row_i . x` for the
/// rows of `data` (`rb` bytes each, `y.len()` rows). The activations are repacked once
/// per call so that each pair of blocks is one 64-byte load shared by the four rows, and
/// the eight f16 weight scales of a step (4 rows x 2 blocks) are converted together.
/// Returns false (and does nothing) when the row has an odd number of blocks or more
/// than [`MATVEC_Q_MAX_BLOCKS`]; the caller then uses the row-at-a-time kernels.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn matvec_q(dtype: DType, data: &[u8], rb: usize, xq: &[Q8Act], y: &mut [f32]) -> bool {
    let nb = xq.len();
    let bb = match dtype {
        DType::Q8_0 => 34,
        DType::Q4_0 => 18,
        _ => return false,
    };
    let q4 = dtype == DType::Q4_0;
    if nb % 2 != 0 || nb > MATVEC_Q_MAX_BLOCKS || nb == 0 || rb < nb * bb {
        return false;
    }
    let rows = y.len();
    assert!(data.len() >= rows * rb);
    let np = nb / 2;
    // Activations per pair of blocks: Q8_0 wants [x0 | x1] (32 + 32 bytes), Q4_0 wants
    // [x0 lo | x1 lo | x0 hi | x1 hi] (16 bytes each) to match its nibble unpacking.
    let mut xs = [_mm512_setzero_si512(); MATVEC_Q_MAX_BLOCKS / 2];
    // (d, s) of each block, scales for the lanes of 4 rows x 2 blocks.
    let mut dx = [0f32; MATVEC_Q_MAX_BLOCKS];
    let mut sx = [0f32; MATVEC_Q_MAX_BLOCKS];
    for (pi, xv) in xs.iter_mut().enumerate().take(np) {
        let (a0, a1) = (&xq[2 * pi], &xq[2 * pi + 1]);
        let mut bytes = [0i8; 64];
        if q4 {
            bytes[..16].copy_from_slice(&a0.qs[..16]);
            bytes[16..32].copy_from_slice(&a1.qs[..16]);
            bytes[32..48].copy_from_slice(&a0.qs[16..]);
            bytes[48..].copy_from_slice(&a1.qs[16..]);
        } else {
            bytes[..32].copy_from_slice(&a0.qs);
            bytes[32..].copy_from_slice(&a1.qs);
        }
        // SAFETY: `bytes` is 64 bytes; unaligned load.
        *xv = unsafe { _mm512_loadu_si512(bytes.as_ptr() as *const __m512i) };
        dx[2 * pi] = a0.d;
        dx[2 * pi + 1] = a1.d;
        sx[2 * pi] = a0.s;
        sx[2 * pi + 1] = a1.s;
    }
    // Lane patterns: which of a row's two block scales each i32 lane of the dot uses.
    let pat = if q4 {
        [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
    } else {
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    };
    let idx: [__m512i; 4] = core::array::from_fn(|r| {
        let v: [i32; 16] = core::array::from_fn(|l| 2 * r as i32 + pat[l]);
        // SAFETY: v is 16 i32 (64 bytes); unaligned load.
        unsafe { _mm512_loadu_si512(v.as_ptr() as *const __m512i) }
    });
    let m4 = _mm256_set1_epi8(0x0f);
    let flip = _mm512_set1_epi8(-128);
    let offset = if q4 { 8.0f32 } else { 128.0 };
    let base = data.as_ptr();
    let mut r0 = 0;
    while r0 + 4 <= rows {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut corr = _mm256_setzero_ps();
        for (pi, &xv) in xs.iter().enumerate().take(np) {
            let b = 2 * pi;
            // SAFETY: rows r0..r0 + 4 < rows hold rb >= nb * bb bytes each inside `data`
            // (asserted), so blocks b and b + 1 < nb of each are in bounds; dx/sx have
            // nb entries; unaligned loads and reads.
            unsafe {
                let rp: [*const u8; 4] = core::array::from_fn(|r| base.add((r0 + r) * rb + b * bb));
                // Rows stream from memory: fetch the group two ahead (the hardware
                // prefetcher alone leaves the scale loads waiting on DRAM).
                if r0 + 12 <= rows {
                    for &q in &rp {
                        _mm_prefetch::<_MM_HINT_T0>(q.add(8 * rb) as *const i8);
                    }
                }
                // Eight f16 scales (row r: lanes 2r, 2r + 1) converted at once.
                let mut hs = _mm_setzero_si128();
                hs = _mm_insert_epi16(hs, core::ptr::read_unaligned(rp[0] as *const i16) as i32, 0);
                hs = _mm_insert_epi16(
                    hs,
                    core::ptr::read_unaligned(rp[0].add(bb) as *const i16) as i32,
                    1,
                );
                hs = _mm_insert_epi16(hs, core::ptr::read_unaligned(rp[1] as *const i16) as i32, 2);
                hs = _mm_insert_epi16(
                    hs,
                    core::ptr::read_unaligned(rp[1].add(bb) as *const i16) as i32,
                    3,
                );
                hs = _mm_insert_epi16(hs, core::ptr::read_unaligned(rp[2] as *const i16) as i32, 4);
                hs = _mm_insert_epi16(
                    hs,
                    core::ptr::read_unaligned(rp[2].add(bb) as *const i16) as i32,
                    5,
                );
                hs = _mm_insert_epi16(hs, core::ptr::read_unaligned(rp[3] as *const i16) as i32, 6);
                hs = _mm_insert_epi16(
                    hs,
                    core::ptr::read_unaligned(rp[3].add(bb) as *const i16) as i32,
                    7,
                );
                let dw = _mm256_cvtph_ps(hs);
                let d2 = _mm_castpd_ps(_mm_load1_pd(dx.as_ptr().add(b) as *const f64));
                let s2 = _mm_castpd_ps(_mm_load1_pd(sx.as_ptr().add(b) as *const f64));
                let dx8 = _mm256_set_m128(d2, d2);
                corr = _mm256_fmadd_ps(dw, _mm256_set_m128(s2, s2), corr);
                let sc = _mm512_castps256_ps512(_mm256_mul_ps(dw, dx8));
                for r in 0..4 {
                    let w = if q4 {
                        let q = _mm256_loadu2_m128i(
                            rp[r].add(bb + 2) as *const __m128i,
                            rp[r].add(2) as *const __m128i,
                        );
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
                    } else {
                        let w = _mm512_inserti64x4(
                            _mm512_castsi256_si512(_mm256_loadu_si256(
                                rp[r].add(2) as *const __m256i
                            )),
                            _mm256_loadu_si256(rp[r].add(bb + 2) as *const __m256i),
                            1,
                        );
                        _mm512_xor_si512(w, flip)
                    };
                    let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv);
                    let scale = _mm512_permutexvar_ps(idx[r], sc);
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), scale, acc[r]);
                }
            }
        }
        let mut c = [0f32; 8];
        // SAFETY: c is 8 floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), corr) };
        for r in 0..4 {
            y[r0 + r] = _mm512_reduce_add_ps(acc[r]) - offset * (c[2 * r] + c[2 * r + 1]);
        }
        r0 += 4;
    }
    for r in r0..rows {
        let row = &data[r * rb..r * rb + nb * bb];
        y[r] = if q4 {
            dot_q4_0(row, xq)
        } else {
            dot_q8_0(row, xq)
        };
    }
    true
}

/// [`tile_4x3`] for 6 tokens: 24 accumulators, so each weight load feeds 6 FMAs.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn tile_4x6(w: &[f32], ws: usize, x: &[f32], xs: usize, kc: usize) -> [[f32; 4]; 6] {
    assert!(kc <= ws && kc <= xs && w.len() >= 3 * ws + kc && x.len() >= 5 * xs + kc);
    let mut acc = [[_mm512_setzero_ps(); 4]; 6];
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let mut k = 0;
    while k < kc {
        let left = kc - k;
        let m: __mmask16 = if left >= 16 {
            0xffff
        } else {
            (1u32 << left) as u16 - 1
        };
        // SAFETY: masked loads read only elements k..min(k + 16, kc) of rows r < 4 of w
        // (r * ws + kc <= w.len()) and rows t < 6 of x (t * xs + kc <= x.len()), asserted.
        unsafe {
            let xv: [__m512; 6] =
                core::array::from_fn(|t| _mm512_maskz_loadu_ps(m, xp.add(t * xs + k)));
            #[allow(clippy::needless_range_loop)]
            for r in 0..4 {
                let wv = _mm512_maskz_loadu_ps(m, wp.add(r * ws + k));
                for t in 0..6 {
                    acc[t][r] = _mm512_fmadd_ps(wv, xv[t], acc[t][r]);
                }
            }
        }
        k += 16;
    }
    let mut out = [[0.0f32; 4]; 6];
    for t in 0..6 {
        for r in 0..4 {
            out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
        }
    }
    out
}
