//! Batch normalisation, which at inference time is an affine map per channel,
//! folded into the convolution before it so that it costs nothing. While
//! training it normalises with the batch's statistics (`train.rs`).

mod train;

pub use train::{
    BatchNormParameters, BatchStatistics, MovingStatistics, batch_norm_backward_input,
    batch_norm_backward_sums, batch_norm_image_forward, batch_norm_relu_backward_sums,
    centered_square_sums, channel_sums, image_moments,
};

use crate::parameters::{ParameterKind, ParameterSource, ParameterSpec};

/// The four tensors of a Keras `BatchNormalization` layer and its epsilon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm<const C: usize> {
    /// Scale.
    pub gamma: [f32; C],
    /// Offset.
    pub beta: [f32; C],
    /// Running mean.
    pub moving_mean: [f32; C],
    /// Running variance.
    pub moving_variance: [f32; C],
    /// Added to the variance before its square root.
    pub epsilon: f32,
}

impl<const C: usize> BatchNorm<C> {
    /// Reads the batch norm that follows `layer`; `epsilon` is the model
    /// file's, which the source may override with the trained one.
    pub fn read<S: ParameterSource>(
        source: &mut S,
        layer: &str,
        epsilon: f32,
    ) -> Result<Self, S::Error> {
        let epsilon = source.batch_norm_epsilon(layer, epsilon)?;
        let mut batch_norm = BatchNorm {
            gamma: [0.0; C],
            beta: [0.0; C],
            moving_mean: [0.0; C],
            moving_variance: [0.0; C],
            epsilon,
        };
        let shape = [C];
        for (kind, values) in [
            (ParameterKind::Gamma, &mut batch_norm.gamma),
            (ParameterKind::Beta, &mut batch_norm.beta),
            (ParameterKind::MovingMean, &mut batch_norm.moving_mean),
            (
                ParameterKind::MovingVariance,
                &mut batch_norm.moving_variance,
            ),
        ] {
            source.read(
                &ParameterSpec {
                    layer,
                    kind,
                    shape: &shape,
                },
                values,
            )?;
        }
        Ok(batch_norm)
    }

    /// The per-channel `(scale, shift)` with `y = x * scale + shift`.
    ///
    /// Computed in f64 so that folding adds no rounding of its own beyond the
    /// final cast.
    pub fn scale_and_shift(&self) -> ([f32; C], [f32; C]) {
        let mut scale = [0.0; C];
        let mut shift = [0.0; C];
        for c in 0..C {
            let s = self.gamma[c] as f64
                / (self.moving_variance[c] as f64 + self.epsilon as f64).sqrt();
            scale[c] = s as f32;
            shift[c] = (self.beta[c] as f64 - self.moving_mean[c] as f64 * s) as f32;
        }
        (scale, shift)
    }
}

/// Weights that a following batch norm over `C` output channels can be folded into.
pub trait FoldBatchNorm<const C: usize> {
    /// Rewrites the weights so that they compute `batch_norm(layer(x))`.
    fn fold_batch_norm(&mut self, batch_norm: &BatchNorm<C>);
}

/// Folds `(scale, shift)` into kernel columns and a bias: every output channel's
/// weights are scaled, and the bias becomes `bias * scale + shift`.
pub(crate) fn fold_into<const C: usize>(
    kernel_rows: &mut [[f32; C]],
    bias: &mut [f32; C],
    batch_norm: &BatchNorm<C>,
) {
    let (scale, shift) = batch_norm.scale_and_shift();
    for row in kernel_rows {
        for (weight, s) in row.iter_mut().zip(scale) {
            *weight *= s;
        }
    }
    for c in 0..C {
        bias[c] = bias[c] * scale[c] + shift[c];
    }
}
