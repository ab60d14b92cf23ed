//! `mini-xception video`: the faces pipeline on every frame of a video, with
//! each face's label smoothed over its last frames.

use crate::args::{CliError, PipelineArgs};
use crate::faces::face_json;
use mini_xception::annotate::annotate;
use mini_xception::runtime::argmax;
use mini_xception::video::{
    AnalyzedFrame, FrameReader, FrameWriter, LabelSmoother, analyze_frames,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The arguments of `mini-xception video`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Write the video with boxes and labels drawn (format from the
    /// extension, encoded by ffmpeg).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object per frame and line (the default without
    /// --out): frame, time, faces (box, track, label, frame_label,
    /// emotion, gender).
    #[arg(long)]
    pub json: bool,
    /// The video (any format ffmpeg reads).
    pub input: PathBuf,
}

/// Labels the faces of every frame, printing each frame's JSON line or
/// writing the annotated video.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let settings = args;
    let mut pipeline = settings.pipeline.load()?;
    let mut reader = FrameReader::open(&settings.input)?;
    let info = reader.info();
    let mut writer = settings
        .out
        .as_deref()
        .map(|out| FrameWriter::create(out, info.width, info.height, info.fps))
        .transpose()?;
    // Without an output video the frames' JSON lines are the result.
    let print_json = settings.json || writer.is_none();
    let mut smoother = LabelSmoother::new();
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let mut analysing = Duration::ZERO;
    let mut frames = 0u64;
    let mut faces_seen = 0usize;
    // `--threads N` sized rayon's pool: N frames are analysed at once.
    let workers = rayon::current_num_threads();
    let labels = pipeline.emotion_labels();
    let gender_labels = pipeline.gender_labels();
    analyze_frames(&mut reader, &mut pipeline, workers, |analysed| {
        let AnalyzedFrame {
            index,
            frame,
            mut faces,
            analysis,
        } = analysed;
        analysing += analysis;
        let observations: Vec<_> = faces
            .iter()
            .map(|face| (face.face_box, argmax(&face.emotion)))
            .collect();
        let smoothed = smoother.update(&observations);
        if print_json {
            let faces: Vec<Value> = faces
                .iter()
                .zip(&smoothed)
                .map(|(face, smoothed)| {
                    let mut object = face_json(labels, gender_labels, face);
                    if let Some(map) = object.as_object_mut() {
                        map.insert("frame_label".into(), json!(face.label));
                        map.insert("label".into(), json!(labels[smoothed.label]));
                        map.insert("track".into(), json!(smoothed.track));
                    }
                    object
                })
                .collect();
            let line = json!({
                "frame": index,
                "time": index as f64 / info.fps,
                "faces": faces,
            });
            writeln!(stdout, "{line}")?;
        }
        if let Some(writer) = writer.as_mut() {
            for (face, smoothed) in faces.iter_mut().zip(&smoothed) {
                face.label = labels[smoothed.label];
            }
            annotate(frame, &faces, labels, gender_labels);
            writer.write(frame)?;
        }
        frames += 1;
        faces_seen += faces.len();
        Ok::<(), CliError>(())
    })?;
    if let Some(writer) = writer {
        writer.finish()?;
    }
    stdout.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    if frames == 0 {
        eprintln!("mini-xception: {}: no frames", settings.input.display());
    } else {
        let per_frame_ms = 1e3 * analysing.as_secs_f64() / frames as f64;
        // With several workers a frame's time is its latency, not the rate.
        let analysis = if workers == 1 {
            format!(
                "{per_frame_ms:.2} ms per frame ({:.1} frames/s)",
                1e3 / per_frame_ms.max(1e-9)
            )
        } else {
            format!("{per_frame_ms:.2} ms per frame on each of {workers} workers")
        };
        eprintln!(
            "mini-xception: {frames} frames ({}x{}, {faces_seen} faces) in {elapsed:.2} s: {:.1} frames/s; \
             detection and classification {analysis}",
            info.width,
            info.height,
            frames as f64 / elapsed,
        );
    }
    if let Some(out) = &settings.out {
        eprintln!("mini-xception: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
