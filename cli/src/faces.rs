//! `mini-xception faces`: every face of each photo, with its emotion and gender.

use crate::args::{CliError, PipelineArgs};
use mini_xception::faces::{Face, Pipeline};
use mini_xception::preprocess::{load_image, to_gray};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The arguments of `mini-xception faces`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// One JSON object per image and line: path, faces (box, label, emotion, gender).
    #[arg(long)]
    pub json: bool,
    /// Write a copy of each photo with boxes and labels drawn, as
    /// DIR/<name>_faces.png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The photos.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Finds and labels the faces of every photo; an unreadable one is reported
/// and skipped. Fails (exit code 1) when any photo failed.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut pipeline = args.pipeline.load()?;
    let mut failed = 0;
    for path in &args.images {
        // Decoded once: the gray copy is what the demo analyses, the colour
        // one is what gets drawn on.
        let analyzed = load_image(path)
            .map_err(CliError::from)
            .and_then(|image| Ok((pipeline.analyze(&to_gray(&image))?, image)));
        let (faces, image) = match analyzed {
            Ok(analyzed) => analyzed,
            Err(error) => {
                eprintln!("mini-xception: {}: {error}", path.display());
                failed += 1;
                continue;
            }
        };
        if let Some(out) = &args.out {
            match write_annotated(image, path, out, &faces, &pipeline) {
                Ok(written) => eprintln!("mini-xception: wrote {}", written.display()),
                Err(error) => {
                    eprintln!("mini-xception: {}: {error}", path.display());
                    failed += 1;
                }
            }
        }
        if args.json {
            let faces: Vec<Value> = faces
                .iter()
                .map(|face| face_json(pipeline.emotion_labels(), pipeline.gender_labels(), face))
                .collect();
            sayln!(
                "{}",
                json!({ "path": path.display().to_string(), "faces": faces })
            );
        } else {
            sayln!("{}: {} faces", path.display(), faces.len());
            for face in &faces {
                let b = face.face_box;
                let gender = match (&face.gender, pipeline.gender_labels()) {
                    (Some(probabilities), Some(labels)) => {
                        let top = mini_xception::runtime::argmax(probabilities);
                        format!(", {} ({:.0}%)", labels[top], 100.0 * probabilities[top])
                    }
                    _ => String::new(),
                };
                let top = face.emotion.iter().copied().fold(0.0f32, f32::max);
                sayln!(
                    "  [{} {} {} {}] {} ({:.0}%){gender}",
                    b.x,
                    b.y,
                    b.width,
                    b.height,
                    face.label,
                    100.0 * top
                );
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Draws the faces on a colour copy of the photo read from `path` and saves it
/// as `<out>/<name>_faces.png`.
fn write_annotated(
    image: image::DynamicImage,
    path: &Path,
    out: &Path,
    faces: &[Face],
    pipeline: &Pipeline,
) -> Result<PathBuf, CliError> {
    let mut image = image.into_rgb8();
    mini_xception::annotate::annotate(
        &mut image,
        faces,
        pipeline.emotion_labels(),
        pipeline.gender_labels(),
    );
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let name = path
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned());
    let target = out.join(format!("{name}_faces.png"));
    image
        .save(&target)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// Labels to probabilities, in label order, as shortest f32 decimals.
pub(super) fn probabilities(labels: &[&str], values: &[f32]) -> Value {
    let map: Map<String, Value> = labels
        .iter()
        .zip(values)
        .map(|(label, &p)| {
            (
                label.to_string(),
                p.to_string()
                    .parse::<f64>()
                    .map_or(Value::Null, |v| json!(v)),
            )
        })
        .collect();
    Value::Object(map)
}

/// A face as JSON: `box`, `label`, `emotion` and, when known, `gender`,
/// with the labels of a pipeline's classifiers.
pub(super) fn face_json(
    emotion_labels: &[&str],
    gender_labels: Option<&[&'static str]>,
    face: &Face,
) -> Value {
    let b = face.face_box;
    let mut object = json!({
        "box": [b.x, b.y, b.width, b.height],
        "label": face.label,
        "emotion": probabilities(emotion_labels, &face.emotion),
    });
    if let (Some(values), Some(labels), Some(map)) =
        (&face.gender, gender_labels, object.as_object_mut())
    {
        map.insert("gender".into(), probabilities(labels, values));
    }
    object
}
