//! The image shrink OpenCV's cascade detector uses for each scale:
//! `resize(image, dst, dst.size(), 1 / scale, 1 / scale, INTER_LINEAR_EXACT)`,
//! OpenCV's bit-exact bilinear resize for 8-bit images.
//!
//! This is not the `INTER_LINEAR` of `cv2.resize` (which
//! `mini_xception::preprocess::resize_linear` reproduces): the detector has used
//! the bit-exact variant since OpenCV 3.4, and its rounding differs. Its
//! arithmetic:
//! - the scale is `1 / (dst / src)` in `f64`; the source position of output
//!   `d` is `scale * (d + 0.5) - 0.5`;
//! - with `i = floor(position)`, the weights are `c1 = round(frac * 256)` (half
//!   to even) and `c0 = 256 - c1`, 8-bit fixed point;
//! - outputs whose position falls left of (or above) the first sample copy
//!   the first column (row); those at or past the last sample copy the last;
//! - a row pass gives `c0 * p[i] + c1 * p[i + 1]` (16 bits, 8 fractional),
//!   the column pass `(h0 * c0 + h1 * c1 + 2^15) >> 16`; a copied row is
//!   `(h + 128) >> 8`.
//!
//! An exact halving, which OpenCV hands to `INTER_AREA`, gives the same bytes
//! here (both are `(a + b + c + d + 2) >> 2`), so it needs no special case.

use image::GrayImage;

/// One output sample along an axis: the source sample to its left and the
/// 8-bit weights of that sample and the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tap {
    /// Before the first source sample: copy it.
    First,
    /// Between `index` and `index + 1`.
    Between { index: usize, near: u32, far: u32 },
    /// At or past the last source sample: copy it.
    Last,
}

/// OpenCV's `interpolationLinear::getCoeffs` for every output sample.
fn taps(source_len: u32, target_len: u32) -> Vec<Tap> {
    let scale = 1.0 / (f64::from(target_len) / f64::from(source_len));
    let last = i64::from(source_len) - 1;
    (0..target_len)
        .map(|target| {
            let position = scale * (f64::from(target) + 0.5) - 0.5;
            let index = position.floor();
            if index < 0.0 || source_len <= 1 {
                Tap::First
            } else if index as i64 >= last {
                Tap::Last
            } else {
                // `ufixedpoint16(softdouble)`: round half to even, 8 bits.
                let far = ((position - index) * 256.0).round_ties_even() as u32;
                Tap::Between {
                    index: index as usize,
                    near: 256 - far,
                    far,
                }
            }
        })
        .collect()
}

/// The row pass for one source row: 8-bit fixed-point values.
fn horizontal(row: &[u8], columns: &[Tap], out: &mut [u32]) {
    let first = u32::from(row.first().copied().unwrap_or(0)) << 8;
    let last = u32::from(row.last().copied().unwrap_or(0)) << 8;
    for (value, tap) in out.iter_mut().zip(columns) {
        *value = match *tap {
            Tap::First => first,
            Tap::Last => last,
            Tap::Between { index, near, far } => {
                let left = row.get(index).copied().unwrap_or(0);
                let right = row.get(index + 1).copied().unwrap_or(0);
                near * u32::from(left) + far * u32::from(right)
            }
        };
    }
}

/// Row passes of the source, cached by row parity.
struct RowPasses<'a> {
    source_rows: Vec<&'a [u8]>,
    columns: Vec<Tap>,
    slots: [(usize, Vec<u32>); 2],
}

impl RowPasses<'_> {
    /// The row pass of `source_row`, computed unless cached.
    fn get(&mut self, source_row: usize) -> &[u32] {
        let (cached_row, values) = &mut self.slots[source_row % 2];
        if *cached_row != source_row {
            *cached_row = source_row;
            let row = self
                .source_rows
                .get(source_row)
                .copied()
                .unwrap_or_default();
            horizontal(row, &self.columns, values);
        }
        values
    }
}

/// Shrinks (or enlarges) `image` to `width x height` exactly as OpenCV's
/// `INTER_LINEAR_EXACT` does for 8-bit single-channel images. An empty
/// source or target gives an empty (zero-filled) result.
pub(crate) fn resize_linear_exact(image: &GrayImage, width: u32, height: u32) -> GrayImage {
    let mut out = GrayImage::new(width, height);
    let (source_width, source_height) = image.dimensions();
    if source_width == 0 || source_height == 0 || width == 0 || height == 0 {
        return out;
    }
    if (source_width, source_height) == (width, height) {
        return image.clone();
    }
    let mut passes = RowPasses {
        source_rows: image.as_raw().chunks_exact(source_width as usize).collect(),
        columns: taps(source_width, width),
        // Row passes of even and odd source rows: the two rows an output
        // row blends always differ in parity, and consecutive output rows
        // mostly reuse them.
        slots: [
            (usize::MAX, vec![0; width as usize]),
            (usize::MAX, vec![0; width as usize]),
        ],
    };
    let last_row = source_height as usize - 1;
    for (out_row, tap) in out
        .chunks_exact_mut(width as usize)
        .zip(&taps(source_height, height))
    {
        match *tap {
            Tap::First | Tap::Last => {
                let values = passes.get(if *tap == Tap::First { 0 } else { last_row });
                for (pixel, &value) in out_row.iter_mut().zip(values) {
                    *pixel = u8::try_from((value + 128) >> 8).unwrap_or(u8::MAX);
                }
            }
            Tap::Between { index, near, far } => {
                passes.get(index);
                passes.get(index + 1);
                let [(_, even), (_, odd)] = &passes.slots;
                let (top, bottom) = if index % 2 == 0 {
                    (even, odd)
                } else {
                    (odd, even)
                };
                for ((pixel, &upper), &lower) in out_row.iter_mut().zip(top).zip(bottom) {
                    let value = (upper * near + lower * far + (1 << 15)) >> 16;
                    *pixel = u8::try_from(value).unwrap_or(u8::MAX);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_blocks_with_rounding() {
        let image = GrayImage::from_raw(4, 2, vec![0, 1, 10, 20, 1, 1, 30, 41]).unwrap_or_default();
        let half = resize_linear_exact(&image, 2, 1);
        // (0+1+1+1+2)>>2 = 1, (10+20+30+41+2)>>2 = 25.
        assert_eq!(half.as_raw(), &vec![1, 25]);
    }

    #[test]
    fn edges_copy_the_border_samples() {
        let image = GrayImage::from_raw(2, 1, vec![100, 200]).unwrap_or_default();
        let wide = resize_linear_exact(&image, 4, 1);
        // Positions -0.25, 0.25, 0.75, 1.25: first, 3/4*100+1/4*200, 1/4*100+3/4*200, last.
        assert_eq!(wide.as_raw(), &vec![100, 125, 175, 200]);
    }

    #[test]
    fn same_size_is_a_copy_and_empty_stays_empty() {
        let image = GrayImage::from_raw(3, 1, vec![1, 2, 3]).unwrap_or_default();
        assert_eq!(resize_linear_exact(&image, 3, 1), image);
        assert_eq!(
            resize_linear_exact(&GrayImage::new(0, 0), 3, 3).as_raw(),
            &vec![0; 9]
        );
    }
}
