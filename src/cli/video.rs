//! `mini-xception video`: the faces pipeline on every frame of a video, with
//! each face's label smoothed over its last frames.

use super::CliError;
use super::faces::face_json;
use mini_xception::annotate::annotate;
use mini_xception::faces::Pipeline;
use mini_xception::preprocess::rgb_to_gray;
use mini_xception::runtime::argmax;
use mini_xception::video::{FrameReader, FrameWriter, LabelSmoother};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The settings of a run.
pub struct Settings<'a> {
    pub pipeline: Pipeline,
    pub input: &'a Path,
    pub out: Option<&'a Path>,
    pub json: bool,
}

pub fn run(settings: Settings<'_>) -> Result<ExitCode, CliError> {
    let mut pipeline = settings.pipeline;
    let mut reader = FrameReader::open(settings.input)?;
    let info = reader.info();
    let mut writer = settings
        .out
        .map(|out| FrameWriter::create(out, info.width, info.height, info.fps))
        .transpose()?;
    // Without an output video the frames' JSON lines are the result.
    let print_json = settings.json || writer.is_none();
    let mut smoother = LabelSmoother::new();
    let mut frame = reader.frame_buffer();
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let mut analysing = Duration::ZERO;
    let mut frames = 0u64;
    let mut faces_seen = 0usize;
    while reader.read_into(&mut frame)? {
        let analysis_start = Instant::now();
        let gray = rgb_to_gray(&frame);
        let mut faces = pipeline.analyze(&gray)?;
        analysing += analysis_start.elapsed();
        let observations: Vec<_> = faces
            .iter()
            .map(|face| (face.face_box, argmax(&face.emotion)))
            .collect();
        let smoothed = smoother.update(&observations);
        let labels = pipeline.emotion_labels();
        if print_json {
            let faces: Vec<Value> = faces
                .iter()
                .zip(&smoothed)
                .map(|(face, smoothed)| {
                    let mut object = face_json(&pipeline, face);
                    if let Some(map) = object.as_object_mut() {
                        map.insert("frame_label".into(), json!(face.label));
                        map.insert("label".into(), json!(labels[smoothed.label]));
                        map.insert("track".into(), json!(smoothed.track));
                    }
                    object
                })
                .collect();
            let line = json!({
                "frame": frames,
                "time": frames as f64 / info.fps,
                "faces": faces,
            });
            writeln!(stdout, "{line}")?;
        }
        if let Some(writer) = writer.as_mut() {
            for (face, smoothed) in faces.iter_mut().zip(&smoothed) {
                face.label = labels[smoothed.label];
            }
            annotate(&mut frame, &faces, labels, pipeline.gender_labels());
            writer.write(&frame)?;
        }
        frames += 1;
        faces_seen += faces.len();
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }
    stdout.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    if frames == 0 {
        eprintln!("mini-xception: {}: no frames", settings.input.display());
    } else {
        let per_frame_ms = 1e3 * analysing.as_secs_f64() / frames as f64;
        eprintln!(
            "mini-xception: {frames} frames ({}x{}, {faces_seen} faces) in {elapsed:.2} s: {:.1} frames/s; \
             detection and classification {per_frame_ms:.2} ms per frame ({:.1} frames/s)",
            info.width,
            info.height,
            frames as f64 / elapsed,
            1e3 / per_frame_ms.max(1e-9),
        );
    }
    if let Some(out) = settings.out {
        eprintln!("mini-xception: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
