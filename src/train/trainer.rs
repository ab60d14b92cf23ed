//! The trainer: a model's parameters, moving statistics, the optimizer's state and
//! every buffer a step needs, allocated once for a fixed batch size; a step
//! allocates nothing.

use super::optimizer::Optimizer;
use crate::runtime::loss::{Distillation, LabelOutOfRange, l2_backward, l2_penalty};
use crate::runtime::tensor::{flat, flat_mut, zeroed_box};
use crate::runtime::train::{
    BatchNormSettings, Normalization, ReductionScratch, ReluBackward, TrainableModel,
    distilled_loss_backward, sum_image_gradients, zeroed_batch,
};
use crate::runtime::{Isa, argmax};

/// How a trainer runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainerOptions {
    /// Images per step, fixed when the trainer is built.
    pub batch: usize,
    /// Threads of the trainer's own pool; every step uses all of them.
    pub threads: usize,
    /// The instruction set of the kernels.
    pub isa: Isa,
    /// The optimizer, at the learning rate of the first step.
    pub optimizer: Optimizer,
    /// Keras' `label_smoothing` of the cross-entropy (0 for none).
    pub label_smoothing: f32,
    /// How much of the moving statistics each batch keeps (Keras: 0.99).
    pub momentum: f32,
    /// Every L2 factor of the model file times this (1: the file's own).
    pub l2_scale: f32,
}

impl Default for TrainerOptions {
    /// The paper's recipe: batch 32, Keras' Adam, no label smoothing,
    /// momentum 0.99, every core, this CPU's default instruction set.
    fn default() -> Self {
        Self {
            batch: 32,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa: Isa::detect(),
            optimizer: Optimizer::default(),
            label_smoothing: 0.0,
            momentum: 0.99,
            l2_scale: 1.0,
        }
    }
}

/// Why a trainer could not be built or a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The batch size is zero.
    #[error("the batch size must be at least 1")]
    EmptyBatch,
    /// A step got another number of images or labels than the trainer's batch.
    #[error(
        "a step takes exactly {batch} images and labels, got {images} images and {labels} labels"
    )]
    BatchSize {
        batch: usize,
        images: usize,
        labels: usize,
    },
    /// A label is not one of the model's classes.
    #[error(transparent)]
    Label(#[from] LabelOutOfRange),
    /// A distilled step got another number of teacher probabilities than
    /// its batch's classes.
    #[error("a distilled step takes {expected} teacher probabilities, got {found}")]
    TeacherSize { expected: usize, found: usize },
    /// The thread pool could not be started.
    #[error("cannot start {threads} training threads: {reason}")]
    Threads { threads: usize, reason: String },
}

/// What one step measured, on the batch it trained on, before its update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The mean cross-entropy plus the L2 penalties: the loss Keras reports.
    pub loss: f64,
    /// The mean cross-entropy alone (distilled steps: the mean distilled loss).
    pub data_loss: f64,
    /// Images whose largest logit is their label's.
    pub correct: usize,
}

/// Trains a compiled model with an [`Optimizer`] on batches of a fixed size.
pub struct Trainer<M: TrainableModel> {
    parameters: Box<M::Parameters>,
    statistics: Box<M::Statistics>,
    gradients: Box<M::Parameters>,
    first_moments: Box<M::Parameters>,
    second_moments: Box<M::Parameters>,
    image_gradients: Box<[M::Parameters]>,
    workspace: M::Workspace,
    scratch: ReductionScratch,
    logits: Box<[f32]>,
    logit_gradients: Box<[f32]>,
    steps: u64,
    options: TrainerOptions,
    pool: rayon::ThreadPool,
}

/// The state that a checkpoint keeps besides parameters and statistics.
pub struct OptimizerState<'a, P> {
    /// The optimizer's first array: Adam's first moments, or SGD's velocities.
    pub first_moments: &'a P,
    /// The optimizer's second array: Adam's second moments (zero for SGD).
    pub second_moments: &'a P,
    /// Updates made so far.
    pub steps: u64,
}

