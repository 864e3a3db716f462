//! CPU kernels for the std side: SIMD chosen at run time and threads over matrix rows.
//! (First version: the scalar reference, single-threaded.)

use mamba_core::kernels::{Kernels, Scalar, SsmStep};
use mamba_core::WeightMatrix;

/// The CPU kernels used by sessions, the CLI and the C API.
#[derive(Debug, Default)]
pub struct CpuKernels {
    threads: usize,
}

impl CpuKernels {
    /// Kernels using `threads` workers (0 = all cores).
    pub fn new(threads: usize) -> Self {
        CpuKernels { threads }
    }
    /// Worker count requested.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Kernels for CpuKernels {
    fn matvec(&self, w: &WeightMatrix<'_>, x: &[f32], y: &mut [f32]) {
        Scalar.matvec(w, x, y)
    }
    fn ssm_step(&self, p: &SsmStep<'_>, state: &mut [f32], y: &mut [f32]) {
        Scalar.ssm_step(p, state, y)
    }
}
