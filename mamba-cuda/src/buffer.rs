//! Device buffers and strided views of them.

use std::marker::PhantomData;

use cudarc::driver::CudaSlice;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
}

/// An element type the kernels take as input and output: `f32` or `half::bf16`.
/// All arithmetic is f32 whatever the element type.
pub trait Element: bytemuck::Pod + Send + Sync + 'static + sealed::Sealed {
    /// The suffix of the kernel entry points for this type (`f32`, `bf16`).
    const NAME: &'static str;
    /// Converts (rounding to nearest even for bf16).
    fn from_f32(v: f32) -> Self;
    /// Converts exactly.
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for half::bf16 {
    const NAME: &'static str = "bf16";
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

/// A device allocation of `len` elements of `T`, owned by one [`crate::GpuContext`].
/// Created by [`crate::GpuContext::upload`] or [`crate::GpuContext::alloc`].
pub struct GpuBuffer<T: Element> {
    /// Raw bytes; the kernels get `ptr` directly (event tracking is off).
    pub(crate) raw: CudaSlice<u8>,
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    _t: PhantomData<T>,
}

impl<T: Element> GpuBuffer<T> {
    pub(crate) fn from_raw(raw: CudaSlice<u8>, ptr: u64, len: usize) -> Self {
        Self {
            raw,
            ptr,
            len,
            _t: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A view of the whole buffer as a contiguous (batch, rows, `cols`) tensor.
    pub fn as_mat(&self, rows: usize, cols: usize) -> MatView<'_, T> {
        MatView::new(self, 0, rows * cols, cols)
    }

    /// A mutable view of the whole buffer as a contiguous (batch, rows, `cols`) tensor.
    pub fn as_mat_mut(&mut self, rows: usize, cols: usize) -> MatViewMut<'_, T> {
        MatViewMut::new(self, 0, rows * cols, cols)
    }
}

/// A read-only (batch, rows, cols) view of a device buffer: element `[b, r, c]`
/// is at `offset + b * batch_stride + r * row_stride + c`. The shape comes from
/// the operation the view is passed to, which checks it fits in the buffer.
#[derive(Clone, Copy)]
pub struct MatView<'a, T: Element> {
    pub(crate) buf: &'a GpuBuffer<T>,
    pub(crate) offset: usize,
    pub(crate) batch_stride: usize,
    pub(crate) row_stride: usize,
}

impl<'a, T: Element> MatView<'a, T> {
    /// A view at `offset` elements into `buf`, with the given element strides.
    /// E.g. the z half of an (L, 2E) in_proj output: `new(&xz, E, L * 2E, 2E)`.
    pub fn new(
        buf: &'a GpuBuffer<T>,
        offset: usize,
        batch_stride: usize,
        row_stride: usize,
    ) -> Self {
        Self {
            buf,
            offset,
            batch_stride,
            row_stride,
        }
    }

    /// Checks that a (batch, rows, cols) tensor fits; returns the device address.
    pub(crate) fn check(
        &self,
        what: &str,
        batch: usize,
        rows: usize,
        cols: usize,
    ) -> Result<u64, crate::GpuError> {
        let (o, bs, rs) = (self.offset, self.batch_stride, self.row_stride);
        check_fit(what, self.buf.len, o, bs, rs, batch, rows, cols, false)?;
        Ok(self.buf.ptr + (self.offset * std::mem::size_of::<T>()) as u64)
    }
}

/// A mutable (batch, rows, cols) view of a device buffer; see [`MatView`].
pub struct MatViewMut<'a, T: Element> {
    pub(crate) buf: &'a mut GpuBuffer<T>,
    pub(crate) offset: usize,
    pub(crate) batch_stride: usize,
    pub(crate) row_stride: usize,
}

impl<'a, T: Element> MatViewMut<'a, T> {
    /// A view at `offset` elements into `buf`, with the given element strides.
    pub fn new(
        buf: &'a mut GpuBuffer<T>,
        offset: usize,
        batch_stride: usize,
        row_stride: usize,
    ) -> Self {
        Self {
            buf,
            offset,
            batch_stride,
            row_stride,
        }
    }

    /// Checks that a (batch, rows, cols) tensor fits; returns the device address.
    pub(crate) fn check(
        &self,
        what: &str,
        batch: usize,
        rows: usize,
        cols: usize,
    ) -> Result<u64, crate::GpuError> {
        let (o, bs, rs) = (self.offset, self.batch_stride, self.row_stride);
        check_fit(what, self.buf.len, o, bs, rs, batch, rows, cols, true)?;
        Ok(self.buf.ptr + (self.offset * std::mem::size_of::<T>()) as u64)
    }
}

/// Checks that every element of a strided (batch, rows, cols) tensor lies in a
/// buffer of `len` elements, and, for an output, that no two elements share an
/// address (the writes would race).
#[allow(clippy::too_many_arguments)]
fn check_fit(
    what: &str,
    len: usize,
    offset: usize,
    batch_stride: usize,
    row_stride: usize,
    batch: usize,
    rows: usize,
    cols: usize,
    writable: bool,
) -> Result<(), crate::GpuError> {
    if batch == 0 || rows == 0 || cols == 0 {
        return Err(crate::GpuError::invalid(format!(
            "{what}: empty shape ({batch}, {rows}, {cols})"
        )));
    }
    if writable && rows > 1 && row_stride < cols {
        return Err(crate::GpuError::invalid(format!(
            "{what}: row stride {row_stride} is less than the row length {cols}"
        )));
    }
    if writable && batch > 1 && batch_stride < (rows - 1) * row_stride + cols {
        return Err(crate::GpuError::invalid(format!(
            "{what}: batch stride {batch_stride} makes batches overlap"
        )));
    }
    let last = (batch - 1)
        .checked_mul(batch_stride)
        .and_then(|x| x.checked_add((rows - 1).checked_mul(row_stride)?))
        .and_then(|x| x.checked_add(offset + cols));
    match last {
        Some(end) if end <= len => Ok(()),
        _ => Err(crate::GpuError::invalid(format!(
            "{what}: a ({batch}, {rows}, {cols}) view at offset {offset} with strides ({batch_stride}, {row_stride}) \
             does not fit in a buffer of {len} elements"
        ))),
    }
}
