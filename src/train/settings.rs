//! What decides a training run's result: the settings a checkpoint records
//! (so that a run resumes only with the same ones), their defaults (the
//! paper's recipe) and their ranges.

use super::augment::Augmentation;
use super::distill::Teachers;
use super::optimizer::{Adam, Optimizer, Sgd};
use super::trainer::TrainerOptions;
use crate::runtime::Isa;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The paper's: divided by `1 / factor` when the validation loss has not
    /// improved (by 1e-4) for `patience` epochs (Keras' `ReduceLROnPlateau`).
    Plateau { patience: usize, factor: f32 },
    /// Cosine decay from the initial rate to zero over the run, per step.
    Cosine,
    /// The initial rate throughout (to average weights, or to continue a
    /// finished run).
    Constant,
}

/// What decides a run's result: the same settings and seed give the same
/// weights, bit for bit, whatever the number of threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs to run (fewer if the early stop ends the run).
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// The optimizer. Left out of the checkpoint's record of the settings
    /// when Adam, so that runs from before it resume.
    #[serde(default, skip_serializing_if = "OptimizerChoice::is_adam")]
    pub optimizer: OptimizerChoice,
    /// The optimizer's initial learning rate.
    pub learning_rate: f32,
    /// How the learning rate changes.
    pub schedule: Schedule,
    /// Epochs without a better validation loss after which the run stops.
    pub early_stop: usize,
    /// Keras' label smoothing of the cross-entropy.
    pub label_smoothing: f32,
    /// Every L2 factor of the model file times this. Left out of the
    /// checkpoint's record of the settings when 1, so that runs from before
    /// it resume.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub l2_scale: f32,
    /// The random transform of training images, or `None` for none.
    pub augmentation: Option<Augmentation>,
    /// The seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Train on the first this many `Training` faces only (for quick runs).
    pub limit: Option<usize>,
    /// Start from these weights (a Keras HDF5 file) instead of Keras' initialisation.
    pub init: Option<PathBuf>,
    /// Learn from these trained models too (knowledge distillation). Left
    /// out of the checkpoint's record of the settings when `None`, so that
    /// runs from before it resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teachers: Option<Teachers>,
    /// Average the weights at the end of every epoch from this one on
    /// (1-based; stochastic weight averaging): from then on the validation
    /// figures, the schedule, the early stop and `best.safetensors` are the
    /// average's, with its batch-norm statistics measured on the training
    /// faces. Left out of the checkpoint's record when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_from: Option<usize>,
    /// Evaluate and keep each epoch's weights with batch-norm statistics
    /// measured afresh on the unaugmented training faces, as the averages
    /// of `average_from` are ("precise BN"): the moving statistics follow
    /// augmented batches, and the model will see faces as they are. Training
    /// goes on with its own statistics. Left out of the record when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recalibrate: bool,
}

impl Default for TrainSettings {
    /// The paper's recipe (`train_emotion_classifier.py`): 10,000 epochs
    /// stopped early after 50 without improvement, batch 32, Adam at 1e-3,
    /// the plateau schedule with patience 12, augmentation, no smoothing.
    fn default() -> Self {
        Self {
            epochs: 10_000,
            batch: 32,
            optimizer: OptimizerChoice::Adam,
            learning_rate: 1e-3,
            schedule: Schedule::Plateau {
                patience: 12,
                factor: 0.1,
            },
            early_stop: 50,
            label_smoothing: 0.0,
            l2_scale: 1.0,
            augmentation: Some(Augmentation::PAPER),
            seed: 0,
            limit: None,
            init: None,
            teachers: None,
            average_from: None,
            recalibrate: false,
        }
    }
}

/// Which optimizer a run steps with; the learning rate is the run's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum OptimizerChoice {
    /// Keras' Adam (beta1 0.9, beta2 0.999, epsilon 1e-7), the paper's.
    #[default]
    Adam,
    /// SGD with `momentum`, with Nesterov's look-ahead when `nesterov`.
    Sgd { momentum: f32, nesterov: bool },
}

