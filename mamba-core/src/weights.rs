//! Where each weight lives in the model bytes, and the [`Model`] view over them.
//!
//! Loading resolves every tensor once into a [`TensorRef`] (type, shape, byte range):
//! plain data with no lifetime, so the std side can keep them beside an mmap and a
//! microcontroller in a static array. A [`Model`] is then a cheap view: the bytes, the
//! layout and the per-layer refs.

use crate::config::{Fnv, ModelConfig};
use crate::error::{Error, Result, name};
use crate::gguf::{Gguf, TensorInfo, Value};
use crate::tensor::{DType, WeightMatrix};

/// One tensor: type, row-major shape and byte range in the model bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorRef {
    /// Element type.
    pub dtype: DType,
    /// Rows (1 for vectors).
    pub rows: usize,
    /// Columns (innermost dim).
    pub cols: usize,
    /// Byte offset in the model bytes.
    pub offset: usize,
    /// Byte length.
    pub nbytes: usize,
}

impl TensorRef {
    /// An empty ref (used for absent optional tensors and unfilled slots).
    pub const EMPTY: TensorRef = TensorRef {
        dtype: DType::F32,
        rows: 0,
        cols: 0,
        offset: 0,
        nbytes: 0,
    };

    fn end(&self) -> usize {
        self.offset + self.nbytes
    }
}

/// Tensor refs of one Mamba block. Optional tensors have `rows == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LayerWeights {
    /// (D) f32
    pub norm: TensorRef,
    /// (2E, D); rows 0..E give x, E..2E give z.
    pub in_proj: TensorRef,
    /// (2E) f32, optional.
    pub in_proj_b: TensorRef,
    /// (E, K) f32, last column multiplies the current token.
    pub conv_w: TensorRef,
    /// (E) f32, optional.
    pub conv_b: TensorRef,
    /// (R + 2N, E)
    pub x_proj: TensorRef,
    /// (E, R)
    pub dt_proj: TensorRef,
    /// (E) f32
    pub dt_b: TensorRef,
    /// (E, N) f32, A = -exp(A_log).
    pub a: TensorRef,
    /// (E) f32
    pub d: TensorRef,
    /// (D, E)
    pub out_proj: TensorRef,
    /// (D) f32, optional.
    pub out_proj_b: TensorRef,
}

impl LayerWeights {
    /// All refs empty.
    pub const EMPTY: LayerWeights = LayerWeights {
        norm: TensorRef::EMPTY,
        in_proj: TensorRef::EMPTY,
        in_proj_b: TensorRef::EMPTY,
        conv_w: TensorRef::EMPTY,
        conv_b: TensorRef::EMPTY,
        x_proj: TensorRef::EMPTY,
        dt_proj: TensorRef::EMPTY,
        dt_b: TensorRef::EMPTY,
        a: TensorRef::EMPTY,
        d: TensorRef::EMPTY,
        out_proj: TensorRef::EMPTY,
        out_proj_b: TensorRef::EMPTY,
    };

    fn all(&self) -> [&TensorRef; 12] {
        [
            &self.norm,
            &self.in_proj,
            &self.in_proj_b,
            &self.conv_w,
            &self.conv_b,
            &self.x_proj,
            &self.dt_proj,
            &self.dt_b,
            &self.a,
            &self.d,
            &self.out_proj,
            &self.out_proj_b,
        ]
    }
}

/// Everything about a loaded model except the per-layer refs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelLayout {
    /// Shape and options.
    pub config: ModelConfig,
    /// (V, D) token embedding.
    pub embed: TensorRef,
    /// (D) f32 final norm.
    pub norm_f: TensorRef,
    /// (V, D) output head; equals `embed` when tied.
    pub head: TensorRef,
    /// Bytes the tensors need: every ref ends at or before this.
    pub required_len: usize,
    /// Hash of the config and some weights: ties state blobs to this model.
    pub fingerprint: u64,
}

/// GGUF tensor names of layer `i`.
pub mod names {
    /// Token embedding.
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    /// Final norm.
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    /// Untied head.
    pub const OUTPUT: &str = "output.weight";
    /// Per-layer suffixes in [`crate::LayerWeights`] order.
    pub const LAYER: [&str; 12] = [
        "attn_norm.weight",
        "ssm_in.weight",
        "ssm_in.bias",
        "ssm_conv1d.weight",
        "ssm_conv1d.bias",
        "ssm_x.weight",
        "ssm_dt.weight",
        "ssm_dt.bias",
        "ssm_a",
        "ssm_d",
        "ssm_out.weight",
        "ssm_out.bias",
    ];
}

