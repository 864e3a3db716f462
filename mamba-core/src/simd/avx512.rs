//! AVX-512 kernels (x86_64: F, BW, DQ, VL and VNNI on top of AVX2/FMA/F16C), where the
//! wider registers pay: the int8 dot products (VNNI's `vpdpbusd` does 64 multiply-adds
//! per instruction), the f32/f16 dot products, the GEMM tile and the N = 16 scan (one
//! state row per register). Everything else goes to [`super::avx2`].
//! Every function is a safe `#[target_feature]` function; [`super::Simd`] guarantees the
//! features before dispatching here.

use super::act::Q8Act;
use super::avx2;
use crate::kernels::{SsmScan, SsmStep};
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

/// 2^x on 16 lanes: x = i + r with |r| <= 1/2, 2^r by its degree-6 Taylor polynomial
/// (relative error about 1.5e-7), scaled by 2^i with `vscalefps` (which also gives 0 for
/// very negative x and keeps NaN). Cheaper than [`exp16`] for the scan, whose inputs
/// come pre-multiplied by log2(e).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn exp2_16(x: __m512) -> __m512 {
    let i = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    let r = _mm512_sub_ps(x, i);
    let mut p = _mm512_set1_ps(1.540_353e-4);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.333_355_8e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.618_129e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.550_411e-2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.240_226_5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(core::f32::consts::LN_2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, i)
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
        // Bytes of the group two ahead to prefetch (none past `data`), and per step.
        let pf_len = (rows.saturating_sub(r0 + 8)).min(4) * rb;
        let pf_step = (4 * rb).div_ceil(np).next_multiple_of(64);
        for (pi, &xv) in xs.iter().enumerate().take(np) {
            let b = 2 * pi;
            // SAFETY: rows r0..r0 + 4 < rows hold rb >= nb * bb bytes each inside `data`
            // (asserted), so blocks b and b + 1 < nb of each are in bounds; dx/sx have
            // nb entries; unaligned loads and reads.
            unsafe {
                let rp: [*const u8; 4] = core::array::from_fn(|r| base.add((r0 + r) * rb + b * bb));
                // Rows stream from memory, and the four interleaved row streams defeat
                // the hardware prefetcher: fetch the group two ahead linearly (its
                // 4 * rb contiguous bytes spread over the np steps of this group).
                let ahead = base.wrapping_add((r0 + 8) * rb);
                let mut o = pi * pf_step;
                while o < (pi + 1) * pf_step && o < pf_len {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(o) as *const i8);
                    // Q8_0 (twice the bytes for the same arithmetic) also starts the
                    // group five ahead towards L2, so more lines are in flight than
                    // the L1 miss buffers allow (+25% single-core streaming; Q4_0,
                    // closer to compute-bound, loses from the extra instructions).
                    if !q4 && r0 + 24 <= rows {
                        _mm_prefetch::<_MM_HINT_T2>(base.add((r0 + 20) * rb + o) as *const i8);
                    }
                    o += 64;
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

/// The GEMM micro-kernel of [`avx2::tile_4x3`] with 16-wide registers and a masked
/// tail, for `T` activation rows: `out[t][r] = sum_k w[r][k] x[t][k]` over 4 weight rows
/// `w` (row stride `ws`) and `T` rows of `x` (stride `xs`). T = 6 keeps 24 accumulators,
/// so each weight load feeds 6 FMAs; T = 3 serves the tails.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn tile_4xn<const T: usize>(
    w: &[f32],
    ws: usize,
    x: &[f32],
    xs: usize,
    kc: usize,
) -> [[f32; 4]; T] {
    assert!(T >= 1 && kc <= ws && kc <= xs && w.len() >= 3 * ws + kc);
    assert!(x.len() >= (T - 1) * xs + kc);
    let mut acc = [[_mm512_setzero_ps(); 4]; T];
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
        // (r * ws + kc <= w.len()) and rows t < T of x (t * xs + kc <= x.len()), asserted.
        unsafe {
            let xv: [__m512; T] =
                core::array::from_fn(|t| _mm512_maskz_loadu_ps(m, xp.add(t * xs + k)));
            #[allow(clippy::needless_range_loop)]
            for r in 0..4 {
                let wv = _mm512_maskz_loadu_ps(m, wp.add(r * ws + k));
                for t in 0..T {
                    acc[t][r] = _mm512_fmadd_ps(wv, xv[t], acc[t][r]);
                }
            }
        }
        k += 16;
    }
    let mut out = [[0.0f32; 4]; T];
    for t in 0..T {
        for r in 0..4 {
            out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
        }
    }
    out
}

