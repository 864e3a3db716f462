//! Launchers of the small whole-model kernels: RMSNorm (`rmsnorm.cu`), the
//! embedding gather (`embedding.cu`), f32 -> f16/bf16 casts (`cast.cu`) and
//! the bias row add (`add_bias.cu`). Crate-private: [`crate::GpuModel`]
//! checks every size and address before it calls them.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use crate::compile::{ADD_BIAS, CAST, EMBEDDING, RMSNORM};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::gemm::DataType;

fn to_i32(what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::invalid(format!("{what} = {v} is too large")))
}

fn grid_rows(rows: usize) -> Result<u32, GpuError> {
    u32::try_from(rows)
        .ok()
        .filter(|&r| r < (1u32 << 31))
        .ok_or_else(|| GpuError::invalid(format!("{rows} rows is too many")))
}

/// Mirror of `NormParams` in rmsnorm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct NormParams {
    x: u64,
    w: u64,
    out: u64,
    x_rs: i64,
    out_rs: i64,
    rows: i32,
    d: i32,
    eps: f32,
}
// SAFETY: plain #[repr(C)] data, laid out as the kernel's by-value struct.
unsafe impl DeviceRepr for NormParams {}

/// Mirror of `EmbParams` in embedding.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct EmbParams {
    tokens: u64,
    table: u64,
    out: u64,
    t: i32,
    d: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for EmbParams {}

/// Mirror of `CastParams` in cast.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct CastParams {
    x: u64,
    out: u64,
    n: i64,
}
// SAFETY: as above.
unsafe impl DeviceRepr for CastParams {}

/// Mirror of `BiasParams` in add_bias.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct BiasParams {
    x: u64,
    bias: u64,
    rs: i64,
    rows: i32,
    cols: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for BiasParams {}

/// out (rows, d) in `out_type`, row stride `out_rs` = rmsnorm of x (rows, d)
/// f32 with row stride `x_rs`, times `w` (d) f32 (0: no weight).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rmsnorm(
    ctx: &GpuContext,
    x: u64,
    x_rs: usize,
    w: u64,
    out: u64,
    out_rs: usize,
    out_type: DataType,
    rows: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    let name = match out_type {
        DataType::F32 => "rmsnorm_f32",
        DataType::F16 => "rmsnorm_f16",
        DataType::Bf16 => "rmsnorm_bf16",
    };
    let f = ctx.function(&RMSNORM, name)?;
    let p = NormParams {
        x,
        w,
        out,
        x_rs: x_rs as i64,
        out_rs: out_rs as i64,
        rows: to_i32("rows", rows)?,
        d: to_i32("D", d)?,
        eps,
    };
    let cfg = LaunchConfig {
        grid_dim: (grid_rows(rows)?, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    ctx.launch(&f, cfg, &p)
}

/// out (t, d) f32 = rows `tokens[i]` (u32, already checked < V) of table (V, d) f32.
pub(crate) fn embedding(
    ctx: &GpuContext,
    tokens: u64,
    table: u64,
    out: u64,
    t: usize,
    d: usize,
) -> Result<(), GpuError> {
    let f = ctx.function(&EMBEDDING, "embedding_gather_f32")?;
    let p = EmbParams {
        tokens,
        table,
        out,
        t: to_i32("tokens", t)?,
        d: to_i32("D", d)?,
    };
    let cfg = LaunchConfig {
        grid_dim: (grid_rows(t)?, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    ctx.launch(&f, cfg, &p)
}

/// out (n) in `to` (f16 or bf16) = x (n) f32.
pub(crate) fn cast(
    ctx: &GpuContext,
    x: u64,
    out: u64,
    to: DataType,
    n: usize,
) -> Result<(), GpuError> {
    let name = match to {
        DataType::F16 => "cast_f32_to_f16",
        DataType::Bf16 => "cast_f32_to_bf16",
        DataType::F32 => return Err(GpuError::invalid("cast to f32")),
    };
    let f = ctx.function(&CAST, name)?;
    let p = CastParams {
        x,
        out,
        n: n as i64,
    };
    let blocks = n.div_ceil(256).clamp(1, 65535 * 16) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    ctx.launch(&f, cfg, &p)
}

/// x (rows, cols) += bias (cols) f32, in place; x f32 or bf16 with row stride `rs`.
pub(crate) fn add_bias(
    ctx: &GpuContext,
    x: u64,
    x_type: DataType,
    rs: usize,
    bias: u64,
    rows: usize,
    cols: usize,
) -> Result<(), GpuError> {
    let name = match x_type {
        DataType::F32 => "add_bias_f32",
        DataType::Bf16 => "add_bias_bf16",
        DataType::F16 => return Err(GpuError::invalid("add_bias on f16")),
    };
    let f = ctx.function(&ADD_BIAS, name)?;
    let p = BiasParams {
        x,
        bias,
        rs: rs as i64,
        rows: to_i32("rows", rows)?,
        cols: to_i32("cols", cols)?,
    };
    let cfg = LaunchConfig {
        grid_dim: (grid_rows(rows)?, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    ctx.launch(&f, cfg, &p)
}
