//! Batch normalisation over a batch: the statistics span every image, so the
//! per-image pieces of [`crate::batch_norm`] run in parallel and their sums
//! are added in image order.

use super::batch::ReductionScratch;
use super::pool::ReluBackward;
use crate::batch_norm::{
    BatchNormParameters, BatchStatistics, MovingStatistics, batch_norm_backward_input,
    batch_norm_backward_sums, batch_norm_relu_backward_sums, image_moments,
};
use crate::isa::{Compiled, Isa, dispatch};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// How a model's batch norms run: the model file's epsilon, Keras' momentum
/// of the moving statistics, and which statistics normalise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormSettings {
    /// Added to the variance before its square root.
    pub epsilon: f32,
    /// How much of the moving statistics each batch keeps (Keras: 0.99).
    pub momentum: f32,
    /// The batch's statistics (training) or the moving ones (inference).
    pub normalization: Normalization,
}

/// Which statistics a batch norm normalises with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// The batch's own mean and variance, moving the moving statistics
    /// toward them: training mode.
    Batch,
    /// The moving statistics, left as they are: inference mode (Keras'
    /// `training=False`), as in a folded model, for gradients of an
    /// inference model's outputs.
    Moving,
}

/// Sums the first `C` values and the next `C` of every image's scratch, in
/// image order.
fn sum_images<const C: usize>(
    scratch: &mut ReductionScratch,
    images: usize,
) -> ([f64; C], [f64; C]) {
    let mut first = [0.0f64; C];
    let mut second = [0.0f64; C];
    for values in image_halves::<C>(scratch, images) {
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
/// images' scratch.
fn image_halves<const C: usize>(
    scratch: &ReductionScratch,
    images: usize,
) -> impl Iterator<Item = (&[f64; C], &[f64; C])> + Clone {
    scratch.images().take(images).filter_map(|values| {
        let (first, rest) = values.split_first_chunk::<C>()?;
        Some((first, rest.first_chunk::<C>()?))
    })
}

/// Stores the batch-norm moments of one image ([`image_moments`]) in its
/// scratch `values`: the sums, then the sums of squares around the image's
/// mean. Called by the convolution before a batch norm right after each
/// image's output, while it is in cache.
pub(crate) fn store_image_moments<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    output: &Tensor<H, W, C>,
    values: &mut [f64],
) {
    let (sums, squares) = dispatch(
        isa,
        Compiled(
            #[inline(always)]
            || image_moments(output),
        ),
    );
    for (value, moment) in values.iter_mut().zip(sums.iter().chain(&squares)) {
        *value = *moment;
    }
}

/// Each image's batch-norm moments, stored in `scratch` for
/// [`batch_norm_forward`]: what the convolutions do when given the scratch,
/// for inputs that no convolution made.
pub fn batch_moments<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    scratch: &mut ReductionScratch,
) {
    inputs
        .par_iter()
        .zip(scratch.par_images())
        .for_each(|(input, values)| store_image_moments(isa, input, values));
}

/// What follows a batch norm in the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// A ReLU, applied as each image is normalised.
    Relu,
    /// Nothing: the value is the batch norm's (the residual branches, whose
    /// sum the next layer takes).
    Linear,
}

