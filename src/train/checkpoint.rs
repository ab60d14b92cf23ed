//! Training checkpoints: everything a run needs to continue exactly where
//! it stopped (parameters, moving statistics, the optimizer's state and step count,
//! the schedule's state, the epochs done and their history), written
//! atomically at the end of every epoch.
//!
//! The file is `MXCKPT01`, the header's length (u64, little-endian), the
//! header (JSON), the four arrays of f32 (little-endian: parameters,
//! statistics, the optimizer's first and second arrays: Adam's moments, or
//! SGD's velocities and zeros), when the run averages weights two
//! more (the average's parameters and statistics), and the SHA-256 of
//! everything before it. A damaged or truncated file fails its checksum, so it is
//! refused whole, and since it is written to a temporary file that is
//! renamed over the old one only once complete, a crash while writing leaves
//! the previous checkpoint as it was.

use super::Trainer;
use super::average::WeightAverage;
use crate::runtime::train::TrainableModel;
use crate::runtime::{bytemuck, flat, flat_mut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"MXCKPT01";

/// One epoch of a run, as `history.csv` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1 for the first epoch.
    pub epoch: usize,
    /// The learning rate at the epoch's start.
    pub learning_rate: f32,
    /// Mean training loss (cross-entropy plus L2) over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy over the epoch's steps (augmented images, training mode).
    pub train_accuracy: f64,
    /// Validation loss (cross-entropy plus L2), inference mode.
    pub validation_loss: f64,
    /// Validation accuracy, inference mode.
    pub validation_accuracy: f64,
    /// Wall time of the epoch's training steps.
    pub seconds: f64,
}

/// Where the learning-rate schedule and the early stop stand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The learning rate of the next epoch.
    pub learning_rate: f32,
    /// The lowest validation loss so far.
    pub best_validation_loss: Option<f64>,
    /// Epochs since the plateau schedule last saw an improvement or cut the rate.
    pub plateau_wait: usize,
    /// Epochs since the best validation loss, for the early stop.
    pub epochs_since_best: usize,
}

/// The header of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// The model's name.
    pub model: String,
    /// Values in the parameters and in the statistics.
    pub sizes: [usize; 2],
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer updates made.
    pub steps: u64,
    /// The schedule's state.
    pub schedule: ScheduleState,
    /// Every epoch so far.
    pub history: Vec<EpochRecord>,
    /// The run's settings, so that a resumed run checks it continues the same one.
    pub settings: serde_json::Value,
    /// How many epochs' weights the run's average holds (0: none, and then
    /// absent from the header, as in checkpoints from before averaging).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub averaged: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

/// Why a checkpoint could not be written or read. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a mini-xception training checkpoint (it does not start with `MXCKPT01`)")]
    NotACheckpoint { file: String },
    #[error("{file}: damaged or truncated: {reason}")]
    Damaged { file: String, reason: String },
    #[error("{file}: a checkpoint of the model `{found}`, not `{expected}`")]
    Model {
        file: String,
        expected: String,
        found: String,
    },
}

/// Writes `trainer`'s state with `header` to `path` atomically: to a
/// temporary file beside it, flushed to the disk, then renamed over `path`.
pub fn save<M: TrainableModel>(
    path: &Path,
    header: &CheckpointHeader,
    trainer: &Trainer<M>,
) -> Result<(), CheckpointError> {
    save_averaged(path, header, trainer, None)
}

