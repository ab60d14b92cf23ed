//! Turning a photo into the network's input exactly as the reference demo
//! (`oarriaga/face_classification`, `src/image_emotion_gender_demo.py`) does.
//!
//! The demo's steps, each reproduced here byte for byte:
//!
//! 1. [`load_gray`] / [`to_gray`]: Pillow's `Image.open(path).convert('L')`.
//! 2. [`crop`]: `apply_offsets` followed by numpy slicing `gray[y1:y2, x1:x2]`.
//! 3. [`resize_linear`]: OpenCV 4.10's `cv2.resize(crop, (W, H))` with the
//!    default `INTER_LINEAR`.
//! 4. [`normalize`] / [`to_input`]: `preprocess_input(x, v2=True)`.
//!
//! Byte-exact parity matters because the reference cases in
//! `shared/reference/` store the resized `uint8` faces; anything less than
//! exact would make those cases useless for checking this pipeline.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Pixel};
use thiserror::Error;

use crate::runtime::Tensor;

/// Why an image file could not be turned into a grayscale image.
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
    /// (only JPEG, PNG and BMP are compiled in).
    #[error("{} is in an unsupported image format: {source}", .path.display())]
    UnsupportedFormat {
        /// The file that was read.
        path: PathBuf,
        /// The decoder's explanation.
        source: image::ImageError,
    },
    /// The file looks like a supported format but its data is broken.
    #[error("cannot decode image {}: {source}", .path.display())]
    Corrupt {
        /// The file that was read.
        path: PathBuf,
        /// The decoder's explanation.
        source: image::ImageError,
    },
}

