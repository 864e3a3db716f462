//! Element types and borrowed weight matrices.

use crate::quant::{BlockQ4_0, BlockQ8_0, QK};
use half::{bf16, f16};

/// Element types of weights, with ggml's type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// ggml Q8_0: blocks of 32 int8 with one f16 scale (34 bytes).
    Q8_0,
    /// ggml Q4_0: blocks of 32 4-bit values (offset 8) with one f16 scale (18 bytes).
    Q4_0,
}

impl DType {
    /// From a ggml type code.
    pub fn from_ggml(code: u32) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            8 => DType::Q8_0,
            30 => DType::BF16,
            _ => return None,
        })
    }
    /// The ggml type code.
    pub fn ggml(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q8_0 => 8,
            DType::BF16 => 30,
        }
    }
    /// Elements per block (1 for plain floats).
    pub fn block_len(self) -> usize {
        match self {
            DType::Q8_0 | DType::Q4_0 => QK,
            _ => 1,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => core::mem::size_of::<BlockQ8_0>(),
            DType::Q4_0 => core::mem::size_of::<BlockQ4_0>(),
        }
    }
    /// Alignment the data must have to be viewed in place.
    pub fn align(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            // Blocks are read bytewise / with unaligned loads.
            DType::Q8_0 | DType::Q4_0 => 1,
        }
    }
    /// Bytes of a row of `cols` elements (cols must be a multiple of block_len).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_len() * self.block_bytes()
    }
    /// Lower-case name as used on the command line (`q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
        }
    }
    /// Parse a lower-case name.
    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "q8_0" => DType::Q8_0,
            "q4_0" => DType::Q4_0,
            _ => return None,
        })
    }
}

/// A row-major (rows x cols) weight matrix borrowed from model bytes.
#[derive(Debug, Clone, Copy)]
pub struct WeightMatrix<'a> {
    /// Element type.
    pub dtype: DType,
    /// Rows (outputs of a mat-vec).
    pub rows: usize,
    /// Columns (inputs of a mat-vec).
    pub cols: usize,
    /// rows * row_bytes bytes, aligned for `dtype`.
    pub data: &'a [u8],
}

impl<'a> WeightMatrix<'a> {
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols)
    }
    /// The raw bytes of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
    /// Rows `r0..r1` as a matrix of their own.
    pub fn rows_slice(&self, r0: usize, r1: usize) -> WeightMatrix<'a> {
        let rb = self.row_bytes();
        WeightMatrix {
            dtype: self.dtype,
            rows: r1 - r0,
            cols: self.cols,
            data: &self.data[r0 * rb..r1 * rb],
        }
    }
    /// Dequantize row `r` into `out` (len cols).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        row_to_f32(self.dtype, self.row(r), out)
    }
    /// Dot product of row `r` with `x` (scalar reference).
    #[inline]
    pub fn dot_row(&self, r: usize, x: &[f32]) -> f32 {
        dot_row_scalar(self.dtype, self.row(r), x)
    }
}

/// Dequantize one row of raw bytes.
pub fn row_to_f32(dtype: DType, row: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        DType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(row.chunks_exact(34)) {
                BlockQ8_0::from_bytes(b).dequantize(o);
            }
        }
        DType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(row.chunks_exact(18)) {
                BlockQ4_0::from_bytes(b).dequantize(o);
            }
        }
    }
}

/// The scalar reference dot product of one raw row with `x`. Every SIMD kernel is
/// tested against this.
pub fn dot_row_scalar(dtype: DType, row: &[u8], x: &[f32]) -> f32 {
    match dtype {
        DType::F32 => {
            let mut s = 0.0f32;
            for (c, &xv) in row.chunks_exact(4).zip(x) {
                s += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
            }
            s
        }
        DType::F16 => {
            let mut s = 0.0f32;
            for (c, &xv) in row.chunks_exact(2).zip(x) {
                s += f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32() * xv;
            }
            s
        }
        DType::BF16 => {
            let mut s = 0.0f32;
            for (c, &xv) in row.chunks_exact(2).zip(x) {
                s += bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32() * xv;
            }
            s
        }
        DType::Q8_0 => {
            let mut s = 0.0f32;
            for (b, xs) in row.chunks_exact(34).zip(x.chunks_exact(QK)) {
                s += BlockQ8_0::from_bytes(b).dot(xs);
            }
            s
        }
        DType::Q4_0 => {
            let mut s = 0.0f32;
            for (b, xs) in row.chunks_exact(18).zip(x.chunks_exact(QK)) {
                s += BlockQ4_0::from_bytes(b).dot(xs);
            }
            s
        }
    }
}
