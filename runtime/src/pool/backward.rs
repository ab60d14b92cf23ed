//! The backward pass of [`max_pool`](super::max_pool): each window's output
//! gradient goes to the input cell that won the window.

use crate::geometry::{PaddingMode, Stride, Window, tap_source, window_output_follows};
use crate::tensor::Tensor;

/// `input_gradient = d loss / d input` for `output = max_pool(input)`, given
/// `output_gradient`. Overwrites `input_gradient`.
///
/// Each window's gradient goes to the cell that holds its maximum; a cell
/// that wins several overlapping windows gathers all their gradients. Ties
/// are broken as TensorFlow's CPU kernel breaks them: among equal maxima, the
/// first in row-major order within the window wins (it takes a later cell
/// only when strictly greater). Padded cells never win.
#[inline(always)]
pub fn max_pool_image_backward<
    P: PaddingMode,
    const K: usize,
    const S: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, C>,
    output_gradient: &Tensor<OH, OW, C>,
    _window: Window<K>,
    _stride: Stride<S>,
    _padding: P,
    input_gradient: &mut Tensor<H, W, C>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "max_pool_image_backward: the output shape does not follow from the input shape, window, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    input_gradient.as_mut_slice().fill(0.0);
    for (oy, gradient_row) in output_gradient.data.iter().enumerate() {
        let rows: [Option<usize>; K] = std::array::from_fn(|dy| tap_source(oy, dy, S, pad_top, H));
        for (ox, gradient) in gradient_row.iter().enumerate() {
            let columns: [Option<usize>; K] =
                std::array::from_fn(|dx| tap_source(ox, dx, S, pad_left, W));
            let window = WindowCells { rows, columns };
            // Whole 8-lane blocks of channels, then the rest one by one:
            // written on fixed-size arrays so that LLVM keeps the winners in
            // vector registers instead of unrolling into scalar branches.
            let (blocks, rest) = gradient.as_chunks::<8>();
            for (block, gradient) in blocks.iter().enumerate() {
                window.route(input, gradient, block * 8, input_gradient);
            }
            for (offset, gradient) in rest.iter().enumerate() {
                window.route(
                    input,
                    &[*gradient],
                    blocks.len() * 8 + offset,
                    input_gradient,
                );
            }
        }
    }
}

/// The cells of one pooling window: the input row and column of each tap,
/// `None` for taps in the padding. `same` padding is smaller than the
/// window, so at least one cell is inside.
struct WindowCells<const K: usize> {
    rows: [Option<usize>; K],
    columns: [Option<usize>; K],
}

impl<const K: usize> WindowCells<K> {
    /// Adds the window's gradient of channels `first..first + L` to the cell
    /// that won each channel.
    #[inline(always)]
    fn route<const H: usize, const W: usize, const C: usize, const L: usize>(
        &self,
        input: &Tensor<H, W, C>,
        gradient: &[f32; L],
        first: usize,
        input_gradient: &mut Tensor<H, W, C>,
    ) {
        // Per channel, the winning cell's number (`dy * K + dx`). The first
        // cell inside wins to begin with (even a NaN or -inf); later ones
        // only when strictly greater. The selects are written as bit masks:
        // with `if`, LLVM turned them into branches around scalar loads and
        // the lane loops stayed scalar.
        let mut cells = self.cells();
        let Some((iy, ix, number)) = cells.next() else {
            return;
        };
        let Some(first_values) = input.data[iy][ix][first..].first_chunk::<L>() else {
            return;
        };
        let mut best = *first_values;
        let mut winner = [number; L];
        for (iy, ix, number) in cells {
            let Some(values) = input.data[iy][ix][first..].first_chunk::<L>() else {
                return;
            };
            for lane in 0..L {
                let wins = lane_mask(values[lane] > best[lane]);
                best[lane] = f32::from_bits(
                    (values[lane].to_bits() & wins) | (best[lane].to_bits() & !wins),
                );
                winner[lane] = (number & wins) | (winner[lane] & !wins);
            }
        }
        for (iy, ix, number) in self.cells() {
            let Some(cell) = input_gradient.data[iy][ix][first..].first_chunk_mut::<L>() else {
                return;
            };
            for lane in 0..L {
                let won = lane_mask(winner[lane] == number);
                // Adds the gradient where the cell won, +0 elsewhere.
                cell[lane] += f32::from_bits(gradient[lane].to_bits() & won);
            }
        }
    }

