//! The shipped models (compiled in the `mini-xception-models` crate), the
//! built-in weights, and face classifiers over any compiled model that take
//! a grayscale crop of any size.

use crate::keras::{self, WeightsError};
use crate::native::{self, NativeError};
use crate::preprocess::{ResizeError, normalize, resize_linear};
use crate::runtime::{
    AllocError, FoldedTensors, InferenceModel, Isa, flat_mut, softmax::softmax_slice,
    try_zeroed_box,
};
use image::GrayImage;
use std::path::Path;
use std::sync::Arc;

// The four shipped models (`emotion`, `gender`, `paz`, `wide`) are compiled
// in the `mini-xception-models` crate, once for the tool, the library's
// tests and the integration tests alike.
#[doc(inline)]
pub use mini_xception_models::{emotion, gender, paz, wide};

/// The emotion weights this project trained on FER2013 `Training`, built
/// into the binary: `models/mini_xception_fer2013.safetensors`, described by
/// `models/cards/mini_xception_fer2013.md`.
pub mod builtin {
    use super::emotion::{MiniXception, MiniXceptionWeights};
    use super::{LoadError, WeightsFormat, weights_from_bytes};
    use crate::runtime::InferenceModel;

    /// The file's path in the repository, which names the weights in errors.
    pub const EMOTION_FILE: &str = "models/mini_xception_fer2013.safetensors";

    /// The file's bytes (native safetensors, batch norms folded).
    pub const EMOTION_BYTES: &[u8] = include_bytes!("../models/mini_xception_fer2013.safetensors");

    /// The built-in emotion weights, read from the binary.
    pub fn emotion_weights() -> Result<MiniXceptionWeights, LoadError> {
        weights::<MiniXception>()
    }

    /// The built-in weights read as model `M`'s. They are the emotion
    /// model's: for any other model this is an error naming both models.
    pub fn weights<M: InferenceModel>() -> Result<M::Weights, LoadError> {
        weights_from_bytes::<M>(EMOTION_FILE, EMOTION_BYTES.to_vec(), WeightsFormat::Native)
    }
}

/// Weights that could not be loaded, from either format.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Keras(#[from] WeightsError),
    #[error(transparent)]
    Native(#[from] NativeError),
    /// The memory ran out for the model's weights or scratch space.
    #[error(transparent)]
    OutOfMemory(#[from] AllocError),
    /// Every value in the file is a finite number, but folding the batch
    /// norms overflows (a huge gamma over a tiny variance).
    #[error(
        "{file}: folding the batch norms gives `{tensor}` the value {value} at index {index}: the file's weights are out of range"
    )]
    NotFinite {
        file: String,
        tensor: String,
        index: usize,
        value: f32,
    },
}

/// The two formats of weight files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    /// Keras 2 HDF5, as the paper's files.
    Keras,
    /// This project's safetensors, batch norms folded (see [`crate::native`]).
    Native,
}

impl WeightsFormat {
    /// A `.safetensors` file is native, any other Keras.
    pub fn of_path(path: &Path) -> Self {
        if path.extension().is_some_and(|e| e == "safetensors") {
            WeightsFormat::Native
        } else {
            WeightsFormat::Keras
        }
    }
}

/// Loads a model's weights: a `.safetensors` file in the native format,
/// any other file as Keras HDF5.
///
/// Every weight, as read and as folded, is a finite number.
pub fn load_weights<M: InferenceModel>(path: &Path) -> Result<M::Weights, LoadError> {
    match WeightsFormat::of_path(path) {
        WeightsFormat::Native => {
            let mut weights = M::try_zeroed_weights()?;
            native::load(&mut weights, M::NAME, path)?;
            Ok(weights)
        }
        WeightsFormat::Keras => {
            let weights = keras::load(path, M::weights_from_source)?;
            check_folded(&weights, &path.display().to_string())?;
            Ok(weights)
        }
    }
}

/// [`load_weights`] for a file already in memory; `file` names it in errors.
pub fn weights_from_bytes<M: InferenceModel>(
    file: &str,
    bytes: Vec<u8>,
    format: WeightsFormat,
) -> Result<M::Weights, LoadError> {
    match format {
        WeightsFormat::Native => {
            let mut weights = M::try_zeroed_weights()?;
            native::from_bytes(&mut weights, M::NAME, file, &bytes)?;
            Ok(weights)
        }
        WeightsFormat::Keras => {
            let weights = keras::load_bytes(file, bytes, M::weights_from_source)?;
            check_folded(&weights, file)?;
            Ok(weights)
        }
    }
}