/// Write "blk.{i}.{suffix}" into a fixed buffer.
pub fn layer_tensor_name(i: usize, suffix: &str) -> heapless::String<64> {
    use core::fmt::Write;
    let mut s = heapless::String::<64>::new();
    // 64 bytes fit "blk." + 4 digits + the longest suffix.
    let _ = write!(s, "blk.{i}.{suffix}");
    s
}

fn arch_key(arch: &str, suffix: &str) -> heapless::String<96> {
    let mut s = heapless::String::<96>::new();
    let _ = s.push_str(arch);
    let _ = s.push('.');
    let _ = s.push_str(suffix);
    s
}

fn get_dim(g: &Gguf<'_>, arch: &str, suffix: &str) -> Result<usize> {
    let k = arch_key(arch, suffix);
    let v = g.get_uint(&k)?;
    if v == 0 || v > crate::config::MAX_DIM as u64 {
        return Err(Error::BadKey(name(&k)));
    }
    Ok(v as usize)
}

/// Read the model config from GGUF metadata (vocab size and biases from the tensors).
pub fn config_from_gguf(g: &Gguf<'_>) -> Result<ModelConfig> {
    let arch = g.get_str("general.architecture")?;
    if arch != "mamba" {
        return Err(Error::WrongArchitecture(name(arch)));
    }
    let d_model = get_dim(g, arch, "embedding_length")?;
    let n_layer = get_dim(g, arch, "block_count")?;
    let d_conv = get_dim(g, arch, "ssm.conv_kernel")?;
    let d_inner = get_dim(g, arch, "ssm.inner_size")?;
    let d_state = get_dim(g, arch, "ssm.state_size")?;
    let dt_rank = get_dim(g, arch, "ssm.time_step_rank")?;
    let eps_key = arch_key(arch, "attention.layer_norm_rms_epsilon");
    let eps = match g.get(&eps_key) {
        None => 1e-5,
        Some(Value::Float(f)) => f as f32,
        Some(_) => return Err(Error::BadKey(name(&eps_key))),
    };
    let dtbc_key = arch_key(arch, "ssm.dt_b_c_rms");
    let dt_b_c_rms = match g.get(&dtbc_key) {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(Error::BadKey(name(&dtbc_key))),
    };
    let embd = g
        .tensor(names::TOKEN_EMBD)
        .ok_or(Error::MissingTensor(name(names::TOKEN_EMBD)))?;
    if embd.n_dims != 2 {
        return Err(Error::TensorShape {
            name: name(names::TOKEN_EMBD),
            expected: [0, d_model as u64],
            found: [embd.dims[1], embd.dims[0]],
        });
    }
    let vocab_size = embd.dims[1] as usize;
    let has = |suffix: &str| g.tensor(&layer_tensor_name(0, suffix)).is_some();
    let cfg = ModelConfig {
        d_model,
        n_layer,
        d_inner,
        d_state,
        d_conv,
        dt_rank,
        vocab_size,
        eps,
        in_proj_bias: has("ssm_in.bias"),
        out_proj_bias: has("ssm_out.bias"),
        conv_bias: has("ssm_conv1d.bias"),
        tied_head: g.tensor(names::OUTPUT).is_none(),
        dt_b_c_rms,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Which element types a tensor may have.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// f32 only (norms, biases, conv, A, D).
    F32,
    /// Any supported type (projections, embedding).
    Any,
}

fn resolve(
    g: &Gguf<'_>,
    tname: &str,
    rows: usize,
    cols: usize,
    kind: Kind,
    optional: bool,
) -> Result<TensorRef> {
    let Some(t) = g.tensor(tname) else {
        return if optional {
            Ok(TensorRef::EMPTY)
        } else {
            Err(Error::MissingTensor(name(tname)))
        };
    };
    check_tensor(g, &t, rows, cols, kind)
}

fn check_tensor(
    g: &Gguf<'_>,
    t: &TensorInfo<'_>,
    rows: usize,
    cols: usize,
    kind: Kind,
) -> Result<TensorRef> {
    // Row-major shape from GGUF dims; a singleton middle dim (old conv layout) is dropped.
    let (f_rows, f_cols) = match t.n_dims {
        1 => (1, t.dims[0]),
        2 => (t.dims[1], t.dims[0]),
        3 if t.dims[1] == 1 => (t.dims[2], t.dims[0]),
        _ => (t.dims[1..].iter().product(), t.dims[0]),
    };
    let bad_shape = t.n_dims > 3 || (t.n_dims == 3 && t.dims[1] != 1);
    if bad_shape || f_rows != rows as u64 || f_cols != cols as u64 {
        return Err(Error::TensorShape {
            name: name(t.name),
            expected: [rows as u64, cols as u64],
            found: [f_rows, f_cols],
        });
    }
    let dtype = t.dtype().ok_or(Error::TensorType {
        name: name(t.name),
        code: t.type_code,
    })?;
    if kind == Kind::F32 && dtype != DType::F32 {
        return Err(Error::TensorType {
            name: name(t.name),
            code: t.type_code,
        });
    }
    // Alignment relative to the start of the bytes; Model::new checks the base pointer.
    if t.offset % dtype.align() != 0 {
        return Err(Error::Misaligned(name(t.name)));
    }
    let _ = g;
    Ok(TensorRef {
        dtype,
        rows,
        cols,
        offset: t.offset,
        nbytes: t.nbytes,
    })
}

impl ModelLayout {
    /// Resolve every tensor of a `mamba` GGUF; fills `layers[..n_layer]`.
    pub fn from_gguf(g: &Gguf<'_>, layers: &mut [LayerWeights]) -> Result<ModelLayout> {
        let config = config_from_gguf(g)?;
        let c = &config;
        if layers.len() < c.n_layer {
            return Err(Error::BufferSize {
                what: "layer table",
                needed: c.n_layer,
                got: layers.len(),
            });
        }
        let (d, e, n, k, r, v) = (
            c.d_model,
            c.d_inner,
            c.d_state,
            c.d_conv,
            c.dt_rank,
            c.vocab_size,
        );
        let embed = resolve(g, names::TOKEN_EMBD, v, d, Kind::Any, false)?;
        let norm_f = resolve(g, names::OUTPUT_NORM, 1, d, Kind::F32, false)?;
        let head = if c.tied_head {
            embed
        } else {
            resolve(g, names::OUTPUT, v, d, Kind::Any, false)?
        };
        let mut required_len = embed.end().max(norm_f.end()).max(head.end());
        for (i, lw) in layers.iter_mut().take(c.n_layer).enumerate() {
            let nm = |s: &str| layer_tensor_name(i, s);
            let w = LayerWeights {
                norm: resolve(g, &nm("attn_norm.weight"), 1, d, Kind::F32, false)?,
                in_proj: resolve(g, &nm("ssm_in.weight"), 2 * e, d, Kind::Any, false)?,
                in_proj_b: resolve(g, &nm("ssm_in.bias"), 1, 2 * e, Kind::F32, !c.in_proj_bias)?,
                conv_w: resolve(g, &nm("ssm_conv1d.weight"), e, k, Kind::F32, false)?,
                conv_b: resolve(g, &nm("ssm_conv1d.bias"), 1, e, Kind::F32, !c.conv_bias)?,
                x_proj: resolve(g, &nm("ssm_x.weight"), r + 2 * n, e, Kind::Any, false)?,
                dt_proj: resolve(g, &nm("ssm_dt.weight"), e, r, Kind::Any, false)?,
                dt_b: resolve(g, &nm("ssm_dt.bias"), 1, e, Kind::F32, false)?,
                a: resolve(g, &nm("ssm_a"), e, n, Kind::F32, false)?,
                d: resolve(g, &nm("ssm_d"), 1, e, Kind::F32, false)?,
                out_proj: resolve(g, &nm("ssm_out.weight"), d, e, Kind::Any, false)?,
                out_proj_b: resolve(g, &nm("ssm_out.bias"), 1, d, Kind::F32, !c.out_proj_bias)?,
            };
            // Biases must be present on every layer or none.
            let present = [
                (c.in_proj_bias, &w.in_proj_b, "ssm_in.bias"),
                (c.conv_bias, &w.conv_b, "ssm_conv1d.bias"),
                (c.out_proj_bias, &w.out_proj_b, "ssm_out.bias"),
            ];
            for (want, t, s) in present {
                if want && t.rows == 0 {
                    return Err(Error::MissingTensor(name(&nm(s))));
                }
                if !want && t.rows != 0 {
                    return Err(Error::Config(
                        "a bias is present on some layers but not on layer 0",
                    ));
                }
            }
            for t in w.all() {
                required_len = required_len.max(t.end());
            }
            *lw = w;
        }
        let bytes = g.bytes();
        let mut h = Fnv::new();
        h.write(&config.fingerprint().to_le_bytes());
        h.write(&bytes[norm_f.offset..norm_f.end()]);
        let l0 = &layers[0];
        let lz = &layers[c.n_layer - 1];
        h.write(&bytes[l0.a.offset..l0.a.end()]);
        h.write(&bytes[lz.d.offset..lz.d.end()]);
        h.write(&bytes[l0.dt_b.offset..l0.dt_b.end()]);
        let hrow = head.nbytes / head.rows.max(1);
        h.write(&bytes[head.offset..head.offset + hrow.min(head.nbytes)]);
        Ok(ModelLayout {
            config,
            embed,
            norm_f,
            head,
            required_len,
            fingerprint: h.finish(),
        })
    }
}

/// A loaded model: bytes, layout and layer refs. Cheap to copy; immutable; Sync.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    data: &'a [u8],
    layout: &'a ModelLayout,
    layers: &'a [LayerWeights],
}

