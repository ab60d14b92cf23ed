//! For the tests of the workspace's crates: the folder of reference files
//! that lives beside the project (`../shared`: the paper's models, the
//! Keras reference values, photos and FER2013), found in one place.

use std::path::{Path, PathBuf};

/// The environment variable that names the reference folder when it is not
/// `../shared` beside the workspace (a checkout elsewhere, the fuzz crate).
pub const SHARED_VARIABLE: &str = "MINI_XCEPTION_SHARED";

/// The reference folder: `$MINI_XCEPTION_SHARED` when set, else `shared`
/// beside the workspace root.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os(SHARED_VARIABLE) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// A file of the reference folder, e.g. `shared("models/haarcascade_frontalface_default.xml")`.
pub fn shared(relative: &str) -> PathBuf {
    shared_dir().join(relative)
}

/// A JPEG photo of the reference folder in grayscale, for tests that
/// need a real image but not the exact bytes Pillow decodes (the library's
/// `preprocess::load_gray` gives those). Panics on a file that is missing or
/// not an image: this is for tests.
pub fn gray_photo(relative: &str) -> image::GrayImage {
    let path = shared(relative);
    let decompress = mozjpeg::Decompress::new_path(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut started = decompress
        .grayscale()
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let (width, height) = (started.width() as u32, started.height() as u32);
    let pixels: Vec<u8> = started
        .read_scanlines()
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    image::GrayImage::from_raw(width, height, pixels)
        .unwrap_or_else(|| panic!("{}: fewer rows than the header declares", path.display()))
}
