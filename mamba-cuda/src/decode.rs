//! Streaming decode on the GPU for many independent streams ([`GpuDecoder`]).
//!
//! Each stream owns a state slot on the device: per layer the (K-1, E) conv
//! window (oldest first) then the (E, N) SSM state, f32, exactly mamba-core's
//! state layout, so [`GpuDecoder::save_slot`] returns what a mamba-core
//! session holds and [`GpuDecoder::load_slot`] takes it back. One step takes
//! a batch of `(slot, token)` or `(slot, input vector)` pairs, any subset of
//! the allocated slots in any order (each at most once): streams join and
//! leave between steps.
//!
//! Per layer, for the `b` streams of a step (kernels in `kernels/decode_*.cu`):
//!   1. in_proj with the RMSNorm fused into its prologue (`decode_gemv.cu`,
//!      a batch-1 entry for one stream), reading the weights in their type
//!      (F32, F16, BF16; Q8_0 and Q4_0 repacked at load into 8-byte-aligned
//!      superblocks, the same values); or, for `b >= gemm_min_batch`,
//!      `rmsnorm.cu` + a cuBLAS tensor-core GEMM;
//!   2. conv window update + SiLU + this channel chunk's part of x_proj
//!      (`decode_conv.cu`);
//!   3. the chunk sums of x_proj, dt_proj + softplus, the state update in
//!      place in the slot, D skip and z gate (`decode_ssm.cu`); from 64
//!      streams (`MAMBA_DECODE_SSM_SPLIT=n` moves that) in two kernels: a
//!      prep kernel for the chunk sums and delta, then the state update as a
//!      pure stream of state loads and stores (the same bits as the fused
//!      kernel);
//!   4. out_proj added into the f32 residual stream (`decode_gemv.cu` with
//!      the accumulate flag, or cuBLAS with beta = 1).
//!
//! Then the head (GEMV with the final norm fused, or norm + cuBLAS) into
//! device-resident logits; [`GpuDecoder::argmax`] picks greedy tokens on the
//! device. The whole step is captured in a CUDA graph per batch size and
//! replayed (the slot indices and tokens live in fixed device buffers the
//! kernels read, written before each replay).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use cudarc::driver::sys;
use cudarc::driver::{CudaEvent, CudaFunction, CudaGraph, DeviceRepr, LaunchConfig, result as dr};
use half::{bf16, f16};
use mamba_core::quant::{BlockQ4_0, BlockQ8_0, QK};
use mamba_core::{DType, Model, ModelConfig, TensorRef};

use crate::compile::{DECODE_ARGMAX, DECODE_CONV, DECODE_EMBED, DECODE_GEMV, DECODE_SSM};
use crate::context::{GpuContext, HostMapped, RawBuffer, guard, stage_times};
use crate::error::GpuError;
use crate::gemm::{Blas, DataType, GemmPrecision, Operand};
use crate::model_ops;

/// The type the decoder's weight matrices (projections, embedding, head) are
/// kept in on the device. Vectors (norms, conv, A, D, biases) stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeWeights {
    /// Each matrix in the model's own type (mixed files stay mixed).
    AsStored,
    /// f32.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// ggml Q8_0 (rows not a multiple of 32 long fall back to F16).
    Q8_0,
    /// ggml Q4_0 (rows not a multiple of 32 long fall back to F16).
    Q4_0,
}

impl DecodeWeights {
    /// Parses `stored`, `f32`, `f16`, `bf16`, `q8_0` or `q4_0`.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "stored" | "as-stored" => Self::AsStored,
            "f32" => Self::F32,
            "f16" => Self::F16,
            "bf16" => Self::Bf16,
            "q8_0" => Self::Q8_0,
            "q4_0" => Self::Q4_0,
            _ => return None,
        })
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AsStored => "stored",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }
}

/// Where the decoder keeps its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightPlacement {
    /// [`Self::HostMapped`] on an integrated GPU (memory shared with the
    /// CPU: a Jetson), [`Self::Device`] otherwise.
    Auto,
    /// Device memory (one copy uploaded at creation).
    Device,
    /// Pinned host memory mapped into the device's address space, read in
    /// place by the kernels: on an integrated GPU the same DRAM at the same
    /// speed, without a device allocation; on a discrete GPU every read
    /// crosses the bus (slow: for testing and memory-starved cases).
    HostMapped,
}

/// How a [`GpuDecoder`] is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The weight type.
    pub weights: DecodeWeights,
    /// Number of state slots (streams that can exist at once), 1..=65535.
    pub max_slots: usize,
    /// Capture each batch size's step in a CUDA graph and replay it.
    pub graphs: bool,
    /// Where the weights live.
    pub placement: WeightPlacement,
    /// Steps of at least this many streams run in_proj, out_proj and the head
    /// as cuBLAS tensor-core GEMMs (f16 / bf16 / f32 weights directly;
    /// Q8_0 / Q4_0 ones through an f16 copy made at creation); smaller steps
    /// use the GEMV kernel. `usize::MAX`: never (no cuBLAS, no copy).
    /// Default 2: on the H200 (v9, 130m shape, f16) cuBLAS takes 0.605 ms a
    /// step at 2 streams and 0.658 at 4, the GEMV kernel 0.631 and 0.847
    /// (and 0.395 at 1 stream, its own entry); see NOTES.md.
    pub gemm_min_batch: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            weights: DecodeWeights::AsStored,
            max_slots: 64,
            graphs: true,
            placement: WeightPlacement::Auto,
            gemm_min_batch: 2,
        }
    }
}

/// A weight matrix in the arena.
#[derive(Debug, Clone, Copy)]
struct DMat {
    /// Offset in the arena, then (after placement) the device address.
    ptr: u64,
    dtype: DType,
    rows: usize,
    cols: usize,
    bytes: usize,
    /// The cuBLAS operand (address, type) when this matrix can go through cuBLAS.
    gemm: Option<(u64, DataType, usize)>,
}

/// An f32 vector in the arena (`ptr` 0 when absent).
#[derive(Debug, Clone, Copy, Default)]
struct DVec {
    ptr: u64,
}

#[derive(Debug, Clone, Copy)]
struct DLayer {
    norm: DVec,
    in_proj: DMat,
    in_proj_b: DVec,
    conv_w: DVec,
    conv_b: DVec,
    x_proj: DMat,
    dt_proj: DMat,
    dt_b: DVec,
    a: DVec,
    d: DVec,
    out_proj: DMat,
    out_proj_b: DVec,
}

/// Host image of every weight, 256-byte aligned pieces.
struct Image {
    bytes: Vec<u8>,
}

impl Image {
    fn push(&mut self, data: &[u8]) -> u64 {
        let off = self.bytes.len().next_multiple_of(256);
        self.bytes.resize(off, 0);
        self.bytes.extend_from_slice(data);
        off as u64
    }

    fn vec(&mut self, model: &Model<'_>, t: &TensorRef) -> DVec {
        let v = model.f32s(t);
        if v.is_empty() {
            DVec::default()
        } else {
            // +1 so that a real offset is never 0 (0 means "absent").
            DVec {
                ptr: self.push(bytemuck::cast_slice(v)) + 1,
            }
        }
    }
}

fn dequant(model: &Model<'_>, t: &TensorRef) -> Vec<f32> {
    let m = model.matrix(t);
    let mut out = vec![0f32; m.rows * m.cols];
    if m.cols > 0 {
        for (r, row) in out.chunks_exact_mut(m.cols).enumerate() {
            m.row_to_f32(r, row);
        }
    }
    out
}

fn encode(v: &[f32], cols: usize, dt: DType) -> Vec<u8> {
    match dt {
        DType::F32 => bytemuck::cast_slice(v).to_vec(),
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::Q8_0 => {
            let mut out = Vec::with_capacity(v.len() / QK * 34);
            for row in v.chunks_exact(cols) {
                for blk in row.chunks_exact(QK) {
                    out.extend_from_slice(bytemuck::bytes_of(&BlockQ8_0::quantize(blk)));
                }
            }
            out
        }
        DType::Q4_0 => {
            let mut out = Vec::with_capacity(v.len() / QK * 18);
            for row in v.chunks_exact(cols) {
                for blk in row.chunks_exact(QK) {
                    out.extend_from_slice(bytemuck::bytes_of(&BlockQ4_0::quantize(blk)));
                }
            }
            out
        }
    }
}

