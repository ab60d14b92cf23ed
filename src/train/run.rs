//! A training run: epochs over FER2013 `Training` with augmentation
//! prepared on a thread of its own, evaluation on `PublicTest` after each
//! epoch, the paper's plateau schedule (or cosine decay), the best weights
//! by validation loss, and a checkpoint after every epoch to resume from.
//! After each epoch `history.csv` is rewritten, and a [`Progress`] hears of
//! the epoch (the command-line tool draws its pictures from it). A run may also average
//! its weights over its last epochs ([`super::average`]); from the first
//! epoch averaged on, the average is what is evaluated and kept.

use super::augment::{augment_into, plain_into};
use super::average::WeightAverage;
use super::checkpoint::{self, CheckpointError, CheckpointHeader, EpochRecord, ScheduleState};
use super::data::{DataError, Faces, load_split};
use super::distill::{TeacherError, view_probabilities};
use super::init::keras_initial;
use super::progress::{Progress, StepProgress};
use super::settings::{Schedule, SettingsError, TrainSettings};
use super::{TrainError, Trainer};
use crate::keras::{self, WeightsError};
use crate::native::{self, NativeError};
use crate::runtime::train::{TrainableModel, fold, read_training_state};
use crate::runtime::{
    AllocError, Isa, argmax, flat, flat_mut, l2_penalty, loss::Distillation,
    softmax_cross_entropy_into, try_zeroed_box,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// How a run executes, which does not change its result.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Training threads.
    pub threads: usize,
    /// The kernels' instruction set.
    pub isa: Isa,
    /// Continue from `last.checkpoint` in the output directory.
    pub resume: bool,
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Keras(#[from] WeightsError),
    #[error(transparent)]
    Native(#[from] NativeError),
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file}: the checkpoint is of a run with other settings ({found}); resume with the same options, or start afresh in another directory"
    )]
    OtherRun { file: String, found: String },
    #[error("{file}: {reason}")]
    Output { file: String, reason: String },
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The run's [`Progress`] failed (to draw its pictures, say).
    #[error("{0}")]
    Progress(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    /// The memory ran out for a scratch space.
    #[error(transparent)]
    OutOfMemory(#[from] AllocError),
}

/// What a finished run gives.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Every epoch.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights are in `best.safetensors` (1-based), if any.
    pub best_epoch: Option<usize>,
    /// The confusion matrix of those weights on the validation split
    /// (rows: true class, columns: predicted).
    pub best_confusion: Vec<Vec<usize>>,
}

/// A batch being prepared or trained on; the pipeline passes a fixed set of
/// them back and forth, so that no step allocates.
struct Batch<I> {
    inputs: Box<[I]>,
    labels: Vec<usize>,
    /// The teachers' probabilities, classes per image, when distilling.
    teacher: Vec<f32>,
}

impl<I: crate::runtime::bytemuck::Zeroable> Batch<I> {
    /// A batch of `settings.batch` images of model `M`, with room for the
    /// teachers' probabilities when the run distils.
    fn new<M: TrainableModel<Input = I>>(settings: &TrainSettings) -> Self {
        let teacher = match settings.teachers {
            Some(_) => settings.batch * M::CLASSES,
            None => 0,
        };
        Self {
            inputs: crate::runtime::train::zeroed_batch(settings.batch),
            labels: vec![0; settings.batch],
            teacher: vec![0.0; teacher],
        }
    }
}

/// The seed of one image's augmentation: a function of the run's seed, the
/// epoch and the image's place in it, so that any epoch can be redone alone.
fn image_seed(seed: u64, epoch: usize, position: usize) -> u64 {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [epoch as u64, position as u64] {
        x = (x ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
    }
    x
}

/// The order of the training faces in `epoch`.
fn epoch_order(seed: u64, epoch: usize, faces: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..faces).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(image_seed(
        seed,
        epoch,
        usize::MAX,
    )));
    order
}

