//! NVRTC compilation of the `.cu` files in `kernels/`, with an on-disk cache.
//!
//! Kernels are compiled at load time for the device's own compute capability
//! (`compute_XY` PTX, which the driver turns into machine code). The PTX is
//! cached under `$MAMBA_CUDA_CACHE_DIR`, else `$XDG_CACHE_HOME/mamba-cuda/`,
//! else `~/.cache/mamba-cuda/`, in a file named by a hash of the source, the
//! architecture, the NVRTC version and the options, so a change to any of them
//! misses the cache. Cache failures are never fatal: we compile again.

use std::path::PathBuf;

use cudarc::nvrtc::{self, CompileError, CompileOptions};

use crate::error::GpuError;
use crate::loader;

/// One `.cu` file of `kernels/`, embedded in the binary.
pub(crate) struct KernelSource {
    /// File name, e.g. `selective_scan.cu`.
    pub name: &'static str,
    /// The CUDA C++ source.
    pub src: &'static str,
    /// Preferred shared-memory carveout (percent of the unified L1 / shared
    /// storage) set on every function of the file when it is loaded; `None`:
    /// the driver's choice.
    pub carveout: Option<i32>,
}

/// The fused selective scan (three entry points per dtype and state split).
pub(crate) const SELECTIVE_SCAN: KernelSource = KernelSource {
    name: "selective_scan.cu",
    src: include_str!("../kernels/selective_scan.cu"),
    // The same (largest) shared-memory share for every scan kernel. The
    // driver otherwise sizes an SM's carveout per kernel, and an SM changes
    // it only once idle, so a kernel needing more shared memory than the one
    // before could not start there until that one's blocks had left, which
    // undoes the programmatic launch's overlap (seen with an experimental
    // output kernel of 34 KiB after 26 KiB chunk-state blocks: NOTES.md, v9).
    carveout: Some(100),
};

/// The fused causal depthwise conv1d + SiLU.
pub(crate) const CAUSAL_CONV1D: KernelSource = KernelSource {
    name: "causal_conv1d.cu",
    src: include_str!("../kernels/causal_conv1d.cu"),
    carveout: None,
};

/// RMSNorm over rows, f32 in, f32 / f16 / bf16 out.
pub(crate) const RMSNORM: KernelSource = KernelSource {
    name: "rmsnorm.cu",
    src: include_str!("../kernels/rmsnorm.cu"),
    carveout: None,
};

/// Token embedding gather.
pub(crate) const EMBEDDING: KernelSource = KernelSource {
    name: "embedding.cu",
    src: include_str!("../kernels/embedding.cu"),
    carveout: None,
};

/// f32 to f16 / bf16 conversion.
pub(crate) const CAST: KernelSource = KernelSource {
    name: "cast.cu",
    src: include_str!("../kernels/cast.cu"),
    carveout: None,
};

/// In-place bias row add.
pub(crate) const ADD_BIAS: KernelSource = KernelSource {
    name: "add_bias.cu",
    src: include_str!("../kernels/add_bias.cu"),
    carveout: None,
};

/// Decode GEMV with the weights in their stored type (decode_common.cuh prepended).
pub(crate) const DECODE_GEMV: KernelSource = KernelSource {
    name: "decode_gemv.cu",
    src: concat!(
        include_str!("../kernels/decode_common.cuh"),
        include_str!("../kernels/decode_gemv.cu")
    ),
    carveout: None,
};

/// Decode conv update + SiLU fused with x_proj.
pub(crate) const DECODE_CONV: KernelSource = KernelSource {
    name: "decode_conv.cu",
    src: concat!(
        include_str!("../kernels/decode_common.cuh"),
        include_str!("../kernels/decode_conv.cu")
    ),
    carveout: None,
};

/// Decode dt_proj + softplus + state update + D skip + gate.
pub(crate) const DECODE_SSM: KernelSource = KernelSource {
    name: "decode_ssm.cu",
    src: concat!(
        include_str!("../kernels/decode_common.cuh"),
        include_str!("../kernels/decode_ssm.cu")
    ),
    carveout: None,
};

/// Decode embedding gather in the table's stored type.
pub(crate) const DECODE_EMBED: KernelSource = KernelSource {
    name: "decode_embed.cu",
    src: concat!(
        include_str!("../kernels/decode_common.cuh"),
        include_str!("../kernels/decode_embed.cu")
    ),
    carveout: None,
};

/// Decode greedy argmax over the logits.
pub(crate) const DECODE_ARGMAX: KernelSource = KernelSource {
    name: "decode_argmax.cu",
    src: include_str!("../kernels/decode_argmax.cu"),
    carveout: None,
};

