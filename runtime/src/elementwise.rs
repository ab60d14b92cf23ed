//! Element-wise ops, in place: the residual add and ReLU, and ReLU's
//! backward pass. (The add's backward pass is nothing to compute: both
//! branches receive the output gradient as it is.)

use crate::tensor::Tensor;

/// `accumulator += other`, the residual connection.
///
/// Both tensors have one type, so branches of different shapes cannot be added.
#[inline(always)]
pub fn add_assign<const H: usize, const W: usize, const C: usize>(
    accumulator: &mut Tensor<H, W, C>,
    other: &Tensor<H, W, C>,
) {
    for (acc, &value) in accumulator.as_mut_slice().iter_mut().zip(other.as_slice()) {
        *acc += value;
    }
}

/// `x = max(x, 0)`.
#[inline(always)]
pub fn relu_in_place<const H: usize, const W: usize, const C: usize>(tensor: &mut Tensor<H, W, C>) {
    for value in tensor.as_mut_slice() {
        *value = value.max(0.0);
    }
}

/// `gradient = 0` wherever `output`, a ReLU's output, is not positive: the
/// backward pass of [`relu_in_place`]. As in TensorFlow, the gradient at 0
/// is 0.
#[inline(always)]
pub fn relu_backward_in_place<const H: usize, const W: usize, const C: usize>(
    gradient: &mut Tensor<H, W, C>,
    output: &Tensor<H, W, C>,
) {
    // A select rather than a branch, so that it vectorises.
    for (g, &y) in gradient.as_mut_slice().iter_mut().zip(output.as_slice()) {
        *g = if y > 0.0 { *g } else { 0.0 };
    }
}

/// Guided back-propagation's ReLU backward pass, in place: the gradient
/// passes only where both `output` and the gradient itself are positive.
#[inline(always)]
pub fn guided_relu_backward_in_place<const H: usize, const W: usize, const C: usize>(
    gradient: &mut Tensor<H, W, C>,
    output: &Tensor<H, W, C>,
) {
    for (g, &y) in gradient.as_mut_slice().iter_mut().zip(output.as_slice()) {
        *g = if y > 0.0 && *g > 0.0 { *g } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor};

    #[test]
    fn guided_relu_backward_keeps_positive_gradients_of_positive_outputs() {
        let output = random_tensor::<3, 5, 4>(3);
        let gradient = random_tensor::<3, 5, 4>(4);
        let mut guided = gradient.clone();
        guided_relu_backward_in_place(&mut guided, &output);
        let mut plain = gradient.clone();
        relu_backward_in_place(&mut plain, &output);
        assert_ne!(guided.as_slice(), plain.as_slice());
        for ((&g, &y), &kept) in gradient
            .as_slice()
            .iter()
            .zip(output.as_slice())
            .zip(guided.as_slice())
        {
            assert_eq!(kept, if y > 0.0 && g > 0.0 { g } else { 0.0 });
        }
    }

    #[test]
    fn add_assign_adds_every_element() {
        let mut a = random_tensor::<3, 5, 2>(1);
        let b = random_tensor::<3, 5, 2>(2);
        let expected = &a.view() + &b.view();
        add_assign(&mut a, &b);
        assert_close(a.view(), expected.view(), 0.0);
    }

    #[test]
    fn relu_matches_the_reference() {
        let mut tensor = random_tensor::<4, 3, 5>(3);
        let expected = reference::relu(tensor.view());
        relu_in_place(&mut tensor);
        assert_close(tensor.view(), expected.view(), 0.0);
        assert!(tensor.as_slice().contains(&0.0));
    }

    #[test]
    fn relu_backward_passes_the_gradient_only_where_the_output_is_positive() {
        let mut output = random_tensor::<3, 4, 5>(4);
        relu_in_place(&mut output);
        let original = random_tensor::<3, 4, 5>(5);
        let mut gradient = original.clone();
        relu_backward_in_place(&mut gradient, &output);
        for ((&g, &y), &o) in gradient
            .as_slice()
            .iter()
            .zip(output.as_slice())
            .zip(original.as_slice())
        {
            assert_eq!(g, if y > 0.0 { o } else { 0.0 });
        }
        assert!(gradient.as_slice().contains(&0.0));
        assert!(gradient.as_slice().iter().any(|&g| g != 0.0));
    }
}
