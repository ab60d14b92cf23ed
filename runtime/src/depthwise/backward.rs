//! The backward pass of [`depthwise_conv2d`](super::depthwise_conv2d): the
//! gradient of its input and of its kernel.

use super::{DepthwiseWeights, depthwise_conv2d};
use crate::geometry::{PaddingMode, Same, Stride, tap_source as source, window_output_follows};
use crate::isa::Arithmetic;
use crate::tensor::Tensor;

/// `input_gradient = d loss / d input` for `output = depthwise_conv2d(input,
/// weights)`, given `output_gradient`. Overwrites `input_gradient`.
#[inline(always)]
pub fn depthwise_conv2d_backward_input<
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
    output_gradient: &Tensor<OH, OW, C>,
    weights: &DepthwiseWeights<K, C>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    input_gradient: &mut Tensor<H, W, C>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "depthwise_conv2d_backward_input: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    input_gradient.as_mut_slice().fill(0.0);
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        for (ky, kernel_row) in weights.kernel.iter().enumerate() {
            let Some(iy) = source(oy, ky, S, pad_top, H) else {
                continue;
            };
            let input_row = &mut input_gradient.data[iy];
            for (ox, gradient) in gradient_row.iter().enumerate() {
                for (kx, taps) in kernel_row.iter().enumerate() {
                    let Some(ix) = source(ox, kx, S, pad_left, W) else {
                        continue;
                    };
                    for ((value, &g), &w) in input_row[ix].iter_mut().zip(gradient).zip(taps) {
                        *value = A::mul_add(g, w, *value);
                    }
                }
            }
        }
    }
}

/// `kernel_gradient += d loss / d kernel` for `output =
/// depthwise_conv2d(input, weights)`, given `output_gradient`. Accumulates.
#[inline(always)]
pub fn depthwise_conv2d_backward_kernel<
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
    output_gradient: &Tensor<OH, OW, C>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    kernel_gradient: &mut [[[f32; C]; K]; K],
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "depthwise_conv2d_backward_kernel: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    if C.is_multiple_of(LANES) {
        kernel_gradient_by_rows::<A, S, H, W, K, C, OH, OW>(
            input,
            output_gradient,
            pad_top,
            pad_left,
            kernel_gradient,
        );
        return;
    }
    // Per tap, a channel-wise dot product over the output pixels whose tap
    // falls inside the input, summed in registers a block of channels at a
    // time, pixel after pixel in row-major order.
    for (ky, kernel_row) in kernel_gradient.iter_mut().enumerate() {
        for (kx, taps) in kernel_row.iter_mut().enumerate() {
            let first = (pad_left.saturating_sub(kx)).div_ceil(S);
            let end = ((W + pad_left).saturating_sub(kx)).div_ceil(S).min(OW);
            if first >= end {
                continue;
            }
            let rows = || {
                output_gradient
                    .data
                    .iter()
                    .enumerate()
                    .filter_map(move |(oy, gradient_row)| {
                        source(oy, ky, S, pad_top, H).map(|iy| (&input.data[iy], gradient_row))
                    })
            };
            let mut channel = 0;
            while channel < C {
                let block = (C - channel).min(CHANNEL_BLOCK);
                let mut acc = [0.0f32; CHANNEL_BLOCK];
                acc[..block].copy_from_slice(&taps[channel..channel + block]);
                for (input_row, gradient_row) in rows() {
                    for ox in first..end {
                        let x = &input_row[ox * S + kx - pad_left][channel..channel + block];
                        let g = &gradient_row[ox][channel..channel + block];
                        for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                            *a = A::mul_add(x, g, *a);
                        }
                    }
                }
                taps[channel..channel + block].copy_from_slice(&acc[..block]);
                channel += block;
            }
        }
    }
}

/// Channels of a kernel gradient summed in registers at once.
const CHANNEL_BLOCK: usize = 16;

/// Channels of one vector register (AVX2).
const LANES: usize = 8;

