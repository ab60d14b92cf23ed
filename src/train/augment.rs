//! Data augmentation as the paper's training script configures Keras'
//! `ImageDataGenerator`: a random rotation, shift and zoom about the
//! centre, with the nearest edge pixel filling what comes from outside, and
//! a horizontal flip every other time on average; and, beyond the paper,
//! optional random brightness and contrast, and random erasing.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The ranges of the random transform.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Rotation, uniform in `±rotation` degrees.
    pub rotation: f32,
    /// Shift along each axis, uniform in `±shift` of the side.
    pub shift: f32,
    /// Zoom of each axis, uniform in `1 ± zoom`.
    pub zoom: f32,
    /// Whether half of the faces are mirrored left to right.
    pub horizontal_flip: bool,
    /// Brightness: every pixel shifted by the same amount, uniform in
    /// `±brightness` of the full range (255). Left out of the checkpoint's
    /// record of the settings when 0, so that runs from before it resume.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub brightness: f32,
    /// Contrast: each pixel's distance from the face's mean scaled by a
    /// factor uniform in `1 ± contrast`. Left out of the record when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub contrast: f32,
    /// Random erasing (Zhong et al., 2017): the probability that a random
    /// rectangle of the face, 2% to 33% of its area with a side ratio
    /// between 0.3 and 3.3, is set to mid-grey. Left out of the record
    /// when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub erase: f32,
}

fn is_zero(value: &f32) -> bool {
    *value == 0.0
}

impl Augmentation {
    /// The paper's: `rotation_range=10`, `width_shift_range=0.1`,
    /// `height_shift_range=0.1`, `zoom_range=0.1`, `horizontal_flip=True`.
    pub const PAPER: Augmentation = Augmentation {
        rotation: 10.0,
        shift: 0.1,
        zoom: 0.1,
        horizontal_flip: true,
        brightness: 0.0,
        contrast: 0.0,
        erase: 0.0,
    };
}

/// The range of the erased rectangle's share of the face, and of its height
/// over its width (torchvision's `RandomErasing` defaults).
const ERASED_AREA: std::ops::RangeInclusive<f32> = 0.02..=0.33;
const ERASED_ASPECT: std::ops::RangeInclusive<f32> = 0.3..=3.3;
/// Draws of a rectangle before erasing gives up on a face, as torchvision.
const ERASE_ATTEMPTS: usize = 10;

/// `(v / 255 - 0.5) * 2`, the paper's input normalisation, on a value that
/// interpolation may have taken between two bytes.
fn normalize(value: f32) -> f32 {
    (value / 255.0 - 0.5) * 2.0
}

/// Writes `face` (`height * width` bytes) to `out` normalised, unchanged.
pub fn plain_into(face: &[u8], out: &mut [f32]) {
    for (out, &pixel) in out.iter_mut().zip(face) {
        *out = crate::preprocess::normalize(pixel);
    }
}

