//! `mini-xception eval`: accuracy on one split of FER2013.

use crate::args::{CliError, ModelChoice, TtaChoice, WeightsChoice, classifier};
use indicatif::{ProgressBar, ProgressStyle};
use mini_xception::evaluate::{Evaluation, evaluate, ratio};
use mini_xception::fer2013;
use mini_xception::models::paz::MiniXceptionPaz;
use mini_xception::models::wide::MiniXceptionWide;
use mini_xception::models::{
    Classifier, Ensemble, FaceClassifier, Tta, WeightsFormat, load_weights,
};
use mini_xception::native;
use mini_xception::runtime::InferenceModel;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The arguments of `mini-xception eval`.
#[derive(clap::Args)]
pub struct Args {
    /// fer2013.csv or fer2013.csv.gz (Kaggle layout: emotion,pixels,Usage).
    #[arg(long)]
    pub data: PathBuf,
    /// The `Usage` value of the rows to evaluate.
    #[arg(long, default_value = "PublicTest")]
    pub split: String,
    /// `builtin` (the default: this project's weights, inside the binary),
    /// `paper` or a Keras HDF5 or native .safetensors file (of the
    /// emotion model, or of the 48x48 or wide model, which the file
    /// names). Given more than once, the ensemble of them all: the mean
    /// of their probabilities (e.g. a set of distillation teachers).
    #[arg(long, value_name = "builtin|paper|FILE")]
    pub weights: Vec<WeightsChoice>,
    /// One JSON object: split, total, correct, accuracy, per_class, confusion.
    #[arg(long)]
    pub json: bool,
    /// Test-time augmentation.
    #[arg(long, value_enum, default_value_t = TtaChoice::None)]
    pub tta: TtaChoice,
}

/// Evaluates the weights (or their ensemble) on the split and reports it.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let Args {
        data,
        split,
        weights,
        json,
        tta,
    } = args;
    let (data, split, tta) = (data.as_path(), split.as_str(), Tta::from(tta));
    let mut classifier = if weights.len() > 1 {
        let members = weights
            .iter()
            .map(|choice| emotion_member(choice, tta))
            .collect::<Result<Vec<_>, _>>()?;
        // Every member is a classifier of the emotions: the labels agree.
        Box::new(Ensemble::new(members).ok_or("an ensemble needs members of the same labels")?)
    } else {
        match weights.first() {
            Some(choice) => emotion_member(choice, tta)?,
            None => classifier(ModelChoice::Emotion, None, tta)?,
        }
    };
    let rows = fer2013::read(data, Some(split))?;
    if rows.is_empty() {
        return Err(format!("{}: no rows with Usage `{split}`", data.display()).into());
    }
    let progress = ProgressBar::new(rows.len() as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    progress.set_prefix(split.to_string());
    let evaluation = evaluate(classifier.as_mut(), &rows, || progress.inc(1))?;
    progress.finish_and_clear();
    if json {
        sayln!("{}", report_json(split, &evaluation));
    } else {
        say!("{}", report_text(split, &evaluation));
    }
    Ok(ExitCode::SUCCESS)
}

/// The classifier of `choice`'s weights: the emotion model, or another
/// compiled model with the emotion labels (the 48x48 one, the wide one) when
/// a native weights file names it.
fn emotion_member(choice: &WeightsChoice, tta: Tta) -> Result<Box<dyn FaceClassifier>, CliError> {
    fn of<M: InferenceModel + 'static>(
        path: &Path,
        tta: Tta,
    ) -> Result<Box<dyn FaceClassifier>, CliError> {
        Ok(Box::new(
            Classifier::<M>::with_weights(load_weights::<M>(path)?)?.with_tta(tta),
        ))
    }
    if let WeightsChoice::File(path) = choice
        && matches!(WeightsFormat::of_path(path), WeightsFormat::Native)
    {
        match native::model_of(path)?.as_deref() {
            Some(name) if name == MiniXceptionWide::NAME => {
                return of::<MiniXceptionWide>(path, tta);
            }
            Some(name) if name == MiniXceptionPaz::NAME => return of::<MiniXceptionPaz>(path, tta),
            _ => {}
        }
    }
    classifier(ModelChoice::Emotion, Some(choice), tta)
}

fn report_json(split: &str, evaluation: &Evaluation) -> Value {
    let per_class: Map<String, Value> = evaluation
        .labels
        .iter()
        .zip(evaluation.per_class())
        .map(|(label, (total, correct))| {
            (
                label.to_string(),
                json!({ "total": total, "correct": correct, "accuracy": ratio(correct, total) }),
            )
        })
        .collect();
    json!({
        "split": split,
        "total": evaluation.total(),
        "correct": evaluation.correct(),
        "accuracy": evaluation.accuracy(),
        "labels": evaluation.labels,
        "per_class": per_class,
        "confusion": evaluation.confusion,
    })
}

fn report_text(split: &str, evaluation: &Evaluation) -> String {
    let mut out = format!(
        "{split}: {} of {} correct, accuracy {:.2}%\n\nper class:\n",
        evaluation.correct(),
        evaluation.total(),
        100.0 * evaluation.accuracy()
    );
    for (label, (total, correct)) in evaluation.labels.iter().zip(evaluation.per_class()) {
        out += &format!(
            "  {label:<9} {:>6.2}%  ({correct} of {total})\n",
            100.0 * ratio(correct, total)
        );
    }
    out += "\nconfusion (rows: true label, columns: predicted):\n";
    out += &format!("  {:<9}", "");
    for label in &evaluation.labels {
        out += &format!("{:>9}", label);
    }
    out += "\n";
    for (label, row) in evaluation.labels.iter().zip(&evaluation.confusion) {
        out += &format!("  {label:<9}");
        for count in row {
            out += &format!("{count:>9}");
        }
        out += "\n";
    }
    out
}
