//! The cascade prepared for one scale's integral image, and the evaluation of
//! one window: OpenCV 4.10's `HaarEvaluator::setWindow` (variance
//! normalisation) followed by `predictOrderedStump` or `predictOrdered`.
//!
//! As OpenCV's `computeOptFeatures` does, every rectangle corner is turned
//! into an offset into the integral image once per scale, so evaluating a
//! feature is a handful of loads. Unlike OpenCV, each stump carries its
//! feature inline (the frontal-face cascades use every feature once), so the
//! stage loop walks one contiguous array.
//!
//! The arithmetic is OpenCV's, type for type, because a window whose stage
//! sum lands within rounding of a threshold flips otherwise:
//! - a feature is `w0 * s0 + w1 * s1 (+ w2 * s2 if w2 != 0)` in `f32` from
//!   exact integer rectangle sums, times the `f32` variance factor;
//! - the factor is `(float)(1 / sqrt(area * sqsum - sum * sum))` in `f64`;
//!   windows with `area * factor >= 0.1` (standard deviation of at most 10
//!   grey levels) are rejected before any stage;
//! - stage sums add `f32` leaves in an `f64`, compared with an `f32`
//!   threshold.
//!
//! The eight-window path of `simd` adds the leaves in `f32` instead, which
//! takes a third of the instructions, and settles a stage from that sum only
//! where the `f32` and `f64` sums must fall on the same side of the
//! threshold ([`StageAt::rejects_below`], [`StageAt::passes_from`]); the few
//! windows in between get the `f64` sum ([`ScaledCascade::exact_stage_sum`]).

use super::cascade::{Feature, MAX_RECTS, Model};
use super::integral::{Columns, Integral, rect_sum};
use std::sync::{Arc, Mutex};

/// What the cascade says about one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Too little contrast to normalise (OpenCV's `setWindow` returns false).
    Flat,
    /// Rejected by stage `stage` (counted from 0).
    Rejected { stage: usize },
    /// Passed every stage.
    Object,
}

/// What the first stages said of a window, before the rest of the cascade
/// (see `simd`): the scan decides from this alone whether to skip the next
/// window, and finishes only the windows it does not skip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Early {
    /// Too little contrast ([`Verdict::Flat`]).
    Flat,
    /// Rejected by stage `stage`.
    Rejected { stage: usize },
    /// Passed the stages before `stage`; the window's variance factor.
    Passed { stage: usize, factor: f32 },
}

/// A Haar feature with its corners as offsets from a window's top-left
/// integral-image entry.
///
/// `repr(C, align(8))` with the corners first puts each rectangle's four
/// offsets at an 8-byte boundary, so that the block path can read them as
/// two 8-byte words (`simd::x86::corner_offsets`).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct HaarAt {
    pub(super) corners: [[u32; 4]; MAX_RECTS],
    pub(super) weights: [f32; MAX_RECTS],
    /// OpenCV adds the third rectangle only when its weight is not zero.
    pub(super) third: bool,
}

impl HaarAt {
    fn new(feature: &Feature, stride: usize, columns: Columns) -> Option<Self> {
        let mut corners = [[0_u32; 4]; MAX_RECTS];
        let mut weights = [0_f32; MAX_RECTS];
        for ((corner, weight), rect) in corners.iter_mut().zip(&mut weights).zip(&feature.rects) {
            let (x, y) = (rect.x as usize, rect.y as usize);
            let (right, bottom) = (x + rect.width as usize, y + rect.height as usize);
            let offset = |column: usize, row: usize| {
                let entry = row
                    .checked_mul(stride)?
                    .checked_add(columns.entry(column))?;
                u32::try_from(entry).ok()
            };
            *corner = [
                offset(x, y)?,
                offset(right, y)?,
                offset(x, bottom)?,
                offset(right, bottom)?,
            ];
            *weight = rect.weight;
        }
        Some(Self {
            corners,
            weights,
            third: weights[2] != 0.0,
        })
    }

