//! A zero-copy GGUF reader over `&[u8]` (a slice in flash, or an mmap).
//!
//! One validating pass over the header, metadata and tensor table records where each
//! section starts; look-ups then scan those sections again. Nothing is allocated, so it
//! runs on a microcontroller; every length is checked against the bytes that remain, so
//! corrupt or hostile files give an [`Error`] rather than a panic or an out-of-bounds read.

use crate::error::{Error, Result, name};
use crate::tensor::DType;

/// "GGUF" read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// More tensors than this is treated as corruption.
pub const MAX_TENSORS: u64 = 1 << 20;
/// More metadata entries than this is treated as corruption.
pub const MAX_KV: u64 = 1 << 20;
/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// GGUF metadata value type codes.
pub mod vtype {
    /// u8
    pub const U8: u32 = 0;
    /// i8
    pub const I8: u32 = 1;
    /// u16
    pub const U16: u32 = 2;
    /// i16
    pub const I16: u32 = 3;
    /// u32
    pub const U32: u32 = 4;
    /// i32
    pub const I32: u32 = 5;
    /// f32
    pub const F32: u32 = 6;
    /// bool
    pub const BOOL: u32 = 7;
    /// string
    pub const STRING: u32 = 8;
    /// array
    pub const ARRAY: u32 = 9;
    /// u64
    pub const U64: u32 = 10;
    /// i64
    pub const I64: u32 = 11;
    /// f64
    pub const F64: u32 = 12;
}

/// A bounds-checked little-endian cursor.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        Cursor { data, pos }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                what,
                offset: self.pos as u64,
            }),
        }
    }
    fn arr<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub(crate) fn string(&mut self, what: &'static str) -> Result<&'a str> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(Error::Truncated { what, offset: at });
        }
        let bytes = self.take(len as usize, what)?;
        core::str::from_utf8(bytes).map_err(|_| Error::BadUtf8 { offset: at })
    }
}

fn scalar_size(t: u32) -> Option<usize> {
    Some(match t {
        vtype::U8 | vtype::I8 | vtype::BOOL => 1,
        vtype::U16 | vtype::I16 => 2,
        vtype::U32 | vtype::I32 | vtype::F32 => 4,
        vtype::U64 | vtype::I64 | vtype::F64 => 8,
        _ => return None,
    })
}

/// A metadata value, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Any integer type, widened.
    Int(i128),
    /// f32 or f64, widened.
    Float(f64),
    /// bool
    Bool(bool),
    /// UTF-8 string.
    Str(&'a str),
    /// An array: element type, count, and its raw bytes (from the element data start).
    Array(ArrayValue<'a>),
}

/// An array value; iterate with [`ArrayValue::strings`] or read numbers with [`ArrayValue::get_int`].
#[derive(Debug, Clone, Copy)]
pub struct ArrayValue<'a> {
    /// Element type code.
    pub elem_type: u32,
    /// Number of elements.
    pub len: u64,
    data: &'a [u8],
    start: usize,
}

impl<'a> ArrayValue<'a> {
    /// Iterate a string array (empty iterator for other element types).
    pub fn strings(&self) -> StrIter<'a> {
        StrIter {
            cur: Cursor::new(self.data, self.start),
            left: if self.elem_type == vtype::STRING {
                self.len
            } else {
                0
            },
        }
    }
    /// Element `i` of a numeric array, widened to i128 (floats are truncated).
    pub fn get_int(&self, i: u64) -> Option<i128> {
        let sz = scalar_size(self.elem_type)? as u64;
        if i >= self.len {
            return None;
        }
        let off = self.start + (i * sz) as usize;
        let b = self.data.get(off..off + sz as usize)?;
        read_scalar(self.elem_type, b).map(|v| match v {
            Value::Int(x) => x,
            Value::Float(f) => f as i128,
            Value::Bool(b) => b as i128,
            _ => 0,
        })
    }
    /// Element `i` of a numeric array as f64.
    pub fn get_f64(&self, i: u64) -> Option<f64> {
        let sz = scalar_size(self.elem_type)? as u64;
        if i >= self.len {
            return None;
        }
        let off = self.start + (i * sz) as usize;
        let b = self.data.get(off..off + sz as usize)?;
        read_scalar(self.elem_type, b).map(|v| match v {
            Value::Int(x) => x as f64,
            Value::Float(f) => f,
            Value::Bool(b) => b as u8 as f64,
            _ => 0.0,
        })
    }
}