/// Reads an image file and converts it to 8-bit grayscale like Pillow's
/// `Image.open(path).convert('L')` (see [`to_gray`]).
///
/// The format is recognised from the file's contents, as Pillow does, not from
/// its extension. EXIF orientation is not applied, because neither Pillow's
/// `open` nor Keras' `load_img` applies it.
pub fn load_gray(path: &Path) -> Result<GrayImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
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
    let image = reader.decode().map_err(|source| match source {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat {
            path: path.to_path_buf(),
            source,
        },
        _ => ImageError::Corrupt {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(to_gray(&image))
}

/// Converts any decoded image to 8-bit grayscale exactly as Pillow's
/// `convert('L')` does.
///
/// - RGB and RGBA: ITU-R 601-2 luma in Pillow's 16-bit fixed point,
///   `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`; alpha is ignored, as in
///   Pillow's RGBA to L conversion.
/// - 8-bit gray is returned unchanged; gray with alpha keeps the gray channel.
/// - 16-bit images follow what Pillow does when it opens a 16-bit PNG and
///   then converts it: RGB, RGBA and gray-with-alpha keep the high byte of
///   each sample (Pillow unpacks them to 8 bits on load), then convert as
///   above. 16-bit gray opens as Pillow's `I;16` mode, whose conversion to `L`
///   **clips** at 255 rather than scaling, so values above 255 become white.
///   That clipping is faithful to Pillow, not a sensible tone mapping.
/// - Floating-point images (which the compiled-in decoders never produce) go
///   through the `image` crate's own 8-bit RGB conversion first.
pub fn to_gray(image: &DynamicImage) -> GrayImage {
    match image {
        DynamicImage::ImageLuma8(gray) => gray.clone(),
        DynamicImage::ImageLumaA8(gray_alpha) => map_pixels(gray_alpha, |p| p.0[0]),
        DynamicImage::ImageRgb8(rgb) => rgb_to_gray(rgb),
        DynamicImage::ImageRgba8(rgba) => map_pixels(rgba, |p| pillow_luma(p.0[0], p.0[1], p.0[2])),
        DynamicImage::ImageLuma16(gray) => map_pixels(gray, |p| clip_to_u8(p.0[0])),
        DynamicImage::ImageLumaA16(gray_alpha) => map_pixels(gray_alpha, |p| high_byte(p.0[0])),
        DynamicImage::ImageRgb16(rgb) => map_pixels(rgb, |p| {
            pillow_luma(high_byte(p.0[0]), high_byte(p.0[1]), high_byte(p.0[2]))
        }),
        DynamicImage::ImageRgba16(rgba) => map_pixels(rgba, |p| {
            pillow_luma(high_byte(p.0[0]), high_byte(p.0[1]), high_byte(p.0[2]))
        }),
        other => map_pixels(&other.to_rgb8(), |p| pillow_luma(p.0[0], p.0[1], p.0[2])),
    }
}

/// [`to_gray`] of an 8-bit RGB image (a decoded video frame, say), without
/// wrapping it in a [`DynamicImage`].
pub fn rgb_to_gray(rgb: &image::RgbImage) -> GrayImage {
    map_pixels(rgb, |p| pillow_luma(p.0[0], p.0[1], p.0[2]))
}

/// Pillow's `L24` macro: the 601-2 weights 0.299, 0.587, 0.114 scaled by 2^16
/// (they sum to exactly 65536, so white stays 255), rounded by adding half.
fn pillow_luma(red: u8, green: u8, blue: u8) -> u8 {
    let weighted =
        u32::from(red) * 19595 + u32::from(green) * 38470 + u32::from(blue) * 7471 + 0x8000;
    // At most 255 * 65536 + 0x8000, so the shifted value fits in a u8.
    u8::try_from(weighted >> 16).unwrap_or(u8::MAX)
}

/// Pillow's 16-to-8-bit unpacking on load keeps the most significant byte.
fn high_byte(sample: u16) -> u8 {
    sample.to_be_bytes()[0]
}

/// Pillow's `I;16` to `L` conversion saturates instead of scaling.
fn clip_to_u8(sample: u16) -> u8 {
    u8::try_from(sample).unwrap_or(u8::MAX)
}

fn map_pixels<P: Pixel>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    to_luma: impl Fn(&P) -> u8,
) -> GrayImage {
    let mut gray = GrayImage::new(image.width(), image.height());
    for (out, pixel) in gray.pixels_mut().zip(image.pixels()) {
        *out = Luma([to_luma(pixel)]);
    }
    gray
}

/// Cuts a face out of a grayscale image the way the demo does: `apply_offsets`
/// widens the box `(x, y, w, h)` by the offsets on every side, giving
/// `x1 = x - offset_x`, `x2 = x + w + offset_x`, `y1 = y - offset_y`,
/// `y2 = y + h + offset_y`, and numpy slicing `gray[y1:y2, x1:x2]` cuts it.
///
/// Like numpy, the right and bottom edges are clipped to the image, so a crop
/// at the border is narrower (or shorter) than requested and the later resize
/// stretches it to a square. A negative `x1` or `y1` is a *negative numpy
/// index*, which makes the slice empty, and the demo then skips the face; this
/// returns `None` for it, and for any other empty crop.
///
/// One deliberate difference from numpy: numpy counts a negative start from
/// the far edge, so a box so wide that `x2 > width + x1` would give a sliver
/// of the opposite edge. That is a bug in the demo, not a face, so it is also
/// `None` here.
pub fn crop(
    gray: &GrayImage,
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    offset_x: i64,
    offset_y: i64,
) -> Option<GrayImage> {
    let (left, width) = clipped_span(
        x.saturating_sub(offset_x),
        x.saturating_add(w).saturating_add(offset_x),
        gray.width(),
    )?;
    let (top, height) = clipped_span(
        y.saturating_sub(offset_y),
        y.saturating_add(h).saturating_add(offset_y),
        gray.height(),
    )?;
    Some(image::imageops::crop_imm(gray, left, top, width, height).to_image())
}

/// `start..stop` clipped to `0..len` as numpy clips a slice, returned as
/// `(start, length)`; `None` for a negative start or an empty result.
fn clipped_span(start: i64, stop: i64, len: u32) -> Option<(u32, u32)> {
    let start = u32::try_from(start).ok()?;
    let stop = u32::try_from(stop.clamp(0, i64::from(len))).ok()?;
    (start < stop).then(|| (start, stop - start))
}

/// Why [`resize_linear`] or [`to_input`] could not produce an image.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ResizeError {
    /// The source has no pixels, so there is nothing to interpolate from
    /// (OpenCV rejects it too).
    #[error("cannot resize an empty {width}x{height} image")]
    EmptySource {
        /// Source width in pixels.
        width: u32,
        /// Source height in pixels.
        height: u32,
    },
    /// The requested size does not fit the `u32` image dimensions.
    #[error("a {width}x{height} target is too large for an image")]
    TargetTooLarge {
        /// Requested width.
        width: usize,
        /// Requested height.
        height: usize,
    },
}

/// Fixed-point precision of OpenCV's 8-bit resize weights
/// (`INTER_RESIZE_COEF_BITS`).
const WEIGHT_BITS: u32 = 11;
/// `INTER_RESIZE_COEF_SCALE`, as the float OpenCV multiplies by.
const WEIGHT_SCALE: f32 = (1 << WEIGHT_BITS) as f32;

