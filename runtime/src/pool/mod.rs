//! Max pooling over square windows, `valid` or TensorFlow `same`, and its
//! backward pass (`backward.rs`).

#[cfg(target_arch = "x86_64")]
mod avx512;
mod backward;

pub use backward::max_pool_image_backward;

use crate::geometry::{Padding, PaddingMode, Stride, Window, window_output_follows};
use crate::isa::Arithmetic;
use crate::tensor::Tensor;

/// The output shape of a max pool, as `[H, W, C]`.
pub const fn output_shape(
    input: [usize; 3],
    window: usize,
    padding: Padding,
    stride: usize,
) -> [usize; 3] {
    [
        padding.output_size(input[0], window, stride),
        padding.output_size(input[1], window, stride),
        input[2],
    ]
}

/// The maximum of every `K x K` window, per channel.
///
/// Padded cells never win: a window that hangs over the border takes the
/// maximum of the cells it covers, as TensorFlow does. Three of the four pools
/// of mini-Xception at 64x64 pad only at the bottom and right.
#[inline(always)]
pub fn max_pool<
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
    _window: Window<K>,
    _stride: Stride<S>,
    _padding: P,
    output: &mut Tensor<OH, OW, C>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "max_pool: the output shape does not follow from the input shape, window, padding and stride"
        )
    };
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    for row in output.data.iter_mut() {
        row.fill([f32::NEG_INFINITY; C]);
    }
    // Window cells outside, output pixels inside: each step then updates a
    // different output pixel, which LLVM vectorises over the channels. (With
    // one pixel's cells innermost it keeps the pixel's channels in scalar
    // registers instead.) Cells in the padding are skipped, so they never win,
    // and `same` padding is smaller than the window, so no window is empty.
    for (oy, out_row) in output.data.iter_mut().enumerate() {
        for dy in 0..K {
            let Some(input_row) = (oy * S + dy)
                .checked_sub(pad_top)
                .and_then(|iy| input.data.get(iy))
            else {
                continue;
            };
            for dx in 0..K {
                for (ox, out) in out_row.iter_mut().enumerate() {
                    let cell = (ox * S + dx)
                        .checked_sub(pad_left)
                        .and_then(|ix| input_row.get(ix));
                    if let Some(pixel) = cell {
                        max_into(out, pixel);
                    }
                }
            }
        }
    }
}

/// Pools row `iy` of a max pool's input into every output row whose windows
/// cover it, for a caller that makes the input one row at a time and never
/// stores it whole (a separable convolution followed by its pool): rows must
/// come in order, from the first. An output row's first covering row is
/// stored, the others are maxed in, so the output needs no initialisation.
#[inline(always)]
pub(crate) fn max_pool_row<
    A: Arithmetic,
    P: PaddingMode,
    const K: usize,
    const S: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const OH: usize,
    const OW: usize,
>(
    row: &[[f32; C]; W],
    iy: usize,
    output: &mut Tensor<OH, OW, C>,
) {
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    // The row pooled along its width first: each output pixel's window
    // within this row.
    let mut pooled = [[f32::NEG_INFINITY; C]; OW];
    for dx in 0..K {
        for (ox, best) in pooled.iter_mut().enumerate() {
            let cell = (ox * S + dx)
                .checked_sub(pad_left)
                .and_then(|ix| row.get(ix));
            if let Some(pixel) = cell {
                max_lanes::<A, C>(best, pixel);
            }
        }
    }
    // Output rows `oy` with `oy * S <= iy + pad_top < oy * S + K`.
    let first = (iy + pad_top + 1).saturating_sub(K).div_ceil(S);
    let last = ((iy + pad_top) / S).min(OH.saturating_sub(1));
    for oy in first..=last {
        let Some(out_row) = output.data.get_mut(oy) else {
            continue;
        };
        if (oy * S).saturating_sub(pad_top) == iy {
            *out_row = pooled;
        } else {
            for (best, values) in out_row.iter_mut().zip(&pooled) {
                max_lanes::<A, C>(best, values);
            }
        }
    }
}

