//! SIMD kernels, chosen once: [`Simd`] holds an instruction set ([`Isa`]) that the CPU is
//! known to have and dispatches every kernel on it. Under std the caller detects features
//! at run time and builds a `Simd` with [`Simd::new_unchecked`]; without std,
//! [`Simd::from_target_features`] picks what the build's `target_feature`s allow.
//!
//! Every path is tested against the scalar reference ([`crate::kernels::Scalar`]).
//! The Q8_0/Q4_0 mat-vec of the SIMD paths quantizes the activations to int8 per block
//! of 32 ([`act::Q8Act`]) as ggml does, and so does the AVX-512 prefill product for those
//! types ([`Simd::matmat_rows`] with activations from [`Simd::quantize_u8`]); everything
//! else is f32 arithmetic.

pub mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
// The AVX-512 intrinsics are stable since Rust 1.89 and safe `#[target_feature]`
// functions since 1.86, above the workspace's declared rust-version (1.85): building this
// crate needs 1.89 (see PERF_NOTES.md; the lead decides on the MSRV bump).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
mod avx512;

use crate::kernels::{Kernels, SsmScan, SsmStep, scalar_softplus_bias, scalar_ssm_step};
use crate::quant::QK;
use crate::tensor::{DType, WeightMatrix, dot_row_scalar, row_to_f32};
use act::Q8Act;

/// An instruction set a kernel path is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The portable reference.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// x86_64 AVX-512 F/BW/DQ/VL + VNNI (on top of AVX2).
    Avx512,
    /// aarch64 NEON (f32 arithmetic).
    Neon,
    /// aarch64 NEON with the `dotprod` extension (`sdot`): the Q8_0/Q4_0 mat-vec in int8
    /// like the x86 paths; everything else as [`Isa::Neon`].
    NeonDot,
}

impl Isa {
    /// Lower-case name (`MAMBA_KERNELS` values).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dot",
        }
    }
    /// Parse a lower-case name.
    pub fn from_name(s: &str) -> Option<Isa> {
        Some(match s {
            "scalar" => Isa::Scalar,
            "avx2" => Isa::Avx2,
            "avx512" => Isa::Avx512,
            "neon" => Isa::Neon,
            "neon-dot" => Isa::NeonDot,
            _ => return None,
        })
    }
    /// Every path, best last.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Neon, Isa::NeonDot, Isa::Avx2, Isa::Avx512];
}

/// Activation blocks a mat-vec may quantize on the stack: 4096 columns at a time.
const ACT_CHUNK_BLOCKS: usize = 128;
/// GEMM blocking: columns per pass (a multiple of 32 so quant blocks are not split)
/// and rows per dequantized panel.
pub const GEMM_KC: usize = 1024;
/// Rows of one dequantized weight panel.
pub const GEMM_MC: usize = 8;

/// Kernels on one instruction set, known to be available. Copy, no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simd {
    isa: Isa,
}

impl Default for Simd {
    fn default() -> Self {
        Simd::from_target_features()
    }
}

impl Simd {
    /// The scalar reference path.
    pub const SCALAR: Simd = Simd { isa: Isa::Scalar };

