//! The crate's error type: no cudarc type crosses the public API.

use std::fmt;

/// Why no GPU can be used on this machine (no driver, no NVRTC, no device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoGpu {
    reason: String,
}

impl NoGpu {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason, in words ("libcuda not found", "no CUDA device", ...).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for NoGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no GPU: {}", self.reason)
    }
}

impl std::error::Error for NoGpu {}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuError {
    /// No usable GPU (see [`NoGpu::reason`]).
    NoGpu(NoGpu),
    /// A CUDA driver call failed; `what` names the call.
    Driver {
        /// The operation that failed.
        what: String,
        /// The driver's message.
        message: String,
    },
    /// NVRTC refused a kernel source.
    Compile {
        /// The kernel file, e.g. `selective_scan.cu`.
        kernel: String,
        /// The target architecture, e.g. `compute_90`.
        arch: String,
        /// NVRTC's log.
        log: String,
    },
    /// An argument is inconsistent (shape, stride, buffer too short, ...).
    InvalidArgument(String),
}

impl GpuError {
    pub(crate) fn driver(what: &str, err: impl fmt::Debug) -> Self {
        Self::Driver {
            what: what.to_string(),
            message: format!("{err:?}"),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoGpu(n) => n.fmt(f),
            Self::Driver { what, message } => write!(f, "CUDA driver error in {what}: {message}"),
            Self::Compile { kernel, arch, log } => {
                write!(f, "NVRTC could not compile {kernel} for {arch}:\n{log}")
            }
            Self::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
        }
    }
}

impl std::error::Error for GpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoGpu(n) => Some(n),
            _ => None,
        }
    }
}

impl From<NoGpu> for GpuError {
    fn from(n: NoGpu) -> Self {
        Self::NoGpu(n)
    }
}
