//! Max pooling, the residual add, ReLU and copies over a batch.

use crate::elementwise::{
    add_assign, guided_relu_backward_in_place, relu_backward_in_place, relu_in_place,
};
use crate::geometry::{PaddingMode, Stride, Window};
use crate::isa::{Compiled, Isa, dispatch};
use crate::pool::{self as per_image};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// `outputs[i] = max_pool(inputs[i])` for every image.
pub fn max_pool_forward<
    P: PaddingMode + Send + Sync,
    const K: usize,
    const S: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    window: Window<K>,
    stride: Stride<S>,
    padding: P,
    outputs: &mut [Tensor<OH, OW, C>],
) {
    outputs
        .par_iter_mut()
        .zip(inputs)
        .for_each(|(output, input)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || per_image::max_pool(input, window, stride, padding, output),
                ),
            );
        });
}

/// The backward pass of [`max_pool_forward`]: overwrites `input_gradients`.
pub fn max_pool_backward<
    P: PaddingMode + Send + Sync,
    const K: usize,
    const S: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    output_gradients: &[Tensor<OH, OW, C>],
    window: Window<K>,
    stride: Stride<S>,
    padding: P,
    input_gradients: &mut [Tensor<H, W, C>],
) {
    input_gradients
        .par_iter_mut()
        .zip(inputs)
        .zip(output_gradients)
        .for_each(|((input_gradient, input), output_gradient)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || {
                        per_image::max_pool_image_backward(
                            input,
                            output_gradient,
                            window,
                            stride,
                            padding,
                            input_gradient,
                        )
                    },
                ),
            );
        });
}

/// `outputs[i] += others[i]`: the residual add. Its backward pass is nothing
/// to compute: both branches receive the output gradient as it is.
pub fn add_forward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    outputs: &mut [Tensor<H, W, C>],
    others: &[Tensor<H, W, C>],
) {
    outputs
        .par_iter_mut()
        .zip(others)
        .for_each(|(output, other)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || add_assign(output, other),
                ),
            )
        });
}

/// `to[i] = from[i]`.
pub fn copy_batch<const H: usize, const W: usize, const C: usize>(
    from: &[Tensor<H, W, C>],
    to: &mut [Tensor<H, W, C>],
) {
    to.par_iter_mut()
        .zip(from)
        .for_each(|(to, from)| *to = *from);
}

/// ReLU in place on every image, for a layer without batch norm.
pub fn relu_forward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    tensors: &mut [Tensor<H, W, C>],
) {
    tensors.par_iter_mut().for_each(|tensor| {
        dispatch(
            isa,
            Compiled(
                #[inline(always)]
                || relu_in_place(tensor),
            ),
        )
    });
}

/// How the backward pass goes through a ReLU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReluBackward {
    /// The gradient: passed where the ReLU's output is positive.
    #[default]
    Plain,
    /// Guided back-propagation's rule (Springenberg et al., 2015): passed
    /// only where both the output and the gradient are positive, so that
    /// the input gradient shows what raises the score, not what lowers it.
    Guided,
}

/// The backward pass of [`relu_forward`], in place on the gradients.
pub fn relu_backward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    relu: ReluBackward,
    gradients: &mut [Tensor<H, W, C>],
    outputs: &[Tensor<H, W, C>],
) {
    gradients
        .par_iter_mut()
        .zip(outputs)
        .for_each(|(gradient, output)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || match relu {
                        ReluBackward::Plain => relu_backward_in_place(gradient, output),
                        ReluBackward::Guided => guided_relu_backward_in_place(gradient, output),
                    },
                ),
            )
        });
}