    /// The best path the compile-time target features allow (the no_std choice).
    pub fn from_target_features() -> Simd {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512dq",
            target_feature = "avx512vl",
            target_feature = "avx512vnni",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))]
        return Simd { isa: Isa::Avx512 };
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c",
            not(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512dq",
                target_feature = "avx512vl",
                target_feature = "avx512vnni"
            ))
        ))]
        return Simd { isa: Isa::Avx2 };
        #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
        return Simd { isa: Isa::NeonDot };
        #[allow(unreachable_code)]
        Simd::SCALAR
    }

    /// A path for `isa` without checking the CPU.
    ///
    /// # Safety
    /// The CPU running the kernels must have the features `isa` names (see [`Isa`]);
    /// `Isa::Scalar` and `Isa::Neon` are always safe (`Isa::NeonDot` needs `dotprod`). On another architecture than the
    /// ISA's, the scalar kernels run.
    pub unsafe fn new_unchecked(isa: Isa) -> Simd {
        Simd { isa }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// True when a mat-vec with `dtype` weights reads int8 activations from
    /// [`Simd::quantize_act`] instead of f32.
    pub fn wants_act(&self, dtype: DType) -> bool {
        matches!(dtype, DType::Q8_0 | DType::Q4_0)
            && match self.isa {
                Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
                Isa::NeonDot => cfg!(target_arch = "aarch64"),
                _ => false,
            }
    }

    /// Quantize activations for [`Simd::matvec_rows`] (x.len() a multiple of 32;
    /// out.len() == x.len() / 32).
    pub fn quantize_act(&self, x: &[f32], out: &mut [Q8Act]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: see dot_row.
            unsafe { avx512::quantize_act(x, out) };
            return;
        }
        act::quantize_row(x, out)
    }

    /// Dot of one raw row with `x` (f32) or `xq` (int8 blocks, when [`Self::wants_act`]).
    #[inline]
    pub fn dot_row(&self, dtype: DType, row: &[u8], x: &[f32], xq: &[Q8Act]) -> f32 {
        let _ = xq; // only the int8 paths read it
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                // SAFETY: a Simd with Isa::Avx512 exists only where the CPU has AVX-512
                // F/BW/DQ/VL/VNNI, AVX2, FMA and F16C (new_unchecked's contract or the
                // compile-time target features).
                unsafe { avx512::dot_row(dtype, row, x, xq) }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                // SAFETY: a Simd with Isa::Avx2 exists only where the CPU has AVX2, FMA
                // and F16C (see above).
                unsafe { avx2_dot_row(dtype, row, x, xq) }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                // SAFETY: NEON is part of every aarch64 CPU (the target's baseline).
                unsafe { neon::dot_row(dtype, row, x) }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => {
                // SAFETY: a Simd with Isa::NeonDot exists only where the CPU has the
                // dotprod extension (new_unchecked's contract or the target features).
                match unsafe { neon::dot_row_q(dtype, row, xq) } {
                    Some(v) => v,
                    // SAFETY: NEON is part of every aarch64 CPU.
                    None => unsafe { neon::dot_row(dtype, row, x) },
                }
            }
            _ => dot_row_scalar(dtype, row, x),
        }
    }

    /// `y[i] = W[r0 + i, :] . x` for i in 0..y.len(). `xq` holds `x` quantized by
    /// [`Self::quantize_act`] when [`Self::wants_act`] says so (else may be empty).
    pub fn matvec_rows(
        &self,
        w: &WeightMatrix<'_>,
        r0: usize,
        x: &[f32],
        xq: &[Q8Act],
        y: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 && self.wants_act(w.dtype) && !y.is_empty() {
            let rb = w.row_bytes();
            let data = &w.data[r0 * rb..(r0 + y.len()) * rb];
            // SAFETY: see dot_row.
            if unsafe { avx512::matvec_q(w.dtype, data, rb, xq, y) } {
                return;
            }
        }
        for (i, out) in y.iter_mut().enumerate() {
            *out = self.dot_row(w.dtype, w.row(r0 + i), x, xq);
        }
    }

    /// `x = silu(x)` in place.
    pub fn silu_inplace(&self, x: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => {
                // SAFETY: both ISAs imply AVX2 + FMA + F16C (see dot_row).
                unsafe { avx2::silu_inplace(x) }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => {
                // SAFETY: NEON is part of every aarch64 CPU (the target's baseline).
                unsafe { neon::silu_inplace(x) }
            }
            _ => {
                for v in x {
                    *v = crate::math::silu(*v);
                }
            }
        }
    }

    /// Y (t x w.rows) = X (t x w.cols) W^T, one row of X per token: the prefill
    /// product. Each weight is dequantized once per panel and reused for all `t` tokens.
    pub fn matmat(&self, w: &WeightMatrix<'_>, x: &[f32], t: usize, y: &mut [f32]) {
        let (rows, cols) = (w.rows, w.cols);
        assert!(x.len() >= t * cols && y.len() >= t * rows);
        if self.isa == Isa::Scalar || t < 3 {
            for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)).take(t) {
                self.matvec_f32(w, xt, yt);
            }
            return;
        }
        // SAFETY: y holds t x rows floats (asserted) and is borrowed mutably.
        unsafe { self.matmat_rows(w, 0, rows, x, None, None, t, y.as_mut_ptr(), rows) }
    }

    /// True when [`Self::matmat_rows`] multiplies `dtype` weights with int8 activations
    /// from [`Self::quantize_u8`] (AVX-512 VNNI, Q8_0 / Q4_0).
    pub fn wants_u8_act(&self, dtype: DType) -> bool {
        self.isa == Isa::Avx512 && matches!(dtype, DType::Q8_0 | DType::Q4_0)
    }

    /// Quantize `t` rows of activations for [`Self::matmat_rows`]: `xu` (t x cols bytes,
    /// q + 128) and `xd` (t x cols / 32 block scales); `cols` a multiple of 32. Only for
    /// a path where [`Self::wants_u8_act`] holds (else it does nothing).
    pub fn quantize_u8(&self, x: &[f32], xu: &mut [u8], xd: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: see dot_row.
            unsafe { avx512::quantize_u8(x, xu, xd) }
        }
        let _ = (x, xu, xd);
    }

    /// True when [`Self::matmat_rows`] wants the activations token-major from
    /// [`Self::pack_xt`] for `dtype` weights (AVX-512, F32 / F16 / BF16).
    pub fn wants_xt(&self, dtype: DType) -> bool {
        cfg!(target_arch = "x86_64")
            && matches!(self.isa, Isa::Avx2 | Isa::Avx512)
            && matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Floats [`Self::pack_xt`] needs for `t` tokens of `cols` columns.
    pub fn xt_len(&self, t: usize, cols: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        return avx512::xt_len(t, cols);
        #[allow(unreachable_code)]
        {
            t * cols
        }
    }

    /// Tokens per tile of [`Self::pack_xt`].
    pub const XT_TILE: usize = 32;

    /// Transpose `x` (t x cols) into the token-major tiles [`Self::matmat_rows`] takes
    /// as `xt` (only where [`Self::wants_xt`] holds; else it does nothing). `xt` is the
    /// part of the whole packed buffer that starts at tile `tile0` (32 tokens x cols
    /// floats per tile); the tiles it has room for are written.
    pub fn pack_xt(&self, x: &[f32], t: usize, cols: usize, tile0: usize, xt: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                // SAFETY: see dot_row.
                unsafe { avx512::pack_xt(x, t, cols, tile0, xt) }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::pack_xt(x, t, cols, tile0, xt),
            _ => {
                let _ = (x, t, cols, tile0, xt);
            }
        }
    }

    /// The prefill product for rows `r0..r1` of `w`: `y[tok * ldy + r] = W[r, :] . x_tok`
    /// for `tok < t`, where `x` is t x w.cols. With `xq` = `(xu, xd)` from
    /// [`Self::quantize_u8`] of the same `x` and [`Self::wants_u8_act`], the product is
    /// int8 (as the decode mat-vec); with `xt` from [`Self::pack_xt`] of the same `x`
    /// and [`Self::wants_xt`], token-major f32 tiles; else f32 on weight panels.
    ///
    /// # Safety
    /// `y` must be valid for writes at `tok * ldy + r` for every `tok < t`, `r0 <= r < r1`
    /// (r1 <= w.rows), and no other thread may access those elements during the call.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmat_rows(
        &self,
        w: &WeightMatrix<'_>,
        r0: usize,
        r1: usize,
        x: &[f32],
        xq: Option<(&[u8], &[f32])>,
        xt: Option<&[f32]>,
        t: usize,
        y: *mut f32,
        ldy: usize,
    ) {
        let (rows, cols) = (w.rows, w.cols);
        assert!(x.len() >= t * cols && r0 <= r1 && r1 <= rows);
        #[cfg(target_arch = "x86_64")]
        if let Some(xt) = xt {
            if self.wants_xt(w.dtype) {
                // SAFETY: Isa::Avx512 or Isa::Avx2 (wants_xt; see dot_row for the
                // features each implies); the caller's contract on y.
                let done = unsafe {
                    if self.isa == Isa::Avx512 {
                        avx512::matmat_t_rows(w.dtype, w.data, rows, cols, r0, r1, xt, t, y, ldy)
                    } else {
                        avx2::matmat_t_rows(w.dtype, w.data, rows, cols, r0, r1, xt, t, y, ldy)
                    }
                };
                if done {
                    return;
                }
            }
        }
        let _ = xt;
        #[cfg(target_arch = "x86_64")]
        if let Some((xu, xd)) = xq {
            if self.wants_u8_act(w.dtype) {
                // SAFETY: Isa::Avx512 (see dot_row); the caller's contract on y.
                let done = unsafe {
                    avx512::matmat_q_rows(
                        w.dtype,
                        w.data,
                        w.row_bytes(),
                        rows,
                        cols,
                        r0,
                        r1,
                        xu,
                        xd,
                        t,
                        y,
                        ldy,
                    )
                };
                if done {
                    return;
                }
            }
        }
        let _ = xq;
        if self.isa == Isa::Scalar || t < 3 {
            let mut buf = [0f32; 64];
            for tok in 0..t {
                let xt = &x[tok * cols..(tok + 1) * cols];
                let mut r = r0;
                while r < r1 {
                    let n = (r1 - r).min(64);
                    for (i, o) in buf[..n].iter_mut().enumerate() {
                        *o = w.dot_row(r + i, xt);
                    }
                    for (i, &v) in buf[..n].iter().enumerate() {
                        // SAFETY: the caller's contract (tok < t, r + i < r1).
                        unsafe { *y.add(tok * ldy + r + i) = v };
                    }
                    r += n;
                }
            }
            return;
        }
        // f32 weights are multiplied in place (no panel copy) when aligned.
        let direct: Option<&[f32]> = if w.dtype == DType::F32 {
            bytemuck::try_cast_slice(&w.data[..rows * cols * 4]).ok()
        } else {
            None
        };
        let mut panel = [0.0f32; GEMM_MC * GEMM_KC];
        let bl = w.dtype.block_len();
        let mut k0 = 0;
        while k0 < cols {
            let kc = (cols - k0).min(GEMM_KC);
            let mut rr = r0;
            while rr < r1 {
                let mc = (r1 - rr).min(GEMM_MC);
                if let Some(wf) = direct {
                    let ws = &wf[rr * cols + k0..];
                    // SAFETY: the caller's contract covers rows rr..rr + mc < r1.
                    unsafe { self.panel_times(ws, cols, mc, kc, x, cols, k0, t, y, ldy, rr) };
                    rr += mc;
                    continue;
                }
                for i in 0..mc {
                    let row = w.row(rr + i);
                    let bb = w.dtype.block_bytes();
                    let bytes = &row[k0 / bl * bb..(k0 + kc) / bl * bb];
                    self.dequant(w.dtype, bytes, &mut panel[i * kc..(i + 1) * kc]);
                }
                // SAFETY: the caller's contract covers rows rr..rr + mc < r1.
                unsafe {
                    self.panel_times(&panel[..mc * kc], kc, mc, kc, x, cols, k0, t, y, ldy, rr)
                };
                rr += mc;
            }
            k0 += kc;
        }
    }

    /// The scan of a block ([`Kernels::ssm_scan`]) restricted to channels `e0..e1`:
    /// `state` holds those channels' (e1 - e0) x N state rows and `y[tt * E + e]` is
    /// written for every token `tt < p.t` and channel `e0 <= e < e1`.
    ///
    /// # Safety
    /// `y` must be valid for writes at those indices and no other thread may access them
    /// during the call.
    pub unsafe fn ssm_scan_rows(
        &self,
        p: &SsmScan<'_>,
        e0: usize,
        e1: usize,
        state: &mut [f32],
        y: *mut f32,
    ) {
        let e_len = p.d.len();
        let n = p.a.len() / e_len.max(1);
        assert!(e0 <= e1 && e1 <= e_len && state.len() >= (e1 - e0) * n);
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 && n == 16 {
            // SAFETY: see dot_row; the caller's contract on y.
            unsafe { avx512::ssm_scan_n16(p, e0, e1, state, y) };
            return;
        }
        for tt in 0..p.t {
            // SAFETY: the caller's contract: y[tt * E + e0..tt * E + e1] is ours.
            let yy = unsafe { core::slice::from_raw_parts_mut(y.add(tt * e_len + e0), e1 - e0) };
            self.ssm_step(&p.step(tt, e0, e1), &mut state[..(e1 - e0) * n], yy);
        }
    }

    /// Dequantize raw `dtype` bytes into `out` (out.len() elements).
    pub fn dequant(&self, dtype: DType, bytes: &[u8], out: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => {
                // SAFETY: both ISAs imply AVX2 + FMA + F16C (see dot_row).
                unsafe { avx2::dequant(dtype, bytes, out) }
            }
            _ => row_to_f32(dtype, bytes, out),
        }
    }

    /// y[tok * ldy + r0 + i] (+)= panel[i] . x[tok][k0..k0+kc] for every token, where
    /// panel row i starts at `panel[i * ps]`.
    ///
    /// # Safety
    /// `y` valid for writes at those indices (i < mc, tok < t), accessed by no one else.
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel_times(
        &self,
        panel: &[f32],
        ps: usize,
        mc: usize,
        kc: usize,
        x: &[f32],
        cols: usize,
        k0: usize,
        t: usize,
        y: *mut f32,
        ldy: usize,
        r0: usize,
    ) {
        let first = k0 == 0;
        let put = |tok: usize, r: usize, v: f32| {
            // SAFETY: the function's contract (tok < t, r < mc).
            let o = unsafe { &mut *y.add(tok * ldy + r0 + r) };
            if first { *o = v } else { *o += v }
        };
        let mut t0 = 0;
        while t0 < t {
            #[allow(unused_mut)] // only x86_64 has the tiles that advance it
            let mut r = 0;
            // AVX-512 has the registers for 6 tokens a tile (24 accumulators).
            #[cfg(target_arch = "x86_64")]
            if self.isa == Isa::Avx512 && t - t0 >= 6 {
                while r + 4 <= mc {
                    let xs = &x[t0 * cols + k0..];
                    let ws = &panel[r * ps..];
                    // SAFETY: see dot_row.
                    let o = unsafe { avx512::tile_4xn::<6>(ws, ps, xs, cols, kc) };
                    for (tt, row) in o.iter().enumerate() {
                        for (rr, &v) in row.iter().enumerate() {
                            put(t0 + tt, r + rr, v);
                        }
                    }
                    r += 4;
                }
                for rr in r..mc {
                    let wrow = &panel[rr * ps..rr * ps + kc];
                    for tt in 0..6 {
                        let xr = &x[(t0 + tt) * cols + k0..(t0 + tt) * cols + k0 + kc];
                        let v = self.dot_row(DType::F32, bytemuck::cast_slice(wrow), xr, &[]);
                        put(t0 + tt, rr, v);
                    }
                }
                t0 += 6;
                continue;
            }
            let nt = (t - t0).min(3);
            #[cfg(target_arch = "x86_64")]
            if nt == 3 {
                while r + 4 <= mc {
                    let xs = &x[t0 * cols + k0..];
                    let ws = &panel[r * ps..];
                    let o = match self.isa {
                        Isa::Avx512 => {
                            // SAFETY: Avx512 implies AVX2 + FMA + F16C (see dot_row).
                            unsafe { avx512::tile_4xn::<3>(ws, ps, xs, cols, kc) }
                        }
                        _ => {
                            // SAFETY: the only other SIMD ISA here is Avx2 (matmat
                            // returned early for Scalar; Neon is not x86_64).
                            unsafe { avx2::tile_4x3(ws, ps, xs, cols, kc) }
                        }
                    };
                    for (tt, row) in o.iter().enumerate() {
                        for (rr, &v) in row.iter().enumerate() {
                            put(t0 + tt, r + rr, v);
                        }
                    }
                    r += 4;
                }
            }
            for rr in r..mc {
                let wrow = &panel[rr * ps..rr * ps + kc];
                for tt in 0..nt {
                    let xr = &x[(t0 + tt) * cols + k0..(t0 + tt) * cols + k0 + kc];
                    let v = self.dot_row(DType::F32, bytemuck::cast_slice(wrow), xr, &[]);
                    put(t0 + tt, rr, v);
                }
            }
            t0 += nt;
        }
    }

    /// Mat-vec with f32 activations for every type (quantizes on the stack when needed).
    fn matvec_f32(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
        if !self.wants_act(w.dtype) {
            self.matvec_rows(w, 0, x, &[], y);
            return;
        }
        // Column chunks of at most ACT_CHUNK_BLOCKS blocks, quantized on the stack.
        let mut buf = [Q8Act::ZERO; ACT_CHUNK_BLOCKS];
        let bb = w.dtype.block_bytes();
        let nb = w.cols / QK;
        let mut b0 = 0;
        while b0 < nb {
            let m = (nb - b0).min(ACT_CHUNK_BLOCKS);
            act::quantize_row(&x[b0 * QK..(b0 + m) * QK], &mut buf[..m]);
            if m == nb {
                self.matvec_rows(w, 0, x, &buf[..m], &mut y[..w.rows]);
                return;
            }
            for (r, out) in y.iter_mut().enumerate().take(w.rows) {
                let row = &w.row(r)[b0 * bb..(b0 + m) * bb];
                let v = self.dot_row(w.dtype, row, &[], &buf[..m]);
                if b0 == 0 { *out = v } else { *out += v }
            }
            b0 += m;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn avx2_dot_row(dtype: DType, row: &[u8], x: &[f32], xq: &[Q8Act]) -> f32 {
    match dtype {
        DType::F32 => avx2::dot_f32(row, x),
        DType::F16 => avx2::dot_f16(row, x),
        DType::BF16 => avx2::dot_bf16(row, x),
        DType::Q8_0 => avx2::dot_q8_0(row, xq),
        DType::Q4_0 => avx2::dot_q4_0(row, xq),
    }
}

impl Kernels for Simd {
    fn matvec(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
        self.matvec_f32(w, x, y)
    }

    fn softplus_bias(&self, delta: &mut [f32], bias: &[f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => {
                // SAFETY: both ISAs imply AVX2 + FMA + F16C (see dot_row).
                unsafe { avx2::softplus_bias(delta, bias) }
            }
            _ => scalar_softplus_bias(delta, bias),
        }
    }

    fn ssm_step(&self, p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if p.b.len() == 16 => {
                // SAFETY: see dot_row.
                unsafe { avx512::ssm_step_n16(p, state, y) }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => {
                // SAFETY: both ISAs imply AVX2 + FMA + F16C (see dot_row).
                unsafe { avx2::ssm_step(p, state, y) }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => {
                // SAFETY: NEON is part of every aarch64 CPU (the target's baseline).
                unsafe { neon::ssm_step(p, state, y) }
            }
            _ => scalar_ssm_step(p, state, y),
        }
    }

    fn conv_step(
        &self,
        window: &mut [f32],
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        crate::step::conv_step_linear(window, x, w, bias, k, out);
        self.silu_inplace(&mut out[..x.len()]);
    }

    fn matmat(&self, w: &WeightMatrix<'_>, x: &[f32], t: usize, y: &mut [f32]) {
        Simd::matmat(self, w, x, t, y)
    }

    fn ssm_scan(&self, p: &SsmScan<'_>, state: &mut [f32], y: &mut [f32]) {
        let e = p.d.len();
        assert!(y.len() >= p.t * e);
        // SAFETY: y holds t x E floats (asserted) and is borrowed mutably.
        unsafe { self.ssm_scan_rows(p, 0, e, state, y.as_mut_ptr()) }
    }
}
