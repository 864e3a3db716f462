//! CPU kernels for the std side: the SIMD path chosen at run time (or forced with
//! `MAMBA_KERNELS=scalar|avx2|avx512|neon` or [`CpuKernels::with_isa`]) and a persistent
//! thread pool over matrix rows (mat-vec) and tokens (prefill mat-mat).

pub mod pool;
pub mod random_model;

use mamba_core::kernels::{Kernels, SsmScan, SsmStep};
use mamba_core::simd::act::Q8Act;
use mamba_core::{Isa, Simd, WeightMatrix};
use pool::Pool;
use std::sync::{Mutex, TryLockError};

/// Environment variable that forces a kernel path.
pub const KERNELS_ENV: &str = "MAMBA_KERNELS";

/// Largest activation vector quantized on the stack for a threaded Q8_0/Q4_0 mat-vec
/// (8192 columns; every released model's E is at most 5120). Longer rows run the
/// single-threaded column-chunked path.
const MAX_ACT_BLOCKS: usize = 256;

/// Mat-vecs smaller than this many weights are not worth waking the workers for.
const MIN_PARALLEL_WEIGHTS: usize = 1 << 15;

/// True when this CPU can run `isa`'s kernels.
pub fn isa_available(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            isa_available(Isa::Avx2)
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni")
        }
        // NEON is part of every aarch64 CPU (its kernels are the scalar ones for now).
        Isa::Neon => cfg!(target_arch = "aarch64"),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The best path this CPU runs.
pub fn detect_isa() -> Isa {
    [Isa::Avx512, Isa::Avx2, Isa::NeonDot, Isa::Neon]
        .into_iter()
        .find(|&i| isa_available(i))
        .unwrap_or(Isa::Scalar)
}

/// A core kernel set for `isa`, or an error naming what is missing.
pub fn simd_for(isa: Isa) -> crate::Result<Simd> {
    if !isa_available(isa) {
        return Err(crate::Error::Invalid(format!(
            "kernel path '{}' is not supported by this CPU (it runs: {})",
            isa.name(),
            [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::NeonDot]
                .into_iter()
                .filter(|&i| isa_available(i))
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // SAFETY: isa_available just checked the CPU features the path needs.
    Ok(unsafe { Simd::new_unchecked(isa) })
}

/// The CPU kernels used by sessions, the CLI and the C API. Shareable between threads
/// (a second thread calling while the pool is busy runs its call single-threaded).
#[derive(Debug)]
pub struct CpuKernels {
    simd: Simd,
    pool: Pool,
    /// The int8 activations of a prefill product (bytes, block scales), kept between
    /// calls so prefill does not allocate per projection.
    qbuf: Mutex<(Vec<u8>, Vec<f32>, Vec<f32>)>,
}

impl Default for CpuKernels {
    fn default() -> Self {
        CpuKernels::new(0)
    }
}

impl CpuKernels {
    /// Kernels on `threads` threads (0 = every core), on the path `MAMBA_KERNELS` names,
    /// else the best one this CPU runs. An unknown or unsupported `MAMBA_KERNELS` is
    /// reported on stderr and ignored; use [`CpuKernels::from_env`] to get the error.
    pub fn new(threads: usize) -> Self {
        match Self::from_env(threads) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("warning: {e}; using {}", detect_isa().name());
                Self::build(threads, simd_for(detect_isa()).unwrap_or(Simd::SCALAR))
            }
        }
    }

    /// Like [`CpuKernels::new`] but an unusable `MAMBA_KERNELS` is an error.
    pub fn from_env(threads: usize) -> crate::Result<Self> {
        let isa = match std::env::var(KERNELS_ENV) {
            Ok(v) if !v.is_empty() => Isa::from_name(&v.to_ascii_lowercase()).ok_or_else(|| {
                crate::Error::Invalid(format!(
                    "{KERNELS_ENV}='{v}' is not one of scalar, avx2, avx512, neon, neon-dot"
                ))
            })?,
            _ => detect_isa(),
        };
        Self::with_isa(threads, isa)
    }

    /// Kernels on `threads` threads (0 = every core) on the path `isa`; an error if
    /// this CPU cannot run it.
    pub fn with_isa(threads: usize, isa: Isa) -> crate::Result<Self> {
        Ok(Self::build(threads, simd_for(isa)?))
    }

    fn build(threads: usize, simd: Simd) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        CpuKernels {
            simd,
            pool: Pool::new(threads),
            qbuf: Mutex::new((Vec::new(), Vec::new(), Vec::new())),
        }
    }

    /// Threads a kernel call is split over (the caller's included).
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The SIMD path in use.
    pub fn isa(&self) -> Isa {
        self.simd.isa()
    }

    /// The single-threaded core kernel set in use.
    pub fn simd(&self) -> Simd {
        self.simd
    }
}

/// A raw output pointer shared by the parts of one pool job, each writing its own
/// disjoint range.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: used only to hand disjoint sub-ranges of one `&mut [f32]` to the parts of a
// job, which all finish before that borrow ends.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the Sync wrapper, not the field).
    fn ptr(self) -> *mut f32 {
        self.0
    }

    /// # Safety
    /// `a..b` must lie inside the buffer and no other live slice may overlap it.
    unsafe fn range<'a>(self, a: usize, b: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(a), b - a) }
    }
}

