//! HF checkpoint folder (config.json + model.safetensors) opened, converted, loaded.
//! Input layout: see `harness::split_hf`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::safetensors(data));