/// Quantize the rows of `x` (`t` rows of `cols` floats, `cols` a multiple of 32) to the
/// The 32 floats at `p` (one quantization block) as two vectors, and their largest
/// magnitude: the shared start of [`quantize_u8`] and [`quantize_act`].
///
/// # Safety
/// `p .. p + 32` must be readable (unaligned is fine).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load_block(p: *const f32) -> (__m512, __m512, f32) {
    let sign = _mm512_set1_ps(-0.0);
    // SAFETY: the caller guarantees p .. p + 32 is readable.
    let (v0, v1) = unsafe { (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))) };
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(
        _mm512_andnot_ps(sign, v0),
        _mm512_andnot_ps(sign, v1),
    ));
    (v0, v1, amax)
}

/// int8 blocks of [`Q8Act`] (scale max|x| / 127, round to nearest) stored as unsigned
/// bytes `q + 128` in `xu` (t x cols) with the block scales in `xd` (t x cols / 32): the
/// activation side of [`matmat_q_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn quantize_u8(x: &[f32], xu: &mut [u8], xd: &mut [f32]) {
    let n = xd.len();
    assert!(x.len() >= n * 32 && xu.len() >= n * 32);
    for (bi, d_out) in xd.iter_mut().enumerate() {
        // SAFETY: block bi < n covers x[32 bi..32 bi + 32] and xu[32 bi..32 bi + 32]
        // (asserted lengths); unaligned loads and stores.
        unsafe {
            let (v0, v1, amax) = load_block(x.as_ptr().add(32 * bi));
            let d = amax / 127.0;
            let (d, id) = if d.is_normal() {
                (d, 1.0 / d)
            } else {
                (0.0, 0.0)
            };
            *d_out = d;
            let idv = _mm512_set1_ps(id);
            let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
            let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
            let off = _mm512_set1_epi32(128);
            let b0 = _mm512_cvtepi32_epi8(_mm512_add_epi32(q0, off));
            let b1 = _mm512_cvtepi32_epi8(_mm512_add_epi32(q1, off));
            _mm_storeu_si128(xu.as_mut_ptr().add(32 * bi) as *mut __m128i, b0);
            _mm_storeu_si128(xu.as_mut_ptr().add(32 * bi + 16) as *mut __m128i, b1);
        }
    }
}

/// [`super::act::quantize_row`] vectorized: the same blocks (scale max|x| / 127, a block
/// below the normal range is zero) rounded to nearest even instead of away from zero.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn quantize_act(x: &[f32], out: &mut [Q8Act]) {
    assert!(x.len() >= out.len() * 32);
    for (bi, o) in out.iter_mut().enumerate() {
        // SAFETY: block bi covers x[32 bi..32 bi + 32] (asserted); o.qs is 32 bytes;
        // unaligned loads and stores.
        unsafe {
            let (v0, v1, amax) = load_block(x.as_ptr().add(32 * bi));
            let d = amax / 127.0;
            if !d.is_normal() {
                *o = Q8Act::ZERO;
                continue;
            }
            let idv = _mm512_set1_ps(1.0 / d);
            let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
            let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            _mm_storeu_si128(o.qs.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(
                o.qs.as_mut_ptr().add(16) as *mut __m128i,
                _mm512_cvtepi32_epi8(q1),
            );
            o.d = d;
            o.s = d * sum as f32;
        }
    }
}

/// Rows of one packed int8 weight panel of [`matmat_q_rows`].
pub const QP_ROWS: usize = 32;
/// Blocks of 32 columns per packed panel (a pass over the columns).
pub const QP_BLOCKS: usize = 64;

