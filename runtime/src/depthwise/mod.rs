//! Depthwise convolution (depth multiplier 1): each channel is filtered by its
//! own `K x K` kernel. Its backward pass is in `backward.rs`.

mod backward;

pub use backward::{
    depthwise_conv2d_backward_input, depthwise_conv2d_backward_input_same,
    depthwise_conv2d_backward_kernel,
};

use crate::geometry::{Padding, PaddingMode, Stride, window_output_follows};
use crate::isa::Arithmetic;
#[cfg(target_arch = "x86_64")]
use crate::isa::{Avx2Arithmetic, compiled_for_avx2};
use crate::parameters::{ParameterKind, ParameterSource, ParameterSpec};
use crate::tensor::{Tensor, zeroed_box};
use bytemuck::Zeroable;

/// A `K x K` depthwise kernel over `C` channels, in Keras' `(kh, kw, C, 1)` layout.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct DepthwiseWeights<const K: usize, const C: usize> {
    /// `kernel[ky][kx][channel]`.
    pub kernel: [[[f32; C]; K]; K],
}

// SAFETY: `repr(C)` with only `f32` arrays (or structs of them), each of
// alignment 4 and a size that is a multiple of 4: no padding, and every bit
// pattern is a valid value. The training code views a model's parameters as
// one flat slice through this (`tensor::flat`), tested with every model.
unsafe impl<const K: usize, const C: usize> bytemuck::Pod for DepthwiseWeights<K, C> {}

impl<const K: usize, const C: usize> DepthwiseWeights<K, C> {
    /// Zero weights on the heap.
    pub fn zeroed_boxed() -> Box<Self> {
        zeroed_box()
    }

    /// Reads the `depthwise_kernel` of a separable layer.
    pub fn read_into<S: ParameterSource>(
        &mut self,
        source: &mut S,
        layer: &str,
    ) -> Result<(), S::Error> {
        let spec = ParameterSpec {
            layer,
            kind: ParameterKind::DepthwiseKernel,
            shape: &[K, K, C, 1],
        };
        source.read(&spec, self.kernel.as_flattened_mut().as_flattened_mut())
    }
}

/// The output shape of a depthwise convolution, as `[H, W, C]`.
pub const fn output_shape(
    input: [usize; 3],
    kernel: usize,
    padding: Padding,
    stride: usize,
) -> [usize; 3] {
    [
        padding.output_size(input[0], kernel, stride),
        padding.output_size(input[1], kernel, stride),
        input[2],
    ]
}

/// `output[y][x][c] = sum over the window of input * kernel[..][..][c]`.
///
/// Channels are innermost, so every tap is a vector multiply-add over all of
/// a pixel's channels; the window's rows and columns are clipped to the input
/// once per pixel instead of testing every tap.
#[inline(always)]
pub fn depthwise_conv2d<
    P: PaddingMode,
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, C>,
    weights: &DepthwiseWeights<K, C>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    output: &mut Tensor<OH, OW, C>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "depthwise_conv2d: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    for (oy, out_row) in output.data.iter_mut().enumerate() {
        depthwise_row::<P, A, S, H, W, K, C, OW>(input, weights, oy, out_row);
    }
}

/// Output row `oy` of a depthwise convolution; see [`depthwise_conv2d`].
#[inline(always)]
pub(crate) fn depthwise_row<
    P: PaddingMode,
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const C: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, C>,
    weights: &DepthwiseWeights<K, C>,
    oy: usize,
    out_row: &mut [[f32; C]; OW],
) {
    #[cfg(target_arch = "x86_64")]
    if A::LANES >= 16 {
        // SAFETY: 16 lanes means `A` is `Avx512Arithmetic` (the trait is sealed),
        // which only exists once AVX-512, and with it AVX2 and FMA, has been
        // checked for. Its AVX2 build is as fast and keeps clear of the
        // AVX-512 build's gathers (`pointwise/avx512.rs`).
        return unsafe {
            compiled_for_avx2(
                #[inline(always)]
                || {
                    depthwise_row::<P, Avx2Arithmetic, S, H, W, K, C, OW>(
                        input,
                        weights,
                        oy,
                        &mut *out_row,
                    )
                },
            )
        };
    }
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    // Output columns whose whole window lies inside the input.
    let first_inside = pad_left.div_ceil(S);
    let end_inside = if W + pad_left >= K {
        ((W + pad_left - K) / S + 1).min(OW)
    } else {
        0
    };
    let (ky_start, ky_end) = window(oy * S, pad_top, K, H);
    let rows = &input.data[oy * S + ky_start - pad_top..oy * S + ky_end - pad_top];
    let kernel_rows = &weights.kernel[ky_start..ky_end];
    let mut ox = 0;
    while ox < OW {
        let inside = ox >= first_inside;
        if C.is_multiple_of(CHANNEL_BLOCK) && inside && ox + PIXEL_BLOCK <= end_inside {
            interior_block::<A, S, K, W, C, CHANNEL_BLOCK, PIXEL_BLOCK>(
                rows,
                kernel_rows,
                ox * S - pad_left,
                &mut out_row[ox..ox + PIXEL_BLOCK],
            );
            ox += PIXEL_BLOCK;
        } else if C.is_multiple_of(8) && inside && ox + PIXEL_BLOCK <= end_inside {
            // Eight channels (the first module's input): one AVX2 register.
            interior_block::<A, S, K, W, C, 8, PIXEL_BLOCK>(
                rows,
                kernel_rows,
                ox * S - pad_left,
                &mut out_row[ox..ox + PIXEL_BLOCK],
            );
            ox += PIXEL_BLOCK;
        } else {
            let (kx_start, kx_end) = window(ox * S, pad_left, K, W);
            let columns = ox * S + kx_start - pad_left..ox * S + kx_end - pad_left;
            let mut acc = [0.0f32; C];
            for (row, kernel_row) in rows.iter().zip(kernel_rows) {
                for (pixel, taps) in row[columns.clone()]
                    .iter()
                    .zip(&kernel_row[kx_start..kx_end])
                {
                    for ((a, &x), &w) in acc.iter_mut().zip(pixel).zip(taps) {
                        *a = A::mul_add(x, w, *a);
                    }
                }
            }
            out_row[ox] = acc;
            ox += 1;
        }
    }
}

