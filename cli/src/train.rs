//! `mini-xception train`: trains a compiled-in model on FER2013.

use crate::args::CliError;
use crate::plots::{draw_confusion, draw_curves};
use indicatif::{ProgressBar, ProgressStyle};
use mini_xception::models::{emotion::MiniXception, paz::MiniXceptionPaz, wide::MiniXceptionWide};
use mini_xception::runtime::Isa;
use mini_xception::runtime::train::TrainableModel;
use mini_xception::train::checkpoint::EpochRecord;
use mini_xception::train::{
    Augmentation, OptimizerChoice, Progress, RunOptions, Schedule, StepProgress, Teachers,
    TrainSettings, train,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The arguments of `mini-xception train`.
#[derive(clap::Args)]
pub struct Args {
    /// fer2013.csv or fer2013.csv.gz (Kaggle layout: emotion,pixels,Usage).
    #[arg(long)]
    pub data: PathBuf,
    /// The output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The model to train.
    #[arg(long, value_enum, default_value_t = TrainModel::Emotion)]
    pub model: TrainModel,
    /// Epochs (the paper's early stop may end the run sooner).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// SGD's momentum (default 0.9), with `--optimizer sgd` or `nesterov`.
    #[arg(long, value_name = "M")]
    pub momentum: Option<f32>,
    /// The initial learning rate (default: 1e-3 for Adam, 1e-2 for SGD).
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// The learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Plateau)]
    pub schedule: ScheduleChoice,
    /// Epochs without improvement before the plateau schedule divides the rate by 10.
    #[arg(long, default_value_t = 12)]
    pub patience: usize,
    /// Epochs without a better PublicTest loss before the run stops.
    #[arg(long, default_value_t = 50)]
    pub early_stop: usize,
    /// Label smoothing of the cross-entropy (0 for none).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Every L2 factor of the model file times F (e.g. 0.1 for a tenth
    /// of the paper's 0.01; 1 keeps the file's).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub l2_scale: f32,
    /// Train without the random rotation, shift, zoom and flip.
    #[arg(long)]
    pub no_augment: bool,
    /// Beyond the paper's augmentation: a random brightness shift, uniform
    /// in ±F of the full range (e.g. 0.2; 0 for none).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub brightness: f32,
    /// Beyond the paper's augmentation: a random contrast factor, uniform
    /// in 1 ± F around each face's mean (e.g. 0.2; 0 for none).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub contrast: f32,
    /// Beyond the paper's augmentation: random erasing, the probability
    /// that a random rectangle (2% to 33% of the face) is set to grey
    /// (e.g. 0.5; 0 for none).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub erase: f32,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N Training faces only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start from these weights instead of Keras' initialisation: a Keras HDF5 file (e.g.
    /// the paper's) or another run's last.checkpoint (to continue a finished run).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Average the weights at the end of every epoch from this one on (1 for all;
    /// stochastic weight averaging, best with --schedule constant): the average is then
    /// what is evaluated and kept, with batch-norm statistics measured on the training faces.
    #[arg(long, value_name = "EPOCH")]
    pub average_from: Option<usize>,
    /// Evaluate and keep each epoch's weights with batch-norm statistics
    /// measured afresh on the unaugmented Training faces (the moving
    /// statistics follow augmented batches); training keeps its own. A
    /// forward pass over the Training faces an epoch.
    #[arg(long)]
    pub recalibrate_bn: bool,
    /// Learn from this trained model too (knowledge distillation; give it
    /// several times for several teachers, whose probabilities are averaged).
    #[arg(long = "teacher", value_name = "FILE")]
    pub teachers: Vec<PathBuf>,
    /// Read every teacher as this model. Without it each is the model
    /// its .safetensors file names (Keras files: the student's). A
    /// teacher of another model needs the student's input and labels,
    /// and not --consistent-teaching.
    #[arg(long, value_enum, value_name = "MODEL")]
    pub teacher_model: Option<TrainModel>,
    /// The teachers' share of the loss, in [0, 1].
    #[arg(long, default_value_t = 0.5, value_name = "A")]
    pub distill_weight: f32,
    /// The temperature of the softmaxes the teachers are matched at.
    #[arg(long, default_value_t = 2.0, value_name = "T")]
    pub temperature: f32,
    /// The teachers see each augmented image as the student does, every step (consistent
    /// teaching; a teacher pass per image), instead of fixed probabilities per face.
    #[arg(long)]
    pub consistent_teaching: bool,
    /// Continue from --out/last.checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Training threads (default: one per core); the result does not depend on them.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Instruction set of the kernels: avx512, avx2 or portable (default: avx2 where this
    /// CPU has it, the faster for training; the weights do not depend on it).
    #[arg(long)]
    pub isa: Option<String>,
    /// No progress bar or banner; one line per epoch.
    #[arg(long)]
    pub quiet: bool,
}

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

/// Trains the chosen model and prints the best epoch.
pub fn run(settings: Args) -> Result<ExitCode, CliError> {
    if settings.consistent_teaching && settings.teachers.is_empty() {
        return Err("--consistent-teaching needs a --teacher".into());
    }
    if settings.teacher_model.is_some() && settings.teachers.is_empty() {
        return Err("--teacher-model needs a --teacher".into());
    }
    if settings.optimizer == OptimizerArg::Adam && settings.momentum.is_some() {
        return Err("--momentum is SGD's: give it with --optimizer sgd or nesterov".into());
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

fn run_model<M: TrainableModel>(settings: &Args) -> Result<ExitCode, CliError> {
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
        // AVX2 before AVX-512 (`Isa::for_training`); the weights are the
        // same, bit for bit.
        isa: super::bench::isa_named(
            settings.isa.as_deref(),
            Isa::for_training(Isa::is_available),
        )?,
        resume: settings.resume,
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
        &mut TerminalProgress {
            bar: None,
            quiet: settings.quiet,
            out: &settings.out,
            labels: M::CLASS_LABELS,
        },
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

/// A run on the terminal: a progress bar per epoch (unless quiet), a line
/// per epoch, and the run's pictures redrawn after each epoch: `curves.png`,
/// and `confusion.png` whenever the best weights change.
struct TerminalProgress<'a> {
    bar: Option<ProgressBar>,
    quiet: bool,
    out: &'a Path,
    labels: &'static [&'static str],
}

impl Progress for TerminalProgress<'_> {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        self.bar = Some(bar);
    }

    fn step_done(&mut self, step: &StepProgress) {
        if let Some(bar) = &self.bar {
            bar.set_position(step.step as u64);
            bar.set_message(format!(
                "loss {:.4}  acc {:.2}%  {:.0} img/s",
                step.mean_loss,
                100.0 * step.accuracy,
                step.images_per_second
            ));
        }
    }

    fn epoch_done(
        &mut self,
        history: &[EpochRecord],
        best_confusion: Option<&[Vec<usize>]>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(confusion) = best_confusion {
            draw_confusion(confusion, self.labels, &self.out.join("confusion.png"))?;
        }
        draw_curves(history, &self.out.join("curves.png"))?;
        if let Some(record) = history.last() {
            print_epoch(record);
        }
        Ok(())
    }
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
