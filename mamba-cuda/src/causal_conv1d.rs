//! The fused causal depthwise conv1d + SiLU (`kernels/causal_conv1d.cu`).

use cudarc::driver::{DeviceRepr, LaunchConfig};

use crate::buffer::{Element, GpuBuffer, MatView, MatViewMut};
use crate::compile::CAUSAL_CONV1D;
use crate::context::GpuContext;
use crate::error::GpuError;

/// Largest kernel width (K) the conv takes.
pub const MAX_CONV_WIDTH: usize = 16;

const THREADS: usize = 128;
/// Shortest token tile per thread.
const MIN_TILE: usize = 16;

/// The sizes of one conv call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Independent sequences.
    pub batch: usize,
    /// Tokens per sequence (L).
    pub len: usize,
    /// Channels (E).
    pub channels: usize,
    /// Kernel width (K, d_conv), 1..=16.
    pub width: usize,
}

/// The inputs of [`GpuContext::causal_conv1d_silu`].
pub struct ConvInputs<'a, T: Element> {
    /// (batch, L, E).
    pub x: MatView<'a, T>,
    /// (E, K), f32; the last column multiplies the current token.
    pub weight: &'a GpuBuffer<f32>,
    /// (E), f32; `None`: no bias.
    pub bias: Option<&'a GpuBuffer<f32>>,
    /// (batch, K-1, E), f32, oldest first: the inputs before the first token;
    /// `None`: zeros.
    pub initial_window: Option<&'a GpuBuffer<f32>>,
}

/// What [`GpuContext::causal_conv1d_silu_host`] returns.
#[derive(Debug, Clone)]
pub struct ConvOutput<T> {
    /// (batch, L, E).
    pub out: Vec<T>,
    /// (batch, K-1, E): the last K-1 inputs, oldest first.
    pub final_window: Vec<f32>,
}

/// Mirror of `ConvParams` in causal_conv1d.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ConvParams {
    x: u64,
    w: u64,
    bias: u64,
    win_in: u64,
    out: u64,
    win_out: u64,
    x_bs: i64,
    x_rs: i64,
    out_bs: i64,
    out_rs: i64,
    batch: i32,
    l: i32,
    e: i32,
    k: i32,
    tile_len: i32,
}

// SAFETY: plain #[repr(C)] data, laid out as the kernel's by-value struct.
unsafe impl DeviceRepr for ConvParams {}

fn to_i32(what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::invalid(format!("{what} = {v} is too large")))
}

fn check_len(what: &str, buf_len: usize, want: usize) -> Result<(), GpuError> {
    if buf_len != want {
        return Err(GpuError::invalid(format!(
            "{what}: {buf_len} elements, expected {want}"
        )));
    }
    Ok(())
}

impl GpuContext {
    /// Queues out = silu(causal_conv1d(x) + bias), per channel, and writes the
    /// last K-1 inputs (batch, K-1, E) to `final_window`, which continues the
    /// sequence in a later call as its `initial_window`.
    pub fn causal_conv1d_silu<T: Element>(
        &self,
        shape: ConvShape,
        inputs: &ConvInputs<'_, T>,
        out: MatViewMut<'_, T>,
        final_window: &mut GpuBuffer<f32>,
    ) -> Result<(), GpuError> {
        let ConvShape {
            batch,
            len,
            channels: e,
            width: k,
        } = shape;
        if k == 0 || k > MAX_CONV_WIDTH {
            return Err(GpuError::invalid(format!(
                "conv width {k} is outside 1..={MAX_CONV_WIDTH}"
            )));
        }
        if batch > 65535 {
            return Err(GpuError::invalid(format!("batch {batch} is over 65535")));
        }
        let x = inputs.x.check("x", batch, len, e)?;
        let o = out.check("out", batch, len, e)?;
        check_len("weight", inputs.weight.len(), e * k)?;
        if let Some(b) = inputs.bias {
            check_len("bias", b.len(), e)?;
        }
        if let Some(w) = inputs.initial_window {
            check_len("initial_window", w.len(), batch * (k - 1) * e)?;
        }
        check_len("final_window", final_window.len(), batch * (k - 1) * e)?;

        let props = self.props();
        let capacity = props.sm_count as usize * props.max_threads_per_sm as usize;
        // Two waves of threads; each thread re-reads K-1 inputs, so tiles stay long.
        let tiles_wanted = (2 * capacity).div_ceil(batch * e).max(1);
        let tile_len = len
            .div_ceil(tiles_wanted)
            .max(MIN_TILE)
            .max(len.div_ceil(65535))
            .min(len);
        let ntiles = len.div_ceil(tile_len);
        let kmax = if k <= 4 {
            4
        } else if k <= 8 {
            8
        } else {
            16
        };
        let p = ConvParams {
            x,
            w: inputs.weight.ptr,
            bias: inputs.bias.map_or(0, |b| b.ptr),
            win_in: inputs.initial_window.map_or(0, |w| w.ptr),
            out: o,
            win_out: if k > 1 { final_window.ptr } else { 0 },
            x_bs: inputs.x.batch_stride as i64,
            x_rs: inputs.x.row_stride as i64,
            out_bs: out.batch_stride as i64,
            out_rs: out.row_stride as i64,
            batch: to_i32("batch", batch)?,
            l: to_i32("L", len)?,
            e: to_i32("E", e)?,
            k: k as i32,
            tile_len: to_i32("tile", tile_len)?,
        };
        let f = self.function(
            &CAUSAL_CONV1D,
            &format!("causal_conv1d_silu_{}_k{kmax}", T::NAME),
        )?;
        let cfg = LaunchConfig {
            grid_dim: (
                to_i32("grid", e.div_ceil(THREADS))? as u32,
                ntiles as u32,
                batch as u32,
            ),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&f, cfg, &p)
    }

    /// [`GpuContext::causal_conv1d_silu`] on contiguous host slices: x
    /// (batch, L, E), weight (E, K), bias (E), initial window (batch, K-1, E).
    /// Outputs are poisoned with NaN before the launch.
    pub fn causal_conv1d_silu_host<T: Element>(
        &self,
        shape: ConvShape,
        x: &[T],
        weight: &[f32],
        bias: Option<&[f32]>,
        initial_window: Option<&[f32]>,
    ) -> Result<ConvOutput<T>, GpuError> {
        let ConvShape {
            batch,
            len,
            channels: e,
            width: k,
        } = shape;
        let xb = self.upload(x)?;
        let wb = self.upload(weight)?;
        let bb = bias.map(|b| self.upload(b)).transpose()?;
        let ib = initial_window.map(|w| self.upload(w)).transpose()?;
        let mut out = self.upload(&vec![T::from_f32(f32::NAN); batch * len * e])?;
        let mut fin = self.upload(&vec![f32::NAN; batch * k.saturating_sub(1) * e])?;
        let inputs = ConvInputs {
            x: xb.as_mat(len, e),
            weight: &wb,
            bias: bb.as_ref(),
            initial_window: ib.as_ref(),
        };
        self.causal_conv1d_silu(shape, &inputs, out.as_mat_mut(len, e), &mut fin)?;
        Ok(ConvOutput {
            out: self.download(&out)?,
            final_window: self.download(&fin)?,
        })
    }
}
