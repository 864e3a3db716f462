//! The GPU context: one device, one stream, the loaded kernels.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};

use crate::buffer::{Element, GpuBuffer};
use crate::compile::{self, KernelSource};
use crate::error::{GpuError, NoGpu};
use crate::loader;

static DEVICE_GATE: Mutex<()> = Mutex::new(());
std::thread_local! {
    static GATE_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Held while this thread does something that must not overlap another
/// thread's CUDA graph capture, or a capture: capturing a stream (the
/// decoder's step graphs), loading a module, creating or destroying a cuBLAS
/// handle, page-locked host allocations and the context-wide synchronize of
/// their release. The driver invalidates a capture, or has crashed, when one
/// of those ran on another thread of the process meanwhile (llama.cpp
/// #13990 met the same with cuBLAS; a test binary here once died in libcuda
/// with several contexts capturing and loading at once). Re-entrant on one
/// thread: a capture that loads a kernel does not wait for itself.
pub(crate) struct DeviceGate(Option<std::sync::MutexGuard<'static, ()>>);

pub(crate) fn device_gate() -> DeviceGate {
    if GATE_HELD.with(|h| h.get()) {
        return DeviceGate(None);
    }
    let g = DEVICE_GATE.lock().unwrap_or_else(|e| e.into_inner());
    GATE_HELD.with(|h| h.set(true));
    DeviceGate(Some(g))
}

impl Drop for DeviceGate {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            GATE_HELD.with(|h| h.set(false));
        }
    }
}

/// Runs `f`, turning a panic inside cudarc (say, a symbol missing from an old
/// driver) into an error instead of unwinding through the caller.
pub(crate) fn guard<R>(what: &str, f: impl FnOnce() -> Result<R, GpuError>) -> Result<R, GpuError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Err(GpuError::Driver {
                what: what.to_string(),
                message: msg,
            })
        }
    }
}

/// Milliseconds per stage of a profiled run: `marks` are the events recorded
/// after each stage, in order, `start` the one before the first; a stage name
/// that repeats (a layer's stages) sums, in order of first appearance.
pub(crate) fn stage_times(
    start: &cudarc::driver::CudaEvent,
    marks: &[(&'static str, cudarc::driver::CudaEvent)],
) -> Result<Vec<(&'static str, f32)>, GpuError> {
    let mut out: Vec<(&'static str, f32)> = Vec::new();
    let mut prev = start;
    for (name, ev) in marks {
        let ms = prev
            .elapsed_ms(ev)
            .map_err(|e| GpuError::driver("cuEventElapsedTime", e))?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, t)) => *t += ms,
            None => out.push((name, ms)),
        }
        prev = ev;
    }
    Ok(out)
}

/// What the launch sizing needs to know about the device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceProps {
    pub sm_count: u32,
    pub max_threads_per_sm: u32,
    pub compute_capability: (u32, u32),
}

/// A CUDA device with its own stream and its loaded kernels.
///
/// Every operation is queued on the context's stream, in call order; results
/// are visible to the host after [`GpuContext::download`] or
/// [`GpuContext::synchronize`]. The context can be shared between threads;
/// its operations then still run one after another on its one stream.
pub struct GpuContext {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    props: DeviceProps,
    /// compute_XY the kernels are compiled for (the device's, or the newest
    /// below it that NVRTC knows).
    arch: u32,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Scratch for multi-pass kernels; grows, never shrinks. Only used in
    /// stream order, so reuse across calls is safe.
    workspace: Mutex<Option<CudaSlice<u8>>>,
    /// Arrival counters of the single-launch scan (`scan_fused_*`): zeroed
    /// once, put back to zero by each launch's last block; grows, never shrinks.
    counters: Mutex<Option<CudaSlice<u8>>>,
    /// Resident blocks per SM by (function, threads a block, dynamic shared
    /// bytes), asked of the driver once (`GpuContext::blocks_per_sm`).
    occupancy: Mutex<HashMap<(usize, u32, usize), usize>>,
}