/// Bytes of one decoder row of `cols` elements of type `dt`
/// (`w_row_bytes` in decode_common.cuh): the file's own for F32 / F16 /
/// BF16; for Q8_0 / Q4_0 the repacked layout of [`repack`] (v10).
fn dec_row_bytes(dt: DType, cols: usize) -> usize {
    let (full, rem) = (cols / 128, cols % 128);
    match dt {
        DType::Q8_0 => full * 136 + if rem > 0 { 8 + rem } else { 0 },
        DType::Q4_0 => full * 72 + if rem > 0 { 8 + rem / 2 } else { 0 },
        _ => dt.row_bytes(cols),
    }
}

/// Repacks ggml Q8_0 / Q4_0 rows (`cols % 32 == 0`; blocks of an f16 scale
/// then 32 int8 / 16 bytes of nibbles) for the decode kernels (v10): each
/// row in superblocks of 4 blocks (128 elements), the 4 scales first (8
/// bytes; a last partial superblock keeps all 8), then the blocks' quants
/// in order, unchanged. Every superblock is a multiple of 8 bytes, so the
/// kernels load 8 quants (Q8_0) or 16 nibbles (Q4_0) as one aligned 8-byte
/// word instead of four 2-byte loads (34- and 18-byte blocks are only
/// 2-byte aligned); the values, and so the results, are the same. Other
/// types are returned as they are.
fn repack(data: &[u8], rows: usize, cols: usize, dt: DType) -> Cow<'_, [u8]> {
    let blk = match dt {
        DType::Q8_0 => 34,
        DType::Q4_0 => 18,
        _ => return Cow::Borrowed(data),
    };
    let nb = cols / QK;
    let out_row = dec_row_bytes(dt, cols);
    let mut out = vec![0u8; rows * out_row];
    for (src, dst) in data
        .chunks_exact(nb * blk)
        .zip(out.chunks_exact_mut(out_row))
    {
        let mut o = 0;
        for sb in src.chunks(4 * blk) {
            let k = sb.len() / blk;
            for (i, b) in sb.chunks_exact(blk).enumerate() {
                dst[o + 2 * i..o + 2 * i + 2].copy_from_slice(&b[..2]);
            }
            o += 8;
            for b in sb.chunks_exact(blk) {
                dst[o..o + blk - 2].copy_from_slice(&b[2..]);
                o += blk - 2;
            }
            debug_assert!(k <= 4);
        }
        debug_assert_eq!(o, out_row);
    }
    Cow::Owned(out)
}

fn gemm_type(dt: DType) -> Option<DataType> {
    match dt {
        DType::F32 => Some(DataType::F32),
        DType::F16 => Some(DataType::F16),
        DType::BF16 => Some(DataType::Bf16),
        DType::Q8_0 | DType::Q4_0 => None,
    }
}

/// Adds matrix `t` to the image in the requested type; with `gemm_copy`, a
/// quantized matrix also gets an f16 copy for cuBLAS.
fn push_mat(
    img: &mut Image,
    model: &Model<'_>,
    t: &TensorRef,
    want: DecodeWeights,
    gemm_copy: bool,
) -> Result<DMat, GpuError> {
    let m = model.matrix(t);
    let target = match want {
        DecodeWeights::AsStored => m.dtype,
        DecodeWeights::F32 => DType::F32,
        DecodeWeights::F16 => DType::F16,
        DecodeWeights::Bf16 => DType::BF16,
        DecodeWeights::Q8_0 => DType::Q8_0,
        DecodeWeights::Q4_0 => DType::Q4_0,
    };
    // Quantized rows must be whole blocks (llama.cpp falls back to F16).
    let target = if matches!(target, DType::Q8_0 | DType::Q4_0) && m.cols % QK != 0 {
        DType::F16
    } else {
        target
    };
    let mut f32s: Option<Vec<f32>> = None;
    let ptr = if target == m.dtype {
        img.push(&repack(m.data, m.rows, m.cols, target))
    } else {
        let v = dequant(model, t);
        let off = img.push(&repack(&encode(&v, m.cols, target), m.rows, m.cols, target));
        f32s = Some(v);
        off
    };
    let bytes = dec_row_bytes(target, m.cols) * m.rows;
    let gemm = match gemm_type(target) {
        Some(g) => Some((ptr, g, bytes)),
        None if gemm_copy => {
            let v = f32s.unwrap_or_else(|| dequant(model, t));
            let enc = encode(&v, m.cols, DType::F16);
            let n = enc.len();
            Some((img.push(&enc), DataType::F16, n))
        }
        None => None,
    };
    Ok(DMat {
        ptr,
        dtype: target,
        rows: m.rows,
        cols: m.cols,
        bytes,
        gemm,
    })
}

/// Mirror of `GemvParams` in decode_gemv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct GemvParams {
    w: u64,
    x: u64,
    norm_w: u64,
    bias: u64,
    y: u64,
    x_rs: i64,
    y_rs: i64,
    rows: i32,
    cols: i32,
    batch: i32,
    flags: i32,
    eps: f32,
    pad: i32,
}
// SAFETY: plain #[repr(C)] data, laid out as the kernel's by-value struct.
unsafe impl DeviceRepr for GemvParams {}

/// Mirror of `ConvParams` in decode_conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvParams {
    xz: u64,
    slots: u64,
    state: u64,
    conv_w: u64,
    conv_b: u64,
    xw: u64,
    xc: u64,
    part: u64,
    xz_rs: i64,
    slot_stride: i64,
    layer_off: i64,
    e: i32,
    k: i32,
    xd: i32,
    batch: i32,
    nchunks: i32,
    pad: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for ConvParams {}

/// Mirror of `SsmParams` in decode_ssm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct SsmParams {
    part: u64,
    dtw: u64,
    dt_b: u64,
    a: u64,
    d: u64,
    xc: u64,
    xz: u64,
    slots: u64,
    state: u64,
    y: u64,
    y16: u64,
    xz_rs: i64,
    slot_stride: i64,
    ssm_off: i64,
    e: i32,
    n: i32,
    r: i32,
    xd: i32,
    nchunks: i32,
    y16_bf16: i32,
    vec4: i32,
    batch: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for SsmParams {}

/// Mirror of `SsmPrepParams` in decode_ssm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct SsmPrepParams {
    part: u64,
    dtw: u64,
    dt_b: u64,
    delta: u64,
    bc: u64,
    e: i32,
    n: i32,
    r: i32,
    xd: i32,
    nchunks: i32,
    batch: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for SsmPrepParams {}

/// Mirror of `SsmStreamParams` in decode_ssm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct SsmStreamParams {
    delta: u64,
    bc: u64,
    a: u64,
    d: u64,
    xc: u64,
    xz: u64,
    slots: u64,
    state: u64,
    y: u64,
    y16: u64,
    xz_rs: i64,
    slot_stride: i64,
    ssm_off: i64,
    e: i32,
    n: i32,
    y16_bf16: i32,
    batch: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for SsmStreamParams {}

/// Mirror of `DecEmbParams` in decode_embed.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct EmbParams {
    table: u64,
    tokens: u64,
    out: u64,
    d: i32,
    batch: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for EmbParams {}

/// Mirror of `ArgmaxParams` in decode_argmax.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct ArgmaxParams {
    logits: u64,
    out: u64,
    v: i32,
    batch: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for ArgmaxParams {}