/// One packed panel: for each block, 8 steps of 4 columns x 32 rows of signed weights
/// (VNNI's layout: the 4 bytes of a row's column group are adjacent), then per block the
/// 32 row scales and the 32 corrections -128 * sum(w) of the unsigned-activation trick.
#[repr(C, align(64))]
struct QPanel {
    w: [u8; QP_BLOCKS * 32 * QP_ROWS],
    d: [f32; QP_BLOCKS * QP_ROWS],
    nws: [i32; QP_BLOCKS * QP_ROWS],
}

/// Pack rows `r0..r0 + 32` (those below `rows`; the rest zero) of a Q8_0 / Q4_0 matrix,
/// blocks `b0..b0 + nb`, into `p`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pack_q(
    q4: bool,
    data: &[u8],
    rb: usize,
    rows: usize,
    r0: usize,
    b0: usize,
    nb: usize,
    p: &mut QPanel,
) {
    let bb = if q4 { 18 } else { 34 };
    assert!(nb <= QP_BLOCKS && data.len() >= rows * rb && rb >= (b0 + nb) * bb);
    let m4 = _mm_set1_epi8(0x0f);
    let eight = _mm256_set1_epi8(8);
    let flip = _mm256_set1_epi8(-128);
    for i in 0..QP_ROWS {
        let r = r0 + i;
        for b in 0..nb {
            let (w, d) = if r < rows {
                // SAFETY: row r < rows and block b0 + b < rb / bb lie inside `data`
                // (asserted); unaligned loads.
                unsafe {
                    let bp = data.as_ptr().add(r * rb + (b0 + b) * bb);
                    let d = avx2::f16_to_f32(core::ptr::read_unaligned(bp as *const u16));
                    let w = if q4 {
                        let q = _mm_loadu_si128(bp.add(2) as *const __m128i);
                        let lo = _mm_and_si128(q, m4);
                        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
                        _mm256_sub_epi8(_mm256_set_m128i(hi, lo), eight)
                    } else {
                        _mm256_loadu_si256(bp.add(2) as *const __m256i)
                    };
                    (w, d)
                }
            } else {
                (_mm256_setzero_si256(), 0.0)
            };
            // sum of the signed bytes: sum(w + 128) - 32 * 128.
            let sad = _mm256_sad_epu8(_mm256_xor_si256(w, flip), _mm256_setzero_si256());
            let s = _mm256_extract_epi64::<0>(sad)
                + _mm256_extract_epi64::<1>(sad)
                + _mm256_extract_epi64::<2>(sad)
                + _mm256_extract_epi64::<3>(sad)
                - 4096;
            p.d[b * QP_ROWS + i] = d;
            p.nws[b * QP_ROWS + i] = -128 * s as i32;
            let mut g = [0u32; 8];
            // SAFETY: g is 32 bytes.
            unsafe { _mm256_storeu_si256(g.as_mut_ptr() as *mut __m256i, w) };
            let base = b * 32 * QP_ROWS;
            for (k4, &v) in g.iter().enumerate() {
                let o = base + k4 * 4 * QP_ROWS + 4 * i;
                p.w[o..o + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
    }
}

/// `NT` tokens x 32 rows over `nb` blocks of a packed panel: per block, the int8 dots
/// (`vpdpbusd`, unsigned activations x signed weights, started from -128 * sum(w)) then
/// one scale multiply-add per 16 rows and token.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q<const NT: usize>(
    p: &QPanel,
    nb: usize,
    xu: &[u8],
    ldx: usize,
    xd: &[f32],
    ldd: usize,
) -> [[__m512; 2]; NT] {
    assert!(nb <= QP_BLOCKS && NT >= 1);
    assert!(xu.len() >= (NT - 1) * ldx + nb * 32 && xd.len() >= (NT - 1) * ldd + nb);
    let mut f = [[_mm512_setzero_ps(); 2]; NT];
    let wp = p.w.as_ptr();
    let xp = xu.as_ptr();
    for b in 0..nb {
        // SAFETY: b < nb <= QP_BLOCKS indexes the panel's arrays; token rows t < NT of
        // xu hold nb * 32 bytes at t * ldx and of xd nb scales at t * ldd (asserted).
        unsafe {
            let n0 = _mm512_loadu_si512(p.nws.as_ptr().add(b * QP_ROWS) as *const __m512i);
            let n1 = _mm512_loadu_si512(p.nws.as_ptr().add(b * QP_ROWS + 16) as *const __m512i);
            let mut acc = [[n0, n1]; NT];
            for k4 in 0..8 {
                let o = (b * 8 + k4) * 4 * QP_ROWS;
                let w0 = _mm512_load_si512(wp.add(o) as *const __m512i);
                let w1 = _mm512_load_si512(wp.add(o + 64) as *const __m512i);
                for (t, a) in acc.iter_mut().enumerate() {
                    let xv =
                        core::ptr::read_unaligned(xp.add(t * ldx + b * 32 + k4 * 4) as *const i32);
                    let xb = _mm512_set1_epi32(xv);
                    a[0] = _mm512_dpbusd_epi32(a[0], xb, w0);
                    a[1] = _mm512_dpbusd_epi32(a[1], xb, w1);
                }
            }
            let s0 = _mm512_loadu_ps(p.d.as_ptr().add(b * QP_ROWS));
            let s1 = _mm512_loadu_ps(p.d.as_ptr().add(b * QP_ROWS + 16));
            for (t, (fa, a)) in f.iter_mut().zip(&acc).enumerate() {
                let dx = _mm512_set1_ps(*xd.get_unchecked(t * ldd + b));
                fa[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[0]), _mm512_mul_ps(s0, dx), fa[0]);
                fa[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[1]), _mm512_mul_ps(s1, dx), fa[1]);
            }
        }
    }
    f
}

