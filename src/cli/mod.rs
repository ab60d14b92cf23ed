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
pub mod train;
pub mod video;

use crate::ModelChoice;
use mini_xception::models::{
    EmotionClassifier, FaceClassifier, GenderClassifier, Tta, emotion, gender,
};
use std::path::{Path, PathBuf};

/// An error for the user: printed after `mini-xception: `.
pub type CliError = Box<dyn std::error::Error>;

/// Which weights a command runs: `--weights paper` or `--weights FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsChoice {
    /// The paper's emotion weights, fetched once with pip and verified.
    Paper,
    /// A Keras HDF5 or native `.safetensors` file.
    File(PathBuf),
}

impl std::str::FromStr for WeightsChoice {
    type Err = std::convert::Infallible;

    /// `paper` names the paper's weights; anything else is a file (a file
    /// named `paper` is `./paper`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "paper" => WeightsChoice::Paper,
            path => WeightsChoice::File(PathBuf::from(path)),
        })
    }
}

/// The weights file to use: the given one, else the paper's emotion weights.
pub fn weights_path(
    model: ModelChoice,
    given: Option<&WeightsChoice>,
) -> Result<PathBuf, CliError> {
    match (given, model) {
        (Some(WeightsChoice::File(path)), _) => Ok(path.clone()),
        (Some(WeightsChoice::Paper) | None, ModelChoice::Emotion) => {
            Ok(mini_xception::pretrained::emotion_weights()?)
        }
        (Some(WeightsChoice::Paper), ModelChoice::Gender) => {
            Err("--weights paper: the paper's weights are for the emotion model; give the gender model --weights FILE".into())
        }
        (None, ModelChoice::Gender) => Err("the gender model needs --weights FILE: no package ships its weights \
             (gender_mini_XCEPTION.21-0.95.hdf5 is in oarriaga/face_classification, trained_models/gender_models)"
            .into()),
    }
}

/// The faces pipeline: the cascade, the emotion model (the paper's weights
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
    let emotion =
        EmotionClassifier::load(&weights_path(ModelChoice::Emotion, weights)?)?.with_tta(tta);
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
    let path = weights_path(model, weights)?;
    Ok(match model {
        ModelChoice::Emotion => Box::new(EmotionClassifier::load(&path)?.with_tta(tta)),
        ModelChoice::Gender => Box::new(GenderClassifier::load(&path)?.with_tta(tta)),
    })
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