/// A training setting out of its range, found before anything runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the training setting {setting} must be {expected}, got {found}")]
pub struct SettingsError {
    /// The setting, as the field of [`TrainSettings`] (and the command-line
    /// option, with `--` and dashes) names it.
    pub setting: &'static str,
    /// Its range.
    pub expected: &'static str,
    /// What it was.
    pub found: String,
}

impl TrainSettings {
    /// Checks every setting against its range: counts of at least 1, rates,
    /// factors and probabilities in theirs. [`train`] and [`train_faces`]
    /// check the same before they start.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn check(
            ok: bool,
            setting: &'static str,
            expected: &'static str,
            found: impl std::fmt::Display,
        ) -> Result<(), SettingsError> {
            match ok {
                true => Ok(()),
                false => Err(SettingsError {
                    setting,
                    expected,
                    found: found.to_string(),
                }),
            }
        }
        const AT_LEAST_ONE: &str = "at least 1";
        const NON_NEGATIVE: &str = "a number of at least 0";
        check(self.epochs >= 1, "epochs", AT_LEAST_ONE, self.epochs)?;
        check(self.batch >= 1, "batch", AT_LEAST_ONE, self.batch)?;
        if let Some(from) = self.average_from {
            check(from >= 1, "average_from", AT_LEAST_ONE, from)?;
        }
        let rate = self.learning_rate;
        check(
            rate >= 0.0 && rate.is_finite(),
            "learning_rate",
            NON_NEGATIVE,
            rate,
        )?;
        let scale = self.l2_scale;
        check(
            scale >= 0.0 && scale.is_finite(),
            "l2_scale",
            NON_NEGATIVE,
            scale,
        )?;
        let smoothing = self.label_smoothing;
        check(
            (0.0..=1.0).contains(&smoothing),
            "label_smoothing",
            "in [0, 1]",
            smoothing,
        )?;
        if let OptimizerChoice::Sgd { momentum, .. } = self.optimizer {
            check(
                (0.0..1.0).contains(&momentum),
                "momentum",
                "in [0, 1)",
                momentum,
            )?;
        }
        if let Some(augmentation) = &self.augmentation {
            let erase = augmentation.erase;
            check(
                (0.0..=1.0).contains(&erase),
                "erase",
                "a probability, in [0, 1]",
                erase,
            )?;
        }
        if let Some(teachers) = &self.teachers {
            let weight = teachers.weight;
            check(
                (0.0..=1.0).contains(&weight),
                "distill_weight",
                "in [0, 1]",
                weight,
            )?;
            let temperature = teachers.temperature;
            let positive = temperature > 0.0 && temperature.is_finite();
            check(positive, "temperature", "a number above 0", temperature)?;
        }
        Ok(())
    }

    /// The trainer's options for these settings, on `threads` threads with
    /// kernels for `isa`.
    pub fn trainer_options(&self, threads: usize, isa: Isa) -> TrainerOptions {
        TrainerOptions {
            batch: self.batch,
            threads,
            isa,
            optimizer: self.optimizer.at(self.learning_rate),
            label_smoothing: self.label_smoothing,
            momentum: 0.99,
            l2_scale: self.l2_scale,
        }
    }
}

impl OptimizerChoice {
    fn is_adam(&self) -> bool {
        *self == Self::Adam
    }

    /// The optimizer at `learning_rate`.
    pub fn at(self, learning_rate: f32) -> Optimizer {
        match self {
            Self::Adam => Optimizer::Adam(Adam {
                learning_rate,
                ..Adam::default()
            }),
            Self::Sgd { momentum, nesterov } => Optimizer::Sgd(Sgd {
                learning_rate,
                momentum,
                nesterov,
            }),
        }
    }
}

fn one() -> f32 {
    1.0
}

fn is_one(value: &f32) -> bool {
    *value == 1.0
}

