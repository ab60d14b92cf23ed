//! The arithmetic of sliding windows: output sizes and padding, following
//! TensorFlow's rules exactly.
//!
//! Kernels take their stride, window and padding as zero-sized values
//! ([`Stride`], [`Window`], [`Valid`], [`Same`]) so that all three are part of
//! the kernel's type and its output shape can be checked at compile time.

/// How a sliding window treats the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: the window only visits positions where it fits whole.
    Valid,
    /// TensorFlow's `same`: the output has `ceil(input / stride)` positions and
    /// the input is padded so that every one of them is visited. When the total
    /// padding is odd, the extra row or column goes at the bottom or right.
    Same,
}

impl Padding {
    /// Output positions along one axis, or 0 when the window does not fit.
    pub const fn output_size(self, input: usize, window: usize, stride: usize) -> usize {
        if stride == 0 || window == 0 {
            return 0;
        }
        match self {
            Padding::Valid => {
                if window > input {
                    0
                } else {
                    (input - window) / stride + 1
                }
            }
            Padding::Same => input.div_ceil(stride),
        }
    }

    /// Padding before the first input element (top or left).
    ///
    /// TensorFlow computes the total as `max((out - 1) * stride + window - input, 0)`
    /// and puts the smaller half first.
    pub const fn padding_before(self, input: usize, window: usize, stride: usize) -> usize {
        match self {
            Padding::Valid => 0,
            Padding::Same => {
                let output = self.output_size(input, window, stride);
                if output == 0 {
                    return 0;
                }
                let needed = (output - 1) * stride + window;
                if needed > input {
                    (needed - input) / 2
                } else {
                    0
                }
            }
        }
    }
}

/// A padding rule as a type, for kernels that check their shapes at compile time.
pub trait PaddingMode: Copy {
    /// The rule this type stands for.
    const PADDING: Padding;
}

/// The `valid` padding rule as a value: see [`Padding::Valid`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Valid;

/// The `same` padding rule as a value: see [`Padding::Same`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Same;

impl PaddingMode for Valid {
    const PADDING: Padding = Padding::Valid;
}

impl PaddingMode for Same {
    const PADDING: Padding = Padding::Same;
}

/// A stride as a value whose number is in its type: `Stride::<2>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stride<const S: usize>;

/// A square pooling window as a value whose size is in its type: `Window::<3>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window<const K: usize>;

/// The spatial output size of a window op on an `input_h x input_w` input,
/// as `[height, width]`.
pub const fn output_hw(
    input: [usize; 2],
    window: usize,
    stride: usize,
    padding: Padding,
) -> [usize; 2] {
    [
        padding.output_size(input[0], window, stride),
        padding.output_size(input[1], window, stride),
    ]
}

/// Whether an `output` of `[height, width]` is what a window op gives for an
/// `input` of `[height, width]`, and is not empty: the shape contract every
/// windowed kernel checks at compile time.
pub const fn window_output_follows(
    padding: Padding,
    input: [usize; 2],
    window: usize,
    stride: usize,
    output: [usize; 2],
) -> bool {
    let expected = output_hw(input, window, stride, padding);
    output[0] == expected[0] && output[1] == expected[1] && output[0] > 0 && output[1] > 0
}

/// The input position that output position `out` reads through window tap
/// `tap` along one axis of `size` positions, or `None` when that tap falls in
/// the padding. The backward kernels send gradients back along these reads.
#[inline(always)]
pub const fn tap_source(
    out: usize,
    tap: usize,
    stride: usize,
    pad_before: usize,
    size: usize,
) -> Option<usize> {
    let position = out * stride + tap;
    if position < pad_before || position - pad_before >= size {
        None
    } else {
        Some(position - pad_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_output_sizes() {
        assert_eq!(Padding::Valid.output_size(64, 3, 1), 62);
        assert_eq!(Padding::Valid.output_size(7, 3, 2), 3);
        assert_eq!(Padding::Valid.output_size(2, 3, 1), 0);
        assert_eq!(Padding::Valid.output_size(3, 3, 1), 1);
    }

    #[test]
    fn same_output_sizes_and_padding_follow_tensorflow() {
        // 60 -> 30 with a 3x3 pool, stride 2: total padding 1, all of it after.
        assert_eq!(Padding::Same.output_size(60, 3, 2), 30);
        assert_eq!(Padding::Same.padding_before(60, 3, 2), 0);
        // 15 -> 8: total padding 2, one before and one after.
        assert_eq!(Padding::Same.output_size(15, 3, 2), 8);
        assert_eq!(Padding::Same.padding_before(15, 3, 2), 1);
        // Stride 1, 3x3: one on each side.
        assert_eq!(Padding::Same.padding_before(60, 3, 1), 1);
        // 4x4 kernel, stride 1: total 3, one before and two after.
        assert_eq!(Padding::Same.padding_before(10, 4, 1), 1);
        // A 1x1 window never pads.
        assert_eq!(Padding::Same.padding_before(15, 1, 2), 0);
    }

    #[test]
    fn the_window_contract_accepts_only_the_arithmetic_output() {
        assert!(window_output_follows(Padding::Same, [15, 15], 3, 2, [8, 8]));
        assert!(!window_output_follows(
            Padding::Same,
            [15, 15],
            3,
            2,
            [7, 8]
        ));
        assert!(!window_output_follows(Padding::Valid, [2, 2], 3, 1, [0, 0]));
    }

    #[test]
    fn tap_sources_skip_the_padding() {
        // 60 -> 30, window 3, stride 2: padding only after, so the last
        // window's third tap falls outside.
        assert_eq!(tap_source(0, 0, 2, 0, 60), Some(0));
        assert_eq!(tap_source(29, 1, 2, 0, 60), Some(59));
        assert_eq!(tap_source(29, 2, 2, 0, 60), None);
        // One cell of padding before: the first tap of the first window is in it.
        assert_eq!(tap_source(0, 0, 1, 1, 5), None);
        assert_eq!(tap_source(0, 1, 1, 1, 5), Some(0));
    }

    #[test]
    fn degenerate_arguments_give_zero_not_a_panic() {
        assert_eq!(Padding::Same.output_size(10, 3, 0), 0);
        assert_eq!(Padding::Valid.output_size(10, 0, 1), 0);
        assert_eq!(Padding::Same.padding_before(10, 3, 0), 0);
    }
}