/// Write (or add, when `add`) a tile's `NT` x 32 results to `y[(t0 + t) * ldy + r0 + i]`
/// for the rows `r0 + i < rows`.
///
/// # Safety
/// `y` must be valid for writes at every such index, and no other thread may access them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn store_tile<const NT: usize>(
    f: &[[__m512; 2]; NT],
    y: *mut f32,
    ldy: usize,
    t0: usize,
    r0: usize,
    rows: usize,
    add: bool,
) {
    let left = rows - r0;
    let m0: __mmask16 = if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as u16
    };
    let m1: __mmask16 = if left >= 32 {
        0xffff
    } else if left > 16 {
        ((1u32 << (left - 16)) - 1) as u16
    } else {
        0
    };
    for (t, fa) in f.iter().enumerate() {
        // SAFETY: the caller's contract; the masks keep the stores to rows < rows.
        unsafe {
            let p = y.add((t0 + t) * ldy + r0);
            let (mut a0, mut a1) = (fa[0], fa[1]);
            if add {
                a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, p));
                a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, a0);
            _mm512_mask_storeu_ps(p.add(16), m1, a1);
        }
    }
}

/// The int8 prefill product for Q8_0 / Q4_0 weights: `y[t * ldy + r] = W[r, :] . x_t` for
/// rows `r0..r1` and tokens `0..t`, with the activations quantized by [`quantize_u8`]
/// (`xu`: t x cols bytes, `xd`: t x cols / 32 scales). Weights are packed 32 rows x 64
/// blocks at a time (int8, VNNI layout) and each panel meets every token, 6 at a time.
/// Returns false (and does nothing) for another dtype.
///
/// # Safety
/// `y` must be valid for writes at `tok * ldy + r` for every `tok < t`, `r0 <= r < r1`,
/// and no other thread may access those elements during the call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn matmat_q_rows(
    dtype: DType,
    data: &[u8],
    rb: usize,
    rows: usize,
    cols: usize,
    r0: usize,
    r1: usize,
    xu: &[u8],
    xd: &[f32],
    t: usize,
    y: *mut f32,
    ldy: usize,
) -> bool {
    let q4 = match dtype {
        DType::Q8_0 => false,
        DType::Q4_0 => true,
        _ => return false,
    };
    let nb_all = cols / 32;
    assert!(cols % 32 == 0 && r1 <= rows && xu.len() >= t * cols && xd.len() >= t * nb_all);
    let mut p = QPanel {
        w: [0; QP_BLOCKS * 32 * QP_ROWS],
        d: [0.0; QP_BLOCKS * QP_ROWS],
        nws: [0; QP_BLOCKS * QP_ROWS],
    };
    let mut b0 = 0;
    while b0 < nb_all {
        let nb = (nb_all - b0).min(QP_BLOCKS);
        let add = b0 > 0;
        let mut r = r0;
        while r < r1 {
            pack_q(q4, data, rb, r1, r, b0, nb, &mut p);
            let xu = &xu[b0 * 32..];
            let xd = &xd[b0..];
            let mut t0 = 0;
            while t0 < t {
                let xu = &xu[t0 * cols..];
                let xd = &xd[t0 * nb_all..];
                // SAFETY: (all arms) the caller's contract covers rows r..min(r + 32, r1)
                // of tokens t0..t0 + NT <= t.
                unsafe {
                    match t - t0 {
                        1 => store_tile(
                            &tile_q::<1>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                        2 => store_tile(
                            &tile_q::<2>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                        3 => store_tile(
                            &tile_q::<3>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                        4 => store_tile(
                            &tile_q::<4>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                        5 => store_tile(
                            &tile_q::<5>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                        _ => store_tile(
                            &tile_q::<6>(&p, nb, xu, cols, xd, nb_all),
                            y,
                            ldy,
                            t0,
                            r,
                            r1,
                            add,
                        ),
                    }
                }
                t0 += 6.min(t - t0);
            }
            r += QP_ROWS;
        }
        b0 += nb;
    }
    true
}

/// The scan of a block for N = 16 over channels `e0..e1` ([`SsmScan`] holds the block),
/// 16 channels per register (exp(dt A) as [`exp2_16`] of dt (A log2 e)): each of the 16 state columns of a channel group lives in
/// a register through every token, so there is no horizontal sum and no state traffic.
/// `state` holds the channels' (e1 - e0) x 16 state rows; `y[tt * E + e]` is written for
/// every token and channel. A channel tail below 16 runs [`ssm_step_n16`] per token.
///
/// # Safety
/// `y` must be valid for writes at `tt * E + e` for `tt < p.t`, `e0 <= e < e1`, and no
/// other thread may access those elements during the call.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn ssm_scan_n16(p: &SsmScan<'_>, e0: usize, e1: usize, state: &mut [f32], y: *mut f32) {
    const N: usize = 16;
    let e_len = p.d.len();
    let xl = p.dt_rank + 2 * N;
    let t = p.t;
    assert!(e0 <= e1 && e1 <= e_len && p.a.len() >= e_len * N && state.len() >= (e1 - e0) * N);
    assert!(p.delta.len() >= t * e_len && p.xc.len() >= t * e_len && p.xz.len() >= t * 2 * e_len);
    assert!(p.xdbc.len() >= t * xl);
    let mut c0 = e0;
    while c0 + 16 <= e1 {
        // Transposed A and state of the group: [n][lane].
        let mut at = [0f32; 256];
        let mut st = [0f32; 256];
        let srow = &mut state[(c0 - e0) * N..(c0 - e0 + 16) * N];
        for l in 0..16 {
            for n in 0..N {
                at[n * 16 + l] = p.a[(c0 + l) * N + n] * core::f32::consts::LOG2_E;
                st[n * 16 + l] = srow[l * N + n];
            }
        }
        // SAFETY: at/st are 256 floats; token rows tt < t of delta, xc, xz, xdbc hold
        // the channels c0..c0 + 16 <= e_len and B/C at dt_rank.. (asserted lengths);
        // y by the caller's contract; unaligned loads and stores.
        unsafe {
            let av: [__m512; N] =
                core::array::from_fn(|n| _mm512_loadu_ps(at.as_ptr().add(16 * n)));
            let mut s: [__m512; N] =
                core::array::from_fn(|n| _mm512_loadu_ps(st.as_ptr().add(16 * n)));
            let dv = _mm512_loadu_ps(p.d.as_ptr().add(c0));
            for tt in 0..t {
                let dt = _mm512_loadu_ps(p.delta.as_ptr().add(tt * e_len + c0));
                let x = _mm512_loadu_ps(p.xc.as_ptr().add(tt * e_len + c0));
                let z = _mm512_loadu_ps(p.xz.as_ptr().add(tt * 2 * e_len + e_len + c0));
                let bc = p.xdbc.as_ptr().add(tt * xl + p.dt_rank);
                let dtx = _mm512_mul_ps(dt, x);
                let mut acc = _mm512_setzero_ps();
                for n in 0..N {
                    let da = exp2_16(_mm512_mul_ps(dt, av[n]));
                    let bn = _mm512_set1_ps(*bc.add(n));
                    s[n] = _mm512_fmadd_ps(da, s[n], _mm512_mul_ps(dtx, bn));
                    acc = _mm512_fmadd_ps(s[n], _mm512_set1_ps(*bc.add(N + n)), acc);
                }
                let g = _mm512_insertf32x8(
                    _mm512_castps256_ps512(avx2::silu8(_mm512_castps512_ps256(z))),
                    avx2::silu8(_mm512_extractf32x8_ps::<1>(z)),
                    1,
                );
                let yv = _mm512_mul_ps(_mm512_fmadd_ps(dv, x, acc), g);
                _mm512_storeu_ps(y.add(tt * e_len + c0), yv);
            }
            for (n, sv) in s.iter().enumerate() {
                _mm512_storeu_ps(st.as_mut_ptr().add(16 * n), *sv);
            }
        }
        for l in 0..16 {
            for n in 0..N {
                srow[l * N + n] = st[n * 16 + l];
            }
        }
        c0 += 16;
    }
    if c0 < e1 {
        let mut yt = [0f32; 16];
        let srow = &mut state[(c0 - e0) * N..(e1 - e0) * N];
        for tt in 0..t {
            let m = e1 - c0;
            ssm_step_n16(&p.step(tt, c0, e1), srow, &mut yt[..m]);
            for (j, &v) in yt[..m].iter().enumerate() {
                // SAFETY: the caller's contract (tt < t, c0 + j < e1).
                unsafe { *y.add(tt * e_len + c0 + j) = v };
            }
        }
    }
}

/// Tokens per register tile of the token-major f32 product (two registers).
pub const XT_TILE: usize = 32;

/// Floats [`pack_xt`] writes for `t` tokens of `cols` columns.
pub fn xt_len(t: usize, cols: usize) -> usize {
    t.div_ceil(XT_TILE) * XT_TILE * cols
}

/// Transpose the activations `x` (t x cols) for [`matmat_t_rows`]: tiles of 32 tokens,
/// each stored column by column (`xt[(tile * cols + k) * 32 + l]` = token tile * 32 + l,
/// column k; tokens past `t` are zero).
/// `xt` holds the tiles from `tile0` on (as many as it has room for, up to the last).
/// 16 x 16 blocks are transposed in registers.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn pack_xt(x: &[f32], t: usize, cols: usize, tile0: usize, xt: &mut [f32]) {
    assert!(x.len() >= t * cols);
    let tiles = (xt.len() / (cols * XT_TILE).max(1)).min(t.div_ceil(XT_TILE).saturating_sub(tile0));
    let k16 = cols / 16 * 16;
    for i in 0..tiles {
        let tile = tile0 + i;
        let slab = &mut xt[i * cols * XT_TILE..(i + 1) * cols * XT_TILE];
        let n = (t - tile * XT_TILE).min(XT_TILE);
        for l0 in [0, 16] {
            let valid = n.saturating_sub(l0).min(16);
            let row = |l: usize| (tile * XT_TILE + l0 + l) * cols;
            let mut k = 0;
            while k < k16 {
                let mut r = [_mm512_setzero_ps(); 16];
                for (l, v) in r.iter_mut().enumerate().take(valid) {
                    // SAFETY: token tile * 32 + l0 + l < t and k + 16 <= cols: inside x
                    // (asserted t * cols); unaligned load.
                    *v = unsafe { _mm512_loadu_ps(x.as_ptr().add(row(l) + k)) };
                }
                transpose16(&mut r);
                for (j, v) in r.iter().enumerate() {
                    let o = (k + j) * XT_TILE + l0;
                    // SAFETY: o + 16 <= cols * 32 = slab.len(); unaligned store.
                    unsafe { _mm512_storeu_ps(slab[o..o + 16].as_mut_ptr(), *v) };
                }
                k += 16;
            }
            for k in k16..cols {
                for l in 0..16 {
                    slab[k * XT_TILE + l0 + l] = if l < valid { x[row(l) + k] } else { 0.0 };
                }
            }
        }
    }
}

/// Transpose 16 rows of 16 floats in registers (`r[j]` becomes column j).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Per 128-bit lane L, r[4i + j] then holds column 4L + j of rows 4i..4i + 4.
    for i in 0..4 {
        r[4 * i] = _mm512_shuffle_ps::<0x44>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_shuffle_ps::<0xee>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_shuffle_ps::<0x44>(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_shuffle_ps::<0xee>(t[4 * i + 1], t[4 * i + 3]);
    }
    for j in 0..4 {
        t[j] = _mm512_shuffle_f32x4::<0x88>(r[j], r[4 + j]);
        t[4 + j] = _mm512_shuffle_f32x4::<0xdd>(r[j], r[4 + j]);
        t[8 + j] = _mm512_shuffle_f32x4::<0x88>(r[8 + j], r[12 + j]);
        t[12 + j] = _mm512_shuffle_f32x4::<0xdd>(r[8 + j], r[12 + j]);
    }
    for j in 0..4 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
        r[8 + j] = _mm512_shuffle_f32x4::<0xdd>(t[j], t[8 + j]);
        r[4 + j] = _mm512_shuffle_f32x4::<0x88>(t[4 + j], t[12 + j]);
        r[12 + j] = _mm512_shuffle_f32x4::<0xdd>(t[4 + j], t[12 + j]);
    }
}

/// `MR` weight rows (f32, row r at `w[r * ws..]`) x 32 tokens of a transposed slab
/// (`xs[k * 32..]`) over `kc` columns: each weight is broadcast and meets 32 tokens in
/// two FMAs; no horizontal sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_t<const MR: usize>(w: &[f32], ws: usize, xs: &[f32], kc: usize) -> [[__m512; 2]; MR] {
    assert!(MR >= 1 && w.len() >= (MR - 1) * ws + kc && xs.len() >= kc * XT_TILE);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let wp = w.as_ptr();
    let xp = xs.as_ptr();
    for k in 0..kc {
        // SAFETY: k < kc: xs holds kc * 32 floats and row r < MR of w holds kc from
        // r * ws (asserted); unaligned loads.
        unsafe {
            let x0 = _mm512_loadu_ps(xp.add(k * XT_TILE));
            let x1 = _mm512_loadu_ps(xp.add(k * XT_TILE + 16));
            for (r, a) in acc.iter_mut().enumerate() {
                let wb = _mm512_set1_ps(*wp.add(r * ws + k));
                a[0] = _mm512_fmadd_ps(wb, x0, a[0]);
                a[1] = _mm512_fmadd_ps(wb, x1, a[1]);
            }
        }
    }
    acc
}

/// Write (or add) a [`tile_t`] result: row r0 + r, tokens tok0.. (those below `t`).
///
/// # Safety
/// `y` valid for writes at `tok * ldy + r0 + r` for those tokens and r < MR, accessed by
/// no one else.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn store_t<const MR: usize>(
    acc: &[[__m512; 2]; MR],
    y: *mut f32,
    ldy: usize,
    tok0: usize,
    t: usize,
    r0: usize,
    add: bool,
) {
    let n = (t - tok0).min(XT_TILE);
    let mut buf = [[0f32; XT_TILE]; MR];
    for (b, a) in buf.iter_mut().zip(acc) {
        // SAFETY: b holds 32 floats.
        unsafe {
            _mm512_storeu_ps(b.as_mut_ptr(), a[0]);
            _mm512_storeu_ps(b.as_mut_ptr().add(16), a[1]);
        }
    }
    // Token by token, so each token's MR outputs (adjacent in y) are written together.
    #[allow(clippy::needless_range_loop)]
    for l in 0..n {
        // SAFETY: y by the caller's contract (l < n, r < MR).
        let o = unsafe { core::slice::from_raw_parts_mut(y.add((tok0 + l) * ldy + r0), MR) };
        for (r, v) in o.iter_mut().enumerate() {
            if add { *v += buf[r][l] } else { *v = buf[r][l] }
        }
    }
}