impl GpuContext {
    /// Whether a GPU can be used here: the driver library and NVRTC load, the
    /// driver initialises and reports a device. Never panics.
    pub fn is_available() -> Result<(), NoGpu> {
        loader::gpu_available()
    }

    /// Opens device `ordinal` (0 is the first GPU).
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        loader::gpu_available()?;
        guard("GpuContext::new", || {
            let ctx = CudaContext::new(ordinal)
                .map_err(|e| GpuError::driver("cuDevicePrimaryCtxRetain", e))?;
            // SAFETY: we use a single stream per context, so cudarc's
            // cross-stream event tracking has nothing to order; without it
            // buffers are plain device pointers we pass to kernels ourselves.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx
                .new_stream()
                .map_err(|e| GpuError::driver("cuStreamCreate", e))?;
            let attr = |a: Attr| {
                ctx.attribute(a)
                    .map(|v| v.max(0) as u32)
                    .map_err(|e| GpuError::driver("cuDeviceGetAttribute", e))
            };
            let props = DeviceProps {
                sm_count: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1),
                max_threads_per_sm: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?
                    .max(128),
                compute_capability: (
                    attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                    attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
                ),
            };
            let name = ctx
                .name()
                .unwrap_or_else(|_| "unknown CUDA device".to_string());
            let dev_arch = props.compute_capability.0 * 10 + props.compute_capability.1;
            let arch = compile::supported_archs()?
                .into_iter()
                .filter(|&a| a <= dev_arch)
                .max()
                .ok_or_else(|| {
                    GpuError::NoGpu(NoGpu::new(format!(
                        "NVRTC cannot target compute capability {}.{}",
                        props.compute_capability.0, props.compute_capability.1
                    )))
                })?;
            Ok(Self {
                ctx,
                stream,
                name,
                props,
                arch,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                workspace: Mutex::new(None),
                counters: Mutex::new(None),
                occupancy: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The device's name, e.g. "NVIDIA H200".
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The device's compute capability, e.g. (9, 0).
    pub fn compute_capability(&self) -> (u32, u32) {
        self.props.compute_capability
    }

    /// A context on the same device with a stream of its own; the loaded
    /// kernels are shared. Its work, and its CUDA graph captures, do not mix
    /// with other threads' work on `self`'s stream; order the two streams
    /// with [`GpuContext::wait_for`].
    pub(crate) fn with_own_stream(&self) -> Result<GpuContext, GpuError> {
        guard("cuStreamCreate", || {
            let stream = self
                .ctx
                .new_stream()
                .map_err(|e| GpuError::driver("cuStreamCreate", e))?;
            let modules = self
                .modules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let functions = self
                .functions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            Ok(Self {
                ctx: self.ctx.clone(),
                stream,
                name: self.name.clone(),
                props: self.props,
                arch: self.arch,
                modules: Mutex::new(modules),
                functions: Mutex::new(functions),
                workspace: Mutex::new(None),
                counters: Mutex::new(None),
                occupancy: Mutex::new(HashMap::new()),
            })
        })
    }

    /// Makes this context's stream wait (on the device) for the work queued
    /// so far on `other`'s.
    pub(crate) fn wait_for(&self, other: &GpuContext) -> Result<(), GpuError> {
        guard("cuStreamWaitEvent", || {
            let ev = other
                .stream
                .record_event(Some(
                    cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING,
                ))
                .map_err(|e| GpuError::driver("cuEventRecord", e))?;
            self.stream
                .wait(&ev)
                .map_err(|e| GpuError::driver("cuStreamWaitEvent", e))
        })
    }

    /// Whether the device is an integrated GPU sharing memory with the CPU
    /// (a Jetson: `CU_DEVICE_ATTRIBUTE_INTEGRATED`).
    pub fn is_integrated(&self) -> bool {
        self.ctx
            .attribute(Attr::CU_DEVICE_ATTRIBUTE_INTEGRATED)
            .is_ok_and(|v| v != 0)
    }

    /// Page-locked host memory of `bytes` bytes (at least 1), mapped into the
    /// device's address space: kernels read it in place through
    /// [`HostMapped::dev_ptr`], over the bus on a discrete GPU, from the
    /// shared DRAM on an integrated one.
    pub(crate) fn host_mapped(&self, bytes: usize) -> Result<HostMapped, GpuError> {
        use cudarc::driver::{result, sys};
        let _gate = device_gate();
        guard("cuMemHostAlloc", || {
            self.bind()?;
            let len = bytes.max(1);
            // SAFETY: the context is current; PORTABLE | DEVICEMAP asks for
            // pinned memory visible to the device; freed in Drop.
            let host = unsafe {
                result::malloc_host(
                    len,
                    sys::CU_MEMHOSTALLOC_PORTABLE | sys::CU_MEMHOSTALLOC_DEVICEMAP,
                )
            }
            .map_err(|e| GpuError::driver("cuMemHostAlloc", e))?;
            let mut dev: sys::CUdeviceptr = 0;
            // SAFETY: `host` was returned by cuMemHostAlloc with DEVICEMAP.
            let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) };
            if r != sys::CUresult::CUDA_SUCCESS {
                // SAFETY: allocated above, not used since.
                let _ = unsafe { result::free_host(host) };
                return Err(GpuError::driver("cuMemHostGetDevicePointer", r));
            }
            Ok(HostMapped {
                host: host.cast::<u8>(),
                len,
                dev,
                ctx: self.ctx.clone(),
            })
        })
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.props.sm_count
    }

    /// Records a new event on the stream (stage timing of a profiled prefill).
    pub(crate) fn record_event(&self) -> Result<cudarc::driver::CudaEvent, GpuError> {
        let ev = self
            .ctx
            .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| GpuError::driver("cuEventCreate", e))?;
        ev.record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", e))?;
        Ok(ev)
    }

