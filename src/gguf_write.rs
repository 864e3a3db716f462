//! A GGUF (version 3) writer: metadata, tensor table, aligned data.

use crate::aligned::AlignedBytes;
use mamba_core::DType;
use mamba_core::gguf::vtype;
use std::io::Write;

/// A metadata value to write.
#[derive(Debug, Clone)]
pub enum MetaValue {
    /// u32
    U32(u32),
    /// i32
    I32(i32),
    /// u64
    U64(u64),
    /// f32
    F32(f32),
    /// bool
    Bool(bool),
    /// string
    Str(String),
    /// array of strings
    StrArray(Vec<String>),
    /// array of i32
    I32Array(Vec<i32>),
}

/// A tensor to write: GGUF dims (innermost first) and its encoded bytes.
#[derive(Debug, Clone)]
pub struct TensorData {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// GGUF dims, innermost first.
    pub dims: Vec<u64>,
    /// Encoded data.
    pub data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a GGUF file.
#[derive(Debug, Default)]
pub struct GgufWriter {
    kvs: Vec<(String, MetaValue)>,
    tensors: Vec<TensorData>,
    alignment: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufWriter {
    /// An empty writer with 32-byte alignment.
    pub fn new() -> Self {
        GgufWriter {
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }
    /// Set the data alignment (written as `general.alignment` when not 32).
    pub fn set_alignment(&mut self, a: u64) {
        self.alignment = a;
        if a != 32 {
            self.kvs
                .push(("general.alignment".into(), MetaValue::U32(a as u32)));
        }
    }
    /// Remove tensors whose name matches.
    pub fn remove_tensor(&mut self, name: &str) {
        self.tensors.retain(|t| t.name != name);
    }
    /// Mutable access to a tensor by name.
    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut TensorData> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }
    /// Replace (or add) a metadata entry.
    pub fn set_kv(&mut self, key: &str, v: MetaValue) {
        self.kvs.retain(|(k, _)| k != key);
        self.kvs.push((key.to_string(), v));
    }
    /// Add a metadata entry.
    pub fn kv(&mut self, key: &str, v: MetaValue) {
        self.kvs.push((key.to_string(), v));
    }
    /// Add a tensor.
    pub fn tensor(&mut self, t: TensorData) {
        self.tensors.push(t);
    }
    /// Tensors added so far.
    pub fn tensors(&self) -> &[TensorData] {
        &self.tensors
    }

    fn header(&self) -> (Vec<u8>, Vec<u64>, u64) {
        let mut out = Vec::new();
        out.extend_from_slice(&mamba_core::gguf::GGUF_MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            match v {
                MetaValue::U32(x) => {
                    out.extend_from_slice(&vtype::U32.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                MetaValue::I32(x) => {
                    out.extend_from_slice(&vtype::I32.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                MetaValue::U64(x) => {
                    out.extend_from_slice(&vtype::U64.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                MetaValue::F32(x) => {
                    out.extend_from_slice(&vtype::F32.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                MetaValue::Bool(x) => {
                    out.extend_from_slice(&vtype::BOOL.to_le_bytes());
                    out.push(*x as u8);
                }
                MetaValue::Str(s) => {
                    out.extend_from_slice(&vtype::STRING.to_le_bytes());
                    put_str(&mut out, s);
                }
                MetaValue::StrArray(a) => {
                    out.extend_from_slice(&vtype::ARRAY.to_le_bytes());
                    out.extend_from_slice(&vtype::STRING.to_le_bytes());
                    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                    for s in a {
                        put_str(&mut out, s);
                    }
                }
                MetaValue::I32Array(a) => {
                    out.extend_from_slice(&vtype::ARRAY.to_le_bytes());
                    out.extend_from_slice(&vtype::I32.to_le_bytes());
                    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                    for x in a {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut off = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.ggml().to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
            offsets.push(off);
            off = (off + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        let pad = (out.len() as u64).next_multiple_of(self.alignment) as usize - out.len();
        out.extend(std::iter::repeat_n(0u8, pad));
        (out, offsets, off)
    }

    /// Write the file to `w`.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let (head, offsets, _) = self.header();
        w.write_all(&head)?;
        let mut pos = 0u64;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            let pad = (off - pos) as usize;
            w.write_all(&vec![0u8; pad])?;
            w.write_all(&t.data)?;
            pos = off + t.data.len() as u64;
        }
        Ok(())
    }

    /// The whole file in an aligned buffer (to load without touching disk).
    pub fn to_bytes(&self) -> AlignedBytes {
        let (head, offsets, total) = self.header();
        let mut buf = AlignedBytes::zeroed(head.len() + total as usize);
        let b = buf.as_mut_slice();
        b[..head.len()].copy_from_slice(&head);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            let s = head.len() + off as usize;
            b[s..s + t.data.len()].copy_from_slice(&t.data);
        }
        // Trim the final padding: the file ends at the last tensor's end.
        let end = self
            .tensors
            .iter()
            .zip(&offsets)
            .map(|(t, &o)| head.len() + o as usize + t.data.len())
            .max()
            .unwrap_or(head.len());
        if end < buf.len() {
            let mut t = AlignedBytes::zeroed(end);
            t.as_mut_slice().copy_from_slice(&buf.as_slice()[..end]);
            return t;
        }
        buf
    }
}

/// Encode f32 values as `dtype` (rows of `cols`; quantized types need cols % 32 == 0).
pub fn encode(values: &[f32], dtype: DType) -> Vec<u8> {
    use mamba_core::quant::{BlockQ4_0, BlockQ8_0, QK};
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        DType::Q8_0 => values
            .chunks_exact(QK)
            .flat_map(|c| bytemuck::bytes_of(&BlockQ8_0::quantize(c)).to_vec())
            .collect(),
        DType::Q4_0 => values
            .chunks_exact(QK)
            .flat_map(|c| bytemuck::bytes_of(&BlockQ4_0::quantize(c)).to_vec())
            .collect(),
    }
}

/// llama.cpp's `general.file_type` for a file whose projections are `dtype`.
pub fn file_type(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q8_0 => 7,
        DType::BF16 => 32,
    }
}

/// Write the `general.*` and `mamba.*` metadata llama.cpp's `mamba` architecture reads.
pub fn write_mamba_metadata(
    w: &mut GgufWriter,
    c: &mamba_core::ModelConfig,
    name: &str,
    dtype: DType,
) {
    w.kv("general.architecture", MetaValue::Str("mamba".into()));
    w.kv("general.name", MetaValue::Str(name.into()));
    w.kv("general.file_type", MetaValue::U32(file_type(dtype)));
    w.kv("general.quantization_version", MetaValue::U32(2));
    w.kv("mamba.context_length", MetaValue::U32(1 << 20));
    w.kv("mamba.embedding_length", MetaValue::U32(c.d_model as u32));
    w.kv("mamba.feed_forward_length", MetaValue::U32(0));
    w.kv("mamba.attention.head_count", MetaValue::U32(0));
    w.kv("mamba.block_count", MetaValue::U32(c.n_layer as u32));
    w.kv("mamba.ssm.conv_kernel", MetaValue::U32(c.d_conv as u32));
    w.kv("mamba.ssm.inner_size", MetaValue::U32(c.d_inner as u32));
    w.kv("mamba.ssm.state_size", MetaValue::U32(c.d_state as u32));
    w.kv("mamba.ssm.time_step_rank", MetaValue::U32(c.dt_rank as u32));
    w.kv(
        "mamba.attention.layer_norm_rms_epsilon",
        MetaValue::F32(c.eps),
    );
    w.kv("mamba.ssm.dt_b_c_rms", MetaValue::Bool(c.dt_b_c_rms));
}

/// Add a (rows x cols) projection or embedding stored as `dtype`; quantized types fall
/// back to F16 when a row is not a whole number of blocks (as llama.cpp does).
pub fn add_matrix(
    w: &mut GgufWriter,
    name: String,
    vals: &[f32],
    rows: usize,
    cols: usize,
    dtype: DType,
) {
    let dt = if dtype.block_len() > 1 && cols % dtype.block_len() != 0 {
        DType::F16
    } else {
        dtype
    };
    w.tensor(TensorData {
        name,
        dtype: dt,
        dims: vec![cols as u64, rows as u64],
        data: encode(vals, dt),
    });
}

/// Add an f32 tensor with GGUF dims (innermost first).
pub fn add_f32(w: &mut GgufWriter, name: String, vals: &[f32], dims: Vec<u64>) {
    w.tensor(TensorData {
        name,
        dtype: DType::F32,
        dims,
        data: encode(vals, DType::F32),
    });
}
