//! The multi-scale window scan of OpenCV 4.10's
//! `CascadeClassifierImpl::detectMultiScaleNoGrouping` (CPU path).
//!
//! - Scales: `factor` runs `1, s, s^2, ...` in `f64` and is kept as an `f32`
//!   (see [`scales`] for the size limits); everything after uses the `f32`.
//! - Per scale, the image is shrunk with OpenCV's `INTER_LINEAR_EXACT` (see
//!   `resize`) to `round(width / scale) x round(height / scale)`, divided
//!   in `f32`, and the cascade runs at its own size on that image.
//! - Windows: rows `y = 0, step, 2 step, ...` and columns likewise, with
//!   `step = 1` from scale 2 up and 2 below; a window rejected by the very
//!   first stage also skips the next column. Every window must fit the
//!   resized image.
//! - A hit at `(x, y)` is the rectangle `(round(x * scale), round(y * scale))`
//!   of side `round(24 * scale)`, all in `f32`.
//!
//! Scales are independent, and so are rows of windows, so the scales run in
//! parallel with rayon, and a large scale's rows too; scales and rows are
//! collected in order, so the result does not depend on the number of
//! threads.

use std::borrow::Cow;

use image::GrayImage;
use rayon::prelude::*;

use super::cascade::Model;
use super::group::{Rect, round_f32, round_f64};
use super::integral::{Columns, Integral};
use super::resize::resize_linear_exact;
use super::simd::{Avx2, LANES, Visit};
use super::window::{Early, Prepared, ScaledCascade, Verdict};
use super::{DetectError, DetectOptions};

/// Scales with at least this many windows scan their rows in parallel;
/// smaller ones are not worth the hand-off.
const PARALLEL_WINDOWS: usize = 20_000;

/// Rows of windows per parallel task.
const ROWS_PER_TASK: usize = 4;

/// More scales than this means a scale factor so close to 1 that the scan
/// would practically never end.
const MAX_SCALES: usize = 100_000;

