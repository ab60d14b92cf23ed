//! Batch-norm recalibration of a trained run (`mini-xception recalibrate`).
//! The moving statistics a run keeps follow its augmented batches (rotated,
//! shifted, zoomed), while the model is used on faces as they are; so the
//! statistics are measured afresh on the unaugmented training faces, with
//! the weights as they are. No weight changes and no test face is used; the
//! validation split is only evaluated, before and after. `train
//! --recalibrate-bn` does the same at the end of every epoch.

use super::Trainer;
use super::average::WeightAverage;
use super::checkpoint::{self, CheckpointError};
use super::data::{Faces, load_split};
use super::run::{Evaluation, RunError, check_face_sizes, evaluate, save_folded};
use super::settings::TrainSettings;
use crate::runtime::train::TrainableModel;
use crate::runtime::{Isa, try_zeroed_box};
use std::path::Path;

/// A checkpoint's weights on the validation split, with the statistics the
/// run kept and with the ones measured afresh.
#[derive(Clone, Debug)]
pub struct Recalibration {
    /// With the run's moving statistics.
    pub before: Evaluation,
    /// With the statistics measured on the unaugmented training faces:
    /// the weights written out.
    pub after: Evaluation,
}

/// Recalibrates the trained weights of the checkpoint at `checkpoint` (a
/// run of model `M`) on the `Training` faces of the FER2013 CSV `data`,
/// writes them, batch norms folded, as a native safetensors file at `out`,
/// and evaluates them on `PublicTest` before and after.
pub fn recalibrate<M: TrainableModel>(
    checkpoint: &Path,
    data: &Path,
    out: &Path,
    threads: usize,
    isa: Isa,
) -> Result<Recalibration, RunError> {
    // Read before the data, so that a bad checkpoint fails at once.
    let run = Run::<M>::load(checkpoint)?;
    let [height, width, _] = M::INPUT_SHAPE;
    let training = load_split(data, "Training", M::CLASSES, [height, width])?;
    let validation = load_split(data, "PublicTest", M::CLASSES, [height, width])?;
    run.recalibrate(&training, &validation, out, threads, isa)
}

/// [`recalibrate`] on faces already loaded at the model's input size. The
/// statistics are measured as the run would have measured them: on its
/// training faces (the first `limit` if it had a limit), in batches of its
/// size, and the loss has its L2 factors.
pub fn recalibrate_faces<M: TrainableModel>(
    checkpoint: &Path,
    training: &Faces,
    validation: &Faces,
    out: &Path,
    threads: usize,
    isa: Isa,
) -> Result<Recalibration, RunError> {
    Run::<M>::load(checkpoint)?.recalibrate(training, validation, out, threads, isa)
}

/// A checkpoint's settings and trained weights.
struct Run<M: TrainableModel> {
    settings: TrainSettings,
    parameters: Box<M::Parameters>,
    statistics: Box<M::Statistics>,
}

impl<M: TrainableModel> Run<M> {
    fn load(checkpoint: &Path) -> Result<Self, RunError> {
        let mut parameters = try_zeroed_box::<M::Parameters>()?;
        let mut statistics = try_zeroed_box::<M::Statistics>()?;
        let header = checkpoint::load_weights::<M>(checkpoint, &mut parameters, &mut statistics)?;
        let settings =
            serde_json::from_value(header.settings).map_err(|e| CheckpointError::Damaged {
                file: checkpoint.display().to_string(),
                reason: format!("its run's settings are not valid: {e}"),
            })?;
        Ok(Self {
            settings,
            parameters,
            statistics,
        })
    }

    fn recalibrate(
        self,
        training: &Faces,
        validation: &Faces,
        out: &Path,
        threads: usize,
        isa: Isa,
    ) -> Result<Recalibration, RunError> {
        check_face_sizes::<M>(training, validation, out)?;
        let options = self.settings.trainer_options(threads, isa);
        let mut trainer = Trainer::<M>::new(self.parameters, self.statistics, options)?;
        let trained_on = match self.settings.limit {
            Some(limit) if limit < training.len() => &training.first(limit),
            _ => training,
        };
        let before = evaluate(&trainer, validation, isa)?;
        let mut measured = WeightAverage::<M>::new()?;
        measured.add(trainer.parameters());
        measured.measure_statistics(&mut trainer, trained_on)?;
        measured.swap_into(&mut trainer);
        let after = evaluate(&trainer, validation, isa)?;
        save_folded(&trainer, out, isa)?;
        Ok(Recalibration { before, after })
    }
}
