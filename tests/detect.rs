//! The Haar cascade detector against OpenCV 4.10 (`faces_opencv.json`: every
//! reference photo at three `detectMultiScale` settings), plus broken and
//! foreign cascade files, which must give errors naming the element.

use std::path::{Path, PathBuf};

use image::GrayImage;
use mini_xception::detect::{Cascade, CascadeError, DetectError, DetectOptions, FaceBox};
use mini_xception::preprocess::load_gray;
use serde::Deserialize;

use mini_xception_testdata::shared;

fn cascade_path() -> PathBuf {
    shared("models/haarcascade_frontalface_default.xml")
}

fn cascade_text() -> String {
    std::fs::read_to_string(cascade_path()).expect("the shared frontal-face cascade is readable")
}

fn frontal_face() -> Cascade {
    Cascade::from_xml_file(&cascade_path()).expect("the shared frontal-face cascade loads")
}

#[derive(Deserialize)]
struct Reference {
    images: Vec<ReferenceImage>,
}

#[derive(Deserialize)]
struct ReferenceImage {
    file: String,
    hw: [u32; 2],
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    params: Params,
    boxes_xywh: Vec<[u32; 4]>,
    ms_median_1thread: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    scale_factor: f64,
    min_neighbors: usize,
    min_size: Option<[u32; 2]>,
}

impl Params {
    fn options(&self) -> DetectOptions {
        DetectOptions {
            scale_factor: self.scale_factor,
            min_neighbors: self.min_neighbors,
            min_size: self.min_size.map_or((0, 0), |[w, h]| (w, h)),
            max_size: None,
        }
    }
}

/// `faces_opencv.json` and each photo's Pillow grayscale.
fn reference() -> Vec<(ReferenceImage, GrayImage)> {
    let text = std::fs::read_to_string(shared("reference/faces_opencv.json")).expect("readable");
    let reference: Reference = serde_json::from_str(&text).expect("faces_opencv.json parses");
    reference
        .images
        .into_iter()
        .map(|image| {
            let path = shared(&format!("reference/images/{}", image.file));
            let gray = load_gray(&path).expect("photo decodes");
            assert_eq!([gray.height(), gray.width()], image.hw, "{}", image.file);
            (image, gray)
        })
        .collect()
}

fn xywh(face: &FaceBox) -> [u32; 4] {
    [face.x, face.y, face.width, face.height]
}

fn iou(a: &[u32; 4], b: &[u32; 4]) -> f64 {
    let ([ax, ay, aw, ah], [bx, by, bw, bh]) = (a.map(f64::from), b.map(f64::from));
    let w = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
    let h = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
    w * h / (aw * ah + bw * bh - w * h)
}

/// Pairs boxes one-to-one, best intersection-over-union first; returns the
/// IoU of each pair.
fn match_boxes(ours: &[[u32; 4]], theirs: &[[u32; 4]]) -> Vec<f64> {
    let mut pairs: Vec<(f64, usize, usize)> = (0..ours.len())
        .flat_map(|i| (0..theirs.len()).map(move |j| (iou(&ours[i], &theirs[j]), i, j)))
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_ours, mut used_theirs) = (vec![false; ours.len()], vec![false; theirs.len()]);
    let mut matched = Vec::new();
    for (overlap, i, j) in pairs {
        if !used_ours[i] && !used_theirs[j] {
            (used_ours[i], used_theirs[j]) = (true, true);
            matched.push(overlap);
        }
    }
    matched
}

