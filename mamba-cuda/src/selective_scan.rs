//! The fused selective scan (`kernels/selective_scan.cu`): launch planning,
//! argument checks and the host-slice convenience wrapper.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use crate::buffer::{Element, GpuBuffer, MatView, MatViewMut};
use crate::compile::SELECTIVE_SCAN;
use crate::context::GpuContext;
use crate::error::GpuError;

/// Largest state size (N) the kernels take.
pub const MAX_STATE: usize = 256;

/// Threads per block of the scan kernels (`SCAN_THREADS` in the .cu file).
const THREADS: usize = 128;
/// Tokens loaded together (`SCAN_GROUP`); tiles are a multiple of it.
const GROUP: usize = 4;
/// Shortest chunk the planner makes when it splits the sequence.
const MIN_CHUNK: usize = 32;

/// The sizes of one scan call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    /// Independent sequences.
    pub batch: usize,
    /// Tokens per sequence (L).
    pub len: usize,
    /// Channels (E, d_inner).
    pub channels: usize,
    /// State size (N, d_state), 1..=256.
    pub state: usize,
}

/// The inputs of [`GpuContext::selective_scan`]. Shapes use [`ScanShape`]'s names.
pub struct ScanInputs<'a, T: Element> {
    /// (batch, L, E).
    pub u: MatView<'a, T>,
    /// (batch, L, E), before softplus and bias.
    pub delta: MatView<'a, T>,
    /// (batch, L, E): the gate, y *= silu(z); `None`: no gate.
    pub z: Option<MatView<'a, T>>,
    /// (batch, L, N).
    pub b: MatView<'a, T>,
    /// (batch, L, N).
    pub c: MatView<'a, T>,
    /// (E, N), already negative: -exp(A_log).
    pub a: &'a GpuBuffer<f32>,
    /// (E): the skip, y += D * u; `None`: no skip.
    pub d: Option<&'a GpuBuffer<f32>>,
    /// (E): added to delta before softplus; `None`: zero.
    pub delta_bias: Option<&'a GpuBuffer<f32>>,
    /// (batch, E, N): the state before the first token; `None`: zero.
    pub initial_state: Option<&'a GpuBuffer<f32>>,
    /// Tokens per chunk of the sequence split; `None` (the normal choice):
    /// planned from the device's size. For tests and tuning.
    pub chunk_len: Option<usize>,
    /// How a split sequence is run (normally [`ScanSplit::Auto`]).
    pub split: ScanSplit,
}

/// How a call whose sequence is cut into chunks runs: three kernels (chunk
/// summaries, the chunk chains, the output), or one cooperative launch whose
/// blocks meet at counters instead of kernel boundaries (where its grid fits
/// the device at once; otherwise three kernels anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanSplit {
    /// One launch where it measured faster (at least 16 chunks of at least
    /// 64 tokens); `MAMBA_CUDA_SCAN_FUSED=0` or `=1` overrides it.
    #[default]
    Auto,
    /// Always three kernels.
    ThreeKernels,
    /// One launch wherever it fits.
    OneLaunch,
}

/// The same inputs as host slices, contiguous: (batch, L, E) for u, delta, z;
/// (batch, L, N) for B, C; (E, N) for A; (E) for D and the bias; (batch, E, N)
/// for the initial state.
pub struct HostScanInputs<'a, T: Element> {
    /// (batch, L, E).
    pub u: &'a [T],
    /// (batch, L, E).
    pub delta: &'a [T],
    /// (batch, L, E).
    pub z: Option<&'a [T]>,
    /// (batch, L, N).
    pub b: &'a [T],
    /// (batch, L, N).
    pub c: &'a [T],
    /// (E, N).
    pub a: &'a [f32],
    /// (E).
    pub d: Option<&'a [f32]>,
    /// (E).
    pub delta_bias: Option<&'a [f32]>,
    /// (batch, E, N).
    pub initial_state: Option<&'a [f32]>,
    /// See [`ScanInputs::chunk_len`].
    pub chunk_len: Option<usize>,
    /// See [`ScanInputs::split`].
    pub split: ScanSplit,
}

/// What [`GpuContext::selective_scan_host`] returns.
#[derive(Debug, Clone)]
pub struct ScanOutput<T> {
    /// (batch, L, E).
    pub y: Vec<T>,
    /// (batch, E, N): the state after the last token.
    pub final_state: Vec<f32>,
    /// How the call ran.
    pub path: ScanPath,
}

/// How a call ran (what [`GpuContext::selective_scan`] returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanPath {
    /// The sequence in one piece: one kernel.
    OnePass,
    /// Split into chunks: summaries, chains and output as three kernels.
    ThreeKernels,
    /// Split into chunks, in one cooperative launch.
    OneLaunch,
}