/// [`max_into`], or with 16-lane registers one AVX-512 maximum per 16
/// channels (`avx512.rs` says why).
#[inline(always)]
fn max_lanes<A: Arithmetic, const C: usize>(best: &mut [f32; C], values: &[f32; C]) {
    #[cfg(target_arch = "x86_64")]
    if A::LANES >= 16 && C.is_multiple_of(16) {
        let (best_lanes, _) = best.as_chunks_mut::<16>();
        let (value_lanes, _) = values.as_chunks::<16>();
        for (best, values) in best_lanes.iter_mut().zip(value_lanes) {
            // SAFETY: 16 lanes means `A` is `Avx512Arithmetic` (the trait is
            // sealed), which only exists once AVX-512 has been checked for.
            unsafe { avx512::max16(best, values) };
        }
        return;
    }
    max_into(best, values);
}

/// `best = max(best, values)` per channel, eight channels at a time.
///
/// Written so that LLVM vectorises it inside the generated forward pass,
/// where input and output are two fields of one scratch struct: each group
/// of eight is read whole before it is written whole, and `f32::max` writes
/// every lane (`vmaxps` plus a blend for its NaN rule: a NaN input never
/// wins). Written as a lane loop on the arrays in place, it stays scalar
/// there; with `if value > best` it becomes a masked store (`vmaskmovps`),
/// slower still on AMD cores; and as a compare and select over the whole
/// group it makes the pools of the fused separable convolutions slower.
#[inline(always)]
fn max_into<const C: usize>(best: &mut [f32; C], values: &[f32; C]) {
    let (best_lanes, best_rest) = best.as_chunks_mut::<8>();
    let (value_lanes, value_rest) = values.as_chunks::<8>();
    for (best, values) in best_lanes.iter_mut().zip(value_lanes) {
        // Both read whole before the one whole write: with the loads ahead
        // of the store, LLVM needs no proof that input and output are apart.
        let (old, new) = (*best, *values);
        *best = std::array::from_fn(|lane| old[lane].max(new[lane]));
    }
    for (best, &value) in best_rest.iter_mut().zip(value_rest) {
        *best = best.max(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Same, Valid};
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor};

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
        let input = random_tensor::<H, W, C>(H as u64 * 7 + W as u64);
        let mut output = Tensor::<OH, OW, C>::zeroed_boxed();
        max_pool(&input, Window::<K>, Stride::<S>, padding, &mut output);
        let expected = reference::max_pool(input.view(), K, S, P::PADDING);
        assert_close(output.view(), expected.view(), 0.0);
    }

    #[test]
    fn matches_the_reference_on_the_sizes_of_mini_xception() {
        check::<Same, 3, 2, 60, 60, 3, 30, 30>(Same);
        check::<Same, 3, 2, 30, 30, 3, 15, 15>(Same);
        check::<Same, 3, 2, 15, 15, 3, 8, 8>(Same);
        check::<Same, 3, 2, 8, 8, 3, 4, 4>(Same);
        check::<Same, 3, 2, 11, 11, 2, 6, 6>(Same);
    }

    #[test]
    fn matches_the_reference_on_odd_shapes() {
        check::<Same, 3, 1, 5, 4, 2, 5, 4>(Same);
        check::<Same, 2, 2, 5, 6, 2, 3, 3>(Same);
        check::<Valid, 3, 2, 9, 8, 2, 4, 3>(Valid);
    }

    #[test]
    fn padded_cells_never_win_even_when_every_value_is_negative() {
        let mut input = Tensor::<4, 4, 1>::zeroed_boxed();
        input
            .as_mut_slice()
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = -1.0 - i as f32);
        let mut output = Tensor::<2, 2, 1>::zeroed_boxed();
        max_pool(&input, Window::<3>, Stride::<2>, Same, &mut output);
        // Padding is one row and column at the bottom and right only.
        assert_eq!(output.data[0][0][0], -1.0);
        assert_eq!(output.data[1][1][0], -11.0);
        assert!(output.as_slice().iter().all(|&v| v < 0.0));
    }
}
