//! Every kernel compiles with NVRTC for the Jetson Xavier (compute_72), Orin
//! (compute_87) and Hopper (compute_90) targets. Needs NVRTC, not a GPU; skips
//! without NVRTC (fails then if MAMBA_REQUIRE_GPU=1), and skips an
//! architecture this NVRTC no longer targets (CUDA 13 dropped compute_72).

#[test]
fn kernels_compile_for_jetson_and_hopper() {
    let archs = match mamba_cuda::nvrtc_supported_archs() {
        Ok(a) => a,
        Err(e) => {
            let why = match &e {
                mamba_cuda::GpuError::NoGpu(n) => n.reason().to_string(),
                other => other.to_string(),
            };
            let required = std::env::var("MAMBA_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "MAMBA_REQUIRE_GPU=1 but NVRTC cannot be loaded: {why}"
            );
            eprintln!("skipping: no GPU ({why})");
            return;
        }
    };
    let version = mamba_cuda::nvrtc_version().expect("nvrtc version");
    for arch in [72, 87, 90] {
        if !archs.contains(&arch) {
            eprintln!(
                "skipping compute_{arch}: NVRTC {}.{} does not target it",
                version.0, version.1
            );
            continue;
        }
        let t = std::time::Instant::now();
        if let Err(e) = mamba_cuda::compile_kernels(arch) {
            panic!("{e}");
        }
        eprintln!(
            "compute_{arch}: {:?} compiled in {:.2?}",
            mamba_cuda::kernel_names(),
            t.elapsed()
        );
    }
}
