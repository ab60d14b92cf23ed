//! The backward pass of [`pointwise_conv2d`](super::pointwise_conv2d): the
//! gradient of its input and of its kernel. (The bias gradient is
//! [`bias_backward`](crate::conv::bias_backward), as for any convolution.)

use super::{PointwiseWeights, multiply_pixels};
use crate::epilogue::Identity;
use crate::geometry::Stride;
use crate::isa::Arithmetic;
use crate::outer::accumulate_outer_products;
use crate::tensor::Tensor;

/// `input_gradient = d loss / d input` for `output = pointwise_conv2d(input,
/// weights)` with stride `S`, given `output_gradient`. Overwrites
/// `input_gradient`: pixels that the stride skips get zero.
#[inline(always)]
pub fn pointwise_conv2d_backward_input<
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    output_gradient: &Tensor<OH, OW, CO>,
    weights: &PointwiseWeights<CI, CO>,
    _stride: Stride<S>,
    _arithmetic: A,
    input_gradient: &mut Tensor<H, W, CI>,
) {
    const {
        assert!(
            S > 0 && OH == H.div_ceil(S) && OW == W.div_ceil(S) && OH > 0 && OW > 0,
            "pointwise_conv2d_backward_input: the output shape does not follow from the input shape and stride"
        )
    };
    if S > 1 {
        input_gradient.as_mut_slice().fill(0.0);
    }
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        let input_row = &mut input_gradient.data[oy * S];
        for (ox, gradient) in gradient_row.iter().enumerate() {
            for (value, kernel_row) in input_row[ox * S].iter_mut().zip(&weights.kernel) {
                let mut sum = 0.0;
                for (&g, &w) in gradient.iter().zip(kernel_row) {
                    sum = A::mul_add(g, w, sum);
                }
                *value = sum;
            }
        }
    }
}

/// `kernel_gradient += d loss / d kernel` for `output =
/// pointwise_conv2d(input, weights)` with stride `S`. Accumulates.
#[inline(always)]
pub fn pointwise_conv2d_backward_kernel<
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, CI>,
    output_gradient: &Tensor<OH, OW, CO>,
    _stride: Stride<S>,
    _arithmetic: A,
    kernel_gradient: &mut [[f32; CO]; CI],
) {
    const {
        assert!(
            S > 0 && OH == H.div_ceil(S) && OW == W.div_ceil(S) && OH > 0 && OW > 0,
            "pointwise_conv2d_backward_kernel: the output shape does not follow from the input shape and stride"
        )
    };
    if S == 1 {
        // Without a stride the pixels pair up as one contiguous run.
        let (inputs, gradients) = (
            input.data.as_flattened(),
            output_gradient.data.as_flattened(),
        );
        accumulate_outer_products::<A, CI, CO>(
            gradients.len(),
            |j| &inputs[j],
            |j| &gradients[j],
            kernel_gradient,
        );
    } else {
        for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
            let input_row = &input.data[oy * S];
            accumulate_outer_products::<A, CI, CO>(
                OW,
                |j| &input_row[j * S],
                |j| &gradient_row[j],
                kernel_gradient,
            );
        }
    }
}

/// `input_gradient = d loss / d input` for a stride-1 `pointwise_conv2d`,
/// given the layer's kernel transposed (`transposed.kernel[co][ci] =
/// kernel[ci][co]`, zero bias): the forward kernel's blocked product with
/// the transposed weights. Overwrites `input_gradient`.
#[inline(always)]
pub fn pointwise_conv2d_backward_input_transposed<
    A: Arithmetic,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
>(
    output_gradient: &Tensor<H, W, CO>,
    transposed: &PointwiseWeights<CO, CI>,
    _arithmetic: A,
    input_gradient: &mut Tensor<H, W, CI>,
) {
    let gradients = output_gradient.data.as_flattened();
    multiply_pixels::<A, Identity, CO, CI>(
        |p| &gradients[p],
        transposed,
        input_gradient.data.as_flattened_mut(),
    );
}

/// As [`pointwise_conv2d_backward_input`] (any stride), but **adds** to
/// `input_gradient`, for a residual branch whose input also feeds the main
/// branch; given the layer's kernel transposed as for
/// [`pointwise_conv2d_backward_input_transposed`]: each output row's input
/// gradients are the forward kernel's blocked product, made in a buffer on
/// the stack and added to every `S`th pixel of every `S`th row. (The
/// untransposed form sums a dot product per input channel, a horizontal
/// sum per value.)
#[inline(always)]
pub fn pointwise_conv2d_backward_input_add_transposed<
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    output_gradient: &Tensor<OH, OW, CO>,
    transposed: &PointwiseWeights<CO, CI>,
    _stride: Stride<S>,
    _arithmetic: A,
    input_gradient: &mut Tensor<H, W, CI>,
) {
    const {
        assert!(
            S > 0 && OH == H.div_ceil(S) && OW == W.div_ceil(S) && OH > 0 && OW > 0,
            "pointwise_conv2d_backward_input_add_transposed: the output shape does not follow from the input shape and stride"
        )
    };
    let mut row_gradient = [[0.0f32; CI]; OW];
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        multiply_pixels::<A, Identity, CO, CI>(|p| &gradient_row[p], transposed, &mut row_gradient);
        let input_row = &mut input_gradient.data[oy * S];
        for (ox, sums) in row_gradient.iter().enumerate() {
            add_lanes(&mut input_row[ox * S], sums);
        }
    }
}

