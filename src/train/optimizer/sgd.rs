//! Stochastic gradient descent with momentum, optionally Nesterov's, exactly
//! as Keras 2.15 (`tf.keras.optimizers.SGD`) updates a variable.

/// SGD's settings; [`Sgd::default`] is momentum 0.9 with Nesterov's
/// look-ahead at learning rate 0.01, the optimizer of the strongest reported
/// FER2013 recipes (Khaireddin and Chen, 2021, "Facial Emotion Recognition:
/// State of the Art Performance on FER2013").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// The step size.
    pub learning_rate: f32,
    /// How much of the velocity each step keeps (0: plain gradient descent).
    pub momentum: f32,
    /// Step along the velocity as it will be after this step (Nesterov's
    /// accelerated gradient) instead of as it is.
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            momentum: 0.9,
            nesterov: true,
        }
    }
}

impl Sgd {
    /// Updates `parameters` with `gradients`, moving `velocity` (zero before
    /// the first step). All three slices have one element per parameter.
    ///
    /// Keras' arithmetic, in its order and in f32:
    /// `v = v * momentum - g * lr`, then `w += v * momentum - g * lr` with
    /// Nesterov's look-ahead, else `w += v`.
    pub fn update(&self, parameters: &mut [f32], gradients: &[f32], velocity: &mut [f32]) {
        let (rate, momentum) = (self.learning_rate, self.momentum);
        for ((w, &g), v) in parameters.iter_mut().zip(gradients).zip(velocity) {
            *v = *v * momentum - g * rate;
            *w += if self.nesterov {
                *v * momentum - g * rate
            } else {
                *v
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sutskever et al.'s form of Nesterov's method, in f64: the gradient
    /// taken at the look-ahead point `w + momentum v`. Keras' update is the
    /// same sequence written in the look-ahead variable, so the weights
    /// Keras keeps are this form's look-ahead points.
    #[test]
    fn nesterov_matches_the_look_ahead_form_over_several_steps() {
        let sgd = Sgd {
            learning_rate: 0.1,
            momentum: 0.9,
            nesterov: true,
        };
        // The loss (w - 3)^2 / 2, whose gradient is w - 3.
        let gradient = |w: f64| w - 3.0;
        let mut w = [0.5f32];
        let mut v = [0.0f32];
        let (mut theta, mut v64) = (0.5f64, 0.0f64);
        for step in 1..=6 {
            let g = gradient(w[0] as f64) as f32;
            sgd.update(&mut w, &[g], &mut v);
            let look_ahead = theta + 0.9 * v64;
            v64 = 0.9 * v64 - 0.1 * gradient(look_ahead);
            theta += v64;
            let kept = theta + 0.9 * v64;
            assert!(
                (w[0] as f64 - kept).abs() < 1e-5,
                "step {step}: {} vs {kept}",
                w[0]
            );
        }
        assert!((w[0] - 3.0).abs() < 1.0, "it moves toward the minimum");
    }

    #[test]
    fn classical_momentum_steps_by_the_velocity() {
        let sgd = Sgd {
            learning_rate: 0.5,
            momentum: 0.5,
            nesterov: false,
        };
        let mut w = [1.0f32, -1.0];
        let mut v = [0.0f32; 2];
        sgd.update(&mut w, &[2.0, 0.0], &mut v);
        assert_eq!((w, v), ([0.0, -1.0], [-1.0, 0.0]));
        // v = 0.5 (-1) - 0.5 (2) = -1.5; w = 0 - 1.5.
        sgd.update(&mut w, &[2.0, 0.0], &mut v);
        assert_eq!((w, v), ([-1.5, -1.0], [-1.5, 0.0]));
    }

    #[test]
    fn without_momentum_it_is_plain_gradient_descent() {
        for nesterov in [false, true] {
            let sgd = Sgd {
                learning_rate: 0.25,
                momentum: 0.0,
                nesterov,
            };
            let mut w = [1.0f32];
            let mut v = [0.0f32];
            sgd.update(&mut w, &[2.0], &mut v);
            sgd.update(&mut w, &[2.0], &mut v);
            assert_eq!(w, [0.0], "nesterov {nesterov}");
        }
    }
}