/// Iterator over the strings of a string array.
pub struct StrIter<'a> {
    cur: Cursor<'a>,
    left: u64,
}

impl<'a> Iterator for StrIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated when the file was opened, so this cannot fail on a parsed file.
        self.cur.string("array string").ok()
    }
}

fn read_scalar(t: u32, b: &[u8]) -> Option<Value<'static>> {
    let mut a8 = [0u8; 8];
    a8[..b.len()].copy_from_slice(b);
    Some(match t {
        vtype::U8 => Value::Int(b[0] as i128),
        vtype::I8 => Value::Int(b[0] as i8 as i128),
        vtype::U16 => Value::Int(u16::from_le_bytes([b[0], b[1]]) as i128),
        vtype::I16 => Value::Int(i16::from_le_bytes([b[0], b[1]]) as i128),
        vtype::U32 => Value::Int(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i128),
        vtype::I32 => Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i128),
        vtype::F32 => Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        vtype::BOOL => Value::Bool(b[0] != 0),
        vtype::U64 => Value::Int(u64::from_le_bytes(a8) as i128),
        vtype::I64 => Value::Int(i64::from_le_bytes(a8) as i128),
        vtype::F64 => Value::Float(f64::from_le_bytes(a8)),
        _ => return None,
    })
}

/// Read (and validate) one value of type `t` at the cursor.
fn read_value<'a>(cur: &mut Cursor<'a>, t: u32, key: &str, depth: u32) -> Result<Value<'a>> {
    if let Some(sz) = scalar_size(t) {
        let b = cur.take(sz, "metadata value")?;
        // scalar_size is Some, so read_scalar is Some.
        return read_scalar(t, b).ok_or(Error::BadValueType {
            key: name(key),
            code: t,
        });
    }
    match t {
        vtype::STRING => Ok(Value::Str(cur.string("metadata string")?)),
        vtype::ARRAY => {
            if depth > 2 {
                return Err(Error::AbsurdSize {
                    what: "array nesting depth",
                    value: depth as u64,
                });
            }
            let et = cur.u32("array element type")?;
            let n = cur.u64("array length")?;
            let start = cur.pos();
            if let Some(sz) = scalar_size(et) {
                let bytes = n
                    .checked_mul(sz as u64)
                    .filter(|&b| b <= cur.remaining() as u64);
                match bytes {
                    Some(b) => {
                        cur.take(b as usize, "array data")?;
                    }
                    None => {
                        return Err(Error::Truncated {
                            what: "array data",
                            offset: start as u64,
                        });
                    }
                }
            } else if et == vtype::STRING || et == vtype::ARRAY {
                // Each element takes at least 8 bytes, so a count past that is corrupt.
                if n > (cur.remaining() / 8) as u64 {
                    return Err(Error::Truncated {
                        what: "array data",
                        offset: start as u64,
                    });
                }
                for _ in 0..n {
                    read_value(cur, et, key, depth + 1)?;
                }
            } else {
                return Err(Error::BadValueType {
                    key: name(key),
                    code: et,
                });
            }
            Ok(Value::Array(ArrayValue {
                elem_type: et,
                len: n,
                data: cur.data,
                start,
            }))
        }
        _ => Err(Error::BadValueType {
            key: name(key),
            code: t,
        }),
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Number of dimensions (1 to 4).
    pub n_dims: u32,
    /// GGUF dims, innermost first; unused ones are 1.
    pub dims: [u64; 4],
    /// ggml type code.
    pub type_code: u32,
    /// Offset into the file (absolute: data section start + relative offset).
    pub offset: usize,
    /// Size in bytes (zero when the type is unknown to this build).
    pub nbytes: usize,
}

