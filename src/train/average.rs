//! Stochastic weight averaging (Izmailov et al., 2018, "Averaging Weights
//! Leads to Wider Optima and Better Generalization"): the mean of the
//! weights at the end of several epochs, trained at a constant learning
//! rate, generalises better than any one of them. The mean was never
//! trained as such, so its batch-norm statistics are measured afresh with a
//! forward pass over the training faces.

use super::augment::plain_into;
use super::data::Faces;
use super::{TrainError, Trainer};
use crate::runtime::train::{TrainableModel, zeroed_batch};
use crate::runtime::{AllocError, flat, flat_mut, try_zeroed_box};

/// The running mean of a run's weights, and the moving statistics measured
/// for it.
pub struct WeightAverage<M: TrainableModel> {
    /// The mean of the weights added so far.
    pub parameters: Box<M::Parameters>,
    /// The batch-norm statistics of `parameters` on the training faces
    /// (after [`WeightAverage::measure_statistics`]).
    pub statistics: Box<M::Statistics>,
    /// How many weights the mean is of.
    pub count: usize,
}

impl<M: TrainableModel> WeightAverage<M> {
    /// An average of nothing yet.
    pub fn new() -> Result<Self, AllocError> {
        Ok(Self {
            parameters: try_zeroed_box()?,
            statistics: try_zeroed_box()?,
            count: 0,
        })
    }

    /// Forgets what was added: the next weights added are the mean exactly.
    /// (Recalibration uses an average of one, restarted every epoch.)
    pub fn restart(&mut self) {
        self.count = 0;
    }

    /// Adds `parameters` to the mean: the first one added is copied (after
    /// a restart, `mean + (parameters - mean)` would round), every later one
    /// `mean += (parameters - mean) / count`.
    pub fn add(&mut self, parameters: &M::Parameters) {
        self.count += 1;
        if self.count == 1 {
            flat_mut(&mut *self.parameters).copy_from_slice(flat(parameters));
            return;
        }
        let share = 1.0 / self.count as f32;
        for (mean, &value) in flat_mut(&mut *self.parameters)
            .iter_mut()
            .zip(flat(parameters))
        {
            *mean += (value - *mean) * share;
        }
    }

    /// Measures the average's batch-norm statistics: the mean over batches
    /// of the trainer's size of each batch's own statistics, on the
    /// training faces in their order, unaugmented (as the model will see
    /// faces), leaving out the last incomplete batch. Runs on the trainer's
    /// threads with the average swapped into it; the trainer is as it was
    /// afterwards.
    pub fn measure_statistics(
        &mut self,
        trainer: &mut Trainer<M>,
        faces: &Faces,
    ) -> Result<(), TrainError> {
        let batch = trainer.options().batch;
        let mut inputs = zeroed_batch::<M::Input>(batch);
        self.swap_into(trainer);
        let mut result = Ok(());
        for k in 0..faces.len() / batch {
            for (i, input) in inputs.iter_mut().enumerate() {
                plain_into(faces.face(k * batch + i), flat_mut(input));
            }
            // The k-th batch's share is 1 / (k + 1): a running mean.
            let momentum = k as f32 / (k + 1) as f32;
            if let Err(error) = trainer.update_statistics(&inputs, momentum) {
                result = Err(error);
                break;
            }
        }
        self.swap_into(trainer);
        result
    }

    /// Exchanges the average with the trainer's weights and statistics:
    /// called twice, it restores both.
    pub fn swap_into(&mut self, trainer: &mut Trainer<M>) {
        let (parameters, statistics) = trainer.state_mut();
        std::mem::swap(parameters, &mut *self.parameters);
        std::mem::swap(statistics, &mut *self.statistics);
    }
}