/// The first folded value that is not a finite number, as an error. Only
/// Keras weights need it: native files hold folded weights, which their
/// reader checks value by value.
fn check_folded(weights: &impl FoldedTensors, file: &str) -> Result<(), LoadError> {
    for (tensor, _, values) in weights.tensors("") {
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(LoadError::NotFinite {
                file: file.to_string(),
                tensor,
                index,
                value: values[index],
            });
        }
    }
    Ok(())
}

/// Writes a grayscale face crop of any size into a model's input: resized
/// to the input as OpenCV's `INTER_LINEAR` would (skipped when it already
/// has that size) and normalised to `[-1, 1]`. The model must take one
/// channel.
pub fn fill_input<M: InferenceModel>(
    face: &GrayImage,
    input: &mut M::Input,
) -> Result<(), ResizeError> {
    let [height, width, channels] = M::INPUT_SHAPE;
    let too_large = ResizeError::TargetTooLarge { width, height };
    let (w, h) = (
        u32::try_from(width).map_err(|_| too_large)?,
        u32::try_from(height).map_err(|_| too_large)?,
    );
    if channels != 1 {
        return Err(ResizeError::Channels { channels });
    }
    let resized;
    let pixels = if face.dimensions() == (w, h) {
        face
    } else {
        resized = resize_linear(face, w, h)?;
        &resized
    };
    for (value, &pixel) in flat_mut(input).iter_mut().zip(pixels.as_raw()) {
        *value = normalize(pixel);
    }
    Ok(())
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

/// Test-time augmentation: what a classifier averages over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tta {
    /// One forward pass of the face as it is.
    #[default]
    None,
    /// The mean of the probabilities of the face and of its mirror image
    /// (the model's input flipped left to right): two forward passes.
    Flip,
}

/// A face classifier around any compiled model, with its own scratch space.
///
/// The model is shared: [`Classifier::try_clone`] gives another thread its
/// own scratch space over the same weights.
pub struct Classifier<M: InferenceModel> {
    model: Arc<M>,
    scratch: M::Scratch,
    input: Box<M::Input>,
    tta: Tta,
}

impl<M: InferenceModel> Classifier<M> {
    /// Loads weights: a `.safetensors` file in the native format, any other
    /// file as Keras HDF5.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Ok(Self::with_weights(load_weights::<M>(path)?)?)
    }

    /// A classifier over weights already loaded, with the kernels of this
    /// machine's instruction set.
    pub fn with_weights(weights: M::Weights) -> Result<Self, AllocError> {
        Self::new(M::with_weights(weights, Isa::detect()))
    }

    /// A classifier around a model, with its scratch space; an error when
    /// the memory runs out.
    pub fn new(model: M) -> Result<Self, AllocError> {
        Self::sharing(Arc::new(model), Tta::None)
    }

    /// A classifier over a shared model, with a scratch space of its own.
    fn sharing(model: Arc<M>, tta: Tta) -> Result<Self, AllocError> {
        Ok(Self {
            model,
            scratch: M::try_new_scratch()?,
            input: try_zeroed_box()?,
            tta,
        })
    }

    /// The same classifier, averaging over `tta`.
    pub fn with_tta(mut self, tta: Tta) -> Self {
        self.tta = tta;
        self
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Another classifier over the same weights, with the same test-time
    /// augmentation and a scratch space of its own (for another thread); an
    /// error when the memory runs out.
    pub fn try_clone(&self) -> Result<Self, AllocError> {
        Self::sharing(Arc::clone(&self.model), self.tta)
    }
}

impl<M: InferenceModel> FaceClassifier for Classifier<M> {
    fn labels(&self) -> &'static [&'static str] {
        M::CLASS_LABELS
    }

    fn classify(&mut self, face: &GrayImage) -> Result<Vec<f32>, ResizeError> {
        fill_input::<M>(face, &mut self.input)?;
        let mut logits = vec![0.0; M::CLASS_LABELS.len()];
        self.model
            .logits_into(&self.input, &mut self.scratch, &mut logits);
        let probabilities = softmax_slice(&logits);
        match self.tta {
            Tta::None => Ok(probabilities),
            Tta::Flip => {
                mirror_input::<M>(&mut self.input);
                self.model
                    .logits_into(&self.input, &mut self.scratch, &mut logits);
                let mirrored = softmax_slice(&logits);
                Ok(probabilities
                    .iter()
                    .zip(&mirrored)
                    .map(|(a, b)| 0.5 * (a + b))
                    .collect())
            }
        }
    }
}

/// Several classifiers of the same labels as one: the mean of their
/// probabilities (an ensemble, e.g. to measure a set of distillation
/// teachers; every member runs, so it costs their sum).
pub struct Ensemble {
    members: Vec<Box<dyn FaceClassifier>>,
}

