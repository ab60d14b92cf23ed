// An output tensor whose shape does not follow from the input, kernel,
// padding and stride fails to build.
use mini_xception::runtime::{Conv2dWeights, Stride, Tensor, Unfused, Valid, conv2d};

fn main() {
    let input = Tensor::<8, 8, 3>::zeroed_boxed();
    let weights = Conv2dWeights::<3, 3, 16>::zeroed_boxed();
    let mut output = Tensor::<8, 8, 16>::zeroed_boxed();
    conv2d(&input, &weights, Valid, Stride::<1>, Unfused, &mut output);
}
