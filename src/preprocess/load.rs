//! Reading image files: the format from the contents, JPEG through libjpeg.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};
use thiserror::Error;

use super::jpeg::{self, JpegFailure};
use super::to_gray;

/// Why an image file could not be read and decoded.
///
/// Every message names the file. (Not to be confused with
/// [`image::ImageError`], which this wraps as the cause where there is one.)
#[derive(Debug, Error)]
pub enum ImageError {
    /// The file could not be read at all (missing, a directory, no permission).
    #[error("cannot read image file {}: {source}", .path.display())]
    Unreadable {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// The file's contents match no image format the `image` crate knows.
    #[error("{} is not an image: its contents match no known image format", .path.display())]
    NotAnImage {
        /// The file that was read.
        path: PathBuf,
    },
    /// The file is an image, but in a format or variant this build cannot decode
    /// (JPEG, PNG and BMP are supported).
    #[error("{} is in an unsupported image format: {source}", .path.display())]
    UnsupportedFormat {
        /// The file that was read.
        path: PathBuf,
        /// The decoder's explanation.
        source: image::ImageError,
    },
    /// A JPEG file in a colour space other than grayscale, YCbCr or RGB.
    #[error("{} is a {color_space} JPEG; only grayscale, YCbCr and RGB JPEGs are supported", .path.display())]
    UnsupportedJpeg {
        /// The file that was read.
        path: PathBuf,
        /// libjpeg's name for the colour space, such as `JCS_CMYK`.
        color_space: String,
    },
    /// The file starts like a JPEG but libjpeg cannot decode it, or it ends
    /// before its image does.
    #[error("cannot decode JPEG image {}: {message}", .path.display())]
    CorruptJpeg {
        /// The file that was read.
        path: PathBuf,
        /// libjpeg's explanation, such as "Premature end of JPEG file".
        message: String,
    },
    /// The file declares an image too large to decode (more than 512 MiB of
    /// pixels), as a few bytes of header can.
    #[error("{} declares a {width}x{height} image, too large to decode (limit 512 MiB)", .path.display())]
    TooLarge {
        /// The file that was read.
        path: PathBuf,
        /// Declared width in pixels.
        width: usize,
        /// Declared height in pixels.
        height: usize,
    },
    /// The file looks like a PNG or BMP but its data is broken.
    #[error("cannot decode image {}: {source}", .path.display())]
    Corrupt {
        /// The file that was read.
        path: PathBuf,
        /// The decoder's explanation.
        source: image::ImageError,
    },
}

/// Reads an image file and converts it to 8-bit grayscale like Pillow's
/// `Image.open(path).convert('L')`: [`load_image`], then [`to_gray`].
pub fn load_gray(path: &Path) -> Result<GrayImage, ImageError> {
    load_image(path).map(|image| to_gray(&image))
}

/// Reads and decodes an image file, with the pixels Pillow's `Image.open`
/// would give.
///
/// The format is recognised from the file's contents, as Pillow does, not from
/// its extension. JPEG goes through libjpeg-turbo's decoder (see the `jpeg`
/// module), so its pixels are Pillow's exactly; PNG and BMP through the `image`
/// crate, which decodes them losslessly. EXIF orientation is not applied,
/// because neither Pillow's `open` nor Keras' `load_img` applies it.
///
/// libjpeg reports a broken JPEG by unwinding, which this catches and returns
/// as [`ImageError::CorruptJpeg`]. That needs the default `panic = "unwind"`:
/// in a program built with `panic = "abort"`, a broken JPEG aborts it.
pub fn load_image(path: &Path) -> Result<DynamicImage, ImageError> {
    let bytes = crate::files::read_limited(path, crate::files::MAX_IMAGE_BYTES, "an image")
        .map_err(|source| ImageError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    decode_image(bytes, path)
}

/// [`load_image`] for a file already in memory; `path` names it in errors.
pub fn decode_image(bytes: Vec<u8>, path: &Path) -> Result<DynamicImage, ImageError> {
    if jpeg::is_jpeg(&bytes) {
        return jpeg::decode(&bytes).map_err(|failure| match failure {
            JpegFailure::Corrupt(message) => ImageError::CorruptJpeg {
                path: path.to_path_buf(),
                message,
            },
            JpegFailure::UnsupportedColorSpace(color_space) => ImageError::UnsupportedJpeg {
                path: path.to_path_buf(),
                color_space: format!("{color_space:?}"),
            },
            JpegFailure::TooLarge { width, height } => ImageError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
            },
        });
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ImageError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if reader.format().is_none() {
        return Err(ImageError::NotAnImage {
            path: path.to_path_buf(),
        });
    }
    reader.decode().map_err(|source| match source {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat {
            path: path.to_path_buf(),
            source,
        },
        _ => ImageError::Corrupt {
            path: path.to_path_buf(),
            source,
        },
    })
}
