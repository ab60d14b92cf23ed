//! Cutting faces out of a photo as the demo's numpy slicing does.

use image::GrayImage;

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
    // Row by row: `SubImage::to_image` copies pixel by pixel through the
    // generic pixel interface.
    let (stride, left, top) = (gray.width() as usize, left as usize, top as usize);
    let columns = left..left + width as usize;
    let mut pixels = Vec::with_capacity(columns.len() * height as usize);
    for row in gray
        .as_raw()
        .chunks_exact(stride)
        .skip(top)
        .take(height as usize)
    {
        pixels.extend_from_slice(&row[columns.clone()]);
    }
    GrayImage::from_raw(width, height, pixels)
}

/// `start..stop` clipped to `0..len` as numpy clips a slice, returned as
/// `(start, length)`; `None` for a negative start or an empty result.
fn clipped_span(start: i64, stop: i64, len: u32) -> Option<(u32, u32)> {
    let start = u32::try_from(start).ok()?;
    let stop = u32::try_from(stop.clamp(0, i64::from(len))).ok()?;
    (start < stop).then(|| (start, stop - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_holds_the_pixels_of_its_rectangle() {
        let gray = GrayImage::from_fn(7, 5, |x, y| image::Luma([(10 * y + x) as u8]));
        let Some(face) = crop(&gray, 2, 1, 3, 2, 1, 1) else {
            panic!("the box is inside the image");
        };
        assert_eq!(face.dimensions(), (5, 4));
        for (x, y, pixel) in face.enumerate_pixels() {
            assert_eq!(pixel.0[0], (10 * y + x + 1) as u8, "({x}, {y})");
        }
        // Clipped at the right and bottom edges, as numpy slicing is.
        let Some(edge) = crop(&gray, 5, 3, 4, 4, 0, 0) else {
            panic!("the box starts inside the image");
        };
        assert_eq!(edge.dimensions(), (2, 2));
        assert_eq!(edge.as_raw(), &[35, 36, 45, 46]);
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
