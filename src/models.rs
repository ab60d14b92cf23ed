//! The shipped models, compiled in, and face classifiers built on them that
//! take a grayscale crop of any size.

use crate::keras::{self, WeightsError};
use crate::native::{self, NativeError};
use crate::preprocess::{ResizeError, to_input};
use image::GrayImage;
use std::path::Path;

/// The paper's emotion model, `models/mini_xception.yaml`.
pub mod emotion {
    crate::mini_xception!("models/mini_xception.yaml");
}

/// The paper's gender model, `models/gender_mini_xception.yaml`.
pub mod gender {
    crate::mini_xception!("models/gender_mini_xception.yaml");
}

/// The 48x48 variant of oarriaga/paz, `models/mini_xception_paz.yaml`.
pub mod paz {
    crate::mini_xception!("models/mini_xception_paz.yaml");
}

/// Weights that could not be loaded, from either format.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Keras(#[from] WeightsError),
    #[error(transparent)]
    Native(#[from] NativeError),
}

/// A classifier of face crops.
pub trait FaceClassifier {
    /// The class labels, in output order.
    fn labels(&self) -> &'static [&'static str];

    /// The class probabilities for a grayscale face crop of any size, resized
    /// to the model's input as OpenCV's `INTER_LINEAR` would and normalised to
    /// `[-1, 1]`.
    fn classify(&mut self, face: &GrayImage) -> Result<Vec<f32>, ResizeError>;
}

macro_rules! classifier {
    ($(#[$doc:meta])* $name:ident, $module:ident, $model:ident, $weights:ident, $scratch:ident) => {
        $(#[$doc])*
        pub struct $name {
            model: $module::$model,
            scratch: $module::$scratch,
        }

        impl $name {
            /// Loads weights: a `.safetensors` file in the native format, any
            /// other file as Keras HDF5.
            pub fn load(path: &Path) -> Result<Self, LoadError> {
                let weights = if path.extension().is_some_and(|e| e == "safetensors") {
                    let mut weights = $module::$weights::zeroed();
                    native::load(&mut weights, $module::$model::NAME, path)?;
                    weights
                } else {
                    keras::load(path, $module::$weights::from_source)?
                };
                Ok(Self::new($module::$model::new(weights)))
            }

            /// A classifier around a model.
            pub fn new(model: $module::$model) -> Self {
                Self { model, scratch: $module::$scratch::new() }
            }

            /// The model.
            pub fn model(&self) -> &$module::$model {
                &self.model
            }
        }

        impl FaceClassifier for $name {
            fn labels(&self) -> &'static [&'static str] {
                &$module::$model::LABELS
            }

            fn classify(&mut self, face: &GrayImage) -> Result<Vec<f32>, ResizeError> {
                let input = to_input(face)?;
                Ok(self.model.forward(&input, &mut self.scratch).to_vec())
            }
        }
    };
}

classifier!(
    /// Facial emotion: angry, disgust, fear, happy, sad, surprise, neutral.
    EmotionClassifier, emotion, MiniXception, MiniXceptionWeights, MiniXceptionScratch
);
classifier!(
    /// Gender: woman, man.
    GenderClassifier, gender, GenderMiniXception, GenderMiniXceptionWeights, GenderMiniXceptionScratch
);
