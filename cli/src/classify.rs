//! `mini-xception classify`: each image is one face crop.

use crate::args::{CliError, ModelChoice, TtaChoice, WeightsChoice, classifier};
use mini_xception::models::Tta;
use mini_xception::preprocess::load_gray;
use mini_xception::runtime::argmax;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// The arguments of `mini-xception classify`.
#[derive(clap::Args)]
pub struct Args {
    /// The model to run.
    #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
    pub model: ModelChoice,
    /// `builtin` (this project's emotion weights, inside the binary; the
    /// emotion model's default), `paper` (the paper's emotion weights,
    /// fetched once with pip and cached) or a Keras HDF5 or native
    /// .safetensors file.
    #[arg(long, value_name = "builtin|paper|FILE")]
    pub weights: Option<WeightsChoice>,
    /// One JSON object per image and line: path, label, probs.
    #[arg(long)]
    pub json: bool,
    /// Test-time augmentation.
    #[arg(long, value_enum, default_value_t = TtaChoice::None)]
    pub tta: TtaChoice,
    /// The images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Classifies every image; an unreadable one is reported and skipped. Fails
/// (exit code 1) when any image failed.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let Args {
        model,
        weights,
        json,
        tta,
        images,
    } = args;
    let mut classifier = classifier(model, weights.as_ref(), Tta::from(tta))?;
    let labels = classifier.labels();
    let mut failed = 0;
    for path in &images {
        let outcome = load_gray(path).map_err(CliError::from).and_then(|face| {
            classifier
                .classify(&face)
                .map_err(|e| format!("{}: {e}", path.display()).into())
        });
        let probabilities = match outcome {
            Ok(probabilities) => probabilities,
            Err(error) => {
                eprintln!("mini-xception: {error}");
                failed += 1;
                continue;
            }
        };
        let top = argmax(&probabilities);
        if json {
            let probs: Map<String, Value> = labels
                .iter()
                .zip(&probabilities)
                .map(|(l, &p)| (l.to_string(), shortest(p)))
                .collect();
            sayln!(
                "{}",
                json!({ "path": path.display().to_string(), "label": labels[top], "probs": probs })
            );
        } else {
            let all: Vec<String> = labels
                .iter()
                .zip(&probabilities)
                .map(|(l, p)| format!("{l} {p:.3}"))
                .collect();
            sayln!(
                "{}: {} ({:.1}%)  [{}]",
                path.display(),
                labels[top],
                100.0 * probabilities[top],
                all.join(", ")
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `p` as the shortest decimal that reads back as the same f32, so JSON shows
/// `0.92758763`, not the f64 widening `0.927587628364563`.
fn shortest(p: f32) -> Value {
    p.to_string()
        .parse::<f64>()
        .map_or(Value::Null, |v| json!(v))
}
