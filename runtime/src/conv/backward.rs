//! The backward pass of [`conv2d`](super::conv2d): the gradient of its input,
//! of its kernel and of its bias, given the gradient of its output.

use super::Conv2dWeights;
use crate::geometry::{PaddingMode, Stride, tap_source as source, window_output_follows};
use crate::isa::Arithmetic;
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
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        for (ox, gradient) in gradient_row.iter().enumerate() {
            for (ky, kernel_row) in kernel_gradient.iter_mut().enumerate() {
                let Some(iy) = source(oy, ky, S, pad_top, H) else {
                    continue;
                };
                for (kx, taps) in kernel_row.iter_mut().enumerate() {
                    let Some(ix) = source(ox, kx, S, pad_left, W) else {
                        continue;
                    };
                    for (&x, filter_row) in input.data[iy][ix].iter().zip(taps.iter_mut()) {
                        for (w, &g) in filter_row.iter_mut().zip(gradient) {
                            *w = A::mul_add(x, g, *w);
                        }
                    }
                }
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
    use crate::isa::{Fused, Unfused};
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
            Unfused,
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
            Fused,
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
    }

    #[test]
    fn gradients_match_finite_differences_same_with_the_extra_cell_bottom_right() {
        // Odd and even sizes; stride 2 on an even size pads only at the
        // bottom and right, on an odd size on both sides.
        check::<Same, 1, 5, 6, 3, 2, 3, 5, 6>(Same);
        check::<Same, 2, 6, 8, 3, 2, 3, 3, 4>(Same);
        check::<Same, 2, 7, 5, 3, 1, 2, 4, 3>(Same);
        check::<Same, 1, 6, 5, 4, 2, 2, 6, 5>(Same);
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
            Unfused,
            &mut once,
        );
        let mut twice = once;
        conv2d_backward_kernel(
            &input,
            &output_gradient,
            Valid,
            Stride::<1>,
            Unfused,
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
