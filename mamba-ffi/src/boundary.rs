//! What every export goes through: the panic guard, the thread-local last error,
//! the mapping of Rust errors to status codes, and the checks that turn C pointers
//! into references and slices.

use crate::status::*;
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// The message of the last failure on this thread (empty before any failure).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failure on its way to C: a status code and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// The status returned to C.
    pub status: mamba_status,
    /// The message stored for `mamba_last_error()`.
    pub msg: String,
}

impl FfiError {
    /// A failure with `status` and `msg`.
    pub fn new(status: mamba_status, msg: impl Into<String>) -> Self {
        FfiError {
            status,
            msg: msg.into(),
        }
    }
    /// `MAMBA_ERR_INVALID_ARG` with `msg`.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(MAMBA_ERR_INVALID_ARG, msg)
    }
}

/// The precise status of each core error. Exhaustive on purpose: a new core error
/// variant must be given a code here before the crate builds again.
pub fn core_status(e: &mamba_core::Error) -> mamba_status {
    use mamba_core::Error as E;
    match e {
        E::Truncated { .. }
        | E::BadMagic
        | E::UnsupportedVersion(_)
        | E::AbsurdSize { .. }
        | E::BadValueType { .. }
        | E::BadUtf8 { .. }
        | E::WrongArchitecture(_)
        | E::MissingKey(_)
        | E::BadKey(_)
        | E::MissingTensor(_)
        | E::TensorShape { .. }
        | E::TensorType { .. }
        | E::TensorOutOfBounds(_)
        | E::Misaligned(_)
        | E::Config(_) => MAMBA_ERR_FORMAT,
        E::BufferSize { .. } => MAMBA_ERR_BUFFER_TOO_SMALL,
        E::TokenOutOfRange { .. } => MAMBA_ERR_TOKEN_OUT_OF_RANGE,
        E::BadState(_) => MAMBA_ERR_BAD_STATE,
        E::StateMismatch => MAMBA_ERR_STATE_MISMATCH,
        E::Sampling(_) => MAMBA_ERR_INVALID_ARG,
        E::BigEndian => MAMBA_ERR_UNSUPPORTED,
    }
}

impl From<mamba_core::Error> for FfiError {
    fn from(e: mamba_core::Error) -> Self {
        FfiError::new(core_status(&e), e.to_string())
    }
}

impl From<mamba_rt::Error> for FfiError {
    fn from(e: mamba_rt::Error) -> Self {
        use mamba_rt::Error as E;
        let status = match &e {
            E::Io { .. } => MAMBA_ERR_IO,
            E::Core(c) => core_status(c),
            E::Format { .. } => MAMBA_ERR_FORMAT,
            E::Invalid(_) => MAMBA_ERR_INVALID_ARG,
        };
        FfiError::new(status, e.to_string())
    }
}

/// Store `"{func}: {msg}"` as this thread's last error.
pub fn set_last_error(func: &str, msg: &str) {
    let text = format!("{func}: {msg}").replace('\0', "\\0");
    let c = CString::new(text).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; the status still tells.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Run the body of an export that returns a status: `Ok` gives `MAMBA_OK`, an error
/// its status (and the last error), a panic `MAMBA_ERR_PANIC`.
pub fn guard(func: &str, body: impl FnOnce() -> Result<(), FfiError>) -> mamba_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => MAMBA_OK,
        Ok(Err(e)) => {
            set_last_error(func, &e.msg);
            e.status
        }
        Err(payload) => {
            set_last_error(
                func,
                &format!("internal panic: {}", panic_message(&*payload)),
            );
            MAMBA_ERR_PANIC
        }
    }
}

/// Run the body of an export that returns a value: on an error or a panic, record
/// the last error and return `fallback`.
pub fn guard_value<T>(func: &str, fallback: T, body: impl FnOnce() -> Result<T, FfiError>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(func, &e.msg);
            fallback
        }
        Err(payload) => {
            set_last_error(
                func,
                &format!("internal panic: {}", panic_message(&*payload)),
            );
            fallback
        }
    }
}

