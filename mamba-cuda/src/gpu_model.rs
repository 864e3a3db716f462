//! Whole-model prefill on the GPU: the weights of a [`mamba_core::Model`]
//! uploaded once ([`GpuModel`]), and a batch of token sequences run through
//! every layer ([`PrefillRun`]), with the recurrent state in and out in
//! mamba-core's layout so a CPU session can continue (or start) the stream.
//!
//! Per layer, for the M = batch * L tokens at once (shapes row-major):
//!   normed (M, D)   = rmsnorm(h)                         rmsnorm.cu, GEMM input type
//!   xz (M, 2E)      = normed · in_proj^T (+ bias)        cuBLAS
//!   xc (M, E)       = silu(conv1d(x half of xz))          causal_conv1d.cu, window in/out
//!   xdbl (M, R+2N)  = xc · x_proj^T                       cuBLAS
//!   delta (M, E)    = xdbl[:, :R] · dt_proj^T             cuBLAS (strided input)
//!   y (M, E)        = scan(xc, delta, z half of xz, B, C) selective_scan.cu, state in/out
//!   h (M, D)       += y · out_proj^T (+ bias)             cuBLAS, beta = 1
//! then the final norm and the head GEMM, for every position or only the last.
//!
//! Activation types: f32 in the F32, TF32 and F16 modes (F16 casts the GEMM
//! inputs, cast.cu), bf16 in the BF16 mode. The residual stream h is f32 always.

use half::bf16;
use mamba_core::{Model, ModelConfig, TensorRef};

use crate::buffer::{Element, GpuBuffer, MatView, MatViewMut};
use crate::causal_conv1d::{ConvInputs, ConvShape};
use crate::context::{GpuContext, RawBuffer, stage_times};
use crate::error::GpuError;
use crate::gemm::{Blas, DataType, GemmPrecision, Operand};
use crate::model_ops;
use crate::selective_scan::{ScanInputs, ScanShape};

/// Which logits a prefill computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsWanted {
    /// After every input position: (batch, L, V).
    All,
    /// After the last position of each sequence only: (batch, V); skips most
    /// of the head GEMM.
    Last,
    /// None (only the state is wanted).
    None,
}

/// One layer's weights on the device.
struct GpuLayer {
    /// (D) f32.
    norm: GpuBuffer<f32>,
    /// (2E, D), GEMM input type.
    in_proj: RawBuffer,
    /// (2E) f32.
    in_proj_b: Option<GpuBuffer<f32>>,
    /// (E, K) f32.
    conv_w: GpuBuffer<f32>,
    /// (E) f32.
    conv_b: Option<GpuBuffer<f32>>,
    /// (R + 2N, E), GEMM input type.
    x_proj: RawBuffer,
    /// (E, R), GEMM input type.
    dt_proj: RawBuffer,
    /// (E) f32.
    dt_b: GpuBuffer<f32>,
    /// (E, N) f32, -exp(A_log).
    a: GpuBuffer<f32>,
    /// (E) f32.
    d: GpuBuffer<f32>,
    /// (D, E), GEMM input type.
    out_proj: RawBuffer,
    /// (D) f32.
    out_proj_b: Option<GpuBuffer<f32>>,
}

/// A model's weights on one GPU, uploaded once, in the GEMM precision chosen
/// at upload (quantized weights are dequantized then). Immutable; any number
/// of [`PrefillRun`]s can use it, one after another on the context's stream.
pub struct GpuModel<'c> {
    ctx: &'c GpuContext,
    blas: Blas,
    precision: GemmPrecision,
    cfg: ModelConfig,
    /// (V, D) f32: the gather reads it.
    embed: GpuBuffer<f32>,
    /// (D) f32.
    norm_f: GpuBuffer<f32>,
    /// (V, D), GEMM input type; `None`: tied and f32, the head is `embed`.
    head: Option<RawBuffer>,
    layers: Vec<GpuLayer>,
}