impl<'a> Model<'a> {
    /// A view over `data` with a layout resolved from those same bytes.
    /// Checks that every ref lies inside `data` and that `data` is aligned, so that
    /// later slicing cannot fail.
    pub fn new(
        data: &'a [u8],
        layout: &'a ModelLayout,
        layers: &'a [LayerWeights],
    ) -> Result<Self> {
        if data.len() < layout.required_len {
            return Err(Error::TensorOutOfBounds(name(
                "model bytes shorter than the layout",
            )));
        }
        if layers.len() < layout.config.n_layer {
            return Err(Error::BufferSize {
                what: "layer table",
                needed: layout.config.n_layer,
                got: layers.len(),
            });
        }
        if data.as_ptr() as usize % 4 != 0 {
            return Err(Error::Misaligned(name(
                "model bytes (base address not 4-byte aligned)",
            )));
        }
        Ok(Model {
            data,
            layout,
            layers: &layers[..layout.config.n_layer],
        })
    }

    /// The config.
    pub fn config(&self) -> &'a ModelConfig {
        &self.layout.config
    }
    /// The layout.
    pub fn layout(&self) -> &'a ModelLayout {
        self.layout
    }
    /// Per-layer refs.
    pub fn layers(&self) -> &'a [LayerWeights] {
        self.layers
    }
    /// The model bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }
    /// Fingerprint used by state blobs.
    pub fn fingerprint(&self) -> u64 {
        self.layout.fingerprint
    }
    /// A matrix view of a ref.
    #[inline]
    pub fn matrix(&self, t: &TensorRef) -> WeightMatrix<'a> {
        WeightMatrix {
            dtype: t.dtype,
            rows: t.rows,
            cols: t.cols,
            data: &self.data[t.offset..t.offset + t.nbytes],
        }
    }
    /// An f32 vector view of a ref (empty for absent optional tensors).
    #[inline]
    pub fn f32s(&self, t: &TensorRef) -> &'a [f32] {
        // Offsets and base were checked to be 4-aligned, and f32 refs are F32-typed.
        bytemuck::try_cast_slice(&self.data[t.offset..t.offset + t.nbytes]).unwrap_or(&[])
    }
    /// Token embedding matrix (V, D).
    pub fn embed(&self) -> WeightMatrix<'a> {
        self.matrix(&self.layout.embed)
    }
    /// Output head (V, D).
    pub fn head(&self) -> WeightMatrix<'a> {
        self.matrix(&self.layout.head)
    }
    /// Final norm weight (D).
    pub fn norm_f(&self) -> &'a [f32] {
        self.f32s(&self.layout.norm_f)
    }
}
