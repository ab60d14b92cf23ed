//! Seeded random data and element-wise comparison for the kernels' tests.

use crate::tensor::Tensor;
use ndarray::ArrayView3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Whether this CPU runs AVX-512 code, said when it does not (the AVX-512
/// kernels' tests then check nothing).
pub fn avx512_here() -> bool {
    let here = crate::isa::Isa::Avx512.is_available();
    if !here {
        eprintln!("this CPU has no AVX-512: the AVX-512 kernels do not run here");
    }
    here
}

/// Fills `values` with uniform values in `[-1, 1)` from a seeded generator.
pub fn random_values(seed: u64, values: &mut [f32]) {
    let mut rng = StdRng::seed_from_u64(seed);
    for value in values {
        *value = rng.random_range(-1.0..1.0);
    }
}

/// A tensor of uniform values in `[-1, 1)`.
pub fn random_tensor<const H: usize, const W: usize, const C: usize>(
    seed: u64,
) -> Box<Tensor<H, W, C>> {
    let mut tensor = Tensor::zeroed_boxed();
    random_values(seed, tensor.as_mut_slice());
    tensor
}

/// Asserts equal shapes and every element within `tolerance`, naming the
/// first element that is not.
pub fn assert_close(actual: ArrayView3<f32>, expected: ArrayView3<f32>, tolerance: f32) {
    assert_eq!(actual.dim(), expected.dim(), "shapes differ");
    for ((index, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        assert!(
            (a - e).abs() <= tolerance,
            "element {index:?}: {a} differs from the reference {e} by more than {tolerance}"
        );
    }
}

/// Central finite differences of `loss` at `point`, with step `step`, all
/// in f64: element `i` is `(loss(point + step e_i) - loss(point - step e_i)) / 2 step`.
pub fn numeric_gradient(point: &[f64], step: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut moved = point.to_vec();
    (0..point.len())
        .map(|i| {
            moved[i] = point[i] + step;
            let up = loss(&moved);
            moved[i] = point[i] - step;
            let down = loss(&moved);
            moved[i] = point[i];
            (up - down) / (2.0 * step)
        })
        .collect()
}

/// Asserts that every element of an analytic gradient is within
/// `tolerance` of the numeric one, relative to the numeric gradient's largest
/// magnitude (so that elements near zero are held to the same absolute
/// standard as the rest), and that the gradient is not all zero.
pub fn assert_gradient_close(what: &str, analytic: &[f32], numeric: &[f64], tolerance: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths differ");
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the numeric gradient is all zero");
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a as f64 - n).abs() <= tolerance * scale,
            "{what}[{i}]: analytic {a} against numeric {n} (scale {scale})"
        );
    }
}

/// The values of `values` as f64.
pub fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

/// `sum(weights * values)`, the loss whose gradient with respect to
/// `values` is `weights`: it turns a kernel's output into a scalar for a
/// gradient check.
pub fn weighted_sum(weights: &[f32], values: impl IntoIterator<Item = f64>) -> f64 {
    weights.iter().zip(values).map(|(&w, v)| w as f64 * v).sum()
}
