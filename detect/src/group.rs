//! Grouping raw window hits into detections, as OpenCV 4.10's
//! `groupRectangles(rects, groupThreshold, eps = 0.2)` does, and the final
//! clipping to the image (`clipObjects`).
//!
//! 1. `partition` with `SimilarRects`: two hits are similar when each of
//!    their four edges differs by at most
//!    `delta = eps * (min(w1, w2) + min(h1, h2)) * 0.5`; groups are the
//!    transitive closure of that relation.
//! 2. Each group becomes the average of its members, `(int sum) * (1.f / n)`
//!    rounded half to even in `f32`.
//! 3. Groups with `n <= groupThreshold` members are dropped, and so is a
//!    group lying inside another kept group (enlarged by `eps` of its size on
//!    each side) when that group has more than `max(3, n)` members or this
//!    one has fewer than 3.
//!
//! With `groupThreshold == 0` OpenCV returns the hits ungrouped.

/// A rectangle in pixels; signed because OpenCV's grouping arithmetic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub(crate) x: i32,
    pub(crate) y: i32,
    pub(crate) width: i32,
    pub(crate) height: i32,
}

/// OpenCV's `GROUP_EPS` in `detectMultiScale`.
const EPS: f64 = 0.2;

/// `groupRectangles(hits, group_threshold, 0.2)`.
pub(crate) fn group_rectangles(hits: &[Rect], group_threshold: usize) -> Vec<Rect> {
    if group_threshold == 0 || hits.is_empty() {
        return hits.to_vec();
    }
    let labels = partition(hits);
    let classes = labels.iter().copied().max().map_or(0, |last| last + 1);
    let mut sums = vec![[0_i64; 4]; classes];
    let mut counts = vec![0_usize; classes];
    for (hit, &label) in hits.iter().zip(&labels) {
        if let (Some(sum), Some(count)) = (sums.get_mut(label), counts.get_mut(label)) {
            for (total, value) in sum.iter_mut().zip([hit.x, hit.y, hit.width, hit.height]) {
                *total += i64::from(value);
            }
            *count += 1;
        }
    }
    let averages: Vec<Rect> = sums
        .iter()
        .zip(&counts)
        .map(|(sum, &count)| {
            // `float s = 1.f / n; saturate_cast<int>(sum * s)`.
            let scale = 1.0_f32 / count as f32;
            let [x, y, width, height] = sum.map(|total| round_f32(total as f32 * scale));
            Rect {
                x,
                y,
                width,
                height,
            }
        })
        .collect();

    let mut kept = Vec::new();
    for (index, (&r1, &n1)) in averages.iter().zip(&counts).enumerate() {
        if n1 <= group_threshold {
            continue;
        }
        let swallowed = averages
            .iter()
            .zip(&counts)
            .enumerate()
            .any(|(other, (&r2, &n2))| {
                if other == index || n2 <= group_threshold {
                    return false;
                }
                let dx = i64::from(round_f64(f64::from(r2.width) * EPS));
                let dy = i64::from(round_f64(f64::from(r2.height) * EPS));
                let [x1, y1, w1, h1] = wide(&r1);
                let [x2, y2, w2, h2] = wide(&r2);
                x1 >= x2 - dx
                    && y1 >= y2 - dy
                    && x1 + w1 <= x2 + w2 + dx
                    && y1 + h1 <= y2 + h2 + dy
                    && (n2 > n1.max(3) || n1 < 3)
            });
        if !swallowed {
            kept.push(r1);
        }
    }
    kept
}

/// `clipObjects`: each rectangle intersected with the image; empty ones go.
pub(crate) fn clip(rects: &[Rect], width: u32, height: u32) -> Vec<Rect> {
    let (width, height) = (i64::from(width), i64::from(height));
    rects
        .iter()
        .filter_map(|rect| {
            let left = i64::from(rect.x).max(0);
            let top = i64::from(rect.y).max(0);
            let right = (i64::from(rect.x) + i64::from(rect.width)).min(width);
            let bottom = (i64::from(rect.y) + i64::from(rect.height)).min(height);
            (right > left && bottom > top).then(|| Rect {
                x: i32::try_from(left).unwrap_or(i32::MAX),
                y: i32::try_from(top).unwrap_or(i32::MAX),
                width: i32::try_from(right - left).unwrap_or(i32::MAX),
                height: i32::try_from(bottom - top).unwrap_or(i32::MAX),
            })
        })
        .collect()
}

/// OpenCV's `SimilarRects(eps)` predicate.
fn similar(r1: &Rect, r2: &Rect) -> bool {
    let [x1, y1, w1, h1] = wide(r1);
    let [x2, y2, w2, h2] = wide(r2);
    let delta = EPS * (w1.min(w2) + h1.min(h2)) as f64 * 0.5;
    let close = |a: i64, b: i64| (a - b).abs() as f64 <= delta;
    close(x1, x2) && close(y1, y2) && close(x1 + w1, x2 + w2) && close(y1 + h1, y2 + h2)
}