/// The `f32` scale factors OpenCV scans for an image of `width x height`.
///
/// As OpenCV (since 3.4) does it: first every factor whose window fits the
/// image (window sides `round(side * factor)` in `f64`), then those whose
/// window (now `round(side * scale)` in `f32`) is within `max_size` and at
/// least `min_size`. If that leaves nothing, the single factor whose window
/// is nearest to `min_size` (squared distance, first one on ties) is used,
/// which is how `min_size == max_size` between two scales still scans.
pub(crate) fn scales(
    model: &Model,
    width: u32,
    height: u32,
    options: &DetectOptions,
) -> Result<Vec<f32>, DetectError> {
    let factor_step = options.scale_factor;
    if !(factor_step.is_finite() && factor_step > 1.0) {
        return Err(DetectError::ScaleFactor(factor_step));
    }
    let (width, height) = (i64::from(width), i64::from(height));
    let (window_width, window_height) = (model.window_width, model.window_height);
    if width < i64::from(window_width) || height < i64::from(window_height) {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    let mut factor = 1.0_f64;
    loop {
        let scaled_width = i64::from(round_f64(f64::from(window_width) * factor));
        let scaled_height = i64::from(round_f64(f64::from(window_height) * factor));
        if scaled_width > width || scaled_height > height {
            break;
        }
        if all.len() == MAX_SCALES {
            return Err(DetectError::ScaleFactor(factor_step));
        }
        all.push(factor as f32);
        factor *= factor_step;
    }

    let (max_width, max_height) = match options.max_size {
        // OpenCV treats a zero maximum side as "no maximum".
        Some((w, h)) if w > 0 && h > 0 => (i64::from(w), i64::from(h)),
        _ => (width, height),
    };
    let (min_width, min_height) = (i64::from(options.min_size.0), i64::from(options.min_size.1));
    // `cvRound(side * scale)` with `side` an `int` and `scale` a `float`.
    let window_at = |scale: f32| {
        (
            i64::from(round_f32(window_width as f32 * scale)),
            i64::from(round_f32(window_height as f32 * scale)),
        )
    };
    let mut kept = Vec::new();
    for &scale in &all {
        let (scaled_width, scaled_height) = window_at(scale);
        if scaled_width > max_width || scaled_height > max_height {
            break;
        }
        if scaled_width >= min_width && scaled_height >= min_height {
            kept.push(scale);
        }
    }
    if kept.is_empty() {
        let distance = |scale: f32| {
            let (scaled_width, scaled_height) = window_at(scale);
            (min_width - scaled_width).pow(2) + (min_height - scaled_height).pow(2)
        };
        let nearest = all.iter().copied().reduce(|best, scale| {
            if distance(best) > distance(scale) {
                scale
            } else {
                best
            }
        });
        kept.extend(nearest);
    }
    Ok(kept)
}

/// Every raw hit over all scales, before grouping.
pub(crate) fn candidates(
    model: &Model,
    prepared: &Prepared,
    image: &GrayImage,
    options: &DetectOptions,
) -> Result<Vec<Rect>, DetectError> {
    candidates_with(model, prepared, image, options, Avx2::detect())
}

/// [`candidates`], evaluating windows eight at a time only with `avx2`.
fn candidates_with(
    model: &Model,
    prepared: &Prepared,
    image: &GrayImage,
    options: &DetectOptions,
    avx2: Option<Avx2>,
) -> Result<Vec<Rect>, DetectError> {
    let scales = scales(model, image.width(), image.height(), options)?;
    let Some(&first) = scales.first() else {
        return Ok(Vec::new());
    };
    // OpenCV splits every scale's rows into as many stripes as the first
    // scale has 32-column blocks of windows (`cvCeil(width / 32.)`).
    let stripes = working_size(model, image, first).0.div_ceil(32);
    // Scales are independent too: on several threads they run side by side
    // (each shrinking the image and building its integral tables, which a
    // split of rows alone leaves to one thread), and are collected in order.
    let per_scale: Vec<Vec<Rect>> = scales
        .par_iter()
        .map(|&scale| scan_scale(model, prepared, image, scale, stripes, avx2))
        .collect::<Result<_, _>>()?;
    Ok(per_scale.into_iter().flatten().collect())
}

/// The size of the image shrunk for `scale`: `cvRound(imgsz.width / sc)`,
/// an `int` divided by a `float`.
fn resized_size(image: &GrayImage, scale: f32) -> (u32, u32) {
    let side = |length: u32| round_f32(length as f32 / scale).max(0).unsigned_abs();
    (side(image.width()), side(image.height()))
}

/// How many window positions fit across and down the image shrunk for
/// `scale` (OpenCV's `getWorkingSize`).
fn working_size(model: &Model, image: &GrayImage, scale: f32) -> (usize, usize) {
    let (width, height) = resized_size(image, scale);
    (
        width.saturating_add(1).saturating_sub(model.window_width) as usize,
        height.saturating_add(1).saturating_sub(model.window_height) as usize,
    )
}

/// One scale's hits, in row order.
fn scan_scale(
    model: &Model,
    prepared: &Prepared,
    image: &GrayImage,
    scale: f32,
    stripes: usize,
    avx2: Option<Avx2>,
) -> Result<Vec<Rect>, DetectError> {
    let (resized_width, resized_height) = resized_size(image, scale);
    let (working_width, working_height) = working_size(model, image, scale);
    let step = if scale >= 2.0 { 1 } else { 2 };
    // OpenCV scans stripe `k` over rows `[k * size, (k + 1) * size)` with
    // `size = max(ceil((height / step) / stripes), 1) * step` in integers,
    // which can leave out the last row when `height` is odd and `step` is 2.
    // Reproduced, since that row can hold hits.
    let stripe_rows = (working_height / step).div_ceil(stripes.max(1)).max(1) * step;
    let scanned_height = working_height.min(stripes * stripe_rows);
    if working_width == 0 || scanned_height == 0 {
        return Ok(Vec::new());
    }
    let resized = if image.dimensions() == (resized_width, resized_height) {
        Cow::Borrowed(image)
    } else {
        Cow::Owned(resize_linear_exact(image, resized_width, resized_height))
    };
    // At step 2 the blocks take the windows at even `x` only, which the
    // even-columns-first order makes neighbours (see `Columns::EvenOdd`).
    let blocks = avx2.is_some() && model.all_stumps();
    let (integral, positions, position_step) = if step == 2 && blocks {
        let integral = Integral::even_columns_first(&resized);
        (integral, working_width.div_ceil(2), 1)
    } else {
        (Integral::new(&resized), working_width, step)
    };
    drop(resized);
    let cascade = prepared
        .get(model, integral.stride, integral.columns)
        .ok_or(DetectError::ImageTooLarge {
            width: image.width(),
            height: image.height(),
        })?;
    let scan = RowScan {
        avx2,
        cascade: &cascade,
        integral: &integral,
        positions,
        position_step,
        scale,
        window_width: round_f32(model.window_width as f32 * scale),
        window_height: round_f32(model.window_height as f32 * scale),
    };
    let rows: Vec<usize> = (0..scanned_height).step_by(step).collect();
    let windows = rows.len() * working_width.div_ceil(step);
    let hits = if windows >= PARALLEL_WINDOWS {
        rows.par_chunks(ROWS_PER_TASK)
            .flat_map_iter(|chunk| chunk.iter().flat_map(|&y| scan.row(y)))
            .collect()
    } else {
        rows.iter().flat_map(|&y| scan.row(y)).collect()
    };
    Ok(hits)
}

/// What every row of one scale shares.
///
/// A row is walked by position: with the columns in natural order, position
/// `p` is the window at `x = p`, `position_step` is the scan's step, and a
/// position's integral entry is `row_start + p`; with the even columns first
/// (step 2), position `p` is the window at `x = 2p`, its entry is again
/// `row_start + p`, and the scan moves one position at a time.
struct RowScan<'a> {
    /// Evaluate windows eight at a time when the CPU can.
    avx2: Option<Avx2>,
    cascade: &'a ScaledCascade,
    integral: &'a Integral,
    /// Window positions along a row.
    positions: usize,
    /// Positions from one window the scan looks at to the next.
    position_step: usize,
    scale: f32,
    window_width: i32,
    window_height: i32,
}