/// Resizes an 8-bit grayscale image to `dst_width` x `dst_height`, giving the
/// same bytes as OpenCV 4.10's `cv2.resize(src, (dst_width, dst_height))` with
/// the default `INTER_LINEAR` (checked against the x86-64 build the reference
/// cases came from).
///
/// That is bilinear interpolation with half-pixel centres and no antialiasing
/// when shrinking (each output pixel reads only its 2x2 neighbours), in
/// OpenCV's 11-bit fixed point, including the truncating vertical pass of its
/// 8-bit code path. A source already of the target size is copied, as OpenCV
/// does. OpenCV switches an exact 2x shrink to `INTER_AREA`; its rounded 2x2
/// average equals what this linear path gives there, so no special path is
/// needed.
///
/// Fails only for a source without pixels; a zero target size gives an empty
/// image.
pub fn resize_linear(
    src: &GrayImage,
    dst_width: u32,
    dst_height: u32,
) -> Result<GrayImage, ResizeError> {
    let (src_width, src_height) = src.dimensions();
    if src_width == 0 || src_height == 0 {
        return Err(ResizeError::EmptySource {
            width: src_width,
            height: src_height,
        });
    }
    if (src_width, src_height) == (dst_width, dst_height) {
        return Ok(src.clone());
    }
    let mut dst = GrayImage::new(dst_width, dst_height);
    if dst_width == 0 || dst_height == 0 {
        return Ok(dst);
    }
    let columns = source_taps(src_width, dst_width, Axis::Columns);
    let rows = source_taps(src_height, dst_height, Axis::Rows);
    let mut upper = vec![0_i32; columns.len()];
    let mut lower = vec![0_i32; columns.len()];
    let src_rows: Vec<&[u8]> = src.as_raw().chunks_exact(src_width as usize).collect();
    let dst_rows = dst.chunks_exact_mut(dst_width as usize);
    for (dst_row, row_tap) in dst_rows.zip(&rows) {
        // The taps are built from `src_height`, so both indices are in range.
        horizontal_pass(src_rows[row_tap.near], &columns, &mut upper);
        horizontal_pass(src_rows[row_tap.far], &columns, &mut lower);
        for ((out, &top), &bottom) in dst_row.iter_mut().zip(&upper).zip(&lower) {
            *out = vertical_blend(top, bottom, row_tap);
        }
    }
    Ok(dst)
}

/// The two source samples an output sample interpolates between, and their
/// weights in 11-bit fixed point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tap {
    near: usize,
    far: usize,
    near_weight: i32,
    far_weight: i32,
}

/// OpenCV treats the borders of the two axes differently, which changes the
/// weights (and so the rounding) at the image edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// A column outside the image takes the edge column with weight 1
    /// (OpenCV resets `fx` to 0 there).
    Columns,
    /// A row outside the image is replaced by the edge row but keeps its
    /// fractional weights (OpenCV only clips the row index).
    Rows,
}

/// One [`Tap`] per output sample along an axis, computed as `cv::hal::resize`
/// does: the scale is `1 / (dst / src)` in double precision, the source
/// position `(d + 0.5) * scale - 0.5` is rounded to `f32` before flooring,
/// and the weights are `f32` fractions times 2048 rounded half to even
/// (`saturate_cast<short>`).
fn source_taps(src_len: u32, dst_len: u32, axis: Axis) -> Vec<Tap> {
    let scale = 1.0 / (f64::from(dst_len) / f64::from(src_len));
    let last = i64::from(src_len) - 1;
    (0..dst_len)
        .map(|dst_index| {
            let position = ((f64::from(dst_index) + 0.5) * scale - 0.5) as f32;
            let floor = position.floor();
            let mut start = floor as i64;
            let mut fraction = position - floor;
            if axis == Axis::Columns && (start < 0 || start >= last) {
                start = start.clamp(0, last);
                fraction = 0.0;
            }
            Tap {
                near: clamp_index(start, last),
                far: clamp_index(start.saturating_add(1), last),
                near_weight: fixed_point_weight(1.0 - fraction),
                far_weight: fixed_point_weight(fraction),
            }
        })
        .collect()
}

fn clamp_index(index: i64, last: i64) -> usize {
    usize::try_from(index.clamp(0, last)).unwrap_or(0)
}

/// `saturate_cast<short>(weight * INTER_RESIZE_COEF_SCALE)`: `cvRound` rounds
/// half to even on x86, then the value saturates to `i16`.
fn fixed_point_weight(weight: f32) -> i32 {
    let scaled = (weight * WEIGHT_SCALE).round_ties_even();
    scaled.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i32
}