/// A matrix as f32, row by row (any dtype mamba-core reads, quantized ones dequantized).
fn matrix_f32(model: &Model<'_>, t: &TensorRef) -> Vec<f32> {
    let m = model.matrix(t);
    let mut out = vec![0f32; m.rows * m.cols];
    if m.cols > 0 {
        for (r, row) in out.chunks_exact_mut(m.cols).enumerate() {
            m.row_to_f32(r, row);
        }
    }
    out
}

/// Host bytes of `v` in GEMM input type `dt`.
fn encode(v: &[f32], dt: DataType) -> Vec<u8> {
    match dt {
        DataType::F32 => bytemuck::cast_slice(v).to_vec(),
        DataType::F16 => {
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DataType::Bf16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
    }
}

impl<'c> GpuModel<'c> {
    /// Uploads every weight of `model` to `ctx`'s device: the projections
    /// (and the head) in `precision`'s input type, converted or dequantized
    /// on the host first; vectors, conv weights and the embedding (gathered,
    /// not multiplied) as f32. Fails with [`GpuError::NoGpu`] when cuBLAS
    /// cannot be loaded.
    pub fn upload(
        ctx: &'c GpuContext,
        model: &Model<'_>,
        precision: GemmPrecision,
    ) -> Result<Self, GpuError> {
        let cfg = *model.config();
        if cfg.dt_b_c_rms {
            return Err(GpuError::invalid(
                "the GPU prefill does not support dt/B/C RMSNorm (Falcon-Mamba) yet",
            ));
        }
        if cfg.d_conv > crate::MAX_CONV_WIDTH || cfg.d_state > crate::MAX_STATE {
            return Err(GpuError::invalid(format!(
                "d_conv {} / d_state {} is over the kernels' limits ({} / {})",
                cfg.d_conv,
                cfg.d_state,
                crate::MAX_CONV_WIDTH,
                crate::MAX_STATE
            )));
        }
        let blas = Blas::new(ctx)?;
        let gt = precision.input_type();
        let mat = |t: &TensorRef| ctx.upload_raw(&encode(&matrix_f32(model, t), gt));
        let vec = |t: &TensorRef| ctx.upload(model.f32s(t));
        let opt = |t: &TensorRef| {
            let v = model.f32s(t);
            if v.is_empty() {
                Ok(None)
            } else {
                ctx.upload(v).map(Some)
            }
        };
        let embed_f32 = matrix_f32(model, &model.layout().embed);
        let embed = ctx.upload(&embed_f32)?;
        let tied = model.layout().head == model.layout().embed;
        let head = if tied && gt == DataType::F32 {
            None
        } else if tied {
            Some(ctx.upload_raw(&encode(&embed_f32, gt))?)
        } else {
            Some(mat(&model.layout().head)?)
        };
        drop(embed_f32);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for lw in model.layers() {
            layers.push(GpuLayer {
                norm: vec(&lw.norm)?,
                in_proj: mat(&lw.in_proj)?,
                in_proj_b: if cfg.in_proj_bias {
                    opt(&lw.in_proj_b)?
                } else {
                    None
                },
                conv_w: vec(&lw.conv_w)?,
                conv_b: if cfg.conv_bias {
                    opt(&lw.conv_b)?
                } else {
                    None
                },
                x_proj: mat(&lw.x_proj)?,
                dt_proj: mat(&lw.dt_proj)?,
                dt_b: vec(&lw.dt_b)?,
                a: vec(&lw.a)?,
                d: vec(&lw.d)?,
                out_proj: mat(&lw.out_proj)?,
                out_proj_b: if cfg.out_proj_bias {
                    opt(&lw.out_proj_b)?
                } else {
                    None
                },
            });
        }
        let norm_f = ctx.upload(model.norm_f())?;
        ctx.synchronize()?;
        Ok(Self {
            ctx,
            blas,
            precision,
            cfg,
            embed,
            norm_f,
            head,
            layers,
        })
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The GEMM precision the weights were uploaded in.
    pub fn precision(&self) -> GemmPrecision {
        self.precision
    }

    /// The context the weights live on.
    pub fn context(&self) -> &'c GpuContext {
        self.ctx
    }

    /// One-shot prefill: `tokens` is (batch, L) row-major; `initial_state`, if
    /// any, is `batch` mamba-core states back to back (each
    /// `config().state_len()` f32: per layer the (K-1, E) conv window oldest
    /// first, then the (E, N) SSM state). Returns the logits ((batch, L, V)
    /// for [`LogitsWanted::All`], (batch, V) for `Last`, empty for `None`) and
    /// the `batch` final states in the same layout.
    pub fn prefill(
        &self,
        tokens: &[u32],
        batch: usize,
        initial_state: Option<&[f32]>,
        logits: LogitsWanted,
    ) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        if batch == 0 || tokens.is_empty() || tokens.len() % batch != 0 {
            return Err(GpuError::invalid(format!(
                "{} tokens do not split into {batch} equal non-empty sequences",
                tokens.len()
            )));
        }
        let mut run = PrefillRun::new(self, batch, tokens.len() / batch, logits)?;
        run.set_tokens(tokens)?;
        match initial_state {
            Some(s) => run.set_state(s)?,
            None => run.reset_state(),
        }
        run.forward()?;
        Ok((run.logits()?, run.state()?))
    }
}

