//! OpenCV 4.10's `INTER_LINEAR` resize of 8-bit grayscale, byte for byte.

use image::GrayImage;
use thiserror::Error;

/// Why [`resize_linear`] or [`to_input`](super::to_input) could not produce an image.
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
    /// The model takes more than one channel, and a grayscale crop has one.
    #[error("the model takes {channels} channels, a grayscale face has 1")]
    Channels {
        /// The model's input channels.
        channels: usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::to_input;
    use image::Luma;

    fn gray_from(width: u32, height: u32, pixels: Vec<u8>) -> GrayImage {
        GrayImage::from_raw(width, height, pixels).expect("test image size")
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
}
