//! The subcommands of `mini-xception`.

/// `print!` for a command's output: a closed standard output (the reader,
/// such as `head`, has had enough) is an error the command returns, which
/// `main` ends quietly, where `print!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `println!` for a command's output; see [`say!`].
macro_rules! sayln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

pub mod bench;
pub mod classify;
pub mod compile;
pub mod detect;
pub mod eval;
pub mod explain;
pub mod faces;
pub mod recalibrate;
pub mod train;
pub mod video;

use crate::ModelChoice;
use mini_xception::models::{
    EmotionClassifier, FaceClassifier, GenderClassifier, LoadError, Tta, builtin, emotion, gender,
    load_weights,
};
use mini_xception::runtime::InferenceModel;
use std::path::{Path, PathBuf};

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

/// Prints the model's summary table.
pub fn summary(model: ModelChoice) -> Result<std::process::ExitCode, CliError> {
    let table = match model {
        ModelChoice::Emotion => emotion::MiniXception::summary(),
        ModelChoice::Gender => gender::GenderMiniXception::summary(),
    };
    say!("{table}");
    Ok(std::process::ExitCode::SUCCESS)
}
