//! The preprocessing pipeline against the reference cases in
//! `../shared/reference/`, which Pillow 13 and OpenCV 4.10 produced: the
//! grayscale face crops (`crops/*.gray`) and the resized `input_u8` of every
//! face in `emotion_cases.json` (64x64) and `emotion48_cases.json` (48x48).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::GrayImage;
use mini_xception::preprocess::{
    ImageError, ResizeError, crop, load_gray, normalize, resize_linear, to_input,
};
use serde::Deserialize;

/// A file of the reference folder.
fn reference(path: &str) -> PathBuf {
    mini_xception_testdata::shared("reference").join(path)
}

#[derive(Deserialize)]
struct Document {
    cases: Vec<Case>,
    skipped: Vec<String>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    input_u8: Option<Vec<u8>>,
    input_min: f32,
    input_max: f32,
    source_image: Option<String>,
    source_image_hw: Option<[u32; 2]>,
    face_box_xywh: Option<[i64; 4]>,
    offsets_xy: Option<[i64; 2]>,
    crop_x1_x2_y1_y2: Option<[i64; 4]>,
    crop_hw: Option<[u32; 2]>,
    crop_file: Option<String>,
}

/// A face case with the fields every face has, unwrapped.
struct Face {
    id: String,
    source_image: String,
    source_hw: [u32; 2],
    face_box: [i64; 4],
    offsets: [i64; 2],
    /// `[x1, x2, y1, y2]` before numpy clips them.
    bounds: [i64; 4],
    /// `[rows, cols]` after clipping.
    crop_hw: [u32; 2],
    crop_file: Option<String>,
    input_u8: Vec<u8>,
    input_min: f32,
    input_max: f32,
}

