//! Weight files that do not fit the model, or are damaged: each gives an error
//! naming the file, the Keras layer, the model's layer and the shapes, never a
//! panic; damage that misses the weights gives a correct load.

mod support;

use mini_xception::keras::{self, KerasFile, WeightsError};
use mini_xception::runtime::{ParameterSource, ParameterSpec};
use std::collections::BTreeMap;
use support::shared;

// The library's own compiled models (models/mini_xception.yaml, models/mini_xception_paz.yaml):
// compiling them again here would only cost build time.
use mini_xception::models::emotion::*;
use mini_xception::models::paz::*;
mini_xception::mini_xception!("tests/models/five_modules.yaml");
mini_xception::mini_xception!("tests/models/three_modules.yaml");

const EMOTION: &str = "models/fer2013_mini_XCEPTION.102-0.66.hdf5";
const GENDER: &str = "models/gender_mini_XCEPTION.21-0.95.hdf5";

fn message(error: WeightsError) -> String {
    error.to_string()
}

#[test]
fn the_gender_file_in_the_emotion_model_names_the_head_and_both_shapes() {
    let error = keras::load(shared(GENDER), MiniXceptionWeights::from_source)
        .err()
        .unwrap();
    let text = message(error);
    assert!(text.contains("gender_mini_XCEPTION.21-0.95.hdf5"), "{text}");
    assert!(
        text.contains("Keras layer `conv2d_7` (model layer `head`)"),
        "{text}"
    );
    assert!(
        text.contains("has shape (3, 3, 128, 2), the model expects (3, 3, 128, 7)"),
        "{text}"
    );
}

#[test]
fn a_file_of_another_architecture_is_refused() {
    // The paz variant's first convolution has 5 filters, the file's 8.
    let text = message(
        keras::load(shared(EMOTION), MiniXceptionPazWeights::from_source)
            .err()
            .unwrap(),
    );
    assert!(
        text.contains("Keras layer `conv2d_1` (model layer `base[0]`)"),
        "{text}"
    );
    assert!(
        text.contains("has shape (3, 3, 1, 8), the model expects (3, 3, 1, 5)"),
        "{text}"
    );

    // A model with a module more than the file.
    let text = message(
        keras::load(shared(EMOTION), FiveModulesWeights::from_source)
            .err()
            .unwrap(),
    );
    assert!(
        text.contains("the model's layer `modules[4].separable[0]` has no counterpart"),
        "{text}"
    );
    assert!(text.contains("2 base convolutions and 4 modules"), "{text}");

    // A model with a module fewer: its head reads 64 channels, not 128.
    let text = message(
        keras::load(shared(EMOTION), ThreeModulesWeights::from_source)
            .err()
            .unwrap(),
    );
    assert!(text.contains("(model layer `head`)"), "{text}");
    assert!(text.contains("the model expects (3, 3, 64, 7)"), "{text}");
}

#[test]
fn files_that_are_not_keras_weights_are_refused() {
    let text = message(
        keras::load(
            shared("models/mini_xception_fer2013.onnx"),
            MiniXceptionWeights::from_source,
        )
        .err()
        .unwrap(),
    );
    assert!(
        text.starts_with(
            &shared("models/mini_xception_fer2013.onnx")
                .display()
                .to_string()
        ),
        "{text}"
    );
    assert!(text.contains("not a readable HDF5 file"), "{text}");
    let text = message(
        keras::load(
            shared("models/absent.hdf5"),
            MiniXceptionWeights::from_source,
        )
        .err()
        .unwrap(),
    );
    assert!(text.contains("absent.hdf5: cannot read the file"), "{text}");
}

fn emotion_bytes() -> Vec<u8> {
    std::fs::read(shared(EMOTION)).unwrap()
}

#[test]
fn a_renamed_weight_is_reported_as_missing_from_its_layer() {
    let original = emotion_bytes();
    let needle = b"separable_conv2d_3_1/depthwise_kernel:0";
    let places: Vec<usize> = original
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!places.is_empty());
    for place in places {
        let mut bytes = original.clone();
        // `depthwise` -> `depthwisX`: the name no longer matches.
        bytes[place + "separable_conv2d_3_1/depthwis".len()] = b'X';
        let text = message(
            keras::load_bytes("damaged.hdf5", bytes, MiniXceptionWeights::from_source)
                .err()
                .unwrap(),
        );
        assert!(text.starts_with("damaged.hdf5: "), "{text}");
        assert!(
            text.contains("separable_conv2d_3"),
            "offset {place}: {text}"
        );
    }
}