    /// The context's one stream (for cuBLAS).
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Makes this context current on the calling thread, for driver calls
    /// made directly rather than through cudarc's wrappers (which bind).
    pub(crate) fn bind(&self) -> Result<(), GpuError> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| GpuError::driver("cuCtxSetCurrent", e))
    }

    /// A zeroed device allocation of `bytes` bytes (at least 1), untyped.
    pub(crate) fn alloc_raw(&self, bytes: usize) -> Result<RawBuffer, GpuError> {
        guard("alloc", || {
            let raw = self
                .stream
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(|e| GpuError::driver("cuMemAlloc", e))?;
            let ptr = raw.device_ptr(&self.stream).0;
            Ok(RawBuffer { raw, ptr, bytes })
        })
    }

    /// Copies `host` bytes to a new untyped device allocation.
    pub(crate) fn upload_raw(&self, host: &[u8]) -> Result<RawBuffer, GpuError> {
        if host.is_empty() {
            return self.alloc_raw(0);
        }
        guard("upload", || {
            let raw = self
                .stream
                .clone_htod(host)
                .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))?;
            let ptr = raw.device_ptr(&self.stream).0;
            Ok(RawBuffer {
                raw,
                ptr,
                bytes: host.len(),
            })
        })
    }

    /// Overwrites the first `host.len()` bytes of `buf`.
    pub(crate) fn write_raw(&self, buf: &mut RawBuffer, host: &[u8]) -> Result<(), GpuError> {
        if host.len() > buf.bytes {
            return Err(GpuError::invalid(format!(
                "write: {} bytes into a buffer of {}",
                host.len(),
                buf.bytes
            )));
        }
        if host.is_empty() {
            return Ok(());
        }
        guard("write", || {
            let mut dst = buf.raw.slice_mut(0..host.len());
            self.stream
                .memcpy_htod(host, &mut dst)
                .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))
        })
    }

    pub(crate) fn props(&self) -> DeviceProps {
        self.props
    }

    /// Copies `host` to a new device buffer.
    pub fn upload<T: Element>(&self, host: &[T]) -> Result<GpuBuffer<T>, GpuError> {
        guard("upload", || {
            let bytes: &[u8] = bytemuck::cast_slice(host);
            let raw = if bytes.is_empty() {
                self.stream.alloc_zeros::<u8>(1)
            } else {
                self.stream.clone_htod(bytes)
            }
            .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))?;
            let ptr = raw.device_ptr(&self.stream).0;
            Ok(GpuBuffer::from_raw(raw, ptr, host.len()))
        })
    }

    /// A new device buffer of `len` zeroed elements.
    pub fn alloc<T: Element>(&self, len: usize) -> Result<GpuBuffer<T>, GpuError> {
        guard("alloc", || {
            let raw = self
                .stream
                .alloc_zeros::<u8>((len * std::mem::size_of::<T>()).max(1))
                .map_err(|e| GpuError::driver("cuMemAlloc", e))?;
            let ptr = raw.device_ptr(&self.stream).0;
            Ok(GpuBuffer::from_raw(raw, ptr, len))
        })
    }

    /// Overwrites `buf` with `host` (same length).
    pub fn write<T: Element>(&self, buf: &mut GpuBuffer<T>, host: &[T]) -> Result<(), GpuError> {
        if host.len() != buf.len {
            return Err(GpuError::invalid(format!(
                "write: {} host elements into a buffer of {}",
                host.len(),
                buf.len
            )));
        }
        if host.is_empty() {
            return Ok(());
        }
        guard("write", || {
            let bytes: &[u8] = bytemuck::cast_slice(host);
            self.stream
                .memcpy_htod(bytes, &mut buf.raw)
                .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))
        })
    }

    /// Waits for all queued work, then copies `buf` to the host.
    pub fn download<T: Element>(&self, buf: &GpuBuffer<T>) -> Result<Vec<T>, GpuError> {
        guard("download", || {
            let mut host = vec![T::zeroed(); buf.len];
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut host);
            if !bytes.is_empty() {
                let n = bytes.len();
                self.stream
                    .memcpy_dtoh(&buf.raw.slice(0..n), bytes)
                    .map_err(|e| GpuError::driver("cuMemcpyDtoH", e))?;
            }
            self.synchronize_inner()?;
            Ok(host)
        })
    }

    fn synchronize_inner(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(|e| GpuError::driver("cuStreamSynchronize", e))
    }

    /// Waits until all queued work is done; reports errors of earlier launches.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        guard("synchronize", || self.synchronize_inner())
    }

    /// Queues a fill of every byte of `buf` with `byte` (cuMemsetD8Async).
    pub fn fill<T: Element>(&self, buf: &mut GpuBuffer<T>, byte: u8) -> Result<(), GpuError> {
        if !Arc::ptr_eq(buf.raw.stream(), &self.stream) {
            return Err(GpuError::invalid(
                "fill: the buffer belongs to another GpuContext (stream)",
            ));
        }
        let (ptr, bytes) = (buf.ptr, buf.len() * std::mem::size_of::<T>());
        let stream = &self.stream;
        guard("cuMemsetD8Async", || {
            self.bind()?;
            // SAFETY: [ptr, ptr + bytes) is `buf`'s allocation, made on our
            // stream (checked above); it is freed in that stream's order
            // (CudaSlice's drop), so never before the fill has run.
            unsafe { cudarc::driver::result::memset_d8_async(ptr, byte, bytes, stream.cu_stream()) }
                .map_err(|e| GpuError::driver("cuMemsetD8Async", e))
        })
    }

    /// Times the device work that `f` queues, with CUDA events around it;
    /// returns milliseconds. Waits for that work to finish.
    pub fn time_ms(&self, f: impl FnOnce() -> Result<(), GpuError>) -> Result<f32, GpuError> {
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .ctx
            .new_event(flags)
            .map_err(|e| GpuError::driver("cuEventCreate", e))?;
        let stop = self
            .ctx
            .new_event(flags)
            .map_err(|e| GpuError::driver("cuEventCreate", e))?;
        start
            .record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", e))?;
        f()?;
        stop.record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", e))?;
        start
            .elapsed_ms(&stop)
            .map_err(|e| GpuError::driver("cuEventElapsedTime", e))
    }

    /// The function `name` of kernel file `k`, compiling and loading the file on first use.
    pub(crate) fn function(
        &self,
        k: &'static KernelSource,
        name: &str,
    ) -> Result<CudaFunction, GpuError> {
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(f.clone());
        }
        // A miss. The PTX is compiled (or read from the disk cache) outside
        // every lock; the loads run under the device gate, the kernel's too:
        // with lazy loading (the default since CUDA 12.2) cuModuleGetFunction
        // is what loads it. No map lock is held while waiting for the gate.
        let have_module = self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(k.name);
        let ptx = if have_module {
            None
        } else {
            Some(compile::compile_ptx(k, self.arch, true)?)
        };
        let _gate = device_gate();
        let module = {
            let mut mods = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match mods.get(k.name) {
                Some(m) => m.clone(),
                None => {
                    let ptx = match ptx {
                        Some(p) => p,
                        None => compile::compile_ptx(k, self.arch, true)?,
                    };
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                        .map_err(|e| {
                            GpuError::driver(&format!("cuModuleLoadData({})", k.name), e)
                        })?;
                    mods.insert(k.name, m.clone());
                    m
                }
            }
        };
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fns.get(name) {
            return Ok(f.clone());
        }
        let f = module
            .load_function(name)
            .map_err(|e| GpuError::driver(&format!("cuModuleGetFunction({name})"), e))?;
        if let Some(pct) = k.carveout {
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                pct,
            )
            .map_err(|e| GpuError::driver("cuFuncSetAttribute(carveout)", e))?;
        }
        fns.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// How many blocks of `threads` threads with `smem` bytes of dynamic
    /// shared memory one SM holds at once for `f` (0: none fit). The driver
    /// is asked once per (function, threads, smem): the query costs a few
    /// microseconds of host time, which a single call's latency would
    /// otherwise include before its first launch.
    pub(crate) fn blocks_per_sm(
        &self,
        f: &CudaFunction,
        threads: u32,
        smem: usize,
    ) -> Result<usize, GpuError> {
        let key = (f.cu_function() as usize, threads, smem);
        let mut cache = self.occupancy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&n) = cache.get(&key) {
            return Ok(n);
        }
        let n = f
            .occupancy_max_active_blocks_per_multiprocessor(threads, smem, None)
            .map_err(|e| GpuError::driver("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))?
            as usize;
        cache.insert(key, n);
        Ok(n)
    }

    /// Queues `f` with one by-value parameter struct.
    pub(crate) fn launch<P: cudarc::driver::DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<(), GpuError> {
        allow_dynamic_smem(f, cfg.shared_mem_bytes)?;
        let mut b = self.stream.launch_builder(f);
        b.arg(params);
        // SAFETY: `P` is the #[repr(C)] mirror of the kernel's one parameter
        // struct; every pointer in it was checked by the caller to address
        // enough device memory for the launch's shape.
        unsafe { b.launch(cfg) }.map_err(|e| GpuError::driver("cuLaunchKernel", e))?;
        Ok(())
    }

    /// Queues `f` like [`GpuContext::launch`], with programmatic dependent
    /// launch allowed (sm_90+): the kernel may start before the previous
    /// kernel on the stream ends, and must `griddepcontrol.wait` before it
    /// reads anything that kernel wrote. Before sm_90, or where the driver
    /// refuses the attribute, a plain launch.
    pub(crate) fn launch_programmatic<P: cudarc::driver::DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<(), GpuError> {
        if self.props.compute_capability.0 < 9 {
            return self.launch(f, cfg, params);
        }
        self.try_launch_programmatic(f, cfg, params)
            .or_else(|_| self.launch(f, cfg, params))
    }

    /// The launch of [`GpuContext::launch_programmatic`] with no fallback:
    /// `cuLaunchKernelEx` with the programmatic-stream-serialization
    /// attribute, its error returned (the decoder then turns PDL off).
    pub(crate) fn try_launch_programmatic<P: cudarc::driver::DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<(), GpuError> {
        use cudarc::driver::sys;
        let mut attr = launch_attr(
            sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        );
        attr.value.programmaticStreamSerializationAllowed = 1;
        self.launch_ex(f, cfg, params, attr)
    }

    /// Queues `f` as a cooperative launch: every block of the grid is
    /// resident at once, or the launch fails (its error returned, nothing
    /// queued), so blocks may wait on each other.
    pub(crate) fn try_launch_cooperative<P: cudarc::driver::DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
    ) -> Result<(), GpuError> {
        use cudarc::driver::sys;
        let mut attr = launch_attr(sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_COOPERATIVE);
        attr.value.cooperative = 1;
        self.launch_ex(f, cfg, params, attr)
    }

    /// `cuLaunchKernelEx` with one launch attribute.
    fn launch_ex<P: cudarc::driver::DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
        mut attr: cudarc::driver::sys::CUlaunchAttribute,
    ) -> Result<(), GpuError> {
        use cudarc::driver::sys;
        allow_dynamic_smem(f, cfg.shared_mem_bytes)?;
        let stream = &self.stream;
        guard("cuLaunchKernelEx", || {
            self.bind()?;
            let lc = sys::CUlaunchConfig {
                gridDimX: cfg.grid_dim.0,
                gridDimY: cfg.grid_dim.1,
                gridDimZ: cfg.grid_dim.2,
                blockDimX: cfg.block_dim.0,
                blockDimY: cfg.block_dim.1,
                blockDimZ: cfg.block_dim.2,
                sharedMemBytes: cfg.shared_mem_bytes,
                hStream: stream.cu_stream(),
                attrs: &mut attr,
                numAttrs: 1,
            };
            let mut arg = params as *const P as *mut std::ffi::c_void;
            // SAFETY: `P` is the #[repr(C)] mirror of the kernel's one
            // parameter struct (the params array holds a pointer to it);
            // the caller checked every pointer in it; `lc` and `attr`
            // outlive the call.
            unsafe { sys::cuLaunchKernelEx(&lc, f.cu_function(), &mut arg, std::ptr::null_mut()) }
                .result()
                .map_err(|e| GpuError::driver("cuLaunchKernelEx", e))
        })
    }

    /// Locks the scan's arrival counters, at least `count` u32 of them, and
    /// returns them with their device address (hold the guard until the
    /// launch is queued). A fresh area is zeroed; the kernel leaves it zero.
    pub(crate) fn counters(&self, count: usize) -> Result<(WorkspaceGuard<'_>, u64), GpuError> {
        Self::grown(
            &self.counters,
            &self.stream,
            count * 4,
            "cuMemAlloc(counters)",
        )
    }

    fn grown<'a>(
        area: &'a Mutex<Option<CudaSlice<u8>>>,
        stream: &Arc<CudaStream>,
        bytes: usize,
        what: &str,
    ) -> Result<(WorkspaceGuard<'a>, u64), GpuError> {
        let mut ws = area.lock().unwrap_or_else(|e| e.into_inner());
        let big_enough = ws.as_ref().is_some_and(|w| w.len() >= bytes);
        if !big_enough {
            // The old area is freed in stream order, after the launches that
            // were queued with it.
            *ws = None;
            let fresh = stream
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(|e| GpuError::driver(what, e))?;
            *ws = Some(fresh);
        }
        let ptr = ws
            .as_ref()
            .map(|w| w.device_ptr(stream).0)
            .ok_or_else(|| GpuError::invalid("workspace"))?;
        Ok((WorkspaceGuard { _guard: ws }, ptr))
    }

    /// Locks the scratch area, grown to at least `bytes` bytes, and returns it
    /// with its device address. Hold the guard until every launch that uses
    /// the scratch is queued: another thread's call could otherwise replace
    /// (free) it, or write it, between our launches.
    pub(crate) fn workspace(&self, bytes: usize) -> Result<(WorkspaceGuard<'_>, u64), GpuError> {
        Self::grown(
            &self.workspace,
            &self.stream,
            bytes,
            "cuMemAlloc(workspace)",
        )
    }
}