impl<M: TrainableModel> Trainer<M> {
    /// A trainer starting from `parameters` and `statistics`, with the
    /// optimizer's state at zero. Allocates every buffer a step needs.
    pub fn new(
        parameters: Box<M::Parameters>,
        statistics: Box<M::Statistics>,
        options: TrainerOptions,
    ) -> Result<Self, TrainError> {
        if options.batch == 0 {
            return Err(TrainError::EmptyBatch);
        }
        let threads = options.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .start_handler(|_| crate::runtime::denormals::flush_denormals())
            .build()
            .map_err(|e| TrainError::Threads {
                threads,
                reason: e.to_string(),
            })?;
        let classes = M::CLASSES * options.batch;
        Ok(Self {
            parameters,
            statistics,
            gradients: zeroed_box(),
            first_moments: zeroed_box(),
            second_moments: zeroed_box(),
            image_gradients: zeroed_batch(options.batch),
            workspace: M::workspace(options.batch),
            scratch: ReductionScratch::new(options.batch, M::WIDEST_BATCH_NORM),
            logits: vec![0.0; classes].into_boxed_slice(),
            logit_gradients: vec![0.0; classes].into_boxed_slice(),
            steps: 0,
            options: TrainerOptions { threads, ..options },
            pool,
        })
    }

    /// One step on a batch: forward in training mode, the loss, the backward
    /// pass, the L2 gradients and the optimizer's update. Allocates nothing.
    pub fn step(
        &mut self,
        inputs: &[M::Input],
        labels: &[usize],
    ) -> Result<StepReport, TrainError> {
        self.step_with_teacher(inputs, labels, None)
    }

    /// [`Trainer::step`] learning from a teacher too (knowledge
    /// distillation): `teacher` holds its probabilities for every image
    /// (`M::CLASSES` each, at the distillation's temperature), and the loss
    /// is [`crate::runtime::loss::distillation_cross_entropy_into`]'s.
    pub fn step_distilled(
        &mut self,
        inputs: &[M::Input],
        labels: &[usize],
        teacher: &[f32],
        distillation: Distillation,
    ) -> Result<StepReport, TrainError> {
        self.step_with_teacher(inputs, labels, Some((teacher, distillation)))
    }

    fn step_with_teacher(
        &mut self,
        inputs: &[M::Input],
        labels: &[usize],
        teacher: Option<(&[f32], Distillation)>,
    ) -> Result<StepReport, TrainError> {
        let batch = self.options.batch;
        if inputs.len() != batch || labels.len() != batch {
            return Err(TrainError::BatchSize {
                batch,
                images: inputs.len(),
                labels: labels.len(),
            });
        }
        if let Some((probabilities, _)) = teacher
            && probabilities.len() != batch * M::CLASSES
        {
            return Err(TrainError::TeacherSize {
                expected: batch * M::CLASSES,
                found: probabilities.len(),
            });
        }
        let settings = BatchNormSettings {
            epsilon: M::BATCH_NORM_EPSILON,
            momentum: self.options.momentum,
            normalization: Normalization::Batch,
        };
        let isa = self.options.isa;
        let smoothing = self.options.label_smoothing;
        let Self {
            parameters,
            statistics,
            gradients,
            image_gradients,
            workspace,
            scratch,
            logits,
            logit_gradients,
            pool,
            first_moments,
            second_moments,
            steps,
            options,
            ..
        } = self;
        let (data_loss, penalty) = pool.install(|| -> Result<(f64, f64), TrainError> {
            // Checked before anything moves, so a bad label changes nothing.
            if let Some(&label) = labels.iter().find(|&&label| label >= M::CLASSES) {
                return Err(LabelOutOfRange {
                    label,
                    classes: M::CLASSES,
                }
                .into());
            }
            M::forward_train(
                isa, parameters, statistics, settings, inputs, workspace, scratch, logits,
            );
            let data_loss = distilled_loss_backward(
                logits,
                M::CLASSES,
                labels,
                smoothing,
                teacher,
                logit_gradients,
            )?;
            flat_mut(&mut **gradients).fill(0.0);
            M::backward(
                isa,
                parameters,
                inputs,
                workspace,
                scratch,
                logit_gradients,
                ReluBackward::Plain,
                None,
                gradients,
                image_gradients,
            );
            sum_image_gradients(image_gradients, gradients);
            let penalty = add_l2::<M>(parameters, gradients, options.l2_scale);
            // On a pool thread too, where denormals are flushed (as in
            // TensorFlow): as the gradient of a weight falls to zero, its
            // optimizer's state decays through the denormal range.
            *steps += 1;
            options.optimizer.update(
                *steps,
                flat_mut(&mut **parameters),
                flat(&**gradients),
                flat_mut(&mut **first_moments),
                flat_mut(&mut **second_moments),
            );
            Ok((data_loss, penalty))
        })?;
        let correct = self
            .logits
            .chunks_exact(M::CLASSES)
            .zip(labels)
            .filter(|(logits, label)| argmax(logits) == **label)
            .count();
        Ok(StepReport {
            loss: data_loss + penalty,
            data_loss,
            correct,
        })
    }