/// [`save`] with the run's average of weights, when it has one; the
/// header's `averaged` is written as the average's count.
pub fn save_averaged<M: TrainableModel>(
    path: &Path,
    header: &CheckpointHeader,
    trainer: &Trainer<M>,
    average: Option<&WeightAverage<M>>,
) -> Result<(), CheckpointError> {
    let file = path.display().to_string();
    let io = |source| CheckpointError::Io {
        file: file.clone(),
        source,
    };
    let header = CheckpointHeader {
        averaged: average.map_or(0, |a| a.count),
        ..header.clone()
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| io(std::io::Error::other(e)))?;
    let optimizer = trainer.optimizer_state();
    let mut arrays = vec![
        flat(trainer.parameters()),
        flat(trainer.statistics()),
        flat(optimizer.first_moments),
        flat(optimizer.second_moments),
    ];
    if let Some(average) = average.filter(|a| a.count > 0) {
        arrays.push(flat(&*average.parameters));
        arrays.push(flat(&*average.statistics));
    }
    let mut bytes = Vec::with_capacity(
        16 + header_json.len() + arrays.iter().map(|a| 4 * a.len()).sum::<usize>() + 32,
    );
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header_json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header_json);
    for array in arrays {
        bytes.extend_from_slice(bytemuck::cast_slice(array));
    }
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);

    let temporary = path.with_extension("checkpoint.tmp");
    let mut out = std::fs::File::create(&temporary).map_err(io)?;
    out.write_all(&bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    drop(out);
    std::fs::rename(&temporary, path).map_err(io)?;
    // The rename itself reaches the disk with the directory's entry.
    if let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(directory) = std::fs::File::open(directory)
    {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Reads a checkpoint of model `M` and restores it into `trainer`, returning
/// its header. Nothing in the trainer changes unless the whole file is good.
pub fn load<M: TrainableModel>(
    path: &Path,
    trainer: &mut Trainer<M>,
) -> Result<CheckpointHeader, CheckpointError> {
    Ok(load_averaged(path, trainer)?.0)
}

/// [`load`], with the run's average of weights when the checkpoint has one.
pub fn load_averaged<M: TrainableModel>(
    path: &Path,
    trainer: &mut Trainer<M>,
) -> Result<(CheckpointHeader, Option<WeightAverage<M>>), CheckpointError> {
    let file = path.display().to_string();
    let bytes = read(path, &file)?;
    load_bytes_averaged(&file, &bytes, trainer)
}

fn read(path: &Path, file: &str) -> Result<Vec<u8>, CheckpointError> {
    crate::files::read_limited(path, crate::files::MAX_CHECKPOINT_BYTES, "a checkpoint").map_err(
        |source| CheckpointError::Io {
            file: file.to_string(),
            source,
        },
    )
}

/// Whether the file at `path` starts as a checkpoint does (its first eight
/// bytes), to tell checkpoints from other weight files.
pub fn is_checkpoint(path: &Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut start))
        .is_ok_and(|_| &start == MAGIC)
}

/// The parameters and moving statistics of the checkpoint at `path` (the
/// trained ones, not an average), to start another run from them, or to
/// recalibrate them; returns the checkpoint's header.
pub fn load_weights<M: TrainableModel>(
    path: &Path,
    parameters: &mut M::Parameters,
    statistics: &mut M::Statistics,
) -> Result<CheckpointHeader, CheckpointError> {
    let file = path.display().to_string();
    let bytes = read(path, &file)?;
    let (header, arrays) = parse::<M>(&file, &bytes)?;
    copy_values(arrays[0], flat_mut(parameters));
    copy_values(arrays[1], flat_mut(statistics));
    Ok(header)
}

