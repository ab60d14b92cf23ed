//! `mini-xception`: classify face crops, evaluate on FER2013 and print model
//! summaries with the paper's models compiled in.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mini-xception",
    version,
    about = "The mini-Xception emotion and gender classifiers (Arriaga et al., 2017), compiled from YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How faces are found (`detect`, `faces` and `video`).
#[derive(clap::Args)]
struct DetectArgs {
    /// An OpenCV Haar cascade XML file (default: OpenCV's
    /// haarcascade_frontalface_default.xml, fetched once with pip from
    /// opencv-python-headless and cached).
    #[arg(long)]
    cascade: Option<PathBuf>,
    /// detectMultiScale's scaleFactor.
    #[arg(long, default_value_t = 1.3)]
    scale_factor: f64,
    /// detectMultiScale's minNeighbors.
    #[arg(long, default_value_t = 5)]
    min_neighbors: usize,
    /// The smallest face, in pixels (both sides).
    #[arg(long, default_value_t = 0)]
    min_size: u32,
    /// Threads for detection on large images (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// How faces are found and labelled (`faces` and `video`).
#[derive(clap::Args)]
struct PipelineArgs {
    #[command(flatten)]
    detect: DetectArgs,
    /// Emotion weights: `builtin` (this project's, inside the binary; the
    /// default), `paper` (the paper's, fetched once with pip) or a Keras HDF5
    /// or native .safetensors file.
    #[arg(long, value_name = "builtin|paper|FILE")]
    weights: Option<cli::WeightsChoice>,
    /// Gender weights; without them no gender is given.
    #[arg(long)]
    gender_weights: Option<PathBuf>,
    /// Test-time augmentation of both classifiers.
    #[arg(long, value_enum, default_value_t = TtaChoice::None)]
    tta: TtaChoice,
}

impl PipelineArgs {
    /// Sizes the detector's thread pool and loads the cascade and models.
    fn load(&self) -> Result<mini_xception::faces::Pipeline, cli::CliError> {
        self.detect.set_threads()?;
        cli::pipeline(
            &self.detect.cascade_path()?,
            self.detect.detect_options(),
            self.weights.as_ref(),
            self.gender_weights.as_deref(),
            self.tta.into(),
        )
    }
}

impl DetectArgs {
    fn detect_options(&self) -> mini_xception::detect::DetectOptions {
        mini_xception::detect::DetectOptions {
            scale_factor: self.scale_factor,
            min_neighbors: self.min_neighbors,
            min_size: (self.min_size, self.min_size),
            max_size: None,
        }
    }

    /// The cascade file: the given one, else OpenCV's cached copy.
    fn cascade_path(&self) -> Result<PathBuf, cli::CliError> {
        match &self.cascade {
            Some(path) => Ok(path.clone()),
            None => Ok(mini_xception::pretrained::face_cascade()?),
        }
    }

    /// Sizes rayon's global pool, which the detector runs on.
    fn set_threads(&self) -> Result<(), cli::CliError> {
        if let Some(threads) = self.threads {
            if threads == 0 {
                return Err("--threads must be at least 1".into());
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
        }
        Ok(())
    }
}

/// Which compiled-in model to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelChoice {
    /// Seven emotions, 64x64 (models/mini_xception.yaml).
    Emotion,
    /// Woman or man, 64x64 (models/gender_mini_xception.yaml).
    Gender,
}

/// Test-time augmentation of the classifiers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TtaChoice {
    /// One forward pass per face.
    #[default]
    None,
    /// Average the probabilities of each face and its mirror image (two passes).
    Flip,
}

