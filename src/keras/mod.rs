//! Keras 2 HDF5 weight files, read in pure Rust.
//!
//! [`KerasFile`] is a [`ParameterSource`]: a generated model reads its weights
//! from it with `from_source`, and the file says through its own
//! `model_config` which Keras layer stands for which layer of the model file.
//! Every mismatch (a missing layer or weight, a shape that differs, a file of
//! another architecture, a damaged file) is a [`WeightsError`] that names the
//! file, the Keras layer, the model-file layer and the shapes.
//!
//! ```no_run
//! mini_xception::mini_xception!("models/mini_xception.yaml");
//!
//! let weights = mini_xception::keras::load("fer2013_mini_XCEPTION.102-0.66.hdf5", MiniXceptionWeights::from_source)?;
//! let model = MiniXception::new(weights);
//! # Ok::<(), mini_xception::keras::WeightsError>(())
//! ```

mod topology;

use crate::runtime::{ParameterKind, ParameterSource, ParameterSpec};
use hdf5_reader::Hdf5File;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use topology::{MatchedLayer, ModelConfig};

/// What can go wrong reading a Keras weight file. Every message starts with the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read at all.
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid HDF5, or is damaged where its structure is.
    #[error("{file}: not a readable HDF5 file ({what}): {reason}")]
    Hdf5 {
        file: String,
        what: String,
        reason: String,
    },
    /// Valid HDF5, but not a Keras model file.
    #[error("{file}: not a Keras model file: {reason}")]
    NotKeras { file: String, reason: String },
    /// The file's network is not one the model file describes.
    #[error("{file}: Keras layer `{keras_layer}`: {reason}")]
    Structure {
        file: String,
        keras_layer: String,
        reason: String,
    },
    /// The model file has a layer the Keras file does not.
    #[error(
        "{file}: the model's layer `{layer}` has no counterpart in the file, whose network has {found}"
    )]
    MissingLayer {
        file: String,
        layer: String,
        found: String,
    },
    /// The Keras layer lacks a weight the model needs.
    #[error("{file}: Keras layer `{keras_layer}` (model layer `{layer}`) has no `{weight}` weight")]
    MissingWeight {
        file: String,
        keras_layer: String,
        layer: String,
        weight: String,
    },
    /// The memory ran out for the weights being read.
    #[error(transparent)]
    OutOfMemory(#[from] crate::runtime::AllocError),
    /// A weight of another shape: usually a file for another architecture.
    #[error(transparent)]
    Shape(Box<ShapeError>),
    /// Weights in the file that the model never read.
    #[error("{file}: the file has weights the model does not use: {weights}")]
    Unused { file: String, weights: String },
    /// Two weights stored in the same bytes, or a weight stored in fewer or
    /// more bytes than its shape needs: the file's index is damaged.
    #[error("{file}: damaged: {reason}")]
    Damaged { file: String, reason: String },
}

/// A weight whose shape in the file is not the one the model needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file}: Keras layer `{keras_layer}` (model layer `{layer}`): `{weight}` has shape {found}, the model expects {expected}"
)]
pub struct ShapeError {
    pub file: String,
    pub keras_layer: String,
    pub layer: String,
    pub weight: String,
    pub expected: String,
    pub found: String,
}

/// An open Keras 2 HDF5 model file.
pub struct KerasFile {
    name: String,
    file: Hdf5File,
    config: ModelConfig,
    /// Model-file layer paths to the Keras layers behind them.
    matched: HashMap<String, MatchedLayer>,
    /// `model_weights/<layer>/<weight name>` of every weight not yet read.
    unread: BTreeSet<String>,
    /// Where each weight read so far is stored: `(offset, bytes, path)`.
    storage: Vec<(u64, u64, String)>,
}

