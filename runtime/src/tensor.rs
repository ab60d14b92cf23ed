//! The statically shaped tensor every kernel reads and writes.

use bytemuck::{Pod, Zeroable};
use ndarray::{ArrayView3, ArrayViewMut3};

/// A height x width x channels tensor of `f32`, stored row-major with the
/// channels innermost (NHWC without the batch axis, as Keras stores images).
///
/// The shape is part of the type, so passing a tensor of the wrong shape to a
/// kernel is a type error. Channels innermost keeps a pixel's channels
/// contiguous, which is what the pointwise and depthwise kernels stream over.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(transparent)]
pub struct Tensor<const H: usize, const W: usize, const C: usize> {
    /// The values, indexed `[y][x][channel]`.
    pub data: [[[f32; C]; W]; H],
}

impl<const H: usize, const W: usize, const C: usize> Tensor<H, W, C> {
    /// Height (rows).
    pub const HEIGHT: usize = H;
    /// Width (columns).
    pub const WIDTH: usize = W;
    /// Channels per pixel.
    pub const CHANNELS: usize = C;
    /// Number of values, `H * W * C`.
    pub const LEN: usize = H * W * C;

    /// A zero tensor, allocated zeroed on the heap.
    ///
    /// Large tensors are never built on the stack first, so this is safe to call
    /// for any size, in debug builds too.
    pub fn zeroed_boxed() -> Box<Self> {
        zeroed_box()
    }

    /// The values in memory order (`y`, then `x`, then channel).
    pub fn as_slice(&self) -> &[f32] {
        self.data.as_flattened().as_flattened()
    }

    /// The values in memory order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.data.as_flattened_mut().as_flattened_mut()
    }

    /// A zero-copy ndarray view of shape `(H, W, C)`.
    pub fn view(&self) -> ArrayView3<'_, f32> {
        ArrayView3::from_shape((H, W, C), self.as_slice())
            .expect("a Tensor's slice always holds H * W * C values")
    }

    /// A zero-copy mutable ndarray view of shape `(H, W, C)`.
    pub fn view_mut(&mut self) -> ArrayViewMut3<'_, f32> {
        ArrayViewMut3::from_shape((H, W, C), self.as_mut_slice())
            .expect("a Tensor's slice always holds H * W * C values")
    }

    /// Copies an ndarray view of any memory layout into this tensor.
    ///
    /// Returns [`ShapeMismatch`] when the view is not `(H, W, C)`.
    pub fn copy_from_view(&mut self, source: ArrayView3<'_, f32>) -> Result<(), ShapeMismatch> {
        let found = source.dim();
        if found != (H, W, C) {
            return Err(ShapeMismatch {
                expected: [H, W, C],
                found: [found.0, found.1, found.2],
            });
        }
        self.view_mut().assign(&source);
        Ok(())
    }
}

// SAFETY: `repr(transparent)` over nested `f32` arrays: no padding, and every
// bit pattern is a valid f32. Exercised by `flat_views_are_the_values_in_order`.
unsafe impl<const H: usize, const W: usize, const C: usize> Pod for Tensor<H, W, C> {}

/// The values of `value`, a struct of `f32` arrays (a tensor, weights,
/// gradients, a whole model's parameters), as one flat slice in memory order.
pub fn flat<T: Pod>(value: &T) -> &[f32] {
    const { assert!(std::mem::align_of::<T>() == 4 && std::mem::size_of::<T>().is_multiple_of(4)) };
    bytemuck::cast_slice(std::slice::from_ref(value))
}

/// The values of `value` as one flat mutable slice; see [`flat`].
pub fn flat_mut<T: Pod>(value: &mut T) -> &mut [f32] {
    const { assert!(std::mem::align_of::<T>() == 4 && std::mem::size_of::<T>().is_multiple_of(4)) };
    bytemuck::cast_slice_mut(std::slice::from_mut(value))
}

/// An ndarray view whose shape is not the tensor's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The tensor's shape, `[H, W, C]`.
    pub expected: [usize; 3],
    /// The view's shape.
    pub found: [usize; 3],
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [eh, ew, ec] = self.expected;
        let [fh, fw, fc] = self.found;
        write!(f, "expected a {eh}x{ew}x{ec} array, found {fh}x{fw}x{fc}")
    }
}