/// Mirror of `ScanParams` in selective_scan.cu (same field order and types).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ScanParams {
    u: u64,
    delta: u64,
    z: u64,
    b: u64,
    c: u64,
    a: u64,
    d: u64,
    delta_bias: u64,
    s0: u64,
    y: u64,
    s_final: u64,
    chunk_state: u64,
    chunk_dsum: u64,
    tl: u64,
    bar: u64,
    u_bs: i64,
    u_rs: i64,
    delta_bs: i64,
    delta_rs: i64,
    z_bs: i64,
    z_rs: i64,
    b_bs: i64,
    b_rs: i64,
    c_bs: i64,
    c_rs: i64,
    y_bs: i64,
    y_rs: i64,
    batch: i32,
    l: i32,
    e: i32,
    n: i32,
    g: i32,
    npad: i32,
    chunk_len: i32,
    nchunks: i32,
    tile_len: i32,
    staged: i32,
    comb_w: i32,
}

// SAFETY: plain #[repr(C)] data, laid out as the kernel's by-value struct.
unsafe impl DeviceRepr for ScanParams {}

/// How one call is cut up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanPlan {
    /// States per thread (1, 2, 4, 8, 16).
    pub nt: usize,
    /// Threads per channel.
    pub g: usize,
    /// N rounded up to g * nt.
    pub npad: usize,
    pub chunk_len: usize,
    pub nchunks: usize,
    pub tile_len: usize,
}

/// States per thread and threads per channel for state size `n`: NT states
/// in registers (at most 16, or `max_nt`), G = N / NT lanes per channel.
pub(crate) fn state_split(n: usize, max_nt: usize) -> (usize, usize, usize) {
    let nt = n
        .next_power_of_two()
        .min(16)
        .min(max_nt.max(1).next_power_of_two());
    let g = n.div_ceil(nt).next_power_of_two();
    (nt, g, g * nt)
}

/// Tokens of B and C staged in shared memory per tile: tile_len * npad <= 1024
/// (the kernel's TILE_PER_THREAD bound), a multiple of GROUP.
pub(crate) fn tile_len(npad: usize) -> usize {
    ((1024 / npad).clamp(GROUP, 64) / GROUP) * GROUP
}

/// Plans a call. `resident_threads` is how many threads of the output kernel
/// the whole device holds at once (SM count times the kernel's occupancy), so
/// the split adapts to the device (132 SMs on an H200, 8-16 on a Jetson Orin)
/// and to the kernel's register use. The sequence is split only when batch *
/// channels alone would fill less than half of that: a single pass at half
/// occupancy beats doing the exponentials twice (measured on the H200:
/// 16 x 5120 channels run faster in one pass, 8 x 1536 much faster split).
///
/// The chunks are as many as one full wave of output blocks holds (every
/// chunk's block runs at once: rounding up left a second wave of a few blocks
/// that took as long as the first, NOTES.md v7), and the sequence is cut
/// evenly among them: chunk c is tokens [c L / n, (c + 1) L / n) (the kernels
/// compute the same), so no SM gets a longer chunk than another. `chunk_len`
/// is the longest chunk. An override asks for chunks of at most that length.
pub(crate) fn plan(
    shape: ScanShape,
    resident_threads: usize,
    max_nt: usize,
    chunk_override: Option<usize>,
) -> ScanPlan {
    let (nt, g, npad) = state_split(shape.state, max_nt);
    let l = shape.len;
    let nchunks = if l == 0 {
        1
    } else {
        let want = match chunk_override {
            Some(c) => l.div_ceil(c.max(1)),
            None => {
                let per_chunk = shape.batch * shape.channels * g;
                if per_chunk * 2 >= resident_threads {
                    1
                } else {
                    let blocks = shape.batch * shape.channels.div_ceil(THREADS / g);
                    (resident_threads / THREADS / blocks)
                        .max(1)
                        .min((l / MIN_CHUNK).max(1))
                }
            }
        };
        // Grid y (the chunks) is at most 65535.
        want.clamp(1, l.min(65535))
    };
    ScanPlan {
        nt,
        g,
        npad,
        chunk_len: l.div_ceil(nchunks),
        nchunks,
        tile_len: tile_len(npad),
    }
}

/// Threads per block of `scan_combine`.
const COMBINE_THREADS: usize = 256;
/// Chunk summaries one combine lane folds from registers (`COMBINE_SEG`).
const COMBINE_SEG: usize = 16;

