//! Training compiled models: the [`Trainer`] and its optimisers over the
//! forward and backward passes that `mini_xception!` generates (the
//! runtime's batch-level ops), Keras' initialisation, the data,
//! augmentation, distillation, checkpoints and the run loop.

pub mod augment;
pub mod average;
pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod init;
pub mod optimizer;
pub mod progress;
pub mod recalibrate;
pub mod run;
pub mod settings;
pub mod trainer;

pub use augment::Augmentation;
pub use average::WeightAverage;
pub use distill::Teachers;
pub use init::keras_initial;
pub use optimizer::{Adam, Optimizer, Sgd};
pub use progress::{OnEpoch, Progress, StepProgress, on_epoch};
pub use recalibrate::{Recalibration, recalibrate, recalibrate_faces};
pub use run::{RunError, RunOptions, RunSummary, evaluate, train, train_faces};
pub use settings::{OptimizerChoice, Schedule, SettingsError, TrainSettings};
pub use trainer::{OptimizerState, StepReport, TrainError, Trainer, TrainerOptions};
