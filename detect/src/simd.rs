//! The first stages of eight neighbouring windows at once, with AVX2.
//!
//! Neighbouring windows' integral entries are neighbours too, so each corner
//! of a feature is one unaligned 8-lane load for eight windows. The eight go
//! through the stages together until all are decided; most fall in the first
//! few stages.
//!
//! Every lane computes each feature value as [`ScaledCascade::evaluate`]
//! does, operation for operation and type for type (`f32` products and sums
//! in the same order, the same variance test), with no fused multiply-add.
//! Stage sums are the exception: eight `f32` lanes instead of two times four
//! `f64` ones, trusted only where they must agree with the `f64` sum (see
//! `StageAt`), so the verdicts are still the scalar path's bit for bit. The
//! tests below check that on every window of real photos, with and without
//! the `f32` shortcut.

use super::integral::Integral;
use super::window::{Early, ScaledCascade, Stump};

/// Windows evaluated together.
pub(crate) const LANES: usize = 8;

/// Which windows of a block the scan will look at, so that the others can
/// leave the lanes early: a lane that stays in the block only because a
/// neighbour is undecided costs as much as one the scan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    /// Every window of the block (what the tests compare one by one).
    #[cfg_attr(not(test), allow(dead_code, reason = "the scan visits rows"))]
    All,
    /// The scan's windows along a row: `step` apart, with OpenCV's skip of
    /// the window after a first-stage rejection. `next` is the offset from
    /// the block's first window to the first one the scan looks at, which a
    /// rejection or a step near the end of the previous block can push into
    /// this one, or past it.
    Row { step: usize, next: usize },
}

impl Visit {
    /// The offset of the first window the scan looks at from the block's
    /// first window (0 for [`Visit::All`]).
    pub(crate) fn next(self) -> usize {
        match self {
            Visit::All => 0,
            Visit::Row { next, .. } => next,
        }
    }

    /// The lanes the scan may look at before the first stage is known.
    fn candidates(self) -> u32 {
        match self {
            Visit::All => (1 << LANES) - 1,
            Visit::Row { step, next } => (next..LANES)
                .step_by(step.max(1))
                .fold(0, |mask, lane| mask | (1 << lane)),
        }
    }

    /// The lanes the scan looks at, given the lanes the first stage rejected,
    /// and the visit of the next block.
    #[inline]
    fn after_first_stage(self, rejected: u32) -> (u32, Visit) {
        match self {
            Visit::All => ((1 << LANES) - 1, Visit::All),
            Visit::Row { step, next } => {
                // The walk's branch on each rejection is one the CPU cannot
                // predict (first-stage rejections are most windows, in no
                // pattern), so the usual steps take the walk from a table.
                // `ROW_WALKS` holds steps 1 and 2 only.
                let (visited, next) = match ROW_WALKS.get(step.wrapping_sub(1)) {
                    Some(walks) if next < LANES => {
                        let (visited, next) = walks[next][(rejected & 0xff) as usize];
                        (u32::from(visited), usize::from(next))
                    }
                    _ => row_walk(step, next, rejected),
                };
                (visited, Visit::Row { step, next })
            }
        }
    }
}

/// The scan's walk along a block's lanes from lane `next`, `step` apart,
/// skipping one more step after each first-stage rejection: the lanes it
/// looks at, and the offset of its first window in the next block.
const fn row_walk(step: usize, next: usize, rejected: u32) -> (u32, usize) {
    let step = if step == 0 { 1 } else { step };
    let mut visited = 0;
    let mut lane = next;
    while lane < LANES {
        visited |= 1 << lane;
        // The scan's `x += step` after a first-stage rejection, on top of
        // the usual one.
        if rejected & (1 << lane) != 0 {
            lane += step;
        }
        lane += step;
    }
    (visited, lane - LANES)
}

/// [`row_walk`] for steps 1 and 2, every first lane and every rejection
/// mask: `ROW_WALKS[step - 1][next][rejected]`, 8 kB.
static ROW_WALKS: [[[(u8, u8); 1 << LANES]; LANES]; 2] = {
    let mut walks = [[[(0, 0); 1 << LANES]; LANES]; 2];
    let mut step = 1;
    while step <= 2 {
        let mut next = 0;
        while next < LANES {
            let mut rejected = 0;
            while rejected < 1 << LANES {
                let (visited, after) = row_walk(step, next, rejected as u32);
                walks[step - 1][next][rejected] = (visited as u8, after as u8);
                rejected += 1;
            }
            next += 1;
        }
        step += 1;
    }
    walks
};