/// Trains model `M` on the FER2013 CSV `data`, writing `best.safetensors`,
/// `last.checkpoint` and `history.csv` to `out`; `progress` hears of every
/// step and epoch (a closure `|record: &EpochRecord| ...` of every epoch).
pub fn train<M: TrainableModel>(
    data: &Path,
    out: &Path,
    settings: &TrainSettings,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<RunSummary, RunError> {
    // Checked before the data is read; `train_faces` checks again for its
    // own callers.
    settings.validate()?;
    let [height, width, _] = M::INPUT_SHAPE;
    let training = load_split(data, "Training", M::CLASSES, [height, width])?;
    let validation = load_split(data, "PublicTest", M::CLASSES, [height, width])?;
    train_faces::<M>(&training, &validation, out, settings, options, progress)
}

/// [`train`] on faces already loaded (at the model's input size): for other
/// data than FER2013's CSV, or to load it once for several runs.
pub fn train_faces<M: TrainableModel>(
    training: &Faces,
    validation: &Faces,
    out: &Path,
    settings: &TrainSettings,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<RunSummary, RunError> {
    settings.validate()?;
    std::fs::create_dir_all(out).map_err(|source| RunError::Io {
        file: out.display().to_string(),
        source,
    })?;
    check_face_sizes::<M>(training, validation, out)?;
    let training = match settings.limit {
        Some(limit) if limit < training.len() => &training.first(limit),
        _ => training,
    };

    let mut trainer = initial_trainer::<M>(settings, options)?;
    let teacher_probabilities = match &settings.teachers {
        Some(teachers) if !teachers.consistent => {
            Some(trainer.install(|| teachers.probabilities_for::<M>(training, options.isa))?)
        }
        _ => None,
    };
    let teacher_models = consistent_teachers::<M>(settings, options.isa)?;
    let mut teacher_view = match teacher_models.as_deref().zip(settings.teachers.as_ref()) {
        Some((models, teachers)) => Some(TeacherView::<M> {
            models,
            temperature: teachers.temperature,
            scratch: M::try_new_scratch()?,
            logits: vec![0.0; M::CLASSES],
        }),
        None => None,
    };
    let checkpoint_path = out.join("last.checkpoint");
    let (mut header, mut average) =
        start_or_resume(settings, options, &checkpoint_path, &mut trainer)?;
    // The epoch's weights with recalibrated statistics, when asked for.
    let mut recalibrated = None;

    let steps_per_epoch = training.len() / settings.batch.max(1);
    let schedule = StepSchedule {
        settings,
        steps_per_epoch,
        total_steps: (steps_per_epoch * settings.epochs).max(1),
    };
    let mut best_confusion = Vec::new();
    let mut best_epoch = header
        .history
        .iter()
        .min_by(|a, b| a.validation_loss.total_cmp(&b.validation_loss))
        .map(|r| r.epoch);
    let mut buffers: Vec<Batch<M::Input>> = (0..3).map(|_| Batch::new::<M>(settings)).collect();

    for epoch in header.epochs_done..settings.epochs {
        if header.schedule.epochs_since_best >= settings.early_stop && epoch > 0 {
            break;
        }
        let epoch_learning_rate = header.schedule.learning_rate;
        progress.epoch_started(epoch + 1, settings.epochs, steps_per_epoch);
        let started = Instant::now();
        let teachers = EpochTeachers {
            probabilities: teacher_probabilities.as_deref(),
            view: teacher_view.as_mut(),
        };
        let (loss_sum, correct) = train_epoch(
            &mut trainer,
            &mut buffers,
            training,
            teachers,
            &schedule,
            epoch,
            epoch_learning_rate,
            started,
            progress,
        )?;
        let seconds = started.elapsed().as_secs_f64();

        // The weights evaluated and kept: the average, or the epoch's with
        // recalibrated statistics, in the trainer's place until swapped back.
        let averaging = settings.average_from.is_some_and(|from| epoch + 1 >= from);
        let recalibrating = settings.recalibrate && !averaging;
        let evaluated = match (averaging, recalibrating) {
            (true, _) => Some(made_once(&mut average)?),
            (false, true) => {
                let weights = made_once(&mut recalibrated)?;
                weights.restart();
                Some(weights)
            }
            (false, false) => None,
        };
        if let Some(weights) = evaluated {
            weights.add(trainer.parameters());
            weights.measure_statistics(&mut trainer, training)?;
            weights.swap_into(&mut trainer);
        }
        let evaluation = evaluate::<M>(&trainer, validation, options.isa)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            learning_rate: schedule.rate(epoch_learning_rate, epoch * steps_per_epoch),
            train_loss: loss_sum / steps_per_epoch.max(1) as f64,
            train_accuracy: correct as f64 / (steps_per_epoch * settings.batch).max(1) as f64,
            validation_loss: evaluation.loss,
            validation_accuracy: evaluation.accuracy,
            seconds,
        };
        let improved = header
            .schedule
            .best_validation_loss
            .is_none_or(|best| record.validation_loss < best);
        update_schedule(&mut header.schedule, settings, record.validation_loss);
        let kept = if improved {
            save_folded(&trainer, &out.join("best.safetensors"), options.isa)
        } else {
            Ok(())
        };
        if let Some(average) = average.as_mut().filter(|_| averaging) {
            average.swap_into(&mut trainer);
        }
        if let Some(weights) = recalibrated.as_mut().filter(|_| recalibrating) {
            weights.swap_into(&mut trainer);
        }
        kept?;
        if improved {
            best_confusion = evaluation.confusion;
            best_epoch = Some(epoch + 1);
        }
        header.history.push(record);
        header.epochs_done = epoch + 1;
        header.steps = trainer.optimizer_state().steps;
        checkpoint::save_averaged(&checkpoint_path, &header, &trainer, average.as_ref())?;
        write_history(&out.join("history.csv"), &header.history)?;
        progress
            .epoch_done(
                &header.history,
                improved.then_some(best_confusion.as_slice()),
            )
            .map_err(RunError::Progress)?;
    }
    Ok(RunSummary {
        history: header.history,
        best_epoch,
        best_confusion,
    })
}

/// The weights in `slot`, made (which allocates, and can fail) the first
/// time they are needed.
fn made_once<M: TrainableModel>(
    slot: &mut Option<WeightAverage<M>>,
) -> Result<&mut WeightAverage<M>, RunError> {
    match slot {
        Some(weights) => Ok(weights),
        None => Ok(slot.insert(WeightAverage::<M>::new()?)),
    }
}

/// The trainer at the start of a run: Keras' initialisation, or the weights
/// of `settings.init` (a Keras file or another run's checkpoint).
fn initial_trainer<M: TrainableModel>(
    settings: &TrainSettings,
    options: &RunOptions,
) -> Result<Trainer<M>, RunError> {
    let (mut parameters, mut statistics) = keras_initial::<M>(settings.seed);
    match &settings.init {
        Some(init) if checkpoint::is_checkpoint(init) => {
            checkpoint::load_weights::<M>(init, &mut parameters, &mut statistics)?;
        }
        Some(init) => keras::load(init, |file| {
            read_training_state::<M, _>(file, &mut parameters, &mut statistics)
        })?,
        None => {}
    }
    let trainer_options = settings.trainer_options(options.threads, options.isa);
    Ok(Trainer::<M>::new(parameters, statistics, trainer_options)?)
}

/// The teachers of consistent teaching, which run on each augmented image as
/// the batches are prepared: of the student's own model only. `None` without
/// consistent teaching.
fn consistent_teachers<M: TrainableModel>(
    settings: &TrainSettings,
    isa: Isa,
) -> Result<Option<Vec<M>>, RunError> {
    let Some(teachers) = settings.teachers.as_ref().filter(|t| t.consistent) else {
        return Ok(None);
    };
    let models = teachers.file_models(M::NAME)?;
    if let Some(model) = models.into_iter().find(|model| model != M::NAME) {
        return Err(TeacherError::Model {
            teacher: model,
            student: M::NAME,
            reason: "consistent teaching runs teachers of the student's model only",
        }
        .into());
    }
    Ok(Some(teachers.models::<M>(isa)?))
}

/// A fresh run's checkpoint header, or, resuming, the one `checkpoint_path`
/// holds (with its weight average, and the trainer restored from it): only a
/// checkpoint of the same settings resumes.
fn start_or_resume<M: TrainableModel>(
    settings: &TrainSettings,
    options: &RunOptions,
    checkpoint_path: &Path,
    trainer: &mut Trainer<M>,
) -> Result<(CheckpointHeader, Option<WeightAverage<M>>), RunError> {
    let settings_json = serde_json::to_value(settings).map_err(|e| RunError::Output {
        file: checkpoint_path.display().to_string(),
        reason: e.to_string(),
    })?;
    if options.resume && checkpoint_path.exists() {
        let (restored, average) = checkpoint::load_averaged(checkpoint_path, trainer)?;
        if restored.settings != settings_json {
            return Err(RunError::OtherRun {
                file: checkpoint_path.display().to_string(),
                found: restored.settings.to_string(),
            });
        }
        return Ok((restored, average));
    }
    let header = CheckpointHeader {
        model: M::NAME.to_string(),
        sizes: [
            std::mem::size_of::<M::Parameters>() / 4,
            std::mem::size_of::<M::Statistics>() / 4,
        ],
        epochs_done: 0,
        steps: 0,
        schedule: ScheduleState {
            learning_rate: settings.learning_rate,
            best_validation_loss: None,
            plateau_wait: 0,
            epochs_since_best: 0,
        },
        history: Vec::new(),
        settings: settings_json,
        averaged: 0,
    };
    Ok((header, None))
}

/// The learning rate of every step of a run.
struct StepSchedule<'a> {
    settings: &'a TrainSettings,
    steps_per_epoch: usize,
    total_steps: usize,
}

