//! The paper's pretrained Keras weights, read in pure Rust, against the
//! outputs of the original Keras models (`../shared/reference/*_cases.json`,
//! TensorFlow 2.15): element-wise, probabilities within 1e-5 and logits within
//! 1e-4 absolute, and the same argmax, for every case.

mod support;

use mini_xception::keras;
use mini_xception::runtime::Isa;
use serde::Deserialize;
use support::shared;

// The library's own compiled models (models/mini_xception.yaml, models/gender_mini_xception.yaml):
// compiling them again here would only cost build time.
use mini_xception::models::emotion::*;
use mini_xception::models::gender::*;
mini_xception::mini_xception!("tests/models/emotion_48.yaml");

const EMOTION_WEIGHTS: &str = "models/fer2013_mini_XCEPTION.102-0.66.hdf5";
const GENDER_WEIGHTS: &str = "models/gender_mini_XCEPTION.21-0.95.hdf5";

#[derive(Deserialize)]
struct Case {
    id: String,
    input_u8: Option<Vec<u8>>,
    input_f32: Option<Vec<f32>>,
    input_min: f32,
    input_max: f32,
    logits: Vec<f32>,
    probs: Vec<f32>,
    argmax: usize,
}

#[derive(Deserialize)]
struct Cases {
    labels: Vec<String>,
    cases: Vec<Case>,
}

fn cases(file: &str) -> Cases {
    let text = std::fs::read_to_string(shared(&format!("reference/{file}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

impl Case {
    /// The normalised input, as the reference produced it.
    fn input(&self) -> Vec<f32> {
        let input = match (&self.input_u8, &self.input_f32) {
            (Some(bytes), None) => bytes
                .iter()
                .map(|&b| ((b as f32) / 255.0 - 0.5) * 2.0)
                .collect(),
            (None, Some(values)) => values.clone(),
            _ => panic!(
                "{}: exactly one of input_u8 and input_f32 must be set",
                self.id
            ),
        };
        // The reference's own record of the normalised range.
        let min = input.iter().copied().fold(f32::INFINITY, f32::min);
        let max = input.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(
            (min, max),
            (self.input_min, self.input_max),
            "{}: normalisation",
            self.id
        );
        input
    }

    /// Checks one case; returns the largest probability difference.
    fn check(&self, logits: &[f32], probabilities: &[f32]) -> f32 {
        for (what, actual, expected, tolerance) in [
            ("logits", logits, &self.logits, 1e-4),
            ("probabilities", probabilities, &self.probs, 1e-5),
        ] {
            assert_eq!(actual.len(), expected.len());
            for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
                assert!(
                    (a - e).abs() <= tolerance,
                    "{}: {what}[{i}] = {a}, Keras gives {e} (tolerance {tolerance})",
                    self.id
                );
            }
        }
        let argmax = probabilities.iter().enumerate().fold(0, |best, (i, &p)| {
            if p > probabilities[best] { i } else { best }
        });
        assert_eq!(argmax, self.argmax, "{}: argmax", self.id);
        probabilities
            .iter()
            .zip(&self.probs)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0, f32::max)
    }
}

/// Runs every case on every instruction set this CPU has (the portable path
/// always), so each compiled variant of the forward pass is checked.
macro_rules! parity {
    ($model:ident, $weights:ident, $scratch:ident, $input:ident, $file:expr, $cases:expr) => {{
        let cases = cases($cases);
        assert_eq!(cases.labels, $model::LABELS);
        assert!(cases.cases.len() >= 37);
        let mut isas_run = 0;
        for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
            let weights = keras::load(shared($file), $weights::from_source).unwrap();
            let model = $model::new(weights).with_isa(isa);
            assert_eq!(model.isa(), isa);
            let mut scratch = $scratch::new();
            let mut input = $input::zeroed_boxed();
            let mut largest = 0.0f32;
            for case in &cases.cases {
                input.as_mut_slice().copy_from_slice(&case.input());
                let logits = model.logits(&input, &mut scratch);
                let probabilities = model.forward(&input, &mut scratch);
                largest = largest.max(case.check(&logits, &probabilities));
            }
            eprintln!(
                "{} ({}): {} cases, largest probability difference from Keras {largest:e}",
                $cases,
                isa.name(),
                cases.cases.len()
            );
            isas_run += 1;
        }
        assert!(isas_run >= 1);
    }};
}

#[test]
fn emotion_model_matches_keras() {
    parity!(
        MiniXception,
        MiniXceptionWeights,
        MiniXceptionScratch,
        MiniXceptionInput,
        EMOTION_WEIGHTS,
        "emotion_cases.json"
    );
}

#[test]
fn emotion_model_at_48x48_matches_keras() {
    parity!(
        MiniXception48,
        MiniXception48Weights,
        MiniXception48Scratch,
        MiniXception48Input,
        EMOTION_WEIGHTS,
        "emotion48_cases.json"
    );
}

#[test]
fn gender_model_matches_keras() {
    parity!(
        GenderMiniXception,
        GenderMiniXceptionWeights,
        GenderMiniXceptionScratch,
        GenderMiniXceptionInput,
        GENDER_WEIGHTS,
        "gender_cases.json"
    );
}