/// A launch attribute of kind `id`, its value zeroed (the caller sets the
/// field that `id` reads).
fn launch_attr(
    id: cudarc::driver::sys::CUlaunchAttributeID,
) -> cudarc::driver::sys::CUlaunchAttribute {
    // SAFETY: an all-zero CUlaunchAttribute is valid plain C data.
    let mut attr: cudarc::driver::sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = id;
    attr
}

/// Raises `f`'s dynamic shared memory limit to `bytes` where that is over
/// the 48 KiB every kernel may use without asking (both launch paths).
fn allow_dynamic_smem(f: &CudaFunction, bytes: u32) -> Result<(), GpuError> {
    if bytes > 48 * 1024 {
        f.set_attribute(
            cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .map_err(|e| GpuError::driver("cuFuncSetAttribute", e))?;
    }
    Ok(())
}

/// Keeps the context's scratch area for one caller; see [`GpuContext::workspace`].
pub(crate) struct WorkspaceGuard<'a> {
    _guard: std::sync::MutexGuard<'a, Option<CudaSlice<u8>>>,
}

/// An untyped device allocation (f16 weights, token ids, ...), crate-private.
pub(crate) struct RawBuffer {
    raw: CudaSlice<u8>,
    /// Device address of the first byte.
    pub ptr: u64,
    /// Size in bytes.
    pub bytes: usize,
}