    /// The forward pass alone, in training mode, on a batch: the moving
    /// statistics move toward this batch's by `1 - momentum`; nothing else
    /// that a step keeps changes (parameters, the optimizer's state, the step
    /// count). Given momentum `k / (k + 1)` for the batch numbered `k` from
    /// 0, the statistics end as the mean of the batches' own: how the
    /// statistics of weights that were never trained as such (an average
    /// of weights) are measured.
    pub fn update_statistics(
        &mut self,
        inputs: &[M::Input],
        momentum: f32,
    ) -> Result<(), TrainError> {
        let batch = self.options.batch;
        if inputs.len() != batch {
            return Err(TrainError::BatchSize {
                batch,
                images: inputs.len(),
                labels: batch,
            });
        }
        let settings = BatchNormSettings {
            epsilon: M::BATCH_NORM_EPSILON,
            momentum,
            normalization: Normalization::Batch,
        };
        let isa = self.options.isa;
        let Self {
            parameters,
            statistics,
            workspace,
            scratch,
            logits,
            pool,
            ..
        } = self;
        pool.install(|| {
            M::forward_train(
                isa, parameters, statistics, settings, inputs, workspace, scratch, logits,
            )
        });
        Ok(())
    }

    /// The parameters.
    pub fn parameters(&self) -> &M::Parameters {
        &self.parameters
    }

    /// The moving statistics.
    pub fn statistics(&self) -> &M::Statistics {
        &self.statistics
    }

    /// The parameters and moving statistics, to change between steps (to
    /// load others, or to restart from a checkpoint).
    pub fn state_mut(&mut self) -> (&mut M::Parameters, &mut M::Statistics) {
        (&mut self.parameters, &mut self.statistics)
    }

    /// The gradients of the last step's loss (L2 included), before its update.
    pub fn gradients(&self) -> &M::Parameters {
        &self.gradients
    }

    /// The last step's activations and batch statistics, for inspection.
    pub fn workspace(&self) -> &M::Workspace {
        &self.workspace
    }

    /// The last step's logits, `CLASSES` per image.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The optimizer's state and step count.
    pub fn optimizer_state(&self) -> OptimizerState<'_, M::Parameters> {
        OptimizerState {
            first_moments: &self.first_moments,
            second_moments: &self.second_moments,
            steps: self.steps,
        }
    }

    /// Restores the optimizer's state and step count, from a checkpoint.
    pub fn restore_optimizer(&mut self, first: &M::Parameters, second: &M::Parameters, steps: u64) {
        *self.first_moments = *first;
        *self.second_moments = *second;
        self.steps = steps;
    }

    /// The learning rate of the coming steps (for schedules).
    pub fn set_learning_rate(&mut self, learning_rate: f32) {
        self.options.optimizer.set_learning_rate(learning_rate);
    }

    /// The options, with the number of threads actually used.
    pub fn options(&self) -> &TrainerOptions {
        &self.options
    }

    /// Runs `work` on the trainer's threads (for evaluation between epochs).
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }
}

/// Adds every L2 penalty's gradient to `gradients` and returns the penalties' sum.
fn add_l2<M: TrainableModel>(
    parameters: &M::Parameters,
    gradients: &mut M::Parameters,
    scale: f32,
) -> f64 {
    let parameters = flat(parameters);
    let gradients = flat_mut(gradients);
    let mut penalty = 0.0;
    for tensor in M::TENSORS
        .iter()
        .filter(|t| t.is_trainable() && t.l2 != 0.0)
    {
        if let (Some(values), Some(gradient)) =
            (tensor.values(parameters), tensor.values_mut(gradients))
        {
            penalty += l2_penalty(values, tensor.l2 * scale);
            l2_backward(values, tensor.l2 * scale, gradient);
        }
    }
    penalty
}
