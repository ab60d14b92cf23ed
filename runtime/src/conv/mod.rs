//! Full 2-D convolution with a square kernel, any stride, `valid` or `same`,
//! and its backward pass (`backward.rs`).

mod backward;

pub use backward::{
    bias_backward, conv2d_backward_input, conv2d_backward_input_transposed, conv2d_backward_kernel,
    transpose_conv_into,
};

use crate::batch_norm::{BatchNorm, FoldBatchNorm, fold_into};
use crate::epilogue::{Epilogue, store};
use crate::folded::{FoldedTensors, TensorView, TensorViewMut};
use crate::geometry::{Padding, PaddingMode, Stride, window_output_follows};
use crate::isa::Arithmetic;
#[cfg(target_arch = "x86_64")]
use crate::isa::{Avx2Arithmetic, compiled_for_avx2};
use crate::parameters::{LayerOptions, ParameterKind, ParameterSource, ParameterSpec};
use crate::tensor::{Tensor, try_zeroed_box, zeroed_box};
use bytemuck::Zeroable;

/// A `K x K` convolution from `CI` to `CO` channels, kernel in Keras' HWIO layout.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct Conv2dWeights<const K: usize, const CI: usize, const CO: usize> {
    /// `kernel[ky][kx][in][out]`.
    pub kernel: [[[[f32; CO]; CI]; K]; K],
    /// One value per output channel (zero when the layer has no bias).
    pub bias: [f32; CO],
}

// SAFETY: `repr(C)` with only `f32` arrays (or structs of them), each of
// alignment 4 and a size that is a multiple of 4: no padding, and every bit
// pattern is a valid value. The training code views a model's parameters as
// one flat slice through this (`tensor::flat`), tested with every model.
unsafe impl<const K: usize, const CI: usize, const CO: usize> bytemuck::Pod
    for Conv2dWeights<K, CI, CO>
{
}

impl<const K: usize, const CI: usize, const CO: usize> Conv2dWeights<K, CI, CO> {
    /// Zero weights on the heap.
    pub fn zeroed_boxed() -> Box<Self> {
        zeroed_box()
    }

    /// Reads the layer's kernel, its bias if it has one and the batch norm that
    /// follows it if any, and folds the batch norm in.
    pub fn read<S: ParameterSource>(
        source: &mut S,
        layer: &str,
        options: LayerOptions,
    ) -> Result<Box<Self>, S::Error> {
        let mut weights = try_zeroed_box::<Self>()?;
        let kernel = ParameterSpec {
            layer,
            kind: ParameterKind::Kernel,
            shape: &[K, K, CI, CO],
        };
        source.read(
            &kernel,
            weights
                .kernel
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
        )?;
        if options.bias {
            let bias = ParameterSpec {
                layer,
                kind: ParameterKind::Bias,
                shape: &[CO],
            };
            source.read(&bias, &mut weights.bias)?;
        }
        if let Some(epsilon) = options.batch_norm_epsilon {
            weights.fold_batch_norm(&BatchNorm::read(source, layer, epsilon)?);
        }
        Ok(weights)
    }
}

impl<const K: usize, const CI: usize, const CO: usize> FoldBatchNorm<CO>
    for Conv2dWeights<K, CI, CO>
{
    fn fold_batch_norm(&mut self, batch_norm: &BatchNorm<CO>) {
        fold_into(
            self.kernel.as_flattened_mut().as_flattened_mut(),
            &mut self.bias,
            batch_norm,
        );
    }
}

impl<const K: usize, const CI: usize, const CO: usize> FoldedTensors for Conv2dWeights<K, CI, CO> {
    fn tensors<'a>(&'a self, layer: &str) -> Vec<TensorView<'a>> {
        let kernel = self.kernel.as_flattened().as_flattened().as_flattened();
        vec![
            (format!("{layer}.kernel"), vec![K, K, CI, CO], kernel),
            (format!("{layer}.bias"), vec![CO], &self.bias),
        ]
    }

    fn tensors_mut<'a>(&'a mut self, layer: &str) -> Vec<TensorViewMut<'a>> {
        let kernel = self
            .kernel
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        vec![
            (format!("{layer}.kernel"), vec![K, K, CI, CO], kernel),
            (format!("{layer}.bias"), vec![CO], &mut self.bias),
        ]
    }
}

/// The output shape of a convolution with `filters` filters, as `[H, W, C]`.
pub const fn output_shape(
    input: [usize; 3],
    kernel: usize,
    filters: usize,
    padding: Padding,
    stride: usize,
) -> [usize; 3] {
    [
        padding.output_size(input[0], kernel, stride),
        padding.output_size(input[1], kernel, stride),
        filters,
    ]
}