impl TensorInfo<'_> {
    /// The element type, if this build knows it.
    pub fn dtype(&self) -> Option<DType> {
        DType::from_ggml(self.type_code)
    }
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file.
#[derive(Debug, Clone, Copy)]
pub struct Gguf<'a> {
    data: &'a [u8],
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Number of tensors.
    pub n_tensors: u64,
    /// Number of metadata entries.
    pub n_kv: u64,
    kv_start: usize,
    tensors_start: usize,
    /// Absolute offset of the tensor data section.
    pub data_start: usize,
    /// Data alignment.
    pub alignment: u64,
}

impl<'a> Gguf<'a> {
    /// Parse and validate the header, the whole metadata section and the tensor table.
    /// Every tensor's data range is checked to lie inside `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if cfg!(target_endian = "big") {
            return Err(Error::BigEndian);
        }
        let mut cur = Cursor::new(data, 0);
        let magic = cur.u32("GGUF magic")?;
        if magic != GGUF_MAGIC {
            return Err(Error::BadMagic);
        }
        let version = cur.u32("GGUF version")?;
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion(version));
        }
        let n_tensors = cur.u64("tensor count")?;
        let n_kv = cur.u64("metadata count")?;
        if n_tensors > MAX_TENSORS {
            return Err(Error::AbsurdSize {
                what: "tensor count",
                value: n_tensors,
            });
        }
        if n_kv > MAX_KV {
            return Err(Error::AbsurdSize {
                what: "metadata count",
                value: n_kv,
            });
        }
        // A tensor entry takes >= 24 bytes, a metadata entry >= 13: a count the file
        // cannot hold means it was cut short.
        if n_tensors
            .saturating_mul(24)
            .saturating_add(n_kv.saturating_mul(13))
            > data.len() as u64
        {
            return Err(Error::Truncated {
                what: "metadata and tensor tables",
                offset: cur.pos() as u64,
            });
        }
        let kv_start = cur.pos();
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..n_kv {
            let key = cur.string("metadata key")?;
            let t = cur.u32("metadata value type")?;
            let v = read_value(&mut cur, t, key, 0)?;
            if key == "general.alignment" {
                alignment = match v {
                    Value::Int(a) if a > 0 && a <= 1 << 20 && (a as u64).is_power_of_two() => {
                        a as u64
                    }
                    _ => return Err(Error::BadKey(name(key))),
                };
            }
        }
        let tensors_start = cur.pos();
        for _ in 0..n_tensors {
            read_tensor_info(&mut cur)?;
        }
        let end = cur.pos() as u64;
        let data_start = end.div_ceil(alignment) * alignment;
        if data_start > data.len() as u64 && n_tensors > 0 {
            return Err(Error::Truncated {
                what: "tensor data section",
                offset: end,
            });
        }
        let g = Gguf {
            data,
            version,
            n_tensors,
            n_kv,
            kv_start,
            tensors_start,
            data_start: data_start as usize,
            alignment,
        };
        // Check every tensor's bytes now so later look-ups cannot fail on bounds.
        for t in g.tensors() {
            let t = t?;
            if t.dtype().is_some()
                && t.offset
                    .checked_add(t.nbytes)
                    .is_none_or(|e| e > data.len())
            {
                return Err(Error::TensorOutOfBounds(name(t.name)));
            }
        }
        Ok(g)
    }

    /// The bytes the file was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Iterate metadata entries as (key, value).
    pub fn metadata(&self) -> MetaIter<'a> {
        MetaIter {
            cur: Cursor::new(self.data, self.kv_start),
            left: self.n_kv,
        }
    }

    /// Look up a metadata value.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.metadata().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A metadata integer (any integer type), or an error naming the key.
    pub fn get_uint(&self, key: &str) -> Result<u64> {
        match self.get(key) {
            Some(Value::Int(v)) if v >= 0 && v <= u64::MAX as i128 => Ok(v as u64),
            Some(_) => Err(Error::BadKey(name(key))),
            None => Err(Error::MissingKey(name(key))),
        }
    }

    /// A metadata float.
    pub fn get_float(&self, key: &str) -> Result<f64> {
        match self.get(key) {
            Some(Value::Float(v)) => Ok(v),
            Some(Value::Int(v)) => Ok(v as f64),
            Some(_) => Err(Error::BadKey(name(key))),
            None => Err(Error::MissingKey(name(key))),
        }
    }

    /// A metadata string.
    pub fn get_str(&self, key: &str) -> Result<&'a str> {
        match self.get(key) {
            Some(Value::Str(s)) => Ok(s),
            Some(_) => Err(Error::BadKey(name(key))),
            None => Err(Error::MissingKey(name(key))),
        }
    }

    /// Iterate the tensor table.
    pub fn tensors(&self) -> TensorIter<'a> {
        TensorIter {
            cur: Cursor::new(self.data, self.tensors_start),
            left: self.n_tensors,
            data_start: self.data_start,
        }
    }

    /// Find a tensor by name.
    pub fn tensor(&self, tname: &str) -> Option<TensorInfo<'a>> {
        self.tensors()
            .filter_map(|t| t.ok())
            .find(|t| t.name == tname)
    }

    /// The bytes of a tensor (checked at parse time to lie inside the file).
    pub fn tensor_bytes(&self, t: &TensorInfo<'_>) -> &'a [u8] {
        self.data.get(t.offset..t.offset + t.nbytes).unwrap_or(&[])
    }
}

