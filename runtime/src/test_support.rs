//! Seeded random data and element-wise comparison for the kernels' tests.

use crate::tensor::Tensor;
use ndarray::ArrayView3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