impl std::error::Error for ShapeMismatch {}

/// Allocates a zeroed `T` directly on the heap.
///
/// `Box::new(T::zeroed())` would build the value on the stack first, which
/// overflows the stack for the larger tensors in unoptimised builds.
///
/// # Panics
///
/// When the memory runs out; [`try_zeroed_box`] returns the error instead.
pub fn zeroed_box<T: Zeroable>() -> Box<T> {
    bytemuck::zeroed_box()
}

/// [`zeroed_box`], or an error when the memory runs out. The scratch spaces
/// and weights of a model are allocated this way, so that a model too large
/// for the machine gives an error, not a panic.
pub fn try_zeroed_box<T: Zeroable>() -> Result<Box<T>, AllocError> {
    bytemuck::try_zeroed_box().map_err(|()| AllocError {
        bytes: std::mem::size_of::<T>(),
    })
}

/// The memory ran out: a tensor or a layer's weights of `bytes` bytes could
/// not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError {
    /// The size of the allocation that failed.
    pub bytes: usize,
}

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "out of memory: {} bytes ({:.1} MiB) could not be allocated",
            self.bytes,
            self.bytes as f64 / (1u64 << 20) as f64
        )
    }
}

impl std::error::Error for AllocError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_row_major_with_channels_innermost() {
        let mut tensor = Tensor::<2, 3, 4>::zeroed_boxed();
        tensor.data[1][2][3] = 7.0;
        tensor.data[0][1][2] = 5.0;
        let view = tensor.view();
        assert_eq!(view[[1, 2, 3]], 7.0);
        assert_eq!(view[[0, 1, 2]], 5.0);
        // [y][x][c] sits at (y * W + x) * C + c.
        assert_eq!(tensor.as_slice()[6], 5.0);
        assert_eq!(tensor.as_slice()[(3 + 2) * 4 + 3], 7.0);
        assert_eq!(tensor.as_slice().len(), Tensor::<2, 3, 4>::LEN);
    }

    #[test]
    fn flat_views_are_the_values_in_order() {
        let mut tensor = Tensor::<2, 3, 4>::zeroed_boxed();
        tensor.data[1][2][3] = 7.0;
        assert_eq!(flat(&*tensor).len(), 24);
        assert_eq!(flat(&*tensor)[23], 7.0);
        flat_mut(&mut *tensor)[0] = -1.0;
        assert_eq!(tensor.data[0][0][0], -1.0);
    }

    #[test]
    fn an_allocation_the_memory_cannot_hold_is_an_error() {
        // 2^46 values, 256 TiB: more than the 128 TiB of address space a
        // process has on x86-64 and AArch64 Linux, so no overcommit setting
        // lets it through.
        let error = try_zeroed_box::<Tensor<1048576, 1048576, 64>>().unwrap_err();
        assert_eq!(error.bytes, 1 << 48);
        assert!(
            error.to_string().contains("281474976710656 bytes"),
            "{error}"
        );
        // A small one succeeds, zeroed.
        let small = try_zeroed_box::<Tensor<2, 2, 2>>().unwrap();
        assert!(small.as_slice().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_huge_tensor_is_allocated_without_touching_the_stack() {
        // 64 MiB: built on the stack first, this would overflow a test thread.
        let tensor = Tensor::<1024, 1024, 16>::zeroed_boxed();
        assert!(tensor.as_slice().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn copy_from_view_accepts_transposed_layouts_and_rejects_other_shapes() {
        let source = ndarray::Array3::from_shape_fn((3, 2, 1), |(y, x, _)| (y * 10 + x) as f32);
        let transposed = source.view().permuted_axes([1, 0, 2]);
        let mut tensor = Tensor::<2, 3, 1>::zeroed_boxed();
        tensor.copy_from_view(transposed).unwrap();
        assert_eq!(tensor.data[1][2][0], 21.0);
        let error = tensor.copy_from_view(source.view()).unwrap_err();
        assert_eq!(error.expected, [2, 3, 1]);
        assert_eq!(error.found, [3, 2, 1]);
        assert_eq!(error.to_string(), "expected a 2x3x1 array, found 3x2x1");
    }
}
