//! Global average pooling: the mean of every channel over all positions.

use crate::tensor::Tensor;

/// The mean of each channel.
///
/// Sums in f64 so the result does not depend on the order of the positions.
#[inline(always)]
pub fn global_average_pool<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
) -> [f32; C] {
    const { assert!(H * W > 0, "global_average_pool: the input has no positions") };
    let mut sums = [0.0f64; C];
    for pixel in input.data.as_flattened() {
        for (sum, &value) in sums.iter_mut().zip(pixel) {
            *sum += value as f64;
        }
    }
    sums.map(|sum| (sum / (H * W) as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::test_support::random_tensor;

    #[test]
    fn matches_the_reference() {
        let input = random_tensor::<4, 3, 7>(8);
        let expected = reference::global_average_pool(input.view());
        let actual = global_average_pool(&input);
        for (a, e) in actual.iter().zip(expected.iter()) {
            assert!((a - e).abs() <= 1e-6, "{a} vs {e}");
        }
        assert_ne!(actual[0], actual[1]);
    }
}