/// The activations of one run, in the scan's element type.
struct Acts<T: Element> {
    /// (M, 2E): x then z.
    xz: GpuBuffer<T>,
    /// (M, E): conv + SiLU output, the scan's u.
    xc: GpuBuffer<T>,
    /// (M, R + 2N): dt, B, C.
    xdbl: GpuBuffer<T>,
    /// (M, E).
    delta: GpuBuffer<T>,
    /// (M, E): gated scan output.
    y: GpuBuffer<T>,
}

impl<T: Element> Acts<T> {
    fn new(ctx: &GpuContext, cfg: &ModelConfig, m: usize) -> Result<Self, GpuError> {
        let (e, xd) = (cfg.d_inner, cfg.dt_rank + 2 * cfg.d_state);
        Ok(Self {
            xz: ctx.alloc(m * 2 * e)?,
            xc: ctx.alloc(m * e)?,
            xdbl: ctx.alloc(m * xd)?,
            delta: ctx.alloc(m * e)?,
            y: ctx.alloc(m * e)?,
        })
    }
}

enum ActBufs {
    F32(Acts<f32>),
    Bf16(Acts<bf16>),
}

/// The f16 copies of GEMM inputs in the F16 mode.
struct CastBufs {
    /// (M, E).
    xc: RawBuffer,
    /// (M, R + 2N).
    xdbl: RawBuffer,
    /// (M, E).
    y: RawBuffer,
}

