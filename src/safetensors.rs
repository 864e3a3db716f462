//! A safetensors reader over an mmap: header JSON, then tensors as raw bytes.

use crate::error::{Result, format_err, io_err};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One tensor in a safetensors file.
#[derive(Debug, Clone)]
pub struct StTensor {
    /// "F32", "F16", "BF16", "F64".
    pub dtype: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

/// An open safetensors file.
pub struct SafeTensors {
    /// Path, for messages.
    pub path: PathBuf,
    map: memmap2::Mmap,
    /// Tensors by name.
    pub tensors: HashMap<String, StTensor>,
}

impl SafeTensors {
    /// Map and parse a file; every tensor's range and size are checked.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: the file is opened read-only and we never hand out the mapping mutably;
        // a concurrent writer to the same file is outside what any loader can guard against.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(path))?;
        let tensors = parse_header(path, &map)?;
        Ok(SafeTensors {
            path: path.to_path_buf(),
            map,
            tensors,
        })
    }

    /// A tensor's values as f32 (converting f16/bf16/f64), with its shape.
    pub fn to_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| format_err(&self.path, format!("missing tensor '{name}'")))?;
        let b = &self.map[t.start..t.end];
        let v: Vec<f32> = match t.dtype.as_str() {
            "F32" => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => b
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            "BF16" => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            "F64" => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            other => {
                return Err(format_err(
                    &self.path,
                    format!("tensor '{name}' has unsupported dtype {other}"),
                ));
            }
        };
        Ok((v, t.shape.clone()))
    }
}

fn elem_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" => 1,
        _ => return None,
    })
}

fn parse_header(path: &Path, b: &[u8]) -> Result<HashMap<String, StTensor>> {
    if b.len() < 8 {
        return Err(format_err(
            path,
            "safetensors file shorter than its 8-byte header length",
        ));
    }
    let n = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    if n > (b.len() - 8) as u64 || n > 100 << 20 {
        return Err(format_err(
            path,
            format!("safetensors header length {n} exceeds the file"),
        ));
    }
    let hdr: serde_json::Value = serde_json::from_slice(&b[8..8 + n as usize])
        .map_err(|e| format_err(path, format!("safetensors header is not JSON: {e}")))?;
    let obj = hdr
        .as_object()
        .ok_or_else(|| format_err(path, "safetensors header is not an object"))?;
    let base = 8 + n as usize;
    let mut out = HashMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |m: &str| format_err(path, format!("tensor '{name}': {m}"));
        let dtype = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?
            .to_string();
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad("bad shape"))
            })
            .collect::<Result<_>>()?;
        let offs = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no data_offsets"))?;
        if offs.len() != 2 {
            return Err(bad("data_offsets must have two entries"));
        }
        let s = offs[0].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize;
        let e = offs[1].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize;
        let es = elem_size(&dtype).ok_or_else(|| bad(&format!("unknown dtype {dtype}")))?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("absurd shape"))?;
        let start = base.checked_add(s).ok_or_else(|| bad("absurd offset"))?;
        let end = base.checked_add(e).ok_or_else(|| bad("absurd offset"))?;
        if s > e || end > b.len() {
            return Err(bad("data lies outside the file (truncated?)"));
        }
        if count.checked_mul(es) != Some(e - s) {
            return Err(bad("byte length does not match shape and dtype"));
        }
        out.insert(
            name.clone(),
            StTensor {
                dtype,
                shape,
                start,
                end,
            },
        );
    }
    Ok(out)
}
