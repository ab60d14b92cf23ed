//! The paper's whole system on a photo: find the faces with the Haar cascade,
//! cut each out with the demo's offsets, and label it with an emotion and,
//! when gender weights are given, a gender.

use crate::detect::{Cascade, DetectError, DetectOptions, FaceBox};
use crate::models::{EmotionClassifier, FaceClassifier, GenderClassifier};
use crate::preprocess::{ResizeError, crop};
use crate::runtime::{AllocError, argmax};
use image::GrayImage;

/// The crop offsets `(x, y)` of the original image demo
/// (`src/image_emotion_gender_demo.py`): the emotion crop is the box itself,
/// the gender crop 10 pixels larger on every side.
pub const EMOTION_OFFSETS: (i64, i64) = (0, 0);
/// See [`EMOTION_OFFSETS`].
pub const GENDER_OFFSETS: (i64, i64) = (10, 10);

/// The crop of `face_box` in `gray`, widened by `offsets` `(x, y)` on
/// every side as the demo does ([`EMOTION_OFFSETS`], [`GENDER_OFFSETS`]);
/// `None` when it would start outside the image.
pub fn face_crop(gray: &GrayImage, face_box: &FaceBox, (ox, oy): (i64, i64)) -> Option<GrayImage> {
    crop(
        gray,
        face_box.x.into(),
        face_box.y.into(),
        face_box.width.into(),
        face_box.height.into(),
        ox,
        oy,
    )
}

/// One face of a photo.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// Where the detector found it.
    pub face_box: FaceBox,
    /// Emotion probabilities, in `EmotionClassifier` label order.
    pub emotion: Vec<f32>,
    /// The most likely emotion.
    pub label: &'static str,
    /// Gender probabilities when a gender model is loaded and the gender crop
    /// lies inside the image (as in the demo, a crop that would start outside
    /// it is skipped).
    pub gender: Option<Vec<f32>>,
}

/// What can go wrong on one photo.
#[derive(Debug, thiserror::Error)]
pub enum FacesError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Resize(#[from] ResizeError),
}

/// Detector and classifiers, ready for many photos or frames.
pub struct Pipeline {
    cascade: Cascade,
    options: DetectOptions,
    emotion: EmotionClassifier,
    gender: Option<GenderClassifier>,
}

impl Pipeline {
    /// A pipeline from its parts.
    pub fn new(
        cascade: Cascade,
        options: DetectOptions,
        emotion: EmotionClassifier,
        gender: Option<GenderClassifier>,
    ) -> Self {
        Pipeline {
            cascade,
            options,
            emotion,
            gender,
        }
    }

    /// Another pipeline with the same detector and the same classifiers'
    /// weights, and scratch spaces of its own, for another thread; an error
    /// when the memory runs out.
    pub fn try_clone(&self) -> Result<Self, AllocError> {
        Ok(Pipeline {
            cascade: self.cascade.clone(),
            options: self.options,
            emotion: self.emotion.try_clone()?,
            gender: self.gender.as_ref().map(|g| g.try_clone()).transpose()?,
        })
    }

    /// The emotion labels, in probability order.
    pub fn emotion_labels(&self) -> &'static [&'static str] {
        self.emotion.labels()
    }

    /// The gender labels, when a gender model is loaded.
    pub fn gender_labels(&self) -> Option<&'static [&'static str]> {
        self.gender.as_ref().map(|g| g.labels())
    }

    /// Every face of a grayscale photo, sorted by `(y, x)`.
    pub fn analyze(&mut self, gray: &GrayImage) -> Result<Vec<Face>, FacesError> {
        let boxes = self.cascade.detect(gray, &self.options)?;
        let mut faces = Vec::with_capacity(boxes.len());
        for face_box in boxes {
            let region = |offsets| face_crop(gray, &face_box, offsets);
            // The emotion crop is the detected box, always inside the image.
            let Some(emotion_crop) = region(EMOTION_OFFSETS) else {
                continue;
            };
            let emotion = self.emotion.classify(&emotion_crop)?;
            let gender = match (&mut self.gender, region(GENDER_OFFSETS)) {
                (Some(classifier), Some(gender_crop)) => Some(classifier.classify(&gender_crop)?),
                _ => None,
            };
            let label = self.emotion.labels()[argmax(&emotion)];
            faces.push(Face {
                face_box,
                emotion,
                label,
                gender,
            });
        }
        Ok(faces)
    }
}