/// Device buffers for prefilling `batch` sequences of `len` tokens with one
/// [`GpuModel`]: set the tokens and the state, [`PrefillRun::forward`]
/// (queues every launch; time it with [`GpuContext::time_ms`]), then read the
/// logits and the state. Reusable: a second `forward` after
/// [`PrefillRun::carry_state`] continues the sequences on the device.
pub struct PrefillRun<'m, 'c> {
    model: &'m GpuModel<'c>,
    batch: usize,
    len: usize,
    wanted: LogitsWanted,
    /// (M) u32.
    tokens: RawBuffer,
    /// (M, D) f32: the residual stream.
    resid: GpuBuffer<f32>,
    /// (M, D), GEMM input type.
    normed: RawBuffer,
    /// Always `Some` between calls (taken out during `forward`).
    acts: Option<ActBufs>,
    casts: Option<CastBufs>,
    /// Per layer (batch, K-1, E) and (batch, E, N): the state before the run.
    win_in: Vec<GpuBuffer<f32>>,
    ssm_in: Vec<GpuBuffer<f32>>,
    /// The same after the run.
    win_out: Vec<GpuBuffer<f32>>,
    ssm_out: Vec<GpuBuffer<f32>>,
    has_initial: bool,
    /// (batch, L, V) or (batch, V) f32.
    logits: GpuBuffer<f32>,
    /// Stage-end events of a profiled forward.
    marks: Option<Vec<(&'static str, cudarc::driver::CudaEvent)>>,
}

impl<'m, 'c> PrefillRun<'m, 'c> {
    /// Allocates the buffers of a (batch, len) prefill; the state starts at zero.
    pub fn new(
        model: &'m GpuModel<'c>,
        batch: usize,
        len: usize,
        logits: LogitsWanted,
    ) -> Result<Self, GpuError> {
        if batch == 0 || len == 0 || batch > 65535 {
            return Err(GpuError::invalid(format!(
                "prefill of {batch} x {len} tokens (batch 1..=65535, len >= 1)"
            )));
        }
        let ctx = model.ctx;
        let cfg = &model.cfg;
        let m = batch * len;
        let (d, e, n, k) = (cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv);
        let gt = model.precision.input_type();
        let acts = match model.precision {
            GemmPrecision::Bf16 => ActBufs::Bf16(Acts::new(ctx, cfg, m)?),
            _ => ActBufs::F32(Acts::new(ctx, cfg, m)?),
        };
        let casts = if model.precision == GemmPrecision::F16 {
            let xd = cfg.dt_rank + 2 * n;
            Some(CastBufs {
                xc: ctx.alloc_raw(m * e * 2)?,
                xdbl: ctx.alloc_raw(m * xd * 2)?,
                y: ctx.alloc_raw(m * e * 2)?,
            })
        } else {
            None
        };
        let per_layer = |len: usize| -> Result<Vec<GpuBuffer<f32>>, GpuError> {
            (0..cfg.n_layer).map(|_| ctx.alloc(len)).collect()
        };
        let logit_rows = match logits {
            LogitsWanted::All => m,
            LogitsWanted::Last => batch,
            LogitsWanted::None => 0,
        };
        Ok(Self {
            model,
            batch,
            len,
            wanted: logits,
            tokens: ctx.alloc_raw(m * 4)?,
            resid: ctx.alloc(m * d)?,
            normed: ctx.alloc_raw(m * d * gt.size())?,
            acts: Some(acts),
            casts,
            win_in: per_layer(batch * (k - 1) * e)?,
            ssm_in: per_layer(batch * e * n)?,
            win_out: per_layer(batch * (k - 1) * e)?,
            ssm_out: per_layer(batch * e * n)?,
            has_initial: false,
            logits: ctx.alloc(logit_rows * cfg.vocab_size)?,
            marks: None,
        })
    }

    /// Sets the (batch, L) input tokens (checked against the vocabulary).
    pub fn set_tokens(&mut self, tokens: &[u32]) -> Result<(), GpuError> {
        if tokens.len() != self.batch * self.len {
            return Err(GpuError::invalid(format!(
                "{} tokens for a {} x {} prefill",
                tokens.len(),
                self.batch,
                self.len
            )));
        }
        let v = self.model.cfg.vocab_size;
        if let Some((i, t)) = tokens.iter().enumerate().find(|(_, t)| **t as usize >= v) {
            return Err(GpuError::invalid(format!(
                "token {t} at position {i} is out of range (vocabulary {v})"
            )));
        }
        self.model
            .ctx
            .write_raw(&mut self.tokens, bytemuck::cast_slice(tokens))
    }

    /// Starts the sequences from the zero state (a fresh stream).
    pub fn reset_state(&mut self) {
        self.has_initial = false;
    }

