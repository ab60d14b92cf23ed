//! `mini-xception video` on short clips panned across the reference photos
//! with the `ffmpeg` command-line tool (which the command itself needs too).
//!
//! The clips are made here, in a temporary folder, so no video is kept in the
//! repository.

#[path = "../../tests/support/mod.rs"]
mod support;

use image::GrayImage;
use mini_xception::detect::{Cascade, DetectOptions, FaceBox};
use mini_xception::faces::Pipeline;
use mini_xception::models::EmotionClassifier;
use mini_xception::preprocess::load_gray;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::shared;

const FRAME_WIDTH: u32 = 640;
const FRAME_HEIGHT: u32 = 480;

/// A pan: where frame `n`'s top-left corner lies in the photo.
struct Pan {
    frames: u32,
    /// ffmpeg `crop` expressions of `n`, and the same offsets in Rust.
    x_expression: &'static str,
    y_expression: &'static str,
    offset: fn(u32) -> (u32, u32),
}

/// Makes `frames` frames of a 640x480 window moving over `photo`, at 10
/// frames per second, with the lossless FFV1 codec in RGB, so that each frame
/// is exactly a piece of ffmpeg's decoding of the photo.
fn make_clip(photo: &Path, pan: &Pan, target: &Path) {
    let crop = format!(
        "crop={FRAME_WIDTH}:{FRAME_HEIGHT}:'{}':'{}'",
        pan.x_expression, pan.y_expression
    );
    // `-framerate` on the input keeps one output frame per input frame, so
    // `n` in the crop expressions is the output frame's number.
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i"])
        .arg(photo)
        .args(["-vf", &crop, "-frames:v", &pan.frames.to_string()])
        .args(["-c:v", "ffv1", "-pix_fmt", "bgr0"])
        .arg(target)
        .status()
        .expect(
            "the video tests need the ffmpeg command-line tool: run the tests with \
             `bash scripts/test.sh`, which installs it, or apt-get install ffmpeg",
        );
    assert!(
        status.success(),
        "ffmpeg could not make {}",
        target.display()
    );
}

fn cascade_path() -> PathBuf {
    shared("models/haarcascade_frontalface_default.xml")
}

fn emotion_weights() -> PathBuf {
    shared("models/fer2013_mini_XCEPTION.102-0.66.hdf5")
}

fn run_video(args: &[&str], clip: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini-xception"))
        .arg("video")
        .arg("--cascade")
        .arg(cascade_path())
        .arg("--weights")
        .arg(emotion_weights())
        .args(args)
        .arg(clip)
        .output()
        .unwrap()
}

#[derive(Deserialize)]
struct FrameLine {
    frame: u32,
    time: f64,
    faces: Vec<FaceLine>,
}

#[derive(Deserialize)]
struct FaceLine {
    #[serde(rename = "box")]
    face_box: [u32; 4],
    track: u64,
    label: String,
    frame_label: String,
    emotion: BTreeMap<String, f32>,
}

