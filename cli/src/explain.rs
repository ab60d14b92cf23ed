//! `mini-xception explain`: the saliency of each face's predicted (or
//! given) label, drawn as a PNG beside the input.

use crate::args::{CliError, DetectArgs, ModelChoice, WeightsChoice, load_source, weights_source};
use mini_xception::detect::{Cascade, DetectOptions};
use mini_xception::explain::{Explainer, Method};
use mini_xception::faces::{EMOTION_OFFSETS, face_crop};
use mini_xception::models::{emotion::MiniXception, gender::GenderMiniXception};
use mini_xception::preprocess::load_gray;
use mini_xception::runtime::train::TrainableModel;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The arguments of `mini-xception explain`.
#[derive(clap::Args)]
pub struct Args {
    /// The model to explain.
    #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
    pub model: ModelChoice,
    /// `builtin` (the emotion model's default), `paper` or a Keras HDF5 or
    /// native .safetensors file.
    #[arg(long, value_name = "builtin|paper|FILE")]
    pub weights: Option<WeightsChoice>,
    /// Guided back-propagation (the paper's) or Grad-CAM.
    #[arg(long, value_enum, default_value_t = MethodChoice::GuidedBackprop)]
    pub method: MethodChoice,
    /// Explain this label (a name such as `happy`, or an index) instead of
    /// the predicted one.
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
    /// Write the PNGs to DIR instead of beside the images.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Find the faces of each photo (as `faces` does) and explain each,
    /// as <name>.face<i>.<method>.png; without it each image is one face crop.
    #[arg(long)]
    pub faces: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
    /// The images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// The saliency method on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodChoice {
    /// Guided back-propagation, as the paper: pixel-level detail.
    GuidedBackprop,
    /// Grad-CAM on the last module's output: coarse regions.
    GradCam,
}

impl From<MethodChoice> for Method {
    fn from(choice: MethodChoice) -> Self {
        match choice {
            MethodChoice::GuidedBackprop => Method::GuidedBackprop,
            MethodChoice::GradCam => Method::GradCam,
        }
    }
}

/// What `explain` was asked for, with the cascade loaded.
struct Settings<'a> {
    model: ModelChoice,
    weights: Option<&'a WeightsChoice>,
    method: Method,
    /// A label name or index; the predicted label when absent.
    label: Option<&'a str>,
    /// Where the PNGs go (default: beside each input).
    out: Option<&'a Path>,
    /// Find the faces of each photo with this cascade and options, instead
    /// of taking each image as one face crop.
    faces: Option<(Cascade, DetectOptions)>,
    images: &'a [PathBuf],
}

/// Explains every image (or every face of it); an unreadable one is
/// reported and skipped. Fails (exit code 1) when any image failed.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let faces = if args.faces {
        args.detect.set_threads()?;
        let cascade = Cascade::from_xml_file(&args.detect.cascade_path()?)?;
        Some((cascade, args.detect.detect_options()))
    } else {
        None
    };
    let settings = Settings {
        model: args.model,
        weights: args.weights.as_ref(),
        method: args.method.into(),
        label: args.label.as_deref(),
        out: args.out.as_deref(),
        faces,
        images: &args.images,
    };
    match settings.model {
        ModelChoice::Emotion => run_model::<MiniXception>(settings),
        ModelChoice::Gender => run_model::<GenderMiniXception>(settings),
    }
}

/// `text` as one of `labels`, by name or index.
fn parse_label(text: &str, labels: &[&str]) -> Result<usize, CliError> {
    labels
        .iter()
        .position(|l| l.eq_ignore_ascii_case(text))
        .or_else(|| text.parse::<usize>().ok().filter(|&i| i < labels.len()))
        .ok_or_else(|| {
            format!(
                "--label {text}: not one of the model's labels ({}) or their indices 0 to {}",
                labels.join(", "),
                labels.len().saturating_sub(1)
            )
            .into()
        })
}

fn run_model<M: TrainableModel>(settings: Settings<'_>) -> Result<ExitCode, CliError> {
    let label = settings
        .label
        .map(|text| parse_label(text, M::CLASS_LABELS))
        .transpose()?;
    let source = weights_source(settings.model, settings.weights)?;
    let weights = load_source::<M>(&source)?;
    let mut explainer = Explainer::<M>::new(&weights).map_err(|e| format!("{source}: {e}"))?;
    if let Some(out) = settings.out {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let mut failed = 0;
    for image in settings.images {
        let outcome = explain_image(&mut explainer, &settings, label, image);
        if let Err(error) = outcome {
            eprintln!("mini-xception: {}: {error}", image.display());
            failed += 1;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Explains each face of `image` (or the image as one face), printing one
/// line per face.
fn explain_image<M: TrainableModel>(
    explainer: &mut Explainer<M>,
    settings: &Settings<'_>,
    label: Option<usize>,
    image: &Path,
) -> Result<(), CliError> {
    let gray = load_gray(image)?;
    let crops = match &settings.faces {
        None => vec![(None, gray)],
        Some((cascade, options)) => {
            let boxes = cascade.detect(&gray, options)?;
            if boxes.is_empty() {
                sayln!("{}: no faces", image.display());
            }
            boxes
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let face = face_crop(&gray, b, EMOTION_OFFSETS)?;
                    Some((Some((i, *b)), face))
                })
                .collect()
        }
    };
    let stem = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let directory = match settings.out {
        Some(out) => out.to_path_buf(),
        None => image.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    for (place, face) in crops {
        let explanation = explainer.explain(&face, settings.method, label)?;
        let name = match place {
            Some((i, _)) => format!("{stem}.face{i}.{}.png", settings.method.name()),
            None => format!("{stem}.{}.png", settings.method.name()),
        };
        let written = directory.join(name);
        explanation
            .render()
            .save(&written)
            .map_err(|e| format!("{}: {e}", written.display()))?;
        let probability = explanation
            .probabilities
            .get(explanation.map.label)
            .copied()
            .unwrap_or(0.0);
        let place = match place {
            Some((_, b)) => format!(" [{} {} {} {}]", b.x, b.y, b.width, b.height),
            None => String::new(),
        };
        sayln!(
            "{}{place}: {} ({:.1}%) -> {}",
            image.display(),
            explanation.label,
            100.0 * probability,
            written.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_taken_by_name_in_any_case_or_by_index() {
        let labels = ["angry", "happy"];
        assert_eq!(parse_label("HAPPY", &labels).ok(), Some(1));
        assert_eq!(parse_label("0", &labels).ok(), Some(0));
        let error = parse_label("2", &labels).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("--label 2: not one of the model's labels (angry, happy) or their indices 0 to 1")
        );
    }
}