    /// Sets the initial state: `batch` mamba-core states back to back.
    pub fn set_state(&mut self, state: &[f32]) -> Result<(), GpuError> {
        let cfg = &self.model.cfg;
        let per = cfg.state_len();
        if state.len() != self.batch * per {
            return Err(GpuError::invalid(format!(
                "initial state: {} f32, expected {} ({} x {per})",
                state.len(),
                self.batch * per,
                self.batch
            )));
        }
        let (cw, sl) = (cfg.conv_state_len(), cfg.d_inner * cfg.d_state);
        let lper = cfg.layer_state_len();
        for l in 0..cfg.n_layer {
            let mut win = Vec::with_capacity(self.batch * cw);
            let mut ssm = Vec::with_capacity(self.batch * sl);
            for b in 0..self.batch {
                let s = &state[b * per + l * lper..b * per + (l + 1) * lper];
                win.extend_from_slice(&s[..cw]);
                ssm.extend_from_slice(&s[cw..cw + sl]);
            }
            self.model.ctx.write(&mut self.win_in[l], &win)?;
            self.model.ctx.write(&mut self.ssm_in[l], &ssm)?;
        }
        self.has_initial = true;
        Ok(())
    }

    /// Makes the final state of the last [`PrefillRun::forward`] the initial
    /// state of the next, on the device (chunked prefill without a host trip).
    pub fn carry_state(&mut self) {
        std::mem::swap(&mut self.win_in, &mut self.win_out);
        std::mem::swap(&mut self.ssm_in, &mut self.ssm_out);
        self.has_initial = true;
    }

    /// The final states of the last forward: `batch` mamba-core states back to back.
    pub fn state(&self) -> Result<Vec<f32>, GpuError> {
        let cfg = &self.model.cfg;
        let per = cfg.state_len();
        let (cw, sl) = (cfg.conv_state_len(), cfg.d_inner * cfg.d_state);
        let lper = cfg.layer_state_len();
        let mut out = vec![0f32; self.batch * per];
        for l in 0..cfg.n_layer {
            let win = self.model.ctx.download(&self.win_out[l])?;
            let ssm = self.model.ctx.download(&self.ssm_out[l])?;
            for b in 0..self.batch {
                let s = &mut out[b * per + l * lper..b * per + (l + 1) * lper];
                s[..cw].copy_from_slice(&win[b * cw..(b + 1) * cw]);
                s[cw..cw + sl].copy_from_slice(&ssm[b * sl..(b + 1) * sl]);
            }
        }
        Ok(out)
    }

    /// The logits of the last forward ((batch, L, V), (batch, V) or empty).
    pub fn logits(&self) -> Result<Vec<f32>, GpuError> {
        self.model.ctx.download(&self.logits)
    }

    /// Ends a stage of a profiled forward (nothing otherwise).
    fn mark(&mut self, stage: &'static str) -> Result<(), GpuError> {
        if self.marks.is_some() {
            let ev = self.model.ctx.record_event()?;
            if let Some(m) = self.marks.as_mut() {
                m.push((stage, ev));
            }
        }
        Ok(())
    }

    /// [`PrefillRun::forward`] with a CUDA event after every stage; waits,
    /// and returns the milliseconds per stage kind summed over the layers
    /// (`embedding`, `rmsnorm`, `in_proj`, `conv`, `x_proj`, `dt_proj`,
    /// `scan`, `out_proj`, `head`), in first-seen order.
    pub fn forward_profiled(&mut self) -> Result<Vec<(&'static str, f32)>, GpuError> {
        let start = self.model.ctx.record_event()?;
        self.marks = Some(Vec::new());
        let r = self.forward();
        let marks = self.marks.take().unwrap_or_default();
        r?;
        self.model.ctx.synchronize()?;
        stage_times(&start, &marks)
    }

    /// Queues the whole model over the tokens; returns without waiting.
    pub fn forward(&mut self) -> Result<(), GpuError> {
        let model = self.model;
        let ctx = model.ctx;
        let cfg = &model.cfg;
        let m = self.batch * self.len;
        let d = cfg.d_model;
        model_ops::embedding(ctx, self.tokens.ptr, model.embed.ptr, self.resid.ptr, m, d)?;
        self.mark("embedding")?;
        let mut acts = self
            .acts
            .take()
            .ok_or_else(|| GpuError::invalid("prefill run left broken by an earlier panic"))?;
        let r = (|| -> Result<(), GpuError> {
            for l in 0..cfg.n_layer {
                match &mut acts {
                    ActBufs::F32(a) => self.layer(l, a, DataType::F32)?,
                    ActBufs::Bf16(a) => self.layer(l, a, DataType::Bf16)?,
                }
            }
            Ok(())
        })();
        self.acts = Some(acts);
        r?;
        self.head()
    }

