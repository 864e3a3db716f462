//! ggml's Q8_0 and Q4_0 blocks, bit for bit, with scalar reference quantizers and kernels.

use half::f16;

/// Elements per quant block.
pub const QK: usize = 32;

/// Q8_0: `d` (f16 scale) then 32 int8; value = d * q.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// Q4_0: `d` (f16 scale) then 16 bytes; byte j holds element j (low nibble) and
/// element j + 16 (high nibble); value = d * (nibble - 8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits.
    pub d: u16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ8_0 {
    /// Read a block from 34 bytes (any alignment).
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Self {
        bytemuck::pod_read_unaligned(&b[..34])
    }
    /// Quantize 32 values the way ggml's `quantize_row_q8_0_ref` does.
    pub fn quantize(x: &[f32]) -> Self {
        let amax = x[..QK].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = libm::roundf(v * id) as i8;
        }
        BlockQ8_0 {
            d: f16::from_f32(d).to_bits(),
            qs,
        }
    }
    /// Scale as f32.
    #[inline]
    pub fn scale(&self) -> f32 {
        f16::from_bits(self.d).to_f32()
    }
    /// Expand to 32 floats.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = self.scale();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
    /// Dot with 32 floats.
    #[inline]
    pub fn dot(&self, x: &[f32]) -> f32 {
        let mut s = 0.0f32;
        for (&q, &xv) in self.qs.iter().zip(x) {
            s += q as f32 * xv;
        }
        s * self.scale()
    }
}

impl BlockQ4_0 {
    /// Read a block from 18 bytes (any alignment).
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Self {
        bytemuck::pod_read_unaligned(&b[..18])
    }
    /// Quantize 32 values the way ggml's `quantize_row_q4_0_ref` does: the scale comes
    /// from the signed value of largest magnitude, mapped to -8.
    pub fn quantize(x: &[f32]) -> Self {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[..QK] {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[QK / 2 + j] * id;
            let q0 = ((x0 + 8.5) as i32).min(15) as u8;
            let q1 = ((x1 + 8.5) as i32).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
        BlockQ4_0 {
            d: f16::from_f32(d).to_bits(),
            qs,
        }
    }
    /// Scale as f32.
    #[inline]
    pub fn scale(&self) -> f32 {
        f16::from_bits(self.d).to_f32()
    }
    /// Expand to 32 floats.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = self.scale();
        for (j, &b) in self.qs.iter().enumerate() {
            out[j] = ((b & 0x0f) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((b >> 4) as i32 - 8) as f32 * d;
        }
    }
    /// Dot with 32 floats.
    #[inline]
    pub fn dot(&self, x: &[f32]) -> f32 {
        let mut s = 0.0f32;
        for (j, &b) in self.qs.iter().enumerate() {
            s += ((b & 0x0f) as i32 - 8) as f32 * x[j];
            s += ((b >> 4) as i32 - 8) as f32 * x[j + QK / 2];
        }
        s * self.scale()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_roundtrip_layout() {
        let x: [f32; 32] = core::array::from_fn(|i| (i as f32 - 15.5) * 0.25);
        let b = BlockQ8_0::quantize(&x);
        let bytes = bytemuck::bytes_of(&b);
        assert_eq!(bytes.len(), 34);
        // amax = 4.0 (i = 31 -> 3.875? i=0 -> -3.875); d = 3.875/127
        let d = f16::from_f32(3.875 / 127.0);
        assert_eq!(&bytes[0..2], &d.to_bits().to_le_bytes());
        assert_eq!(bytes[2] as i8, -127);
        assert_eq!(bytes[33] as i8, 127);
        let mut out = [0f32; 32];
        b.dequantize(&mut out);
        for (a, o) in x.iter().zip(&out) {
            assert!((a - o).abs() < 0.02, "{a} {o}");
        }
    }

    #[test]
    fn q4_0_roundtrip_layout() {
        let x: [f32; 32] = core::array::from_fn(|i| (i as f32 - 16.0) * 0.5);
        let b = BlockQ4_0::quantize(&x);
        // max magnitude is -8.0 at i=0, d = -8/-8 = 1.0
        assert_eq!(f16::from_bits(b.d).to_f32(), 1.0);
        // element 0: -8/1 + 8.5 = 0.5 -> 0 ; element 16: 0 + 8.5 -> 8
        assert_eq!(b.qs[0], 8 << 4);
        let mut out = [0f32; 32];
        b.dequantize(&mut out);
        for (a, o) in x.iter().zip(&out) {
            assert!((a - o).abs() <= 0.5, "{a} {o}");
        }
    }
    /// ggml's `quantize_row_q4_0_ref` on a known vector, byte for byte (expected bytes
    /// computed by a transcription of ggml's C reference with numpy float32).
    #[test]
    fn q4_0_matches_ggml_bytes() {
        let x: [f32; 32] = core::array::from_fn(|i| (i as f32 - 16.0) * 0.5);
        let b = BlockQ4_0::quantize(&x);
        let want: [u8; 18] = [
            0x00, 0x3c, 0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4, 0xc4, 0xd5, 0xd5, 0xe6,
            0xe6, 0xf7, 0xf7, 0xf8,
        ];
        assert_eq!(bytemuck::bytes_of(&b), &want);
        // Dequantize and quantize again: the same bytes (the layout round-trips).
        let mut y = [0f32; 32];
        BlockQ4_0::from_bytes(&want).dequantize(&mut y);
        assert_eq!(bytemuck::bytes_of(&BlockQ4_0::quantize(&y)), &want);
    }

    /// ggml's `quantize_row_q8_0_ref` on a known vector, byte for byte.
    #[test]
    fn q8_0_matches_ggml_bytes() {
        let x: [f32; 32] = [
            0.0,
            1.932_653_1,
            2.956_349_1,
            2.589_628,
            1.004_964_5,
            -1.052_349_7,
            -2.614_727_3,
            -2.947_358,
            -1.893_799_9,
            0.050_441_7,
            1.970_959_8,
            2.964_504_7,
            2.563_796_8,
            0.957_295_06,
            -1.099_437_4,
            -2.639_087_2,
            -2.937_533_1,
            -1.854_411_4,
            0.100_869_14,
            2.008_709_2,
            2.971_822,
            2.537_240_5,
            0.909_355_04,
            -1.146_214_2,
            -2.662_701_1,
            -2.926_878,
            -1.814_498_4,
            0.151_268_06,
            2.045_890_8,
            2.978_299_1,
            2.509_966_9,
            0.861_157_95,
        ];
        let q: [i8; 32] = [
            0, 82, 126, 110, 43, -45, -111, -126, -81, 2, 84, 126, 109, 41, -47, -113, -125, -79,
            4, 86, 127, 108, 39, -49, -114, -125, -77, 6, 87, 127, 107, 37,
        ];
        let b = BlockQ8_0::quantize(&x);
        let bytes = bytemuck::bytes_of(&b);
        assert_eq!(&bytes[..2], &[0x01, 0x26]);
        assert_eq!(&bytes[2..], bytemuck::cast_slice::<i8, u8>(&q));
        let mut y = [0f32; 32];
        b.dequantize(&mut y);
        assert_eq!(bytemuck::bytes_of(&BlockQ8_0::quantize(&y)), bytes);
    }
}
