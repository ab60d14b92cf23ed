//! What each fuzz target asserts, shared by the targets (`fuzz_targets/`)
//! and by the test that replays every kept finding on the stable toolchain
//! (`tests/fuzz_regressions.rs` in the project). Each `check_*` function
//! takes one input as libFuzzer gives it, and panics where a property does
//! not hold.
//!
//! The includer declares `TinyTrain`, the small training test model
//! (`tests/models/tiny_train.yaml`), at its crate root.
//!
//! A file with a checksum or a deep structure (a checkpoint, an HDF5 or
//! safetensors file, a cascade) is rarely reached by mutating raw bytes:
//! almost every mutant fails the first check. So those targets read their
//! input as a list of edits to a valid file (see [`edited`]), and libFuzzer
//! mutates the edits.

use image::GrayImage;
use mini_xception::detect::{Cascade, DetectOptions};
use mini_xception::fer2013;
use mini_xception::models::emotion::{MiniXception, MiniXceptionWeights};
use mini_xception::models::{WeightsFormat, weights_from_bytes};
use mini_xception::preprocess::{decode_image, to_gray};
use mini_xception::runtime::{FoldedTensors, flat};
use mini_xception::train::checkpoint::{self, CheckpointHeader, ScheduleState};
use mini_xception::train::keras_initial;
use mini_xception::train::{Trainer, TrainerOptions};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use syn::visit::Visit;

use crate::{TinyTrain, TinyTrainParameters, TinyTrainStatistics};

/// A fuzz input as a file: itself (first byte 0), or `valid` with edits.
///
/// Edits are 5 bytes each: a little-endian `u32` position (modulo the
/// file's length) and a byte to XOR there. A trailing 1 to 4 bytes give a
/// length to cut the file to (modulo its length plus one).
pub fn edited(valid: &[u8], input: &[u8]) -> Vec<u8> {
    match input.split_first() {
        None => valid.to_vec(),
        Some((0, raw)) => raw.to_vec(),
        Some((_, edits)) => {
            let mut file = valid.to_vec();
            if file.is_empty() {
                return file;
            }
            let mut chunks = edits.chunks_exact(5);
            for edit in &mut chunks {
                let at = u32::from_le_bytes([edit[0], edit[1], edit[2], edit[3]]) as usize;
                let len = file.len();
                file[at % len] ^= edit[4];
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut cut = [0u8; 4];
                cut[..rest.len()].copy_from_slice(rest);
                let cut = u32::from_le_bytes(cut) as usize % (file.len() + 1);
                file.truncate(cut);
            }
            file
        }
    }
}

/// A file of the shared data beside the project (`../shared`, or
/// `MINI_XCEPTION_SHARED`); empty when it is not there.
pub fn shared_file(relative: &str) -> Vec<u8> {
    std::fs::read(mini_xception_testdata::shared(relative)).unwrap_or_default()
}

/// Model file text through the whole compiler: no panic; every diagnostic
/// lies inside the text; a file that compiles gives code that parses as
/// Rust, whose parameter count is what its own layer table adds up to.
pub fn check_model_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match mini_xception_compiler::compile_text(text, "fuzz.yaml") {
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "a failure without a diagnostic");
            let lines = yaml_lines(text);
            // Line 0 means the whole file (no place).
            for d in diagnostics.iter().filter(|d| d.line != 0) {
                let line = lines
                    .get(d.line as usize - 1)
                    .unwrap_or_else(|| panic!("{d:?} lies past the text's {} lines", lines.len()));
                assert!(
                    d.column >= 1 && d.column as usize <= line.chars().count() + 1,
                    "{d:?} lies outside its line {line:?}"
                );
            }
        }
        Ok(tokens) => {
            let file: syn::File = syn::parse2(tokens)
                .unwrap_or_else(|e| panic!("the generated code does not parse: {e}"));
            let mut table = ParameterTable::default();
            table.visit_file(&file);
            let total = table.total.expect("the code declares PARAMETERS");
            assert!(!table.rows.is_empty(), "the code has no layer table");
            assert_eq!(
                table.rows.iter().sum::<u128>(),
                total,
                "the layer table's parameters do not add up to PARAMETERS"
            );
        }
    }
}

/// The lines of `text` as YAML counts them: a line ends at `\n`, `\r\n`
/// or a lone `\r`.
fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(['\n', '\r']) {
        lines.push(&rest[..end]);
        let after = if rest[end..].starts_with("\r\n") {
            end + 2
        } else {
            end + 1
        };
        rest = &rest[after..];
    }
    lines.push(rest);
    lines
}

/// `PARAMETERS` and the `parameters` of every `LayerSummary` row.
#[derive(Default)]
struct ParameterTable {
    total: Option<u128>,
    rows: Vec<u128>,
}

fn integer(expr: &syn::Expr) -> Option<u128> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => int.base10_parse().ok(),
        _ => None,
    }
}

impl<'ast> Visit<'ast> for ParameterTable {
    fn visit_impl_item_const(&mut self, item: &'ast syn::ImplItemConst) {
        if item.ident == "PARAMETERS" {
            self.total = integer(&item.expr);
        }
        syn::visit::visit_impl_item_const(self, item);
    }