/// A raw byte pointer shared like [`OutPtr`].
#[derive(Clone, Copy)]
struct BytePtr(*mut u8);
// SAFETY: as OutPtr: disjoint sub-ranges of one `&mut [u8]` for the parts of one job.
unsafe impl Sync for BytePtr {}

impl BytePtr {
    /// # Safety
    /// As [`OutPtr::range`].
    unsafe fn range<'a>(self, a: usize, b: usize) -> &'a mut [u8] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(a), b - a) }
    }
}

impl CpuKernels {
    /// `f(i)` for i in 0..parts, on the pool when there is more than one of each.
    fn run_parts(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.pool.threads() == 1 || parts <= 1 {
            (0..parts).for_each(f);
        } else {
            self.pool.run(parts, f);
        }
    }
}

impl Kernels for CpuKernels {
    fn matvec(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
        let threads = self.pool.threads();
        let nb = w.cols / mamba_core::quant::QK;
        let wants = self.simd.wants_act(w.dtype);
        if threads == 1 || w.rows * w.cols < MIN_PARALLEL_WEIGHTS || (wants && nb > MAX_ACT_BLOCKS)
        {
            self.simd.matvec(w, x, y);
            return;
        }
        let mut buf = [Q8Act::ZERO; MAX_ACT_BLOCKS];
        let xq: &[Q8Act] = if wants {
            self.simd.quantize_act(x, &mut buf[..nb]);
            &buf[..nb]
        } else {
            &[]
        };
        let rows = w.rows.min(y.len());
        // Parts of a multiple of 16 rows (parts never share a cache line of y); a few
        // per thread so a late worker's share is picked up by the others.
        let per = rows.div_ceil(2 * threads).div_ceil(16) * 16;
        let n_parts = rows.div_ceil(per);
        let out = OutPtr(y.as_mut_ptr());
        let simd = self.simd;
        self.pool.run(n_parts, &|i| {
            let a = i * per;
            let b = ((i + 1) * per).min(rows);
            // SAFETY: parts get disjoint ranges a..b of y (rows <= y.len()), and
            // run() returns only when every part is done.
            let ys = unsafe { out.range(a, b) };
            simd.matvec_rows(w, a, x, xq, ys);
        });
    }

    fn softplus_bias(&self, delta: &mut [f32], bias: &[f32]) {
        self.simd.softplus_bias(delta, bias)
    }

    fn ssm_step(&self, p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
        let threads = self.pool.threads();
        let (e_len, n) = (y.len(), p.b.len());
        // Channels are independent: split them (multiples of 16) when there are enough.
        if threads == 1 || e_len < 256 || state.len() < e_len * n {
            self.simd.ssm_step(p, state, y);
            return;
        }
        let per = e_len.div_ceil(threads).div_ceil(16) * 16;
        let parts = e_len.div_ceil(per);
        let (st, yo) = (OutPtr(state.as_mut_ptr()), OutPtr(y.as_mut_ptr()));
        let simd = self.simd;
        self.pool.run(parts, &|i| {
            let (a, b) = (i * per, ((i + 1) * per).min(e_len));
            let q = SsmStep {
                a: &p.a[a * n..b * n],
                d: &p.d[a..b],
                delta: &p.delta[a..b],
                b: p.b,
                c: p.c,
                xc: &p.xc[a..b],
                z: &p.z[a..b],
            };
            // SAFETY: parts get disjoint channel ranges a..b: state rows a*n..b*n
            // (state.len() >= e_len * n, checked) and y[a..b]; run() returns when all
            // parts are done.
            let (s, yy) = unsafe { (st.range(a * n, b * n), yo.range(a, b)) };
            simd.ssm_step(&q, s, yy);
        });
    }

