//! FER2013 for training: a split's faces resized once to the model's input
//! size, exactly as `eval` resizes them, and kept as bytes.

use crate::fer2013::{self, DatasetError};
use crate::preprocess::{ResizeError, resize_linear};
use image::GrayImage;
use std::path::Path;

/// The faces of one split at the model's input size.
pub struct Faces {
    /// `height * width` bytes per face, face after face.
    pub pixels: Vec<u8>,
    /// One class per face.
    pub labels: Vec<usize>,
    /// `[height, width]` of every face.
    pub size: [usize; 2],
}

impl Faces {
    /// The number of faces.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of face `index`.
    pub fn face(&self, index: usize) -> &[u8] {
        let area = self.size[0] * self.size[1];
        &self.pixels[index * area..(index + 1) * area]
    }

    /// A copy of the first `count` faces (all if there are fewer).
    pub fn first(&self, count: usize) -> Faces {
        let area = self.size[0] * self.size[1];
        let count = count.min(self.len());
        Faces {
            pixels: self.pixels[..count * area].to_vec(),
            labels: self.labels[..count].to_vec(),
            size: self.size,
        }
    }
}

/// Why training data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{file}: the split `{split}` has no rows")]
    EmptySplit { file: String, split: String },
    #[error("{file}:{line}: label {label} is out of range for a model of {classes} classes")]
    Label {
        file: String,
        line: u64,
        label: usize,
        classes: usize,
    },
    #[error("{file}:{line}: {source}")]
    Resize {
        file: String,
        line: u64,
        #[source]
        source: ResizeError,
    },
}

/// Reads the `split` rows of a FER2013 CSV (plain or gzipped) for a model
/// of `classes` classes with a one-channel `[height, width]` input.
pub fn load_split(
    path: &Path,
    split: &str,
    classes: usize,
    size: [usize; 2],
) -> Result<Faces, DataError> {
    let file = path.display().to_string();
    let rows = fer2013::read(path, Some(split))?;
    if rows.is_empty() {
        return Err(DataError::EmptySplit {
            file,
            split: split.to_string(),
        });
    }
    let [height, width] = size;
    let mut faces = Faces {
        pixels: Vec::with_capacity(rows.len() * height * width),
        labels: Vec::with_capacity(rows.len()),
        size,
    };
    let side = fer2013::SIDE as u32;
    for row in rows {
        if row.emotion >= classes {
            return Err(DataError::Label {
                file,
                line: row.line,
                label: row.emotion,
                classes,
            });
        }
        let resize_error = |source| DataError::Resize {
            file: file.clone(),
            line: row.line,
            source,
        };
        let too_large = ResizeError::TargetTooLarge { width, height };
        let target = (
            u32::try_from(width).map_err(|_| resize_error(too_large))?,
            u32::try_from(height).map_err(|_| resize_error(too_large))?,
        );
        let line = row.line;
        let gray =
            GrayImage::from_raw(side, side, row.pixels).ok_or_else(|| DataError::Resize {
                file: file.clone(),
                line,
                source: ResizeError::EmptySource {
                    width: side,
                    height: side,
                },
            })?;
        if target == (side, side) {
            faces.pixels.extend_from_slice(gray.as_raw());
        } else {
            let resized = resize_linear(&gray, target.0, target.1).map_err(resize_error)?;
            faces.pixels.extend_from_slice(resized.as_raw());
        }
        faces.labels.push(row.emotion);
    }
    Ok(faces)
}