/// [`depthwise_conv2d_backward_kernel`] for channel counts that are a
/// multiple of [`LANES`]: for each block of eight channels, each output row
/// and each kernel row, the kernel row's `K` taps are summed in registers
/// along the output row, so that each output gradient is loaded once for
/// `K` taps (a tap at a time loads two values per multiply-add). The
/// columns whose every tap is inside the input run without checks.
#[inline(always)]
fn kernel_gradient_by_rows<
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
    output_gradient: &Tensor<OH, OW, C>,
    pad_top: usize,
    pad_left: usize,
    kernel_gradient: &mut [[[f32; C]; K]; K],
) {
    let inside = |ox: usize| (0..K).all(|kx| source(ox, kx, S, pad_left, W).is_some());
    let first = (0..OW).find(|&ox| inside(ox)).unwrap_or(OW);
    let end = (first..OW).find(|&ox| !inside(ox)).unwrap_or(OW);
    for block in 0..C / LANES {
        let lanes = |pixel: &[f32; C]| pixel.as_chunks::<LANES>().0[block];
        for (ky, kernel_row) in kernel_gradient.iter_mut().enumerate() {
            let mut acc: [[f32; LANES]; K] =
                std::array::from_fn(|kx| kernel_row[kx].as_chunks::<LANES>().0[block]);
            for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
                let Some(iy) = source(oy, ky, S, pad_top, H) else {
                    continue;
                };
                let input_row = &input.data[iy];
                for ox in first..end {
                    let g = lanes(&gradient_row[ox]);
                    for (kx, acc) in acc.iter_mut().enumerate() {
                        let x = lanes(&input_row[ox * S + kx - pad_left]);
                        for lane in 0..LANES {
                            acc[lane] = A::mul_add(x[lane], g[lane], acc[lane]);
                        }
                    }
                }
                for ox in (0..first).chain(end..OW) {
                    let g = lanes(&gradient_row[ox]);
                    for (kx, acc) in acc.iter_mut().enumerate() {
                        if let Some(ix) = source(ox, kx, S, pad_left, W) {
                            let x = lanes(&input_row[ix]);
                            for lane in 0..LANES {
                                acc[lane] = A::mul_add(x[lane], g[lane], acc[lane]);
                            }
                        }
                    }
                }
            }
            for (taps, acc) in kernel_row.iter_mut().zip(acc) {
                taps.as_chunks_mut::<LANES>().0[block] = acc;
            }
        }
    }
}

/// As [`depthwise_conv2d_backward_input`] for a stride-1 `same` convolution
/// with an odd kernel, whose padding is the same on both sides: then the
/// input gradient is the forward depthwise convolution of the output
/// gradient with the kernel turned by 180 degrees, and runs the forward
/// kernel's blocked loops. Other shapes take the scattering form.
/// Overwrites `input_gradient`.
#[inline(always)]
pub fn depthwise_conv2d_backward_input_same<
    A: Arithmetic,
    const H: usize,
    const W: usize,
    const K: usize,
    const C: usize,
