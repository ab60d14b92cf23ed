//! `mini-xception classify`: each image is one face crop.

use super::{CliError, WeightsChoice, classifier};
use crate::ModelChoice;
use mini_xception::models::Tta;
use mini_xception::preprocess::load_gray;
use mini_xception::runtime::argmax;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// Classifies every image; an unreadable one is reported and skipped. Fails
/// (exit code 1) when any image failed.
pub fn run(
    model: ModelChoice,
    weights: Option<&WeightsChoice>,
    tta: Tta,
    json: bool,
    images: &[PathBuf],
) -> Result<ExitCode, CliError> {
    let mut classifier = classifier(model, weights, tta)?;
    let labels = classifier.labels();
    let mut failed = 0;
    for path in images {
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