impl RowScan<'_> {
    /// The hit for the window at position `position` of the row at `y`.
    fn hit(&self, position: usize, y: usize) -> Rect {
        let x = match self.integral.columns {
            Columns::Natural => position,
            Columns::EvenOdd { .. } => 2 * position,
        };
        Rect {
            x: round_f32(x as f32 * self.scale),
            y: round_f32(y as f32 * self.scale),
            width: self.window_width,
            height: self.window_height,
        }
    }

    /// Pushes the hits among the row's windows from the first, eight at a
    /// time, when the CPU has AVX2 and the cascade is made of stumps, and
    /// returns the first position the scan has still to look at (0
    /// otherwise): past the row, unless the integral tables end before a
    /// block's last lane does (in the last rows).
    ///
    /// A block's lanes cover eight positions, but those the scan skips (the
    /// one after a first-stage rejection, and at step 2 in natural order
    /// every other one) leave the block after its first stage, so they do
    /// not hold it in the later, longer stages (`Visit`). Only a block's hits
    /// come back to the scan.
    fn blocks(&self, row_start: usize, y: usize, hits: &mut Vec<Rect>) -> usize {
        let (Some(avx2), Some(stumps)) = (self.avx2, self.cascade.stumps()) else {
            return 0;
        };
        let mut block = 0;
        let mut visit = Visit::Row {
            step: self.position_step,
            next: 0,
        };
        while block < self.positions {
            let base = row_start + block;
            let windows = (self.positions - block).min(LANES);
            let Some((verdicts, next)) =
                avx2.first_stages(self.cascade, stumps, self.integral, base, windows, visit)
            else {
                break;
            };
            for (lane, early) in verdicts.into_iter().enumerate() {
                // Only windows the scan looks at pass; for those, `finish`
                // has nothing left to run.
                if matches!(early, Early::Passed { .. })
                    && self.cascade.finish(self.integral, base + lane, early) == Verdict::Object
                {
                    hits.push(self.hit(block + lane, y));
                }
            }
            visit = next;
            block += LANES;
        }
        block + visit.next()
    }

    /// The hits of the row of windows whose top edge is `y`.
    fn row(&self, y: usize) -> Vec<Rect> {
        let mut hits = Vec::new();
        let row_start = self.integral.entry(0, y);
        let mut position = self.blocks(row_start, y, &mut hits);
        // The windows past the blocks, one at a time.
        while position < self.positions {
            let base = row_start + position;
            let early = self.cascade.early(self.integral, base);
            match self.cascade.finish(self.integral, base, early) {
                Verdict::Object => hits.push(self.hit(position, y)),
                // OpenCV's shortcut: a window that fails the first stage
                // makes its right neighbour unlikely, so it is skipped.
                Verdict::Rejected { stage: 0 } => position += self.position_step,
                Verdict::Rejected { .. } | Verdict::Flat => {}
            }
            position += self.position_step;
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_xception_testdata::{gray_photo, shared};

    fn model() -> Model {
        Model {
            window_width: 24,
            window_height: 24,
            stages: Vec::new(),
            trees: Vec::new(),
            nodes: Vec::new(),
            leaves: Vec::new(),
            features: Vec::new(),
        }
    }

    fn options(
        scale_factor: f64,
        min_size: (u32, u32),
        max_size: Option<(u32, u32)>,
    ) -> DetectOptions {
        DetectOptions {
            scale_factor,
            min_neighbors: 3,
            min_size,
            max_size,
        }
    }

    /// The scan with and without the AVX2 block path finds the same raw hits
    /// (before grouping) at every scale of a photo, at step 1 and step 2.
    #[test]
    fn the_portable_and_avx2_scans_find_the_same_windows() {
        let cascade =
            crate::Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml"))
                .unwrap();
        let photo = gray_photo("reference/images/solvay_conference.jpg");
        let options = options(1.2, (0, 0), None);
        let portable =
            candidates_with(&cascade.model, &Prepared::default(), &photo, &options, None).unwrap();
        assert!(portable.len() > 20, "{} raw hits", portable.len());
        match Avx2::detect() {
            Some(avx2) => {
                let blocks = candidates_with(
                    &cascade.model,
                    &cascade.prepared,
                    &photo,
                    &options,
                    Some(avx2),
                );
                assert_eq!(blocks.unwrap(), portable);
            }
            None => eprintln!("no AVX2 on this CPU: only the portable scan ran"),
        }
    }

    /// Cascades prepared for one image's scales, kept in the cache, serve
    /// an image of another size as a fresh preparation does.
    #[test]
    fn a_warm_cache_finds_what_a_cold_one_finds() {
        let cascade =
            crate::Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml"))
                .unwrap();
        let photo = gray_photo("reference/images/12_angry_men.jpg");
        let piece = image::imageops::crop_imm(&photo, 300, 90, 641, 479).to_image();
        let options = options(1.3, (0, 0), None);
        let model = &cascade.model;
        let warm = Prepared::default();
        for image in [&photo, &piece, &photo, &piece] {
            let cold =
                candidates_with(model, &Prepared::default(), image, &options, Avx2::detect());
            let cached = candidates_with(model, &warm, image, &options, Avx2::detect());
            assert_eq!(cached, cold);
            assert!(cold.is_ok_and(|hits| hits.len() > 5));
        }
        // One preparation per layout: the same one comes back, another
        // layout gets its own.
        let natural = warm.get(model, 700, Columns::Natural).unwrap();
        let again = warm.get(model, 700, Columns::Natural).unwrap();
        let even_odd = warm
            .get(model, 700, Columns::EvenOdd { even: 350 })
            .unwrap();
        assert!(std::sync::Arc::ptr_eq(&natural, &again));
        assert!(!std::sync::Arc::ptr_eq(&natural, &even_odd));
    }

    #[test]
    fn scales_run_until_the_window_outgrows_the_image() {
        let scales = scales(&model(), 1280, 720, &options(1.3, (0, 0), None));
        // 24 * 1.3^12 = 559 fits 720 rows; 24 * 1.3^13 = 727 does not.
        assert_eq!(scales.as_ref().map(Vec::len), Ok(13));
        assert_eq!(scales.ok().and_then(|s| s.first().copied()), Some(1.0));
    }

    #[test]
    fn minimum_and_maximum_sizes_filter_scales() {
        // Windows 24, 29, 35, 41, 50, 60, ...: 41 and 50 are in [40, 59].
        let kept = scales(&model(), 640, 480, &options(1.2, (40, 40), Some((59, 59))));
        let cubed = 1.2 * 1.2 * 1.2;
        assert_eq!(kept, Ok(vec![cubed as f32, (cubed * 1.2) as f32]));
    }

    #[test]
    fn no_scale_in_range_falls_back_to_the_nearest_window() {
        // Windows 24, 31, 41: none is exactly 30, and 31 is nearest.
        let kept = scales(&model(), 100, 100, &options(1.3, (30, 30), Some((30, 30))));
        assert_eq!(kept, Ok(vec![1.3]));
        assert_eq!(
            scales(&model(), 23, 100, &options(1.3, (0, 0), None)),
            Ok(vec![])
        );
    }
}