/// `values += others`, eight channels at a time as whole arrays, which LLVM
/// turns into vector adds (a plain loop over a pixel's channels stayed
/// scalar).
#[inline(always)]
fn add_lanes<const C: usize>(values: &mut [f32; C], others: &[f32; C]) {
    let (blocks, rest) = values.as_chunks_mut::<8>();
    let (other_blocks, other_rest) = others.as_chunks::<8>();
    for (block, other) in blocks.iter_mut().zip(other_blocks) {
        let (a, b) = (*block, *other);
        *block = std::array::from_fn(|lane| a[lane] + b[lane]);
    }
    for (value, other) in rest.iter_mut().zip(other_rest) {
        *value += other;
    }
}

/// The kernel of `weights` transposed, with a zero bias, for
/// [`pointwise_conv2d_backward_input_transposed`].
pub fn transpose_into<const CI: usize, const CO: usize>(
    weights: &PointwiseWeights<CI, CO>,
    transposed: &mut PointwiseWeights<CO, CI>,
) {
    for (ci, row) in weights.kernel.iter().enumerate() {
        for (co, &w) in row.iter().enumerate() {
            transposed.kernel[co][ci] = w;
        }
    }
    transposed.bias = [0.0; CI];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;
    use crate::isa::{Avx2Arithmetic, PortableArithmetic};
    use crate::reference;
    use crate::test_support::{
        assert_gradient_close, numeric_gradient, random_tensor, random_values, weighted_sum, widen,
    };
    use ndarray::{ArrayView3, ArrayView4};

    fn check<
        const S: usize,
        const H: usize,
        const W: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
        const OW: usize,
    >() {
        let seed = (H * 100 + W * 10 + S) as u64;
        let input = random_tensor::<H, W, CI>(seed);
        let mut weights = PointwiseWeights::<CI, CO>::zeroed_boxed();
        random_values(seed + 1, weights.kernel.as_flattened_mut());
        let output_gradient = random_tensor::<OH, OW, CO>(seed + 2);
        let x = widen(input.as_slice());
        let kernel = widen(weights.kernel.as_flattened());
        let loss = |x: &[f64], kernel: &[f64]| {
            let output = reference::conv2d(
                ArrayView3::from_shape((H, W, CI), x).unwrap(),
                ArrayView4::from_shape((1, 1, CI, CO), kernel).unwrap(),
                None,
                S,
                Padding::Same,
            );
            weighted_sum(output_gradient.as_slice(), output.iter().copied())
        };

        let mut input_gradient = Tensor::<H, W, CI>::zeroed_boxed();
        input_gradient.as_mut_slice().fill(f32::NAN);
        pointwise_conv2d_backward_input(
            &output_gradient,
            &weights,
            Stride::<S>,
            Avx2Arithmetic,
            &mut input_gradient,
        );
        let numeric = numeric_gradient(&x, 1e-3, |x| loss(x, &kernel));
        assert_gradient_close("input", input_gradient.as_slice(), &numeric, 1e-5);

        // Adding onto a gradient that is already there, through the
        // transposed kernel.
        let mut transposed = PointwiseWeights::<CO, CI>::zeroed_boxed();
        transpose_into(&weights, &mut transposed);
        let before = random_tensor::<H, W, CI>(seed + 3);
        let mut sum = before.clone();
        pointwise_conv2d_backward_input_add_transposed(
            &output_gradient,
            &transposed,
            Stride::<S>,
            Avx2Arithmetic,
            &mut sum,
        );
        for ((&s, &b), &g) in sum
            .as_slice()
            .iter()
            .zip(before.as_slice())
            .zip(input_gradient.as_slice())
        {
            assert!((s - (b + g)).abs() <= 1e-6, "{s} is not {b} + {g}");
        }

        if S == 1 {
            let mut through_transpose = Tensor::<H, W, CI>::zeroed_boxed();
            let mut same_shape = Tensor::<H, W, CO>::zeroed_boxed();
            same_shape
                .as_mut_slice()
                .copy_from_slice(output_gradient.as_slice());
            pointwise_conv2d_backward_input_transposed(
                &same_shape,
                &transposed,
                Avx2Arithmetic,
                &mut through_transpose,
            );
            assert_gradient_close(
                "input (transposed)",
                through_transpose.as_slice(),
                &numeric,
                1e-5,
            );
        }

        let mut kernel_gradient = [[0.0f32; CO]; CI];
        pointwise_conv2d_backward_kernel(
            &input,
            &output_gradient,
            Stride::<S>,
            PortableArithmetic,
            &mut kernel_gradient,
        );
        let numeric = numeric_gradient(&kernel, 1e-3, |k| loss(&x, k));
        assert_gradient_close("kernel", kernel_gradient.as_flattened(), &numeric, 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences_with_strides_on_odd_and_even_sizes() {
        check::<1, 4, 3, 3, 5, 4, 3>();
        check::<2, 6, 4, 3, 4, 3, 2>();
        check::<2, 5, 7, 2, 3, 3, 4>();
        check::<3, 7, 5, 2, 2, 3, 2>();
    }
}
