//! CPU kernels for the std side: the SIMD path chosen at run time (or forced with
//! `MAMBA_KERNELS=scalar|avx2|avx512|neon` or [`CpuKernels::with_isa`]) and a persistent
//! thread pool over matrix rows (mat-vec) and tokens (prefill mat-mat).

pub mod pool;
pub mod random_model;

use mamba_core::kernels::{Kernels, SsmScan, SsmStep};
use mamba_core::simd::act::Q8Act;
use mamba_core::{Isa, Simd, WeightMatrix};
use pool::Pool;

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
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The best path this CPU runs.
pub fn detect_isa() -> Isa {
    [Isa::Avx512, Isa::Avx2, Isa::Neon]
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
            [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
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
                    "{KERNELS_ENV}='{v}' is not one of scalar, avx2, avx512, neon"
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
    /// # Safety
    /// `a..b` must lie inside the buffer and no other live slice may overlap it.
    unsafe fn range<'a>(self, a: usize, b: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(a), b - a) }
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
        if threads == 1 || e_len < 256 || state.len() < e_len * n || y.len() < p.t * e_len {
            for (tt, yt) in y.chunks_exact_mut(e_len).enumerate().take(p.t) {
                self.simd.ssm_step(&p.step(tt, 0, e_len), state, yt);
            }
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
            for tt in 0..p.t {
                // SAFETY: see above.
                let yy = unsafe { yo.range(tt * e_len + a, tt * e_len + b) };
                simd.ssm_step(&p.step(tt, a, b), s, yy);
            }
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
        // Below 3 tokens a thread, split each token's rows instead.
        if threads == 1 || t < 3 * threads {
            if threads == 1 {
                self.simd.matmat(w, x, t, y);
            } else {
                for (xt, yt) in x
                    .chunks_exact(w.cols)
                    .zip(y.chunks_exact_mut(w.rows))
                    .take(t)
                {
                    self.matvec(w, xt, yt);
                }
            }
            return;
        }
        // Split tokens (multiples of 6, the widest tile); every part reads all weights.
        let per = t.div_ceil(threads).div_ceil(6) * 6;
        let n_parts = t.div_ceil(per);
        let out = OutPtr(y.as_mut_ptr());
        let (rows, cols, simd) = (w.rows, w.cols, self.simd);
        assert!(y.len() >= t * rows && x.len() >= t * cols);
        self.pool.run(n_parts, &|i| {
            let a = i * per;
            let b = ((i + 1) * per).min(t);
            // SAFETY: parts get disjoint token ranges a..b, rows a*rows..b*rows of y
            // (t * rows <= y.len(), asserted); run() returns when all are done.
            let ys = unsafe { out.range(a * rows, b * rows) };
            simd.matmat(w, &x[a * cols..b * cols], b - a, ys);
        });
    }
}