/// Output pixels computed together: neighbouring windows share input columns,
/// so each input pixel and each tap is loaded once for the whole block.
const PIXEL_BLOCK: usize = 4;

/// Channels computed together, so a block's accumulators stay in registers.
const CHANNEL_BLOCK: usize = 16;

/// `B` output pixels whose windows lie inside the input, `CB` channels at a
/// time; the first window starts at column `left`.
#[inline(always)]
fn interior_block<
    A: Arithmetic,
    const S: usize,
    const K: usize,
    const W: usize,
    const C: usize,
    const CB: usize,
    const B: usize,
>(
    rows: &[[[f32; C]; W]],
    kernel_rows: &[[[f32; C]; K]],
    left: usize,
    out: &mut [[f32; C]],
) {
    for channel in (0..C).step_by(CB) {
        let mut acc = [[0.0f32; CB]; B];
        for (row, kernel_row) in rows.iter().zip(kernel_rows) {
            let span = &row[left..left + (B - 1) * S + K];
            for (kx, taps) in kernel_row.iter().enumerate() {
                let taps = &taps[channel..channel + CB];
                for (b, acc) in acc.iter_mut().enumerate() {
                    let pixel = &span[b * S + kx][channel..channel + CB];
                    for ((a, &x), &w) in acc.iter_mut().zip(pixel).zip(taps) {
                        *a = A::mul_add(x, w, *a);
                    }
                }
            }
        }
        for (out, acc) in out.iter_mut().zip(&acc) {
            out[channel..channel + CB].copy_from_slice(acc);
        }
    }
}

/// The taps `start..end` of a window starting at padded position `position`
/// that fall inside an input of `size`.
#[inline(always)]
fn window(position: usize, padding: usize, taps: usize, size: usize) -> (usize, usize) {
    let start = padding.saturating_sub(position);
    let end = taps.min((size + padding).saturating_sub(position));
    (start, end.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Same, Valid};
    use crate::isa::PortableArithmetic;
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor, random_values};
    use ndarray::ArrayView3;

    fn check<
        P: PaddingMode,
        const S: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const C: usize,
        const OH: usize,
        const OW: usize,
    >(
        padding: P,
    ) {
        let input = random_tensor::<H, W, C>(5 + H as u64);
        let mut weights = DepthwiseWeights::<K, C>::zeroed_boxed();
        random_values(17, weights.kernel.as_flattened_mut().as_flattened_mut());
        let mut output = Tensor::<OH, OW, C>::zeroed_boxed();
        depthwise_conv2d(
            &input,
            &weights,
            padding,
            Stride::<S>,
            PortableArithmetic,
            &mut output,
        );
        let kernel =
            ArrayView3::from_shape((K, K, C), weights.kernel.as_flattened().as_flattened())
                .unwrap();
        let expected = reference::depthwise_conv2d(input.view(), kernel, S, P::PADDING);
        assert_close(output.view(), expected.view(), 1e-5);
    }

    #[test]
    fn matches_the_reference() {
        check::<Same, 1, 7, 8, 3, 5, 7, 8>(Same);
        check::<Same, 2, 7, 8, 3, 5, 4, 4>(Same);
        check::<Same, 2, 6, 5, 3, 2, 3, 3>(Same);
        check::<Valid, 1, 7, 8, 3, 4, 5, 6>(Valid);
        check::<Valid, 2, 9, 6, 3, 3, 4, 2>(Valid);
        // A window larger than the input in one direction.
        check::<Same, 1, 2, 5, 3, 4, 2, 5>(Same);
        // Blocks of 4 pixels and 16 channels, with stride 1 and 2.
        check::<Same, 1, 9, 13, 3, 32, 9, 13>(Same);
        check::<Same, 2, 9, 13, 3, 16, 5, 7>(Same);
        check::<Valid, 1, 6, 11, 3, 16, 4, 9>(Valid);
        // Eight and 24 channels: blocks of 8 channels and 4 pixels, then the
        // pixels left over.
        check::<Same, 1, 5, 13, 3, 8, 5, 13>(Same);
        check::<Same, 2, 9, 21, 3, 24, 5, 11>(Same);
    }

    #[test]
    fn output_shape_keeps_the_channels() {
        assert_eq!(
            output_shape([15, 15, 32], 3, Padding::Same, 1),
            [15, 15, 32]
        );
        assert_eq!(output_shape([15, 15, 32], 3, Padding::Valid, 2), [7, 7, 32]);
    }
}
