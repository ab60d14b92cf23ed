//! A pure-Rust Haar cascade face detector that gives the same boxes as
//! OpenCV 4.10's `CascadeClassifier::detectMultiScale`.
//!
//! The paper's demo finds faces with OpenCV's stock
//! `haarcascade_frontalface_default.xml` and
//! `detectMultiScale(gray, scaleFactor=1.3, minNeighbors=5)`; this crate
//! reads the same XML file and reproduces that call, arithmetic included:
//!
//! ```no_run
//! use std::path::Path;
//! use mini_xception_detect::{Cascade, DetectOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cascade = Cascade::from_xml_file(Path::new("haarcascade_frontalface_default.xml"))?;
//! // Any 8-bit grayscale image, e.g. `image::open(path)?.to_luma8()`.
//! let gray = image::GrayImage::new(640, 480);
//! for face in cascade.detect(&gray, &DetectOptions::default())? {
//!     println!("{} {} {}x{}", face.x, face.y, face.width, face.height);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! On the reference photos the boxes are OpenCV's exactly, given the same
//! grayscale input. For JPEG that means libjpeg-turbo's decoding, as Pillow
//! and OpenCV do it; `mini_xception::preprocess::load_gray` gives those bytes.
//! The crate depends on nothing of the classifier: `image` for the
//! grayscale buffer, `roxmltree` for the cascade file, `rayon` for threads.
//!
//! What is reproduced, one file each (see them for the details):
//! - `cascade` (with `xml`): the "new" XML format written by
//!   `opencv_traincascade` (`stageType BOOST`, `featureType HAAR`), numbers
//!   rounded to `float` as OpenCV stores them, stumps and deeper trees.
//!   Tilted features, LBP/HOG cascades and the old `opencv-haar-classifier`
//!   format are rejected with [`CascadeError::Unsupported`].
//! - `scan`: the scale list (including OpenCV's nearest-scale fallback when
//!   `min_size`/`max_size` leave none), the window steps, the stripes that
//!   bound the rows scanned, and OpenCV's skip after a first-stage rejection.
//! - `resize`: the per-scale shrink of the image with OpenCV's bit-exact
//!   `INTER_LINEAR_EXACT` (features are evaluated on the shrunk image, not
//!   scaled). This is not `cv2.resize`'s `INTER_LINEAR`.
//! - `integral` and `window`: 32-bit sum and squared-sum integral images,
//!   feature offsets computed once per scale, the variance normalisation and
//!   the stage sums in OpenCV's mix of `float` and `double`.
//! - `simd`: with AVX2 (detected at run time), the first stages of eight
//!   neighbouring windows at once, bit for bit as one window at a time.
//! - `group`: `groupRectangles` with `eps = 0.2`, and the final clipping.
//!
//! Only the default `flags = 0` behaviour exists: OpenCV ignores the flags
//! for new-format cascades.

mod cascade;
mod group;
mod integral;
mod resize;
mod scan;
mod simd;
mod window;
mod xml;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use image::GrayImage;
use thiserror::Error;

/// Why a cascade file could not be loaded.
///
/// Errors about the content name the element by its path from the
/// top-level node, with sequence items numbered from 0, e.g.
/// `cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes`.
#[derive(Debug, Error)]
pub enum CascadeError {
    /// The file could not be read.
    #[error("cannot read cascade file {}: {source}", .path.display())]
    Io {
        /// The file asked for.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// The text is not well-formed XML (for example a truncated file).
    #[error("{source_name}: not well-formed XML inside {element}: {message}")]
    Xml {
        /// The file name or the name given to [`Cascade::from_xml_str`].
        source_name: String,
        /// The innermost element open where the XML breaks.
        element: String,
        /// The XML parser's description, with line and column.
        message: String,
    },
    /// An element is missing or has content a cascade cannot have.
    #[error("{source_name}: {element}: expected {expected}, found {found}")]
    Invalid {
        /// The file name or the name given to [`Cascade::from_xml_str`].
        source_name: String,
        /// The element's path.
        element: String,
        /// What a cascade needs there.
        expected: String,
        /// What the file has.
        found: String,
    },
    /// A valid OpenCV cascade that uses something this detector does not
    /// implement (tilted features, LBP or HOG features, the old format).
    #[error("{source_name}: {element}: not supported: {what}")]
    Unsupported {
        /// The file name or the name given to [`Cascade::from_xml_str`].
        source_name: String,
        /// The element's path.
        element: String,
        /// What is not supported.
        what: String,
    },
}

/// Why a detection could not run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DetectError {
    /// The scale factor must be a finite number above 1 (OpenCV asserts the
    /// same); one so close to 1 that it needs more than 100 000 scales is
    /// refused too, since that scan would practically never end.
    #[error(
        "scale factor {0} is not usable: it must be finite, above 1, and not so close to 1 that it needs more than 100000 scales"
    )]
    ScaleFactor(f64),
    /// The image is too wide for 32-bit offsets into its integral image.
    #[error("a {width}x{height} image is too large to scan")]
    ImageTooLarge {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
}