impl From<TtaChoice> for mini_xception::models::Tta {
    fn from(choice: TtaChoice) -> Self {
        match choice {
            TtaChoice::None => Self::None,
            TtaChoice::Flip => Self::Flip,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Classify images, each taken as one face crop.
    Classify {
        /// The model to run.
        #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
        model: ModelChoice,
        /// `builtin` (this project's emotion weights, inside the binary; the
        /// emotion model's default), `paper` (the paper's emotion weights,
        /// fetched once with pip and cached) or a Keras HDF5 or native
        /// .safetensors file.
        #[arg(long, value_name = "builtin|paper|FILE")]
        weights: Option<cli::WeightsChoice>,
        /// One JSON object per image and line: path, label, probs.
        #[arg(long)]
        json: bool,
        /// Test-time augmentation.
        #[arg(long, value_enum, default_value_t = TtaChoice::None)]
        tta: TtaChoice,
        /// The images.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Accuracy, per-class accuracy and confusion matrix of the emotion model
    /// on one split of a FER2013 CSV.
    Eval {
        /// fer2013.csv or fer2013.csv.gz (Kaggle layout: emotion,pixels,Usage).
        #[arg(long)]
        data: PathBuf,
        /// The `Usage` value of the rows to evaluate.
        #[arg(long, default_value = "PublicTest")]
        split: String,
        /// `builtin` (the default: this project's weights, inside the binary),
        /// `paper` or a Keras HDF5 or native .safetensors file (of the
        /// emotion model, or of the 48x48 or wide model, which the file
        /// names). Given more than once, the ensemble of them all: the mean
        /// of their probabilities (e.g. a set of distillation teachers).
        #[arg(long, value_name = "builtin|paper|FILE")]
        weights: Vec<cli::WeightsChoice>,
        /// One JSON object: split, total, correct, accuracy, per_class, confusion.
        #[arg(long)]
        json: bool,
        /// Test-time augmentation.
        #[arg(long, value_enum, default_value_t = TtaChoice::None)]
        tta: TtaChoice,
    },
    /// Find the faces of each photo with the Haar cascade, as OpenCV's
    /// detectMultiScale does, and time it.
    Detect {
        #[command(flatten)]
        detect: DetectArgs,
        /// Detect this many times per photo and report the median time.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// One JSON object per photo and line: path, boxes ([x, y, w, h]), ms_median.
        #[arg(long)]
        json: bool,
        /// The photos.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Find the faces of each photo (Haar cascade) and label each with an
    /// emotion and, with --gender-weights, a gender.
    Faces {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// One JSON object per image and line: path, faces (box, label, emotion, gender).
        #[arg(long)]
        json: bool,
        /// Write a copy of each photo with boxes and labels drawn, as
        /// DIR/<name>_faces.png.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The photos.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Label the faces of every frame of a video (read with the ffmpeg
    /// command-line tool), each face's label smoothed over its last 10 frames.
    Video {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Write the video with boxes and labels drawn (format from the
        /// extension, encoded by ffmpeg).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object per frame and line (the default without
        /// --out): frame, time, faces (box, track, label, frame_label,
        /// emotion, gender).
        #[arg(long)]
        json: bool,
        /// The video (any format ffmpeg reads).
        input: PathBuf,
    },
    /// Median one-image latency and batch throughput of a model on this machine
    /// (seeded random weights: the speed does not depend on their values).
    Bench {
        #[arg(long, value_enum, default_value_t = cli::bench::BenchModel::Emotion)]
        model: cli::bench::BenchModel,
        /// Threads for the batch throughput.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Seconds of measurement, split between latency and throughput.
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
        /// Instruction set: avx512, avx2 or portable (default: the fastest this CPU has, as
        /// measured: avx512 on AMD CPUs that have it, else avx2 where there is one).
        #[arg(long)]
        isa: Option<String>,
        /// One JSON object: latency_ms_median, images_per_s, threads, batch, model, isa,
        /// macs_per_image, peak_macs_per_s, latency_peak_fraction, throughput_peak_fraction.
        #[arg(long)]
        json: bool,
    },
    /// Train a model on FER2013: Training to learn, PublicTest to select.
    /// Writes best.safetensors, last.checkpoint and history.csv to --out.
    Train {
        /// fer2013.csv or fer2013.csv.gz (Kaggle layout: emotion,pixels,Usage).
        #[arg(long)]
        data: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The model to train.
        #[arg(long, value_enum, default_value_t = cli::train::TrainModel::Emotion)]
        model: cli::train::TrainModel,
        /// Epochs (the paper's early stop may end the run sooner).
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Images per step.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// The optimizer.
        #[arg(long, value_enum, default_value_t = cli::train::OptimizerArg::Adam)]
        optimizer: cli::train::OptimizerArg,
        /// SGD's momentum (default 0.9), with `--optimizer sgd` or `nesterov`.
        #[arg(long, value_name = "M")]
        momentum: Option<f32>,
        /// The initial learning rate (default: 1e-3 for Adam, 1e-2 for SGD).
        #[arg(long)]
        learning_rate: Option<f32>,
        /// The learning-rate schedule.
        #[arg(long, value_enum, default_value_t = cli::train::ScheduleChoice::Plateau)]
        schedule: cli::train::ScheduleChoice,
        /// Epochs without improvement before the plateau schedule divides the rate by 10.
        #[arg(long, default_value_t = 12)]
        patience: usize,
        /// Epochs without a better PublicTest loss before the run stops.
        #[arg(long, default_value_t = 50)]
        early_stop: usize,
        /// Label smoothing of the cross-entropy (0 for none).
        #[arg(long, default_value_t = 0.0)]
        label_smoothing: f32,
        /// Every L2 factor of the model file times F (e.g. 0.1 for a tenth
        /// of the paper's 0.01; 1 keeps the file's).
        #[arg(long, default_value_t = 1.0, value_name = "F")]
        l2_scale: f32,
        /// Train without the random rotation, shift, zoom and flip.
        #[arg(long)]
        no_augment: bool,
        /// Beyond the paper's augmentation: a random brightness shift, uniform
        /// in ±F of the full range (e.g. 0.2; 0 for none).
        #[arg(long, default_value_t = 0.0, value_name = "F")]
        brightness: f32,
        /// Beyond the paper's augmentation: a random contrast factor, uniform
        /// in 1 ± F around each face's mean (e.g. 0.2; 0 for none).
        #[arg(long, default_value_t = 0.0, value_name = "F")]
        contrast: f32,
        /// Beyond the paper's augmentation: random erasing, the probability
        /// that a random rectangle (2% to 33% of the face) is set to grey
        /// (e.g. 0.5; 0 for none).
        #[arg(long, default_value_t = 0.0, value_name = "P")]
        erase: f32,
        /// Seed of initialisation, shuffling and augmentation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train on the first N Training faces only.
        #[arg(long)]
        limit: Option<usize>,
        /// Start from these weights instead of Keras' initialisation: a Keras HDF5 file (e.g.
        /// the paper's) or another run's last.checkpoint (to continue a finished run).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Average the weights at the end of every epoch from this one on (1 for all;
        /// stochastic weight averaging, best with --schedule constant): the average is then
        /// what is evaluated and kept, with batch-norm statistics measured on the training faces.
        #[arg(long, value_name = "EPOCH")]
        average_from: Option<usize>,
        /// Evaluate and keep each epoch's weights with batch-norm statistics
        /// measured afresh on the unaugmented Training faces (the moving
        /// statistics follow augmented batches); training keeps its own. A
        /// forward pass over the Training faces an epoch.
        #[arg(long)]
        recalibrate_bn: bool,
        /// Learn from this trained model too (knowledge distillation; give it
        /// several times for several teachers, whose probabilities are averaged).
        #[arg(long = "teacher", value_name = "FILE")]
        teachers: Vec<PathBuf>,
        /// Read every teacher as this model. Without it each is the model
        /// its .safetensors file names (Keras files: the student's). A
        /// teacher of another model needs the student's input and labels,
        /// and not --consistent-teaching.
        #[arg(long, value_enum, value_name = "MODEL")]
        teacher_model: Option<cli::train::TrainModel>,
        /// The teachers' share of the loss, in [0, 1].
        #[arg(long, default_value_t = 0.5, value_name = "A")]
        distill_weight: f32,
        /// The temperature of the softmaxes the teachers are matched at.
        #[arg(long, default_value_t = 2.0, value_name = "T")]
        temperature: f32,
        /// The teachers see each augmented image as the student does, every step (consistent
        /// teaching; a teacher pass per image), instead of fixed probabilities per face.
        #[arg(long)]
        consistent_teaching: bool,
        /// Continue from --out/last.checkpoint.
        #[arg(long)]
        resume: bool,
        /// Training threads (default: one per core); the result does not depend on them.
        #[arg(long)]
        threads: Option<usize>,
        /// Instruction set of the kernels: avx512, avx2 or portable (default: avx2 where this
        /// CPU has it, measured faster for training; the weights do not depend on it).
        #[arg(long)]
        isa: Option<String>,
        /// No progress bar or banner; one line per epoch.
        #[arg(long)]
        quiet: bool,
    },
    /// Show what the classifier looks at: the saliency of each face's
    /// predicted (or given) label, written as a PNG (the face, the map, the
    /// map over the face) beside each image, as <name>.<method>.png.
    Explain {
        /// The model to explain.
        #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
        model: ModelChoice,
        /// `builtin` (the emotion model's default), `paper` or a Keras HDF5 or
        /// native .safetensors file.
        #[arg(long, value_name = "builtin|paper|FILE")]
        weights: Option<cli::WeightsChoice>,
        /// Guided back-propagation (the paper's) or Grad-CAM.
        #[arg(long, value_enum, default_value_t = cli::explain::MethodChoice::GuidedBackprop)]
        method: cli::explain::MethodChoice,
        /// Explain this label (a name such as `happy`, or an index) instead of
        /// the predicted one.
        #[arg(long, value_name = "L")]
        label: Option<String>,
        /// Write the PNGs to DIR instead of beside the images.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Find the faces of each photo (as `faces` does) and explain each,
        /// as <name>.face<i>.<method>.png; without it each image is one face crop.
        #[arg(long)]
        faces: bool,
        #[command(flatten)]
        detect: DetectArgs,
        /// The images.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure a trained run's batch-norm statistics afresh on the
    /// unaugmented Training faces and write its weights with them (as
    /// `train --recalibrate-bn` does each epoch); prints PublicTest's loss
    /// and accuracy before and after.
    Recalibrate {
        /// The FER2013 CSV (plain or gzip-compressed).
        #[arg(long)]
        data: PathBuf,
        /// The weights to write (native .safetensors, batch norms folded).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Threads (default: one per core); the result does not depend on them.
        #[arg(long)]
        threads: Option<usize>,
        /// Instruction set of the kernels: avx512, avx2 or portable
        /// (default as for `train`).
        #[arg(long)]
        isa: Option<String>,
        /// A run's checkpoint (`train`'s RUN/last.checkpoint); its model,
        /// batch size, training-face limit and L2 factors are the run's.
        checkpoint: PathBuf,
    },
    /// Print the Rust code a model file compiles to, formatted, or every
    /// mistake in it as file:line:col (exit code 1).
    Compile {
        /// The YAML model file.
        model: PathBuf,
        /// Write the code to FILE instead of printing it.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a model's layers, output shapes, parameters and MACs.
    Summary {
        #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
        model: ModelChoice,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Classify {
            model,
            weights,
            json,
            tta,
            images,
        } => cli::classify::run(model, weights.as_ref(), tta.into(), json, &images),
        Command::Eval {
            data,
            split,
            weights,
            json,
            tta,
        } => cli::eval::run(&data, &split, &weights, tta.into(), json),
        Command::Detect {
            detect,
            repeat,
            json,
            images,
        } => detect.set_threads().and_then(|()| {
            cli::detect::run(
                &detect.cascade_path()?,
                &detect.detect_options(),
                repeat,
                json,
                &images,
            )
        }),
        Command::Explain {
            model,
            weights,
            method,
            label,
            out,
            faces,
            detect,
            images,
        } => (|| {
            let faces = if faces {
                detect.set_threads()?;
                let cascade =
                    mini_xception::detect::Cascade::from_xml_file(&detect.cascade_path()?)?;
                Some((cascade, detect.detect_options()))
            } else {
                None
            };
            cli::explain::run(cli::explain::Settings {
                model,
                weights: weights.as_ref(),
                method: method.into(),
                label: label.as_deref(),
                out: out.as_deref(),
                faces,
                images: &images,
            })
        })(),
        Command::Faces {
            pipeline,
            json,
            out,
            images,
        } => pipeline.load().and_then(|pipeline| {
            cli::faces::run(cli::faces::Settings {
                pipeline,
                json,
                out: out.as_deref(),
                images: &images,
            })
        }),
        Command::Video {
            pipeline,
            out,
            json,
            input,
        } => pipeline.load().and_then(|pipeline| {
            cli::video::run(cli::video::Settings {
                pipeline,
                input: &input,
                out: out.as_deref(),
                json,
            })
        }),
        Command::Bench {
            model,
            threads,
            batch,
            seconds,
            isa,
            json,
        } => cli::bench::run(cli::bench::Settings {
            model,
            threads,
            batch,
            seconds,
            isa,
            json,
        }),
        Command::Train {
            data,
            out,
            model,
            epochs,
            batch,
            optimizer,
            momentum,
            learning_rate,
            schedule,
            patience,
            early_stop,
            label_smoothing,
            l2_scale,
            no_augment,
            brightness,
            contrast,
            erase,
            seed,
            limit,
            init,
            average_from,
            recalibrate_bn,
            teachers,
            teacher_model,
            distill_weight,
            temperature,
            consistent_teaching,
            resume,
            threads,
            isa,
            quiet,
        } => cli::train::run(cli::train::Settings {
            data,
            out,
            model,
            epochs,
            batch,
            optimizer,
            momentum,
            learning_rate,
            schedule,
            patience,
            early_stop,
            label_smoothing,
            l2_scale,
            no_augment,
            brightness,
            contrast,
            erase,
            seed,
            limit,
            init,
            average_from,
            recalibrate_bn,
            teachers,
            teacher_model,
            distill_weight,
            temperature,
            consistent_teaching,
            resume,
            threads,
            isa,
            quiet,
        }),
        Command::Recalibrate {
            data,
            out,
            threads,
            isa,
            checkpoint,
        } => cli::recalibrate::run(&checkpoint, &data, &out, threads, isa.as_deref()),
        Command::Compile { model, out } => cli::compile::run(&model, out.as_deref()),
        Command::Summary { model } => cli::summary(model),
    };
    result.unwrap_or_else(|error| {
        // The reader of our output stopped reading (`... | head`): nothing
        // went wrong here, and there is no one left to tell.
        let broken_pipe = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        eprintln!("mini-xception: {error}");
        ExitCode::FAILURE
    })
}