/// Every kernel file of the crate.
pub(crate) const ALL_KERNELS: [&KernelSource; 11] = [
    &SELECTIVE_SCAN,
    &CAUSAL_CONV1D,
    &RMSNORM,
    &EMBEDDING,
    &CAST,
    &ADD_BIAS,
    &DECODE_GEMV,
    &DECODE_CONV,
    &DECODE_SSM,
    &DECODE_EMBED,
    &DECODE_ARGMAX,
];

/// Options passed to NVRTC besides the architecture (part of the cache key).
const OPTIONS: [&str; 1] = ["--std=c++17"];

/// NVRTC's (major, minor) version.
pub(crate) fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    loader::nvrtc_available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded (probed above); the out-pointers are valid.
    let r = unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(GpuError::driver("nvrtcVersion", r));
    }
    Ok((major, minor))
}

/// The virtual architectures this NVRTC can target, as numbers (`90` for `compute_90`).
pub(crate) fn supported_archs() -> Result<Vec<u32>, GpuError> {
    loader::nvrtc_available()?;
    let mut n = 0;
    // SAFETY: NVRTC is loaded; the out-pointer is valid.
    let r = unsafe { nvrtc::sys::nvrtcGetNumSupportedArchs(&mut n) };
    if r != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS || n < 0 {
        return Err(GpuError::driver("nvrtcGetNumSupportedArchs", r));
    }
    let mut archs = vec![0i32; n as usize];
    // SAFETY: `archs` holds the `n` ints NVRTC writes.
    let r = unsafe { nvrtc::sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
    if r != nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(GpuError::driver("nvrtcGetSupportedArchs", r));
    }
    Ok(archs.into_iter().map(|a| a as u32).collect())
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MAMBA_CUDA_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("mamba-cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mamba-cuda"))
}

/// Extra NVRTC options from `MAMBA_CUDA_NVRTC_OPTIONS` (space-separated), a
/// tuning aid: e.g. `-DSCAN_MIN_BLOCKS=5 -DSCAN_PRECISE_MATH` tries a kernel variant
/// without rebuilding. Part of the cache key.
fn extra_options() -> Vec<String> {
    std::env::var("MAMBA_CUDA_NVRTC_OPTIONS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn compile_uncached(k: &KernelSource, arch: &str) -> Result<String, GpuError> {
    let mut options: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    options.extend(extra_options());
    options.push(format!("--gpu-architecture={arch}"));
    let opts = CompileOptions {
        options,
        name: Some(k.name.to_string()),
        ..Default::default()
    };
    match nvrtc::compile_ptx_with_opts(k.src, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => Err(GpuError::Compile {
            kernel: k.name.to_string(),
            arch: arch.to_string(),
            log: log.to_string_lossy().into_owned(),
        }),
        Err(e) => Err(GpuError::Compile {
            kernel: k.name.to_string(),
            arch: arch.to_string(),
            log: format!("{e:?}"),
        }),
    }
}

/// A temporary name beside `p` that no other writer uses: the process id
/// alone was shared by the threads of one process, so two contexts compiling
/// the same kernel at once could write one file together, and the rename
/// could publish it half-written.
fn private_tmp(p: &std::path::Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    p.with_extension(format!("tmp{}-{n}", std::process::id()))
}

/// PTX of `k` for `compute_{arch}`, from the cache when `use_cache` and present.
pub(crate) fn compile_ptx(
    k: &KernelSource,
    arch: u32,
    use_cache: bool,
) -> Result<String, GpuError> {
    loader::nvrtc_available()?;
    let arch_name = format!("compute_{arch}");
    if !use_cache {
        return compile_uncached(k, &arch_name);
    }
    let (major, minor) = nvrtc_version()?;
    let version = format!("{major}.{minor}");
    let opts = format!("{} {}", OPTIONS.join(" "), extra_options().join(" "));
    let key = fnv1a(&[
        k.src.as_bytes(),
        arch_name.as_bytes(),
        version.as_bytes(),
        opts.as_bytes(),
    ]);
    let stem = k.name.trim_end_matches(".cu");
    let path = cache_dir().map(|d| d.join(format!("{stem}-{arch_name}-{key:016x}.ptx")));
    if let Some(p) = &path {
        if let Ok(ptx) = std::fs::read_to_string(p) {
            return Ok(ptx);
        }
    }
    let ptx = compile_uncached(k, &arch_name)?;
    if let Some(p) = &path {
        // Write to a private name, then rename: a concurrent reader never sees
        // half a file.
        if let Some(dir) = p.parent() {
            if std::fs::create_dir_all(dir).is_ok() {
                let tmp = private_tmp(p);
                // A failed write or rename leaves no temporary file behind.
                if !(std::fs::write(&tmp, &ptx).is_ok() && std::fs::rename(&tmp, p).is_ok()) {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
    }
    Ok(ptx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_differ_between_threads() {
        let p = std::path::Path::new("/cache/selective_scan-sm_90-0123.ptx");
        let names: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..100).map(|_| private_tmp(p)).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|n| n.parent() == p.parent() && n != p));
    }
}
