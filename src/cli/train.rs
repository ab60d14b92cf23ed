//! `mini-xception train`: trains a compiled-in model on FER2013.

use super::CliError;
use mini_xception::models::{emotion::MiniXception, paz::MiniXceptionPaz, wide::MiniXceptionWide};
use mini_xception::runtime::Isa;
use mini_xception::runtime::train::TrainableModel;
use mini_xception::train::checkpoint::EpochRecord;
use mini_xception::train::{
    Augmentation, OptimizerChoice, RunOptions, Schedule, Teachers, TrainSettings, train,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainModel {
    /// The paper's emotion model, 64x64 (models/mini_xception.yaml).
    Emotion,
    /// oarriaga/paz's 48x48 variant (models/mini_xception_paz.yaml).
    Paz,
    /// The emotion model at twice the width, a distillation teacher
    /// (models/mini_xception_wide.yaml).
    Wide,
}

/// The learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleChoice {
    /// Divide by 10 after 12 epochs without a better validation loss (the paper's).
    Plateau,
    /// Cosine decay to zero over the epochs.
    Cosine,
    /// The initial rate throughout (to average weights over the last epochs).
    Constant,
}

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    /// Keras' Adam (the paper's); learning rate 1e-3 unless given.
    Adam,
    /// SGD with momentum; learning rate 1e-2 unless given.
    Sgd,
    /// SGD with Nesterov's momentum; learning rate 1e-2 unless given.
    Nesterov,
}

/// What `train` was asked for.
pub struct Settings {
    pub data: PathBuf,
    pub out: PathBuf,
    pub model: TrainModel,
    pub epochs: usize,
    pub batch: usize,
    pub optimizer: OptimizerArg,
    pub momentum: Option<f32>,
    pub learning_rate: Option<f32>,
    pub schedule: ScheduleChoice,
    pub patience: usize,
    pub early_stop: usize,
    pub label_smoothing: f32,
    pub l2_scale: f32,
    pub no_augment: bool,
    pub brightness: f32,
    pub contrast: f32,
    pub erase: f32,
    pub seed: u64,
    pub limit: Option<usize>,
    pub init: Option<PathBuf>,
    pub average_from: Option<usize>,
    pub recalibrate_bn: bool,
    pub teachers: Vec<PathBuf>,
    pub teacher_model: Option<TrainModel>,
    pub distill_weight: f32,
    pub temperature: f32,
    pub consistent_teaching: bool,
    pub resume: bool,
    pub threads: Option<usize>,
    pub isa: Option<String>,
    pub quiet: bool,
}

pub fn run(settings: Settings) -> Result<ExitCode, CliError> {
    if settings.batch == 0 || settings.epochs == 0 || settings.average_from == Some(0) {
        return Err("--batch, --epochs and --average-from must be at least 1".into());
    }
    if settings.consistent_teaching && settings.teachers.is_empty() {
        return Err("--consistent-teaching needs a --teacher".into());
    }
    if settings.teacher_model.is_some() && settings.teachers.is_empty() {
        return Err("--teacher-model needs a --teacher".into());
    }
    if !(settings.l2_scale >= 0.0 && settings.l2_scale.is_finite()) {
        return Err(format!(
            "--l2-scale must be a number of at least 0, got {}",
            settings.l2_scale
        )
        .into());
    }
    if settings.optimizer == OptimizerArg::Adam && settings.momentum.is_some() {
        return Err("--momentum is SGD's: give it with --optimizer sgd or nesterov".into());
    }
    if let Some(momentum) = settings.momentum
        && !(0.0..1.0).contains(&momentum)
    {
        return Err(format!("--momentum must lie in [0, 1), got {momentum}").into());
    }
    if !(0.0..=1.0).contains(&settings.erase) {
        return Err(format!(
            "--erase is a probability, in [0, 1]; got {}",
            settings.erase
        )
        .into());
    }
    if let Some(rate) = settings.learning_rate
        && !(rate >= 0.0 && rate.is_finite())
    {
        return Err(format!("--learning-rate must be a number of at least 0, got {rate}").into());
    }
    match settings.model {
        TrainModel::Emotion => run_model::<MiniXception>(&settings),
        TrainModel::Paz => run_model::<MiniXceptionPaz>(&settings),
        TrainModel::Wide => run_model::<MiniXceptionWide>(&settings),
    }
}