fn is_false(value: &bool) -> bool {
    !value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting out of its range is refused, naming the setting, its
    /// range and the value; the paper's recipe passes.
    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        assert_eq!(TrainSettings::default().validate(), Ok(()));
        let refused = |settings: TrainSettings| settings.validate().unwrap_err().to_string();
        let paper = TrainSettings::default;
        assert_eq!(
            refused(TrainSettings {
                batch: 0,
                ..paper()
            }),
            "the training setting batch must be at least 1, got 0"
        );
        assert_eq!(
            refused(TrainSettings {
                epochs: 0,
                ..paper()
            }),
            "the training setting epochs must be at least 1, got 0"
        );
        assert_eq!(
            refused(TrainSettings {
                average_from: Some(0),
                ..paper()
            }),
            "the training setting average_from must be at least 1, got 0"
        );
        assert_eq!(
            refused(TrainSettings {
                learning_rate: f32::NAN,
                ..paper()
            }),
            "the training setting learning_rate must be a number of at least 0, got NaN"
        );
        assert_eq!(
            refused(TrainSettings {
                l2_scale: -1.0,
                ..paper()
            }),
            "the training setting l2_scale must be a number of at least 0, got -1"
        );
        assert_eq!(
            refused(TrainSettings {
                label_smoothing: 1.5,
                ..paper()
            }),
            "the training setting label_smoothing must be in [0, 1], got 1.5"
        );
        let sgd = OptimizerChoice::Sgd {
            momentum: 1.0,
            nesterov: true,
        };
        assert_eq!(
            refused(TrainSettings {
                optimizer: sgd,
                ..paper()
            }),
            "the training setting momentum must be in [0, 1), got 1"
        );
        let erasing = Augmentation {
            erase: 2.0,
            ..Augmentation::PAPER
        };
        assert_eq!(
            refused(TrainSettings {
                augmentation: Some(erasing),
                ..paper()
            }),
            "the training setting erase must be a probability, in [0, 1], got 2"
        );
        let teachers = |weight, temperature| Teachers {
            files: Vec::new(),
            sha256: Vec::new(),
            weight,
            temperature,
            consistent: false,
            model: None,
        };
        assert_eq!(
            refused(TrainSettings {
                teachers: Some(teachers(1.5, 2.0)),
                ..paper()
            }),
            "the training setting distill_weight must be in [0, 1], got 1.5"
        );
        assert_eq!(
            refused(TrainSettings {
                teachers: Some(teachers(0.5, 0.0)),
                ..paper()
            }),
            "the training setting temperature must be a number above 0, got 0"
        );
    }

    #[test]
    fn settings_without_teachers_l2_scale_sgd_or_recalibration_are_recorded_as_before_them() {
        let recorded = serde_json::to_value(TrainSettings::default()).unwrap();
        assert!(recorded.get("teachers").is_none(), "{recorded}");
        assert!(recorded.get("l2_scale").is_none(), "{recorded}");
        assert!(recorded.get("optimizer").is_none(), "{recorded}");
        assert!(recorded.get("recalibrate").is_none(), "{recorded}");
        let read: TrainSettings = serde_json::from_value(recorded).unwrap();
        assert_eq!(read, TrainSettings::default());
        let sgd = TrainSettings {
            optimizer: OptimizerChoice::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            recalibrate: true,
            ..TrainSettings::default()
        };
        let recorded = serde_json::to_value(&sgd).unwrap();
        assert!(recorded.get("optimizer").is_some(), "{recorded}");
        assert_eq!(recorded.get("recalibrate"), Some(&serde_json::json!(true)));
        assert_eq!(
            serde_json::from_value::<TrainSettings>(recorded).unwrap(),
            sgd
        );
    }

    #[test]
    fn an_optimizer_choice_builds_its_optimizer_at_the_runs_rate() {
        assert_eq!(
            OptimizerChoice::Adam.at(2e-3),
            Optimizer::Adam(Adam {
                learning_rate: 2e-3,
                ..Adam::default()
            })
        );
        let sgd = OptimizerChoice::Sgd {
            momentum: 0.8,
            nesterov: false,
        };
        assert_eq!(
            sgd.at(0.1),
            Optimizer::Sgd(Sgd {
                learning_rate: 0.1,
                momentum: 0.8,
                nesterov: false
            })
        );
    }
}