impl KerasFile {
    /// Opens a file; `Path::display` of `path` names it in errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = crate::files::read_limited(path, crate::files::MAX_WEIGHTS_BYTES, "weights")
            .map_err(|source| WeightsError::Io {
                file: name.clone(),
                source,
            })?;
        Self::from_bytes(name, bytes)
    }

    /// Reads a file already in memory; `name` names it in errors.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<Self, WeightsError> {
        let name = name.into();
        let hdf5 = |what: &str, error: hdf5_reader::error::Error| WeightsError::Hdf5 {
            file: name.clone(),
            what: what.to_string(),
            reason: error.to_string(),
        };
        let not_keras = |reason: String| WeightsError::NotKeras {
            file: name.clone(),
            reason,
        };

        let file = Hdf5File::from_vec(bytes).map_err(|e| hdf5("superblock", e))?;
        let root = file.root_group().map_err(|e| hdf5("root group", e))?;
        let config_text = root
            .attribute("model_config")
            .and_then(|a| a.read_string())
            .map_err(|e| not_keras(format!("no readable `model_config` attribute ({e})")))?;
        let config: ModelConfig = serde_json::from_str(&config_text).map_err(|e| {
            not_keras(format!(
                "`model_config` is not a Keras model description: {e}"
            ))
        })?;
        let matched =
            topology::match_layers(&config.config).map_err(|e| WeightsError::Structure {
                file: name.clone(),
                keras_layer: e.keras_layer,
                reason: e.message,
            })?;

        let weights_group = root
            .group("model_weights")
            .map_err(|e| not_keras(format!("no `model_weights` group ({e})")))?;
        let layer_names = weights_group
            .attribute("layer_names")
            .and_then(|a| a.read_strings())
            .map_err(|e| {
                not_keras(format!(
                    "`model_weights` has no readable `layer_names` ({e})"
                ))
            })?;
        let mut unread = BTreeSet::new();
        for layer in &layer_names {
            let group = weights_group
                .group(layer)
                .map_err(|e| hdf5(&format!("model_weights/{layer}"), e))?;
            for weight in weight_names(&group)
                .map_err(|e| hdf5(&format!("model_weights/{layer} weight_names"), e))?
            {
                unread.insert(format!("model_weights/{layer}/{weight}"));
            }
        }
        Ok(KerasFile {
            name,
            file,
            config,
            matched,
            unread,
            storage: Vec::new(),
        })
    }

    /// Errors unless every weight in the file was read: a file with more
    /// layers than the model is for another architecture.
    ///
    /// Also errors when two weights share stored bytes. HDF5 files of this age
    /// carry no checksums, so a damaged data address would otherwise read
    /// another weight's values without complaint.
    pub fn finish(mut self) -> Result<(), WeightsError> {
        self.storage.sort();
        for pair in self.storage.windows(2) {
            let ((start, length, first), (next, _, second)) = (&pair[0], &pair[1]);
            if start + length > *next {
                return Err(WeightsError::Damaged {
                    file: self.name,
                    reason: format!("`{first}` and `{second}` are stored in overlapping bytes"),
                });
            }
        }
        if self.unread.is_empty() {
            return Ok(());
        }
        let weights: Vec<&str> = self.unread.iter().map(String::as_str).collect();
        Err(WeightsError::Unused {
            file: self.name,
            weights: weights.join(", "),
        })
    }

    /// How many plain convolutions and modules the file's network has, for
    /// messages about layers it lacks.
    fn network_outline(&self) -> String {
        let base = self
            .matched
            .keys()
            .filter(|k| k.starts_with("base["))
            .count();
        let modules = self
            .matched
            .keys()
            .filter(|k| k.ends_with(".residual"))
            .count();
        format!("{base} base convolutions and {modules} modules")
    }

    fn layer_config(&self, keras_layer: &str) -> Option<&serde_json::Value> {
        self.config
            .config
            .layers
            .iter()
            .find(|l| l.name == keras_layer)
            .map(|l| &l.config)
    }

    /// The Keras layer that holds `spec`'s weight.
    fn keras_layer(&self, spec: &ParameterSpec<'_>) -> Result<String, WeightsError> {
        let matched = self
            .matched
            .get(spec.layer)
            .ok_or_else(|| WeightsError::MissingLayer {
                file: self.name.clone(),
                layer: spec.layer.to_string(),
                found: self.network_outline(),
            })?;
        if !spec.kind.is_batch_norm() {
            return Ok(matched.conv.clone());
        }
        matched
            .batch_norm
            .clone()
            .ok_or_else(|| WeightsError::MissingWeight {
                file: self.name.clone(),
                keras_layer: matched.conv.clone(),
                layer: spec.layer.to_string(),
                weight: format!(
                    "{} (no batch norm follows the layer)",
                    spec.kind.keras_name()
                ),
            })
    }
}

/// A layer group's `weight_names`, e.g. `conv2d_1_1/kernel:0`. Layers without
/// weights store an empty float array there instead of strings.
fn weight_names(group: &hdf5_reader::group::Group) -> hdf5_reader::error::Result<Vec<String>> {
    let attribute = group.attribute("weight_names")?;
    if attribute.num_elements()? == 0 {
        return Ok(Vec::new());
    }
    attribute.read_strings()
}

/// Where a contiguous dataset's values are: `(offset, bytes)`. Keras 2 writes
/// every weight contiguous and unfiltered; other layouts are reported.
fn contiguous_storage(
    file: &Hdf5File,
    dataset: &hdf5_reader::Dataset,
) -> hdf5_reader::error::Result<(u64, u64)> {
    use hdf5_reader::messages::HdfMessage;
    use hdf5_reader::messages::layout::DataLayout;
    let header = file.get_or_parse_header(dataset.address())?;
    header
        .messages
        .iter()
        .find_map(|message| match message {
            HdfMessage::DataLayout(layout) => match &layout.layout {
                DataLayout::Contiguous { address, size } => Some((*address, *size)),
                _ => None,
            },
            _ => None,
        })
        .ok_or_else(|| {
            hdf5_reader::error::Error::InvalidData("not a contiguous dataset".to_string())
        })
}

