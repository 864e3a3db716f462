//! Shared by the root package's GPU tests (`cuda_prefill`, `cuda_decode`): the device or a
//! clean skip, the conformance fixtures, a small random model shape (the error measure,
//! `rel_max`, is in the parent module, shared with the CPU tests).

use std::path::PathBuf;
use std::sync::OnceLock;

use mamba_core::ModelConfig;
use mamba_cuda::GpuContext;

/// The HF conformance fixtures under tests/fixtures/conformance.
pub const CONFORMANCE: [&str; 7] = [
    "base",
    "bf16",
    "dstate8_k3",
    "expand3_rank5",
    "noconvbias_k2",
    "orig_names",
    "sharded",
];

/// The shared GPU context, or `None` after printing why the test skips. Panics when
/// `MAMBA_REQUIRE_GPU=1` and there is no GPU.
pub fn gpu() -> Option<&'static GpuContext> {
    static GPU: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| match GpuContext::is_available() {
        Ok(()) => GpuContext::new(0).map_err(|e| e.to_string()),
        Err(why) => Err(why.reason().to_string()),
    });
    match g {
        Ok(ctx) => Some(ctx),
        Err(why) => {
            let required = std::env::var("MAMBA_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "MAMBA_REQUIRE_GPU=1 but there is no GPU: {why}");
            eprintln!("skipping: no GPU ({why})");
            None
        }
    }
}

/// The conformance fixture folder `name`.
pub fn fixture(name: &str) -> PathBuf {
    super::repo().join("tests/fixtures/conformance").join(name)
}

/// The small random-model shape (16 states) with every optional tensor on
/// (`biases`) or off.
pub fn random_cfg(biases: bool) -> ModelConfig {
    super::small_cfg(16, biases, false)
}