    fn visit_expr_struct(&mut self, expr: &'ast syn::ExprStruct) {
        if expr
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "LayerSummary")
        {
            for field in &expr.fields {
                if matches!(&field.member, syn::Member::Named(name) if name == "parameters") {
                    self.rows
                        .push(integer(&field.expr).expect("a literal parameter count"));
                }
            }
        }
        syn::visit::visit_expr_struct(self, expr);
    }
}

/// Weights read from `file` in `format` into the emotion model: an error,
/// or every weight a finite number as read and folded.
fn check_weights(file: Vec<u8>, format: WeightsFormat) {
    if let Ok(weights) = weights_from_bytes::<MiniXception>("fuzz", file, format) {
        for (name, _, values) in weights.tensors("") {
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{name} holds a non-finite value"
            );
        }
    }
}

/// Keras HDF5 weight files: edits of the paper's emotion file, when it is
/// beside the project, or whole files.
pub fn check_keras_hdf5(data: &[u8]) {
    static PAPER: OnceLock<Vec<u8>> = OnceLock::new();
    let paper = PAPER.get_or_init(|| shared_file("models/fer2013_mini_XCEPTION.102-0.66.hdf5"));
    check_weights(edited(paper, data), WeightsFormat::Keras);
}

/// Native safetensors weight files: edits of a valid file of seeded
/// weights, or whole files.
pub fn check_native_safetensors(data: &[u8]) {
    static VALID: OnceLock<Vec<u8>> = OnceLock::new();
    let valid = VALID.get_or_init(|| {
        let weights =
            MiniXceptionWeights::from_source(&mut mini_xception::bench::SyntheticWeights::new(1))
                .expect("the seeded weights");
        mini_xception::native::to_bytes(&weights, "MiniXception").expect("a valid file")
    });
    check_weights(edited(valid, data), WeightsFormat::Native);
}

/// A valid checkpoint of the small training model, and a trainer to
/// restore checkpoints into, with its parameters before any restore.
struct CheckpointFixture {
    valid: Vec<u8>,
    trainer: Mutex<Trainer<TinyTrain>>,
    before: Vec<f32>,
}