/// The settings of OpenCV's `detectMultiScale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// How much the window grows from one scale to the next (`scaleFactor`);
    /// must be above 1.
    pub scale_factor: f64,
    /// How many raw hits a group needs beyond the first to be reported
    /// (`minNeighbors`); 0 reports every raw hit ungrouped, as OpenCV does.
    pub min_neighbors: usize,
    /// The smallest window scanned, `(width, height)` (`minSize`).
    pub min_size: (u32, u32),
    /// The largest window scanned (`maxSize`); `None`, or a zero side, means
    /// the image size.
    pub max_size: Option<(u32, u32)>,
}

impl Default for DetectOptions {
    /// The paper's demo: `scaleFactor = 1.3`, `minNeighbors = 5`, no size
    /// limits.
    fn default() -> Self {
        Self {
            scale_factor: 1.3,
            min_neighbors: 5,
            min_size: (0, 0),
            max_size: None,
        }
    }
}

/// A detected object (a face, for the frontal-face cascades), in pixels of
/// the image given to [`Cascade::detect`], clipped to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaceBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// A loaded Haar cascade classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    model: cascade::Model,
    /// The model prepared per scale, kept for the next image of the size.
    prepared: window::Prepared,
}

/// The largest cascade file read: OpenCV's own are under 2 MiB, and a file
/// of gigabytes named where a cascade belongs is refused, not read.
pub const MAX_CASCADE_BYTES: u64 = 64 << 20;

/// The bytes of `path`, or an error of kind `InvalidData` when it holds more
/// than [`MAX_CASCADE_BYTES`], checked before anything is allocated.
fn read_cascade_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let too_large = |size: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file holds {size} bytes, past the limit of {MAX_CASCADE_BYTES} for a cascade"
            ),
        )
    };
    let declared = file.metadata()?.len();
    if declared > MAX_CASCADE_BYTES {
        return Err(too_large(declared));
    }
    // Pipes and /proc files declare no size, and a file can grow after the
    // check: never read past the limit.
    let mut bytes = Vec::new();
    file.take(MAX_CASCADE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CASCADE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

impl Cascade {
    /// Loads a cascade from an OpenCV XML file such as
    /// `haarcascade_frontalface_default.xml`.
    pub fn from_xml_file(path: &Path) -> Result<Self, CascadeError> {
        let io = |source| CascadeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = read_cascade_file(path).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.utf8_error(),
            ))
        })?;
        Self::from_xml_str(&text, &path.display().to_string())
    }

    /// Loads a cascade from XML text; `source_name` names it in errors.
    pub fn from_xml_str(text: &str, source_name: &str) -> Result<Self, CascadeError> {
        cascade::parse(text, source_name).map(|model| Self {
            model,
            prepared: window::Prepared::default(),
        })
    }

    /// The detection window the cascade was trained at, `(width, height)`.
    pub fn window_size(&self) -> (u32, u32) {
        (self.model.window_width, self.model.window_height)
    }

    /// The number of boosted stages.
    pub fn stage_count(&self) -> usize {
        self.model.stages.len()
    }

    /// Finds objects in `image` as OpenCV 4.10's
    /// `detectMultiScale(image, scale_factor, min_neighbors, 0, min_size, max_size)`
    /// does, sorted by `(y, x, width, height)`.
    ///
    /// Large scales are scanned on several threads (rayon's global pool);
    /// the boxes are the same for any number of threads.
    pub fn detect(
        &self,
        image: &GrayImage,
        options: &DetectOptions,
    ) -> Result<Vec<FaceBox>, DetectError> {
        let hits = scan::candidates(&self.model, &self.prepared, image, options)?;
        let grouped = group::group_rectangles(&hits, options.min_neighbors);
        let mut boxes: Vec<FaceBox> = group::clip(&grouped, image.width(), image.height())
            .into_iter()
            .map(|rect| FaceBox {
                x: rect.x.unsigned_abs(),
                y: rect.y.unsigned_abs(),
                width: rect.width.unsigned_abs(),
                height: rect.height.unsigned_abs(),
            })
            .collect();
        boxes.sort_unstable_by_key(|face| (face.y, face.x, face.width, face.height));
        Ok(boxes)
    }
}

/// The README's example, compiled as a doctest so that it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
