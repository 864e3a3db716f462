//! Shared by the root package's GPU tests (`cuda_prefill`, `cuda_decode`): the device or a
//! clean skip, the conformance fixtures, a small random model shape, the error measure.

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

/// max |a - b| / max |b| (infinite when `a` holds a NaN).
pub fn rel_max(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let e = a.iter().zip(b).fold(0f32, |e, (x, y)| {
        if x.is_nan() {
            f32::INFINITY
        } else {
            e.max((x - y).abs())
        }
    });
    e / m
}

/// The conformance fixture folder `name`.
pub fn fixture(name: &str) -> PathBuf {
    super::repo().join("tests/fixtures/conformance").join(name)
}

/// A small random-model shape with every optional tensor on (`biases`) or off.
pub fn random_cfg(biases: bool) -> ModelConfig {
    ModelConfig {
        d_model: 128,
        n_layer: 3,
        d_inner: 256,
        d_state: 16,
        d_conv: 4,
        dt_rank: 8,
        vocab_size: 300,
        eps: 1e-5,
        in_proj_bias: biases,
        out_proj_bias: biases,
        conv_bias: !biases,
        tied_head: !biases,
        dt_b_c_rms: false,
    }
}
