//! Data augmentation as the paper's training script configures Keras'
//! `ImageDataGenerator`: a random rotation, shift and zoom about the
//! centre, with the nearest edge pixel filling what comes from outside, and
//! a horizontal flip every other time on average.

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
}

impl Augmentation {
    /// The paper's: `rotation_range=10`, `width_shift_range=0.1`,
    /// `height_shift_range=0.1`, `zoom_range=0.1`, `horizontal_flip=True`.
    pub const PAPER: Augmentation = Augmentation {
        rotation: 10.0,
        shift: 0.1,
        zoom: 0.1,
        horizontal_flip: true,
    };
}

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
/// the result.
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
            *out = normalize(sample(source_row, source_column));
        }
    }
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

    fn ramp() -> Vec<u8> {
        (0..8 * 6).map(|i| (i * 5) as u8).collect()
    }

    #[test]
    fn without_any_range_the_face_is_only_normalised() {
        let none = Augmentation {
            rotation: 0.0,
            shift: 0.0,
            zoom: 0.0,
            horizontal_flip: false,
        };
        let face = ramp();
        let mut out = vec![0.0; face.len()];
        augment_into(
            &face,
            [8, 6],
            &none,
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
            rotation: 0.0,
            shift: 0.0,
            zoom: 0.0,
            horizontal_flip: true,
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
}
