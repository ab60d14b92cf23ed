//! Accuracy of a classifier on labelled 48x48 faces, with its confusion matrix.

use crate::fer2013::{Row, SIDE};
use crate::models::FaceClassifier;
use crate::preprocess::ResizeError;
use crate::runtime::argmax;
use image::GrayImage;

/// Counts of an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// The class labels, in index order.
    pub labels: Vec<&'static str>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// Images seen.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> usize {
        (0..self.confusion.len())
            .map(|i| self.confusion[i][i])
            .sum()
    }

    /// `correct / total`, 0 for no images.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Per class: `(images, correct)`.
    pub fn per_class(&self) -> Vec<(usize, usize)> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| (row.iter().sum(), row[i]))
            .collect()
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Classifies every row and counts the outcomes; `progress` is called once per row.
pub fn evaluate(
    classifier: &mut dyn FaceClassifier,
    rows: &[Row],
    mut progress: impl FnMut(),
) -> Result<Evaluation, ResizeError> {
    let classes = classifier.labels().len();
    let mut confusion = vec![vec![0; classes]; classes];
    for row in rows {
        let face = GrayImage::from_raw(SIDE as u32, SIDE as u32, row.pixels.clone()).ok_or(
            ResizeError::EmptySource {
                width: SIDE as u32,
                height: SIDE as u32,
            },
        )?;
        let probabilities = classifier.classify(&face)?;
        let predicted = argmax(&probabilities);
        if let Some(counts) = confusion.get_mut(row.emotion) {
            counts[predicted] += 1;
        }
        progress();
    }
    Ok(Evaluation {
        labels: classifier.labels().to_vec(),
        confusion,
    })
}