/// Lanes per (batch, channel, state) chain in `scan_combine`: enough that
/// each lane's segment of the nchunks - 1 start states fits COMBINE_SEG, at
/// most a warp.
fn combine_lanes(nchunks: usize) -> usize {
    (nchunks.saturating_sub(1).div_ceil(COMBINE_SEG))
        .next_power_of_two()
        .clamp(1, 32)
}

/// The scan's tuning and diagnostic settings from the environment, read once
/// per process: `std::env::var` takes a lock and scans the environment, and
/// a call's latency includes everything the host does before its first
/// launch.
struct Knobs {
    /// `MAMBA_CUDA_SCAN_COMBINE_W`, see [`combine_w_override`].
    combine_w: Option<usize>,
    /// `MAMBA_CUDA_SCAN_PDL`, see [`pdl_on`].
    pdl: bool,
    /// `MAMBA_CUDA_SCAN_FUSED`: `Some(false)` for `0`, `Some(true)` for `1`.
    fused: Option<bool>,
    /// `MAMBA_CUDA_SCAN_STAGE`, see [`stage_on`].
    stage: bool,
    /// `MAMBA_CUDA_SCAN_MAX_NT`, see [`max_nt`].
    max_nt: usize,
    /// `MAMBA_CUDA_SCAN_TIMELINE=1`.
    timeline: bool,
}

fn knobs() -> &'static Knobs {
    static KNOBS: std::sync::OnceLock<Knobs> = std::sync::OnceLock::new();
    KNOBS.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok();
        Knobs {
            combine_w: var("MAMBA_CUDA_SCAN_COMBINE_W")
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|w| w.is_power_of_two() && *w <= 32),
            pdl: var("MAMBA_CUDA_SCAN_PDL").is_none_or(|v| v != "0"),
            fused: match var("MAMBA_CUDA_SCAN_FUSED").as_deref() {
                Some("0") => Some(false),
                Some("1") => Some(true),
                _ => None,
            },
            stage: var("MAMBA_CUDA_SCAN_STAGE").is_none_or(|v| v != "0"),
            max_nt: var("MAMBA_CUDA_SCAN_MAX_NT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(16),
            timeline: var("MAMBA_CUDA_SCAN_TIMELINE").is_some_and(|v| v == "1"),
        }
    })
}

/// `MAMBA_CUDA_SCAN_COMBINE_W` (a power of two up to 32) overrides the lanes
/// per chain of either chain step, for A/B.
fn combine_w_override() -> Option<usize> {
    knobs().combine_w
}

/// `MAMBA_CUDA_SCAN_PDL=0` launches the split scan's second and third
/// kernels plainly instead of with programmatic dependent launch (for A/B).
fn pdl_on() -> bool {
    knobs().pdl
}

/// Whether a split call runs as the single cooperative launch
/// (`scan_fused_*`) where its grid fits the device at once. Measured on the
/// H200 (NOTES.md, v10): 2.5-7% faster than the three kernels at 16 to 55
/// chunks of 298 to 2383 tokens; even at 54 chunks of 38 tokens; 12% slower
/// at 6 chunks (8 x 1536 x 2048), where the three-kernel split runs chunk 0's
/// output sweep beside the first sweep on the SMs it leaves free. So, for
/// [`ScanSplit::Auto`]: at least 16 chunks of at least 64 tokens, unless
/// `MAMBA_CUDA_SCAN_FUSED` is `0` (never) or `1` (wherever it fits).
fn fused_wanted(split: ScanSplit, plan: &ScanPlan) -> bool {
    match split {
        ScanSplit::ThreeKernels => false,
        ScanSplit::OneLaunch => true,
        ScanSplit::Auto => knobs()
            .fused
            .unwrap_or(plan.nchunks >= 16 && plan.chunk_len >= 64),
    }
}

/// Lanes per chain in `scan_fused_*`: the chains of a channel block
/// (THREADS * npad) share the nchunks * THREADS threads of its blocks, so as
/// many lanes as fit whole (a power of two, 1 to 32; with 1 a lane may take
/// several chains).
fn fused_lanes(nchunks: usize, npad: usize) -> usize {
    let fit = (nchunks / npad).max(1);
    (1usize << fit.ilog2()).min(32)
}

/// Chunks a lane of `scan_fused_*`'s chains holds in registers (`FUSED_SEG`).
const FUSED_SEG: usize = 32;

