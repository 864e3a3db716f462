//! C ABI (see the C ABI issue).