fn read_tensor_info<'a>(cur: &mut Cursor<'a>) -> Result<(&'a str, u32, [u64; 4], u32, u64)> {
    let tname = cur.string("tensor name")?;
    let n_dims = cur.u32("tensor dims")?;
    if n_dims == 0 || n_dims > 4 {
        return Err(Error::AbsurdSize {
            what: "tensor dimension count",
            value: n_dims as u64,
        });
    }
    let mut dims = [1u64; 4];
    for d in dims.iter_mut().take(n_dims as usize) {
        *d = cur.u64("tensor dim")?;
        if *d > 1 << 40 {
            return Err(Error::AbsurdSize {
                what: "tensor dimension",
                value: *d,
            });
        }
    }
    let ty = cur.u32("tensor type")?;
    let off = cur.u64("tensor offset")?;
    Ok((tname, n_dims, dims, ty, off))
}

/// Iterator over the tensor table.
pub struct TensorIter<'a> {
    cur: Cursor<'a>,
    left: u64,
    data_start: usize,
}

impl<'a> Iterator for TensorIter<'a> {
    type Item = Result<TensorInfo<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(
            read_tensor_info(&mut self.cur).and_then(|(tname, n_dims, dims, ty, off)| {
                let n: u64 = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or(
                    Error::AbsurdSize {
                        what: "tensor element count",
                        value: u64::MAX,
                    },
                )?;
                let nbytes = match DType::from_ggml(ty) {
                    Some(dt) => {
                        if dims[0] % dt.block_len() as u64 != 0 {
                            return Err(Error::TensorShape {
                                name: name(tname),
                                expected: [
                                    dims[1],
                                    dims[0].next_multiple_of(dt.block_len() as u64),
                                ],
                                found: [dims[1], dims[0]],
                            });
                        }
                        (n / dt.block_len() as u64)
                            .checked_mul(dt.block_bytes() as u64)
                            .filter(|&b| b <= usize::MAX as u64)
                            .ok_or(Error::AbsurdSize {
                                what: "tensor byte size",
                                value: n,
                            })? as usize
                    }
                    None => 0,
                };
                let offset = (self.data_start as u64)
                    .checked_add(off)
                    .filter(|&o| o <= usize::MAX as u64)
                    .ok_or(Error::TensorOutOfBounds(name(tname)))?
                    as usize;
                Ok(TensorInfo {
                    name: tname,
                    n_dims,
                    dims,
                    type_code: ty,
                    offset,
                    nbytes,
                })
            }),
        )
    }
}

/// Iterator over metadata entries.
pub struct MetaIter<'a> {
    cur: Cursor<'a>,
    left: u64,
}

impl<'a> Iterator for MetaIter<'a> {
    type Item = (&'a str, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated in parse().
        let key = self.cur.string("metadata key").ok()?;
        let t = self.cur.u32("metadata value type").ok()?;
        let v = read_value(&mut self.cur, t, key, 0).ok()?;
        Some((key, v))
    }
}
