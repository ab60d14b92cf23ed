//! The native safetensors format: a round trip keeps every folded weight bit
//! for bit, and a file for another model or a damaged file is an error.

mod support;

use mini_xception::native::{self, NativeError};
use mini_xception::runtime::FoldedTensors;
use support::shared;

// The library's own compiled models (models/mini_xception.yaml, models/gender_mini_xception.yaml):
// compiling them again here would only cost build time.
use mini_xception::models::emotion::*;
use mini_xception::models::gender::*;

fn emotion_weights() -> MiniXceptionWeights {
    mini_xception::keras::load(
        shared("models/fer2013_mini_XCEPTION.102-0.66.hdf5"),
        MiniXceptionWeights::from_source,
    )
    .unwrap()
}

fn bits(weights: &impl FoldedTensors) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    weights
        .tensors("")
        .into_iter()
        .map(|(name, shape, values)| (name, shape, values.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn a_round_trip_keeps_every_weight_and_every_output() {
    let weights = emotion_weights();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("emotion.safetensors");
    native::save(&weights, MiniXception::NAME, &path).unwrap();
    let mut loaded = MiniXceptionWeights::zeroed();
    native::load(&mut loaded, MiniXception::NAME, &path).unwrap();
    assert_eq!(bits(&loaded), bits(&weights));
    // 15 layers: a kernel and a bias each, and a depthwise kernel for the 8 separable ones.
    assert_eq!(bits(&loaded).len(), 15 * 2 + 8);
    let parameters: usize = loaded.tensors("").iter().map(|(_, _, v)| v.len()).sum();
    // Folding drops the batch norms' 4 values per channel and adds a bias per channel.
    assert!(parameters < MiniXception::PARAMETERS);

    let mut input = MiniXceptionInput::zeroed_boxed();
    input
        .as_mut_slice()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = ((i * 37 % 255) as f32 / 255.0 - 0.5) * 2.0);
    let mut scratch = MiniXceptionScratch::new();
    let expected = MiniXception::new(weights).logits(&input, &mut scratch);
    let actual = MiniXception::new(loaded).logits(&input, &mut scratch);
    assert_eq!(actual.map(f32::to_bits), expected.map(f32::to_bits));
}

#[test]
fn weights_of_another_model_are_refused() {
    let gender = mini_xception::keras::load(
        shared("models/gender_mini_XCEPTION.21-0.95.hdf5"),
        GenderMiniXceptionWeights::from_source,
    )
    .unwrap();
    let bytes = native::to_bytes(&gender, GenderMiniXception::NAME).unwrap();
    let mut weights = MiniXceptionWeights::zeroed();
    let error = native::from_bytes(
        &mut weights,
        MiniXception::NAME,
        "gender.safetensors",
        &bytes,
    )
    .unwrap_err();
    assert!(matches!(error, NativeError::Model { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "gender.safetensors: holds weights for the model `GenderMiniXception`, not `MiniXception`"
    );

    // Even under the right name, the head's shape gives it away.
    let bytes = native::to_bytes(&gender, MiniXception::NAME).unwrap();
    let error = native::from_bytes(
        &mut weights,
        MiniXception::NAME,
        "renamed.safetensors",
        &bytes,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "renamed.safetensors: tensor `head.kernel`: has shape [3, 3, 128, 2], the model expects [3, 3, 128, 7]"
    );
}

#[test]
fn truncated_and_damaged_files_are_errors() {
    let bytes = native::to_bytes(&emotion_weights(), MiniXception::NAME).unwrap();
    let mut weights = MiniXceptionWeights::zeroed();
    for cut in (0..bytes.len()).step_by(97) {
        let error = native::from_bytes(
            &mut weights,
            MiniXception::NAME,
            "cut.safetensors",
            &bytes[..cut],
        );
        assert!(
            error.is_err(),
            "truncated at {cut} of {} bytes, yet it loaded",
            bytes.len()
        );
    }
    let error = native::load(
        &mut weights,
        MiniXception::NAME,
        "/nonexistent/w.safetensors",
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/w.safetensors: "),
        "{error}"
    );
}

/// A NaN or an infinity in a native file is refused, naming the tensor and
/// the index.
#[test]
fn non_finite_weights_are_refused() {
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let mut weights = emotion_weights();
        let (name, _, values) = weights.tensors_mut("").into_iter().nth(3).unwrap();
        values[5] = bad;
        let bytes = native::to_bytes(&weights, MiniXception::NAME).unwrap();
        let mut loaded = MiniXceptionWeights::zeroed();
        let error = native::from_bytes(&mut loaded, MiniXception::NAME, "bad.safetensors", &bytes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!(
                "bad.safetensors: tensor `{name}`: holds {bad} at index 5, where a finite number belongs"
            )
        );
    }
}