/// Writes `face` to `out` normalised, through a transform drawn from `rng`.
///
/// As in Keras, output pixel `p` takes the input at
/// `c + R (Z (p - c) + t)` for the centre `c`, rotation `R`, zoom `Z` and
/// shift `t`, interpolated bilinearly, with coordinates outside the face
/// clamped to its edge (Keras' `fill_mode="nearest"`); the flip mirrors
/// the result. Then brightness and contrast: `mean + (v - mean) * factor +
/// shift`, clamped to `[0, 255]`, with `mean` the face's. Last, with
/// probability `erase`, a random rectangle is set to 0, the normalised
/// mid-grey. Ranges of 0 draw no random numbers, so the paper's transform
/// draws what it always drew.
pub fn augment_into(
    face: &[u8],
    size: [usize; 2],
    augmentation: &Augmentation,
    rng: &mut impl Rng,
    out: &mut [f32],
) {
    let [height, width] = size;
    if height == 0 || width == 0 {
        return;
    }
    let angle = uniform(rng, augmentation.rotation).to_radians();
    let shift_rows = uniform(rng, augmentation.shift) * height as f32;
    let shift_columns = uniform(rng, augmentation.shift) * width as f32;
    let zoom_rows = 1.0 + uniform(rng, augmentation.zoom);
    let zoom_columns = 1.0 + uniform(rng, augmentation.zoom);
    let flip = augmentation.horizontal_flip && rng.random_bool(0.5);
    let brightness_shift = uniform(rng, augmentation.brightness) * 255.0;
    let contrast_factor = 1.0 + uniform(rng, augmentation.contrast);
    let photometric = brightness_shift != 0.0 || contrast_factor != 1.0;
    let mean = if photometric {
        face.iter().map(|&v| v as f32).sum::<f32>() / face.len().max(1) as f32
    } else {
        0.0
    };
    let (sin, cos) = angle.sin_cos();
    let (centre_row, centre_column) = ((height as f32 - 1.0) / 2.0, (width as f32 - 1.0) / 2.0);
    let (last_row, last_column) = ((height - 1) as f32, (width - 1) as f32);
    let sample = |row: f32, column: f32| -> f32 {
        let row = row.clamp(0.0, last_row);
        let column = column.clamp(0.0, last_column);
        let (r0, c0) = (row.floor() as usize, column.floor() as usize);
        let (r1, c1) = ((r0 + 1).min(height - 1), (c0 + 1).min(width - 1));
        let (fr, fc) = (row - r0 as f32, column - c0 as f32);
        let at = |r: usize, c: usize| face.get(r * width + c).copied().unwrap_or(0) as f32;
        let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
        let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
        top * (1.0 - fr) + bottom * fr
    };
    for (row, out_row) in out.chunks_exact_mut(width).take(height).enumerate() {
        for (column, out) in out_row.iter_mut().enumerate() {
            let column = if flip { width - 1 - column } else { column };
            let (r, c) = (row as f32 - centre_row, column as f32 - centre_column);
            let (zr, zc) = (r * zoom_rows + shift_rows, c * zoom_columns + shift_columns);
            let source_row = centre_row + cos * zr - sin * zc;
            let source_column = centre_column + sin * zr + cos * zc;
            let value = sample(source_row, source_column);
            let value = if photometric {
                (mean + (value - mean) * contrast_factor + brightness_shift).clamp(0.0, 255.0)
            } else {
                value
            };
            *out = normalize(value);
        }
    }
    if augmentation.erase > 0.0
        && rng.random_bool(f64::from(augmentation.erase.min(1.0)))
        && let Some([top, left, rows, columns]) = erased_rectangle(rng, size)
    {
        for out_row in out.chunks_exact_mut(width).skip(top).take(rows) {
            out_row[left..left + columns].fill(0.0);
        }
    }
}

/// A rectangle `[top, left, rows, columns]` inside a face of `size`, with
/// its area and side ratio drawn as torchvision's `RandomErasing` draws
/// them (the ratio log-uniform); `None` when no draw fits.
fn erased_rectangle(rng: &mut impl Rng, size: [usize; 2]) -> Option<[usize; 4]> {
    let [height, width] = size;
    let area = (height * width) as f32;
    let (low, high) = (ERASED_ASPECT.start().ln(), ERASED_ASPECT.end().ln());
    for _ in 0..ERASE_ATTEMPTS {
        let share = rng.random_range(ERASED_AREA);
        let aspect = rng.random_range(low..=high).exp();
        let rows = (share * area * aspect).sqrt().round() as usize;
        let columns = (share * area / aspect).sqrt().round() as usize;
        if (1..height).contains(&rows) && (1..width).contains(&columns) {
            let top = rng.random_range(0..=height - rows);
            let left = rng.random_range(0..=width - columns);
            return Some([top, left, rows, columns]);
        }
    }
    None
}