/// Whether `scan_fused_*`'s chain step fits at `w` lanes a chain: each lane's
/// segment in FUSED_SEG registers, and the dt sums of the channels one block's
/// lanes cover (at most THREADS / (w * npad) + 1, a row of nchunks - 1 each)
/// in its `smem` bytes of shared memory.
fn fused_fits(nchunks: usize, npad: usize, w: usize, smem: usize) -> bool {
    let seg = (nchunks - 1).div_ceil(w);
    let rows = THREADS.div_ceil(w * npad) + 1;
    seg <= FUSED_SEG && rows * (nchunks - 1) * 4 <= smem
}

/// `MAMBA_CUDA_SCAN_STAGE=0` keeps the plain kernel body (inputs loaded from
/// global memory group by group) where the staged one could run (for A/B).
fn stage_on() -> bool {
    knobs().stage
}

/// Bytes of dynamic shared memory of the staged body (`scan_body_staged`):
/// two buffers of u, delta and z (32 bytes per channel and array each), then
/// the B and C tiles in f32.
fn staged_smem(elem_bytes: usize, npad: usize) -> usize {
    let tt = 32 / elem_bytes;
    2 * 3 * 32 * THREADS + 2 * tt * npad * 4
}

/// Whether the staged body can run: one thread per channel (N <= 16), and
/// every row of u, delta and z starts on 16 bytes with whole 16-byte copies
/// per row (E a multiple of 16 / element size).
fn stage_fits<T: Element>(g: usize, e: usize, views: &[(u64, usize, usize)]) -> bool {
    let sz = std::mem::size_of::<T>();
    g == 1
        && (e * sz) % 16 == 0
        && views
            .iter()
            .all(|&(ptr, bs, rs)| ptr % 16 == 0 && (bs * sz) % 16 == 0 && (rs * sz) % 16 == 0)
}

/// `MAMBA_CUDA_SCAN_MAX_NT`: a tuning aid capping the states per thread
/// (spreading N = 16 over 2 lanes with 8 each, say).
fn max_nt() -> usize {
    knobs().max_nt
}

fn check_len(what: &str, buf_len: usize, want: usize) -> Result<(), GpuError> {
    if buf_len != want {
        return Err(GpuError::invalid(format!(
            "{what}: {buf_len} elements, expected {want}"
        )));
    }
    Ok(())
}

fn to_i32(what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::invalid(format!("{what} = {v} is too large")))
}

fn to_i64(v: usize) -> i64 {
    // Strides were checked to address inside a buffer, so they fit.
    v as i64
}

