//! Shared by the GPU tests: the device (or a clean skip), random inputs, norms.
#![allow(dead_code)]

use std::sync::OnceLock;

use mamba_cuda::GpuContext;

/// Whether `MAMBA_REQUIRE_GPU=1`: then a missing GPU fails the test.
pub fn gpu_required() -> bool {
    std::env::var("MAMBA_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The shared GPU context, or `None` after printing why the test skips.
/// Panics when `MAMBA_REQUIRE_GPU=1` and there is no GPU.
pub fn gpu() -> Option<&'static GpuContext> {
    static GPU: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| match GpuContext::is_available() {
        Ok(()) => Ok(GpuContext::new(0).expect("a GPU is reported but cannot be opened")),
        Err(why) => Err(why.reason().to_string()),
    });
    match g {
        Ok(ctx) => Some(ctx),
        Err(why) => {
            assert!(
                !gpu_required(),
                "MAMBA_REQUIRE_GPU=1 but there is no GPU: {why}"
            );
            eprintln!("skipping: no GPU ({why})");
            None
        }
    }
}

/// splitmix64: small, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock (printed, so a failure can be replayed
    /// with `MAMBA_TEST_SEED`), mixed with `salt`.
    pub fn fresh(salt: u64) -> Self {
        let seed = std::env::var("MAMBA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("seed {seed} (salt {salt})");
        Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// ||got - want|| / ||want||, NaN (never passing) if `got` holds a NaN.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::NAN;
        }
        num += (g as f64 - w) * (g as f64 - w);
        den += w * w;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Whether `err` is a number at most `tol` (NaN fails).
pub fn within(err: f64, tol: f64) -> bool {
    err <= tol
}
