//! The backward pass of [`conv2d`](super::conv2d): the gradient of its input,
//! of its kernel and of its bias, given the gradient of its output.

use super::Conv2dWeights;
use crate::geometry::{PaddingMode, Stride, tap_source as source, window_output_follows};
use crate::isa::Arithmetic;
use crate::outer::accumulate_outer_products;
use crate::tensor::Tensor;

/// `input_gradient = d loss / d input` for `output = conv2d(input, weights)`,
/// given `output_gradient = d loss / d output`. Overwrites `input_gradient`.
///
/// Every output pixel sends its gradient back through each tap of its window
/// to the input pixel that tap read; taps in the padding read nothing and
/// send nothing.
#[inline(always)]
pub fn conv2d_backward_input<
    P: PaddingMode,
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    output_gradient: &Tensor<OH, OW, CO>,
    weights: &Conv2dWeights<K, CI, CO>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    input_gradient: &mut Tensor<H, W, CI>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "conv2d_backward_input: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    input_gradient.as_mut_slice().fill(0.0);
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        for (ox, gradient) in gradient_row.iter().enumerate() {
            for (ky, kernel_row) in weights.kernel.iter().enumerate() {
                let Some(iy) = source(oy, ky, S, pad_top, H) else {
                    continue;
                };
                for (kx, taps) in kernel_row.iter().enumerate() {
                    let Some(ix) = source(ox, kx, S, pad_left, W) else {
                        continue;
                    };
                    let pixel = &mut input_gradient.data[iy][ix];
                    for (value, filter_row) in pixel.iter_mut().zip(taps) {
                        let mut sum = 0.0;
                        for (&g, &w) in gradient.iter().zip(filter_row) {
                            sum = A::mul_add(g, w, sum);
                        }
                        *value += sum;
                    }
                }
            }
        }
    }
}

/// Input pixels of one row computed together in
/// [`conv2d_backward_input_transposed`].
const PIXEL_BLOCK: usize = 4;

/// As [`conv2d_backward_input`] (which it calls for strides above 1, with
/// `weights`), but gathering: each input pixel sums what
/// every tap sends it, with the kernel transposed (`transposed.kernel[ky][kx][co][ci]
/// = kernel[ky][kx][ci][co]`, see [`transpose_conv_into`]) so that each
/// output-gradient value multiplies a contiguous run of input channels, and
/// `PIXEL_BLOCK` neighbouring input pixels share every kernel row loaded.
/// Overwrites `input_gradient`.
#[inline(always)]
pub fn conv2d_backward_input_transposed<
    P: PaddingMode,
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    output_gradient: &Tensor<OH, OW, CO>,
    weights: &Conv2dWeights<K, CI, CO>,
    transposed: &Conv2dWeights<K, CO, CI>,
    padding: P,
    stride: Stride<S>,
    arithmetic: A,
    input_gradient: &mut Tensor<H, W, CI>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "conv2d_backward_input_transposed: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    if S != 1 {
        // A stride leaves most taps without a source: the scatter form.
        conv2d_backward_input(
            output_gradient,
            weights,
            padding,
            stride,
            arithmetic,
            input_gradient,
        );
        return;
    }
    let pad_top = P::PADDING.padding_before(H, K, 1);
    let pad_left = P::PADDING.padding_before(W, K, 1);
    // Input column `ix` receives from output columns `ix + pad_left - kx`
    // for every tap; all of them exist for `ix` in `first..end`.
    let first = (K - 1).saturating_sub(pad_left);
    let end = OW.saturating_sub(pad_left).min(W);
    for (iy, input_row) in input_gradient.data.iter_mut().enumerate() {
        // Taps `ky` whose output row `iy + pad_top - ky` exists.
        let rows: [Option<usize>; K] =
            std::array::from_fn(|ky| (iy + pad_top).checked_sub(ky).filter(|&oy| oy < OH));
        let mut ix = 0;
        while ix < W {
            if ix >= first && ix + PIXEL_BLOCK <= end {
                let mut acc = [[0.0f32; CI]; PIXEL_BLOCK];
                for (ky, oy) in rows.iter().enumerate() {
                    let Some(oy) = *oy else { continue };
                    let gradient_row = &output_gradient.data[oy];
                    for kx in 0..K {
                        let start = ix + pad_left - kx;
                        let taps = &transposed.kernel[ky][kx];
                        for (co, kernel_row) in taps.iter().enumerate() {
                            for (b, acc) in acc.iter_mut().enumerate() {
                                let g = gradient_row[start + b][co];
                                for (a, &w) in acc.iter_mut().zip(kernel_row) {
                                    *a = A::mul_add(g, w, *a);
                                }
                            }
                        }
                    }
                }
                input_row[ix..ix + PIXEL_BLOCK].copy_from_slice(&acc);
                ix += PIXEL_BLOCK;
            } else {
                let mut acc = [0.0f32; CI];
                for (ky, oy) in rows.iter().enumerate() {
                    let Some(oy) = *oy else { continue };
                    for kx in 0..K {
                        let Some(ox) = (ix + pad_left).checked_sub(kx).filter(|&ox| ox < OW) else {
                            continue;
                        };
                        for (&g, kernel_row) in output_gradient.data[oy][ox]
                            .iter()
                            .zip(&transposed.kernel[ky][kx])
                        {
                            for (a, &w) in acc.iter_mut().zip(kernel_row) {
                                *a = A::mul_add(g, w, *a);
                            }
                        }
                    }
                }
                input_row[ix] = acc;
                ix += 1;
            }
        }
    }
}