const CONV_CH: usize = 128;
/// Batch rows per conv block (`CONV_BT` in decode_conv.cu).
const CONV_BT: usize = 4;
const SSM_CH: usize = 128;
/// Batch rows per SSM block (`SSM_BT` in decode_ssm.cu); 4 threads per channel.
const SSM_BT: usize = 4;
/// Channels (threads, one each) per SSM prep block (`PREP_CH` in
/// decode_ssm.cu, v6).
const PREP_CH: usize = 256;
/// Batch rows per SSM prep block (`PREP_BT` in decode_ssm.cu).
const PREP_BT: usize = 4;
/// Default smallest batch that takes the split SSM (prep kernel + state
/// stream, v5) instead of the fused SSM kernel; `MAMBA_DECODE_SSM_SPLIT=n`
/// overrides it (the two give the same bits, so only speed depends on it).
/// v6: 64 (was 128): with the v6 prep the split measured 0.747 ms a step at
/// 64 streams against 0.772 fused (H200, 130m, f16, same call).
const SSM_SPLIT_MIN: usize = 64;
/// Batch rows per GEMV block (`GEMV_BT` in decode_gemv.cu).
const BT: usize = 8;
/// Output rows (warps) per GEMV block (`GEMV_WARPS` in decode_gemv.cu).
const GEMV_WARPS: usize = 4;

/// What a step feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Tokens,
    Embeddings,
}

/// A captured step.
struct StepGraph(CudaGraph);

// SAFETY: CUDA graph objects must not be used from two threads at once; the
// decoder only touches its graphs through `&mut self`, and cudarc binds the
// context to the calling thread before each launch, so moving the decoder
// (with its graphs) to another thread is sound.
unsafe impl Send for StepGraph {}