/// The type name of a model choice, as a run records its teachers' model.
fn model_name(model: TrainModel) -> &'static str {
    match model {
        TrainModel::Emotion => MiniXception::NAME,
        TrainModel::Paz => MiniXceptionPaz::NAME,
        TrainModel::Wide => MiniXceptionWide::NAME,
    }
}

fn run_model<M: TrainableModel>(settings: &Settings) -> Result<ExitCode, CliError> {
    let train_settings = TrainSettings {
        epochs: settings.epochs,
        batch: settings.batch,
        optimizer: match settings.optimizer {
            OptimizerArg::Adam => OptimizerChoice::Adam,
            OptimizerArg::Sgd | OptimizerArg::Nesterov => OptimizerChoice::Sgd {
                momentum: settings.momentum.unwrap_or(0.9),
                nesterov: settings.optimizer == OptimizerArg::Nesterov,
            },
        },
        learning_rate: settings.learning_rate.unwrap_or(match settings.optimizer {
            OptimizerArg::Adam => 1e-3,
            OptimizerArg::Sgd | OptimizerArg::Nesterov => 1e-2,
        }),
        schedule: match settings.schedule {
            ScheduleChoice::Plateau => Schedule::Plateau {
                patience: settings.patience,
                factor: 0.1,
            },
            ScheduleChoice::Cosine => Schedule::Cosine,
            ScheduleChoice::Constant => Schedule::Constant,
        },
        early_stop: settings.early_stop,
        label_smoothing: settings.label_smoothing,
        l2_scale: settings.l2_scale,
        augmentation: (!settings.no_augment).then_some(Augmentation {
            brightness: settings.brightness,
            contrast: settings.contrast,
            erase: settings.erase,
            ..Augmentation::PAPER
        }),
        seed: settings.seed,
        limit: settings.limit,
        init: settings.init.clone(),
        average_from: settings.average_from,
        recalibrate: settings.recalibrate_bn,
        teachers: if settings.teachers.is_empty() {
            None
        } else {
            Some(Teachers {
                consistent: settings.consistent_teaching,
                // Recorded only when it differs from the student, so that
                // runs from before the option resume.
                model: settings
                    .teacher_model
                    .map(model_name)
                    .filter(|&name| name != M::NAME)
                    .map(str::to_owned),
                ..Teachers::from_files(
                    settings.teachers.clone(),
                    settings.distill_weight,
                    settings.temperature,
                )?
            })
        },
    };
    let options = RunOptions {
        threads: settings
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        // AVX2 before AVX-512 whatever the CPU: only the forward pass has
        // AVX-512 kernels of its own, and the backward kernels compiled for
        // AVX-512 make an epoch slower than AVX2's. The weights are the
        // same, bit for bit.
        isa: super::bench::isa_named(settings.isa.as_deref(), Isa::preferred(Isa::is_available))?,
        resume: settings.resume,
        progress: !settings.quiet,
    };
    if !settings.quiet {
        eprintln!(
            "mini-xception: training {} ({} parameters) on {} with {} threads ({})",
            M::NAME,
            M::TENSORS.iter().map(|t| t.len()).sum::<usize>(),
            settings.data.display(),
            options.threads,
            options.isa.name()
        );
    }
    let summary = train::<M>(
        &settings.data,
        &settings.out,
        &train_settings,
        &options,
        &mut print_epoch,
    )?;
    let out = Path::new(&settings.out);
    match summary.best_epoch.and_then(|e| summary.history.get(e - 1)) {
        Some(best) => sayln!(
            "best: epoch {}, PublicTest loss {:.4}, accuracy {:.2}%; weights in {}",
            best.epoch,
            best.validation_loss,
            100.0 * best.validation_accuracy,
            out.join("best.safetensors").display()
        ),
        None => sayln!(
            "no epoch ran (the checkpoint in {} has them all)",
            out.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_epoch(record: &EpochRecord) {
    use std::io::Write as _;
    // Progress only: the run's results go to its files, so a closed output
    // does not stop the training.
    let _ = writeln!(
        std::io::stdout().lock(),
        "epoch {:>3}: lr {:.1e}  train loss {:.4} acc {:.2}%  PublicTest loss {:.4} acc {:.2}%  {:.1} s",
        record.epoch,
        record.learning_rate,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.validation_loss,
        100.0 * record.validation_accuracy,
        record.seconds
    );
}