/// Keeps every raw (unfolded) parameter and epsilon the model reads, to tell
/// a correct load from a damaged one.
struct Recording<'a> {
    inner: &'a mut KerasFile,
    read: BTreeMap<String, Vec<f32>>,
}

impl ParameterSource for Recording<'_> {
    type Error = WeightsError;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), WeightsError> {
        self.inner.read(spec, values)?;
        self.read.insert(
            format!("{} {}", spec.layer, spec.kind.keras_name()),
            values.to_vec(),
        );
        Ok(())
    }

    fn batch_norm_epsilon(&mut self, layer: &str, model_epsilon: f32) -> Result<f32, WeightsError> {
        let epsilon = self.inner.batch_norm_epsilon(layer, model_epsilon)?;
        self.read.insert(format!("{layer} epsilon"), vec![epsilon]);
        Ok(epsilon)
    }
}

/// The raw parameters of a load, or its error message.
fn load_recorded(bytes: Vec<u8>) -> Result<BTreeMap<String, Vec<f32>>, String> {
    let mut recorded = BTreeMap::new();
    keras::load_bytes("mutated.hdf5", bytes, |file| {
        let mut recording = Recording {
            inner: file,
            read: BTreeMap::new(),
        };
        MiniXceptionWeights::from_source(&mut recording)?;
        recorded = recording.read;
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(recorded)
}

/// Whether `mutated` differs from `original` in exactly one value whose bit
/// pattern differs exactly by `mask` in one byte, as a flip in that value's
/// stored bytes would make it.
fn only_the_flipped_value_changed(
    original: &BTreeMap<String, Vec<f32>>,
    mutated: &BTreeMap<String, Vec<f32>>,
    mask: u8,
) -> bool {
    let mut changes = Vec::new();
    for (key, values) in original {
        let Some(other) = mutated.get(key) else {
            return false;
        };
        for (a, b) in values.iter().zip(other) {
            if a.to_bits() != b.to_bits() {
                changes.push(a.to_bits() ^ b.to_bits());
            }
        }
    }
    matches!(changes.as_slice(), [xor] if (0..4).any(|k| *xor == (mask as u32) << (8 * k)))
}

#[test]
fn truncated_files_give_errors_or_correct_loads_never_panics() {
    let original = emotion_bytes();
    let expected = load_recorded(original.clone()).unwrap();
    let mut offsets: Vec<usize> = vec![0, 1, 4, 8, 96, 512, 800, 2048];
    offsets.extend((1..200).map(|i| original.len() * i / 200));
    let mut errors = 0;
    for offset in offsets {
        match load_recorded(original[..offset].to_vec()) {
            Err(text) => {
                assert!(
                    text.starts_with("mutated.hdf5: "),
                    "offset {offset}: {text}"
                );
                errors += 1;
            }
            Ok(recorded) => assert_eq!(
                recorded, expected,
                "truncated at {offset}: loaded, but not the original weights"
            ),
        }
    }
    eprintln!("{errors} of the truncations were errors, the others cut only the optimizer state");
    assert!(errors > 50, "only {errors} truncations were noticed");
}

#[test]
fn flipped_bytes_give_errors_or_correct_loads_never_panics() {
    let original = emotion_bytes();
    let expected = load_recorded(original.clone()).unwrap();
    let config_start = original
        .windows(14)
        .position(|w| w == b"{\"class_name\":")
        .unwrap();
    let config_end = config_start
        + original[config_start..]
            .iter()
            .position(|&b| b == 0)
            .unwrap();
    let address_fields = data_address_fields(&original);
    assert!(
        address_fields.len() >= 38,
        "found {} data addresses",
        address_fields.len()
    );
    let (mut errors, mut value_changes, mut config_changes, mut moved) = (0, 0, 0, 0);
    // Every 211th byte (coprime with the layout's alignments) and the whole
    // first 2 KiB, where the superblock and root structures are.
    // `MUTATION_STEP=1` flips every byte (slow, so not run by default).
    let step = std::env::var("MUTATION_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(211);
    let places = (0..2048).chain((2048..original.len()).step_by(step));
    for (n, place) in places.enumerate() {
        let mask = [0xFF, 0x01, 0x80, 0x10][n % 4];
        let mut bytes = original.clone();
        bytes[place] ^= mask;
        match load_recorded(bytes) {
            Err(_) => errors += 1,
            Ok(recorded) if recorded == expected => {}
            Ok(recorded) if only_the_flipped_value_changed(&expected, &recorded, mask) => {
                value_changes += 1
            }
            // The damage is in the network's description: a digit of a batch
            // norm's epsilon, say. The file still parses; what it says changed.
            Ok(_) if (config_start..config_end).contains(&place) => config_changes += 1,
            // The damage is in a weight's data address: it now points at other
            // bytes. Files of this HDF5 version carry no checksums, so this
            // cannot be told from a real file unless the bytes overlap another
            // weight (which `finish` refuses) or leave the file.
            Ok(_) if address_fields.iter().any(|field| field.contains(&place)) => moved += 1,
            Ok(_) => {
                panic!("a flip of {mask:#04x} at {place} loaded different weights without an error")
            }
        }
    }
    eprintln!(
        "{errors} errors, {value_changes} single-value changes, {config_changes} model_config changes, \
         {moved} moved data addresses not caught"
    );
    assert!(errors > 100, "only {errors} flips were noticed");
}

/// The byte ranges of every contiguous dataset's data address in an HDF5
/// file: the 8 bytes after a version-3 layout message's `03 01` (version,
/// contiguous class), found by the message header `08 00 18 00` (type 8, 24 bytes).
fn data_address_fields(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    bytes
        .windows(10)
        .enumerate()
        .filter(|(_, w)| w[..4] == [0x08, 0x00, 0x18, 0x00] && w[8..10] == [0x03, 0x01])
        .map(|(i, _)| i + 10..i + 18)
        .collect()
}

/// A NaN or an infinity among the weights, or a negative variance, would
/// make every output NaN without an error: each is refused, naming the
/// weight and the index.
#[test]
fn non_finite_weights_and_negative_variances_are_refused() {
    let original = emotion_bytes();
    let recorded = load_recorded(original.clone()).unwrap();
    for (kind, bad, expected) in [
        ("kernel", f32::NAN, "a finite number"),
        ("gamma", f32::INFINITY, "a finite number"),
        ("moving_variance", -0.5, "a finite variance of at least 0"),
    ] {
        let (key, values) = recorded
            .iter()
            .find(|(key, values)| key.ends_with(kind) && values.len() >= 8)
            .unwrap();
        // The first eight values, as stored, occur once in the file.
        let pattern: Vec<u8> = values[..8].iter().flat_map(|v| v.to_le_bytes()).collect();
        let places: Vec<usize> = original
            .windows(pattern.len())
            .enumerate()
            .filter(|(_, w)| *w == pattern.as_slice())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(places.len(), 1, "{key}");
        let mut bytes = original.clone();
        // The third value.
        bytes[places[0] + 8..places[0] + 12].copy_from_slice(&bad.to_le_bytes());
        let error = load_recorded(bytes).unwrap_err();
        assert!(
            error.starts_with("mutated.hdf5: damaged: `model_weights/")
                && error.contains(&format!("holds {bad} at index 2, where {expected} belongs")),
            "{key}: {error}"
        );
    }
}

/// Finite weights whose folding overflows (a huge gamma over a zero
/// variance) are refused by the loader, naming the folded tensor.
#[test]
fn weights_that_overflow_when_folded_are_refused() {
    let original = emotion_bytes();
    let recorded = load_recorded(original.clone()).unwrap();
    // The first layer with a batch norm.
    let gamma = recorded.keys().find(|key| key.ends_with(" gamma")).unwrap();
    let layer = gamma.trim_end_matches(" gamma");
    let mut bytes = original.clone();
    for (kind, value) in [("gamma", f32::MAX), ("moving_variance", 0.0)] {
        let values = &recorded[&format!("{layer} {kind}")];
        let pattern: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let at = original
            .windows(pattern.len())
            .position(|w| w == pattern.as_slice())
            .unwrap();
        // Every channel, so that some kernel value surely overflows.
        for channel in 0..values.len() {
            bytes[at + 4 * channel..at + 4 * channel + 4].copy_from_slice(&value.to_le_bytes());
        }
    }
    let error = mini_xception::models::weights_from_bytes::<MiniXception>(
        "huge.hdf5",
        bytes,
        mini_xception::models::WeightsFormat::Keras,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.starts_with(&format!(
            "huge.hdf5: folding the batch norms gives `{layer}"
        )) && error.ends_with("the file's weights are out of range"),
        "{error}"
    );
}
