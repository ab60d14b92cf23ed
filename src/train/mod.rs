//! Training compiled models on FER2013: Keras' initialisation, the data,
//! augmentation, checkpoints and the run loop. The step itself is the
//! runtime's [`Trainer`](crate::runtime::train::Trainer) over the code that
//! `mini_xception!` generates.

pub mod augment;
pub mod average;
pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod init;
pub mod progress;
pub mod recalibrate;
pub mod run;
pub mod settings;

pub use augment::Augmentation;
pub use average::WeightAverage;
pub use distill::Teachers;
pub use init::keras_initial;
pub use progress::{OnEpoch, Progress, StepProgress, on_epoch};
pub use recalibrate::{Recalibration, recalibrate, recalibrate_faces};
pub use run::{RunError, RunOptions, RunSummary, evaluate, train, train_faces};
pub use settings::{OptimizerChoice, Schedule, SettingsError, TrainSettings};