/// Pinned, device-mapped host memory (see [`GpuContext::host_mapped`]).
pub(crate) struct HostMapped {
    host: *mut u8,
    len: usize,
    /// The device address of the first byte.
    pub dev: u64,
    ctx: Arc<CudaContext>,
}

// SAFETY: a plain allocation owned by this value; no thread affinity.
unsafe impl Send for HostMapped {}
// SAFETY: shared access only reads the pointer values.
unsafe impl Sync for HostMapped {}

impl Drop for GpuContext {
    fn drop(&mut self) {
        // A module unloads when its last handle goes, often here: under the
        // device gate, like its load (see `device_gate`).
        let _gate = device_gate();
        self.functions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.modules
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl HostMapped {
    /// The host view, to fill it (only while no queued kernel reads it).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `host` points to `len` bytes we own for our lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.host, self.len) }
    }
}

impl Drop for HostMapped {
    fn drop(&mut self) {
        let _gate = device_gate();
        let _ = self.ctx.bind_to_thread();
        // Kernels queued on the context's stream may still read it.
        let _ = self.ctx.synchronize();
        // SAFETY: allocated by cuMemHostAlloc in `host_mapped`, freed once.
        let _ = unsafe { cudarc::driver::result::free_host(self.host.cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn device_gate_is_reentrant_and_exclusive() {
        // Re-entrant on one thread (a capture that loads a module).
        {
            let _a = device_gate();
            let _b = device_gate();
        }
        // Released: other threads get it, one at a time.
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _g = device_gate();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // And this thread can take it again.
        let _c = device_gate();
    }
}
