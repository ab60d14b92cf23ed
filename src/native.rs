//! The native weight format for deployment: a model's folded weights (batch
//! norm already in the convolutions) as a safetensors file, little-endian f32,
//! one tensor per weight, named after the model file's layers
//! (`modules[1].residual.kernel`).
//!
//! ```no_run
//! mini_xception::mini_xception!("models/mini_xception.yaml");
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let weights = mini_xception::keras::load("emotion.hdf5", MiniXceptionWeights::from_source)?;
//! mini_xception::native::save(&weights, MiniXception::NAME, "emotion.safetensors")?;
//! let mut loaded = MiniXceptionWeights::zeroed();
//! mini_xception::native::load(&mut loaded, MiniXception::NAME, "emotion.safetensors")?;
//! # Ok(())
//! # }
//! ```

use crate::runtime::FoldedTensors;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The metadata key that names the model the weights are for.
const MODEL_KEY: &str = "mini_xception.model";

/// What can go wrong saving or loading native weights. Messages start with the file.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a safetensors file: {reason}")]
    Format { file: String, reason: String },
    #[error("{file}: holds weights for the model `{found}`, not `{expected}`")]
    Model {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{file}: tensor `{tensor}`: {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: String,
    },
    #[error("{file}: the file has tensors the model does not: {tensors}")]
    Unused { file: String, tensors: String },
}

/// Writes `weights` of the model `model` to `path`.
pub fn save(
    weights: &impl FoldedTensors,
    model: &str,
    path: impl AsRef<Path>,
) -> Result<(), NativeError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = to_bytes(weights, model).map_err(|reason| NativeError::Format {
        file: file.clone(),
        reason,
    })?;
    std::fs::write(path, bytes).map_err(|source| NativeError::Io { file, source })
}

/// The safetensors bytes of `weights`.
pub fn to_bytes(weights: &impl FoldedTensors, model: &str) -> Result<Vec<u8>, String> {
    let tensors = weights.tensors("");
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            (
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| e.to_string())?;
    let metadata = HashMap::from([(MODEL_KEY.to_string(), model.to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Fills `weights` of the model `model` from `path`: every tensor must be
/// there with its shape, and nothing else may be.
pub fn load(
    weights: &mut impl FoldedTensors,
    model: &str,
    path: impl AsRef<Path>,
) -> Result<(), NativeError> {
    let (file, bytes) = read(path.as_ref())?;
    from_bytes(weights, model, &file, &bytes)
}

/// The model a native weights file is for, as its metadata names it
/// (`MiniXception`, `MiniXceptionWide`, ...); `None` for a file that names
/// none. Reads the file, not the weights.
pub fn model_of(path: impl AsRef<Path>) -> Result<Option<String>, NativeError> {
    let (file, bytes) = read(path.as_ref())?;
    named_model(&file, &bytes)
}

/// The file's name for errors, and its bytes.
fn read(path: &Path) -> Result<(String, Vec<u8>), NativeError> {
    let file = path.display().to_string();
    match crate::files::read_limited(path, crate::files::MAX_WEIGHTS_BYTES, "weights") {
        Ok(bytes) => Ok((file, bytes)),
        Err(source) => Err(NativeError::Io { file, source }),
    }
}

/// The model the safetensors `bytes` name in their metadata, if any;
/// `file` names them in errors.
pub fn named_model(file: &str, bytes: &[u8]) -> Result<Option<String>, NativeError> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| NativeError::Format {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    Ok(metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(MODEL_KEY))
        .cloned())
}

/// [`load`] from bytes in memory; `file` names them in errors.
pub fn from_bytes(
    weights: &mut impl FoldedTensors,
    model: &str,
    file: &str,
    bytes: &[u8],
) -> Result<(), NativeError> {
    let format = |reason: String| NativeError::Format {
        file: file.to_string(),
        reason,
    };
    let stored = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
    let found = named_model(file, bytes)?.unwrap_or_default();
    if found != model {
        return Err(NativeError::Model {
            file: file.to_string(),
            expected: model.to_string(),
            found,
        });
    }
    let mut unused: BTreeSet<String> = stored.names().into_iter().map(str::to_string).collect();
    for (name, shape, values) in weights.tensors_mut("") {
        let tensor_error = |reason: String| NativeError::Tensor {
            file: file.to_string(),
            tensor: name.clone(),
            reason,
        };
        let tensor = stored
            .tensor(&name)
            .map_err(|_| tensor_error("missing".to_string()))?;
        if tensor.dtype() != Dtype::F32 {
            return Err(tensor_error(format!(
                "is {:?}, expected F32",
                tensor.dtype()
            )));
        }
        if tensor.shape() != shape.as_slice() {
            return Err(tensor_error(format!(
                "has shape {:?}, the model expects {shape:?}",
                tensor.shape()
            )));
        }
        for (value, chunk) in values.iter_mut().zip(tensor.data().chunks_exact(4)) {
            *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(tensor_error(format!(
                "holds {} at index {index}, where a finite number belongs",
                values[index]
            )));
        }
        unused.remove(&name);
    }
    if !unused.is_empty() {
        let tensors: Vec<String> = unused.into_iter().collect();
        return Err(NativeError::Unused {
            file: file.to_string(),
            tensors: tensors.join(", "),
        });
    }
    Ok(())
}