/// Most columns per pass of [`matmat_t_rows`] (passes of equal length).
const XT_KC: usize = 1024;
/// Rows per register tile of [`matmat_t_rows`].
const XT_MR: usize = 12;

/// The f32 prefill product for F32 / F16 / BF16 weights with token-major activations
/// from [`pack_xt`]: `y[tok * ldy + r] = W[r, :] . x_tok` for rows `r0..r1`, tokens
/// `0..t`. Register tiles of 12 rows x 32 tokens (24 accumulators, one broadcast weight
/// per two FMAs); F32 weights are read in place, the others dequantized 12 rows x 512
/// columns at a time. Returns false (and does nothing) for a block-quantized dtype.
///
/// # Safety
/// `y` must be valid for writes at `tok * ldy + r` for every `tok < t`, `r0 <= r < r1`,
/// and no other thread may access those elements during the call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn matmat_t_rows(
    dtype: DType,
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
    let es = match dtype {
        DType::F32 => 4,
        DType::F16 | DType::BF16 => 2,
        _ => return false,
    };
    assert!(r1 <= rows && data.len() >= rows * cols * es && xt.len() >= xt_len(t, cols));
    let direct: Option<&[f32]> = if dtype == DType::F32 {
        bytemuck::try_cast_slice(&data[..rows * cols * 4]).ok()
    } else {
        None
    };
    let mut panel = [0f32; XT_MR * XT_KC];
    let tiles = t.div_ceil(XT_TILE);
    let kc_pass = cols.div_ceil(cols.div_ceil(XT_KC));
    let mut k0 = 0;
    while k0 < cols {
        let kc = (cols - k0).min(kc_pass);
        let add = k0 > 0;
        let mut rr = r0;
        while rr < r1 {
            let mg = (r1 - rr).min(XT_MR);
            let (wsl, ws): (&[f32], usize) = match direct {
                Some(wf) => (&wf[rr * cols + k0..], cols),
                None => {
                    for i in 0..mg {
                        let o = (rr + i) * cols;
                        avx2::dequant(
                            dtype,
                            &data[(o + k0) * es..(o + k0 + kc) * es],
                            &mut panel[i * kc..(i + 1) * kc],
                        );
                    }
                    (&panel[..], kc)
                }
            };
            // The next row group's weights come from memory: prefetch them, spread
            // over this group's token tiles.
            let next = (rr + mg)..(rr + mg + XT_MR).min(r1);
            let lines = kc * es / 64 + 1;
            let pf_total = next.len() * lines;
            let pf_per = pf_total.div_ceil(tiles.max(1));
            for tile in 0..tiles {
                for q in tile * pf_per..((tile + 1) * pf_per).min(pf_total) {
                    let (row, line) = (next.start + q / lines, q % lines);
                    let at = ((row * cols + k0) * es + line * 64).min(data.len() - 1);
                    // SAFETY: `at` is inside `data`; a prefetch has no other effect.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(at) as *const i8) };
                }
                let xs = &xt[(tile * cols + k0) * XT_TILE..];
                let tok0 = tile * XT_TILE;
                let mut r = 0;
                // SAFETY: (the stores) rows rr + r.. < r1 and tokens < t are the
                // caller's.
                unsafe {
                    while r + XT_MR <= mg {
                        let a = tile_t::<XT_MR>(&wsl[r * ws..], ws, xs, kc);
                        store_t(&a, y, ldy, tok0, t, rr + r, add);
                        r += XT_MR;
                    }
                    while r + 4 <= mg {
                        let a = tile_t::<4>(&wsl[r * ws..], ws, xs, kc);
                        store_t(&a, y, ldy, tok0, t, rr + r, add);
                        r += 4;
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