    fn layer<T: Element>(
        &mut self,
        l: usize,
        a: &mut Acts<T>,
        at: DataType,
    ) -> Result<(), GpuError> {
        let model = self.model;
        let (ctx, blas, prec) = (model.ctx, &model.blas, model.precision);
        let cfg = &model.cfg;
        let lw = &model.layers[l];
        let (b, len) = (self.batch, self.len);
        let m = b * len;
        let (d, e, n, r, k) = (
            cfg.d_model,
            cfg.d_inner,
            cfg.d_state,
            cfg.dt_rank,
            cfg.d_conv,
        );
        let xd = r + 2 * n;
        let gt = prec.input_type();
        let w = |buf: &RawBuffer, cols: usize| Operand {
            ptr: buf.ptr,
            dtype: gt,
            ld: cols,
        };

        model_ops::rmsnorm(
            ctx,
            self.resid.ptr,
            d,
            lw.norm.ptr,
            self.normed.ptr,
            d,
            gt,
            m,
            d,
            cfg.eps,
        )?;
        self.mark("rmsnorm")?;
        let x_in = Operand {
            ptr: self.normed.ptr,
            dtype: gt,
            ld: d,
        };
        let xz_out = Operand {
            ptr: a.xz.ptr,
            dtype: at,
            ld: 2 * e,
        };
        // SAFETY: normed is (M, D), in_proj (2E, D) and xz (M, 2E), all
        // allocated with those sizes and element types and kept alive by self
        // and the model until the stream is done (their drops free in stream order).
        unsafe { blas.linear(prec, m, 2 * e, d, x_in, w(&lw.in_proj, d), xz_out, 0.0)? };
        if let Some(bias) = &lw.in_proj_b {
            model_ops::add_bias(ctx, a.xz.ptr, at, 2 * e, bias.ptr, m, 2 * e)?;
        }
        self.mark("in_proj")?;

        let win_in = self.has_initial.then(|| &self.win_in[l]);
        ctx.causal_conv1d_silu(
            ConvShape {
                batch: b,
                len,
                channels: e,
                width: k,
            },
            &ConvInputs {
                x: MatView::new(&a.xz, 0, len * 2 * e, 2 * e),
                weight: &lw.conv_w,
                bias: lw.conv_b.as_ref(),
                initial_window: win_in,
            },
            MatViewMut::new(&mut a.xc, 0, len * e, e),
            &mut self.win_out[l],
        )?;
        self.mark("conv")?;

        // The GEMM inputs: the activations themselves, or their f16 copies.
        let (xc_in, xdbl_in) = match &self.casts {
            Some(c) => {
                model_ops::cast(ctx, a.xc.ptr, c.xc.ptr, gt, m * e)?;
                (c.xc.ptr, c.xdbl.ptr)
            }
            None => (a.xc.ptr, a.xdbl.ptr),
        };
        let xc_op = Operand {
            ptr: xc_in,
            dtype: gt,
            ld: e,
        };
        let xdbl_out = Operand {
            ptr: a.xdbl.ptr,
            dtype: at,
            ld: xd,
        };
        // SAFETY: xc (M, E), x_proj (R+2N, E), xdbl (M, R+2N), as above.
        unsafe { blas.linear(prec, m, xd, e, xc_op, w(&lw.x_proj, e), xdbl_out, 0.0)? };
        if let Some(c) = &self.casts {
            model_ops::cast(ctx, a.xdbl.ptr, c.xdbl.ptr, gt, m * xd)?;
        }
        self.mark("x_proj")?;
        let dt_op = Operand {
            ptr: xdbl_in,
            dtype: gt,
            ld: xd,
        };
        let delta_out = Operand {
            ptr: a.delta.ptr,
            dtype: at,
            ld: e,
        };
        // SAFETY: the first R columns of xdbl (M, R+2N) with its row stride,
        // dt_proj (E, R), delta (M, E).
        unsafe { blas.linear(prec, m, e, r, dt_op, w(&lw.dt_proj, r), delta_out, 0.0)? };
        self.mark("dt_proj")?;

        let s_in = self.has_initial.then(|| &self.ssm_in[l]);
        ctx.selective_scan(
            ScanShape {
                batch: b,
                len,
                channels: e,
                state: n,
            },
            &ScanInputs {
                u: MatView::new(&a.xc, 0, len * e, e),
                delta: MatView::new(&a.delta, 0, len * e, e),
                z: Some(MatView::new(&a.xz, e, len * 2 * e, 2 * e)),
                b: MatView::new(&a.xdbl, r, len * xd, xd),
                c: MatView::new(&a.xdbl, r + n, len * xd, xd),
                a: &lw.a,
                d: Some(&lw.d),
                delta_bias: Some(&lw.dt_b),
                initial_state: s_in,
                chunk_len: None,
                split: Default::default(),
            },
            MatViewMut::new(&mut a.y, 0, len * e, e),
            &mut self.ssm_out[l],
        )?;
        self.mark("scan")?;

        let y_in = match &self.casts {
            Some(c) => {
                model_ops::cast(ctx, a.y.ptr, c.y.ptr, gt, m * e)?;
                c.y.ptr
            }
            None => a.y.ptr,
        };
        let y_op = Operand {
            ptr: y_in,
            dtype: gt,
            ld: e,
        };
        let h_out = Operand {
            ptr: self.resid.ptr,
            dtype: DataType::F32,
            ld: d,
        };
        // SAFETY: y (M, E), out_proj (D, E), resid (M, D) f32; beta = 1 adds
        // the block's output to the residual stream.
        unsafe { blas.linear(prec, m, d, e, y_op, w(&lw.out_proj, e), h_out, 1.0)? };
        if let Some(bias) = &lw.out_proj_b {
            model_ops::add_bias(ctx, self.resid.ptr, DataType::F32, d, bias.ptr, m, d)?;
        }
        self.mark("out_proj")
    }

