//! `explain`'s saliency maps against TensorFlow's: guided back-propagation,
//! the plain input gradient and Grad-CAM of the paper's emotion weights on
//! reference face crops (`scripts/keras_explain_reference.py`, committed as
//! `tests/explain/keras_saliency.safetensors`), each within 1e-4 of the
//! map's largest value. Then the command itself, on files.

#[path = "../../tests/support/mod.rs"]
mod support;

use mini_xception::explain::{Explainer, Method};
use mini_xception::keras;
use mini_xception::models::emotion::{MiniXception, MiniXceptionWeights};
use mini_xception::preprocess::normalize;
use mini_xception::runtime::train::{TrainableModel, unfold};
use mini_xception::runtime::{InferenceModel, Isa, bytemuck, flat_mut};
use mini_xception::saliency::Saliency;
use safetensors::SafeTensors;
use serde::Deserialize;
use std::process::Command;
use support::shared;

const EMOTION_WEIGHTS: &str = "models/fer2013_mini_XCEPTION.102-0.66.hdf5";

#[derive(Deserialize)]
struct ListedCase {
    id: String,
    label: usize,
    predicted: usize,
}

#[derive(Deserialize)]
struct ReferenceCase {
    id: String,
    input_u8: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct References {
    cases: Vec<ReferenceCase>,
}

fn keras_maps() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/explain/keras_saliency.safetensors"
    ))
    .unwrap()
}

fn tensor(file: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let view = file.tensor(name).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Every value within `1e-4` of the largest magnitude in `expected`.
fn assert_map_close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let largest = expected.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
    assert!(largest > 0.0, "{what}: the reference map is all zeros");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{what}: off by at most {:.1e} of the largest value",
        worst / largest
    );
    assert!(
        worst <= 1e-4 * largest,
        "{what}: off by {worst:e}, {:e} of the largest value {largest}",
        worst / largest
    );
}

#[test]
fn saliency_maps_match_tensorflow_within_1e_4_of_each_maps_largest_value() {
    let bytes = keras_maps();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let listed: Vec<ListedCase> = serde_json::from_str(
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("cases"))
            .unwrap(),
    )
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let references: References = serde_json::from_str(
        &std::fs::read_to_string(shared("reference/emotion_cases.json")).unwrap(),
    )
    .unwrap();
    let weights: MiniXceptionWeights =
        keras::load(shared(EMOTION_WEIGHTS), MiniXception::weights_from_source).unwrap();
    let mut explainer = Explainer::<MiniXception>::new(&weights).unwrap();
    let mut saliency =
        Saliency::<MiniXception>::new(unfold::<MiniXception>(&weights).unwrap(), Isa::detect());

    assert_eq!(listed.len(), 4);
    // The last case explains a label other than the prediction.
    assert!(listed.iter().any(|c| c.label != c.predicted));
    for case in &listed {
        let pixels = references
            .cases
            .iter()
            .find(|r| r.id == case.id)
            .and_then(|r| r.input_u8.as_ref())
            .unwrap();
        let mut input: Box<<MiniXception as InferenceModel>::Input> = bytemuck::zeroed_box();
        for (value, &p) in flat_mut(&mut *input).iter_mut().zip(pixels) {
            *value = normalize(p);
        }
        // The predicted label is found when none is given.
        let given = (case.label != case.predicted).then_some(case.label);

        let guided = explainer
            .map_input(&input, Method::GuidedBackprop, given)
            .unwrap();
        assert_eq!(guided.label, case.label, "{}", case.id);
        assert_eq!(guided.shape, [64, 64, 1]);
        let expected_logits = tensor(&file, &format!("logits.{}", case.id));
        for (ours, theirs) in guided.logits.iter().zip(&expected_logits) {
            assert!((ours - theirs).abs() < 1e-4, "{}: logits", case.id);
        }
        let expected_guided = tensor(&file, &format!("guided.{}", case.id));
        assert_map_close(
            &format!("guided back-propagation, {}", case.id),
            &guided.values,
            &expected_guided,
        );

        let gradient = saliency.gradient(&input, given).unwrap();
        let expected_gradient = tensor(&file, &format!("gradient.{}", case.id));
        assert_map_close(
            &format!("gradient, {}", case.id),
            &gradient.values,
            &expected_gradient,
        );
        // The guided rule changes the map: a test that could not tell them
        // apart would not test it.
        let difference = expected_guided
            .iter()
            .zip(&expected_gradient)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            difference > 0.1,
            "{}: guided and plain maps differ by {difference}",
            case.id
        );

        let cam = explainer.map_input(&input, Method::GradCam, given).unwrap();
        assert_eq!(cam.label, case.label);
        assert_eq!(cam.shape, [4, 4, 1]);
        let expected_cam = tensor(&file, &format!("grad_cam.{}", case.id));
        assert_map_close(
            &format!("Grad-CAM, {}", case.id),
            &cam.values,
            &expected_cam,
        );
    }
}

#[test]
fn a_label_past_the_classes_is_an_error_not_a_panic() {
    let weights: MiniXceptionWeights =
        keras::load(shared(EMOTION_WEIGHTS), MiniXception::weights_from_source).unwrap();
    let mut explainer = Explainer::<MiniXception>::new(&weights).unwrap();
    let input: Box<<MiniXception as InferenceModel>::Input> = bytemuck::zeroed_box();
    let error = explainer
        .map_input(&input, Method::GradCam, Some(MiniXception::CLASSES))
        .unwrap_err();
    assert_eq!(error.to_string(), "label 7 is out of range for 7 classes");
}

/// `explain` on a face crop and, with `--faces`, on a photo: one PNG per
/// face, three panels wide, named after the image, the face and the method;
/// a given label is the one reported. An unreadable image is reported and the others still run.
#[test]
fn explain_writes_one_picture_per_face() {
    let directory = tempfile::tempdir().unwrap();
    let references: References = serde_json::from_str(
        &std::fs::read_to_string(shared("reference/emotion_cases.json")).unwrap(),
    )
    .unwrap();
    let face = directory.path().join("face.png");
    let pixels = references.cases[0].input_u8.clone().unwrap();
    image::GrayImage::from_raw(64, 64, pixels)
        .unwrap()
        .save(&face)
        .unwrap();
    let broken = directory.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let weights = shared(EMOTION_WEIGHTS);
    let out = directory.path().join("maps");
    let output = Command::new(env!("CARGO_BIN_EXE_mini-xception"))
        .args(["explain", "--weights", weights.to_str().unwrap()])
        .args(["--method", "grad-cam", "--label", "surprise", "--out"])
        .arg(&out)
        .arg(&face)
        .arg(&broken)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the broken image must fail the run"
    );
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(stdout.contains("face.png: surprise ("), "{stdout}");
    let picture = image::open(out.join("face.grad-cam.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(picture.dimensions(), (3 * 192, 192));

    let photo = shared("reference/images/robocup_team.png");
    let cascade = shared("models/haarcascade_frontalface_default.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_mini-xception"))
        .args(["explain", "--faces", "--weights", weights.to_str().unwrap()])
        .arg("--cascade")
        .arg(&cascade)
        .arg("--out")
        .arg(&out)
        .arg(&photo)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8_lossy(&output.stdout).lines().count();
    assert!(lines >= 2, "{}", String::from_utf8_lossy(&output.stdout));
    for i in 0..lines {
        let written = out.join(format!("robocup_team.face{i}.guided-backprop.png"));
        assert!(written.exists(), "{}", written.display());
    }
}