/// `[x, y, width, height]` widened so that no sum of them can overflow.
fn wide(rect: &Rect) -> [i64; 4] {
    [rect.x, rect.y, rect.width, rect.height].map(i64::from)
}

/// Class labels `0..classes` for the transitive closure of [`similar`], as
/// `cv::partition` computes it (labels numbered in order of first member).
///
/// Instead of OpenCV's all-pairs loop, hits are swept in order of `x`: a hit
/// can only be similar to hits whose `x` is within
/// `eps * (w + h) * 0.5` of its own (the largest `delta` it can have), so the
/// same pairs are found in far fewer tests. The classes are the same.
fn partition(hits: &[Rect]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..hits.len()).collect();
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by_key(|&index| hits.get(index).map_or(0, |hit| hit.x));
    for (position, &first) in order.iter().enumerate() {
        let Some(r1) = hits.get(first) else { continue };
        let [x1, _, w1, h1] = wide(r1);
        let reach = EPS * (w1 + h1) as f64 * 0.5;
        for &second in order.iter().skip(position + 1) {
            let Some(r2) = hits.get(second) else { continue };
            if (i64::from(r2.x) - x1) as f64 > reach {
                break;
            }
            if similar(r1, r2) {
                let (a, b) = (find(&mut parent, first), find(&mut parent, second));
                if a != b {
                    // Attach the later root to the earlier one, so roots are
                    // always the smallest index of their class.
                    let (root, child) = if a < b { (a, b) } else { (b, a) };
                    if let Some(slot) = parent.get_mut(child) {
                        *slot = root;
                    }
                }
            }
        }
    }
    let mut labels = vec![0; hits.len()];
    let mut label_of_root = vec![usize::MAX; hits.len()];
    let mut classes = 0;
    for index in 0..hits.len() {
        let root = find(&mut parent, index);
        if let Some(label) = label_of_root.get_mut(root) {
            if *label == usize::MAX {
                *label = classes;
                classes += 1;
            }
            if let Some(slot) = labels.get_mut(index) {
                *slot = *label;
            }
        }
    }
    labels
}

/// The root of `index` in the union-find forest, halving paths on the way.
fn find(parent: &mut [usize], mut index: usize) -> usize {
    while let Some(&up) = parent.get(index) {
        if up == index {
            break;
        }
        let grand = parent.get(up).copied().unwrap_or(up);
        if let Some(slot) = parent.get_mut(index) {
            *slot = grand;
        }
        index = grand;
    }
    index
}

/// `cvRound` of a `float`: half to even, saturating.
pub(crate) fn round_f32(value: f32) -> i32 {
    value.round_ties_even() as i32
}

/// `cvRound` of a `double`: half to even, saturating.
pub(crate) fn round_f64(value: f64) -> i32 {
    value.round_ties_even() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: i32, y: i32, side: i32) -> Rect {
        Rect {
            x,
            y,
            width: side,
            height: side,
        }
    }

    #[test]
    fn neighbours_average_and_need_more_than_threshold_members() {
        let hits = [
            rect(100, 100, 50),
            rect(102, 101, 50),
            rect(101, 99, 51),
            rect(400, 400, 30),
        ];
        // 101 = 303 * (1/3) in f32; 50.333 rounds to 50.
        assert_eq!(group_rectangles(&hits, 2), vec![rect(101, 100, 50)]);
        assert_eq!(group_rectangles(&hits, 3), Vec::<Rect>::new());
        assert_eq!(group_rectangles(&hits, 0).len(), 4);
    }

    #[test]
    fn similarity_is_transitive() {
        // a~b and b~c but not a~c: still one group.
        let hits = [rect(100, 100, 40), rect(107, 100, 40), rect(114, 100, 40)];
        assert!(!similar(&hits[0], &hits[2]));
        assert_eq!(partition(&hits), vec![0, 0, 0]);
    }

    #[test]
    fn small_groups_inside_strong_big_ones_go() {
        let mut hits = vec![rect(100, 100, 100); 6];
        hits.extend(vec![rect(130, 130, 30); 4]);
        assert_eq!(group_rectangles(&hits, 1), vec![rect(100, 100, 100)]);
    }

    #[test]
    fn clipping_cuts_at_the_image_edges() {
        let clipped = clip(&[rect(90, -5, 20), rect(200, 0, 10)], 100, 100);
        assert_eq!(
            clipped,
            vec![Rect {
                x: 90,
                y: 0,
                width: 10,
                height: 15
            }]
        );
    }
}
