//! State blob import (core and session) on a small model. Input layout: see
//! `harness::state_blob`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::state(data));
