// A shape contract stated as generated code states it, with a wrong output
// shape: `cargo check` evaluates it and fails.
use mini_xception::runtime::{Padding, conv, shape_eq};

const _: () = assert!(
    shape_eq(conv::output_shape([64, 64, 1], 3, 8, Padding::Valid, 1), [64, 64, 8]),
    "base[0]: Conv2D 3x3 valid must map 64x64x1 to 64x64x8"
);

fn main() {}