fn shape_text(shape: impl IntoIterator<Item = impl std::fmt::Display>) -> String {
    let dims: Vec<String> = shape.into_iter().map(|d| d.to_string()).collect();
    format!("({})", dims.join(", "))
}

impl ParameterSource for KerasFile {
    type Error = WeightsError;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), WeightsError> {
        let keras_layer = self.keras_layer(spec)?;
        let missing = || WeightsError::MissingWeight {
            file: self.name.clone(),
            keras_layer: keras_layer.clone(),
            layer: spec.layer.to_string(),
            weight: spec.kind.keras_name().to_string(),
        };
        let hdf5 = |what: &str, error: hdf5_reader::error::Error| WeightsError::Hdf5 {
            file: self.name.clone(),
            what: what.to_string(),
            reason: error.to_string(),
        };
        let group_path = format!("model_weights/{keras_layer}");
        let group = self
            .file
            .group(&group_path)
            .map_err(|e| hdf5(&group_path, e))?;
        let names =
            weight_names(&group).map_err(|e| hdf5(&format!("{group_path} weight_names"), e))?;
        let wanted = format!("{}:0", spec.kind.keras_name());
        let weight = names
            .iter()
            .find(|n| n.rsplit('/').next() == Some(wanted.as_str()))
            .ok_or_else(missing)?;
        let path = format!("{group_path}/{weight}");
        let dataset = self.file.dataset(&path).map_err(|e| hdf5(&path, e))?;
        let found: Vec<u64> = dataset.shape().to_vec();
        let expected: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
        if found != expected {
            return Err(WeightsError::Shape(Box::new(ShapeError {
                file: self.name.clone(),
                keras_layer,
                layer: spec.layer.to_string(),
                weight: weight.clone(),
                expected: shape_text(spec.shape),
                found: shape_text(found),
            })));
        }
        let (offset, length) =
            contiguous_storage(&self.file, &dataset).map_err(|e| hdf5(&path, e))?;
        if length != 4 * values.len() as u64 {
            return Err(WeightsError::Damaged {
                file: self.name.clone(),
                reason: format!(
                    "`{path}` has {} values but is stored in {length} bytes",
                    values.len()
                ),
            });
        }
        dataset.read_into(values).map_err(|e| hdf5(&path, e))?;
        // Folding divides by the square root of the variance plus epsilon:
        // a NaN, an infinity or a negative variance would make every
        // output NaN without an error.
        let bad = match spec.kind {
            ParameterKind::MovingVariance => {
                values.iter().position(|v| !(v.is_finite() && *v >= 0.0))
            }
            _ => values.iter().position(|v| !v.is_finite()),
        };
        if let Some(index) = bad {
            let expected = if spec.kind == ParameterKind::MovingVariance {
                "a finite variance of at least 0"
            } else {
                "a finite number"
            };
            return Err(WeightsError::Damaged {
                file: self.name.clone(),
                reason: format!(
                    "`{path}` holds {} at index {index}, where {expected} belongs",
                    values[index]
                ),
            });
        }
        self.unread.remove(&path);
        self.storage.push((offset, length, path));
        Ok(())
    }

    fn batch_norm_epsilon(&mut self, layer: &str, model_epsilon: f32) -> Result<f32, WeightsError> {
        let keras_layer = self
            .matched
            .get(layer)
            .and_then(|m| m.batch_norm.clone())
            .unwrap_or_default();
        let epsilon = self
            .layer_config(&keras_layer)
            .and_then(|c| c.get("epsilon"))
            .and_then(|e| e.as_f64());
        match epsilon {
            None => Ok(model_epsilon),
            Some(e) if e.is_finite() && e > 0.0 && (e as f32) > 0.0 => Ok(e as f32),
            Some(e) => Err(WeightsError::Structure {
                file: self.name.clone(),
                keras_layer,
                reason: format!("the batch norm's epsilon is {e}; it must be a positive number"),
            }),
        }
    }
}

/// Opens `path`, reads a model's weights with `read` (a generated
/// `from_source`), and checks that the file held nothing else.
pub fn load<W>(
    path: impl AsRef<Path>,
    read: impl FnOnce(&mut KerasFile) -> Result<W, WeightsError>,
) -> Result<W, WeightsError> {
    let mut file = KerasFile::open(path)?;
    let weights = read(&mut file)?;
    file.finish()?;
    Ok(weights)
}

/// [`load`] for a file already in memory.
pub fn load_bytes<W>(
    name: impl Into<String>,
    bytes: Vec<u8>,
    read: impl FnOnce(&mut KerasFile) -> Result<W, WeightsError>,
) -> Result<W, WeightsError> {
    let mut file = KerasFile::from_bytes(name, bytes)?;
    let weights = read(&mut file)?;
    file.finish()?;
    Ok(weights)
}