/// Weights storage: a device allocation or pinned mapped host memory.
enum Arena {
    Device(#[allow(dead_code)] RawBuffer),
    Host(#[allow(dead_code)] HostMapped),
}

/// Batched streaming decode of one model on one GPU; see the module docs.
///
/// Slots are numbered `0..max_slots`. Every method checks its arguments and
/// returns [`GpuError::InvalidArgument`] instead of panicking.
pub struct GpuDecoder<'c> {
    // Graphs first: they are dropped before the buffers they use.
    graphs: HashMap<(Mode, usize), StepGraph>,
    seen: HashSet<(Mode, usize)>,
    graphs_on: bool,
    graph_note: Option<String>,
    /// Launch the step's kernels with programmatic dependent launch (sm_90+;
    /// `MAMBA_DECODE_PDL=0` turns it off): each kernel's weight and state
    /// loads overlap the previous kernel's tail.
    pdl: Cell<bool>,
    /// The next launch follows a kernel of the same step (PDL allowed).
    chain: Cell<bool>,
    /// Stage-end events of a profiled step.
    marks: RefCell<Option<Vec<(&'static str, CudaEvent)>>>,
    /// The caller's context: steps are ordered after its queued work, and
    /// its stream waits for each step (so its events can time a step).
    user: &'c GpuContext,
    cfg: ModelConfig,
    opts: DecodeOptions,
    placement: WeightPlacement,
    blas: Option<Blas>,
    _arena: Arena,
    weight_bytes: usize,
    embed: DMat,
    head: DMat,
    norm_f: DVec,
    layers: Vec<DLayer>,
    nchunks: usize,
    /// Steps of one stream use the GEMV kernel's batch-1 entry
    /// (`MAMBA_DECODE_GEMV1=0`: the batched one, for A/B runs).
    gemv1: bool,
    /// Smallest batch that takes the split SSM (prep + state stream).
    ssm_split_min: usize,
    // Per-step buffers, max_slots rows each.
    slots_dev: RawBuffer,
    tokens_dev: RawBuffer,
    resid: RawBuffer,
    normed: RawBuffer,
    xz: RawBuffer,
    xc: RawBuffer,
    part: RawBuffer,
    /// Split SSM: softplus(dt_proj . dt + b) (batch, E) and B, C (batch, 2N).
    delta: RawBuffer,
    bc: RawBuffer,
    y: RawBuffer,
    y16: RawBuffer,
    logits: RawBuffer,
    hidden: RawBuffer,
    picks: RawBuffer,
    states: RawBuffer,
    /// A context of our own on the same device: its stream carries every
    /// operation of the decoder and is the one captured into graphs, so
    /// other threads' work on `user` never mixes into a capture. Last field:
    /// dropped after the buffers and graphs.
    ctx: GpuContext,
    used: Vec<bool>,
    /// Per-slot stamp for the duplicate check.
    stamp: Vec<u64>,
    step_no: u64,
    last: Option<(Mode, usize)>,
    /// The slot list `slots_dev` holds (set_slots skips an equal upload).
    uploaded_slots: Vec<i32>,
}

impl<'c> GpuDecoder<'c> {
    /// Builds a decoder for `model` on `ctx`: converts the weights as
    /// `opts.weights` says, places them, allocates `opts.max_slots` state
    /// slots (all free) and the step buffers, and compiles the kernels.
    pub fn new(
        user: &'c GpuContext,
        model: &Model<'_>,
        opts: DecodeOptions,
    ) -> Result<Self, GpuError> {
        let own = user.with_own_stream()?;
        let ctx = &own;
        let cfg = *model.config();
        if cfg.dt_b_c_rms {
            return Err(GpuError::invalid(
                "the GPU decoder does not support dt/B/C RMSNorm (Falcon-Mamba) yet",
            ));
        }
        if opts.max_slots == 0 || opts.max_slots > 65535 {
            return Err(GpuError::invalid(format!(
                "max_slots {} (1..=65535)",
                opts.max_slots
            )));
        }
        let (d, e, n, k, r, v) = (
            cfg.d_model,
            cfg.d_inner,
            cfg.d_state,
            cfg.d_conv,
            cfg.dt_rank,
            cfg.vocab_size,
        );
        let xd = r + 2 * n;
        let dims_ok = [d, e, n, k, r, v, xd, 2 * e]
            .iter()
            .all(|&x| x > 0 && x < i32::MAX as usize / 2);
        if !dims_ok {
            return Err(GpuError::invalid(
                "model dimensions out of the kernels' range",
            ));
        }
        let placement = match opts.placement {
            WeightPlacement::Auto if ctx.is_integrated() => WeightPlacement::HostMapped,
            WeightPlacement::Auto => WeightPlacement::Device,
            p => p,
        };
        // cuBLAS only when some batch may use it; its absence only turns it off.
        let (blas, mut graph_note) = if opts.gemm_min_batch <= opts.max_slots {
            match Blas::new(ctx) {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(format!("cuBLAS unavailable, GEMV only: {e}"))),
            }
        } else {
            (None, None)
        };
        let gemm_copy = blas.is_some();
        let mut img = Image { bytes: Vec::new() };
        let w = opts.weights;
        let embed = push_mat(&mut img, model, &model.layout().embed, w, false)?;
        let tied = model.layout().head == model.layout().embed;
        let head = if tied {
            // The same bytes; a quantized table gets its f16 copy for cuBLAS here.
            let mut h = embed;
            if h.gemm.is_none() && gemm_copy {
                let v = dequant(model, &model.layout().embed);
                let enc = encode(&v, h.cols, DType::F16);
                let nbytes = enc.len();
                h.gemm = Some((img.push(&enc), DataType::F16, nbytes));
            }
            h
        } else {
            push_mat(&mut img, model, &model.layout().head, w, gemm_copy)?
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for lw in model.layers() {
            let opt = |img: &mut Image, on: bool, t: &TensorRef| {
                if on {
                    img.vec(model, t)
                } else {
                    DVec::default()
                }
            };
            layers.push(DLayer {
                norm: img.vec(model, &lw.norm),
                in_proj: push_mat(&mut img, model, &lw.in_proj, w, gemm_copy)?,
                in_proj_b: opt(&mut img, cfg.in_proj_bias, &lw.in_proj_b),
                conv_w: img.vec(model, &lw.conv_w),
                conv_b: opt(&mut img, cfg.conv_bias, &lw.conv_b),
                x_proj: push_mat(&mut img, model, &lw.x_proj, w, false)?,
                dt_proj: push_mat(&mut img, model, &lw.dt_proj, w, false)?,
                dt_b: img.vec(model, &lw.dt_b),
                a: img.vec(model, &lw.a),
                d: img.vec(model, &lw.d),
                out_proj: push_mat(&mut img, model, &lw.out_proj, w, gemm_copy)?,
                out_proj_b: opt(&mut img, cfg.out_proj_bias, &lw.out_proj_b),
            });
        }
        let norm_f = img.vec(model, &model.layout().norm_f);
        // Shape checks against the config (a corrupt file must not make the
        // kernels read out of bounds).
        let shape = |m: &DMat, rows: usize, cols: usize, what: &str| {
            if m.rows != rows || m.cols != cols {
                Err(GpuError::invalid(format!(
                    "{what}: ({}, {}), expected ({rows}, {cols})",
                    m.rows, m.cols
                )))
            } else {
                Ok(())
            }
        };
        shape(&embed, v, d, "embedding")?;
        shape(&head, v, d, "head")?;
        for l in &layers {
            shape(&l.in_proj, 2 * e, d, "in_proj")?;
            shape(&l.x_proj, xd, e, "x_proj")?;
            shape(&l.dt_proj, e, r, "dt_proj")?;
            shape(&l.out_proj, d, e, "out_proj")?;
            if l.conv_w.ptr == 0
                || l.a.ptr == 0
                || l.d.ptr == 0
                || l.dt_b.ptr == 0
                || l.norm.ptr == 0
            {
                return Err(GpuError::invalid("a layer vector is missing"));
            }
        }
        let weight_bytes = img.bytes.len();
        let (arena, base) = match placement {
            WeightPlacement::HostMapped => {
                let mut hm = ctx.host_mapped(img.bytes.len())?;
                hm.as_mut_slice()[..img.bytes.len()].copy_from_slice(&img.bytes);
                let base = hm.dev;
                (Arena::Host(hm), base)
            }
            _ => {
                let buf = ctx.upload_raw(&img.bytes)?;
                let base = buf.ptr;
                (Arena::Device(buf), base)
            }
        };
        drop(img);
        let fix_m = |m: &mut DMat| {
            m.ptr += base;
            if let Some(g) = m.gemm.as_mut() {
                g.0 += base;
            }
        };
        let fix_v = |x: &mut DVec| {
            if x.ptr != 0 {
                x.ptr = x.ptr - 1 + base;
            }
        };
        let (mut embed, mut head, mut norm_f) = (embed, head, norm_f);
        fix_m(&mut embed);
        fix_m(&mut head);
        fix_v(&mut norm_f);
        for l in &mut layers {
            for m in [
                &mut l.in_proj,
                &mut l.x_proj,
                &mut l.dt_proj,
                &mut l.out_proj,
            ] {
                fix_m(m);
            }
            for x in [
                &mut l.norm,
                &mut l.in_proj_b,
                &mut l.conv_w,
                &mut l.conv_b,
                &mut l.dt_b,
                &mut l.a,
                &mut l.d,
                &mut l.out_proj_b,
            ] {
                fix_v(x);
            }
        }
        let bmax = opts.max_slots;
        let nchunks = e.div_ceil(CONV_CH);
        let state_bytes = bmax
            .checked_mul(cfg.state_len())
            .and_then(|x| x.checked_mul(4))
            .ok_or_else(|| GpuError::invalid("state slots overflow"))?;
        let f = 4usize;
        let dec = Self {
            graphs: HashMap::new(),
            seen: HashSet::new(),
            graphs_on: opts.graphs,
            graph_note: graph_note.take(),
            pdl: Cell::new(
                own.compute_capability().0 >= 9
                    && std::env::var("MAMBA_DECODE_PDL").map_or(true, |v| v != "0"),
            ),
            chain: Cell::new(false),
            marks: RefCell::new(None),
            user,
            cfg,
            opts,
            placement,
            blas,
            _arena: arena,
            weight_bytes,
            embed,
            head,
            norm_f,
            layers,
            nchunks,
            gemv1: std::env::var("MAMBA_DECODE_GEMV1").map_or(true, |v| v.trim() != "0"),
            // The plain-loop kernel variant (`-DDECODE_SIMPLE`, a reference
            // for debugging) has a different state layout per lane in the
            // fused kernel, so only the fused kernel runs then.
            ssm_split_min: if std::env::var("MAMBA_CUDA_NVRTC_OPTIONS")
                .is_ok_and(|v| v.contains("DECODE_SIMPLE"))
            {
                usize::MAX
            } else {
                std::env::var("MAMBA_DECODE_SSM_SPLIT")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(SSM_SPLIT_MIN)
            },
            slots_dev: ctx.alloc_raw(bmax * 4)?,
            tokens_dev: ctx.alloc_raw(bmax * 4)?,
            resid: ctx.alloc_raw(bmax * d * f)?,
            normed: ctx.alloc_raw(bmax * d * f)?,
            xz: ctx.alloc_raw(bmax * 2 * e * f)?,
            xc: ctx.alloc_raw(bmax * e * f)?,
            part: ctx.alloc_raw(bmax * nchunks * xd * f)?,
            delta: ctx.alloc_raw(bmax * e * f)?,
            bc: ctx.alloc_raw(bmax * 2 * cfg.d_state * f)?,
            y: ctx.alloc_raw(bmax * e * f)?,
            y16: ctx.alloc_raw(bmax * e * 2)?,
            logits: ctx.alloc_raw(bmax * v * f)?,
            hidden: ctx.alloc_raw(bmax * d * f)?,
            picks: ctx.alloc_raw(bmax * 4)?,
            states: ctx.alloc_raw(state_bytes)?,
            used: vec![false; bmax],
            stamp: vec![0; bmax],
            step_no: 0,
            last: None,
            uploaded_slots: Vec::new(),
            ctx: own,
        };
        // Compile and load every kernel now (never during a graph capture).
        for dt in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
        ] {
            let s = dt.name();
            dec.ctx
                .function(&DECODE_GEMV, &format!("decode_gemv_{s}"))?;
            dec.ctx
                .function(&DECODE_GEMV, &format!("decode_gemv1_{s}"))?;
            dec.ctx
                .function(&DECODE_CONV, &format!("decode_conv_{s}"))?;
            dec.ctx.function(&DECODE_SSM, &format!("decode_ssm_{s}"))?;
            dec.ctx
                .function(&DECODE_SSM, &format!("decode_ssm_prep_{s}"))?;
            dec.ctx
                .function(&DECODE_EMBED, &format!("decode_embed_{s}"))?;
        }
        dec.ctx.function(&DECODE_SSM, "decode_ssm_stream")?;
        dec.ctx.function(&DECODE_ARGMAX, "decode_argmax")?;
        dec.ctx.synchronize()?;
        Ok(dec)
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The options the decoder was built with.
    pub fn options(&self) -> &DecodeOptions {
        &self.opts
    }

    /// Where the weights are ([`WeightPlacement::Auto`] resolved).
    pub fn placement(&self) -> WeightPlacement {
        self.placement
    }

    /// Bytes of the weight image (matrices in their decode types, f32
    /// vectors, and the f16 copies for cuBLAS, if any).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Number of slots.
    pub fn max_slots(&self) -> usize {
        self.opts.max_slots
    }

    /// f32 values of one slot's state (= `config().state_len()`).
    pub fn state_len(&self) -> usize {
        self.cfg.state_len()
    }

    /// Whether steps are replayed from CUDA graphs.
    pub fn graphs_enabled(&self) -> bool {
        self.graphs_on
    }

    /// Turns graph replay on or off (the captured graphs are kept).
    pub fn set_graphs(&mut self, on: bool) {
        self.graphs_on = on;
    }

    /// Why graphs or cuBLAS were turned off by the decoder itself, if they were.
    pub fn fallback_note(&self) -> Option<&str> {
        self.graph_note.as_deref()
    }

    /// Number of captured graphs.
    pub fn graph_count(&self) -> usize {
        self.graphs.len()
    }

    /// Bytes one token step of `batch` streams must read: (weights, states).
    /// Weights: every matrix once in the type the step reads it (cuBLAS copies
    /// at and above `gemm_min_batch`), the f32 vectors and `batch` embedding
    /// rows; states: each stream's conv window and SSM state, read and
    /// written (counted twice).
    pub fn step_bytes(&self, batch: usize) -> (u64, u64) {
        let gemm = self.uses_gemm(batch);
        let mat = |m: &DMat| -> u64 {
            match (gemm, m.gemm) {
                (true, Some(g)) => g.2 as u64,
                _ => m.bytes as u64,
            }
        };
        let (d, e, n, k) = (
            self.cfg.d_model,
            self.cfg.d_inner,
            self.cfg.d_state,
            self.cfg.d_conv,
        );
        let vecs = (d + e * k + e * 3 + e * n) as u64 * 4;
        let mut w: u64 = 0;
        for l in &self.layers {
            w += mat(&l.in_proj) + l.x_proj.bytes as u64 + l.dt_proj.bytes as u64;
            w += mat(&l.out_proj) + vecs;
        }
        w += mat(&self.head) + d as u64 * 4;
        w += (batch * dec_row_bytes(self.embed.dtype, d)) as u64;
        let s = 2 * (batch * self.cfg.state_len() * 4) as u64;
        (w, s)
    }

    fn uses_gemm(&self, batch: usize) -> bool {
        self.blas.is_some() && batch >= self.opts.gemm_min_batch
    }

    fn check_slot(&self, slot: u32, what: &str) -> Result<usize, GpuError> {
        let s = slot as usize;
        if s >= self.opts.max_slots {
            return Err(GpuError::invalid(format!(
                "{what}: slot {slot} is out of range (max_slots {})",
                self.opts.max_slots
            )));
        }
        if !self.used[s] {
            return Err(GpuError::invalid(format!(
                "{what}: slot {slot} is not allocated"
            )));
        }
        Ok(s)
    }

    fn slot_ptr(&self, s: usize) -> u64 {
        self.states.ptr + (s * self.cfg.state_len() * 4) as u64
    }

    fn bind(&self) -> Result<sys::CUstream, GpuError> {
        self.ctx.bind()?;
        Ok(self.ctx.stream().cu_stream())
    }

    fn memset0(&self, ptr: u64, bytes: usize) -> Result<(), GpuError> {
        self.memset(ptr, 0, bytes)
    }

    fn memset(&self, ptr: u64, value: u8, bytes: usize) -> Result<(), GpuError> {
        guard("cuMemsetD8Async", || {
            let st = self.bind()?;
            // SAFETY: [ptr, ptr + bytes) lies in one of our allocations.
            unsafe { dr::memset_d8_async(ptr, value, bytes, st) }
                .map_err(|e| GpuError::driver("cuMemsetD8Async", e))
        })
    }

    fn htod<T: bytemuck::Pod>(&self, dst: u64, src: &[T]) -> Result<(), GpuError> {
        if src.is_empty() {
            return Ok(());
        }
        guard("cuMemcpyHtoDAsync", || {
            let st = self.bind()?;
            // SAFETY: the destination holds size_of_val(src) bytes; pageable
            // host memory is staged before the call returns.
            unsafe { dr::memcpy_htod_async(dst, src, st) }
                .map_err(|e| GpuError::driver("cuMemcpyHtoDAsync", e))
        })
    }

    fn dtoh<T: bytemuck::Pod>(&self, src: u64, out: &mut [T]) -> Result<(), GpuError> {
        if out.is_empty() {
            return Ok(());
        }
        guard("cuMemcpyDtoHAsync", || {
            let st = self.bind()?;
            // SAFETY: the source holds size_of_val(out) bytes; we wait for the
            // copy before `out` is touched again.
            unsafe { dr::memcpy_dtoh_async(out, src, st) }
                .map_err(|e| GpuError::driver("cuMemcpyDtoHAsync", e))?;
            self.ctx
                .stream()
                .synchronize()
                .map_err(|e| GpuError::driver("cuStreamSynchronize", e))
        })
    }

    /// Testing aid: fills every step output and intermediate buffer (logits,
    /// hidden states, activations, the residual stream) with NaN, so a
    /// kernel that leaves an element unwritten shows up as NaN in the results.
    pub fn poison(&mut self) -> Result<(), GpuError> {
        for b in [
            &self.resid,
            &self.normed,
            &self.xz,
            &self.xc,
            &self.part,
            &self.delta,
            &self.bc,
            &self.y,
            &self.y16,
            &self.logits,
            &self.hidden,
            &self.picks,
        ] {
            self.memset(b.ptr, 0xff, b.bytes)?;
        }
        Ok(())
    }

    /// Takes a free slot, with a zero state (a fresh stream).
    pub fn alloc_slot(&mut self) -> Result<u32, GpuError> {
        let s = self.used.iter().position(|u| !u).ok_or_else(|| {
            GpuError::invalid(format!("all {} slots are in use", self.opts.max_slots))
        })?;
        self.memset0(self.slot_ptr(s), self.cfg.state_len() * 4)?;
        self.used[s] = true;
        Ok(s as u32)
    }

    /// Gives a slot back.
    pub fn free_slot(&mut self, slot: u32) -> Result<(), GpuError> {
        let s = self.check_slot(slot, "free_slot")?;
        self.used[s] = false;
        Ok(())
    }

    /// Zeroes a slot's state (the stream starts over).
    pub fn reset_slot(&mut self, slot: u32) -> Result<(), GpuError> {
        let s = self.check_slot(slot, "reset_slot")?;
        self.memset0(self.slot_ptr(s), self.cfg.state_len() * 4)
    }

    /// Copies slot `src`'s state over slot `dst`'s (a fork of the stream).
    pub fn copy_slot(&mut self, src: u32, dst: u32) -> Result<(), GpuError> {
        let a = self.check_slot(src, "copy_slot source")?;
        let b = self.check_slot(dst, "copy_slot destination")?;
        if a == b {
            return Ok(());
        }
        let bytes = self.cfg.state_len() * 4;
        let (pa, pb) = (self.slot_ptr(a), self.slot_ptr(b));
        guard("cuMemcpyDtoDAsync", || {
            let st = self.bind()?;
            // SAFETY: two distinct, non-overlapping slots of `bytes` bytes.
            unsafe { dr::memcpy_dtod_async(pb, pa, bytes, st) }
                .map_err(|e| GpuError::driver("cuMemcpyDtoDAsync", e))
        })
    }

    /// A slot's state in mamba-core's layout (`config().state_len()` f32).
    pub fn save_slot(&self, slot: u32) -> Result<Vec<f32>, GpuError> {
        let mut out = vec![0f32; self.cfg.state_len()];
        self.save_slot_into(slot, &mut out)?;
        Ok(out)
    }

    /// [`GpuDecoder::save_slot`] into a caller buffer of `state_len()` f32.
    pub fn save_slot_into(&self, slot: u32, out: &mut [f32]) -> Result<(), GpuError> {
        let s = self.check_slot(slot, "save_slot")?;
        if out.len() != self.cfg.state_len() {
            return Err(GpuError::invalid(format!(
                "save_slot: buffer of {} f32, state is {}",
                out.len(),
                self.cfg.state_len()
            )));
        }
        self.dtoh(self.slot_ptr(s), out)
    }

    /// Sets a slot's state from mamba-core's layout (`config().state_len()` f32).
    pub fn load_slot(&mut self, slot: u32, state: &[f32]) -> Result<(), GpuError> {
        let s = self.check_slot(slot, "load_slot")?;
        if state.len() != self.cfg.state_len() {
            return Err(GpuError::invalid(format!(
                "load_slot: {} f32, state is {}",
                state.len(),
                self.cfg.state_len()
            )));
        }
        self.htod(self.slot_ptr(s), state)
    }

    /// Checks a step's slots (allocated, each once) and writes them to the device.
    fn set_slots(&mut self, slots: impl Iterator<Item = u32>, b: usize) -> Result<(), GpuError> {
        if b == 0 || b > self.opts.max_slots {
            return Err(GpuError::invalid(format!(
                "a step of {b} streams (1..={})",
                self.opts.max_slots
            )));
        }
        self.step_no += 1;
        let mut ids = Vec::with_capacity(b);
        for slot in slots {
            let s = self.check_slot(slot, "step")?;
            if self.stamp[s] == self.step_no {
                return Err(GpuError::invalid(format!(
                    "step: slot {slot} appears twice"
                )));
            }
            self.stamp[s] = self.step_no;
            ids.push(slot as i32);
        }
        // The same slots as the last step (a steady stream): the device
        // copy is still right, so no upload (one copy less per step).
        if ids == self.uploaded_slots {
            return Ok(());
        }
        self.uploaded_slots.clear();
        self.htod(self.slots_dev.ptr, &ids)?;
        self.uploaded_slots = ids;
        Ok(())
    }

    /// One step of `batch.len()` streams, each fed one token: `(slot,
    /// token)` pairs, slots allocated and distinct, in any order. Queues the
    /// work and returns; the logits stay on the device ([`GpuDecoder::logits`],
    /// [`GpuDecoder::argmax`]), row i for pair i.
    pub fn step_tokens(&mut self, batch: &[(u32, u32)]) -> Result<(), GpuError> {
        let v = self.cfg.vocab_size;
        if let Some((i, (_, t))) = batch.iter().enumerate().find(|(_, p)| p.1 as usize >= v) {
            return Err(GpuError::invalid(format!(
                "step: token {t} of pair {i} is out of range (vocabulary {v})"
            )));
        }
        self.last = None;
        self.set_slots(batch.iter().map(|p| p.0), batch.len())?;
        self.ctx.wait_for(self.user)?;
        let toks: Vec<u32> = batch.iter().map(|p| p.1).collect();
        self.htod(self.tokens_dev.ptr, &toks)?;
        self.run(Mode::Tokens, batch.len())?;
        self.user.wait_for(&self.ctx)?;
        self.last = Some((Mode::Tokens, batch.len()));
        Ok(())
    }

    /// One step of `batch.len()` streams, each fed one input vector of
    /// `d_model` f32 (the audio/sensor path, mamba-core's `step_embedding`):
    /// returns the final hidden states after norm_f, `batch.len()` x D.
    pub fn step_embeddings(&mut self, batch: &[(u32, &[f32])]) -> Result<Vec<f32>, GpuError> {
        let d = self.cfg.d_model;
        if let Some((i, (_, x))) = batch.iter().enumerate().find(|(_, p)| p.1.len() != d) {
            return Err(GpuError::invalid(format!(
                "step: input vector {i} has {} values, d_model is {d}",
                x.len()
            )));
        }
        self.last = None;
        self.set_slots(batch.iter().map(|p| p.0), batch.len())?;
        self.ctx.wait_for(self.user)?;
        let flat: Vec<f32> = batch.iter().flat_map(|p| p.1.iter().copied()).collect();
        self.htod(self.resid.ptr, &flat)?;
        let b = batch.len();
        self.run(Mode::Embeddings, b)?;
        self.user.wait_for(&self.ctx)?;
        self.last = Some((Mode::Embeddings, b));
        let mut out = vec![0f32; b * d];
        self.dtoh(self.hidden.ptr, &mut out)?;
        Ok(out)
    }

    fn last_tokens(&self, what: &str) -> Result<usize, GpuError> {
        match self.last {
            Some((Mode::Tokens, b)) => Ok(b),
            _ => Err(GpuError::invalid(format!(
                "{what}: the last step was not a successful token step"
            ))),
        }
    }

    /// The logits of the last token step: `b x vocab_size`, row i for pair i.
    pub fn logits(&self) -> Result<Vec<f32>, GpuError> {
        let b = self.last_tokens("logits")?;
        let mut out = vec![0f32; b * self.cfg.vocab_size];
        self.dtoh(self.logits.ptr, &mut out)?;
        Ok(out)
    }

    /// [`GpuDecoder::logits`] into a caller buffer of exactly `b x vocab_size` f32.
    pub fn logits_into(&self, out: &mut [f32]) -> Result<(), GpuError> {
        let b = self.last_tokens("logits")?;
        if out.len() != b * self.cfg.vocab_size {
            return Err(GpuError::invalid(format!(
                "logits: buffer of {} f32, expected {}",
                out.len(),
                b * self.cfg.vocab_size
            )));
        }
        self.dtoh(self.logits.ptr, out)
    }

    /// Greedy tokens of the last token step (argmax of each row, on the
    /// device; ties to the lower id, like mamba-core), one per pair.
    pub fn argmax(&self) -> Result<Vec<u32>, GpuError> {
        let b = self.last_tokens("argmax")?;
        let f = self.ctx.function(&DECODE_ARGMAX, "decode_argmax")?;
        let p = ArgmaxParams {
            logits: self.logits.ptr,
            out: self.picks.ptr,
            v: self.cfg.vocab_size as i32,
            batch: b as i32,
        };
        let cfg = LaunchConfig {
            grid_dim: (b as u32, 1, 1),
            block_dim: (512, 1, 1),
            shared_mem_bytes: 0,
        };
        self.ctx.launch(&f, cfg, &p)?;
        let mut out = vec![0u32; b];
        self.dtoh(self.picks.ptr, &mut out)?;
        Ok(out)
    }

    /// Ends a stage of a profiled step (nothing otherwise).
    fn mark(&self, stage: &'static str) -> Result<(), GpuError> {
        let mut m = self.marks.borrow_mut();
        if let Some(v) = m.as_mut() {
            v.push((stage, self.ctx.record_event()?));
        }
        Ok(())
    }

    /// [`GpuDecoder::step_tokens`] without the graph, with a CUDA event
    /// after every stage; waits, and returns the milliseconds per stage kind
    /// summed over the layers (`embed`, `in_proj`, `conv_x_proj`, `ssm`,
    /// `out_proj`, `head`). Launch gaps are included, so the total exceeds a
    /// graph replay's time.
    pub fn profile_step(
        &mut self,
        batch: &[(u32, u32)],
    ) -> Result<Vec<(&'static str, f32)>, GpuError> {
        let on = self.graphs_on;
        self.graphs_on = false;
        self.ctx.synchronize()?;
        let start = self.ctx.record_event()?;
        *self.marks.borrow_mut() = Some(Vec::new());
        let r = self.step_tokens(batch);
        let marks = self.marks.borrow_mut().take().unwrap_or_default();
        self.graphs_on = on;
        r?;
        self.ctx.synchronize()?;
        stage_times(&start, &marks)
    }

    /// Runs one step of `b` streams: graph replay, capture, or plain launches.
    fn run(&mut self, mode: Mode, b: usize) -> Result<(), GpuError> {
        let pdl = self.pdl.get();
        let r = self.run_inner(mode, b);
        if pdl && !self.pdl.get() && self.graph_note.is_none() {
            self.graph_note = Some("programmatic dependent launch failed; off".to_string());
        }
        r
    }

    fn run_inner(&mut self, mode: Mode, b: usize) -> Result<(), GpuError> {
        if !self.graphs_on {
            return self.enqueue(mode, b);
        }
        let key = (mode, b);
        if let Some(g) = self.graphs.get(&key) {
            return guard("cuGraphLaunch", || {
                g.0.launch()
                    .map_err(|e| GpuError::driver("cuGraphLaunch", e))
            });
        }
        if !self.seen.contains(&key) {
            // First step of this size: plain launches (lazy library set-up,
            // e.g. cuBLAS's, happens outside any capture).
            self.seen.insert(key);
            return self.enqueue(mode, b);
        }
        let captured = match self.capture(mode, b) {
            Err(_) | Ok(None) if self.pdl.get() => {
                // Maybe this driver cannot capture programmatic launches:
                // capture again without them (graphs beat PDL alone).
                self.pdl.set(false);
                self.capture(mode, b)
            }
            c => c,
        };
        match captured {
            Ok(Some(g)) => {
                guard("cuGraphLaunch", || {
                    g.launch().map_err(|e| GpuError::driver("cuGraphLaunch", e))
                })?;
                self.graphs.insert(key, StepGraph(g));
                Ok(())
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "no graph".to_string(),
                };
                self.graph_note = Some(format!("CUDA graph capture failed, graphs off: {why}"));
                self.graphs_on = false;
                self.enqueue(mode, b)
            }
        }
    }

    /// Captures one step of `b` streams on the decoder's stream into a graph.
    fn capture(&self, mode: Mode, b: usize) -> Result<Option<CudaGraph>, GpuError> {
        let stream = self.ctx.stream().clone();
        // No module load, cuBLAS handle or context-wide synchronize on
        // another thread while the stream captures (see `device_gate`).
        let _gate = crate::context::device_gate();
        guard("cuStreamBeginCapture", || {
            stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                .map_err(|e| GpuError::driver("cuStreamBeginCapture", e))?;
            let r = self.enqueue(mode, b);
            let g = stream.end_capture(sys::CUgraphInstantiate_flags(0));
            match (r, g) {
                (Ok(()), Ok(Some(g))) => Ok(Some(g)),
                (Err(e), _) => Err(e),
                (Ok(()), Ok(None)) => Err(GpuError::invalid("empty graph")),
                (Ok(()), Err(e)) => Err(GpuError::driver("cuStreamEndCapture", e)),
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv(
        &self,
        m: &DMat,
        x: u64,
        x_rs: usize,
        norm_w: u64,
        bias: u64,
        y: u64,
        y_rs: usize,
        b: usize,
        flags: i32,
    ) -> Result<(), GpuError> {
        // One stream: the BT = 1 entry (fewer registers, more warps in
        // flight; the same bits).
        let kind = if b == 1 && self.gemv1 {
            "decode_gemv1"
        } else {
            "decode_gemv"
        };
        let f = self
            .ctx
            .function(&DECODE_GEMV, &format!("{kind}_{}", m.dtype.name()))?;
        let p = GemvParams {
            w: m.ptr,
            x,
            norm_w,
            bias,
            y,
            x_rs: x_rs as i64,
            y_rs: y_rs as i64,
            rows: m.rows as i32,
            cols: m.cols as i32,
            batch: b as i32,
            flags,
            eps: self.cfg.eps,
            pad: 0,
        };
        let cfg = LaunchConfig {
            grid_dim: (m.rows.div_ceil(GEMV_WARPS) as u32, b.div_ceil(BT) as u32, 1),
            block_dim: (32 * GEMV_WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch_k(&f, cfg, &p)
    }

    /// `y (b, m.rows) (+)= x (b, m.cols) . m^T` through cuBLAS; x in the
    /// matrix's cuBLAS type.
    fn gemm(
        &self,
        m: &DMat,
        x: u64,
        y: u64,
        ldy: usize,
        b: usize,
        beta: f32,
    ) -> Result<(), GpuError> {
        let (Some(blas), Some((w, dt, _))) = (self.blas.as_ref(), m.gemm) else {
            return Err(GpuError::invalid("no cuBLAS operand"));
        };
        let prec = match dt {
            DataType::F32 => GemmPrecision::F32,
            DataType::F16 => GemmPrecision::F16,
            DataType::Bf16 => GemmPrecision::Bf16,
        };
        let xo = Operand {
            ptr: x,
            dtype: dt,
            ld: m.cols,
        };
        let wo = Operand {
            ptr: w,
            dtype: dt,
            ld: m.cols,
        };
        let yo = Operand {
            ptr: y,
            dtype: DataType::F32,
            ld: ldy,
        };
        // SAFETY: x holds b rows of m.cols in `dt`, w is (rows, cols) in
        // `dt`, y holds b rows of ldy >= rows f32; all stay allocated while
        // the decoder lives.
        unsafe { blas.linear(prec, b, m.rows, m.cols, xo, wo, yo, beta) }
    }

    /// Launches one of the step's kernels: with the programmatic-stream-
    /// serialization attribute when PDL is on and the previous launch was a
    /// kernel of this step (the kernels wait with `griddepcontrol.wait`
    /// before reading anything an earlier kernel wrote), plainly otherwise.
    fn launch_k<P: DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        p: &P,
    ) -> Result<(), GpuError> {
        let chained = self.chain.replace(true);
        if !self.pdl.get() || !chained || self.marks.borrow().is_some() {
            return self.ctx.launch(f, cfg, p);
        }
        self.ctx.try_launch_programmatic(f, cfg, p).or_else(|_| {
            // No PDL on this driver: plain launches from now on (`run`
            // notes it).
            self.pdl.set(false);
            self.ctx.launch(f, cfg, p)
        })
    }

    /// Queues one whole step of `b` streams (no host synchronisation).
    fn enqueue(&self, mode: Mode, b: usize) -> Result<(), GpuError> {
        // The step's first kernel follows host copies: launched plainly.
        self.chain.set(false);
        let ctx = &self.ctx;
        let cfg = &self.cfg;
        let (d, e, n, k, r) = (
            cfg.d_model,
            cfg.d_inner,
            cfg.d_state,
            cfg.d_conv,
            cfg.dt_rank,
        );
        let xd = r + 2 * n;
        let gemm = self.uses_gemm(b);
        if mode == Mode::Tokens {
            let f = ctx.function(
                &DECODE_EMBED,
                &format!("decode_embed_{}", self.embed.dtype.name()),
            )?;
            let p = EmbParams {
                table: self.embed.ptr,
                tokens: self.tokens_dev.ptr,
                out: self.resid.ptr,
                d: d as i32,
                batch: b as i32,
            };
            let lc = LaunchConfig {
                grid_dim: (b as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch_k(&f, lc, &p)?;
            self.mark("embed")?;
        }
        let slot_stride = cfg.state_len() as i64;
        let lstate = cfg.layer_state_len();
        let vec4 = n % 4 == 0 && cfg.state_len() % 4 == 0 && cfg.conv_state_len() % 4 == 0;
        // The split SSM's stream kernel has only the float4 path (N <= 16).
        let split = b >= self.ssm_split_min && vec4 && n <= 16;
        for (l, lw) in self.layers.iter().enumerate() {
            // 1. in_proj (RMSNorm fused).
            match lw.in_proj.gemm.filter(|_| gemm) {
                Some((_, dt, _)) => {
                    model_ops::rmsnorm(
                        ctx,
                        self.resid.ptr,
                        d,
                        lw.norm.ptr,
                        self.normed.ptr,
                        d,
                        dt,
                        b,
                        d,
                        cfg.eps,
                    )?;
                    self.gemm(&lw.in_proj, self.normed.ptr, self.xz.ptr, 2 * e, b, 0.0)?;
                    if lw.in_proj_b.ptr != 0 {
                        model_ops::add_bias(
                            ctx,
                            self.xz.ptr,
                            DataType::F32,
                            2 * e,
                            lw.in_proj_b.ptr,
                            b,
                            2 * e,
                        )?;
                    }
                }
                None => self.gemv(
                    &lw.in_proj,
                    self.resid.ptr,
                    d,
                    lw.norm.ptr,
                    lw.in_proj_b.ptr,
                    self.xz.ptr,
                    2 * e,
                    b,
                    1,
                )?,
            }
            self.mark("in_proj")?;
            // 2. conv + SiLU + x_proj partials.
            let f = ctx.function(
                &DECODE_CONV,
                &format!("decode_conv_{}", lw.x_proj.dtype.name()),
            )?;
            let p = ConvParams {
                xz: self.xz.ptr,
                slots: self.slots_dev.ptr,
                state: self.states.ptr,
                conv_w: lw.conv_w.ptr,
                conv_b: lw.conv_b.ptr,
                xw: lw.x_proj.ptr,
                xc: self.xc.ptr,
                part: self.part.ptr,
                xz_rs: (2 * e) as i64,
                slot_stride,
                layer_off: (l * lstate) as i64,
                e: e as i32,
                k: k as i32,
                xd: xd as i32,
                batch: b as i32,
                nchunks: self.nchunks as i32,
                pad: 0,
            };
            let lc = LaunchConfig {
                grid_dim: (self.nchunks as u32, b.div_ceil(CONV_BT) as u32, 1),
                block_dim: (CONV_CH as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch_k(&f, lc, &p)?;
            self.mark("conv_x_proj")?;
            // 3. dt_proj + softplus + state update + D + gate: fused, or
            //    (large batches, v5) a prep kernel for the chunk sums and
            //    delta, then the state update as a pure stream.
            let out_gemm = lw.out_proj.gemm.filter(|_| gemm);
            let y16 = match out_gemm {
                Some((_, DataType::F16 | DataType::Bf16, _)) => self.y16.ptr,
                _ => 0,
            };
            let y16_bf16 = i32::from(matches!(out_gemm, Some((_, DataType::Bf16, _))));
            let ssm_off = (l * lstate + cfg.conv_state_len()) as i64;
            if split {
                let f = ctx.function(
                    &DECODE_SSM,
                    &format!("decode_ssm_prep_{}", lw.dt_proj.dtype.name()),
                )?;
                let p = SsmPrepParams {
                    part: self.part.ptr,
                    dtw: lw.dt_proj.ptr,
                    dt_b: lw.dt_b.ptr,
                    delta: self.delta.ptr,
                    bc: self.bc.ptr,
                    e: e as i32,
                    n: n as i32,
                    r: r as i32,
                    xd: xd as i32,
                    nchunks: self.nchunks as i32,
                    batch: b as i32,
                };
                let lc = LaunchConfig {
                    grid_dim: (e.div_ceil(PREP_CH) as u32, b.div_ceil(PREP_BT) as u32, 1),
                    block_dim: (PREP_CH as u32, 1, 1),
                    shared_mem_bytes: (PREP_BT * r * 4) as u32,
                };
                self.launch_k(&f, lc, &p)?;
                self.mark("dt_proj")?;
                let f = ctx.function(&DECODE_SSM, "decode_ssm_stream")?;
                let p = SsmStreamParams {
                    delta: self.delta.ptr,
                    bc: self.bc.ptr,
                    a: lw.a.ptr,
                    d: lw.d.ptr,
                    xc: self.xc.ptr,
                    xz: self.xz.ptr,
                    slots: self.slots_dev.ptr,
                    state: self.states.ptr,
                    y: self.y.ptr,
                    y16,
                    xz_rs: (2 * e) as i64,
                    slot_stride,
                    ssm_off,
                    e: e as i32,
                    n: n as i32,
                    y16_bf16,
                    batch: b as i32,
                };
                let lc = LaunchConfig {
                    grid_dim: (e.div_ceil(SSM_CH) as u32, b.div_ceil(SSM_BT) as u32, 1),
                    block_dim: (4 * SSM_CH as u32, 1, 1),
                    shared_mem_bytes: 0,
                };
                self.launch_k(&f, lc, &p)?;
            } else {
                let f = ctx.function(
                    &DECODE_SSM,
                    &format!("decode_ssm_{}", lw.dt_proj.dtype.name()),
                )?;
                let p = SsmParams {
                    part: self.part.ptr,
                    dtw: lw.dt_proj.ptr,
                    dt_b: lw.dt_b.ptr,
                    a: lw.a.ptr,
                    d: lw.d.ptr,
                    xc: self.xc.ptr,
                    xz: self.xz.ptr,
                    slots: self.slots_dev.ptr,
                    state: self.states.ptr,
                    y: self.y.ptr,
                    y16,
                    xz_rs: (2 * e) as i64,
                    slot_stride,
                    ssm_off,
                    e: e as i32,
                    n: n as i32,
                    r: r as i32,
                    xd: xd as i32,
                    nchunks: self.nchunks as i32,
                    y16_bf16,
                    vec4: i32::from(vec4),
                    batch: b as i32,
                };
                let lc = LaunchConfig {
                    grid_dim: (e.div_ceil(SSM_CH) as u32, b.div_ceil(SSM_BT) as u32, 1),
                    block_dim: (4 * SSM_CH as u32, 1, 1),
                    shared_mem_bytes: (SSM_BT * xd * 4) as u32,
                };
                self.launch_k(&f, lc, &p)?;
            }
            self.mark("ssm")?;
            // 4. out_proj into the residual stream.
            match out_gemm {
                Some((_, dt, _)) => {
                    let x = if dt == DataType::F32 {
                        self.y.ptr
                    } else {
                        self.y16.ptr
                    };
                    self.gemm(&lw.out_proj, x, self.resid.ptr, d, b, 1.0)?;
                    if lw.out_proj_b.ptr != 0 {
                        model_ops::add_bias(
                            ctx,
                            self.resid.ptr,
                            DataType::F32,
                            d,
                            lw.out_proj_b.ptr,
                            b,
                            d,
                        )?;
                    }
                }
                None => self.gemv(
                    &lw.out_proj,
                    self.y.ptr,
                    e,
                    0,
                    lw.out_proj_b.ptr,
                    self.resid.ptr,
                    d,
                    b,
                    2,
                )?,
            }
            self.mark("out_proj")?;
        }
        let v = cfg.vocab_size;
        let r = match mode {
            Mode::Tokens => match self.head.gemm.filter(|_| gemm) {
                Some((_, dt, _)) => {
                    model_ops::rmsnorm(
                        ctx,
                        self.resid.ptr,
                        d,
                        self.norm_f.ptr,
                        self.normed.ptr,
                        d,
                        dt,
                        b,
                        d,
                        cfg.eps,
                    )?;
                    self.gemm(&self.head, self.normed.ptr, self.logits.ptr, v, b, 0.0)
                }
                None => self.gemv(
                    &self.head,
                    self.resid.ptr,
                    d,
                    self.norm_f.ptr,
                    0,
                    self.logits.ptr,
                    v,
                    b,
                    1,
                ),
            },
            Mode::Embeddings => model_ops::rmsnorm(
                ctx,
                self.resid.ptr,
                d,
                self.norm_f.ptr,
                self.hidden.ptr,
                d,
                DataType::F32,
                b,
                d,
                cfg.eps,
            ),
        };
        r?;
        self.mark("head")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element `c` of a repacked row, read as decode_common.cuh's `w_load1` does.
    fn load1(row: &[u8], c: usize, dt: DType) -> f32 {
        let blk = (c >> 5) & 3;
        let (sb, qoff) = match dt {
            DType::Q8_0 => ((c >> 7) * 136, 8 + (c & 127)),
            _ => ((c >> 7) * 72, 8 + 16 * blk + (c & 15)),
        };
        let d = f16::from_bits(u16::from_le_bytes([
            row[sb + 2 * blk],
            row[sb + 2 * blk + 1],
        ]))
        .to_f32();
        let q = row[sb + qoff];
        match dt {
            DType::Q8_0 => d * f32::from(q as i8),
            _ => {
                let v = if c & 31 < 16 { q & 15 } else { q >> 4 };
                d * (f32::from(v) - 8.0)
            }
        }
    }

    /// The repacked Q8_0 / Q4_0 rows hold the same values as ggml's blocks,
    /// for whole and partial 128-element superblocks, at the row sizes the
    /// kernels compute.
    #[test]
    fn repacked_rows_hold_the_ggml_values() {
        for dt in [DType::Q8_0, DType::Q4_0] {
            for cols in [32, 96, 128, 160, 768, 800] {
                let rows = 3;
                let v: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                    .collect();
                let ggml = encode(&v, cols, dt);
                let mut want = vec![0f32; rows * cols];
                let blk = if dt == DType::Q8_0 { 34 } else { 18 };
                for (b, out) in ggml.chunks_exact(blk).zip(want.chunks_exact_mut(QK)) {
                    if dt == DType::Q8_0 {
                        bytemuck::pod_read_unaligned::<BlockQ8_0>(b).dequantize(out);
                    } else {
                        bytemuck::pod_read_unaligned::<BlockQ4_0>(b).dequantize(out);
                    }
                }
                let packed = repack(&ggml, rows, cols, dt);
                let rb = dec_row_bytes(dt, cols);
                assert_eq!(packed.len(), rows * rb, "{dt:?} {cols}");
                assert_eq!(rb % 8, 0, "{dt:?} {cols}");
                for r in 0..rows {
                    for c in 0..cols {
                        let got = load1(&packed[r * rb..(r + 1) * rb], c, dt);
                        assert_eq!(
                            got.to_bits(),
                            want[r * cols + c].to_bits(),
                            "{dt:?} {cols} {r} {c}"
                        );
                    }
                }
            }
        }
    }
}