fn document(file: &str) -> Document {
    let text = std::fs::read_to_string(reference(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn faces(file: &str) -> Vec<Face> {
    let faces: Vec<Face> = document(file)
        .cases
        .into_iter()
        .filter(|case| case.kind == "face")
        .map(|case| {
            let id = case.id.clone();
            Face {
                source_image: field_of(case.source_image, file, &id, "source_image"),
                source_hw: field_of(case.source_image_hw, file, &id, "source_image_hw"),
                face_box: field_of(case.face_box_xywh, file, &id, "face_box_xywh"),
                offsets: field_of(case.offsets_xy, file, &id, "offsets_xy"),
                bounds: field_of(case.crop_x1_x2_y1_y2, file, &id, "crop_x1_x2_y1_y2"),
                crop_hw: field_of(case.crop_hw, file, &id, "crop_hw"),
                crop_file: case.crop_file,
                input_u8: field_of(case.input_u8, file, &id, "input_u8"),
                input_min: case.input_min,
                input_max: case.input_max,
                id: case.id,
            }
        })
        .collect();
    // Guards against a filter or file change that would make every check vacuous.
    assert!(faces.len() >= 31, "{file}: only {} faces", faces.len());
    faces
}

fn field_of<T>(value: Option<T>, file: &str, id: &str, field: &str) -> T {
    value.unwrap_or_else(|| panic!("{file}: face {id} has no {field}"))
}

/// The stored grayscale crop of a face, `crop_hw` = [rows, cols].
fn stored_crop(face: &Face) -> GrayImage {
    let file = face
        .crop_file
        .as_deref()
        .expect("emotion faces have a crop file");
    let bytes = std::fs::read(reference(file)).unwrap();
    let [rows, cols] = face.crop_hw;
    GrayImage::from_raw(cols, rows, bytes)
        .unwrap_or_else(|| panic!("{}: {file} is not {rows}x{cols}", face.id))
}

/// `None` if equal, else where and how `actual` first differs, row-major.
fn first_difference(expected: &[u8], actual: &[u8], width: usize) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "{} bytes, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let differing = expected.iter().zip(actual).filter(|(e, a)| e != a).count();
    let index = expected.iter().zip(actual).position(|(e, a)| e != a)?;
    Some(format!(
        "first difference at (x={}, y={}): expected {}, got {} ({differing} pixels differ)",
        index % width,
        index / width,
        expected[index],
        actual[index],
    ))
}

fn check_resize_of_every_face(file: &str, size: u32) {
    let faces = faces(file);
    assert_eq!(faces.len(), 32, "{file}");
    let failures: Vec<String> = faces
        .iter()
        .filter_map(|face| {
            let resized = resize_linear(&stored_crop(face), size, size).unwrap();
            first_difference(&face.input_u8, resized.as_raw(), size as usize)
                .map(|difference| format!("{}: {difference}", face.id))
        })
        .collect();
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn resize_matches_opencv_on_every_emotion_face_at_64x64() {
    check_resize_of_every_face("emotion_cases.json", 64);
}

#[test]
fn resize_matches_opencv_on_every_emotion_face_at_48x48() {
    check_resize_of_every_face("emotion48_cases.json", 48);
}

/// numpy's `gray[y1:y2, x1:x2]` for the non-negative starts of the stored
/// cases, written independently of `crop`.
fn numpy_slice(gray: &GrayImage, [x1, x2, y1, y2]: [i64; 4]) -> GrayImage {
    let clip = |stop: i64, len: u32| u32::try_from(stop.min(i64::from(len))).unwrap();
    let (x1, y1) = (u32::try_from(x1).unwrap(), u32::try_from(y1).unwrap());
    let (x2, y2) = (clip(x2, gray.width()), clip(y2, gray.height()));
    image::imageops::crop_imm(gray, x1, y1, x2 - x1, y2 - y1).to_image()
}

/// How a decoded crop compares with Pillow's.
#[derive(Default)]
struct Agreement {
    crops: usize,
    exact_crops: usize,
    pixels: usize,
    differing_pixels: usize,
    largest_difference: u8,
    largest_share: f64,
}

impl Agreement {
    fn add(&mut self, expected: &[u8], actual: &[u8]) {
        let differing = expected.iter().zip(actual).filter(|(e, a)| e != a).count();
        let largest = expected
            .iter()
            .zip(actual)
            .map(|(e, a)| e.abs_diff(*a))
            .max();
        self.crops += 1;
        self.exact_crops += usize::from(differing == 0);
        self.pixels += expected.len();
        self.differing_pixels += differing;
        self.largest_difference = self.largest_difference.max(largest.unwrap_or(0));
        self.largest_share = self
            .largest_share
            .max(differing as f64 / expected.len() as f64);
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} crops exact; {} of {} pixels differ, by at most {}; at most {:.2}% of one crop",
            self.exact_crops,
            self.crops,
            self.differing_pixels,
            self.pixels,
            self.largest_difference,
            100.0 * self.largest_share,
        )
    }
}

/// Decodes each reference photo once and compares every emotion face crop of
/// it with Pillow's, and the 64x64 input resized from it with `input_u8`.
fn compare_with_pillow(extension: &str) -> (Agreement, Agreement) {
    let mut images: HashMap<String, GrayImage> = HashMap::new();
    let (mut crops, mut inputs) = (Agreement::default(), Agreement::default());
    let faces = faces("emotion_cases.json");
    for face in faces
        .iter()
        .filter(|face| face.source_image.ends_with(extension))
    {
        let gray = images
            .entry(face.source_image.clone())
            .or_insert_with(|| load_gray(&reference(&face.source_image)).unwrap());
        let [rows, cols] = face.source_hw;
        assert_eq!(gray.dimensions(), (cols, rows), "{}", face.source_image);
        let ours = numpy_slice(gray, face.bounds);
        let expected = stored_crop(face);
        assert_eq!(ours.dimensions(), expected.dimensions(), "{}", face.id);
        crops.add(expected.as_raw(), ours.as_raw());
        inputs.add(
            &face.input_u8,
            resize_linear(&ours, 64, 64).unwrap().as_raw(),
        );
    }
    (crops, inputs)
}

#[test]
fn grayscale_matches_pillow_exactly_on_png() {
    let (crops, inputs) = compare_with_pillow(".png");
    assert_eq!(crops.crops, 5, "the robocup_team.png faces");
    assert_eq!(crops.differing_pixels, 0, "{crops}");
    assert_eq!(inputs.differing_pixels, 0, "{inputs}");
}

#[test]
fn grayscale_matches_pillow_exactly_on_jpeg() {
    // JPEG is decoded by libjpeg-turbo's own code, as in Pillow. With the
    // `image` crate's zune-jpeg, 5,230 of these 784,072 crop pixels were off
    // by one; the photos are 4:2:0 and `test_image.jpg` is progressive, so
    // this covers chroma upsampling and both scan modes.
    let (crops, inputs) = compare_with_pillow(".jpg");
    assert_eq!(crops.crops, 27, "the faces of the four JPEG photos");
    assert_eq!(crops.differing_pixels, 0, "{crops}");
    assert_eq!(inputs.differing_pixels, 0, "{inputs}");
}

/// A deterministic pattern so that a crop taken from the wrong place shows.
fn patterned(width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        image::Luma([((x * 7 + y * 13) % 251) as u8])
    })
}