/// Same count as OpenCV and every box exactly OpenCV's. The issue asks for a
/// one-to-one match with IoU >= 0.9; exactness holds because the photos are
/// decoded to Pillow's grayscale bytes (JPEG by libjpeg-turbo's code) and the
/// cascade arithmetic follows OpenCV's. The IoU of each pair is still printed,
/// so a change that moves boxes shows by how much.
#[test]
fn matches_opencv_on_every_reference_photo_and_setting() {
    let cascade = frontal_face();
    let mut failures = Vec::new();
    for (image, gray) in reference() {
        for run in &image.runs {
            let options = run.params.options();
            let ours: Vec<[u32; 4]> = cascade
                .detect(&gray, &options)
                .expect("detection runs")
                .iter()
                .map(xywh)
                .collect();
            let ious = match_boxes(&ours, &run.boxes_xywh);
            let exact = ours.iter().filter(|b| run.boxes_xywh.contains(b)).count();
            let min_iou = ious.iter().copied().fold(1.0, f64::min);
            println!(
                "{:27} {} {} min {:>5}: {:2} boxes (OpenCV {:2}), {:2} exact, min IoU {min_iou:.3}",
                image.file,
                options.scale_factor,
                options.min_neighbors,
                format!("{}x{}", options.min_size.0, options.min_size.1),
                ours.len(),
                run.boxes_xywh.len(),
                exact,
            );
            for face in ours.iter().filter(|b| !run.boxes_xywh.contains(b)) {
                let nearest = run
                    .boxes_xywh
                    .iter()
                    .max_by(|a, b| iou(face, a).total_cmp(&iou(face, b)));
                println!("    ours {face:?}, OpenCV's nearest {nearest:?}");
            }
            if ours.len() != run.boxes_xywh.len()
                || ious.iter().any(|&overlap| overlap < 0.9)
                || exact != ours.len()
            {
                failures.push(format!(
                    "{} {options:?}: ours {ours:?}, OpenCV {:?}",
                    image.file, run.boxes_xywh
                ));
            }
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let cascade = frontal_face();
    let gray = load_gray(&shared("reference/images/12_angry_men.jpg")).expect("photo decodes");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| cascade.detect(&gray, &DetectOptions::default()))
    };
    let one = run(1).expect("detection runs");
    assert_eq!(one.len(), 9);
    // Up to more threads than this machine's cores.
    for threads in [2, 3, 8] {
        assert_eq!(run(threads), Ok(one.clone()), "{threads} threads");
    }
}

/// Every stump `left right f t | below above` rewritten as the equivalent
/// two-node tree `1 -1 f t, 0 -2 f t | below above 0` (the second node
/// repeats the first test, so it always goes left): the cascade then runs
/// OpenCV's general tree path, which must give the same boxes.
#[test]
fn trees_give_the_same_boxes_as_the_stumps_they_rewrite() {
    let text = cascade_text();
    let document = roxmltree::Document::parse(&text).expect("the original parses");
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for node in document.descendants().filter(|n| n.is_element()) {
        let values: Vec<&str> = node.text().unwrap_or("").split_whitespace().collect();
        match (node.tag_name().name(), values.as_slice()) {
            ("internalNodes", [_, _, feature, threshold]) => edits.push((
                node.range(),
                format!("<internalNodes>1 -1 {feature} {threshold} 0 -2 {feature} {threshold}</internalNodes>"),
            )),
            ("leafValues", [below, above]) => edits.push((
                node.range(),
                format!("<leafValues>{below} {above} 0</leafValues>"),
            )),
            _ => {}
        }
    }
    let mut trees = text.clone();
    for (range, replacement) in edits.into_iter().rev() {
        trees.replace_range(range, &replacement);
    }
    let trees = Cascade::from_xml_str(&trees, "trees.xml").expect("the rewritten cascade loads");
    let gray = load_gray(&shared("reference/images/solvay_conference.jpg")).expect("photo decodes");
    let options = DetectOptions::default();
    let stumps = frontal_face()
        .detect(&gray, &options)
        .expect("detection runs");
    assert_eq!(stumps.len(), 7);
    assert_eq!(trees.detect(&gray, &options), Ok(stumps));
}

/// Images with no room for a window, flat images (rejected by the variance
/// test), and scale factors whose scan could not end.
#[test]
fn degenerate_inputs_give_no_boxes_or_errors() {
    let cascade = frontal_face();
    assert_eq!(
        (cascade.window_size(), cascade.stage_count()),
        ((24, 24), 25)
    );
    let raw = DetectOptions {
        min_neighbors: 0,
        ..DetectOptions::default()
    };
    for (width, height) in [(0, 0), (10, 300), (23, 23), (24, 24), (60, 40)] {
        let image = GrayImage::new(width, height);
        assert_eq!(cascade.detect(&image, &raw), Ok(vec![]), "{width}x{height}");
    }
    let flat = GrayImage::from_pixel(200, 150, image::Luma([128]));
    assert_eq!(cascade.detect(&flat, &raw), Ok(vec![]));
    for scale_factor in [1.0, 0.5, -2.0, f64::NAN, f64::INFINITY, 1.0 + 1e-12] {
        let result = cascade.detect(
            &flat,
            &DetectOptions {
                scale_factor,
                ..raw
            },
        );
        assert!(
            matches!(result, Err(DetectError::ScaleFactor(_))),
            "{scale_factor}"
        );
    }
}