fn checkpoint_fixture() -> CheckpointFixture {
    let (parameters, statistics) = keras_initial::<TinyTrain>(1);
    let options = TrainerOptions {
        batch: 2,
        threads: 1,
        ..TrainerOptions::default()
    };
    let trainer = Trainer::<TinyTrain>::new(parameters, statistics, options).expect("a trainer");
    let header = CheckpointHeader {
        model: "TinyTrain".into(),
        sizes: [
            std::mem::size_of::<TinyTrainParameters>() / 4,
            std::mem::size_of::<TinyTrainStatistics>() / 4,
        ],
        epochs_done: 1,
        steps: 5,
        schedule: ScheduleState {
            learning_rate: 1e-3,
            best_validation_loss: Some(1.5),
            plateau_wait: 0,
            epochs_since_best: 0,
        },
        history: Vec::new(),
        settings: serde_json::json!({"seed": 1}),
        averaged: 0,
    };
    let dir = std::env::temp_dir().join(format!("mini-xception-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("valid.checkpoint");
    checkpoint::save(&path, &header, &trainer).expect("a checkpoint");
    let valid = std::fs::read(&path).expect("the checkpoint's bytes");
    let _ = std::fs::remove_dir_all(&dir);
    let before = flat(trainer.parameters()).to_vec();
    CheckpointFixture {
        valid,
        trainer: Mutex::new(trainer),
        before,
    }
}

/// Training checkpoints, edits of a valid one, restored into a trainer: no
/// panic; a refused file leaves the trainer as it was; a restored one holds
/// only finite numbers. A checkpoint ends with the SHA-256 of the rest, so
/// when the input's first byte is odd the checksum is recomputed after the
/// edits, to reach the parser behind it.
pub fn check_checkpoint(data: &[u8]) {
    static FIXTURE: OnceLock<CheckpointFixture> = OnceLock::new();
    let fixture = FIXTURE.get_or_init(checkpoint_fixture);
    let mut file = edited(&fixture.valid, data);
    if data.first().is_some_and(|b| b % 2 == 1) && file.len() >= 32 {
        let content = file.len() - 32;
        let digest = Sha256::digest(&file[..content]);
        file[content..].copy_from_slice(&digest);
    }
    let mut trainer = fixture.trainer.lock().unwrap_or_else(|e| e.into_inner());
    match checkpoint::load_bytes("fuzz.checkpoint", &file, &mut trainer) {
        Err(_) => assert_eq!(
            flat(trainer.parameters()),
            fixture.before.as_slice(),
            "a refused checkpoint changed the trainer"
        ),
        Ok(_) => {
            assert!(flat(trainer.parameters()).iter().all(|v| v.is_finite()));
            assert!(flat(trainer.statistics()).iter().all(|v| v.is_finite()));
            // Back to the state every other input starts from.
            checkpoint::load_bytes("valid", &fixture.valid, &mut trainer)
                .expect("the valid checkpoint loads");
        }
    }
}

/// A small Haar cascade written for the fuzz target (a 20x16 window, two
/// stages, a stump, a two-node tree and three features), so that its
/// mutants parse far faster than OpenCV's 930 kB cascade, and the fuzzer
/// tries many more inputs in the same time.
/// Its stage thresholds are low enough that windows pass every stage, so
/// the detector's grouping of boxes runs too.
pub const SMALL_CASCADE: &str = r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier">
  <stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>16</height>
  <width>20</width>
  <stageParams><maxWeakCount>2</maxWeakCount></stageParams>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stageNum>2</stageNum>
  <stages>
    <_>
      <maxWeakCount>2</maxWeakCount>
      <stageThreshold>-1.5e+00</stageThreshold>
      <weakClassifiers>
        <_>
          <internalNodes>0 -1 0 -2.5e-02</internalNodes>
          <leafValues>-5.0e-01 7.5e-01</leafValues></_>
        <_>
          <internalNodes>0 -1 1 1.25e-01</internalNodes>
          <leafValues>2.5e-01 -5.0e-01</leafValues></_></weakClassifiers></_>
    <_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>-2.0e+00</stageThreshold>
      <weakClassifiers>
        <_>
          <internalNodes>1 0 2 0.0e+00 0 -1 0 5.0e-02</internalNodes>
          <leafValues>1.0e+00 -1.0e+00 5.0e-01</leafValues></_></weakClassifiers></_></stages>
  <features>
    <_>
      <rects>
        <_>2 2 16 6 -1.</_>
        <_>2 5 16 3 2.</_></rects></_>
    <_>
      <rects>
        <_>0 0 20 16 -1.</_>
        <_>5 4 10 8 4.</_></rects>
      <tilted>0</tilted></_>
    <_>
      <rects>
        <_>3 1 12 12 -1.</_>
        <_>7 1 4 12 3.</_>
        <_>0 0 1 1 0.</_></rects></_></features></cascade>
</opencv_storage>
"#;

/// The image the cascade target detects on (a gradient with a bright
/// square, so that some windows pass stages) and the options it uses.
pub fn detection_case() -> (GrayImage, DetectOptions) {
    let image = GrayImage::from_fn(40, 36, |x, y| {
        let inside = (10..26).contains(&x) && (8..24).contains(&y);
        image::Luma([if inside { 220 } else { (x * 5 + y * 3) as u8 }])
    });
    let options = DetectOptions {
        min_size: (1, 1),
        ..DetectOptions::default()
    };
    (image, options)
}

/// OpenCV Haar cascade XML as edits of a valid cascade (first byte 2:
/// OpenCV's frontal-face cascade, when it is beside the project; any other:
/// [`SMALL_CASCADE`]), or whole files: no panic; a cascade that loads has a
/// window within the limits and detects on a small image, every box inside
/// the image. OpenCV's file is kept to one first byte because it parses at
/// about 10 inputs a second under the sanitizer.
pub fn check_cascade_xml(data: &[u8]) {
    static OPENCV: OnceLock<Vec<u8>> = OnceLock::new();
    let valid = match data.first() {
        Some(2) => OPENCV.get_or_init(|| shared_file("models/haarcascade_frontalface_default.xml")),
        _ => SMALL_CASCADE.as_bytes(),
    };
    let file = edited(valid, data);
    let Ok(text) = std::str::from_utf8(&file) else {
        return;
    };
    let Ok(cascade) = Cascade::from_xml_str(text, "fuzz.xml") else {
        return;
    };
    let (width, height) = cascade.window_size();
    assert!(width >= 1 && height >= 1 && width <= 4096 && height <= 4096);
    let (image, options) = detection_case();
    if let Ok(faces) = cascade.detect(&image, &options) {
        for face in faces {
            assert!(
                face.x + face.width <= 40 && face.y + face.height <= 36,
                "{face:?}"
            );
        }
    }
}

/// Image files (PNG, BMP, and JPEG through libjpeg-turbo's C code) through
/// the project's loader: no panic; an image that decodes is within the
/// size limit and converts to gray at its own size.
pub fn check_image(data: &[u8]) {
    if let Ok(image) = decode_image(data.to_vec(), Path::new("fuzz.image")) {
        let gray = to_gray(&image);
        assert_eq!(
            (gray.width(), gray.height()),
            (image.width(), image.height())
        );
        assert!(u64::from(image.width()) * u64::from(image.height()) <= 512 << 20);
    }
}

/// FER2013 CSV: no panic; every row read has a label from 0 to 6 and
/// 48 x 48 pixels.
pub fn check_fer2013_csv(data: &[u8]) {
    for split in [None, Some("Training")] {
        if let Ok(rows) = fer2013::parse(data, "fuzz.csv", split) {
            for row in rows {
                assert!(row.emotion < 7, "label {}", row.emotion);
                assert_eq!(row.pixels.len(), 48 * 48);
            }
        }
    }
}