/// Output pixels of one row computed together, so that each weight vector
/// loaded serves several pixels.
const PIXEL_BLOCK: usize = 4;

/// `output = E(conv(input, weights.kernel) + weights.bias)`, with the
/// [`Epilogue`] `E` applied as each value is stored.
///
/// The output shape must follow from the input shape, kernel, padding and
/// stride; a call where it does not fails to build (an error that only a
/// build shows, not `cargo check`: the shape assertion is evaluated when the
/// call is compiled):
///
/// ```compile_fail,E0080
/// use mini_xception_runtime::{Conv2dWeights, Identity, Stride, Tensor, PortableArithmetic, Valid, conv2d};
///
/// let input = Tensor::<8, 8, 3>::zeroed_boxed();
/// let weights = Conv2dWeights::<3, 3, 16>::zeroed_boxed();
/// // A 3x3 `valid` convolution of 8x8 gives 6x6, not 8x8.
/// let mut output = Tensor::<8, 8, 16>::zeroed_boxed();
/// conv2d(&input, &weights, Valid, Stride::<1>, PortableArithmetic, Identity, &mut output);
/// ```
///
/// ```
/// # use mini_xception_runtime::{Conv2dWeights, Identity, Stride, Tensor, PortableArithmetic, Valid, conv2d};
/// # let input = Tensor::<8, 8, 3>::zeroed_boxed();
/// # let weights = Conv2dWeights::<3, 3, 16>::zeroed_boxed();
/// let mut output = Tensor::<6, 6, 16>::zeroed_boxed();
/// conv2d(&input, &weights, Valid, Stride::<1>, PortableArithmetic, Identity, &mut output);
/// ```
#[inline(always)]
pub fn conv2d<
    P: PaddingMode,
    A: Arithmetic,
    E: Epilogue,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, CI>,
    weights: &Conv2dWeights<K, CI, CO>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    _epilogue: E,
    output: &mut Tensor<OH, OW, CO>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "conv2d: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    #[cfg(target_arch = "x86_64")]
    if A::LANES >= 16 {
        // SAFETY: 16 lanes means `A` is `Avx512Arithmetic` (the trait is sealed),
        // which only exists once AVX-512, and with it AVX2 and FMA, has been
        // checked for. Its AVX2 build is faster: with 8 output channels the
        // AVX-512 build pairs two pixels in a register and pays in shuffles.
        return unsafe {
            compiled_for_avx2(
                #[inline(always)]
                || {
                    conv2d(
                        input,
                        weights,
                        _padding,
                        _stride,
                        Avx2Arithmetic,
                        _epilogue,
                        &mut *output,
                    )
                },
            )
        };
    }
    let pad_top = P::PADDING.padding_before(H, K, S);
    let pad_left = P::PADDING.padding_before(W, K, S);
    // Output columns whose whole window lies inside the input.
    let first_inside = pad_left.div_ceil(S);
    let end_inside = if W + pad_left >= K {
        ((W + pad_left - K) / S + 1).min(OW)
    } else {
        0
    };
    for (oy, out_row) in output.data.iter_mut().enumerate() {
        // Rows of the window that fall in the padding contribute zero.
        let top = (oy * S).saturating_sub(pad_top);
        let ky_start = (pad_top + top) - oy * S;
        let ky_end = K.min(H + pad_top - oy * S);
        let rows = &input.data[oy * S + ky_start - pad_top..oy * S + ky_end - pad_top];
        let kernels = &weights.kernel[ky_start..ky_end];
        let mut ox = 0;
        while ox < OW {
            // Narrow outputs (a few channels) take wider blocks of pixels, so
            // that the accumulators fill the registers either way.
            if CO <= 8 && ox >= first_inside && ox + 2 * PIXEL_BLOCK <= end_inside {
                let out = &mut out_row[ox..ox + 2 * PIXEL_BLOCK];
                interior_block::<A, E, { 2 * PIXEL_BLOCK }, S, W, K, CI, CO>(
                    rows,
                    kernels,
                    &weights.bias,
                    ox * S - pad_left,
                    out,
                );
                ox += 2 * PIXEL_BLOCK;
            } else if ox >= first_inside && ox + PIXEL_BLOCK <= end_inside {
                let out = &mut out_row[ox..ox + PIXEL_BLOCK];
                interior_block::<A, E, PIXEL_BLOCK, S, W, K, CI, CO>(
                    rows,
                    kernels,
                    &weights.bias,
                    ox * S - pad_left,
                    out,
                );
                ox += PIXEL_BLOCK;
            } else {
                let value = border_pixel::<A, S, H, W, K, CI, CO>(
                    input,
                    weights,
                    oy * S,
                    ox * S,
                    pad_top,
                    pad_left,
                );
                store::<E, CO>(&mut out_row[ox], &value);
                ox += 1;
            }
        }
    }
}