// ---- broken and foreign cascade files ----

/// The byte range of the element at `path` (names, `_[i]` for items) in `text`.
fn element_range(text: &str, path: &str) -> std::ops::Range<usize> {
    let document = roxmltree::Document::parse(text).expect("the original parses");
    let mut node = document.root_element();
    for step in path.split('/') {
        let elements = node.children().filter(roxmltree::Node::is_element);
        node = match step
            .strip_prefix("_[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            Some(index) => elements
                .clone()
                .nth(index.parse().expect("index"))
                .expect("item exists"),
            None => elements
                .clone()
                .find(|n| n.tag_name().name() == step)
                .expect("child exists"),
        };
    }
    node.range()
}

/// The shipped cascade with the element at `path` replaced by `replacement`.
fn edited(path: &str, replacement: impl Fn(&str) -> String) -> String {
    let text = cascade_text();
    let range = element_range(&text, path);
    format!(
        "{}{}{}",
        &text[..range.start],
        replacement(&text[range.clone()]),
        &text[range.end..]
    )
}

fn load_error(text: &str) -> CascadeError {
    match Cascade::from_xml_str(text, "test.xml") {
        Ok(_) => panic!("a broken cascade loaded"),
        Err(error) => error,
    }
}

fn assert_names(error: &CascadeError, element: &str, words: &[&str]) {
    let message = error.to_string();
    assert!(message.starts_with("test.xml: "), "{message}");
    assert!(message.contains(element), "{message} should name {element}");
    for word in words {
        assert!(message.contains(word), "{message} should mention {word}");
    }
}

#[test]
fn a_truncated_file_names_the_open_element() {
    let text = cascade_text();
    let cut = element_range(
        &text,
        "cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes",
    )
    .start
        + 20;
    let error = load_error(&text[..cut]);
    assert!(matches!(error, CascadeError::Xml { .. }), "{error}");
    assert_names(
        &error,
        "cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes",
        &["not well-formed"],
    );
}

#[test]
fn a_mismatched_closing_tag_names_the_open_element() {
    let text = edited("cascade/stages/_[3]/stageThreshold", |element| {
        element.replace("</stageThreshold>", "</stageThreshol>")
    });
    let error = load_error(&text);
    assert!(matches!(error, CascadeError::Xml { .. }), "{error}");
    assert_names(
        &error,
        "cascade/stages/_[3]/stageThreshold",
        &["stageThreshol"],
    );
}

/// Replaces the element at `path` of the shipped cascade with `replacement`
/// and checks that loading fails naming `element` and mentioning `words`.
fn assert_edit_fails(path: &str, replacement: &str, element: &str, words: &[&str]) {
    let text = edited(path, |_| replacement.to_owned());
    assert_names(&load_error(&text), element, words);
}

#[test]
fn a_missing_stage_threshold_is_named() {
    let path = "cascade/stages/_[3]/stageThreshold";
    assert_edit_fails(path, "", path, &["expected a <stageThreshold> element"]);
}

#[test]
fn a_non_numeric_threshold_is_named() {
    let path = "cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes";
    let nodes = "<internalNodes>0 -1 5 zero</internalNodes>";
    assert_edit_fails(path, nodes, path, &["finite threshold", "\"zero\""]);
    let path = "cascade/stages/_[1]/stageThreshold";
    let threshold = "<stageThreshold>-5,0</stageThreshold>";
    assert_edit_fails(path, threshold, path, &["finite number", "\"-5,0\""]);
}

#[test]
fn a_feature_index_out_of_range_is_named() {
    let path = "cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes";
    let nodes = "<internalNodes>0 -1 2913 0.5</internalNodes>";
    let words = ["feature index below 2913", "found 2913"];
    assert_edit_fails(path, nodes, path, &words);
}