impl GpuContext {
    /// Queues the fused selective scan: y (batch, L, E) and the final state
    /// (batch, E, N) from [`ScanInputs`]. `final_state` must not be the
    /// initial state's buffer (the borrow rules see to it). To prefill in
    /// pieces, pass each call's final state as the next call's initial state.
    /// Returns how the call runs.
    pub fn selective_scan<T: Element>(
        &self,
        shape: ScanShape,
        inputs: &ScanInputs<'_, T>,
        y: MatViewMut<'_, T>,
        final_state: &mut GpuBuffer<f32>,
    ) -> Result<ScanPath, GpuError> {
        let ScanShape {
            batch,
            len,
            channels: e,
            state: n,
        } = shape;
        if n == 0 || n > MAX_STATE {
            return Err(GpuError::invalid(format!(
                "state size {n} is outside 1..={MAX_STATE}"
            )));
        }
        if batch > 65535 {
            return Err(GpuError::invalid(format!("batch {batch} is over 65535")));
        }
        let u = inputs.u.check("u", batch, len, e)?;
        let delta = inputs.delta.check("delta", batch, len, e)?;
        let z = match &inputs.z {
            Some(z) => z.check("z", batch, len, e)?,
            None => 0,
        };
        let bp = inputs.b.check("B", batch, len, n)?;
        let cp = inputs.c.check("C", batch, len, n)?;
        let yp = y.check("y", batch, len, e)?;
        check_len("A", inputs.a.len(), e * n)?;
        if let Some(d) = inputs.d {
            check_len("D", d.len(), e)?;
        }
        if let Some(bias) = inputs.delta_bias {
            check_len("delta_bias", bias.len(), e)?;
        }
        if let Some(s0) = inputs.initial_state {
            check_len("initial_state", s0.len(), batch * e * n)?;
        }
        check_len("final_state", final_state.len(), batch * e * n)?;

        let (nt, g, npad) = state_split(n, max_nt());
        // A batch stride matters only when there is more than one sequence.
        let bs = |s: usize| if batch > 1 { s } else { 0 };
        let mut views = vec![
            (u, bs(inputs.u.batch_stride), inputs.u.row_stride),
            (
                delta,
                bs(inputs.delta.batch_stride),
                inputs.delta.row_stride,
            ),
        ];
        if let Some(zv) = &inputs.z {
            views.push((z, bs(zv.batch_stride), zv.row_stride));
        }
        let staged = stage_on() && stage_fits::<T>(g, e, &views);
        let smem = if staged {
            staged_smem(std::mem::size_of::<T>(), npad)
        } else {
            2 * tile_len(npad) * npad * 4
        } as u32;
        let suffix = format!("{}_nt{}", T::NAME, nt);
        let f_out = self.function(&SELECTIVE_SCAN, &format!("scan_output_{suffix}"))?;
        let props = self.props();
        let per_sm = self
            .blocks_per_sm(&f_out, THREADS as u32, smem as usize)?
            .max(1);
        let resident = props.sm_count as usize * per_sm * THREADS;
        let plan = plan(shape, resident, max_nt(), inputs.chunk_len);
        let mut p = ScanParams {
            u,
            delta,
            z,
            b: bp,
            c: cp,
            a: inputs.a.ptr,
            d: inputs.d.map_or(0, |d| d.ptr),
            delta_bias: inputs.delta_bias.map_or(0, |b| b.ptr),
            s0: inputs.initial_state.map_or(0, |s| s.ptr),
            y: yp,
            s_final: final_state.ptr,
            u_bs: to_i64(inputs.u.batch_stride),
            u_rs: to_i64(inputs.u.row_stride),
            delta_bs: to_i64(inputs.delta.batch_stride),
            delta_rs: to_i64(inputs.delta.row_stride),
            z_bs: inputs.z.as_ref().map_or(0, |z| to_i64(z.batch_stride)),
            z_rs: inputs.z.as_ref().map_or(0, |z| to_i64(z.row_stride)),
            b_bs: to_i64(inputs.b.batch_stride),
            b_rs: to_i64(inputs.b.row_stride),
            c_bs: to_i64(inputs.c.batch_stride),
            c_rs: to_i64(inputs.c.row_stride),
            y_bs: to_i64(y.batch_stride),
            y_rs: to_i64(y.row_stride),
            batch: to_i32("batch", batch)?,
            l: to_i32("L", len)?,
            e: to_i32("E", e)?,
            n: to_i32("N", n)?,
            g: plan.g as i32,
            npad: plan.npad as i32,
            chunk_len: to_i32("chunk", plan.chunk_len)?,
            nchunks: plan.nchunks as i32,
            tile_len: plan.tile_len as i32,
            staged: staged as i32,
            ..Default::default()
        };
        let channels_per_block = THREADS / plan.g;
        let grid_x = to_i32("grid", e.div_ceil(channels_per_block))? as u32;
        // The split's second and third kernels may start early (PDL).
        let pdl = plan.nchunks > 1 && pdl_on();
        let launch_next = |f: &cudarc::driver::CudaFunction, cfg: LaunchConfig, p: &ScanParams| {
            if pdl {
                self.launch_programmatic(f, cfg, p)
            } else {
                self.launch(f, cfg, p)
            }
        };
        let timeline = self.timeline_start(grid_x as usize * plan.nchunks * batch)?;
        if let Some(b) = &timeline {
            p.tl = b.ptr;
        }
        // Held until the last launch is queued (see `GpuContext::workspace`).
        let mut _ws_guard = None;
        if plan.nchunks > 1 {
            // The kernels are looked up (loaded, on first use, under the
            // device gate) before the workspace is locked: nothing waits for
            // the gate while holding a workspace.
            let try_fused = staged && fused_wanted(inputs.split, &plan);
            let f_fused = if try_fused {
                Some(self.function(&SELECTIVE_SCAN, &format!("scan_fused_{suffix}"))?)
            } else {
                None
            };
            let f_state = self.function(&SELECTIVE_SCAN, &format!("scan_chunk_state_{suffix}"))?;
            let f_combine = self.function(&SELECTIVE_SCAN, "scan_combine")?;
            let state_elems = batch * plan.nchunks * e * plan.npad;
            let dsum_elems = batch * plan.nchunks * e;
            let (guard, ws) = self.workspace((state_elems + dsum_elems) * 4)?;
            _ws_guard = Some(guard);
            p.chunk_state = ws;
            p.chunk_dsum = ws + (state_elems * 4) as u64;
            // The whole split in one cooperative launch where the grid fits
            // the device at once (the staged body only).
            if let Some(f) = &f_fused {
                let per_sm = self.blocks_per_sm(f, THREADS as u32, smem as usize)?;
                let blocks = grid_x as usize * plan.nchunks * batch;
                let w =
                    combine_w_override().unwrap_or_else(|| fused_lanes(plan.nchunks, plan.npad));
                if blocks <= per_sm * props.sm_count as usize
                    && fused_fits(plan.nchunks, plan.npad, w, smem as usize)
                {
                    // One 128-byte line a counter (`SCAN_BAR_STRIDE`).
                    let (cguard, bar) = self.counters(grid_x as usize * batch * 32)?;
                    let mut pf = p;
                    pf.bar = bar;
                    pf.comb_w = w as i32;
                    // Chunks last (see blk_chunk in the kernel).
                    let cfg = LaunchConfig {
                        grid_dim: (grid_x, batch as u32, plan.nchunks as u32),
                        block_dim: (THREADS as u32, 1, 1),
                        shared_mem_bytes: smem,
                    };
                    // Refused (the device is shared, say): the three kernels.
                    if self.try_launch_cooperative(f, cfg, &pf).is_ok() {
                        drop(cguard);
                        if let Some(b) = timeline {
                            self.timeline_print(&b, grid_x as usize)?;
                        }
                        return Ok(ScanPath::OneLaunch);
                    }
                }
            }
            let cfg = LaunchConfig {
                grid_dim: (grid_x, (plan.nchunks - 1) as u32, batch as u32),
                block_dim: (THREADS as u32, 1, 1),
                shared_mem_bytes: smem,
            };
            self.launch(&f_state, cfg, &p)?;
            let w = combine_w_override().unwrap_or_else(|| combine_lanes(plan.nchunks));
            p.comb_w = w as i32;
            let threads = batch * e * plan.npad * w;
            let cfg = LaunchConfig {
                grid_dim: (
                    to_i32("grid", threads.div_ceil(COMBINE_THREADS))? as u32,
                    1,
                    1,
                ),
                block_dim: (COMBINE_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch_next(&f_combine, cfg, &p)?;
        }
        let cfg = LaunchConfig {
            grid_dim: (grid_x, plan.nchunks as u32, batch as u32),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        launch_next(&f_out, cfg, &p)?;
        if let Some(b) = timeline {
            self.timeline_print(&b, grid_x as usize)?;
        }
        Ok(if plan.nchunks > 1 {
            ScanPath::ThreeKernels
        } else {
            ScanPath::OnePass
        })
    }

    /// A diagnostic: with kernels built with -DSCAN_TIMELINE=1,
    /// MAMBA_CUDA_SCAN_TIMELINE=1 gives each call a buffer of 10 phases'
    /// (first, last) globaltimer stamps, u64 pairs held as f32 bit patterns
    /// (first at u64::MAX, last at 0 before the run).
    fn timeline_start(&self, blocks: usize) -> Result<Option<GpuBuffer<f32>>, GpuError> {
        if !knobs().timeline {
            return Ok(None);
        }
        let init: Vec<f32> = (0..40 + 12 * blocks)
            .map(|i| f32::from_bits(if i < 40 && i % 4 < 2 { u32::MAX } else { 0 }))
            .collect();
        self.upload(&init).map(Some)
    }

    /// Prints [`GpuContext::timeline_start`]'s buffer after the launches (waits
    /// for them): when the blocks of each phase first and last reached it, in
    /// µs after the first chunk-state block. With MAMBA_CUDA_SCAN_BLOCKLOG=FILE
    /// also appends each block's line (x, b * nchunks + chunk, SM and µs of
    /// its chunk-state start and end, SM and µs of its output start and end).
    fn timeline_print(&self, b: &GpuBuffer<f32>, grid_x: usize) -> Result<(), GpuError> {
        let raw = self.download(b)?;
        let t: Vec<u64> = raw
            .chunks(2)
            .map(|w| w[0].to_bits() as u64 | ((w[1].to_bits() as u64) << 32))
            .collect();
        if let Ok(path) = std::env::var("MAMBA_CUDA_SCAN_BLOCKLOG") {
            use std::io::Write;
            let rel = |v: u64| {
                if v == 0 {
                    -1.0
                } else {
                    (v as f64 - t[0] as f64) / 1000.0
                }
            };
            let mut out = String::from("call\n");
            for (i, r) in t[20..].chunks(6).enumerate() {
                let (x, rest) = (i % grid_x, i / grid_x);
                out += &format!(
                    "{x} {rest} {} {:.2} {:.2} {} {:.2} {:.2}\n",
                    r[0],
                    rel(r[1]),
                    rel(r[2]),
                    r[3],
                    rel(r[4]),
                    rel(r[5])
                );
            }
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(out.as_bytes());
            }
        }
        let names = [
            "chunk-state start",
            "chunk-state first tile ready",
            "chunk-state end",
            "combine start",
            "combine after wait",
            "output start",
            "output after wait",
            "output first tile ready",
            "output end",
            "combine end",
        ];
        let us = |v: u64| {
            if v == u64::MAX || v == 0 {
                f64::NAN
            } else {
                (v as f64 - t[0] as f64) / 1000.0
            }
        };
        let mut line = String::from("timeline µs:");
        for (i, n) in names.iter().enumerate() {
            line += &format!(" | {n} {:.1}..{:.1}", us(t[2 * i]), us(t[2 * i + 1]));
        }
        eprintln!("{line}");
        Ok(())
    }

    /// [`GpuContext::selective_scan`] on host slices: uploads, runs (the
    /// outputs poisoned with NaN first, so an element the kernel misses shows)
    /// and downloads.
    pub fn selective_scan_host<T: Element>(
        &self,
        shape: ScanShape,
        inputs: &HostScanInputs<'_, T>,
    ) -> Result<ScanOutput<T>, GpuError> {
        let ScanShape {
            batch,
            len,
            channels: e,
            state: n,
        } = shape;
        let u = self.upload(inputs.u)?;
        let delta = self.upload(inputs.delta)?;
        let z = inputs.z.map(|z| self.upload(z)).transpose()?;
        let b = self.upload(inputs.b)?;
        let c = self.upload(inputs.c)?;
        let a = self.upload(inputs.a)?;
        let d = inputs.d.map(|d| self.upload(d)).transpose()?;
        let bias = inputs.delta_bias.map(|d| self.upload(d)).transpose()?;
        let s0 = inputs.initial_state.map(|s| self.upload(s)).transpose()?;
        let mut y = self.upload(&vec![T::from_f32(f32::NAN); batch * len * e])?;
        let mut fin = self.upload(&vec![f32::NAN; batch * e * n])?;
        let dev = ScanInputs {
            u: u.as_mat(len, e),
            delta: delta.as_mat(len, e),
            z: z.as_ref().map(|z| z.as_mat(len, e)),
            b: b.as_mat(len, n),
            c: c.as_mat(len, n),
            a: &a,
            d: d.as_ref(),
            delta_bias: bias.as_ref(),
            initial_state: s0.as_ref(),
            chunk_len: inputs.chunk_len,
            split: inputs.split,
        };
        let path = self.selective_scan(shape, &dev, y.as_mat_mut(len, e), &mut fin)?;
        Ok(ScanOutput {
            y: self.download(&y)?,
            final_state: self.download(&fin)?,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An H200 holding 4 blocks of 128 threads per SM (126 registers each).
    const H200: usize = 132 * 4 * 128;
    /// A 16-SM Jetson Orin, same kernel.
    const ORIN: usize = 16 * 4 * 128;

    fn shape(batch: usize, len: usize, channels: usize, state: usize) -> ScanShape {
        ScanShape {
            batch,
            len,
            channels,
            state,
        }
    }

    #[test]
    fn staged_body_only_where_rows_are_aligned() {
        // u and z as the two halves of in_proj's (L, 2E) output, delta (L, E).
        let views = |e: usize, base: u64| {
            [
                (base, 0, 2 * e),
                (base + 4096, 0, e),
                (base + 2 * e as u64, 0, 2 * e),
            ]
        };
        assert!(stage_fits::<half::bf16>(1, 1536, &views(1536, 0)));
        assert!(stage_fits::<f32>(1, 1536, &views(1536, 0)));
        // 16 states per thread only; E a multiple of 8 (bf16) or 4 (f32).
        assert!(!stage_fits::<half::bf16>(2, 1536, &views(1536, 0)));
        assert!(!stage_fits::<half::bf16>(1, 1540, &views(1540, 0)));
        assert!(stage_fits::<f32>(1, 1540, &[(0, 0, 1540), (0, 0, 1540)]));
        assert!(!stage_fits::<f32>(1, 1538, &[(0, 0, 1538), (0, 0, 1538)]));
        // A base or a stride off 16 bytes.
        assert!(!stage_fits::<f32>(1, 64, &[(8, 0, 64)]));
        assert!(!stage_fits::<f32>(1, 64, &[(0, 0, 66)]));
        assert!(!stage_fits::<f32>(1, 64, &[(0, 6, 64)]));
        // Shared memory: 24 KiB of inputs and the B / C tiles.
        assert_eq!(staged_smem(2, 16), 24576 + 2048);
        assert_eq!(staged_smem(4, 16), 24576 + 1024);
    }

    #[test]
    fn combine_segments_fit() {
        for nchunks in 2..3000 {
            let w = combine_lanes(nchunks);
            assert!(w.is_power_of_two() && w <= 32, "{nchunks}: {w}");
            // Every start state has a lane; segments fit in registers up to 512 chunks.
            let seg = (nchunks - 1).div_ceil(w);
            assert!(seg * w >= nchunks - 1);
            if nchunks <= 513 {
                assert!(seg <= COMBINE_SEG, "{nchunks}: {w} x {seg}");
            }
        }
        assert_eq!(combine_lanes(64), 4);
        assert_eq!(combine_lanes(2), 1);
    }

    #[test]
    fn fused_lanes_fit_the_blocks() {
        for npad in [1, 2, 4, 8, 16] {
            for nchunks in 2..700 {
                let w = fused_lanes(nchunks, npad);
                assert!(w.is_power_of_two() && w <= 32, "{nchunks} {npad}: {w}");
                // The channel block's chain lanes fit its blocks' threads
                // unless one lane a chain is already too many.
                assert!(
                    w == 1 || THREADS * npad * w <= nchunks * THREADS,
                    "{nchunks} {npad}: {w}"
                );
            }
        }
        // 1 x 1536 x 2048 on the H200: 54 chunks of 16 states, 2 lanes.
        // Whatever the device's size (one wave is at most ~5 blocks an SM).
        for npad in [1, 2, 4, 8, 16] {
            for nchunks in 2..1000 {
                let w = fused_lanes(nchunks, npad);
                let smem = staged_smem(2, npad).min(staged_smem(4, npad));
                assert!(fused_fits(nchunks, npad, w, smem), "{nchunks} {npad}");
            }
        }
        assert_eq!(fused_lanes(54, 16), 2);
        assert_eq!(fused_lanes(10, 16), 1);
        assert_eq!(fused_lanes(640, 1), 32);
    }

    #[test]
    fn state_split_covers_n() {
        for n in 1..=MAX_STATE {
            let p = plan(shape(1, 10, 8, n), H200, 16, None);
            assert!(p.npad >= n && p.npad == p.g * p.nt, "{n}: {p:?}");
            assert!(p.g <= 32 && p.g.is_power_of_two());
            assert!(p.tile_len % GROUP == 0 && p.tile_len >= GROUP);
            assert!(p.tile_len * p.npad <= 1024 && 2 * p.tile_len * p.npad * 4 <= 48 * 1024);
        }
    }

    #[test]
    fn chunks_only_when_channels_are_few() {
        // 64 x 1536 channels fill an H200 alone.
        assert_eq!(plan(shape(64, 1024, 1536, 16), H200, 16, None).nchunks, 1);
        // Batch 1 with 1536 channels is split...
        let p = plan(shape(1, 2048, 1536, 16), H200, 16, None);
        assert!(p.nchunks > 1 && p.chunk_len >= MIN_CHUNK, "{p:?}");
        // ... and an Orin, with 8x fewer multiprocessors, splits less.
        let q = plan(shape(1, 131072, 1536, 16), ORIN, 16, None);
        let r = plan(shape(1, 131072, 1536, 16), H200, 16, None);
        assert!(q.nchunks < r.nchunks, "{q:?} {r:?}");
        // The split fills at most one wave of blocks (the output kernel runs
        // every chunk; the table's shapes, 6 blocks per SM).
        for (b, e, l) in [
            (1, 1536, 2048),
            (1, 1536, 16384),
            (8, 1536, 2048),
            (1, 5120, 8192),
        ] {
            let p = plan(shape(b, l, e, 16), 132 * 6 * 128, 16, None);
            assert!(
                p.nchunks > 1 && p.nchunks * b * e.div_ceil(128) <= 132 * 6,
                "{p:?}"
            );
        }
        // Even chunks of at least MIN_CHUNK tokens, none empty.
        for l in [1, 7, 31, 32, 33, 1000, 5000, 200_000] {
            for chunk in [None, Some(1), Some(37), Some(l)] {
                let p = plan(shape(1, l, 4, 16), H200, 16, chunk);
                assert!(
                    p.nchunks >= 1
                        && p.nchunks <= l.min(65535)
                        && p.chunk_len == l.div_ceil(p.nchunks)
                        && (chunk.is_some() || p.nchunks == 1 || l / p.nchunks >= MIN_CHUNK)
                        && chunk.is_none_or(|c| p.chunk_len <= c || p.nchunks == 65535),
                    "{l} {chunk:?}: {p:?}"
                );
            }
        }
        // 1 x 1536 x 2048 on an H200 at 5 blocks an SM: 55 chunks of 37-38
        // tokens, so the output sweep fills every block slot once.
        let p = plan(shape(1, 2048, 1536, 16), 132 * 5 * 128, 16, None);
        assert_eq!((p.nchunks, p.chunk_len), (55, 38), "{p:?}");
    }
}