>(
    output_gradient: &Tensor<H, W, C>,
    weights: &DepthwiseWeights<K, C>,
    arithmetic: A,
    input_gradient: &mut Tensor<H, W, C>,
) {
    if K.is_multiple_of(2) {
        depthwise_conv2d_backward_input(
            output_gradient,
            weights,
            Same,
            Stride::<1>,
            arithmetic,
            input_gradient,
        );
        return;
    }
    let mut turned = DepthwiseWeights::<K, C> {
        kernel: [[[0.0; C]; K]; K],
    };
    for (ky, row) in turned.kernel.iter_mut().enumerate() {
        for (kx, taps) in row.iter_mut().enumerate() {
            *taps = weights.kernel[K - 1 - ky][K - 1 - kx];
        }
    }
    depthwise_conv2d(
        output_gradient,
        &turned,
        Same,
        Stride::<1>,
        arithmetic,
        input_gradient,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Same, Valid};
    use crate::isa::{Avx2Arithmetic, PortableArithmetic};
    use crate::reference;
    use crate::test_support::{
        assert_gradient_close, numeric_gradient, random_tensor, random_values, weighted_sum, widen,
    };
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
        let seed = (H * 100 + W * 10 + S) as u64;
        let input = random_tensor::<H, W, C>(seed);
        let mut weights = DepthwiseWeights::<K, C>::zeroed_boxed();
        random_values(
            seed + 1,
            weights.kernel.as_flattened_mut().as_flattened_mut(),
        );
        let output_gradient = random_tensor::<OH, OW, C>(seed + 2);
        let x = widen(input.as_slice());
        let kernel = widen(weights.kernel.as_flattened().as_flattened());
        let loss = |x: &[f64], kernel: &[f64]| {
            let output = reference::depthwise_conv2d(
                ArrayView3::from_shape((H, W, C), x).unwrap(),
                ArrayView3::from_shape((K, K, C), kernel).unwrap(),
                S,
                P::PADDING,
            );
            weighted_sum(output_gradient.as_slice(), output.iter().copied())
        };

        let mut input_gradient = Tensor::<H, W, C>::zeroed_boxed();
        input_gradient.as_mut_slice().fill(f32::NAN);
        depthwise_conv2d_backward_input(
            &output_gradient,
            &weights,
            padding,
            Stride::<S>,
            Avx2Arithmetic,
            &mut input_gradient,
        );
        let numeric = numeric_gradient(&x, 1e-3, |x| loss(x, &kernel));
        assert_gradient_close("input", input_gradient.as_slice(), &numeric, 1e-5);
        if S == 1 && P::PADDING == crate::geometry::Padding::Same {
            let mut same_shape = Tensor::<H, W, C>::zeroed_boxed();
            same_shape
                .as_mut_slice()
                .copy_from_slice(output_gradient.as_slice());
            input_gradient.as_mut_slice().fill(f32::NAN);
            depthwise_conv2d_backward_input_same(
                &same_shape,
                &weights,
                Avx2Arithmetic,
                &mut input_gradient,
            );
            assert_gradient_close(
                "input (turned kernel)",
                input_gradient.as_slice(),
                &numeric,
                1e-5,
            );
        }

        let mut kernel_gradient = [[[0.0f32; C]; K]; K];
        depthwise_conv2d_backward_kernel(
            &input,
            &output_gradient,
            padding,
            Stride::<S>,
            PortableArithmetic,
            &mut kernel_gradient,
        );
        let numeric = numeric_gradient(&kernel, 1e-3, |k| loss(&x, k));
        let analytic = kernel_gradient.as_flattened().as_flattened();
        assert_gradient_close("kernel", analytic, &numeric, 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        check::<Same, 1, 5, 6, 3, 3, 5, 6>(Same);
        check::<Same, 1, 4, 3, 3, 2, 4, 3>(Same);
        check::<Same, 2, 6, 8, 3, 2, 3, 4>(Same);
        check::<Same, 2, 7, 5, 3, 3, 4, 3>(Same);
        // Blocks of 16 channels and 4 pixels in the forward kernel, and 20
        // channels: a block of 16 and 4 left over.
        check::<Same, 1, 5, 9, 3, 16, 5, 9>(Same);
        check::<Same, 1, 4, 6, 3, 20, 4, 6>(Same);
        check::<Valid, 1, 6, 5, 3, 2, 4, 3>(Valid);
        // Eight channels, a register's worth: the row-blocked kernel gradient
        // with stride 2 and with `valid` padding.
        check::<Same, 2, 7, 5, 3, 8, 4, 3>(Same);
        check::<Valid, 1, 6, 5, 3, 8, 4, 3>(Valid);
        check::<Valid, 2, 7, 8, 3, 2, 3, 3>(Valid);
    }
}