/// `B` neighbouring output pixels whose windows lie inside the input
/// columns; the first window starts at column `left`.
///
/// The input channel is the outer loop and the `K` taps of a kernel row the
/// inner ones, fully unrolled: an input cell that several taps read (`K` of
/// them at stride 1) is then one load, which LLVM merges, where the order
/// taps-then-channels loads it once per tap. With 8 output channels (one
/// register, so one broadcast per FMA) that order leaves the base
/// convolutions bound by loads.
#[inline(always)]
fn interior_block<
    A: Arithmetic,
    E: Epilogue,
    const B: usize,
    const S: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
>(
    rows: &[[[f32; CI]; W]],
    kernels: &[[[[f32; CO]; CI]; K]],
    bias: &[f32; CO],
    left: usize,
    out: &mut [[f32; CO]],
) {
    let mut acc = [*bias; B];
    for (row, kernel_row) in rows.iter().zip(kernels) {
        let span: &[[f32; CI]] = &row[left..left + (B - 1) * S + K];
        for ci in 0..CI {
            let taps: [[f32; CO]; K] = std::array::from_fn(|kx| kernel_row[kx][ci]);
            // Fully unrolled, the same cell read for several `kx` is one
            // load: LLVM merges the reads of one address.
            for (kx, filter_row) in taps.iter().enumerate() {
                for (b, acc) in acc.iter_mut().enumerate() {
                    let x = span[b * S + kx][ci];
                    for (a, &w) in acc.iter_mut().zip(filter_row) {
                        *a = A::mul_add(x, w, *a);
                    }
                }
            }
        }
    }
    for (out, acc) in out.iter_mut().zip(&acc) {
        store::<E, CO>(out, acc);
    }
}

/// Independent accumulators of a border pixel: input channels `ci` with the
/// same `ci % BORDER_CHAINS` share one.
const BORDER_CHAINS: usize = 4;

/// One output pixel whose window may hang over the border.
///
/// With few output channels (the head's 7) each FMA is a whole accumulator,
/// and one accumulator would make every FMA wait for the one before (4
/// cycles on current cores), over 128 input channels and 9 taps for each of
/// the head's 4x4 pixels, all on the border. Four chains, summed at the end,
/// overlap.
#[inline(always)]
fn border_pixel<
    A: Arithmetic,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
