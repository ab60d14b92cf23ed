//! Batch normalisation over a batch: the statistics span every image, so the
//! per-image pieces of [`crate::batch_norm`] run in parallel and their sums
//! are added in image order.

use super::batch::ReductionScratch;
use crate::batch_norm::{
    BatchNormParameters, BatchStatistics, MovingStatistics, batch_norm_backward_input,
    batch_norm_backward_sums, image_moments,
};
use crate::elementwise::relu_backward_in_place;
use crate::isa::{Compiled, Isa, dispatch};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// How a model's batch norms train: the model file's epsilon and Keras'
/// momentum of the moving statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormSettings {
    /// Added to the variance before its square root.
    pub epsilon: f32,
    /// How much of the moving statistics each batch keeps (Keras: 0.99).
    pub momentum: f32,
}

/// Sums the first `C` values and the next `C` of every image's scratch, in
/// image order.
fn sum_images<const C: usize>(
    scratch: &mut ReductionScratch,
    images: usize,
) -> ([f64; C], [f64; C]) {
    let mut first = [0.0f64; C];
    let mut second = [0.0f64; C];
    for (values, _) in image_halves::<C>(scratch, images) {
        for (sum, value) in first.iter_mut().zip(values.0) {
            *sum += value;
        }
        for (sum, value) in second.iter_mut().zip(values.1) {
            *sum += value;
        }
    }
    (first, second)
}

/// The first `C` values and the next `C` of each of the first `images`
/// images' scratch, with the image's number.
fn image_halves<const C: usize>(
    scratch: &mut ReductionScratch,
    images: usize,
) -> impl Iterator<Item = ((&[f64; C], &[f64; C]), usize)> + Clone {
    scratch
        .images()
        .take(images)
        .filter_map(|values| {
            let (first, rest) = values.split_first_chunk::<C>()?;
            Some((first, rest.first_chunk::<C>()?))
        })
        .zip(0..)
}

/// Training-mode batch norm of every image: `outputs[i] = bn(inputs[i])`
/// with the batch's mean and biased variance (then ReLU when `relu`), which
/// are kept in `statistics` for the backward pass; the moving statistics
/// move toward the batch's.
///
/// The scratch must have room for `C` channels and the batch; with less
/// room the statistics cover only the images and channels it has room for.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    parameters: &BatchNormParameters<C>,
    settings: BatchNormSettings,
    relu: bool,
    moving: &mut MovingStatistics<C>,
    statistics: &mut BatchStatistics<C>,
    outputs: &mut [Tensor<H, W, C>],
    scratch: &mut ReductionScratch,
) {
    let images = inputs.len();
    inputs
        .par_iter()
        .zip(scratch.par_images())
        .for_each(|(input, values)| {
            let (sums, squares) = dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || image_moments(input),
                ),
            );
            for (value, sum) in values.iter_mut().zip(sums.iter().chain(&squares)) {
                *value = *sum;
            }
        });
    *statistics = BatchStatistics::from_image_moments(
        image_halves::<C>(scratch, images).map(|(halves, _)| halves),
        H * W,
        settings.epsilon,
    );
    moving.update(statistics, settings.momentum);
    let statistics = &*statistics;
    outputs
        .par_iter_mut()
        .zip(inputs)
        .for_each(|(output, input)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || {
                        crate::batch_norm::batch_norm_forward(
                            input, statistics, parameters, relu, output,
                        )
                    },
                ),
            );
        });
}

/// The backward pass of [`batch_norm_forward`], in place: `gradients` holds
/// the gradient of the outputs and is turned into that of the inputs;
/// gamma's and beta's gradients are **added** to `parameter_gradient`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    outputs: &[Tensor<H, W, C>],
    parameters: &BatchNormParameters<C>,
    statistics: &BatchStatistics<C>,
    relu: bool,
    gradients: &mut [Tensor<H, W, C>],
    parameter_gradient: &mut BatchNormParameters<C>,
    scratch: &mut ReductionScratch,
) {
    let images = inputs.len();
    gradients
        .par_iter_mut()
        .zip(inputs)
        .zip(outputs)
        .zip(scratch.par_images())
        .for_each(|(((gradient, input), output), values)| {
            let (beta, gamma) = dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || {
                        if relu {
                            relu_backward_in_place(gradient, output);
                        }
                        batch_norm_backward_sums(input, gradient, statistics)
                    },
                ),
            );
            if values.len() >= 2 * C {
                values[..C].copy_from_slice(&beta);
                values[C..2 * C].copy_from_slice(&gamma);
            }
        });
    let (beta, gamma) = sum_images::<C>(scratch, images);
    let (beta, gamma) = (beta.map(|v| v as f32), gamma.map(|v| v as f32));
    for c in 0..C {
        parameter_gradient.beta[c] += beta[c];
        parameter_gradient.gamma[c] += gamma[c];
    }
    gradients
        .par_iter_mut()
        .zip(inputs)
        .for_each(|(gradient, input)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || {
                        batch_norm_backward_input(
                            input, gradient, statistics, parameters, &beta, &gamma,
                        )
                    },
                ),
            );
        });
}