/// Uniform in `[-range, range]` (0 when the range is 0).
fn uniform(rng: &mut impl Rng, range: f32) -> f32 {
    if range > 0.0 {
        rng.random_range(-range..=range)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// No transform at all: the tests switch on one at a time.
    const NONE: Augmentation = Augmentation {
        rotation: 0.0,
        shift: 0.0,
        zoom: 0.0,
        horizontal_flip: false,
        brightness: 0.0,
        contrast: 0.0,
        erase: 0.0,
    };

    fn ramp() -> Vec<u8> {
        (0..8 * 6).map(|i| (i * 5) as u8).collect()
    }

    #[test]
    fn without_any_range_the_face_is_only_normalised() {
        let face = ramp();
        let mut out = vec![0.0; face.len()];
        augment_into(
            &face,
            [8, 6],
            &NONE,
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut out,
        );
        let mut plain = vec![0.0; face.len()];
        plain_into(&face, &mut plain);
        for (a, b) in out.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn a_flip_mirrors_rows_and_a_seed_repeats_its_transform() {
        let flip_only = Augmentation {
            horizontal_flip: true,
            ..NONE
        };
        let face = ramp();
        let mut flipped = 0;
        for seed in 0..20 {
            let mut out = vec![0.0; face.len()];
            augment_into(
                &face,
                [8, 6],
                &flip_only,
                &mut ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            );
            if out[0] != normalize(face[0] as f32) {
                assert_eq!(
                    out[0],
                    normalize(face[5] as f32),
                    "the first pixel is the row's last"
                );
                flipped += 1;
            }
        }
        assert!((5..=15).contains(&flipped), "{flipped} of 20 flipped");
        let mut a = vec![0.0; face.len()];
        let mut b = vec![0.0; face.len()];
        augment_into(
            &face,
            [8, 6],
            &Augmentation::PAPER,
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut a,
        );
        augment_into(
            &face,
            [8, 6],
            &Augmentation::PAPER,
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut b,
        );
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn brightness_shifts_and_contrast_scales_every_pixel_alike() {
        let face = ramp();
        let mut plain = vec![0.0; face.len()];
        plain_into(&face, &mut plain);
        let only = |brightness, contrast| Augmentation {
            brightness,
            contrast,
            ..NONE
        };
        let mut shifts = Vec::new();
        for seed in 0..20 {
            let mut out = vec![0.0; face.len()];
            augment_into(
                &face,
                [8, 6],
                &only(0.2, 0.0),
                &mut ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            );
            // Unclamped pixels all move by one shift, within ±0.2 of the
            // range (±0.4 after normalising to [-1, 1]).
            let moved: Vec<f32> = out
                .iter()
                .zip(&plain)
                .filter(|(o, _)| o.abs() < 1.0)
                .map(|(o, p)| o - p)
                .collect();
            let shift = moved[0];
            assert!(moved.iter().all(|m| (m - shift).abs() < 1e-5), "{moved:?}");
            assert!(shift.abs() <= 0.4 + 1e-6, "{shift}");
            shifts.push(shift);
        }
        assert!(shifts.iter().any(|s| s.abs() > 0.05), "{shifts:?}");

        // Contrast: distances from the mean scale by one factor in [0.7, 1.3].
        let mean = face.iter().map(|&v| v as f32).sum::<f32>() / face.len() as f32;
        let centre = (mean / 255.0 - 0.5) * 2.0;
        let mut out = vec![0.0; face.len()];
        augment_into(
            &face,
            [8, 6],
            &only(0.0, 0.3),
            &mut ChaCha8Rng::seed_from_u64(5),
            &mut out,
        );
        let factors: Vec<f32> = out
            .iter()
            .zip(&plain)
            .filter(|(o, p)| o.abs() < 1.0 && (*p - centre).abs() > 0.1)
            .map(|(o, p)| (o - centre) / (p - centre))
            .collect();
        assert!(factors.len() > 20);
        assert!(
            factors.iter().all(|f| (f - factors[0]).abs() < 1e-3),
            "{factors:?}"
        );
        assert!(
            (0.7 - 1e-4..=1.3 + 1e-4).contains(&factors[0]),
            "{}",
            factors[0]
        );
    }

    #[test]
    fn erasing_sets_one_rectangle_of_the_drawn_size_to_grey() {
        // Bytes never normalise to exactly 0 (mid-grey is 127.5), so the
        // zeros are the erased pixels.
        let [height, width] = [24, 20];
        let face: Vec<u8> = (0..height * width).map(|i| (i * 7 % 251) as u8).collect();
        let mut plain = vec![0.0; face.len()];
        plain_into(&face, &mut plain);
        let erase = |probability| Augmentation {
            erase: probability,
            ..NONE
        };
        let mut erased_faces = 0;
        let mut shapes = std::collections::HashSet::new();
        for seed in 0..200 {
            let mut out = vec![1.0; face.len()];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            augment_into(&face, [height, width], &erase(0.5), &mut rng, &mut out);
            let zeros: Vec<[usize; 2]> = (0..face.len())
                .filter(|&i| out[i] == 0.0)
                .map(|i| [i / width, i % width])
                .collect();
            for (i, (o, p)) in out.iter().zip(&plain).enumerate() {
                assert!(*o == 0.0 || o == p, "pixel {i}: {o} against {p}");
            }
            if zeros.is_empty() {
                continue;
            }
            erased_faces += 1;
            // The zeros fill their bounding box: one rectangle.
            let rows = zeros.iter().map(|z| z[0]);
            let columns = zeros.iter().map(|z| z[1]);
            let (top, bottom) = (rows.clone().min().unwrap(), rows.max().unwrap());
            let (left, right) = (columns.clone().min().unwrap(), columns.max().unwrap());
            let (h, w) = (bottom - top + 1, right - left + 1);
            assert_eq!(zeros.len(), h * w, "seed {seed}: not a rectangle");
            assert!(h < height && w < width);
            // 2% to 33% of the area, give or take the rounding of each side.
            let share = (h * w) as f32 / (height * width) as f32;
            assert!((0.01..=0.40).contains(&share), "seed {seed}: {share}");
            shapes.insert([h, w]);
        }
        assert!((70..=130).contains(&erased_faces), "{erased_faces} of 200");
        assert!(shapes.len() > 10, "sizes and ratios vary: {shapes:?}");
        // Probability 1 erases every face; and 0 draws nothing, so the
        // transforms of runs from before the option are unchanged.
        for seed in 0..20 {
            let mut out = vec![1.0; face.len()];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            augment_into(&face, [height, width], &erase(1.0), &mut rng, &mut out);
            assert!(out.contains(&0.0), "seed {seed}");
        }
        let (mut with_zero, mut without) =
            (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
        let mut out = vec![0.0; face.len()];
        augment_into(
            &face,
            [height, width],
            &erase(0.0),
            &mut with_zero,
            &mut out,
        );
        assert_eq!(with_zero.random::<u64>(), without.random::<u64>());
    }

    #[test]
    fn the_papers_settings_are_recorded_as_before_brightness_and_contrast() {
        // A checkpoint of a run from before these options must resume.
        let record = serde_json::to_value(Augmentation::PAPER).unwrap();
        let mut keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["horizontal_flip", "rotation", "shift", "zoom"]);
        let read: Augmentation = serde_json::from_value(record).unwrap();
        assert_eq!(read, Augmentation::PAPER);
        let stronger = Augmentation {
            brightness: 0.1,
            erase: 0.5,
            ..Augmentation::PAPER
        };
        let record = serde_json::to_value(stronger).unwrap();
        assert!(record.get("brightness").is_some());
        assert_eq!(record.get("erase"), Some(&serde_json::json!(0.5)));
        assert_eq!(
            serde_json::from_value::<Augmentation>(record).unwrap(),
            stronger
        );
    }
}