#[test]
fn wrong_leaf_counts_and_child_indices_are_named() {
    let leaves = "cascade/stages/_[0]/weakClassifiers/_[0]/leafValues";
    let one_leaf = "<leafValues>1.0</leafValues>";
    assert_edit_fails(leaves, one_leaf, leaves, &["2 leaf values"]);
    let nodes = "cascade/stages/_[0]/weakClassifiers/_[0]/internalNodes";
    let bad_child = "<internalNodes>0 -7 0 0.5</internalNodes>";
    assert_edit_fails(nodes, bad_child, nodes, &["found -7"]);
    let short = "<internalNodes>0 -1 0</internalNodes>";
    assert_edit_fails(nodes, short, nodes, &["found 3 values"]);
}

#[test]
fn bad_feature_rectangles_are_named() {
    let rect = "cascade/features/_[7]/rects/_[1]";
    assert_edit_fails(
        rect,
        "<_>20 4 12 9 2.</_>",
        rect,
        &["inside the 24x24 window"],
    );
    assert_edit_fails(rect, "<_>1 2 3</_>", rect, &["found 3 values"]);
    assert_edit_fails(rect, "<_>1 -2 3 4 1.</_>", rect, &["non-negative"]);
}

#[test]
fn tilted_features_and_other_feature_types_are_unsupported() {
    let text = edited("cascade/features/_[5]/rects", |rects| {
        format!("{rects}<tilted>1</tilted>")
    });
    let error = load_error(&text);
    assert!(matches!(error, CascadeError::Unsupported { .. }), "{error}");
    assert_names(&error, "cascade/features/_[5]/tilted", &["tilted"]);
    let kind = "cascade/featureType";
    let lbp = "<featureType>LBP</featureType>";
    assert_edit_fails(kind, lbp, kind, &["not supported", "LBP"]);
    let stage = "cascade/stageType";
    let gentle = "<stageType>GENTLE</stageType>";
    assert_edit_fails(stage, gentle, stage, &["expected BOOST"]);
}

#[test]
fn foreign_xml_documents_are_named() {
    let error = load_error("<?xml version=\"1.0\"?>\n<html><body><p>hello</p></body></html>");
    assert_names(&error, "html", &["<opencv_storage>"]);
    let error = load_error(
        "<?xml version=\"1.0\"?>\n<opencv_storage><camera_matrix type_id=\"opencv-matrix\">\
         <rows>3</rows></camera_matrix></opencv_storage>",
    );
    assert_names(
        &error,
        "camera_matrix/stageType",
        &["expected a <stageType> element"],
    );
    let error = load_error(
        "<opencv_storage><cascade type_id=\"opencv-haar-classifier\"/></opencv_storage>",
    );
    assert_names(&error, "cascade", &["old cascade format"]);
    let error = load_error("this is not XML at all");
    assert!(matches!(error, CascadeError::Xml { .. }), "{error}");
}

#[test]
fn an_empty_file_is_an_error() {
    for text in ["", "  \n\t"] {
        assert_names(&load_error(text), "opencv_storage", &["empty file"]);
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let error =
        Cascade::from_xml_file(Path::new("/nonexistent/cascade.xml")).expect_err("no such file");
    assert!(matches!(error, CascadeError::Io { .. }));
    assert!(
        error.to_string().contains("/nonexistent/cascade.xml"),
        "{error}"
    );
}

/// Timing of `detect` beside OpenCV's single-thread figure (median of 5
/// runs each); run with `RAYON_NUM_THREADS=1` (or 2) and
/// `cargo test --release --test detect -- --ignored --nocapture timing`.
#[test]
#[ignore = "a timing report, not a check"]
fn timing_against_opencv() {
    let cascade = frontal_face();
    println!("threads: {}", rayon::current_num_threads());
    for (image, gray) in reference() {
        for run in &image.runs {
            let options = run.params.options();
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let start = std::time::Instant::now();
                    std::hint::black_box(cascade.detect(&gray, &options).expect("detection runs"));
                    start.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "{:27} {} {} min {:>5}: {:7.1} ms (OpenCV, 1 thread: {:7.1} ms)",
                image.file,
                options.scale_factor,
                options.min_neighbors,
                format!("{}x{}", options.min_size.0, options.min_size.1),
                times[times.len() / 2],
                run.ms_median_1thread
            );
        }
    }
}