    /// The cells inside the input in row-major order: row, column and the
    /// cell's number in the window.
    #[inline(always)]
    fn cells(&self) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
        (0..K * K).filter_map(|number| {
            let iy = self.rows[number / K]?;
            let ix = self.columns[number % K]?;
            Some((iy, ix, number as u32))
        })
    }
}

/// All ones where `condition` holds, zeros elsewhere: a lane mask.
#[inline(always)]
fn lane_mask(condition: bool) -> u32 {
    (condition as u32).wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Same, Valid};
    use crate::reference;
    use crate::test_support::{
        assert_gradient_close, numeric_gradient, random_tensor, weighted_sum, widen,
    };
    use ndarray::ArrayView3;

    fn check<
        P: PaddingMode,
        const K: usize,
        const S: usize,
        const H: usize,
        const W: usize,
        const C: usize,
        const OH: usize,
        const OW: usize,
    >(
        padding: P,
    ) {
        let seed = (H * 100 + W * 10 + S) as u64;
        let input = random_tensor::<H, W, C>(seed);
        let output_gradient = random_tensor::<OH, OW, C>(seed + 1);
        let mut input_gradient = Tensor::<H, W, C>::zeroed_boxed();
        input_gradient.as_mut_slice().fill(f32::NAN);
        max_pool_image_backward(
            &input,
            &output_gradient,
            Window::<K>,
            Stride::<S>,
            padding,
            &mut input_gradient,
        );
        // Random values have no ties, and a step far below their spacing
        // changes no window's winner.
        let numeric = numeric_gradient(&widen(input.as_slice()), 1e-6, |x| {
            let output = reference::max_pool(
                ArrayView3::from_shape((H, W, C), x).unwrap(),
                K,
                S,
                P::PADDING,
            );
            weighted_sum(output_gradient.as_slice(), output.iter().copied())
        });
        assert_gradient_close("input", input_gradient.as_slice(), &numeric, 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        // The pools of mini-Xception at 64x64 (padding after only) and at an
        // odd size (padding on both sides), overlapping windows.
        check::<Same, 3, 2, 8, 8, 3, 4, 4>(Same);
        // A block of 8 channels and 4 left over.
        check::<Same, 3, 2, 7, 8, 12, 4, 4>(Same);
        check::<Same, 3, 2, 7, 9, 2, 4, 5>(Same);
        check::<Same, 2, 2, 5, 6, 2, 3, 3>(Same);
        check::<Valid, 3, 2, 9, 8, 2, 4, 3>(Valid);
    }

    #[test]
    fn ties_go_to_the_first_cell_in_row_major_order_and_padding_never_wins() {
        // A 4x4 input of equal values, pooled 3x3/2 `same` (padding after only):
        // window (0, 0) covers rows 0-2 and columns 0-2, so cell (0, 0) wins;
        // window (1, 1) covers rows 2-3 and columns 2-3, so cell (2, 2) wins.
        let mut input = Tensor::<4, 4, 1>::zeroed_boxed();
        input.as_mut_slice().fill(-1.0);
        let mut output_gradient = Tensor::<2, 2, 1>::zeroed_boxed();
        for (i, g) in output_gradient.as_mut_slice().iter_mut().enumerate() {
            *g = [1.0, 10.0, 100.0, 1000.0][i];
        }
        let mut input_gradient = Tensor::<4, 4, 1>::zeroed_boxed();
        max_pool_image_backward(
            &input,
            &output_gradient,
            Window::<3>,
            Stride::<2>,
            Same,
            &mut input_gradient,
        );
        let mut expected = [[0.0f32; 4]; 4];
        expected[0][0] = 1.0; // window (0, 0)
        expected[0][2] = 10.0; // window (0, 1): rows 0-2, columns 2-3
        expected[2][0] = 100.0; // window (1, 0): rows 2-3, columns 0-2
        expected[2][2] = 1000.0; // window (1, 1)
        for (y, row) in expected.iter().enumerate() {
            for (x, &value) in row.iter().enumerate() {
                assert_eq!(input_gradient.data[y][x][0], value, "cell ({y}, {x})");
            }
        }
        // A later cell wins only when strictly greater, and a cell shared by
        // two windows gathers both gradients.
        input.data[0][2][0] = 0.5;
        max_pool_image_backward(
            &input,
            &output_gradient,
            Window::<3>,
            Stride::<2>,
            Same,
            &mut input_gradient,
        );
        assert_eq!(input_gradient.data[0][2][0], 11.0);
        assert_eq!(input_gradient.data[0][0][0], 0.0);
    }
}