/// `transposed.kernel[ky][kx][co][ci] = weights.kernel[ky][kx][ci][co]`, for
/// [`conv2d_backward_input_transposed`]; the bias becomes zero.
pub fn transpose_conv_into<const K: usize, const CI: usize, const CO: usize>(
    weights: &Conv2dWeights<K, CI, CO>,
    transposed: &mut Conv2dWeights<K, CO, CI>,
) {
    for (rows, transposed_rows) in weights.kernel.iter().zip(transposed.kernel.iter_mut()) {
        for (taps, transposed_taps) in rows.iter().zip(transposed_rows.iter_mut()) {
            for (ci, filter_row) in taps.iter().enumerate() {
                for (co, &w) in filter_row.iter().enumerate() {
                    transposed_taps[co][ci] = w;
                }
            }
        }
    }
    transposed.bias = [0.0; CI];
}

/// `kernel_gradient += d loss / d kernel` for `output = conv2d(input,
/// weights)`, given `output_gradient`. Accumulates, so that one gradient can
/// gather several images; the bias is left to [`bias_backward`].
#[inline(always)]
pub fn conv2d_backward_kernel<
    P: PaddingMode,
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, CI>,
    output_gradient: &Tensor<OH, OW, CO>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    kernel_gradient: &mut [[[[f32; CO]; CI]; K]; K],
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "conv2d_backward_kernel: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    // Each tap is a 1x1 contraction between the input shifted by the tap
    // and the output gradient: over every output row, the run of output
    // columns whose tap falls inside the input.
    for (ky, kernel_row) in kernel_gradient.iter_mut().enumerate() {
        for (kx, taps) in kernel_row.iter_mut().enumerate() {
            // Output columns `first..end` read input columns inside.
            let first = (pad_left.saturating_sub(kx)).div_ceil(S);
            let end = ((W + pad_left).saturating_sub(kx)).div_ceil(S).min(OW);
            if first >= end {
                continue;
            }
            for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
                let Some(iy) = source(oy, ky, S, pad_top, H) else {
                    continue;
                };
                let input_row = &input.data[iy];
                let start = first * S + kx - pad_left;
                accumulate_outer_products::<A, CI, CO>(
                    end - first,
                    |j| &input_row[start + j * S],
                    |j| &gradient_row[first + j],
                    taps,
                );
            }
        }
    }
}