>(
    input: &Tensor<H, W, CI>,
    weights: &Conv2dWeights<K, CI, CO>,
    y: usize,
    x: usize,
    pad_top: usize,
    pad_left: usize,
) -> [f32; CO] {
    let mut chains = [[0.0f32; CO]; BORDER_CHAINS];
    for ky in 0..K {
        let Some(iy) = (y + ky).checked_sub(pad_top).filter(|&iy| iy < H) else {
            continue;
        };
        for kx in 0..K {
            let Some(ix) = (x + kx).checked_sub(pad_left).filter(|&ix| ix < W) else {
                continue;
            };
            let (values, values_rest) = input.data[iy][ix].as_chunks::<BORDER_CHAINS>();
            let (filters, filters_rest) = weights.kernel[ky][kx].as_chunks::<BORDER_CHAINS>();
            for (values, filter_rows) in values.iter().zip(filters) {
                for ((acc, &value), filter_row) in chains.iter_mut().zip(values).zip(filter_rows) {
                    for (a, &w) in acc.iter_mut().zip(filter_row) {
                        *a = A::mul_add(value, w, *a);
                    }
                }
            }
            for (&value, filter_row) in values_rest.iter().zip(filters_rest) {
                for (a, &w) in chains[0].iter_mut().zip(filter_row) {
                    *a = A::mul_add(value, w, *a);
                }
            }
        }
    }
    let mut acc = weights.bias;
    for chain in &chains {
        for (a, &partial) in acc.iter_mut().zip(chain) {
            *a += partial;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epilogue::{Identity, Relu};
    use crate::geometry::{Same, Valid};
    use crate::isa::{Avx2Arithmetic, PortableArithmetic};
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor, random_values};
    use ndarray::{ArrayView1, ArrayView4};

    fn random_weights<const K: usize, const CI: usize, const CO: usize>(
        seed: u64,
    ) -> Box<Conv2dWeights<K, CI, CO>> {
        let mut weights = Conv2dWeights::<K, CI, CO>::zeroed_boxed();
        random_values(
            seed,
            weights
                .kernel
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        random_values(seed + 1, &mut weights.bias);
        weights
    }

    fn check<
        P: PaddingMode,
        const S: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
        const OW: usize,
    >(
        padding: P,
    ) {
        let input = random_tensor::<H, W, CI>(H as u64 * 31 + W as u64);
        let weights = random_weights::<K, CI, CO>(K as u64 + S as u64);
        let mut output = Tensor::<OH, OW, CO>::zeroed_boxed();
        conv2d(
            &input,
            &weights,
            padding,
            Stride::<S>,
            PortableArithmetic,
            Identity,
            &mut output,
        );
        let kernel = ArrayView4::from_shape(
            (K, K, CI, CO),
            weights.kernel.as_flattened().as_flattened().as_flattened(),
        )
        .unwrap();
        let expected = reference::conv2d(
            input.view(),
            kernel,
            Some(ArrayView1::from(&weights.bias)),
            S,
            P::PADDING,
        );
        assert_close(output.view(), expected.view(), 1e-5);
        output.as_mut_slice().fill(f32::NAN);
        conv2d(
            &input,
            &weights,
            padding,
            Stride::<S>,
            Avx2Arithmetic,
            Identity,
            &mut output,
        );
        assert_close(output.view(), expected.view(), 1e-5);
        output.as_mut_slice().fill(f32::NAN);
        conv2d(
            &input,
            &weights,
            padding,
            Stride::<S>,
            Avx2Arithmetic,
            Relu,
            &mut output,
        );
        assert_close(output.view(), expected.mapv(|v| v.max(0.0)).view(), 1e-5);
    }

    #[test]
    fn matches_the_reference_valid() {
        check::<Valid, 1, 9, 8, 3, 2, 5, 7, 6>(Valid);
        check::<Valid, 2, 9, 8, 3, 3, 4, 4, 3>(Valid);
        // Rows of 13 outputs: blocks of 4 and one pixel left over.
        check::<Valid, 1, 15, 15, 3, 8, 8, 13, 13>(Valid);
    }

    #[test]
    fn matches_the_reference_same_on_odd_and_even_sizes() {
        check::<Same, 1, 7, 6, 3, 4, 3, 7, 6>(Same);
        check::<Same, 1, 12, 11, 3, 2, 5, 12, 11>(Same);
        check::<Same, 1, 4, 4, 3, 16, 7, 4, 4>(Same);
        // As the head, every pixel on the border: 4 chains and 2 channels
        // left over (fewer channels than its 128 keep the sums within 1e-5).
        check::<Same, 1, 4, 4, 3, 34, 7, 4, 4>(Same);
        check::<Same, 2, 7, 6, 3, 2, 3, 4, 3>(Same);
        check::<Same, 2, 8, 5, 3, 2, 3, 4, 3>(Same);
        check::<Same, 3, 10, 11, 4, 2, 2, 4, 4>(Same);
    }

    #[test]
    fn output_shape_follows_the_arithmetic() {
        assert_eq!(
            output_shape([64, 64, 1], 3, 8, Padding::Valid, 1),
            [62, 62, 8]
        );
        assert_eq!(output_shape([4, 4, 128], 3, 7, Padding::Same, 1), [4, 4, 7]);
    }

    #[test]
    fn folding_batch_norm_equals_applying_it_after() {
        let input = random_tensor::<6, 5, 3>(3);
        let mut weights = random_weights::<3, 3, 4>(9);
        let mut output = Tensor::<6, 5, 4>::zeroed_boxed();
        conv2d(
            &input,
            &weights,
            Same,
            Stride::<1>,
            PortableArithmetic,
            Identity,
            &mut output,
        );
        let mut statistics = [[0.0f32; 4]; 4];
        random_values(11, statistics.as_flattened_mut());
        let batch_norm = BatchNorm {
            gamma: statistics[0],
            beta: statistics[1],
            moving_mean: statistics[2],
            moving_variance: statistics[3].map(|v| v.abs() + 0.1),
            epsilon: 1e-3,
        };
        let expected = reference::batch_norm(
            output.view(),
            ArrayView1::from(&batch_norm.gamma),
            ArrayView1::from(&batch_norm.beta),
            ArrayView1::from(&batch_norm.moving_mean),
            ArrayView1::from(&batch_norm.moving_variance),
            batch_norm.epsilon,
        );
        weights.fold_batch_norm(&batch_norm);
        conv2d(
            &input,
            &weights,
            Same,
            Stride::<1>,
            PortableArithmetic,
            Identity,
            &mut output,
        );
        assert_close(output.view(), expected.view(), 1e-5);
    }
}