/// `p` as a shared reference, or `INVALID_ARG` naming `what` when NULL or misaligned.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` that is not mutated during `'a`.
pub unsafe fn obj<'a, T>(p: *const T, what: &str) -> Result<&'a T, FfiError> {
    if p.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!("{what} is misaligned")));
    }
    // SAFETY: non-NULL and aligned; liveness and exclusivity are the caller's contract.
    Ok(unsafe { &*p })
}

/// `p` as an exclusive reference, or `INVALID_ARG` naming `what` when NULL or misaligned.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` that nothing else accesses during `'a`.
pub unsafe fn obj_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, FfiError> {
    if p.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!("{what} is misaligned")));
    }
    // SAFETY: non-NULL and aligned; liveness and exclusivity are the caller's contract.
    Ok(unsafe { &mut *p })
}

fn check_buf<T>(p: *const T, len: usize, what: &str) -> Result<(), FfiError> {
    if p.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!("{what} is misaligned")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(FfiError::invalid(format!("{what} length {len} is absurd")));
    }
    Ok(())
}

/// `len` elements at `p` as a slice; `INVALID_ARG` naming `what` when `p` is NULL
/// (even for `len == 0`), misaligned, or `len` absurd.
///
/// # Safety
/// A non-NULL `p` must point to `len` initialised `T`s, not written during `'a`.
pub unsafe fn slice_in<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], FfiError> {
    check_buf(p, len, what)?;
    // SAFETY: non-NULL, aligned, size within isize; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` elements at `p` as a mutable slice (see [`slice_in`]).
///
/// # Safety
/// A non-NULL `p` must point to `len` writable `T`s that nothing else accesses during `'a`.
pub unsafe fn slice_out<'a, T>(p: *mut T, len: usize, what: &str) -> Result<&'a mut [T], FfiError> {
    check_buf(p, len, what)?;
    // SAFETY: non-NULL, aligned, size within isize; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Read a versioned params struct whose first field is its `struct_size` (llama.h
/// style ABI evolution): NULL gives `default`; a size smaller than this library's
/// struct is rejected (it was not filled by `*_default_params()`); a larger one
/// (a newer header) is accepted and only the fields known here are read.
///
/// # Safety
/// A non-NULL `p` must point to at least `struct_size` readable bytes, whose first
/// `size_of::<usize>()` bytes are the size.
pub unsafe fn read_params<T: Copy>(p: *const T, default: T, what: &str) -> Result<T, FfiError> {
    if p.is_null() {
        return Ok(default);
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!("{what} is misaligned")));
    }
    // SAFETY: non-NULL and aligned; every params struct starts with a size_t.
    let size = unsafe { p.cast::<usize>().read() };
    if size < size_of::<T>() || size > (1 << 16) {
        return Err(FfiError::invalid(format!(
            "{what}->struct_size is {size}, expected {} (fill the struct with its \
             *_default_params() function)",
            size_of::<T>()
        )));
    }
    // SAFETY: the caller says `struct_size` (>= size_of::<T>()) bytes are readable; the
    // structs hold only integers and floats, for which every bit pattern is valid.
    Ok(unsafe { p.read() })
}

/// The message of the last failed call on the calling thread, as a NUL-terminated
/// string ("" if no call has failed on this thread yet).
///
/// Successful calls do not clear it, so read it right after a call that returned an
/// error. Ownership: the string belongs to the library; it stays valid until the
/// next failing call on the same thread (or the thread's exit); do not free it.
/// Thread safety: any thread; each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn mamba_last_error() -> *const c_char {
    match catch_unwind(|| LAST_ERROR.try_with(|slot| slot.borrow().as_ptr())) {
        Ok(Ok(p)) => p,
        _ => c"".as_ptr(),
    }
}
