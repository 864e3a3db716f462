//! GGUF reader, config, model layout, `Model::new` and one step on arbitrary bytes.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::gguf(data));