/// OpenCV's `HResizeLinear` for 8-bit input: each output column is
/// `near * near_weight + far * far_weight`, kept exact in an `i32`
/// (at most 255 * 2048 for weights summing to 2048).
fn horizontal_pass(src_row: &[u8], columns: &[Tap], out: &mut [i32]) {
    for (value, tap) in out.iter_mut().zip(columns) {
        // The taps are built from the row width, so both indices are in range.
        *value = i32::from(src_row[tap.near]) * tap.near_weight
            + i32::from(src_row[tap.far]) * tap.far_weight;
    }
}

/// OpenCV's vertical pass for 8-bit linear resize, which is *not* the plain
/// `(top * w0 + bottom * w1 + 2^21) >> 22` that its generic `FixedPtCast`
/// would give: the 8-bit specialisation of `VResizeLinear` (and its SIMD
/// twin, which agrees with it lane for lane) drops 4 bits from each row
/// value so it fits an `i16`, keeps the high 16 bits of each product
/// separately, and only then rounds by 2 bits. Matching that truncation is
/// what makes the output byte-exact.
fn vertical_blend(top: i32, bottom: i32, tap: &Tap) -> u8 {
    let sum = ((tap.near_weight * (top >> 4)) >> 16) + ((tap.far_weight * (bottom >> 4)) >> 16);
    // Weights summing to 2048 bound this by 255; the clamp only guards the
    // unreachable, as OpenCV's saturating pack does.
    u8::try_from(((sum + 2) >> 2).clamp(0, 255)).unwrap_or(u8::MAX)
}

/// The demo's `preprocess_input(x, v2=True)` for one pixel:
/// `((value / 255) - 0.5) * 2`, every step rounded to `f32` in that order as
/// numpy does on its `float32` array. The result is in `[-1, 1]`.
pub fn normalize(value: u8) -> f32 {
    (f32::from(value) / 255.0 - 0.5) * 2.0
}

