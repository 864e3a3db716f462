//! Without a GPU every entry point answers with an error, never a panic.

use mamba_cuda::{GpuContext, GpuError};

#[test]
fn availability_probe_never_panics() {
    match GpuContext::is_available() {
        Ok(()) => {
            let ctx = GpuContext::new(0).expect("available, so it opens");
            eprintln!(
                "GPU: {} (cc {:?}, {} SMs)",
                ctx.device_name(),
                ctx.compute_capability(),
                ctx.sm_count()
            );
        }
        Err(why) => {
            assert!(!why.reason().is_empty());
            match GpuContext::new(0) {
                Err(GpuError::NoGpu(n)) => assert_eq!(n, why),
                Err(e) => panic!("expected NoGpu, got {e}"),
                Ok(_) => panic!("no GPU, yet a context opened"),
            }
            eprintln!("skipping: no GPU ({})", why.reason());
        }
    }
}
