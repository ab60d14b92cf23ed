//! Global average pooling: the mean of every channel over all positions,
//! and its backward pass.

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

/// `input_gradient = d loss / d input` for `output =
/// global_average_pool(input)`: every position gets its channel's output
/// gradient divided by the number of positions. Overwrites `input_gradient`.
#[inline(always)]
pub fn global_average_pool_backward<const H: usize, const W: usize, const C: usize>(
    output_gradient: &[f32; C],
    input_gradient: &mut Tensor<H, W, C>,
) {
    const {
        assert!(
            H * W > 0,
            "global_average_pool_backward: the input has no positions"
        )
    };
    let share = output_gradient.map(|g| (g as f64 / (H * W) as f64) as f32);
    for pixel in input_gradient.data.as_flattened_mut() {
        *pixel = share;
    }
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

    #[test]
    fn backward_matches_finite_differences() {
        use crate::test_support::{assert_gradient_close, numeric_gradient, widen};
        let input = random_tensor::<3, 5, 4>(9);
        let output_gradient = [0.5f32, -1.25, 2.0, 0.125];
        let mut input_gradient = Tensor::<3, 5, 4>::zeroed_boxed();
        global_average_pool_backward(&output_gradient, &mut input_gradient);
        let numeric = numeric_gradient(&widen(input.as_slice()), 1e-3, |x| {
            let view = ndarray::ArrayView3::from_shape((3, 5, 4), x).unwrap();
            let pooled = reference::global_average_pool(view);
            pooled
                .iter()
                .zip(&output_gradient)
                .map(|(p, &g)| p * g as f64)
                .sum()
        });
        assert_gradient_close("input", input_gradient.as_slice(), &numeric, 1e-6);
    }
}