    fn ssm_scan(&self, p: &SsmScan<'_>, state: &mut [f32], y: &mut [f32]) {
        let threads = self.pool.threads();
        let e_len = p.d.len();
        let n = p.a.len() / e_len.max(1);
        assert!(state.len() >= e_len * n && y.len() >= p.t * e_len);
        if threads == 1 || e_len < 256 {
            // SAFETY: y holds t x E floats (asserted) and is borrowed mutably.
            unsafe { self.simd.ssm_scan_rows(p, 0, e_len, state, y.as_mut_ptr()) };
            return;
        }
        // One job for the whole block: each part runs its channels through every token.
        let per = e_len.div_ceil(threads).div_ceil(16) * 16;
        let parts = e_len.div_ceil(per);
        let (st, yo) = (OutPtr(state.as_mut_ptr()), OutPtr(y.as_mut_ptr()));
        let simd = self.simd;
        self.pool.run(parts, &|i| {
            let (a, b) = (i * per, ((i + 1) * per).min(e_len));
            // SAFETY: parts get disjoint channel ranges a..b: state rows a*n..b*n
            // (state.len() >= e_len * n, checked) and, for each token, y[tt*E + a..tt*E + b]
            // (y.len() >= t * E, checked); run() returns when all parts are done.
            let s = unsafe { st.range(a * n, b * n) };
            // SAFETY: see above.
            unsafe { simd.ssm_scan_rows(p, a, b, s, yo.ptr()) };
        });
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
        self.simd.conv_step(window, x, w, bias, k, out)
    }

