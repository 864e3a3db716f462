//! The projections of the model through cuBLAS (`cublasGemmEx`), in the
//! precision the caller picks. cuBLAS is column-major; our matrices are
//! row-major, so `Y (M, N) = X (M, K) · W (N, K)^T` is computed as the
//! column-major `Y^T = op_T(W) · X^T`, with every leading dimension a row stride.

use std::ffi::c_void;

use std::sync::Arc;

use cudarc::cublas::{CudaBlas, result, sys};
use cudarc::driver::CudaStream;

use crate::context::{GpuContext, guard};
use crate::error::GpuError;
use crate::loader;

/// The precision of the model's matrix products. Accumulation is f32 in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmPrecision {
    /// f32 weights and inputs, f32 arithmetic (exact; the reference mode).
    F32,
    /// f32 weights and inputs, TF32 tensor cores (10-bit mantissa products).
    Tf32,
    /// f16 weights and inputs, f32 accumulation; activations between the
    /// products stay f32 (the scan and conv take f32 or bf16).
    F16,
    /// bf16 weights, inputs and activations, f32 accumulation.
    Bf16,
}

impl GemmPrecision {
    /// Parses `f32`, `tf32`, `f16` or `bf16`.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "f32" => Self::F32,
            "tf32" => Self::Tf32,
            "f16" => Self::F16,
            "bf16" => Self::Bf16,
            _ => return None,
        })
    }

    /// The lower-case name (`f32`, `tf32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Tf32 => "tf32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// The element type of the weights and GEMM inputs.
    pub(crate) fn input_type(self) -> DataType {
        match self {
            Self::F32 | Self::Tf32 => DataType::F32,
            Self::F16 => DataType::F16,
            Self::Bf16 => DataType::Bf16,
        }
    }

    fn compute(self) -> sys::cublasComputeType_t {
        match self {
            Self::Tf32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            // The handle keeps cuBLAS's default math mode, so 32F is exact
            // f32 (no TF32) unless NVIDIA_TF32_OVERRIDE=1 is set.
            Self::F32 | Self::F16 | Self::Bf16 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }
}

/// Element types of GEMM operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    F32,
    F16,
    Bf16,
}

impl DataType {
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }

    fn cuda(self) -> sys::cudaDataType {
        match self {
            Self::F32 => sys::cudaDataType::CUDA_R_32F,
            Self::F16 => sys::cudaDataType::CUDA_R_16F,
            Self::Bf16 => sys::cudaDataType::CUDA_R_16BF,
        }
    }
}

/// One operand: device address, element type, row stride in elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand {
    pub ptr: u64,
    pub dtype: DataType,
    pub ld: usize,
}

/// A cuBLAS handle on the context's stream.
pub(crate) struct Blas {
    /// Always `Some` until dropped (destroyed under the device gate).
    inner: Option<CudaBlas>,
    stream: Arc<CudaStream>,
}

impl Drop for Blas {
    fn drop(&mut self) {
        // cublasDestroy synchronizes the device: never during another
        // thread's graph capture (see `device_gate`).
        let _gate = crate::context::device_gate();
        drop(self.inner.take());
    }
}

fn to_c(what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::invalid(format!("GEMM {what} = {v} is too large")))
}

impl Blas {
    /// Loads cuBLAS (a clean [`crate::NoGpu`] when it is missing) and binds a
    /// handle to `ctx`'s stream.
    pub(crate) fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        loader::cublas_available()?;
        let _gate = crate::context::device_gate();
        guard("cublasCreate", || {
            let inner = CudaBlas::new(ctx.stream().clone())
                .map_err(|e| GpuError::driver("cublasCreate", e))?;
            Ok(Self {
                inner: Some(inner),
                stream: ctx.stream().clone(),
            })
        })
    }

    /// Queues `y (m, n) = x (m, k) · w (n, k)^T + beta * y` (row-major, row
    /// strides in the operands; `w` contiguous, its `ld` = k).
    ///
    /// # Safety
    /// Every operand must address enough device memory for its shape and
    /// stride, and stay allocated until the stream has run the product.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn linear(
        &self,
        precision: GemmPrecision,
        m: usize,
        n: usize,
        k: usize,
        x: Operand,
        w: Operand,
        y: Operand,
        beta: f32,
    ) -> Result<(), GpuError> {
        let alpha = 1.0f32;
        let (mc, nc, kc) = (to_c("m", m)?, to_c("n", n)?, to_c("k", k)?);
        let (ldx, ldw, ldy) = (to_c("ldx", x.ld)?, to_c("ldw", w.ld)?, to_c("ldy", y.ld)?);
        let Some(blas) = &self.inner else {
            return Err(GpuError::invalid("cuBLAS handle already destroyed"));
        };
        guard("cublasGemmEx", || {
            // cuBLAS works in the calling thread's current context: make it ours.
            self.stream
                .context()
                .bind_to_thread()
                .map_err(|e| GpuError::driver("cuCtxSetCurrent", e))?;
            // SAFETY: the handle is live; the caller guarantees the operands;
            // alpha and beta are host f32, as COMPUTE_32F expects.
            unsafe {
                result::gemm_ex(
                    *blas.handle(),
                    sys::cublasOperation_t::CUBLAS_OP_T,
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    nc,
                    mc,
                    kc,
                    (&alpha as *const f32).cast::<c_void>(),
                    w.ptr as *const c_void,
                    w.dtype.cuda(),
                    ldw,
                    x.ptr as *const c_void,
                    x.dtype.cuda(),
                    ldx,
                    (&beta as *const f32).cast::<c_void>(),
                    y.ptr as *mut c_void,
                    y.dtype.cuda(),
                    ldy,
                    precision.compute(),
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| GpuError::driver("cublasGemmEx", e))
        })
    }
}
