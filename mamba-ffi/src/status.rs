//! Status codes: `MAMBA_OK` (0) or a negative `MAMBA_ERR_*`. A number, once given a
//! meaning, is never reused for another; new failures get new numbers.

use std::ffi::c_char;

/// The result of every fallible function: `MAMBA_OK` (0) or one of the negative
/// `MAMBA_ERR_*` constants. On failure `mamba_last_error()` holds a message.
pub type mamba_status = i32;

/// Success.
pub const MAMBA_OK: mamba_status = 0;
/// A NULL pointer, a wrong length, a bad parameter value or a misuse of the API.
pub const MAMBA_ERR_INVALID_ARG: mamba_status = -1;
/// The operating system failed to read a file (missing, permissions, ...).
pub const MAMBA_ERR_IO: mamba_status = -2;
/// The model bytes are not a valid mamba GGUF (or HF folder): truncated, wrong
/// architecture, a missing or misshapen tensor, ...
pub const MAMBA_ERR_FORMAT: mamba_status = -3;
/// An output buffer is smaller than the function needs; the message says how large.
pub const MAMBA_ERR_BUFFER_TOO_SMALL: mamba_status = -4;
/// A token id outside `[0, mamba_model_vocab_size())`.
pub const MAMBA_ERR_TOKEN_OUT_OF_RANGE: mamba_status = -5;
/// A state blob saved from a model with another shape or other weights.
pub const MAMBA_ERR_STATE_MISMATCH: mamba_status = -6;
/// The token callback of `mamba_session_generate` returned nonzero.
pub const MAMBA_ERR_ABORTED: mamba_status = -7;
/// An internal error (a Rust panic) was caught at the boundary. The object it
/// happened on should be freed; it is a bug worth reporting.
pub const MAMBA_ERR_PANIC: mamba_status = -8;
/// A feature this build or this model does not provide: `MAMBA_BACKEND_CUDA` in a
/// library built without CUDA support, a model the GPU kernels cannot run (e.g.
/// Falcon-Mamba's dt/B/C norms), a big-endian host.
pub const MAMBA_ERR_UNSUPPORTED: mamba_status = -9;
/// A state blob that is not one: bad magic, unknown version, wrong length, or
/// values that are NaN or infinite.
pub const MAMBA_ERR_BAD_STATE: mamba_status = -10;
/// `MAMBA_BACKEND_CUDA` and no usable GPU: no CUDA driver, NVRTC or cuBLAS library
/// found, no CUDA device, or `gpu_device` past the last one. Falling back to
/// `MAMBA_BACKEND_CPU` works.
pub const MAMBA_ERR_NO_DEVICE: mamba_status = -11;
/// The GPU failed after the model was loaded on it, or while loading it: out of
/// device memory, a failed kernel launch, NVRTC refusing a kernel. The message
/// names the CUDA call.
pub const MAMBA_ERR_DEVICE: mamba_status = -12;

/// A static, NUL-terminated English name of a status code ("unknown status" for a
/// number this library does not know).
///
/// Ownership: the string is static; do not free it. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mamba_status_str(st: mamba_status) -> *const c_char {
    // Cannot panic; the guard keeps the rule that every export has one.
    crate::boundary::guard_value("mamba_status_str", c"".as_ptr(), || Ok(status_name(st)))
}

fn status_name(st: mamba_status) -> *const c_char {
    let s: &'static std::ffi::CStr = match st {
        MAMBA_OK => c"ok",
        MAMBA_ERR_INVALID_ARG => c"invalid argument",
        MAMBA_ERR_IO => c"i/o error",
        MAMBA_ERR_FORMAT => c"invalid model format",
        MAMBA_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        MAMBA_ERR_TOKEN_OUT_OF_RANGE => c"token id out of range",
        MAMBA_ERR_STATE_MISMATCH => c"state belongs to another model",
        MAMBA_ERR_ABORTED => c"aborted by callback",
        MAMBA_ERR_PANIC => c"internal error (panic)",
        MAMBA_ERR_UNSUPPORTED => c"unsupported",
        MAMBA_ERR_BAD_STATE => c"invalid state blob",
        MAMBA_ERR_NO_DEVICE => c"no usable GPU",
        MAMBA_ERR_DEVICE => c"GPU error",
        _ => c"unknown status",
    };
    s.as_ptr()
}