/// The network input for a grayscale face crop: resized to `W` x `H` with
/// [`resize_linear`] (skipped when the crop already has that size, as OpenCV
/// copies then) and [`normalize`]d, one channel.
///
/// Fails only for an empty crop or a size too large for an image.
pub fn to_input<const H: usize, const W: usize>(
    gray: &GrayImage,
) -> Result<Box<Tensor<H, W, 1>>, ResizeError> {
    let too_large = ResizeError::TargetTooLarge {
        width: W,
        height: H,
    };
    let width = u32::try_from(W).map_err(|_| too_large)?;
    let height = u32::try_from(H).map_err(|_| too_large)?;
    let resized;
    let pixels = if gray.dimensions() == (width, height) {
        gray
    } else {
        resized = resize_linear(gray, width, height)?;
        &resized
    };
    let mut input = Tensor::<H, W, 1>::zeroed_boxed();
    for (value, &pixel) in input.as_mut_slice().iter_mut().zip(pixels.as_raw()) {
        *value = normalize(pixel);
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_from(width: u32, height: u32, pixels: Vec<u8>) -> GrayImage {
        GrayImage::from_raw(width, height, pixels).expect("test image size")
    }

    #[test]
    fn pillow_luma_matches_the_l24_formula_at_the_primaries() {
        // (255 * weight + 0x8000) >> 16 for each weight, worked by hand.
        assert_eq!(pillow_luma(255, 0, 0), 76);
        assert_eq!(pillow_luma(0, 255, 0), 150);
        assert_eq!(pillow_luma(0, 0, 255), 29);
        assert_eq!(pillow_luma(255, 255, 255), 255);
        assert_eq!(pillow_luma(0, 0, 0), 0);
        // 100*19595 + 150*38470 + 200*7471 + 32768 = 9256968 = 141.25 * 65536.
        assert_eq!(pillow_luma(100, 150, 200), 141);
    }

    #[test]
    fn pillow_luma_rounds_rather_than_truncates() {
        // 1*19595 + 32768 = 52363 < 65536 -> 0, but 2*19595 + 32768 = 71958 -> 1:
        // truncating R*299/1000 would give 0 for both.
        assert_eq!(pillow_luma(1, 0, 0), 0);
        assert_eq!(pillow_luma(2, 0, 0), 1);
        // Gray inputs survive unchanged because the weights sum to 65536.
        for value in 0..=255 {
            assert_eq!(pillow_luma(value, value, value), value);
        }
    }

    #[test]
    fn sixteen_bit_images_convert_as_pillow_does() {
        let gray16 = DynamicImage::ImageLuma16(
            ImageBuffer::from_raw(3, 1, vec![7_u16, 255, 256]).expect("size"),
        );
        assert_eq!(to_gray(&gray16).as_raw(), &[7, 255, 255]);
        let rgb16 = DynamicImage::ImageRgb16(
            ImageBuffer::from_raw(1, 1, vec![0xff00_u16, 0x00ff, 0x0000]).expect("size"),
        );
        assert_eq!(to_gray(&rgb16).as_raw(), &[pillow_luma(0xff, 0x00, 0x00)]);
    }

    #[test]
    fn alpha_is_ignored() {
        let rgba = DynamicImage::ImageRgba8(
            ImageBuffer::from_raw(2, 1, vec![10, 20, 30, 0, 10, 20, 30, 255]).expect("size"),
        );
        let expected = pillow_luma(10, 20, 30);
        assert_eq!(to_gray(&rgba).as_raw(), &[expected, expected]);
    }

    #[test]
    fn exact_half_size_is_the_rounded_two_by_two_average() {
        // OpenCV switches an exact 2x shrink to INTER_AREA: (a + b + c + d + 2) >> 2.
        let src = GrayImage::from_fn(8, 6, |x, y| Luma([((x * 37 + y * 91) % 256) as u8]));
        let dst = resize_linear(&src, 4, 3).expect("resize");
        for (x, y, pixel) in dst.enumerate_pixels() {
            let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|&(dx, dy)| u32::from(src.get_pixel(2 * x + dx, 2 * y + dy).0[0]))
                .sum();
            assert_eq!(u32::from(pixel.0[0]), (sum + 2) >> 2, "({x}, {y})");
        }
    }

    #[test]
    fn same_size_is_a_copy_and_constant_images_stay_constant() {
        let src = gray_from(3, 2, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(resize_linear(&src, 3, 2).expect("resize"), src);
        let flat = gray_from(5, 7, vec![173; 35]);
        for (width, height) in [(64, 64), (2, 3), (1, 1), (11, 4)] {
            let resized = resize_linear(&flat, width, height).expect("resize");
            assert!(
                resized.as_raw().iter().all(|&v| v == 173),
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn upscaling_keeps_the_edges_and_interpolates_between() {
        // 2 -> 4 columns: positions -0.25, 0.25, 0.75, 1.25. The outer two take
        // the edge pixels; the inner two are 3/4-1/4 blends of 0 and 200.
        let src = gray_from(2, 1, vec![0, 200]);
        let dst = resize_linear(&src, 4, 1).expect("resize");
        assert_eq!(dst.as_raw(), &[0, 50, 150, 200]);
    }

    #[test]
    fn row_weights_stay_fractional_outside_the_image() {
        // Past the top or left border OpenCV keeps a row's fractional weights
        // (on the repeated edge row) but resets a column's to 1 and 0; the
        // vertical pass's truncation makes those round differently.
        let rows = source_taps(53, 64, Axis::Rows);
        let columns = source_taps(53, 64, Axis::Columns);
        assert_eq!((rows[0].near, rows[0].far), (0, 0));
        assert_ne!(rows[0].far_weight, 0);
        assert_eq!((columns[0].near_weight, columns[0].far_weight), (2048, 0));
    }

    #[test]
    fn weights_round_half_to_even() {
        assert_eq!(fixed_point_weight(0.5), 1024);
        // 2048 * x = 0.5 and 1.5 exactly.
        assert_eq!(fixed_point_weight(0.5 / 2048.0), 0);
        assert_eq!(fixed_point_weight(1.5 / 2048.0), 2);
    }

    #[test]
    fn empty_source_is_an_error_not_a_panic() {
        let empty = GrayImage::new(0, 5);
        assert_eq!(
            resize_linear(&empty, 64, 64),
            Err(ResizeError::EmptySource {
                width: 0,
                height: 5
            })
        );
        assert!(to_input::<64, 64>(&empty).is_err());
        let src = gray_from(2, 2, vec![1, 2, 3, 4]);
        assert_eq!(
            resize_linear(&src, 0, 3).expect("resize").dimensions(),
            (0, 3)
        );
    }

    #[test]
    fn normalize_maps_the_ends_and_the_middle() {
        assert_eq!(normalize(0), -1.0);
        assert_eq!(normalize(255), 1.0);
        assert!(normalize(128) > 0.0 && normalize(127) < 0.0);
    }

    #[test]
    fn clipped_span_follows_numpy_for_non_negative_starts() {
        assert_eq!(clipped_span(2, 5, 10), Some((2, 3)));
        assert_eq!(clipped_span(8, 15, 10), Some((8, 2)));
        assert_eq!(clipped_span(-1, 5, 10), None);
        assert_eq!(clipped_span(10, 15, 10), None);
        assert_eq!(clipped_span(4, 4, 10), None);
        assert_eq!(clipped_span(4, -3, 10), None);
    }
}