#[test]
fn crop_reproduces_every_reference_crop_box() {
    for file in ["emotion_cases.json", "gender_cases.json"] {
        for face in faces(file) {
            let [rows, cols] = face.source_hw;
            let gray = patterned(cols, rows);
            let [x, y, w, h] = face.face_box;
            let [offset_x, offset_y] = face.offsets;
            let cropped = crop(&gray, x, y, w, h, offset_x, offset_y)
                .unwrap_or_else(|| panic!("{file}: {} cropped to nothing", face.id));
            let [crop_rows, crop_cols] = face.crop_hw;
            assert_eq!(
                cropped.dimensions(),
                (crop_cols, crop_rows),
                "{file}: {}",
                face.id
            );
            assert_eq!(
                cropped,
                numpy_slice(&gray, face.bounds),
                "{file}: {}",
                face.id
            );
        }
    }
}

#[test]
fn crop_skips_the_face_the_demo_skips() {
    // The gender set skips solvay_conference_face03: with the gender offsets
    // (10, 10) its box starts at x1 = -1, which empties numpy's slice.
    let gender = document("gender_cases.json");
    assert!(
        gender
            .skipped
            .iter()
            .any(|s| s.starts_with("solvay_conference_face03"))
    );
    let face = faces("emotion_cases.json")
        .into_iter()
        .find(|face| face.id == "solvay_conference_face03")
        .unwrap();
    let [rows, cols] = face.source_hw;
    let gray = patterned(cols, rows);
    let [x, y, w, h] = face.face_box;
    assert_eq!(x - 10, -1);
    assert_eq!(crop(&gray, x, y, w, h, 10, 10), None);
    // The same box with the emotion offsets (0, 0) is a face.
    assert!(crop(&gray, x, y, w, h, 0, 0).is_some());
}

#[test]
fn crop_clips_the_right_and_bottom_edges() {
    let gray = patterned(10, 8);
    // Box 7..12 x 5..10 in a 10x8 image: numpy keeps columns 7..10, rows 5..8.
    let cropped = crop(&gray, 7, 5, 5, 5, 0, 0).unwrap();
    assert_eq!(cropped.dimensions(), (3, 3));
    assert_eq!(cropped.get_pixel(0, 0), gray.get_pixel(7, 5));
    assert_eq!(cropped.get_pixel(2, 2), gray.get_pixel(9, 7));
    // Offsets widen the box on both sides.
    let widened = crop(&gray, 3, 3, 2, 2, 1, 2).unwrap();
    assert_eq!(widened.dimensions(), (4, 6));
    assert_eq!(widened.get_pixel(0, 0), gray.get_pixel(2, 1));
}

