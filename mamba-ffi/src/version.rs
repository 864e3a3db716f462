//! Library version.

use std::ffi::c_char;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version ("MAJOR.MINOR.PATCH"), a static NUL-terminated string.
///
/// Ownership: static; do not free it. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn mamba_version() -> *const c_char {
    // Cannot panic; the guard keeps the rule that every export has one.
    crate::boundary::guard_value("mamba_version", c"".as_ptr(), || {
        Ok(VERSION.as_ptr().cast())
    })
}
