//! Finding and reading the model file named in the macro call.

use std::path::{Path, PathBuf};

/// A model file that was found and read.
pub struct ModelFile {
    /// Where it was found, for `include_bytes!`.
    pub absolute: PathBuf,
    pub text: String,
}

/// Looks for `written` under each directory of `roots` in turn and reads the
/// first that exists. The error names the path as the user wrote it.
pub fn read(written: &str, roots: &[PathBuf]) -> Result<ModelFile, String> {
    let candidates: Vec<PathBuf> = if Path::new(written).is_absolute() {
        vec![PathBuf::from(written)]
    } else {
        roots.iter().map(|root| root.join(written)).collect()
    };
    let Some(found) = candidates.iter().find(|path| path.is_file()) else {
        return Err(format!(
            "{written}: cannot find the model file (paths are relative to the directory of the calling crate's Cargo.toml)"
        ));
    };
    let text = std::fs::read_to_string(found)
        .map_err(|error| format!("{written}: cannot read the model file: {error}"))?;
    Ok(ModelFile {
        absolute: found.clone(),
        text,
    })
}

/// The directories a relative path is resolved against: the calling crate's
/// manifest directory and, where that is not the crate the calling source file
/// lives in (as under trybuild, which builds test files in a crate of its own),
/// the nearest directory above that file with a `Cargo.toml`.
pub fn roots(manifest_dir: Option<PathBuf>, calling_file: Option<PathBuf>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = manifest_dir.into_iter().collect();
    let crate_of_file = calling_file.and_then(|file| {
        let file = if file.is_absolute() {
            file
        } else {
            roots.first()?.join(file)
        };
        file.ancestors()
            .skip(1)
            .find(|dir| dir.join("Cargo.toml").is_file())
            .map(Path::to_path_buf)
    });
    roots.extend(crate_of_file);
    roots
}
