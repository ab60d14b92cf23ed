//! Sum and squared-sum integral images, as OpenCV's
//! `integral(img, sum, sqsum, noArray(), CV_32S, CV_32S)` builds them for the
//! Haar evaluator.
//!
//! Both tables are 32-bit and wrap on overflow, as OpenCV's `int` tables do
//! in practice: a large image's squared sums pass 2^32 long before its last
//! row. Every quantity read from them is a difference over one window
//! (at most 255^2 times the window area), and differences of wrapped values
//! are exact as long as the true difference fits, so wrapping loses nothing.

use image::GrayImage;

/// Where column `x` of the integral image sits within its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Columns {
    /// In order: entry `x`.
    Natural,
    /// The even columns first, then the odd ones: column `2k` at `k`, column
    /// `2k + 1` at `even + k`. At step 2 the scan looks at every other
    /// window only, and in this order the windows at `x = 0, 2, 4, ...` have
    /// neighbouring entries, so eight of them fill the eight lanes of one load
    /// (in natural order, half of each load belongs to windows never looked
    /// at).
    EvenOdd {
        /// The number of even columns.
        even: usize,
    },
}

impl Columns {
    /// The entry of column `x` within its row.
    #[inline]
    pub(crate) fn entry(self, x: usize) -> usize {
        match self {
            Columns::Natural => x,
            Columns::EvenOdd { even } if x % 2 == 1 => even + x / 2,
            Columns::EvenOdd { .. } => x / 2,
        }
    }
}

/// Integral images of an 8-bit image: `(width + 1) x (height + 1)` entries,
/// row-major, with a zero first row and column.
pub(crate) struct Integral {
    /// Entries per row: the image width plus one.
    pub(crate) stride: usize,
    /// The order of the columns within a row.
    pub(crate) columns: Columns,
    /// `sum[y * stride + columns.entry(x)]` is the sum of pixels above and
    /// left of `(x, y)`.
    pub(crate) sum: Vec<u32>,
    /// The same for squared pixel values, modulo 2^32.
    pub(crate) square_sum: Vec<u32>,
}

impl Integral {
    /// The entry of `(x, y)` in either table.
    #[inline]
    pub(crate) fn entry(&self, x: usize, y: usize) -> usize {
        y * self.stride + self.columns.entry(x)
    }

    /// Both tables with the even columns of each row first
    /// ([`Columns::EvenOdd`]).
    pub(crate) fn even_columns_first(image: &GrayImage) -> Self {
        let mut integral = Self::new(image);
        let stride = integral.stride;
        let even = stride.div_ceil(2);
        let mut row = Vec::with_capacity(stride);
        for table in [&mut integral.sum, &mut integral.square_sum] {
            for entries in table.chunks_exact_mut(stride) {
                row.clear();
                row.extend(entries.iter().step_by(2));
                row.extend(entries.iter().skip(1).step_by(2));
                entries.copy_from_slice(&row);
            }
        }
        integral.columns = Columns::EvenOdd { even };
        integral
    }

    /// Builds both tables for `image`.
    pub(crate) fn new(image: &GrayImage) -> Self {
        let width = image.width() as usize;
        let height = image.height() as usize;
        let stride = width + 1;
        let mut sum = vec![0_u32; stride * (height + 1)];
        let mut square_sum = vec![0_u32; stride * (height + 1)];
        if width == 0 {
            return Self {
                stride,
                columns: Columns::Natural,
                sum,
                square_sum,
            };
        }
        let rows = image.as_raw().chunks_exact(width);
        for (y, pixels) in rows.enumerate() {
            // Rows y (above) and y + 1 (being written) of both tables; the
            // tables have height + 1 rows of `stride`, so every slice below
            // is in range.
            let (above, below) = sum.split_at_mut((y + 1) * stride);
            let (square_above, square_below) = square_sum.split_at_mut((y + 1) * stride);
            let above = &above[y * stride..];
            let square_above = &square_above[y * stride..];
            let mut row_sum = 0_u32;
            let mut row_square_sum = 0_u32;
            // Entry x + 1 of the new row: the row's running sum plus the entry above.
            let cells = below[1..stride]
                .iter_mut()
                .zip(&above[1..stride])
                .zip(
                    square_below[1..stride]
                        .iter_mut()
                        .zip(&square_above[1..stride]),
                )
                .zip(pixels);
            for (((out, up), (square_out, square_up)), &pixel) in cells {
                let value = u32::from(pixel);
                row_sum = row_sum.wrapping_add(value);
                row_square_sum = row_square_sum.wrapping_add(value * value);
                *out = up.wrapping_add(row_sum);
                *square_out = square_up.wrapping_add(row_square_sum);
            }
        }
        Self {
            stride,
            columns: Columns::Natural,
            sum,
            square_sum,
        }
    }
}

/// The sum over a rectangle from its four corner entries
/// (`top_left - top_right - bottom_left + bottom_right`, as OpenCV's
/// `CALC_SUM_OFS`), exact for any true sum below 2^31.
#[inline]
pub(crate) fn rect_sum(top_left: u32, top_right: u32, bottom_left: u32, bottom_right: u32) -> i32 {
    top_left
        .wrapping_sub(top_right)
        .wrapping_sub(bottom_left)
        .wrapping_add(bottom_right) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_sums_above_and_left() {
        let image = GrayImage::from_raw(3, 2, vec![1, 2, 3, 4, 5, 255]).unwrap_or_default();
        let integral = Integral::new(&image);
        assert_eq!(integral.stride, 4);
        assert_eq!(integral.sum, vec![0, 0, 0, 0, 0, 1, 3, 6, 0, 5, 12, 270]);
        let stride = integral.stride;
        let at = |x: usize, y: usize| integral.square_sum[y * stride + x];
        // Bottom-right 2x1 block of the second row: 5^2 + 255^2.
        let block = rect_sum(at(1, 1), at(3, 1), at(1, 2), at(3, 2));
        assert_eq!(block, 25 + 255 * 255);
    }

    #[test]
    fn even_columns_first_moves_entries_not_values() {
        let image = GrayImage::from_fn(6, 3, |x, y| image::Luma([(x * 40 + y * 7) as u8]));
        let natural = Integral::new(&image);
        let reordered = Integral::even_columns_first(&image);
        assert_eq!(reordered.columns, Columns::EvenOdd { even: 4 });
        let mut seen = vec![false; natural.sum.len()];
        for y in 0..4 {
            for x in 0..7 {
                let entry = reordered.entry(x, y);
                assert!(!seen[entry], "({x}, {y}) shares entry {entry}");
                seen[entry] = true;
                assert_eq!(reordered.sum[entry], natural.sum[natural.entry(x, y)]);
                assert_eq!(
                    reordered.square_sum[entry],
                    natural.square_sum[natural.entry(x, y)]
                );
            }
        }
        // Columns 0, 2, 4, 6 come first in every row, then 1, 3, 5.
        assert_eq!(reordered.entry(4, 1), 7 + 2);
        assert_eq!(reordered.entry(5, 1), 7 + 4 + 2);
    }

    #[test]
    fn wrapped_tables_still_give_exact_window_sums() {
        // A white image whose squared-sum table passes 2^32.
        let image = GrayImage::from_pixel(300, 300, image::Luma([255]));
        let integral = Integral::new(&image);
        let stride = integral.stride;
        let at = |x: usize, y: usize| integral.square_sum[y * stride + x];
        let window = rect_sum(at(270, 270), at(292, 270), at(270, 292), at(292, 292));
        assert_eq!(window, 22 * 22 * 255 * 255);
    }
}