fn copy_values(source: &[u8], target: &mut [f32]) {
    for (value, chunk) in target.iter_mut().zip(source.chunks_exact(4)) {
        *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

/// [`load`] from bytes in memory; `file` names them in errors.
pub fn load_bytes<M: TrainableModel>(
    file: &str,
    bytes: &[u8],
    trainer: &mut Trainer<M>,
) -> Result<CheckpointHeader, CheckpointError> {
    Ok(load_bytes_averaged(file, bytes, trainer)?.0)
}

/// [`load_averaged`] from bytes in memory; `file` names them in errors.
pub fn load_bytes_averaged<M: TrainableModel>(
    file: &str,
    bytes: &[u8],
    trainer: &mut Trainer<M>,
) -> Result<(CheckpointHeader, Option<WeightAverage<M>>), CheckpointError> {
    let (header, arrays) = parse::<M>(file, bytes)?;
    let average = match arrays.get(4..6) {
        Some(&[parameters, statistics]) => {
            let mut average = WeightAverage::<M>::new().map_err(|e| CheckpointError::Damaged {
                file: file.to_string(),
                reason: e.to_string(),
            })?;
            copy_values(parameters, flat_mut(&mut *average.parameters));
            copy_values(statistics, flat_mut(&mut *average.statistics));
            average.count = header.averaged;
            Some(average)
        }
        _ => None,
    };
    let mut first: Box<M::Parameters> = bytemuck::zeroed_box();
    let mut second: Box<M::Parameters> = bytemuck::zeroed_box();
    {
        let (parameters, statistics) = trainer.state_mut();
        let targets: [&mut [f32]; 4] = [
            flat_mut(parameters),
            flat_mut(statistics),
            flat_mut(&mut *first),
            flat_mut(&mut *second),
        ];
        for (target, source) in targets.into_iter().zip(arrays) {
            copy_values(source, target);
        }
    }
    trainer.restore_optimizer(&first, &second, header.steps);
    Ok((header, average))
}

/// The header of the checkpoint at `path` (checked whole, as every read
/// is), for what it records before the model is known: the model's name
/// and the run's settings.
pub fn read_header(path: &Path) -> Result<CheckpointHeader, CheckpointError> {
    let file = path.display().to_string();
    let bytes = read(path, &file)?;
    Ok(split_header(&file, &bytes)?.0)
}

/// Checks a checkpoint's bytes whole (magic and checksum) and splits them
/// into the header and the bytes of the arrays after it.
fn split_header<'b>(
    file: &str,
    bytes: &'b [u8],
) -> Result<(CheckpointHeader, &'b [u8]), CheckpointError> {
    let damaged = |reason: String| CheckpointError::Damaged {
        file: file.to_string(),
        reason,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::NotACheckpoint {
            file: file.to_string(),
        });
    }
    if bytes.len() < MAGIC.len() + 8 + 32 {
        return Err(damaged(format!(
            "{} bytes is shorter than any checkpoint",
            bytes.len()
        )));
    }
    let (content, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(content).as_slice() != digest {
        return Err(damaged(
            "its checksum does not match its contents".to_string(),
        ));
    }
    let header_length = u64::from_le_bytes(content[8..16].try_into().unwrap_or([0; 8]));
    let header_end = usize::try_from(header_length)
        .ok()
        .and_then(|length| length.checked_add(16))
        .filter(|&end| end <= content.len())
        .ok_or_else(|| {
            damaged(format!(
                "a header of {header_length} bytes does not fit the file"
            ))
        })?;
    let header: CheckpointHeader = serde_json::from_slice(&content[16..header_end])
        .map_err(|e| damaged(format!("its header is not valid: {e}")))?;
    Ok((header, &content[header_end..]))
}

/// Checks a checkpoint's bytes whole and splits them into the header and
/// the arrays' bytes: four, or six with an average.
fn parse<'b, M: TrainableModel>(
    file: &str,
    bytes: &'b [u8],
) -> Result<(CheckpointHeader, Vec<&'b [u8]>), CheckpointError> {
    let damaged = |reason: String| CheckpointError::Damaged {
        file: file.to_string(),
        reason,
    };
    let (header, rest) = split_header(file, bytes)?;
    if header.model != M::NAME {
        return Err(CheckpointError::Model {
            file: file.to_string(),
            expected: M::NAME.to_string(),
            found: header.model,
        });
    }
    let parameters = std::mem::size_of::<M::Parameters>();
    let statistics = std::mem::size_of::<M::Statistics>();
    if header.sizes != [parameters / 4, statistics / 4] {
        return Err(damaged(format!(
            "it holds {} parameters and {} statistics, the model has {} and {}",
            header.sizes[0],
            header.sizes[1],
            parameters / 4,
            statistics / 4
        )));
    }
    let averaged = header.averaged > 0;
    let expected = 3 * parameters + statistics + if averaged { parameters + statistics } else { 0 };
    if rest.len() != expected {
        return Err(damaged(format!(
            "{} bytes of values where the model needs {expected}{}",
            rest.len(),
            if averaged {
                " (with an average of weights)"
            } else {
                ""
            }
        )));
    }
    let (values, rest) = rest.split_at(parameters);
    let (moving, rest) = rest.split_at(statistics);
    let (first, rest) = rest.split_at(parameters);
    let (second, rest) = rest.split_at(parameters);
    let (average, average_moving) = rest.split_at(if averaged { parameters } else { 0 });
    let mut arrays = vec![
        ("parameters", values, false),
        ("moving statistics", moving, false),
        ("optimizer's first moments (SGD: velocities)", first, false),
        ("optimizer's second moments", second, true),
    ];
    if averaged {
        arrays.push(("averaged parameters", average, false));
        arrays.push(("average's moving statistics", average_moving, false));
    }
    // A NaN or an infinity would poison every later step without an error,
    // and Adam divides by the square root of the second moments.
    for &(what, array, at_least_zero) in &arrays {
        let bad = array
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .enumerate()
            .find(|&(_, v)| !v.is_finite() || (at_least_zero && v < 0.0));
        if let Some((index, value)) = bad {
            return Err(damaged(format!("its {what} hold {value} at index {index}")));
        }
    }
    Ok((
        header,
        arrays.into_iter().map(|(_, array, _)| array).collect(),
    ))
}
