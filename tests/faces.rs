//! The whole system on the reference photos: detection, the demo's crops, the
//! OpenCV-exact resize and the model, against the Keras cases made the same way.

mod support;

use mini_xception::detect::{Cascade, DetectOptions};
use mini_xception::faces::Pipeline;
use mini_xception::models::{EmotionClassifier, GenderClassifier};
use mini_xception::preprocess::load_gray;
use serde::Deserialize;
use support::shared;

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    source_image: Option<String>,
    face_box_xywh: Option<[u32; 4]>,
    probs: Vec<f32>,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
    #[serde(default)]
    skipped: Vec<serde_json::Value>,
}

fn cases(file: &str) -> Cases {
    serde_json::from_str(&std::fs::read_to_string(shared(&format!("reference/{file}"))).unwrap())
        .unwrap()
}

fn pipeline() -> Pipeline {
    let cascade =
        Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml")).unwrap();
    let emotion =
        EmotionClassifier::load(&shared("models/fer2013_mini_XCEPTION.102-0.66.hdf5")).unwrap();
    let gender =
        GenderClassifier::load(&shared("models/gender_mini_XCEPTION.21-0.95.hdf5")).unwrap();
    Pipeline::new(cascade, DetectOptions::default(), emotion, Some(gender))
}

/// Where the pipeline's box is the reference's, its probabilities are Keras'
/// within the parity tolerance, 1e-5, for PNG and JPEG photos alike (JPEG is
/// decoded by libjpeg-turbo's code, as Pillow decodes it). The largest
/// difference of each is printed.
#[test]
fn faces_in_the_reference_photos_get_keras_probabilities() {
    let emotion_cases = cases("emotion_cases.json");
    let gender_cases = cases("gender_cases.json");
    assert_eq!(
        gender_cases.skipped.len(),
        1,
        "the reference skips one gender crop at the border"
    );
    let mut pipeline = pipeline();
    let mut compared = 0;
    let (mut largest_png, mut largest_jpeg) = (0.0f32, 0.0f32);
    let images: std::collections::BTreeSet<&str> = emotion_cases
        .cases
        .iter()
        .filter_map(|c| c.source_image.as_deref())
        .collect();
    for image in images {
        let gray = load_gray(&shared(&format!("reference/{image}"))).unwrap();
        let faces = pipeline.analyze(&gray).unwrap();
        let png = image.ends_with(".png");
        for (cases, gender) in [(&emotion_cases, false), (&gender_cases, true)] {
            for case in cases
                .cases
                .iter()
                .filter(|c| c.kind == "face" && c.source_image.as_deref() == Some(image))
            {
                let [x, y, w, h] = case.face_box_xywh.unwrap();
                let Some(face) = faces.iter().find(|f| {
                    (
                        f.face_box.x,
                        f.face_box.y,
                        f.face_box.width,
                        f.face_box.height,
                    ) == (x, y, w, h)
                }) else {
                    continue;
                };
                let probabilities = if gender {
                    face.gender.as_ref().unwrap()
                } else {
                    &face.emotion
                };
                let difference = probabilities
                    .iter()
                    .zip(&case.probs)
                    .map(|(a, e)| (a - e).abs())
                    .fold(0.0, f32::max);
                let top = |p: &[f32]| {
                    p.iter()
                        .enumerate()
                        .fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
                };
                assert_eq!(top(probabilities), top(&case.probs), "{}: label", case.id);
                assert!(difference <= 1e-5, "{}: {difference}", case.id);
                if png {
                    largest_png = largest_png.max(difference);
                } else {
                    largest_jpeg = largest_jpeg.max(difference);
                }
                compared += 1;
            }
        }
    }
    eprintln!(
        "{compared} faces compared; largest difference: PNG {largest_png:e}, JPEG {largest_jpeg:e}"
    );
    assert!(
        compared >= 50,
        "only {compared} boxes matched the reference exactly"
    );
}

#[test]
fn a_photo_without_faces_gives_none() {
    let mut pipeline = pipeline();
    let blank = image::GrayImage::from_pixel(320, 240, image::Luma([128]));
    assert!(pipeline.analyze(&blank).unwrap().is_empty());
}

/// `Tta::Flip` gives, per class, the mean of the probabilities of a face and
/// of its mirror image. The face is 64x64, the model's input, so that
/// mirroring the crop and mirroring the model's input are the same.
#[test]
fn flip_averaging_is_the_mean_of_the_face_and_its_mirror() {
    use mini_xception::models::{FaceClassifier, Tta};
    let load =
        || EmotionClassifier::load(&shared("models/fer2013_mini_XCEPTION.102-0.66.hdf5")).unwrap();
    // A face from a reference photo, resized to 64x64: not mirror-symmetric.
    let gray = load_gray(&shared("reference/images/robocup_team.png")).unwrap();
    let mut pipeline = pipeline();
    let face = pipeline.analyze(&gray).unwrap()[0].face_box;
    let crop = mini_xception::preprocess::crop(
        &gray,
        face.x.into(),
        face.y.into(),
        face.width.into(),
        face.height.into(),
        0,
        0,
    )
    .unwrap();
    let face = mini_xception::preprocess::resize_linear(&crop, 64, 64).unwrap();
    let mirror = image::imageops::flip_horizontal(&face);

    let mut plain = load();
    let as_is = plain.classify(&face).unwrap();
    let mirrored = plain.classify(&mirror).unwrap();
    let largest = as_is
        .iter()
        .zip(&mirrored)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        largest > 1e-3,
        "the face and its mirror differ by {largest}"
    );

    let averaged = load().with_tta(Tta::Flip).classify(&face).unwrap();
    for ((t, a), b) in averaged.iter().zip(&as_is).zip(&mirrored) {
        assert_eq!(
            *t,
            0.5 * (a + b),
            "{averaged:?} vs {as_is:?} and {mirrored:?}"
        );
    }
}
