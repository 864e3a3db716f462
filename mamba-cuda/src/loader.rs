//! Finding the CUDA libraries at run time, without ever letting cudarc panic.
//!
//! cudarc (dynamic loading) opens `libcuda` and `libnvrtc` by name on first use
//! and panics when it cannot. So every entry point probes first with each
//! module's `sys::is_culib_present()` and returns [`NoGpu`] instead.
//!
//! The driver library is always on the loader's path, but NVRTC often is not:
//! a toolkit keeps it under `<root>/targets/<arch>-linux/lib` (or `lib64`) and
//! nothing adds that folder to the loader's path. When the plain name fails we
//! open the library from the usual toolkit folders by full path and keep it
//! loaded; glibc then answers cudarc's later `dlopen("libnvrtc.so.13")` with
//! the already loaded copy, because it matches loaded objects by soname first.
//! Both CUDA 12 (`libnvrtc.so.12`, Jetson) and 13 (`libnvrtc.so.13`) names are
//! tried; cudarc's own list, built with `cuda-13000`, holds both as well.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cudarc::driver::result as dr;

use crate::error::NoGpu;

/// Libraries opened by full path; kept loaded for the life of the process.
static KEPT: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());

fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the NVRTC library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Toolkit folders that may hold libnvrtc, most specific first.
fn toolkit_lib_dirs() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH; // "x86_64" or "aarch64"
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in [
        "CUDA_HOME",
        "CUDA_PATH",
        "CUDA_ROOT",
        "CUDA_TOOLKIT_ROOT_DIR",
    ] {
        if let Some(v) = std::env::var_os(var) {
            roots.push(PathBuf::from(v));
        }
    }
    roots.push(PathBuf::from("/usr/local/cuda"));
    for major in ["13", "12"] {
        if let Ok(rd) = std::fs::read_dir("/usr/local") {
            let mut found: Vec<PathBuf> = rd
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("cuda-{major}")))
                })
                .collect();
            found.sort();
            found.reverse();
            roots.extend(found);
        }
    }
    let mut dirs = Vec::new();
    for r in roots {
        dirs.push(r.join("targets").join(format!("{arch}-linux")).join("lib"));
        dirs.push(r.join("lib64"));
        dirs.push(r.join("lib"));
    }
    dirs
}

/// Opens `path` and keeps it loaded. Returns whether it worked.
fn keep_loaded(path: &Path) -> bool {
    // SAFETY: loading NVRTC runs its initialisers only, which have no
    // preconditions on our side.
    match unsafe { libloading::Library::new(path) } {
        Ok(lib) => {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(lib);
            true
        }
        Err(_) => false,
    }
}

/// Loads libnvrtc (and its builtins library, which it opens by name itself)
/// from a toolkit folder. Returns whether one was loaded.
fn preload_nvrtc_from_toolkit() -> bool {
    for dir in toolkit_lib_dirs() {
        for name in ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"] {
            let p = dir.join(name);
            if !p.exists() {
                continue;
            }
            // The builtins first, so NVRTC finds them already loaded.
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for d in rd.flatten() {
                    let n = d.file_name();
                    let n = n.to_string_lossy();
                    if n.starts_with("libnvrtc-builtins.so.") && !n.contains("alt") {
                        keep_loaded(&d.path());
                    }
                }
            }
            if keep_loaded(&p) {
                return true;
            }
        }
    }
    false
}

fn probe_nvrtc() -> Result<(), NoGpu> {
    if nvrtc_present() {
        return Ok(());
    }
    if preload_nvrtc_from_toolkit() && nvrtc_present() {
        return Ok(());
    }
    Err(NoGpu::new(
        "libnvrtc not found (not on the loader path, nor under CUDA_HOME, CUDA_PATH or /usr/local/cuda*)",
    ))
}

/// Whether NVRTC can be loaded (kernels can be compiled; no device needed).
pub(crate) fn nvrtc_available() -> Result<(), NoGpu> {
    static P: OnceLock<Result<(), NoGpu>> = OnceLock::new();
    P.get_or_init(probe_nvrtc).clone()
}

fn probe_gpu() -> Result<(), NoGpu> {
    if !driver_present() {
        return Err(NoGpu::new("libcuda (the NVIDIA driver library) not found"));
    }
    nvrtc_available()?;
    dr::init().map_err(|e| NoGpu::new(format!("cuInit failed: {e:?}")))?;
    let n = dr::device::get_count()
        .map_err(|e| NoGpu::new(format!("cuDeviceGetCount failed: {e:?}")))?;
    if n <= 0 {
        return Err(NoGpu::new("the driver reports no CUDA device"));
    }
    Ok(())
}

/// Whether a GPU can be used: driver and NVRTC load, the driver initialises
/// and reports at least one device. Probed once per process.
pub(crate) fn gpu_available() -> Result<(), NoGpu> {
    static P: OnceLock<Result<(), NoGpu>> = OnceLock::new();
    P.get_or_init(probe_gpu).clone()
}

fn cublas_present() -> bool {
    // SAFETY: only tries to dlopen the cuBLAS library by its usual names.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Loads libcublasLt then libcublas (which needs it, by soname) from a
/// toolkit folder. Returns whether libcublas was loaded.
fn preload_cublas_from_toolkit() -> bool {
    for dir in toolkit_lib_dirs() {
        for major in ["13", "12"] {
            let p = dir.join(format!("libcublas.so.{major}"));
            if !p.exists() {
                continue;
            }
            keep_loaded(&dir.join(format!("libcublasLt.so.{major}")));
            if keep_loaded(&p) {
                return true;
            }
        }
    }
    false
}

fn probe_cublas() -> Result<(), NoGpu> {
    if cublas_present() {
        return Ok(());
    }
    if preload_cublas_from_toolkit() && cublas_present() {
        return Ok(());
    }
    Err(NoGpu::new(
        "libcublas not found (not on the loader path, nor under CUDA_HOME, CUDA_PATH or /usr/local/cuda*)",
    ))
}

/// Whether cuBLAS can be loaded (the whole-model GEMMs). Probed once per process.
pub(crate) fn cublas_available() -> Result<(), NoGpu> {
    static P: OnceLock<Result<(), NoGpu>> = OnceLock::new();
    P.get_or_init(probe_cublas).clone()
}