/// `bias_gradient += d loss / d bias`: the output gradient summed over all
/// positions, for any layer that adds a bias per output channel.
#[inline(always)]
pub fn bias_backward<const OH: usize, const OW: usize, const CO: usize>(
    output_gradient: &Tensor<OH, OW, CO>,
    bias_gradient: &mut [f32; CO],
) {
    for pixel in output_gradient.data.as_flattened() {
        for (b, &g) in bias_gradient.iter_mut().zip(pixel) {
            *b += g;
        }
    }
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
    use ndarray::{ArrayView3, ArrayView4};

    /// Checks all three gradients of one convolution against central finite
    /// differences of `loss = sum(r * conv(x, w, b))` in f64, with random `r`.
    fn check<
        P: PaddingMode,
        const S: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
        const OW: usize,
    >(
        padding: P,
    ) {
        let seed = (H * 100 + W * 10 + S) as u64;
        let input = random_tensor::<H, W, CI>(seed);
        let mut weights = Conv2dWeights::<K, CI, CO>::zeroed_boxed();
        random_values(
            seed + 1,
            weights
                .kernel
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        random_values(seed + 2, &mut weights.bias);
        let output_gradient = random_tensor::<OH, OW, CO>(seed + 3);

        let x = widen(input.as_slice());
        let kernel = widen(weights.kernel.as_flattened().as_flattened().as_flattened());
        let bias = widen(&weights.bias);
        let loss = |x: &[f64], kernel: &[f64], bias: &[f64]| {
            let output = reference::conv2d(
                ArrayView3::from_shape((H, W, CI), x).unwrap(),
                ArrayView4::from_shape((K, K, CI, CO), kernel).unwrap(),
                Some(ndarray::ArrayView1::from(bias)),
                S,
                P::PADDING,
            );
            weighted_sum(output_gradient.as_slice(), output.iter().copied())
        };

        let mut input_gradient = Tensor::<H, W, CI>::zeroed_boxed();
        input_gradient.as_mut_slice().fill(f32::NAN);
        conv2d_backward_input(
            &output_gradient,
            &weights,
            padding,
            Stride::<S>,
            PortableArithmetic,
            &mut input_gradient,
        );
        let numeric = numeric_gradient(&x, 1e-3, |x| loss(x, &kernel, &bias));
        assert_gradient_close("input", input_gradient.as_slice(), &numeric, 1e-5);

        let mut kernel_gradient = [[[[0.0f32; CO]; CI]; K]; K];
        conv2d_backward_kernel(
            &input,
            &output_gradient,
            padding,
            Stride::<S>,
            Avx2Arithmetic,
            &mut kernel_gradient,
        );
        let numeric = numeric_gradient(&kernel, 1e-3, |k| loss(&x, k, &bias));
        let analytic = kernel_gradient.as_flattened().as_flattened().as_flattened();
        assert_gradient_close("kernel", analytic, &numeric, 1e-5);

        let mut bias_gradient = [0.0f32; CO];
        bias_backward(&output_gradient, &mut bias_gradient);
        let numeric = numeric_gradient(&bias, 1e-3, |b| loss(&x, &kernel, b));
        assert_gradient_close("bias", &bias_gradient, &numeric, 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences_valid() {
        check::<Valid, 1, 7, 6, 3, 2, 3, 5, 4>(Valid);
        check::<Valid, 2, 9, 8, 3, 3, 2, 4, 3>(Valid);
        // Rows long enough for blocks of pixels, with pixels left over.
        check::<Valid, 1, 5, 15, 3, 8, 8, 3, 13>(Valid);
    }

    #[test]
    fn gradients_match_finite_differences_same_with_the_extra_cell_bottom_right() {
        // Odd and even sizes; stride 2 on an even size pads only at the
        // bottom and right, on an odd size on both sides.
        check::<Same, 1, 5, 6, 3, 2, 3, 5, 6>(Same);
        check::<Same, 2, 6, 8, 3, 2, 3, 3, 4>(Same);
        check::<Same, 2, 7, 5, 3, 1, 2, 4, 3>(Same);
        check::<Same, 1, 6, 5, 4, 2, 2, 6, 5>(Same);
        check::<Same, 1, 4, 14, 3, 3, 5, 4, 14>(Same);
    }

    #[test]
    fn kernel_and_bias_gradients_accumulate() {
        let input = random_tensor::<5, 5, 2>(1);
        let output_gradient = random_tensor::<3, 3, 3>(2);
        let mut once = [[[[0.0f32; 3]; 2]; 3]; 3];
        conv2d_backward_kernel(
            &input,
            &output_gradient,
            Valid,
            Stride::<1>,
            PortableArithmetic,
            &mut once,
        );
        let mut twice = once;
        conv2d_backward_kernel(
            &input,
            &output_gradient,
            Valid,
            Stride::<1>,
            PortableArithmetic,
            &mut twice,
        );
        let (once, twice) = (
            once.as_flattened().as_flattened().as_flattened(),
            twice.as_flattened().as_flattened().as_flattened(),
        );
        for (a, b) in once.iter().zip(twice) {
            assert!(
                (2.0 * a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{a} twice is not {b}"
            );
        }
        let mut bias = [1.0f32; 3];
        bias_backward(&output_gradient, &mut bias);
        let sum: f32 = output_gradient
            .data
            .as_flattened()
            .iter()
            .map(|p| p[0])
            .sum();
        assert!((bias[0] - 1.0 - sum).abs() < 1e-5);
    }
}