#[test]
fn crop_returns_none_for_negative_starts_and_empty_crops() {
    let gray = patterned(10, 8);
    assert_eq!(crop(&gray, 0, 2, 4, 4, 1, 0), None, "x1 = -1");
    assert_eq!(crop(&gray, 2, 0, 4, 4, 0, 1), None, "y1 = -1");
    assert_eq!(crop(&gray, -3, 2, 8, 4, 0, 0), None, "negative box");
    assert_eq!(
        crop(&gray, 10, 2, 4, 4, 0, 0),
        None,
        "starts past the right edge"
    );
    assert_eq!(
        crop(&gray, 2, 8, 4, 4, 0, 0),
        None,
        "starts past the bottom edge"
    );
    assert_eq!(crop(&gray, 2, 2, 0, 4, 0, 0), None, "zero width");
    assert_eq!(crop(&gray, 2, 2, 4, -1, 0, 0), None, "negative height");
    assert_eq!(
        crop(&gray, i64::MAX, i64::MIN, 4, 4, i64::MIN, 0),
        None,
        "overflow"
    );
    assert!(crop(&gray, 0, 0, 10, 8, 0, 0).is_some_and(|whole| whole == gray));
}

#[test]
fn to_input_matches_the_reference_normalized_inputs() {
    // A typical face, the one upscaled crop (53 -> 64), and the largest (559).
    let ids = [
        "test_image_face00",
        "test_image_face06",
        "test_image_face05",
    ];
    let faces: Vec<Face> = faces("emotion_cases.json")
        .into_iter()
        .filter(|face| ids.contains(&face.id.as_str()))
        .collect();
    assert_eq!(faces.len(), ids.len());
    for face in faces {
        let input = to_input::<64, 64>(&stored_crop(&face)).unwrap();
        let values = input.as_slice();
        for (index, (&value, &pixel)) in values.iter().zip(&face.input_u8).enumerate() {
            assert_eq!(
                value.to_bits(),
                normalize(pixel).to_bits(),
                "{}[{index}]",
                face.id
            );
        }
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(min.to_bits(), face.input_min.to_bits(), "{} min", face.id);
        assert_eq!(max.to_bits(), face.input_max.to_bits(), "{} max", face.id);
    }
}

#[test]
fn to_input_works_at_48x48_too() {
    let face = faces("emotion48_cases.json").into_iter().next().unwrap();
    let input = to_input::<48, 48>(&stored_crop(&face)).unwrap();
    let expected: Vec<f32> = face
        .input_u8
        .iter()
        .map(|&pixel| normalize(pixel))
        .collect();
    assert_eq!(input.as_slice(), expected.as_slice(), "{}", face.id);
}

#[test]
fn normalize_gives_the_stored_extremes_of_every_face() {
    // input_min and input_max were computed by numpy in float32 from the same
    // bytes, so they must be bit-identical to normalize() of the extreme bytes.
    for file in ["emotion_cases.json", "emotion48_cases.json"] {
        for face in faces(file) {
            let lowest = face.input_u8.iter().copied().min().unwrap();
            let highest = face.input_u8.iter().copied().max().unwrap();
            let id = &face.id;
            assert_eq!(
                normalize(lowest).to_bits(),
                face.input_min.to_bits(),
                "{file}: {id}"
            );
            assert_eq!(
                normalize(highest).to_bits(),
                face.input_max.to_bits(),
                "{file}: {id}"
            );
        }
    }
}

#[test]
fn to_input_copies_a_crop_that_already_has_the_input_size() {
    let gray = patterned(64, 64);
    let input = to_input::<64, 64>(&gray).unwrap();
    let expected: Vec<f32> = gray
        .as_raw()
        .iter()
        .map(|&pixel| normalize(pixel))
        .collect();
    assert_eq!(input.as_slice(), expected.as_slice());
}