    fn head(&mut self) -> Result<(), GpuError> {
        let model = self.model;
        let ctx = model.ctx;
        let cfg = &model.cfg;
        let (d, v) = (cfg.d_model, cfg.vocab_size);
        let gt = model.precision.input_type();
        let (rows, first, stride) = match self.wanted {
            LogitsWanted::None => return Ok(()),
            LogitsWanted::All => (self.batch * self.len, 0, d),
            // Row L-1 of each sequence.
            LogitsWanted::Last => (self.batch, self.len - 1, self.len * d),
        };
        model_ops::rmsnorm(
            ctx,
            self.resid.ptr + (first * d * 4) as u64,
            stride,
            model.norm_f.ptr,
            self.normed.ptr,
            d,
            gt,
            rows,
            d,
            cfg.eps,
        )?;
        let head = Operand {
            ptr: model.head.as_ref().map_or(model.embed.ptr, |h| h.ptr),
            dtype: gt,
            ld: d,
        };
        let x = Operand {
            ptr: self.normed.ptr,
            dtype: gt,
            ld: d,
        };
        let y = Operand {
            ptr: self.logits.ptr,
            dtype: DataType::F32,
            ld: v,
        };
        // SAFETY: normed holds `rows` (<= M) rows of D, the head is (V, D) in
        // the GEMM input type, logits (rows, V) f32.
        unsafe {
            model
                .blas
                .linear(model.precision, rows, v, d, x, head, y, 0.0)?
        };
        self.mark("head")
    }
}