fn frame_lines(output: &Output) -> Vec<FrameLine> {
    assert!(
        output.status.success(),
        "video failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[derive(Deserialize)]
struct Case {
    kind: String,
    source_image: Option<String>,
    face_box_xywh: Option<[u32; 4]>,
    label: String,
    probs: Vec<f32>,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn keras_cases() -> Cases {
    let text = std::fs::read_to_string(shared("reference/emotion_cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The Keras faces of one photo: box, label and probabilities.
fn keras_faces<'a>(cases: &'a Cases, photo: &str) -> Vec<&'a Case> {
    cases
        .cases
        .iter()
        .filter(|case| {
            case.kind == "face"
                && case
                    .source_image
                    .as_deref()
                    .is_some_and(|source| source.ends_with(photo))
        })
        .collect()
}

fn iou(a: [u32; 4], b: [u32; 4]) -> f64 {
    let left = a[0].max(b[0]);
    let top = a[1].max(b[1]);
    let right = (a[0] + a[2]).min(b[0] + b[2]);
    let bottom = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = f64::from(right.saturating_sub(left)) * f64::from(bottom.saturating_sub(top));
    inter / (f64::from(a[2] * a[3]) + f64::from(b[2] * b[3]) - inter)
}

/// A frame's box moved back into the photo's coordinates.
fn in_photo(face_box: [u32; 4], (x, y): (u32, u32)) -> [u32; 4] {
    [face_box[0] + x, face_box[1] + y, face_box[2], face_box[3]]
}

const ROBOCUP_PAN: Pan = Pan {
    frames: 30,
    x_expression: "200+n*16",
    y_expression: "300",
    offset: |n| (200 + n * 16, 300),
};

/// The clip from the PNG photo is lossless end to end, so the command's
/// per-frame output must be exactly the pipeline's on the same piece of the
/// photo cut out in Rust: same boxes, bit-identical probabilities. (A shifted
/// image gives the detector a shifted scan grid, so the boxes are not those
/// of the whole photo, and the probabilities not Keras' for it: the faces
/// test holds those to 1e-5.) The faces Keras is sure of keep its label.
#[test]
fn every_frame_of_a_lossless_clip_matches_the_pipeline_and_keras() {
    let folder = tempfile::tempdir().unwrap();
    let photo = shared("reference/images/robocup_team.png");
    let clip = folder.path().join("robocup_pan.mkv");
    make_clip(&photo, &ROBOCUP_PAN, &clip);
    let frames = frame_lines(&run_video(&["--json"], &clip));
    assert_eq!(
        frames.iter().map(|f| f.frame).collect::<Vec<_>>(),
        (0..ROBOCUP_PAN.frames).collect::<Vec<_>>()
    );
    assert!((frames[3].time - 0.3).abs() < 1e-9, "10 frames per second");

    let cascade = Cascade::from_xml_file(&cascade_path()).unwrap();
    let emotion = EmotionClassifier::load(&emotion_weights()).unwrap();
    let mut pipeline = Pipeline::new(cascade, DetectOptions::default(), emotion, None);
    let labels = pipeline.emotion_labels();
    let gray = load_gray(&photo).unwrap();
    let cases = keras_cases();
    let keras = keras_faces(&cases, "robocup_team.png");
    let mut faces_seen = 0;
    let mut keras_matches = 0;
    for frame in &frames {
        let (x, y) = (ROBOCUP_PAN.offset)(frame.frame);
        let piece = GrayImage::from_fn(FRAME_WIDTH, FRAME_HEIGHT, |i, j| {
            *gray.get_pixel(x + i, y + j)
        });
        let expected = pipeline.analyze(&piece).unwrap();
        assert_eq!(expected.len(), frame.faces.len(), "frame {}", frame.frame);
        for (face, want) in frame.faces.iter().zip(&expected) {
            let FaceBox {
                x: bx,
                y: by,
                width,
                height,
            } = want.face_box;
            assert_eq!(face.face_box, [bx, by, width, height]);
            let got: Vec<f32> = labels.iter().map(|l| face.emotion[*l]).collect();
            assert_eq!(got, want.emotion, "frame {}: bit-identical", frame.frame);
            assert_eq!(face.frame_label, want.label);
            faces_seen += 1;
            let photo_box = in_photo(face.face_box, (x, y));
            let sure_case = keras.iter().find(|case| {
                case.probs.iter().any(|&p| p >= 0.85)
                    && case
                        .face_box_xywh
                        .is_some_and(|keras_box| iou(keras_box, photo_box) >= 0.5)
            });
            if let Some(case) = sure_case {
                assert_eq!(face.label, case.label, "frame {}", frame.frame);
                keras_matches += 1;
            }
        }
    }
    assert!(faces_seen >= 40, "only {faces_seen} faces in the clip");
    assert!(
        keras_matches >= 10,
        "only {keras_matches} sightings of the faces Keras is sure of"
    );
}

/// A pan across the four faces of `emotion_classification.jpg`, first along
/// the top pair, then along the bottom pair. Every face Keras is sure of
/// (top probability at least 0.9: happy, surprise and angry) must be found
/// in most frames that show it whole, followed as one track, and shown with
/// Keras' label. ffmpeg decodes the JPEG itself, slightly differently from
/// the photo decoder behind the Keras cases, so the labels are compared, not
/// the probabilities.
#[test]
fn faces_in_a_panned_clip_keep_their_track_and_keras_label() {
    const PAN: Pan = Pan {
        frames: 40,
        x_expression: "mod(n,20)*18",
        y_expression: "if(lt(n,20),60,480)",
        offset: |n| ((n % 20) * 18, if n < 20 { 60 } else { 480 }),
    };
    let folder = tempfile::tempdir().unwrap();
    let photo = shared("reference/images/emotion_classification.jpg");
    let clip = folder.path().join("emotion_pan.mkv");
    make_clip(&photo, &PAN, &clip);
    let frames = frame_lines(&run_video(&[], &clip));
    assert_eq!(frames.len(), PAN.frames as usize);

    let cases = keras_cases();
    let sure: Vec<&Case> = keras_faces(&cases, "emotion_classification.jpg")
        .into_iter()
        .filter(|case| case.probs.iter().any(|&p| p >= 0.9))
        .collect();
    let sure_labels: BTreeSet<&str> = sure.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(sure_labels, BTreeSet::from(["angry", "happy", "surprise"]));

    for case in sure {
        let Some(keras_box) = case.face_box_xywh else {
            panic!("a face case without a box");
        };
        let mut shown_whole = 0;
        let mut found = 0;
        let mut tracks = BTreeSet::new();
        for frame in &frames {
            let (x, y) = (PAN.offset)(frame.frame);
            let whole = keras_box[0] >= x
                && keras_box[1] >= y
                && keras_box[0] + keras_box[2] <= x + FRAME_WIDTH
                && keras_box[1] + keras_box[3] <= y + FRAME_HEIGHT;
            if whole {
                shown_whole += 1;
            }
            for face in &frame.faces {
                if iou(in_photo(face.face_box, (x, y)), keras_box) >= 0.5 {
                    found += 1;
                    tracks.insert(face.track);
                    assert_eq!(
                        face.label, case.label,
                        "frame {}: the {} face",
                        frame.frame, case.label
                    );
                }
            }
        }
        assert!(
            shown_whole >= 5 && 2 * found >= shown_whole,
            "the {} face: found in {found} frames of the {shown_whole} that show it",
            case.label
        );
        assert_eq!(
            tracks.len(),
            1,
            "the {} face: tracks {tracks:?}",
            case.label
        );
    }
}

/// Frames analysed several at a time, by more workers than this machine has
/// cores too, give the same lines in the same order as one at a time.
#[test]
fn the_output_does_not_depend_on_the_thread_count() {
    const PAN: Pan = Pan {
        frames: 24,
        x_expression: "n*25",
        y_expression: "120",
        offset: |n| (n * 25, 120),
    };
    let folder = tempfile::tempdir().unwrap();
    let clip = folder.path().join("angry_men_pan.mkv");
    make_clip(&shared("reference/images/12_angry_men.jpg"), &PAN, &clip);
    let one = run_video(&["--threads", "1"], &clip);
    let frames = frame_lines(&one);
    assert_eq!(frames.len(), PAN.frames as usize);
    let faces: usize = frames.iter().map(|frame| frame.faces.len()).sum();
    assert!(faces >= 2 * frames.len(), "only {faces} faces in the clip");
    for threads in ["2", "5"] {
        let several = run_video(&["--threads", threads], &clip);
        assert!(several.status.success());
        assert!(
            several.stdout == one.stdout,
            "--threads {threads} gives other lines than --threads 1"
        );
    }
}

/// `--out` writes a video of the same size and length, with the boxes drawn.
#[test]
fn out_writes_the_annotated_video() {
    let folder = tempfile::tempdir().unwrap();
    let clip = folder.path().join("robocup_pan.mkv");
    make_clip(
        &shared("reference/images/robocup_team.png"),
        &ROBOCUP_PAN,
        &clip,
    );
    let annotated = folder.path().join("annotated.mkv");
    let output = run_video(&["--out", annotated.to_str().unwrap(), "--json"], &clip);
    let frames = frame_lines(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("30 frames") && stderr.contains("frames/s"),
        "the run reports its speed: {stderr}"
    );
    let info = mini_xception::video::probe(&annotated).unwrap();
    assert_eq!((info.width, info.height), (FRAME_WIDTH, FRAME_HEIGHT));
    assert!((info.fps - 10.0).abs() < 1e-6);

    // Read it back through the library's own reader: every frame is there,
    // and the left edge of the first face's box has the happy colour (within
    // what lossy H.264 in yuv420p keeps of it), where the clip has a face.
    let mut reader = mini_xception::video::FrameReader::open(&annotated).unwrap();
    let mut frame = reader.frame_buffer();
    let mut count = 0;
    while reader.read_into(&mut frame).unwrap() {
        if count == 0 {
            let face = &frames[0].faces[0];
            assert_eq!(face.label, "happy");
            let [x, y, _, h] = face.face_box;
            let pixel = frame.get_pixel(x, y + h / 2).0;
            let happy = mini_xception::annotate::emotion_color("happy").0;
            for (got, want) in pixel.iter().zip(happy) {
                assert!(
                    got.abs_diff(want) <= 48,
                    "box edge {pixel:?}, expected about {happy:?}"
                );
            }
        }
        count += 1;
    }
    assert_eq!(count, ROBOCUP_PAN.frames);
}

/// A file that is not a video, and a machine without ffmpeg: errors that
/// name the file or the missing tool, no panic, no output.
#[test]
fn bad_input_and_missing_ffmpeg_are_clear_errors() {
    let not_a_video = cascade_path();
    let output = run_video(&[], &not_a_video);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("haarcascade_frontalface_default.xml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = Command::new(env!("CARGO_BIN_EXE_mini-xception"))
        .args(["video", "--cascade"])
        .arg(cascade_path())
        .arg("--weights")
        .arg(emotion_weights())
        .arg("clip.mp4")
        .env("PATH", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ffprobe") && stderr.contains("apt-get install ffmpeg"),
        "{stderr}"
    );

    let error = mini_xception::video::probe(Path::new("/nonexistent/clip.mp4")).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("/nonexistent/clip.mp4"), "{message}");
}