#[test]
fn to_input_rejects_an_empty_crop() {
    let empty = GrayImage::new(0, 0);
    assert_eq!(
        to_input::<64, 64>(&empty).err(),
        Some(ResizeError::EmptySource {
            width: 0,
            height: 0
        })
    );
}

/// A fresh scratch folder for files these tests write.
fn scratch(name: &str) -> PathBuf {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("preprocess")
        .join(name);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

fn assert_names_path(error: &ImageError, path: &Path) {
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn load_gray_reports_a_missing_file_with_its_path() {
    let path = scratch("missing").join("absent.png");
    let error = load_gray(&path).unwrap_err();
    assert!(matches!(error, ImageError::Unreadable { .. }), "{error:?}");
    assert_names_path(&error, &path);
}

#[test]
fn load_gray_rejects_a_text_file_named_png() {
    let path = scratch("text").join("not_an_image.png");
    std::fs::write(&path, "this is a text file, not a PNG\n").unwrap();
    let error = load_gray(&path).unwrap_err();
    assert!(matches!(error, ImageError::NotAnImage { .. }), "{error:?}");
    assert_names_path(&error, &path);
}

#[test]
fn load_gray_rejects_a_truncated_png() {
    let png = std::fs::read(reference("images/robocup_team.png")).unwrap();
    let path = scratch("truncated").join("truncated.png");
    std::fs::write(&path, &png[..200]).unwrap();
    let error = load_gray(&path).unwrap_err();
    assert!(matches!(error, ImageError::Corrupt { .. }), "{error:?}");
    assert_names_path(&error, &path);
}

#[test]
fn load_gray_rejects_a_truncated_jpeg() {
    let jpeg = std::fs::read(reference("images/12_angry_men.jpg")).unwrap();
    let path = scratch("truncated_jpeg").join("truncated.jpg");
    std::fs::write(&path, &jpeg[..jpeg.len() / 2]).unwrap();
    let Err(error) = load_gray(&path) else {
        panic!("half a JPEG must be refused");
    };
    assert!(matches!(error, ImageError::CorruptJpeg { .. }), "{error:?}");
    assert_names_path(&error, &path);
    assert!(
        error.to_string().contains("Premature end of JPEG file"),
        "{error}"
    );
}

#[test]
fn load_gray_rejects_a_jpeg_with_a_broken_header() {
    let mut jpeg = std::fs::read(reference("images/12_angry_men.jpg")).unwrap();
    // The frame header (SOF0, FF C0) declares a sample precision of 7 bits,
    // which no JPEG decoder supports.
    let frame = jpeg
        .windows(2)
        .position(|marker| marker == [0xff, 0xc0])
        .expect("a baseline frame header");
    jpeg[frame + 4] = 7;
    let path = scratch("broken_jpeg").join("broken.jpg");
    std::fs::write(&path, &jpeg).unwrap();
    let Err(error) = load_gray(&path) else {
        panic!("a 7-bit JPEG must be refused");
    };
    assert!(matches!(error, ImageError::CorruptJpeg { .. }), "{error:?}");
    assert_names_path(&error, &path);
    assert!(error.to_string().contains("precision 7"), "{error}");
}

#[test]
fn load_gray_rejects_a_format_that_is_not_compiled_in() {
    // A GIF header: recognised, but only JPEG, PNG and BMP are decoded.
    let path = scratch("gif").join("image.gif");
    std::fs::write(&path, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let error = load_gray(&path).unwrap_err();
    assert!(
        matches!(error, ImageError::UnsupportedFormat { .. }),
        "{error:?}"
    );
    assert_names_path(&error, &path);
}

#[test]
fn load_gray_reports_a_directory_as_unreadable() {
    let path = scratch("directory");
    let error = load_gray(&path).unwrap_err();
    assert!(matches!(error, ImageError::Unreadable { .. }), "{error:?}");
    assert_names_path(&error, &path);
}