impl StepSchedule<'_> {
    /// The rate at `step` (counted over the run) of an epoch that began at
    /// `epoch_rate`.
    fn rate(&self, epoch_rate: f32, step: usize) -> f32 {
        step_learning_rate(self.settings, epoch_rate, step, self.total_steps)
    }
}

/// What the teachers give an epoch's batches: fixed probabilities per face,
/// or (consistent teaching) their models run on each augmented image.
struct EpochTeachers<'a, 't, M: TrainableModel> {
    probabilities: Option<&'a [f32]>,
    view: Option<&'a mut TeacherView<'t, M>>,
}

/// One epoch's steps: the batches prepared on a thread of their own while
/// the trainer steps on the one before, through the fixed set of `buffers`.
/// Returns the sum of the steps' losses and the images classified right.
#[allow(clippy::too_many_arguments)]
fn train_epoch<M: TrainableModel>(
    trainer: &mut Trainer<M>,
    buffers: &mut Vec<Batch<M::Input>>,
    training: &Faces,
    teachers: EpochTeachers<'_, '_, M>,
    schedule: &StepSchedule<'_>,
    epoch: usize,
    epoch_learning_rate: f32,
    started: Instant,
    progress: &mut dyn Progress,
) -> Result<(f64, usize), RunError> {
    let settings = schedule.settings;
    let steps_per_epoch = schedule.steps_per_epoch;
    let distillation = settings.teachers.as_ref().map(|t| Distillation {
        weight: t.weight,
        temperature: t.temperature,
    });
    let order = epoch_order(settings.seed, epoch, training.len());
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let mut step_error = None;
    std::thread::scope(|scope| {
        let (full_sender, full_receiver) = mpsc::sync_channel::<Batch<M::Input>>(buffers.len());
        let (empty_sender, empty_receiver) = mpsc::sync_channel::<Batch<M::Input>>(buffers.len());
        for batch in buffers.drain(..) {
            let _ = empty_sender.send(batch);
        }
        let order = &order;
        let EpochTeachers {
            probabilities: teacher_probabilities,
            view: mut teacher_view,
        } = teachers;
        // Prepares the coming batches while the trainer runs this one,
        // and hands back its channel, with the batches still in it.
        let producer = scope.spawn(move || {
            for step in 0..steps_per_epoch {
                let Ok(mut batch) = empty_receiver.recv() else {
                    break;
                };
                fill_batch::<M>(
                    training,
                    teacher_probabilities,
                    teacher_view.as_deref_mut(),
                    order,
                    settings,
                    epoch,
                    step,
                    &mut batch,
                );
                if full_sender.send(batch).is_err() {
                    break;
                }
            }
            empty_receiver
        });
        for step in 0..steps_per_epoch {
            let Ok(batch) = full_receiver.recv() else {
                break;
            };
            trainer.set_learning_rate(
                schedule.rate(epoch_learning_rate, epoch * steps_per_epoch + step),
            );
            let report = match distillation {
                Some(distillation) => trainer.step_distilled(
                    &batch.inputs,
                    &batch.labels,
                    &batch.teacher,
                    distillation,
                ),
                None => trainer.step(&batch.inputs, &batch.labels),
            };
            match report {
                Ok(report) => {
                    loss_sum += report.loss;
                    correct += report.correct;
                }
                Err(error) => step_error = Some(error),
            }
            let done = step + 1;
            let seen = done * settings.batch;
            progress.step_done(&StepProgress {
                step: done,
                steps: steps_per_epoch,
                mean_loss: loss_sum / done as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_second: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
            // Back to the preparing thread, unless it is done.
            let _ = empty_sender.send(batch);
            if step_error.is_some() {
                break;
            }
        }
        // Without a sender the preparing thread stops waiting, if it was.
        drop(empty_sender);
        if let Ok(empty_receiver) = producer.join() {
            buffers.extend(empty_receiver.try_iter());
        }
        buffers.extend(full_receiver.try_iter());
    });
    match step_error {
        Some(error) => Err(error.into()),
        None => Ok((loss_sum, correct)),
    }
}

/// Refuses faces of another size than model `M` takes; `out` names the run.
pub(super) fn check_face_sizes<M: TrainableModel>(
    training: &Faces,
    validation: &Faces,
    out: &Path,
) -> Result<(), RunError> {
    let [height, width, _] = M::INPUT_SHAPE;
    if training.size != [height, width] || validation.size != [height, width] {
        return Err(RunError::Output {
            file: out.display().to_string(),
            reason: format!(
                "the faces are {:?} and {:?}, the model takes {height}x{width}",
                training.size, validation.size
            ),
        });
    }
    Ok(())
}

/// Writes the trainer's weights, batch norms folded, as a native
/// safetensors file at `path`.
pub(super) fn save_folded<M: TrainableModel>(
    trainer: &Trainer<M>,
    path: &Path,
    isa: Isa,
) -> Result<(), RunError> {
    let model = fold::<M>(trainer.parameters(), trainer.statistics(), isa).map_err(|e| {
        RunError::Output {
            file: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    native::save(model.model_weights(), M::NAME, path)?;
    Ok(())
}

/// The teachers of consistent teaching, with what their forward passes need.
struct TeacherView<'m, M: TrainableModel> {
    models: &'m [M],
    temperature: f32,
    scratch: M::Scratch,
    logits: Vec<f32>,
}

/// Fills `batch` with step `step` of `epoch`: the faces in the epoch's
/// order, each augmented with its own seed, and when distilling their
/// teachers' probabilities, fixed per face or, with `teacher_view`, of the
/// augmented image itself.
#[allow(clippy::too_many_arguments)]
fn fill_batch<M: TrainableModel>(
    training: &Faces,
    teacher_probabilities: Option<&[f32]>,
    mut teacher_view: Option<&mut TeacherView<'_, M>>,
    order: &[usize],
    settings: &TrainSettings,
    epoch: usize,
    step: usize,
    batch: &mut Batch<M::Input>,
) {
    let size = training.size;
    for (i, (input, label)) in batch
        .inputs
        .iter_mut()
        .zip(batch.labels.iter_mut())
        .enumerate()
    {
        let position = step * settings.batch + i;
        let Some(&index) = order.get(position) else {
            continue;
        };
        let face = training.face(index);
        let values = flat_mut(input);
        match &settings.augmentation {
            Some(augmentation) => {
                let mut rng = ChaCha8Rng::seed_from_u64(image_seed(settings.seed, epoch, position));
                augment_into(face, size, augmentation, &mut rng, values);
            }
            None => plain_into(face, values),
        }
        *label = training.labels[index];
        let classes = M::CLASSES;
        if let Some(view) = teacher_view.as_deref_mut()
            && let Some(slot) = batch.teacher.get_mut(i * classes..(i + 1) * classes)
        {
            view_probabilities(
                view.models,
                view.temperature,
                &*input,
                &mut view.scratch,
                &mut view.logits,
                slot,
            );
        }
        if let Some(probabilities) =
            teacher_probabilities.and_then(|p| p.get(index * classes..(index + 1) * classes))
            && let Some(slot) = batch.teacher.get_mut(i * classes..(i + 1) * classes)
        {
            slot.copy_from_slice(probabilities);
        }
    }
}

/// The learning rate of step `step` of the run (counted from the run's
/// first step, of `total_steps`): the schedule's rate of the epoch for the
/// plateau schedule; for cosine decay, the initial rate times
/// `(1 + cos(pi * step / total_steps)) / 2`.
fn step_learning_rate(
    settings: &TrainSettings,
    epoch_learning_rate: f32,
    step: usize,
    total_steps: usize,
) -> f32 {
    match settings.schedule {
        Schedule::Cosine => {
            let done = step as f64 / total_steps.max(1) as f64;
            let rate =
                settings.learning_rate as f64 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
            rate as f32
        }
        Schedule::Plateau { .. } => epoch_learning_rate,
        Schedule::Constant => settings.learning_rate,
    }
}

/// The plateau schedule and the early stop's count, after an epoch whose
/// validation loss was `loss`.
fn update_schedule(schedule: &mut ScheduleState, settings: &TrainSettings, loss: f64) {
    let best = schedule.best_validation_loss;
    // Keras' ReduceLROnPlateau counts an improvement of at least 1e-4;
    // EarlyStopping any improvement.
    if best.is_none_or(|best| loss < best - 1e-4) {
        schedule.plateau_wait = 0;
    } else {
        schedule.plateau_wait += 1;
    }
    if best.is_none_or(|best| loss < best) {
        schedule.best_validation_loss = Some(loss);
        schedule.epochs_since_best = 0;
    } else {
        schedule.epochs_since_best += 1;
    }
    if let Schedule::Plateau { patience, factor } = settings.schedule
        && schedule.plateau_wait >= patience
    {
        schedule.learning_rate *= factor;
        schedule.plateau_wait = 0;
    }
}

/// Loss, accuracy and confusion of a model on a split.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy plus the L2 penalties, as Keras' `val_loss`.
    pub loss: f64,
    /// Fraction classified right.
    pub accuracy: f64,
    /// Rows: true class; columns: predicted.
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates the trainer's current state, folded for inference, on `faces`,
/// on the trainer's threads.
pub fn evaluate<M: TrainableModel>(
    trainer: &Trainer<M>,
    faces: &Faces,
    isa: Isa,
) -> Result<Evaluation, RunError> {
    let model = fold::<M>(trainer.parameters(), trainer.statistics(), isa).map_err(|e| {
        RunError::Output {
            file: M::NAME.to_string(),
            reason: e.to_string(),
        }
    })?;
    let classes = M::CLASSES;
    let threads = trainer.options().threads.max(1);
    let per_thread = faces.len().div_ceil(threads).max(1);
    let parts: Vec<(f64, Vec<usize>)> = trainer.install(|| {
        (0..faces.len())
            .collect::<Vec<_>>()
            .par_chunks(per_thread)
            .map(|indices| {
                let mut scratch = M::try_new_scratch()?;
                let mut input: Box<M::Input> = try_zeroed_box()?;
                let mut logits = vec![0.0f32; classes];
                let mut gradient = vec![0.0f32; classes];
                let mut loss = 0.0;
                let mut predictions = Vec::with_capacity(indices.len());
                for &index in indices {
                    plain_into(faces.face(index), flat_mut(&mut *input));
                    model.logits_into(&input, &mut scratch, &mut logits);
                    let label = faces.labels[index];
                    loss += softmax_cross_entropy_into(&logits, label, 0.0, 1.0, &mut gradient)
                        .unwrap_or(0.0);
                    predictions.push(argmax(&logits));
                }
                Ok::<_, AllocError>((loss, predictions))
            })
            .collect::<Result<_, _>>()
    })?;
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss = 0.0;
    let mut predictions = parts.iter().flat_map(|(_, p)| p.iter());
    for (part_loss, _) in &parts {
        loss += part_loss;
    }
    for &label in &faces.labels {
        if let Some(&predicted) = predictions.next()
            && let Some(cell) = confusion
                .get_mut(label)
                .and_then(|row| row.get_mut(predicted))
        {
            *cell += 1;
        }
    }
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let parameters = flat(trainer.parameters());
    let penalty: f64 = M::TENSORS
        .iter()
        .filter(|t| t.is_trainable() && t.l2 != 0.0)
        .filter_map(|t| {
            t.values(parameters)
                .map(|v| l2_penalty(v, t.l2 * trainer.options().l2_scale))
        })
        .sum();
    Ok(Evaluation {
        loss: loss / faces.len().max(1) as f64 + penalty,
        accuracy: correct as f64 / faces.len().max(1) as f64,
        confusion,
    })
}

/// Writes every epoch so far as CSV.
fn write_history(path: &Path, history: &[EpochRecord]) -> Result<(), RunError> {
    let file = path.display().to_string();
    let mut text = String::from(
        "epoch,learning_rate,train_loss,train_accuracy,validation_loss,validation_accuracy,seconds\n",
    );
    for r in history {
        text.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3}\n",
            r.epoch,
            r.learning_rate,
            r.train_loss,
            r.train_accuracy,
            r.validation_loss,
            r.validation_accuracy,
            r.seconds
        ));
    }
    let temporary = path.with_extension("csv.tmp");
    std::fs::write(&temporary, text)
        .and_then(|_| std::fs::rename(&temporary, path))
        .map_err(|source| RunError::Io { file, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_decays_from_the_initial_rate_to_zero_and_plateau_keeps_the_epochs_rate() {
        let cosine = TrainSettings {
            schedule: Schedule::Cosine,
            learning_rate: 1e-3,
            ..TrainSettings::default()
        };
        // The epoch's rate is what the plateau schedule left; cosine ignores it.
        assert_eq!(step_learning_rate(&cosine, 5e-4, 0, 100), 1e-3);
        assert!((step_learning_rate(&cosine, 5e-4, 50, 100) - 5e-4).abs() < 1e-9);
        assert!((step_learning_rate(&cosine, 5e-4, 25, 100) - 8.535534e-4).abs() < 1e-9);
        assert!(step_learning_rate(&cosine, 5e-4, 99, 100) < 1e-6);
        let plateau = TrainSettings::default();
        assert!(matches!(plateau.schedule, Schedule::Plateau { .. }));
        assert_eq!(step_learning_rate(&plateau, 1e-4, 50, 100), 1e-4);
    }
}