    fn matmat(&self, w: &WeightMatrix<'_>, x: &[f32], t: usize, y: &mut [f32]) {
        let threads = self.pool.threads();
        let (rows, cols) = (w.rows, w.cols);
        assert!(y.len() >= t * rows && x.len() >= t * cols);
        // A token or two: the mat-vec (rows split, int8 activations) per token.
        if t < 3 {
            for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)).take(t) {
                self.matvec(w, xt, yt);
            }
            return;
        }
        // Quantized weights on AVX-512 VNNI: the activations to int8 once (the threads
        // share them), then an int8 product.
        let int8 = self.simd.wants_u8_act(w.dtype) && cols % mamba_core::quant::QK == 0;
        let mut guard;
        let mut local = (Vec::new(), Vec::new(), Vec::new());
        let bufs: &mut (Vec<u8>, Vec<f32>, Vec<f32>) = match self.qbuf.try_lock() {
            Ok(g) => {
                guard = g;
                &mut guard
            }
            Err(TryLockError::Poisoned(p)) => {
                guard = p.into_inner();
                &mut guard
            }
            Err(TryLockError::WouldBlock) => &mut local,
        };
        let xq = if int8 {
            let nb = cols / mamba_core::quant::QK;
            if bufs.0.len() < t * cols {
                bufs.0.resize(t * cols, 0);
            }
            if bufs.1.len() < t * nb {
                bufs.1.resize(t * nb, 0.0);
            }
            let (xu, xd) = (&mut bufs.0[..t * cols], &mut bufs.1[..t * nb]);
            // Tokens split across threads, 32 at a time.
            let (pu, pd) = (BytePtr(xu.as_mut_ptr()), OutPtr(xd.as_mut_ptr()));
            let simd = self.simd;
            self.run_parts(t.div_ceil(32), &|i| {
                let (a, b) = (i * 32, ((i + 1) * 32).min(t));
                // SAFETY: parts get disjoint token rows a..b of xu (cols bytes each) and
                // xd (nb each), inside the t-row buffers; run returns when all are done.
                let (u, d) = unsafe { (pu.range(a * cols, b * cols), pd.range(a * nb, b * nb)) };
                simd.quantize_u8(&x[a * cols..b * cols], u, d);
            });
            Some((&*xu, &*xd))
        } else {
            None
        };
        // F32 / F16 / BF16 on AVX-512: the activations token-major once (tiles of 32
        // tokens split across threads).
        let xt = if self.simd.wants_xt(w.dtype) {
            let n = self.simd.xt_len(t, cols);
            if bufs.2.len() < n {
                bufs.2.resize(n, 0.0);
            }
            let slab = Simd::XT_TILE * cols;
            let px = OutPtr(bufs.2.as_mut_ptr());
            let simd = self.simd;
            self.run_parts(n / slab, &|i| {
                // SAFETY: tile i's slab i*slab..(i+1)*slab lies in the n-float buffer and
                // is written by this part only; run returns when all are done.
                let xs = unsafe { px.range(i * slab, (i + 1) * slab) };
                simd.pack_xt(x, t, cols, i, xs);
            });
            Some(&bufs.2[..n])
        } else {
            None
        };
        // Rows split across threads in multiples of 32 (the int8 panel; cache lines of
        // y never shared), each part multiplying its rows by every token: each weight
        // is read and dequantized once.
        let per = rows.div_ceil(2 * threads).div_ceil(32) * 32;
        let n_parts = rows.div_ceil(per);
        let out = OutPtr(y.as_mut_ptr());
        let simd = self.simd;
        let job = |i: usize| {
            let a = i * per;
            let b = ((i + 1) * per).min(rows);
            // SAFETY: parts write disjoint row ranges a..b of every token's row of y
            // (t * rows <= y.len(), asserted); run() returns when all are done.
            unsafe { simd.matmat_rows(w, a, b, x, xq, xt, t, out.ptr(), rows) };
        };
        self.run_parts(n_parts, &job);
    }

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
        let e_len = out.len().checked_div(t).unwrap_or(0);
        assert!(k >= 1 && w.len() >= e_len * k && window.len() >= (k - 1) * e_len);
        assert!(t == 0 || x.len() >= (t - 1) * ldx + e_len);
        assert!(bias.is_empty() || bias.len() >= e_len);
        // The taps transposed (tap j's weights adjacent over channels), so each channel
        // loop vectorizes; the sums keep conv_step's order (bias, then taps oldest first).
        let mut wt = vec![0f32; k * e_len];
        for e in 0..e_len {
            for j in 0..k {
                wt[j * e_len + e] = w[e * k + j];
            }
        }
        let per = e_len.div_ceil(2 * self.threads()).div_ceil(16) * 16;
        let n_parts = e_len.div_ceil(per.max(1));
        let (po, pw) = (OutPtr(out.as_mut_ptr()), OutPtr(window.as_mut_ptr()));
        let simd = self.simd;
        let wt = &wt;
        self.run_parts(n_parts, &|i| {
            let (a, b) = (i * per, ((i + 1) * per).min(e_len));
            for tt in 0..t {
                // SAFETY: parts own the disjoint channels a..b of every token's row of
                // out and of every window row (lengths asserted); the window rows this
                // token reads are not written until after the token loop.
                let o = unsafe { po.range(tt * e_len + a, tt * e_len + b) };
                let src = |j: usize| -> &[f32] {
                    let p = tt + j; // position in (window rows, then block tokens)
                    if p >= k - 1 {
                        &x[(p - (k - 1)) * ldx + a..(p - (k - 1)) * ldx + b]
                    } else {
                        // SAFETY: see above (read only).
                        unsafe { &*pw.range(p * e_len + a, p * e_len + b) }
                    }
                };
                if bias.is_empty() {
                    o.fill(0.0);
                } else {
                    o.copy_from_slice(&bias[a..b]);
                }
                for j in 0..k {
                    let wj = &wt[j * e_len + a..j * e_len + b];
                    for ((ov, &s), &wv) in o.iter_mut().zip(src(j)).zip(wj) {
                        *ov += s * wv;
                    }
                }
                simd.silu_inplace(o);
            }
            // The window after the block: the last k - 1 inputs (rows ascending, so an
            // old row is read before it is overwritten).
            for j in 0..k - 1 {
                let p = t + j;
                // SAFETY: channels a..b of window row j are this part's.
                let dst = unsafe { pw.range(j * e_len + a, j * e_len + b) };
                if p >= k - 1 {
                    dst.copy_from_slice(&x[(p - (k - 1)) * ldx + a..(p - (k - 1)) * ldx + b]);
                } else {
                    // SAFETY: row p > j of the window, channels a..b (this part's).
                    let s = unsafe { pw.range(p * e_len + a, p * e_len + b) };
                    dst.copy_from_slice(s);
                }
            }
        });
    }

    fn softplus_bias_block(&self, delta: &mut [f32], bias: &[f32]) {
        let e = bias.len();
        let rows = delta.len().checked_div(e).unwrap_or(0);
        let per = rows.div_ceil(2 * self.threads()).max(1);
        let po = OutPtr(delta.as_mut_ptr());
        let simd = self.simd;
        self.run_parts(rows.div_ceil(per), &|i| {
            let (a, b) = (i * per, ((i + 1) * per).min(rows));
            // SAFETY: parts own disjoint rows a..b of delta; run returns when all are done.
            let d = unsafe { po.range(a * e, b * e) };
            for row in d.chunks_exact_mut(e) {
                simd.softplus_bias(row, bias);
            }
        });
    }
}