    /// The largest corner offset.
    fn max_offset(&self) -> u32 {
        self.corners.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The feature's raw value for a window.
    #[inline(always)]
    fn value(&self, window: Window<'_>) -> f32 {
        let sum = |corners: &[u32; 4]| {
            let [a, b, c, d] = corners.map(|offset| window.at(offset));
            rect_sum(a, b, c, d) as f32
        };
        let mut value =
            self.weights[0] * sum(&self.corners[0]) + self.weights[1] * sum(&self.corners[1]);
        if self.third {
            value += self.weights[2] * sum(&self.corners[2]);
        }
        value
    }
}

/// One window's entries of an integral image: the `span` entries from its
/// top-left one, where `span` exceeds every corner offset of the cascade it
/// is evaluated with. Checked once per window, so that the dozens of loads
/// of each feature need no bounds check of their own.
#[derive(Clone, Copy)]
struct Window<'a> {
    entries: &'a [u32],
}

impl<'a> Window<'a> {
    /// The window of `table` starting at `base`, if `span` entries fit.
    #[inline(always)]
    fn new(table: &'a [u32], base: usize, span: usize) -> Option<Self> {
        let entries = table.get(base..base.checked_add(span)?)?;
        Some(Self { entries })
    }

    /// The entry `offset` after the window's top-left one.
    #[inline(always)]
    fn at(self, offset: u32) -> u32 {
        debug_assert!((offset as usize) < self.entries.len());
        // SAFETY: every offset passed here is a corner offset of the
        // `ScaledCascade` whose `span` sized this window, and
        // `ScaledCascade::new` refuses a cascade with an offset not below its
        // span; `Window::new` made `entries` exactly `span` long.
        unsafe { *self.entries.get_unchecked(offset as usize) }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Stump {
    pub(super) feature: HaarAt,
    pub(super) threshold: f32,
    /// The leaf a value below `threshold` adds to the stage sum.
    pub(super) below: f32,
    /// The leaf a value at or above `threshold` adds.
    pub(super) above: f32,
}

#[derive(Debug, Clone, Copy)]
struct TreeNode {
    feature: HaarAt,
    threshold: f32,
    left: i32,
    right: i32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct StageAt {
    pub(super) first: usize,
    pub(super) end: usize,
    pub(super) threshold: f32,
    /// A stage sum added in `f32` that is below this has its `f64` sum below
    /// `threshold` too: the window is rejected.
    pub(super) rejects_below: f32,
    /// A stage sum added in `f32` that is at least this has its `f64` sum at
    /// least `threshold`: the window passes. NaN when no `f32` sum can be
    /// trusted (leaves too large for `f32` sums), which no sum reaches.
    pub(super) passes_from: f32,
}

impl StageAt {
    /// The stage of weak classifiers `first..end`, whose largest leaf
    /// magnitudes are `largest_leaves`, with
    /// [`StageAt::rejects_below`] and [`StageAt::passes_from`] set from a
    /// bound on how far the `f32` and `f64` sums can drift from the exact one.
    ///
    /// Adding `n` terms one by one from zero in a format with unit roundoff
    /// `u` is off by at most `gamma(n) * sum |term|`, `gamma(n) = n u / (1 -
    /// n u)` (Higham, *Accuracy and Stability of Numerical Algorithms*,
    /// 2nd ed., section 4.2). A window's terms are one leaf per weak
    /// classifier, so `sum |term|` is at most the sum of `largest_leaves`.
    /// Twice the two formats' bounds together leaves room for
    /// the rounding of the bound itself.
    fn new(first: usize, end: usize, threshold: f32, largest_leaves: &[f32]) -> Self {
        let gamma = |unit_roundoff: f64| {
            let n = largest_leaves.len() as f64 * unit_roundoff;
            n / (1.0 - n)
        };
        let magnitude: f64 = largest_leaves.iter().map(|&leaf| f64::from(leaf)).sum();
        let unit_roundoffs = gamma(f64::from(f32::EPSILON) / 2.0) + gamma(f64::EPSILON / 2.0);
        let margin = 2.0 * unit_roundoffs * magnitude;
        let threshold_wide = f64::from(threshold);
        let (low, high) = (threshold_wide - margin, threshold_wide + margin);
        // Sums this large overflow `f32` or leave no room; keep every window
        // on the `f64` path then.
        if !(magnitude < f64::from(f32::MAX) / 2.0 && low.is_finite() && high.is_finite()) {
            return Self {
                first,
                end,
                threshold,
                rejects_below: f32::NEG_INFINITY,
                passes_from: f32::NAN,
            };
        }
        // Rounded outwards, so that the margin only grows.
        let mut rejects_below = low as f32;
        if f64::from(rejects_below) > low {
            rejects_below = rejects_below.next_down();
        }
        let mut passes_from = high as f32;
        if f64::from(passes_from) < high {
            passes_from = passes_from.next_up();
        }
        Self {
            first,
            end,
            threshold,
            rejects_below,
            passes_from,
        }
    }
}

enum Weak {
    /// Every tree is one node: OpenCV's stump path.
    Stumps(Vec<Stump>),
    /// General trees: `(first node, first leaf)` per tree, in stage order.
    Trees {
        trees: Vec<(usize, usize)>,
        nodes: Vec<TreeNode>,
        leaves: Vec<f32>,
    },
}

/// The `f64` sum of a stage's leaves for one window (`predictOrderedStump`).
#[inline(always)]
fn stage_sum(stumps: &[Stump], stage: &StageAt, window: Window<'_>, factor: f32) -> f64 {
    let mut total = 0.0_f64;
    for stump in stumps.get(stage.first..stage.end).unwrap_or_default() {
        let value = stump.feature.value(window) * factor;
        total += f64::from(if value < stump.threshold {
            stump.below
        } else {
            stump.above
        });
    }
    total
}

/// One more than the largest offset of a window's integral entries: those of
/// its last row, where the largest is the bottom-right one, or with
/// [`Columns::EvenOdd`] that of the last odd column.
fn window_span(stride: usize, columns: Columns, height: usize, width: usize) -> Option<usize> {
    let last = (0..=width).map(|x| columns.entry(x)).max()?;
    height
        .checked_mul(stride)?
        .checked_add(last)?
        .checked_add(1)
}

/// Cascades prepared for integral-image layouts, kept across detections:
/// a video's frames are scanned at the same scales every time, and preparing
/// the cascade for one (thousands of features' offsets) costs about as much
/// as scanning one of its small scales.
///
/// A cache, not part of what a cascade is: clones start empty, and it plays
/// no part in equality.
#[derive(Default)]
pub(crate) struct Prepared(Mutex<Vec<(usize, Columns, Arc<ScaledCascade>)>>);

impl Prepared {
    /// Layouts kept; past this the cache starts again (a stream of images of
    /// ever new sizes).
    const CAPACITY: usize = 64;

    /// `model` prepared for integral images with `stride` entries per row in
    /// the order `columns` (see [`ScaledCascade::new`]).
    pub(crate) fn get(
        &self,
        model: &Model,
        stride: usize,
        columns: Columns,
    ) -> Option<Arc<ScaledCascade>> {
        // A poisoned lock only means no caching.
        if let Ok(kept) = self.0.lock() {
            let found = kept.iter().find(|(s, c, _)| (*s, *c) == (stride, columns));
            if let Some((_, _, cascade)) = found {
                return Some(Arc::clone(cascade));
            }
        }
        let cascade = Arc::new(ScaledCascade::new(model, stride, columns)?);
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() == Self::CAPACITY {
                kept.clear();
            }
            kept.push((stride, columns, Arc::clone(&cascade)));
        }
        Some(cascade)
    }
}

impl Clone for Prepared {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Prepared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.0.lock().map_or(0, |kept| kept.len());
        write!(f, "Prepared({kept} layouts)")
    }
}

/// The cascade with its offsets computed for integral images of one stride.
pub(crate) struct ScaledCascade {
    /// Entries a window covers in the integral image: one more than the
    /// largest corner offset of any feature, normalisation included.
    span: usize,
    normalisation: [u32; 4],
    normalisation_area: f64,
    stages: Vec<StageAt>,
    weak: Weak,
}

impl ScaledCascade {
    /// Prepares `model` for integral images with `stride` entries per row
    /// in the order `columns`; `None` if a window's offsets do not fit in
    /// `u32` (an image hundreds of millions of pixels wide).
    ///
    /// With [`Columns::EvenOdd`] the offsets hold for windows at even `x`
    /// only: column `2k + d` sits `entry(d)` after column `2k`.
    pub(crate) fn new(model: &Model, stride: usize, columns: Columns) -> Option<Self> {
        let features = model
            .features
            .iter()
            .map(|feature| HaarAt::new(feature, stride, columns))
            .collect::<Option<Vec<_>>>()?;
        // OpenCV's `normrect`: the window less a 1-pixel border.
        let (width, height) = (model.window_width as usize, model.window_height as usize);
        let norm = Feature {
            rects: [
                super::cascade::WeightedRect {
                    x: 1,
                    y: 1,
                    width: model.window_width.saturating_sub(2),
                    height: model.window_height.saturating_sub(2),
                    weight: 1.0,
                },
                Default::default(),
                Default::default(),
            ],
        };
        let normalisation_feature = HaarAt::new(&norm, stride, columns)?;
        let normalisation = normalisation_feature.corners[0];
        // The bottom-right corner of the window is the largest offset any
        // rectangle inside it can have; the window must not reach beyond it.
        let span = window_span(stride, columns, height, width)?;
        if features
            .iter()
            .chain([&normalisation_feature])
            .any(|feature| feature.max_offset() as usize >= span)
        {
            return None;
        }
        let normalisation_area = (width.saturating_sub(2) * height.saturating_sub(2)) as f64;
        // The largest leaf magnitude of each tree (leaves
        // `first_leaf..=first_leaf + node_count`).
        let largest_leaves = model
            .trees
            .iter()
            .map(|tree| {
                let leaves = model
                    .leaves
                    .get(tree.first_leaf..=tree.first_leaf + tree.node_count)?;
                Some(
                    leaves
                        .iter()
                        .fold(0.0_f32, |largest, leaf| largest.max(leaf.abs())),
                )
            })
            .collect::<Option<Vec<_>>>()?;
        let stages = model
            .stages
            .iter()
            .map(|stage| {
                let (first, end) = (stage.first_tree, stage.first_tree + stage.tree_count);
                Some(StageAt::new(
                    first,
                    end,
                    stage.threshold,
                    largest_leaves.get(first..end)?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        // The model is validated, so every index below is in range; `get`
        // keeps that an invariant rather than a panic.
        let feature_at = |index: usize| features.get(index).copied();
        let weak = if model.all_stumps() {
            let stumps = model
                .trees
                .iter()
                .map(|tree| {
                    let node = model.nodes.get(tree.first_node)?;
                    Some(Stump {
                        feature: feature_at(node.feature)?,
                        threshold: node.threshold,
                        below: *model.leaves.get(tree.first_leaf)?,
                        above: *model.leaves.get(tree.first_leaf + 1)?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Weak::Stumps(stumps)
        } else {
            let nodes = model
                .nodes
                .iter()
                .map(|node| {
                    Some(TreeNode {
                        feature: feature_at(node.feature)?,
                        threshold: node.threshold,
                        left: node.left,
                        right: node.right,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Weak::Trees {
                trees: model
                    .trees
                    .iter()
                    .map(|tree| (tree.first_node, tree.first_leaf))
                    .collect(),
                nodes,
                leaves: model.leaves.clone(),
            }
        };
        Some(Self {
            span,
            normalisation,
            normalisation_area,
            stages,
            weak,
        })
    }

    /// One more than the largest corner offset: the integral entries a
    /// window covers from its top-left one.
    pub(super) fn span(&self) -> usize {
        self.span
    }

    /// The corners of the variance-normalisation rectangle, and its area.
    pub(super) fn normalisation(&self) -> ([u32; 4], f64) {
        (self.normalisation, self.normalisation_area)
    }

    /// The stages, in order.
    pub(super) fn stages(&self) -> &[StageAt] {
        &self.stages
    }

    /// The weak classifiers when every one is a stump.
    pub(super) fn stumps(&self) -> Option<&[Stump]> {
        match &self.weak {
            Weak::Stumps(stumps) => Some(stumps),
            Weak::Trees { .. } => None,
        }
    }

    /// The variance check alone: what [`ScaledCascade::finish`] starts from
    /// to evaluate the window whose top-left integral entry is `base`.
    pub(crate) fn early(&self, integral: &Integral, base: usize) -> Early {
        let (Some(window), Some(squares)) = (
            Window::new(&integral.sum, base, self.span),
            Window::new(&integral.square_sum, base, self.span),
        ) else {
            return Early::Flat;
        };
        match self.variance_factor(window, squares) {
            Some(factor) => Early::Passed { stage: 0, factor },
            None => Early::Flat,
        }
    }

    /// The verdict on a window from what its first stages said.
    pub(crate) fn finish(&self, integral: &Integral, base: usize, early: Early) -> Verdict {
        match early {
            Early::Flat => Verdict::Flat,
            Early::Rejected { stage } => Verdict::Rejected { stage },
            Early::Passed { stage, factor } => {
                let Some(window) = Window::new(&integral.sum, base, self.span) else {
                    return Verdict::Flat;
                };
                match &self.weak {
                    Weak::Stumps(stumps) => self.run_stumps(stumps, stage, window, factor),
                    Weak::Trees {
                        trees,
                        nodes,
                        leaves,
                    } => self.run_trees(trees, nodes, leaves, stage, window, factor),
                }
            }
        }
    }

    /// Evaluates the window whose top-left integral entry is `base`, every
    /// stage one window at a time: the reference the block path of `simd`
    /// is tested against.
    #[cfg(test)]
    pub(crate) fn evaluate(&self, integral: &Integral, base: usize) -> Verdict {
        self.finish(integral, base, self.early(integral, base))
    }

    /// The cascade with no stage settled by an `f32` sum, so that the
    /// eight-window path takes the `f64` sum for every window (what its test
    /// runs to exercise that fallback everywhere).
    #[cfg(test)]
    pub(crate) fn without_f32_sums(mut self) -> Self {
        for stage in &mut self.stages {
            stage.rejects_below = f32::NEG_INFINITY;
            stage.passes_from = f32::NAN;
        }
        self
    }

    /// OpenCV's `varianceNormFactor`, or `None` for a window it skips.
    #[inline(always)]
    fn variance_factor(&self, window: Window<'_>, squares: Window<'_>) -> Option<f32> {
        let corner = |table: Window<'_>, index: usize| table.at(self.normalisation[index]);
        let sum = rect_sum(
            corner(window, 0),
            corner(window, 1),
            corner(window, 2),
            corner(window, 3),
        );
        // OpenCV reads the squared sum as `unsigned`.
        let square_sum = rect_sum(
            corner(squares, 0),
            corner(squares, 1),
            corner(squares, 2),
            corner(squares, 3),
        ) as u32;
        let area = self.normalisation_area;
        let spread = area * f64::from(square_sum) - f64::from(sum) * f64::from(sum);
        if spread > 0.0 {
            let factor = (1.0 / spread.sqrt()) as f32;
            (area * f64::from(factor) < 0.1).then_some(factor)
        } else {
            None
        }
    }

    #[inline(always)]
    fn run_stumps(
        &self,
        stumps: &[Stump],
        first_stage: usize,
        window: Window<'_>,
        factor: f32,
    ) -> Verdict {
        for (index, stage) in self.stages.iter().enumerate().skip(first_stage) {
            if stage_sum(stumps, stage, window, factor) < f64::from(stage.threshold) {
                return Verdict::Rejected { stage: index };
            }
        }
        Verdict::Object
    }

    /// OpenCV's `f64` sum of `stage` for the window whose top-left entry is
    /// `sums[base]`, a window that `factor` normalises; `None` if the table
    /// ends before the window does. What the eight-window path falls back
    /// on when its `f32` sum lies too near the threshold to decide.
    pub(super) fn exact_stage_sum(
        &self,
        stumps: &[Stump],
        stage: &StageAt,
        sums: &[u32],
        base: usize,
        factor: f32,
    ) -> Option<f64> {
        let window = Window::new(sums, base, self.span)?;
        Some(stage_sum(stumps, stage, window, factor))
    }

    fn run_trees(
        &self,
        trees: &[(usize, usize)],
        nodes: &[TreeNode],
        leaves: &[f32],
        first_stage: usize,
        window: Window<'_>,
        factor: f32,
    ) -> Verdict {
        for (index, stage) in self.stages.iter().enumerate().skip(first_stage) {
            let mut total = 0.0_f64;
            for &(first_node, first_leaf) in trees.get(stage.first..stage.end).unwrap_or_default() {
                // Children > 0 are later nodes (checked on load), so this
                // walk ends; the final child <= 0 names leaf `-child`.
                let mut child = 0_i32;
                while let Some(node) = nodes.get(first_node + child.unsigned_abs() as usize) {
                    let value = node.feature.value(window) * factor;
                    child = if value < node.threshold {
                        node.left
                    } else {
                        node.right
                    };
                    if child <= 0 {
                        break;
                    }
                }
                let leaf = leaves.get(first_leaf + child.unsigned_abs() as usize);
                total += f64::from(leaf.copied().unwrap_or(0.0));
            }
            if total < f64::from(stage.threshold) {
                return Verdict::Rejected { stage: index };
            }
        }
        Verdict::Object
    }
}

#[cfg(test)]
mod tests {
    use super::StageAt;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Sums whose `f32` and `f64` results differ, against thresholds placed
    /// right at the `f64` sum: wherever the `f32` sum is said to settle a
    /// stage, the `f64` sum settles it the same way.
    #[test]
    fn f32_sums_settle_a_stage_only_as_the_f64_sum_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut settled, mut disagreeing) = (0, 0);
        for _ in 0..20_000 {
            let count = rng.random_range(1..=220);
            // Leaves of mixed magnitudes and signs, as in trained cascades.
            let leaves: Vec<f32> = (0..count)
                .map(|_| {
                    let magnitude = 10_f32.powf(rng.random_range(-4.0..0.5));
                    if rng.random_bool(0.5) {
                        magnitude
                    } else {
                        -magnitude
                    }
                })
                .collect();
            let (mut narrow, mut wide) = (0.0_f32, 0.0_f64);
            for &leaf in &leaves {
                narrow += leaf;
                wide += f64::from(leaf);
            }
            disagreeing += usize::from(f64::from(narrow) != wide);
            let largest: Vec<f32> = leaves.iter().map(|leaf| leaf.abs()).collect();
            // Thresholds on both sides of the f64 sum, a few f32 steps away.
            let centre = wide as f32;
            let mut threshold = centre;
            for _ in 0..4 {
                threshold = threshold.next_down();
            }
            for _ in 0..9 {
                let stage = StageAt::new(0, count, threshold, &largest);
                let rejected = wide < f64::from(threshold);
                if narrow < stage.rejects_below {
                    assert!(
                        rejected,
                        "{count} leaves, threshold {threshold}: f32 {narrow} rejects, f64 {wide} does not"
                    );
                    settled += 1;
                }
                if narrow >= stage.passes_from {
                    assert!(
                        !rejected,
                        "{count} leaves, threshold {threshold}: f32 {narrow} passes, f64 {wide} does not"
                    );
                    settled += 1;
                }
                assert!(stage.rejects_below <= threshold && threshold <= stage.passes_from);
                threshold = threshold.next_up();
            }
        }
        assert!(
            disagreeing > 1000,
            "only {disagreeing} sums differ between f32 and f64"
        );
        // Near the threshold by construction, so most sums are left unsettled;
        // some must still be settled, or the test shows nothing.
        assert!(settled > 0);
    }

    #[test]
    fn leaves_too_large_for_f32_sums_leave_every_stage_to_f64() {
        let stage = StageAt::new(0, 2, 0.5, &[f32::MAX, f32::MAX]);
        assert_eq!(stage.rejects_below, f32::NEG_INFINITY);
        assert!(stage.passes_from.is_nan());
        let ordinary = StageAt::new(0, 2, 0.5, &[0.25, 1.0]);
        assert!(ordinary.rejects_below < 0.5 && ordinary.rejects_below > 0.4999);
        assert!(ordinary.passes_from > 0.5 && ordinary.passes_from < 0.5001);
    }
}
