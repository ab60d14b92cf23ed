//! A model's starting point as Keras builds it: Glorot-uniform kernels,
//! zero biases, batch norms with gamma 1 and beta 0, moving mean 0 and
//! moving variance 1.

use crate::runtime::train::TrainableModel;
use crate::runtime::{ParameterKind, bytemuck, flat_mut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Keras' initial parameters and statistics for `M`, the kernels drawn from
/// a generator seeded with `seed`, tensor by tensor in model-file order.
pub fn keras_initial<M: TrainableModel>(seed: u64) -> (Box<M::Parameters>, Box<M::Statistics>) {
    let mut parameters: Box<M::Parameters> = bytemuck::zeroed_box();
    let mut statistics: Box<M::Statistics> = bytemuck::zeroed_box();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let parameter_values = flat_mut(&mut *parameters);
    let statistic_values = flat_mut(&mut *statistics);
    for tensor in M::TENSORS {
        let values = if tensor.is_trainable() {
            tensor.values_mut(parameter_values)
        } else {
            tensor.values_mut(statistic_values)
        };
        let Some(values) = values else { continue };
        match tensor.kind {
            ParameterKind::Kernel
            | ParameterKind::DepthwiseKernel
            | ParameterKind::PointwiseKernel => {
                let limit = glorot_limit(tensor.shape);
                for value in values {
                    *value = rng.random_range(-limit..limit);
                }
            }
            ParameterKind::Gamma | ParameterKind::MovingVariance => values.fill(1.0),
            ParameterKind::Bias | ParameterKind::Beta | ParameterKind::MovingMean => {
                values.fill(0.0)
            }
        }
    }
    (parameters, statistics)
}

/// Keras' `glorot_uniform` bound for a kernel of Keras shape
/// `(kh, kw, in, out)`: `sqrt(6 / (fan_in + fan_out))`, with each fan the
/// channels times the window.
pub fn glorot_limit(shape: &[usize]) -> f32 {
    let (fan_in, fan_out) = match shape {
        [window @ .., inputs, outputs] => {
            let receptive: usize = window.iter().product();
            (inputs * receptive, outputs * receptive)
        }
        _ => (1, 1),
    };
    (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_limits_follow_keras_fans() {
        // A 3x3 conv from 8 to 16 channels: fan_in 72, fan_out 144.
        assert!((glorot_limit(&[3, 3, 8, 16]) - (6.0f32 / 216.0).sqrt()).abs() < 1e-7);
        // A depthwise kernel (3, 3, 32, 1): fan_in 288, fan_out 9.
        assert!((glorot_limit(&[3, 3, 32, 1]) - (6.0f32 / 297.0).sqrt()).abs() < 1e-7);
        // A pointwise kernel (1, 1, 32, 64).
        assert!((glorot_limit(&[1, 1, 32, 64]) - (6.0f32 / 96.0).sqrt()).abs() < 1e-7);
    }
}
