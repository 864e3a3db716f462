//! SIMD kernels, chosen once: [`Simd`] holds an instruction set ([`Isa`]) that the CPU is
//! known to have and dispatches every kernel on it. Under std the caller detects features
//! at run time and builds a `Simd` with [`Simd::new_unchecked`]; without std,
//! [`Simd::from_target_features`] picks what the build's `target_feature`s allow.
//!
//! Every path is tested against the scalar reference ([`crate::kernels::Scalar`]).
//! The Q8_0/Q4_0 mat-vec of the SIMD paths quantizes the activations to int8 per block
//! of 32 ([`act::Q8Act`]) as ggml does; everything else is f32 arithmetic.

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

use crate::kernels::{Kernels, SsmStep, scalar_softplus_bias, scalar_ssm_step};
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
    /// aarch64 NEON (f32 arithmetic; int8 `dotprod` kernels not written yet).
    Neon,
}

impl Isa {
    /// Lower-case name (`MAMBA_KERNELS` values).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
    /// Parse a lower-case name.
    pub fn from_name(s: &str) -> Option<Isa> {
        Some(match s {
            "scalar" => Isa::Scalar,
            "avx2" => Isa::Avx2,
            "avx512" => Isa::Avx512,
            "neon" => Isa::Neon,
            _ => return None,
        })
    }
    /// Every path, best last.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];
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
        #[allow(unreachable_code)]
        Simd::SCALAR
    }

    /// A path for `isa` without checking the CPU.
    ///
    /// # Safety
    /// The CPU running the kernels must have the features `isa` names (see [`Isa`]);
    /// `Isa::Scalar` and `Isa::Neon` are always safe. On another architecture than the
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
        matches!(dtype, DType::Q8_0 | DType::Q4_0) && matches!(self.isa, Isa::Avx2 | Isa::Avx512)
    }

    /// Quantize activations for [`Simd::matvec_rows`] (x.len() a multiple of 32;
    /// out.len() == x.len() / 32).
    pub fn quantize_act(&self, x: &[f32], out: &mut [Q8Act]) {
        act::quantize_row(x, out)
    }

    /// Dot of one raw row with `x` (f32) or `xq` (int8 blocks, when [`Self::wants_act`]).
    #[inline]
    pub fn dot_row(&self, dtype: DType, row: &[u8], x: &[f32], xq: &[Q8Act]) -> f32 {
        let _ = xq; // only the x86 int8 paths read it
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
            Isa::Neon => {
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
        let mut panel = [0.0f32; GEMM_MC * GEMM_KC];
        let bl = w.dtype.block_len();
        let mut k0 = 0;
        while k0 < cols {
            let kc = (cols - k0).min(GEMM_KC);
            let mut r0 = 0;
            while r0 < rows {
                let mc = (rows - r0).min(GEMM_MC);
                for i in 0..mc {
                    let row = w.row(r0 + i);
                    let bb = w.dtype.block_bytes();
                    let bytes = &row[k0 / bl * bb..(k0 + kc) / bl * bb];
                    self.dequant(w.dtype, bytes, &mut panel[i * kc..(i + 1) * kc]);
                }
                self.panel_times(&panel[..mc * kc], mc, kc, x, cols, k0, t, y, rows, r0);
                r0 += mc;
            }
            k0 += kc;
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

    /// y[tok][r0 + i] (+)= panel[i] . x[tok][k0..k0+kc] for every token.
    #[allow(clippy::too_many_arguments)]
    fn panel_times(
        &self,
        panel: &[f32],
        mc: usize,
        kc: usize,
        x: &[f32],
        cols: usize,
        k0: usize,
        t: usize,
        y: &mut [f32],
        rows: usize,
        r0: usize,
    ) {
        let first = k0 == 0;
        let mut put = |tok: usize, r: usize, v: f32| {
            let o = &mut y[tok * rows + r0 + r];
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
                    let ws = &panel[r * kc..];
                    // SAFETY: see dot_row.
                    let o = unsafe { avx512::tile_4x6(ws, kc, xs, cols, kc) };
                    for (tt, row) in o.iter().enumerate() {
                        for (rr, &v) in row.iter().enumerate() {
                            put(t0 + tt, r + rr, v);
                        }
                    }
                    r += 4;
                }
                for rr in r..mc {
                    let wrow = &panel[rr * kc..(rr + 1) * kc];
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
                    let ws = &panel[r * kc..];
                    let o = match self.isa {
                        Isa::Avx512 => {
                            // SAFETY: Avx512 implies AVX2 + FMA + F16C (see dot_row).
                            unsafe { avx512::tile_4x3(ws, kc, xs, cols, kc) }
                        }
                        _ => {
                            // SAFETY: the only other SIMD ISA here is Avx2 (matmat
                            // returned early for Scalar; Neon is not x86_64).
                            unsafe { avx2::tile_4x3(ws, kc, xs, cols, kc) }
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
                let wrow = &panel[rr * kc..(rr + 1) * kc];
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
            Isa::Neon => {
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
}