impl Ensemble {
    /// The ensemble of `members`; `None` when there are none or when their
    /// labels differ, since their probabilities could not be averaged.
    pub fn new(members: Vec<Box<dyn FaceClassifier>>) -> Option<Self> {
        let first = members.first()?.labels();
        members
            .iter()
            .all(|member| member.labels() == first)
            .then_some(Self { members })
    }
}

impl FaceClassifier for Ensemble {
    fn labels(&self) -> &'static [&'static str] {
        // `new` refuses an empty ensemble.
        self.members.first().map_or(&[], |member| member.labels())
    }

    fn classify(&mut self, face: &GrayImage) -> Result<Vec<f32>, ResizeError> {
        let mut mean = vec![0.0_f32; self.labels().len()];
        let share = 1.0 / self.members.len() as f32;
        for member in &mut self.members {
            for (total, probability) in mean.iter_mut().zip(member.classify(face)?) {
                *total += share * probability;
            }
        }
        Ok(mean)
    }
}

/// Flips a model's input left to right, in place: each row's pixels (of all
/// their channels) in reverse order.
pub(crate) fn mirror_input<M: InferenceModel>(input: &mut M::Input) {
    let [_, width, channels] = M::INPUT_SHAPE;
    let row_length = (width * channels).max(1);
    for row in flat_mut(input).chunks_exact_mut(row_length) {
        row.reverse();
        // Reversing the row reversed each pixel's channels too.
        for pixel in row.chunks_exact_mut(channels.max(1)) {
            pixel.reverse();
        }
    }
}

/// Facial emotion: angry, disgust, fear, happy, sad, surprise, neutral.
pub type EmotionClassifier = Classifier<emotion::MiniXception>;

impl Classifier<emotion::MiniXception> {
    /// The emotion classifier with the built-in weights (the
    /// [`builtin`](mod@builtin) module): no file, no network.
    pub fn builtin() -> Result<Self, LoadError> {
        Ok(Self::with_weights(builtin::emotion_weights()?)?)
    }
}

/// Gender: woman, man.
pub type GenderClassifier = Classifier<gender::GenderMiniXception>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in weights load as the emotion model's and classify a
    /// face; read as another model's they are an error naming the built-in
    /// file and both models.
    #[test]
    fn builtin_weights_are_the_emotion_models_only() {
        let mut classifier = EmotionClassifier::builtin().unwrap();
        let face = GrayImage::from_fn(48, 48, |x, y| image::Luma([(x * 3 + y * 2) as u8]));
        let probabilities = classifier.classify(&face).unwrap();
        assert_eq!(probabilities.len(), 7);
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);

        let error = builtin::weights::<gender::GenderMiniXception>()
            .err()
            .expect("the gender model cannot take the emotion weights")
            .to_string();
        assert!(error.starts_with(builtin::EMOTION_FILE), "{error}");
        assert!(
            error.contains(emotion::MiniXception::NAME)
                && error.contains(gender::GenderMiniXception::NAME),
            "{error}"
        );
    }

    /// A classifier of other labels, to mix into an ensemble.
    struct TwoLabels;

    impl FaceClassifier for TwoLabels {
        fn labels(&self) -> &'static [&'static str] {
            &["woman", "man"]
        }

        fn classify(&mut self, _face: &GrayImage) -> Result<Vec<f32>, ResizeError> {
            Ok(vec![0.5, 0.5])
        }
    }

    /// An ensemble gives the mean of its members' probabilities, and refuses
    /// members whose labels differ, or none at all.
    #[test]
    fn an_ensemble_averages_its_members_probabilities() {
        let face = GrayImage::from_fn(48, 48, |x, y| image::Luma([(x * x / 9 + y * 2) as u8]));
        let plain = || EmotionClassifier::builtin().unwrap();
        let flipped = || plain().with_tta(Tta::Flip);
        let (one, other) = (
            plain().classify(&face).unwrap(),
            flipped().classify(&face).unwrap(),
        );
        assert!(
            one.iter().zip(&other).any(|(a, b)| (a - b).abs() > 1e-3),
            "the face should look different mirrored"
        );
        let mut ensemble = Ensemble::new(vec![Box::new(plain()), Box::new(flipped())]).unwrap();
        assert_eq!(ensemble.labels(), plain().labels());
        let mean = ensemble.classify(&face).unwrap();
        for ((mean, one), other) in mean.iter().zip(&one).zip(&other) {
            assert!(
                (mean - 0.5 * (one + other)).abs() < 1e-6,
                "{mean} {one} {other}"
            );
        }
        assert!(Ensemble::new(vec![Box::new(plain()), Box::new(TwoLabels)]).is_none());
        assert!(Ensemble::new(Vec::new()).is_none());
    }
}
