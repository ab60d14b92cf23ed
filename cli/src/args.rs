//! What several subcommands share: how faces are found, which model and
//! weights run, and test-time augmentation, as command-line arguments and
//! as the loaded pipeline and classifiers.

use clap::ValueEnum;
use mini_xception::models::{
    EmotionClassifier, FaceClassifier, GenderClassifier, LoadError, Tta, builtin, emotion, gender,
    load_weights,
};
use mini_xception::runtime::InferenceModel;
use std::path::{Path, PathBuf};

/// How faces are found (`detect`, `faces` and `video`).
#[derive(clap::Args)]
pub struct DetectArgs {
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
pub struct PipelineArgs {
    #[command(flatten)]
    detect: DetectArgs,
    /// Emotion weights: `builtin` (this project's, inside the binary; the
    /// default), `paper` (the paper's, fetched once with pip) or a Keras HDF5
    /// or native .safetensors file.
    #[arg(long, value_name = "builtin|paper|FILE")]
    weights: Option<WeightsChoice>,
    /// Gender weights; without them no gender is given.
    #[arg(long)]
    gender_weights: Option<PathBuf>,
    /// Test-time augmentation of both classifiers.
    #[arg(long, value_enum, default_value_t = TtaChoice::None)]
    tta: TtaChoice,
}

impl PipelineArgs {
    /// Sizes the detector's thread pool and loads the cascade and models.
    pub fn load(&self) -> Result<mini_xception::faces::Pipeline, CliError> {
        self.detect.set_threads()?;
        pipeline(
            &self.detect.cascade_path()?,
            self.detect.detect_options(),
            self.weights.as_ref(),
            self.gender_weights.as_deref(),
            self.tta.into(),
        )
    }
}

impl DetectArgs {
    pub fn detect_options(&self) -> mini_xception::detect::DetectOptions {
        mini_xception::detect::DetectOptions {
            scale_factor: self.scale_factor,
            min_neighbors: self.min_neighbors,
            min_size: (self.min_size, self.min_size),
            max_size: None,
        }
    }

    /// The cascade file: the given one, else OpenCV's cached copy.
    pub fn cascade_path(&self) -> Result<PathBuf, CliError> {
        match &self.cascade {
            Some(path) => Ok(path.clone()),
            None => Ok(mini_xception::pretrained::face_cascade()?),
        }
    }

    /// Sizes rayon's global pool, which the detector runs on.
    pub fn set_threads(&self) -> Result<(), CliError> {
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

/// An error for the user: printed after `mini-xception: `.
pub type CliError = Box<dyn std::error::Error>;

/// Which weights a command runs: `--weights builtin` (the default of the
/// emotion model), `--weights paper` or `--weights FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsChoice {
    /// This project's emotion weights, inside the binary.
    Builtin,
    /// The paper's emotion weights, fetched once with pip and verified.
    Paper,
    /// A Keras HDF5 or native `.safetensors` file.
    File(PathBuf),
}

impl std::str::FromStr for WeightsChoice {
    type Err = std::convert::Infallible;

    /// `builtin` and `paper` name those weights; anything else is a file (a
    /// file named `paper` is `./paper`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "builtin" => WeightsChoice::Builtin,
            "paper" => WeightsChoice::Paper,
            path => WeightsChoice::File(PathBuf::from(path)),
        })
    }
}

/// Where a command's weights are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// The binary itself ([`mini_xception::models::builtin`]).
    Builtin,
    /// A file (the paper's, once fetched, is one too).
    File(PathBuf),
}

impl std::fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightsSource::Builtin => write!(f, "built-in {}", builtin::EMOTION_FILE),
            WeightsSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The weights `model` runs with: the given ones, else the built-in
/// emotion weights. Fetches the paper's file first if it is asked for and
/// not cached.
pub fn weights_source(
    model: ModelChoice,
    given: Option<&WeightsChoice>,
) -> Result<WeightsSource, CliError> {
    match (given, model) {
        (Some(WeightsChoice::File(path)), _) => Ok(WeightsSource::File(path.clone())),
        (Some(WeightsChoice::Builtin) | None, ModelChoice::Emotion) => Ok(WeightsSource::Builtin),
        (Some(WeightsChoice::Paper), ModelChoice::Emotion) => Ok(WeightsSource::File(
            mini_xception::pretrained::emotion_weights()?,
        )),
        (Some(WeightsChoice::Builtin | WeightsChoice::Paper), ModelChoice::Gender) => {
            Err("--weights builtin and --weights paper are emotion weights; give the gender model --weights FILE".into())
        }
        (None, ModelChoice::Gender) => Err("the gender model needs --weights FILE: no package ships its weights \
             (gender_mini_XCEPTION.21-0.95.hdf5 is in oarriaga/face_classification, trained_models/gender_models)"
            .into()),
    }
}

/// Reads model `M`'s weights from `source`. The built-in weights are the
/// emotion model's: for another model they are an error naming both.
pub fn load_source<M: InferenceModel>(source: &WeightsSource) -> Result<M::Weights, LoadError> {
    match source {
        WeightsSource::Builtin => builtin::weights::<M>(),
        WeightsSource::File(path) => load_weights::<M>(path),
    }
}

/// The faces pipeline: the cascade, the emotion model (the built-in weights
/// unless given) and, when weights are given, the gender model, both
/// averaging over `tta`.
pub fn pipeline(
    cascade: &Path,
    options: mini_xception::detect::DetectOptions,
    weights: Option<&WeightsChoice>,
    gender_weights: Option<&Path>,
    tta: Tta,
) -> Result<mini_xception::faces::Pipeline, CliError> {
    let cascade = mini_xception::detect::Cascade::from_xml_file(cascade)?;
    let emotion = emotion_classifier(weights, tta)?;
    let gender = gender_weights
        .map(|path| GenderClassifier::load(path).map(|g| g.with_tta(tta)))
        .transpose()?;
    Ok(mini_xception::faces::Pipeline::new(
        cascade, options, emotion, gender,
    ))
}

/// The classifier for `model` with its weights loaded, averaging over `tta`.
pub fn classifier(
    model: ModelChoice,
    weights: Option<&WeightsChoice>,
    tta: Tta,
) -> Result<Box<dyn FaceClassifier>, CliError> {
    Ok(match model {
        ModelChoice::Emotion => Box::new(emotion_classifier(weights, tta)?),
        ModelChoice::Gender => {
            let source = weights_source(model, weights)?;
            Box::new(
                GenderClassifier::with_weights(load_source::<gender::GenderMiniXception>(
                    &source,
                )?)?
                .with_tta(tta),
            )
        }
    })
}

/// The emotion classifier with the given weights (the built-in ones unless
/// given), averaging over `tta`.
fn emotion_classifier(
    weights: Option<&WeightsChoice>,
    tta: Tta,
) -> Result<EmotionClassifier, CliError> {
    let source = weights_source(ModelChoice::Emotion, weights)?;
    Ok(
        EmotionClassifier::with_weights(load_source::<emotion::MiniXception>(&source)?)?
            .with_tta(tta),
    )
}