/// Proof that this CPU has AVX2: only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// `Some` when the CPU running this has AVX2.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Avx2(()));
        }
        None
    }

    /// What the first stages say of the windows whose top-left integral
    /// entries are `base .. base + LANES`, and the visit of the next block;
    /// `None` if the tables end before the last of them does (the caller
    /// then takes them one at a time).
    ///
    /// Only the first `windows` lanes are windows of the row (the last block
    /// of a row has fewer than eight), and only those that `visit` looks at
    /// get their verdict; the others say [`Early::Flat`], which means nothing
    /// for them.
    pub(crate) fn first_stages(
        self,
        cascade: &ScaledCascade,
        stumps: &[Stump],
        integral: &Integral,
        base: usize,
        windows: usize,
        visit: Visit,
    ) -> Option<([Early; LANES], Visit)> {
        let covered = cascade.span() + LANES - 1;
        let end = base.checked_add(covered)?;
        let sums = integral.sum.get(base..end)?;
        let squares = integral.square_sum.get(base..end)?;
        #[cfg(target_arch = "x86_64")]
        {
            let in_row = (1_u32 << windows.min(LANES)) - 1;
            // SAFETY: an `Avx2` exists only when the CPU has AVX2, and both
            // tables are `span + LANES - 1` entries long, as `lanes` needs.
            Some(unsafe { x86::lanes(cascade, stumps, sums, squares, in_row, visit) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (stumps, sums, squares, windows, visit);
            None
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Early, LANES, ScaledCascade, Stump, Visit};
    use std::arch::x86_64::*;

    /// Eight windows' `u32` entries at `offset` from each one's top left.
    ///
    /// # Safety
    /// `offset + LANES <= table.len()`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(table: &[u32], offset: u32) -> __m256i {
        debug_assert!(offset as usize + LANES <= table.len());
        // SAFETY: the caller guarantees the eight entries are in `table`;
        // `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(table.as_ptr().add(offset as usize).cast()) }
    }

    /// A feature rectangle's four corner offsets, read as two 8-byte words
    /// and split in registers.
    ///
    /// The stage loop is bound by its loads (about 21 per two-rectangle
    /// stump; see the README), and this takes two of them off each
    /// rectangle (3.3% less time per photo in the build it was measured
    /// in; see the README on how builds differ). The reads are volatile because
    /// LLVM otherwise turns a wide load that is only split into two narrow
    /// loads again.
    #[inline(always)]
    pub(super) fn corner_offsets(corners: &[u32; 4]) -> [u32; 4] {
        let words = corners.as_ptr().cast::<u64>();
        debug_assert!(words.is_aligned());
        // SAFETY: `corners` is a rectangle of `HaarAt::corners`, 16 bytes
        // at an 8-byte boundary (`HaarAt` is `repr(C, align(8))` with the
        // corners first), so both words are in bounds and aligned.
        let [low, high] = unsafe { [words.read_volatile(), words.add(1).read_volatile()] };
        // x86-64 is little-endian: the first offset is the low half.
        [
            low as u32,
            (low >> 32) as u32,
            high as u32,
            (high >> 32) as u32,
        ]
    }

    /// `rect_sum` of eight windows: `a - b - c + d`, wrapping.
    ///
    /// # Safety
    /// Every corner is below `table.len() - LANES + 1`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn rect_sums(table: &[u32], corners: [u32; 4]) -> __m256i {
        // SAFETY: passed on from the caller.
        let [a, b, c, d] = corners.map(|offset| unsafe { load(table, offset) });
        _mm256_add_epi32(_mm256_sub_epi32(_mm256_sub_epi32(a, b), c), d)
    }

    /// Four `u32` lanes as exact `f64`s (AVX2 converts signed integers only).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn unsigned_to_f64(values: __m128i) -> __m256d {
        let shifted = _mm_xor_si128(values, _mm_set1_epi32(i32::MIN));
        _mm256_add_pd(_mm256_cvtepi32_pd(shifted), _mm256_set1_pd(2_147_483_648.0))
    }

    /// `ScaledCascade::variance_factor` for four windows: the factors, and
    /// the mask of windows that are not flat.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn variance_factors(sum: __m128i, square_sum: __m128i, area: f64) -> (__m128, __m256d) {
        let area = _mm256_set1_pd(area);
        let sum = _mm256_cvtepi32_pd(sum);
        let spread = _mm256_sub_pd(
            _mm256_mul_pd(area, unsigned_to_f64(square_sum)),
            _mm256_mul_pd(sum, sum),
        );
        let factor = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_set1_pd(1.0), _mm256_sqrt_pd(spread)));
        let positive = _mm256_cmp_pd::<_CMP_GT_OQ>(spread, _mm256_setzero_pd());
        let contrast = _mm256_cmp_pd::<_CMP_LT_OQ>(
            _mm256_mul_pd(area, _mm256_cvtps_pd(factor)),
            _mm256_set1_pd(0.1),
        );
        (factor, _mm256_and_pd(positive, contrast))
    }

    /// The eight windows' first stages, and the visit of the next block.
    ///
    /// # Safety
    /// The CPU has AVX2, and `sums` and `squares` hold `span + LANES - 1`
    /// entries from the first window's top-left one.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lanes(
        cascade: &ScaledCascade,
        stumps: &[Stump],
        sums: &[u32],
        squares: &[u32],
        in_row: u32,
        visit: Visit,
    ) -> ([Early; LANES], Visit) {
        // Every corner offset is below `span` (`ScaledCascade::new` checks
        // it), so each 8-lane load below stays inside the tables.
        let (normalisation, area) = cascade.normalisation();
        // SAFETY: the normalisation corners are corner offsets (see above).
        let (window_sum, window_square_sum) = unsafe {
            (
                rect_sums(sums, normalisation),
                rect_sums(squares, normalisation),
            )
        };
        let (factor_low, normalised_low) = variance_factors(
            _mm256_castsi256_si128(window_sum),
            _mm256_castsi256_si128(window_square_sum),
            area,
        );
        let (factor_high, normalised_high) = variance_factors(
            _mm256_extracti128_si256::<1>(window_sum),
            _mm256_extracti128_si256::<1>(window_square_sum),
            area,
        );
        let normalised = (_mm256_movemask_pd(normalised_low)
            | (_mm256_movemask_pd(normalised_high) << 4)) as u32;
        let mut alive = normalised & visit.candidates() & in_row;
        let factor = _mm256_set_m128(factor_high, factor_low);
        let mut factors = [0.0_f32; LANES];
        // SAFETY: `factors` holds the eight `f32`s written; `storeu` has no
        // alignment requirement.
        unsafe { _mm256_storeu_ps(factors.as_mut_ptr(), factor) };

        // The stage that rejected each lane, where `ever_rejected` says one did.
        let (mut rejected_at, mut ever_rejected) = ([0_usize; LANES], 0_u32);
        // Until the first stage has run, nothing is rejected.
        let mut next_visit = None;
        let stages = cascade.stages();
        for (index, stage) in stages.iter().enumerate() {
            // Even one undecided window is no slower in a lane than alone.
            if alive == 0 {
                break;
            }
            let mut total = _mm256_setzero_ps();
            for stump in stumps.get(stage.first..stage.end).unwrap_or_default() {
                let feature = &stump.feature;
                // SAFETY: feature corners are corner offsets (see above).
                let rect = |corners| unsafe {
                    _mm256_cvtepi32_ps(rect_sums(sums, corner_offsets(corners)))
                };
                let second = _mm256_mul_ps(
                    _mm256_set1_ps(feature.weights[1]),
                    rect(&feature.corners[1]),
                );
                // OpenCV's cascades weigh the first rectangle -1: then
                // `w1 * r1 - r0` is `-1 * r0 + w1 * r1` bit for bit (IEEE
                // subtraction is the addition of the negation, and `-1 *
                // r0` is exact), one broadcast load fewer (2.8% less time
                // per photo in the build it was measured in).
                let mut value = if feature.weights[0] == -1.0 {
                    _mm256_sub_ps(second, rect(&feature.corners[0]))
                } else {
                    _mm256_add_ps(
                        _mm256_mul_ps(
                            _mm256_set1_ps(feature.weights[0]),
                            rect(&feature.corners[0]),
                        ),
                        second,
                    )
                };
                if feature.third {
                    value = _mm256_add_ps(
                        value,
                        _mm256_mul_ps(
                            _mm256_set1_ps(feature.weights[2]),
                            rect(&feature.corners[2]),
                        ),
                    );
                }
                value = _mm256_mul_ps(value, factor);
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(value, _mm256_set1_ps(stump.threshold));
                let leaf = _mm256_blendv_ps(
                    _mm256_set1_ps(stump.above),
                    _mm256_set1_ps(stump.below),
                    below,
                );
                total = _mm256_add_ps(total, leaf);
            }
            // The `f32` sums settle most windows; those within rounding of
            // the threshold get OpenCV's `f64` sum.
            let surely_rejected = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(
                total,
                _mm256_set1_ps(stage.rejects_below),
            )) as u32;
            let surely_passed = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(
                total,
                _mm256_set1_ps(stage.passes_from),
            )) as u32;
            let mut rejected = alive & surely_rejected;
            let unsure = alive & !(surely_rejected | surely_passed);
            for lane in (0..LANES).filter(|lane| unsure & (1 << lane) != 0) {
                let exact = cascade.exact_stage_sum(stumps, stage, sums, lane, factors[lane]);
                // `sums` holds every lane's window (see the safety contract).
                if exact.is_some_and(|sum| sum < f64::from(stage.threshold)) {
                    rejected |= 1 << lane;
                }
            }
            // Without a branch per lane: which lanes a stage rejects
            // follows no pattern.
            for (lane, stage_of) in rejected_at.iter_mut().enumerate() {
                if rejected & (1 << lane) != 0 {
                    *stage_of = index;
                }
            }
            ever_rejected |= rejected;
            alive &= !rejected;
            if index == 0 {
                // The windows the scan will skip leave now.
                let (visited, next) = visit.after_first_stage(rejected);
                alive &= visited;
                next_visit = Some(next);
            }
        }
        let next_visit = next_visit.unwrap_or_else(|| visit.after_first_stage(0).1);
        let verdicts = std::array::from_fn(|lane| {
            if alive & (1 << lane) != 0 {
                Early::Passed {
                    stage: stages.len(),
                    factor: factors[lane],
                }
            } else if ever_rejected & (1 << lane) != 0 {
                Early::Rejected {
                    stage: rejected_at[lane],
                }
            } else {
                Early::Flat
            }
        });
        (verdicts, next_visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cascade;
    use crate::resize::resize_linear_exact;
    use crate::window::Verdict;
    use image::GrayImage;
    use mini_xception_testdata::{gray_photo, shared};

    /// Every window of `image` (with `even_columns_first`, every window at
    /// even `x`), evaluated eight at a time and finished one by one, gets the
    /// verdict of the one-window evaluation in the natural column order: same
    /// stage of rejection, same hits. Returns how many windows passed the
    /// first stage.
    fn blocks_match_single_windows(
        avx2: Avx2,
        model: &crate::cascade::Model,
        image: &GrayImage,
        even_columns_first: bool,
        f32_sums: bool,
    ) -> usize {
        let natural = Integral::new(image);
        let Some(reference) = ScaledCascade::new(model, natural.stride, natural.columns) else {
            panic!("cascade offsets overflow");
        };
        let integral = if even_columns_first {
            Integral::even_columns_first(image)
        } else {
            Integral::new(image)
        };
        let Some(mut cascade) = ScaledCascade::new(model, integral.stride, integral.columns) else {
            panic!("cascade offsets overflow");
        };
        if !f32_sums {
            cascade = cascade.without_f32_sums();
        }
        let Some(stumps) = cascade.stumps() else {
            panic!("the frontal-face cascade is made of stumps");
        };
        let columns = (image.width() + 1).saturating_sub(model.window_width) as usize;
        let rows = (image.height() + 1).saturating_sub(model.window_height) as usize;
        let (positions, x_of) = if even_columns_first {
            (columns.div_ceil(2), 2)
        } else {
            (columns, 1)
        };
        let mut past_first_stage = 0;
        for y in 0..rows {
            for position in (0..positions.saturating_sub(LANES - 1)).step_by(3) {
                let base = integral.entry(0, y) + position;
                let Some((block, _)) =
                    avx2.first_stages(&cascade, stumps, &integral, base, LANES, Visit::All)
                else {
                    panic!("({position}, {y}): the block fits the tables");
                };
                for (lane, early) in block.into_iter().enumerate() {
                    let x = x_of * (position + lane);
                    let expected = reference.evaluate(&natural, natural.entry(x, y));
                    let got = cascade.finish(&integral, base + lane, early);
                    assert_eq!(got, expected, "window ({x}, {y})");
                    if !matches!(expected, Verdict::Flat | Verdict::Rejected { stage: 0 }) {
                        past_first_stage += 1;
                    }
                }
            }
        }
        past_first_stage
    }

    #[test]
    fn a_row_visit_follows_the_scan_across_blocks() {
        let lanes = |mask: u32| {
            (0..LANES)
                .filter(|lane| mask & (1 << lane) != 0)
                .collect::<Vec<_>>()
        };
        // Step 1: a first-stage rejection skips the next window.
        let visit = Visit::Row { step: 1, next: 0 };
        assert_eq!(lanes(visit.candidates()), (0..LANES).collect::<Vec<_>>());
        let (visited, next) = visit.after_first_stage(0b0010_0010);
        assert_eq!(lanes(visited), [0, 1, 3, 4, 5, 7]);
        assert_eq!(next, Visit::Row { step: 1, next: 0 });
        // A rejection in the last lane skips the next block's first window.
        let (_, next) = visit.after_first_stage(0b1000_0000);
        assert_eq!(next, Visit::Row { step: 1, next: 1 });
        // Step 2 from lane 1: lanes 1, 3, 5, 7, and a rejection at 3 skips 5.
        let visit = Visit::Row { step: 2, next: 1 };
        assert_eq!(lanes(visit.candidates()), [1, 3, 5, 7]);
        let (visited, next) = visit.after_first_stage(0b0000_1000);
        assert_eq!(lanes(visited), [1, 3, 7]);
        assert_eq!(next, Visit::Row { step: 2, next: 1 });
        // A block the scan jumps over entirely.
        let visit = Visit::Row { step: 2, next: 9 };
        assert_eq!(visit.candidates(), 0);
        assert_eq!(
            visit.after_first_stage(0),
            (0, Visit::Row { step: 2, next: 1 })
        );
    }

    #[test]
    fn the_walk_table_is_the_walk() {
        for step in 1..=3 {
            for next in 0..LANES + 3 {
                for rejected in 0..1_u32 << LANES {
                    let (visited, after) = row_walk(step, next, rejected);
                    assert_eq!(
                        Visit::Row { step, next }.after_first_stage(rejected),
                        (visited, Visit::Row { step, next: after }),
                        "step {step}, from lane {next}, rejected {rejected:08b}"
                    );
                }
            }
        }
        // Spot checks of the walk itself: step 1 from lane 0 with lanes 1
        // and 4 rejected skips lanes 2 and 5, and starts the next block at
        // its lane 0; step 2 from lane 1 with lane 7 rejected skips the next
        // block's lane 1.
        assert_eq!(row_walk(1, 0, 0b0001_0010), (0b1101_1011, 0));
        assert_eq!(row_walk(2, 1, 0b1000_0000), (0b1010_1010, 3));
    }

    /// The two-word read of a rectangle's corners gives its four offsets,
    /// in order, for every rectangle of the cascade at a scale.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn corner_offsets_read_as_words_are_the_corners() {
        let cascade =
            Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml")).unwrap();
        let image = GrayImage::new(97, 61);
        let integral = Integral::new(&image);
        let Some(scaled) = ScaledCascade::new(&cascade.model, integral.stride, integral.columns)
        else {
            panic!("cascade offsets overflow");
        };
        let Some(stumps) = scaled.stumps() else {
            panic!("the frontal-face cascade is made of stumps");
        };
        let mut distinct = std::collections::BTreeSet::new();
        for stump in stumps {
            for corners in &stump.feature.corners {
                assert_eq!(x86::corner_offsets(corners), *corners);
                distinct.insert(*corners);
            }
        }
        assert!(
            distinct.len() > 1000,
            "{} distinct rectangles",
            distinct.len()
        );
    }

    #[test]
    fn eight_windows_at_once_decide_as_one_at_a_time() {
        let Some(avx2) = Avx2::detect() else {
            eprintln!("no AVX2 on this CPU: the block path cannot run here");
            return;
        };
        let cascade =
            Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml")).unwrap();
        let photo = gray_photo("reference/images/12_angry_men.jpg");
        // The `f32` stage sums as the scan runs them, then with every stage
        // left to the `f64` fallback.
        for f32_sums in [true, false] {
            let mut passed = 0;
            // The photo at three of the scan's sizes, with faces at several.
            for scale in [1.0_f32, 2.197, 4.827] {
                let width = (photo.width() as f32 / scale).round() as u32;
                let height = (photo.height() as f32 / scale).round() as u32;
                let resized = resize_linear_exact(&photo, width, height);
                passed +=
                    blocks_match_single_windows(avx2, &cascade.model, &resized, false, f32_sums);
            }
            // The step-2 order, at the first scale, where it is used.
            passed += blocks_match_single_windows(avx2, &cascade.model, &photo, true, f32_sums);
            assert!(
                passed > 1000,
                "only {passed} windows got past the first stage"
            );
            // Flat and half-flat blocks: windows too even to normalise.
            let mut flat = GrayImage::from_pixel(64, 40, image::Luma([90]));
            for x in 30..64 {
                for y in 0..40 {
                    flat.put_pixel(x, y, image::Luma([((x * 37 + y * 91) % 256) as u8]));
                }
            }
            for even_columns_first in [false, true] {
                blocks_match_single_windows(
                    avx2,
                    &cascade.model,
                    &flat,
                    even_columns_first,
                    f32_sums,
                );
            }
        }
    }
}
