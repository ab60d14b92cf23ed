//! The optimizers a trainer can step with, behind one type: each keeps its
//! state in the same two arrays of one value per parameter, so that a
//! trainer and its checkpoints hold the same buffers whichever it uses.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

/// An optimizer and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Adam: the first array holds the first moments, the second the second.
    Adam(Adam),
    /// SGD with momentum: the first array holds the velocities; the second
    /// stays zero.
    Sgd(Sgd),
}

impl Default for Optimizer {
    /// Keras' Adam, the paper's optimizer.
    fn default() -> Self {
        Self::Adam(Adam::default())
    }
}

impl Optimizer {
    /// Sets the step size of the coming updates (for schedules).
    pub fn set_learning_rate(&mut self, learning_rate: f32) {
        match self {
            Self::Adam(adam) => adam.learning_rate = learning_rate,
            Self::Sgd(sgd) => sgd.learning_rate = learning_rate,
        }
    }

    /// Update number `step` (1 for the first) of `parameters` with
    /// `gradients`, moving the optimizer's state `first` and `second` (zero
    /// before the first step). All four slices have one element per parameter.
    pub fn update(
        &self,
        step: u64,
        parameters: &mut [f32],
        gradients: &[f32],
        first: &mut [f32],
        second: &mut [f32],
    ) {
        match self {
            Self::Adam(adam) => adam.update(step, parameters, gradients, first, second),
            Self::Sgd(sgd) => sgd.update(parameters, gradients, first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_steps_as_its_optimizer_and_takes_a_new_rate() {
        let gradients = [0.5f32, -2.0];
        for mut optimizer in [Optimizer::default(), Optimizer::Sgd(Sgd::default())] {
            optimizer.set_learning_rate(0.05);
            let mut parameters = [1.0f32, 1.0];
            let (mut first, mut second) = ([0.0f32; 2], [0.0f32; 2]);
            optimizer.update(1, &mut parameters, &gradients, &mut first, &mut second);
            let mut expected = [1.0f32, 1.0];
            let (mut m, mut v) = ([0.0f32; 2], [0.0f32; 2]);
            match optimizer {
                Optimizer::Adam(adam) => {
                    assert_eq!(adam.learning_rate, 0.05);
                    adam.update(1, &mut expected, &gradients, &mut m, &mut v);
                    assert!(
                        second.iter().all(|&s| s > 0.0),
                        "Adam's second moments move"
                    );
                }
                Optimizer::Sgd(sgd) => {
                    assert_eq!(sgd.learning_rate, 0.05);
                    sgd.update(&mut expected, &gradients, &mut m);
                    assert_eq!(second, [0.0; 2], "SGD leaves the second array alone");
                }
            }
            assert_eq!((parameters, first), (expected, m));
        }
    }
}
