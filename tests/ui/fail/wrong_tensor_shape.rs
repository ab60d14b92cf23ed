// A tensor of the wrong shape passed to a kernel is a type error.
use mini_xception::runtime::{Conv2dWeights, Identity, PortableArithmetic, Same, Stride, Tensor, conv2d};

fn main() {
    let input = Tensor::<8, 8, 3>::zeroed_boxed();
    let weights = Conv2dWeights::<3, 4, 16>::zeroed_boxed();
    let mut output = Tensor::<8, 8, 16>::zeroed_boxed();
    conv2d(&input, &weights, Same, Stride::<1>, PortableArithmetic, Identity, &mut output);
}
