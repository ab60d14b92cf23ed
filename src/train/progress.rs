//! How a training run reports as it goes: to a progress bar, pictures, a
//! log, or nothing. The library prints nothing itself.

use super::checkpoint::EpochRecord;

/// The figures of an epoch so far, after one of its steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepProgress {
    /// The steps done in this epoch, from 1.
    pub step: usize,
    /// The steps of the epoch.
    pub steps: usize,
    /// The mean training loss of the epoch's steps so far.
    pub mean_loss: f64,
    /// The fraction of the epoch's training images so far classified right.
    pub accuracy: f64,
    /// Training images a second, over the epoch so far.
    pub images_per_second: f64,
}

/// Hears of a run's steps and epochs. Every method but [`epoch_done`](Progress::epoch_done)
/// does nothing unless implemented. `()` hears nothing; [`on_epoch`] makes
/// one of a closure that hears of every epoch.
pub trait Progress {
    /// Epoch `epoch` (from 1) of `epochs` begins, with `steps` steps.
    fn epoch_started(&mut self, epoch: usize, epochs: usize, steps: usize) {
        let _ = (epoch, epochs, steps);
    }

    /// A step has ended.
    fn step_done(&mut self, step: &StepProgress) {
        let _ = step;
    }

    /// An epoch has ended and its checkpoint and history are written.
    /// `history` holds every epoch so far, this one last; `best_confusion`
    /// is the confusion matrix on the validation faces (rows: true class,
    /// columns: predicted) when this epoch's weights are the new best, the
    /// ones in `best.safetensors`. An error stops the run.
    fn epoch_done(
        &mut self,
        history: &[EpochRecord],
        best_confusion: Option<&[Vec<usize>]>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A run that reports nothing.
impl Progress for () {
    fn epoch_done(
        &mut self,
        _history: &[EpochRecord],
        _best_confusion: Option<&[Vec<usize>]>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// The [`Progress`] of [`on_epoch`].
pub struct OnEpoch<F>(F);

/// A [`Progress`] that calls `hear` with every epoch's record as it ends.
pub fn on_epoch<F: FnMut(&EpochRecord)>(hear: F) -> OnEpoch<F> {
    OnEpoch(hear)
}

impl<F: FnMut(&EpochRecord)> Progress for OnEpoch<F> {
    fn epoch_done(
        &mut self,
        history: &[EpochRecord],
        _best_confusion: Option<&[Vec<usize>]>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(record) = history.last() {
            (self.0)(record);
        }
        Ok(())
    }
}