/// Batch norm of every image: `outputs[i] = bn(inputs[i])`, then the
/// `activation`. In training mode ([`Normalization::Batch`]) with the batch's
/// mean and biased variance, which are kept in `statistics` for the
/// backward pass, while the moving statistics move toward the batch's; in
/// inference mode with the moving statistics, kept in `statistics` as
/// [`BatchStatistics::fixed`].
///
/// `scratch` must hold each image's moments of `inputs`, stored by the
/// convolution that made them (given the scratch) or by [`batch_moments`]:
/// computing them there, while each image is in cache, saves a pass over
/// the batch. It must have room for `C` channels and the batch; with less
/// room the statistics cover only the images and channels it has room for.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    parameters: &BatchNormParameters<C>,
    settings: BatchNormSettings,
    activation: Activation,
    moving: &mut MovingStatistics<C>,
    statistics: &mut BatchStatistics<C>,
    outputs: &mut [Tensor<H, W, C>],
    scratch: &mut ReductionScratch,
) {
    let images = inputs.len();
    *statistics = match settings.normalization {
        Normalization::Batch => {
            let batch = BatchStatistics::from_image_moments(
                image_halves::<C>(scratch, images),
                H * W,
                settings.epsilon,
            );
            moving.update(&batch, settings.momentum);
            batch
        }
        Normalization::Moving => {
            BatchStatistics::from_moving(moving, images * H * W, settings.epsilon)
        }
    };
    let statistics = &*statistics;
    let relu = activation == Activation::Relu;
    outputs
        .par_iter_mut()
        .zip(inputs)
        .for_each(|(output, input)| {
            dispatch(
                isa,
                Compiled(
                    #[inline(always)]
                    || {
                        crate::batch_norm::batch_norm_image_forward(
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
/// `relu` is `None` when the forward pass had no ReLU, else the ReLU's
/// backward rule.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: &[Tensor<H, W, C>],
    outputs: &[Tensor<H, W, C>],
    parameters: &BatchNormParameters<C>,
    statistics: &BatchStatistics<C>,
    relu: Option<ReluBackward>,
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
                    || match relu {
                        None => batch_norm_backward_sums(input, gradient, statistics),
                        Some(ReluBackward::Plain) => {
                            batch_norm_relu_backward_sums::<false, H, W, C>(
                                input, output, gradient, statistics,
                            )
                        }
                        Some(ReluBackward::Guided) => {
                            batch_norm_relu_backward_sums::<true, H, W, C>(
                                input, output, gradient, statistics,
                            )
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Conv2dWeights;
    use crate::geometry::{Same, Stride};
    use crate::reference;
    use crate::test_support::{random_tensor, random_values};
    use crate::train::{conv2d_forward, zeroed_batch};
    use ndarray::ArrayView1;

    // Twelve channels: a block of eight and four past it; an odd width.
    const H: usize = 4;
    const W: usize = 5;
    const C: usize = 12;
    const BATCH: usize = 5;

    #[test]
    fn batch_norm_over_a_batch_matches_the_reference_whether_the_convolution_stores_the_moments_or_not()
     {
        let inputs: Box<[Tensor<H, W, 3>]> = (0..BATCH as u64)
            .map(|i| *random_tensor::<H, W, 3>(70 + i))
            .collect();
        let mut weights = Conv2dWeights::<3, 3, C>::zeroed_boxed();
        random_values(
            80,
            weights
                .kernel
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        // Offsets far from zero, so a variance taken around the wrong mean
        // would show.
        random_values(81, &mut weights.bias);
        weights.bias.iter_mut().for_each(|b| *b = 4.0 * *b + 3.0);
        let mut parameters = BatchNormParameters::<C>::keras_initial();
        random_values(82, &mut parameters.gamma);
        random_values(83, &mut parameters.beta);
        let settings = BatchNormSettings {
            epsilon: 1e-3,
            momentum: 0.99,
            normalization: Normalization::Batch,
        };
        let isa = Isa::detect();
        let mut scratch = ReductionScratch::new(BATCH, C);

        // The convolution stores the moments; then the same outputs again
        // through `batch_moments`.
        let mut convolved: Box<[Tensor<H, W, C>]> = zeroed_batch(BATCH);
        conv2d_forward(
            isa,
            &inputs,
            &weights,
            Same,
            Stride::<1>,
            &mut convolved,
            Some(&mut scratch),
        );
        let fused: Vec<f64> = scratch.images().flatten().copied().collect();
        let mut moving = MovingStatistics::<C>::keras_initial();
        let mut statistics = BatchStatistics::empty();
        let mut outputs: Box<[Tensor<H, W, C>]> = zeroed_batch(BATCH);
        batch_norm_forward(
            isa,
            &convolved,
            &parameters,
            settings,
            Activation::Relu,
            &mut moving,
            &mut statistics,
            &mut outputs,
            &mut scratch,
        );
        batch_moments(isa, &convolved, &mut scratch);
        let standalone: Vec<f64> = scratch.images().flatten().copied().collect();
        assert_eq!(fused, standalone);

        let views: Vec<_> = convolved.iter().map(|x| x.view()).collect();
        let (expected, mean, variance) = reference::batch_norm_training(
            &views,
            ArrayView1::from(&parameters.gamma),
            ArrayView1::from(&parameters.beta),
            settings.epsilon as f64,
        );
        for c in 0..C {
            assert!((statistics.mean[c] as f64 - mean[c]).abs() < 1e-5 * mean[c].abs().max(1.0));
            assert!((statistics.variance[c] as f64 - variance[c]).abs() < 1e-5 * variance[c]);
        }
        for (output, expected) in outputs.iter().zip(&expected) {
            for (&y, &e) in output.as_slice().iter().zip(expected.iter()) {
                assert!((y - e.max(0.0)).abs() < 1e-5, "{y} vs {}", e.max(0.0));
            }
        }
    }
}
