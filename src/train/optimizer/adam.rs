//! The Adam optimizer, exactly as Keras 2.15 (`tf.keras.optimizers.Adam`)
//! updates a variable, so that a model trained here follows Keras step for step.

/// Adam's settings; [`Adam::default`] is Keras' (learning rate 1e-3,
/// beta1 0.9, beta2 0.999, epsilon 1e-7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// The step size before bias correction.
    pub learning_rate: f32,
    /// Decay of the first moment (the mean of the gradients).
    pub beta1: f32,
    /// Decay of the second moment (the mean of the squared gradients).
    pub beta2: f32,
    /// Added to the root of the second moment, after its bias correction.
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Adam {
    /// Update number `step` (1 for the first) of `parameters` with
    /// `gradients`, moving the moments `first` and `second` (zero before the
    /// first step). All four slices have one element per parameter.
    ///
    /// Keras' arithmetic, in its order and in f32:
    /// `alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`,
    /// `m += (g - m) * (1 - beta1)`, `v += (g^2 - v) * (1 - beta2)`,
    /// `w -= m * alpha / (sqrt(v) + epsilon)`.
    pub fn update(
        &self,
        step: u64,
        parameters: &mut [f32],
        gradients: &[f32],
        first: &mut [f32],
        second: &mut [f32],
    ) {
        let t = step.max(1) as f32;
        let alpha =
            self.learning_rate * (1.0 - self.beta2.powf(t)).sqrt() / (1.0 - self.beta1.powf(t));
        let (keep1, keep2) = (1.0 - self.beta1, 1.0 - self.beta2);
        for (((w, &g), m), v) in parameters
            .iter_mut()
            .zip(gradients)
            .zip(first.iter_mut())
            .zip(second.iter_mut())
        {
            *m += (g - *m) * keep1;
            *v += (g * g - *v) * keep2;
            *w -= *m * alpha / (v.sqrt() + self.epsilon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_moves_each_weight_by_about_the_learning_rate_against_its_gradient() {
        let adam = Adam::default();
        let mut parameters = [1.0f32, -2.0, 0.5];
        let gradients = [0.3f32, -1e-3, 0.0];
        let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
        adam.update(1, &mut parameters, &gradients, &mut m, &mut v);
        // m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1, so the step is
        // lr * |g| / (|g| + epsilon / sqrt(0.001)): about lr unless g is tiny.
        assert!((parameters[0] - (1.0 - 1e-3)).abs() < 1e-6);
        let tiny_step = 1e-3 * 1e-3 / (1e-3 + 1e-7 / 0.001f64.sqrt());
        assert!((parameters[1] as f64 - (-2.0 + tiny_step)).abs() < 1e-6);
        assert_eq!(parameters[2], 0.5, "a zero gradient does not move a weight");
    }

    #[test]
    fn matches_the_textbook_form_over_several_steps() {
        let adam = Adam {
            learning_rate: 0.01,
            ..Adam::default()
        };
        let mut w = [0.7f32];
        let (mut m, mut v) = ([0.0f32], [0.0f32]);
        let (mut w64, mut m64, mut v64) = (0.7f64, 0.0f64, 0.0f64);
        for step in 1..=5u64 {
            let g = (step as f32 * 0.37).sin();
            adam.update(step, &mut w, &[g], &mut m, &mut v);
            let g = g as f64;
            m64 = 0.9 * m64 + 0.1 * g;
            v64 = 0.999 * v64 + 0.001 * g * g;
            let alpha =
                0.01 * (1.0 - 0.999f64.powi(step as i32)).sqrt() / (1.0 - 0.9f64.powi(step as i32));
            w64 -= alpha * m64 / (v64.sqrt() + 1e-7);
            assert!(
                (w[0] as f64 - w64).abs() < 1e-6,
                "step {step}: {} vs {w64}",
                w[0]
            );
        }
    }
}
