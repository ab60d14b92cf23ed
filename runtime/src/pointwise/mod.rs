//! Pointwise (1x1) convolution with a stride: a matrix product at every
//! sampled pixel. With a 1x1 window `same` and `valid` padding agree, so there
//! is no padding to choose. Its backward pass is in `backward.rs`.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod backward;

pub use backward::{
    pointwise_conv2d_backward_input, pointwise_conv2d_backward_input_add_transposed,
    pointwise_conv2d_backward_input_transposed, pointwise_conv2d_backward_kernel, transpose_into,
};

use crate::batch_norm::{BatchNorm, FoldBatchNorm, fold_into};
use crate::epilogue::{Epilogue, store};
use crate::folded::{FoldedTensors, TensorView, TensorViewMut};
use crate::geometry::Stride;
use crate::isa::Arithmetic;
use crate::parameters::{LayerOptions, ParameterKind, ParameterSource, ParameterSpec};
use crate::tensor::{Tensor, try_zeroed_box, zeroed_box};
use bytemuck::Zeroable;

/// A 1x1 convolution from `CI` to `CO` channels.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct PointwiseWeights<const CI: usize, const CO: usize> {
    /// `kernel[in][out]`, Keras' `(1, 1, in, out)` without the unit axes.
    pub kernel: [[f32; CO]; CI],
    /// One value per output channel (zero when the layer has no bias).
    pub bias: [f32; CO],
}

// SAFETY: `repr(C)` with only `f32` arrays (or structs of them), each of
// alignment 4 and a size that is a multiple of 4: no padding, and every bit
// pattern is a valid value. The training code views a model's parameters as
// one flat slice through this (`tensor::flat`), tested with every model.
unsafe impl<const CI: usize, const CO: usize> bytemuck::Pod for PointwiseWeights<CI, CO> {}

impl<const CI: usize, const CO: usize> PointwiseWeights<CI, CO> {
    /// Zero weights on the heap.
    pub fn zeroed_boxed() -> Box<Self> {
        zeroed_box()
    }

    /// Reads a 1x1 `Conv2D` layer (its `kernel` of shape `(1, 1, CI, CO)`), its
    /// bias if it has one and the batch norm that follows it if any.
    pub fn read<S: ParameterSource>(
        source: &mut S,
        layer: &str,
        options: LayerOptions,
    ) -> Result<Box<Self>, S::Error> {
        let mut weights = try_zeroed_box::<Self>()?;
        weights.read_into(source, layer, ParameterKind::Kernel, options)?;
        Ok(weights)
    }

    /// Reads the kernel named `kind` (a 1x1 `kernel` or a separable layer's
    /// `pointwise_kernel`), then the bias and batch norm as `options` say.
    pub fn read_into<S: ParameterSource>(
        &mut self,
        source: &mut S,
        layer: &str,
        kind: ParameterKind,
        options: LayerOptions,
    ) -> Result<(), S::Error> {
        let kernel = ParameterSpec {
            layer,
            kind,
            shape: &[1, 1, CI, CO],
        };
        source.read(&kernel, self.kernel.as_flattened_mut())?;
        if options.bias {
            let bias = ParameterSpec {
                layer,
                kind: ParameterKind::Bias,
                shape: &[CO],
            };
            source.read(&bias, &mut self.bias)?;
        }
        if let Some(epsilon) = options.batch_norm_epsilon {
            self.fold_batch_norm(&BatchNorm::read(source, layer, epsilon)?);
        }
        Ok(())
    }
}

impl<const CI: usize, const CO: usize> FoldBatchNorm<CO> for PointwiseWeights<CI, CO> {
    fn fold_batch_norm(&mut self, batch_norm: &BatchNorm<CO>) {
        fold_into(&mut self.kernel, &mut self.bias, batch_norm);
    }
}

impl<const CI: usize, const CO: usize> FoldedTensors for PointwiseWeights<CI, CO> {
    fn tensors<'a>(&'a self, layer: &str) -> Vec<TensorView<'a>> {
        vec![
            (
                format!("{layer}.kernel"),
                vec![CI, CO],
                self.kernel.as_flattened(),
            ),
            (format!("{layer}.bias"), vec![CO], &self.bias),
        ]
    }

    fn tensors_mut<'a>(&'a mut self, layer: &str) -> Vec<TensorViewMut<'a>> {
        vec![
            (
                format!("{layer}.kernel"),
                vec![CI, CO],
                self.kernel.as_flattened_mut(),
            ),
            (format!("{layer}.bias"), vec![CO], &mut self.bias),
        ]
    }
}

/// The output shape of a strided 1x1 convolution, as `[H, W, C]`.
pub const fn output_shape(input: [usize; 3], filters: usize, stride: usize) -> [usize; 3] {
    if stride == 0 {
        return [0, 0, filters];
    }
    [
        input[0].div_ceil(stride),
        input[1].div_ceil(stride),
        filters,
    ]
}

/// Output pixels computed together: each weight vector loaded is used for
/// this many pixels, which keeps the FMA units, not the loads, the limit.
const PIXEL_BLOCK: usize = 4;

/// Output channels computed together: two AVX2 registers, one AVX-512 register.
const CHANNEL_BLOCK: usize = 16;

/// `output[y][x] = E(input[y * S][x * S] . kernel + bias)`, with the
/// [`Epilogue`] `E` applied as each value is stored ([`Accumulate`] for a
/// residual branch added onto the output).
///
/// [`Accumulate`]: crate::epilogue::Accumulate
#[inline(always)]
pub fn pointwise_conv2d<
    A: Arithmetic,
    E: Epilogue,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, CI>,
    weights: &PointwiseWeights<CI, CO>,
    _stride: Stride<S>,
    _arithmetic: A,
    _epilogue: E,
    output: &mut Tensor<OH, OW, CO>,
) {
    const {
        assert!(
            S > 0 && OH == H.div_ceil(S) && OW == W.div_ceil(S) && OH > 0 && OW > 0,
            "pointwise_conv2d: the output shape does not follow from the input shape and stride"
        )
    };
    if S == 1 {
        // Without a stride the pixels are one contiguous run.
        let pixels = input.data.as_flattened();
        multiply_pixels::<A, E, CI, CO>(|p| &pixels[p], weights, output.data.as_flattened_mut());
    } else {
        for (oy, out_row) in output.data.iter_mut().enumerate() {
            let in_row = &input.data[oy * S];
            multiply_pixels::<A, E, CI, CO>(|p| &in_row[p * S], weights, out_row);
        }
    }
}

/// `out[p] = E(pixel(p) . kernel + bias)` for every `p` of `out`.
#[inline(always)]
pub(crate) fn multiply_pixels<'a, A: Arithmetic, E: Epilogue, const CI: usize, const CO: usize>(
    pixel: impl Fn(usize) -> &'a [f32; CI],
    weights: &PointwiseWeights<CI, CO>,
    out: &mut [[f32; CO]],
) {
    #[cfg(target_arch = "x86_64")]
    if A::LANES >= 16 && CO.is_multiple_of(16) {
        // SAFETY: 16 lanes means `A` is `Avx512Arithmetic` (the trait is sealed),
        // which only exists once AVX-512 has been checked for.
        unsafe { avx512::multiply_pixels::<E, _, CI, CO>(pixel, weights, out) };
        return;
    }
    if !CO.is_multiple_of(CHANNEL_BLOCK) {
        for (p, out_pixel) in out.iter_mut().enumerate() {
            let mut acc = weights.bias;
            for (&x, kernel_row) in pixel(p).iter().zip(&weights.kernel) {
                for (a, &w) in acc.iter_mut().zip(kernel_row) {
                    *a = A::mul_add(x, w, *a);
                }
            }
            store::<E, CO>(out_pixel, &acc);
        }
        return;
    }
    // Whole blocks, then the pixels left over in smaller ones: rows of 8 or
    // 15 pixels are common, and one pixel at a time would leave most of the
    // FMA latency uncovered.
    let mut first = 0;
    while first + PIXEL_BLOCK <= out.len() {
        pixel_block::<A, E, PIXEL_BLOCK, CI, CO>(&pixel, weights, first, out);
        first += PIXEL_BLOCK;
    }
    while first + 2 <= out.len() {
        pixel_block::<A, E, 2, CI, CO>(&pixel, weights, first, out);
        first += 2;
    }
    if first < out.len() {
        pixel_block::<A, E, 1, CI, CO>(&pixel, weights, first, out);
    }
}

/// `out[first..first + P]`, `CHANNEL_BLOCK` output channels at a time: each
/// input value broadcast serves `CHANNEL_BLOCK` channels and each weight
/// vector loaded serves `P` pixels, with `P` accumulator rows in registers.
#[inline(always)]
fn pixel_block<'a, A: Arithmetic, E: Epilogue, const P: usize, const CI: usize, const CO: usize>(
    pixel: &impl Fn(usize) -> &'a [f32; CI],
    weights: &PointwiseWeights<CI, CO>,
    first: usize,
    out: &mut [[f32; CO]],
) {
    let inputs: [&[f32; CI]; P] = std::array::from_fn(|b| pixel(first + b));
    let (bias_blocks, _) = weights.bias.as_chunks::<CHANNEL_BLOCK>();
    for (block, bias) in bias_blocks.iter().enumerate() {
        let mut acc = [*bias; P];
        for (ci, kernel_row) in weights.kernel.iter().enumerate() {
            let (kernel_blocks, _) = kernel_row.as_chunks::<CHANNEL_BLOCK>();
            let w = &kernel_blocks[block];
            for (row, input) in acc.iter_mut().zip(&inputs) {
                let x = input[ci];
                for (a, &w) in row.iter_mut().zip(w) {
                    *a = A::mul_add(x, w, *a);
                }
            }
        }
        for (out, row) in out[first..first + P].iter_mut().zip(&acc) {
            let (out_blocks, _) = out.as_chunks_mut::<CHANNEL_BLOCK>();
            store::<E, CHANNEL_BLOCK>(&mut out_blocks[block], row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epilogue::{Accumulate, Identity, Relu};
    use crate::geometry::Padding;
    use crate::isa::{Avx2Arithmetic, PortableArithmetic};
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor, random_values};
    use ndarray::{ArrayView1, ArrayView4};

    fn check<
        const S: usize,
        const H: usize,
        const W: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
        const OW: usize,
    >() {
        let input = random_tensor::<H, W, CI>(21);
        let mut weights = PointwiseWeights::<CI, CO>::zeroed_boxed();
        random_values(22, weights.kernel.as_flattened_mut());
        random_values(23, &mut weights.bias);
        let mut output = Tensor::<OH, OW, CO>::zeroed_boxed();
        pointwise_conv2d(
            &input,
            &weights,
            Stride::<S>,
            PortableArithmetic,
            Identity,
            &mut output,
        );
        let kernel = ArrayView4::from_shape((1, 1, CI, CO), weights.kernel.as_flattened()).unwrap();
        let bias = ArrayView1::from(&weights.bias);
        let expected = reference::conv2d(input.view(), kernel, Some(bias), S, Padding::Same);
        assert_close(output.view(), expected.view(), 1e-5);
        output.as_mut_slice().fill(f32::NAN);
        pointwise_conv2d(
            &input,
            &weights,
            Stride::<S>,
            Avx2Arithmetic,
            Identity,
            &mut output,
        );
        let kernel = ArrayView4::from_shape((1, 1, CI, CO), weights.kernel.as_flattened()).unwrap();
        let bias = ArrayView1::from(&weights.bias);
        // Keras' residual branch is a 1x1 conv with `same` padding.
        let expected = reference::conv2d(input.view(), kernel, Some(bias), S, Padding::Same);
        assert_close(output.view(), expected.view(), 1e-5);
        // As the residual branch, added onto what the output holds.
        let main_branch = random_tensor::<OH, OW, CO>(24);
        let mut sum = main_branch.clone();
        pointwise_conv2d(
            &input,
            &weights,
            Stride::<S>,
            Avx2Arithmetic,
            Accumulate,
            &mut sum,
        );
        assert_close(sum.view(), (&expected + &main_branch.view()).view(), 1e-5);
        output.as_mut_slice().fill(f32::NAN);
        pointwise_conv2d(
            &input,
            &weights,
            Stride::<S>,
            Avx2Arithmetic,
            Relu,
            &mut output,
        );
        assert_close(output.view(), expected.mapv(|v| v.max(0.0)).view(), 1e-5);
    }

    #[test]
    fn matches_the_reference_with_strides_on_odd_and_even_sizes() {
        check::<1, 5, 4, 3, 6, 5, 4>();
        // Blocks of 4 pixels and 16 channels, and the pixels left over.
        check::<1, 5, 3, 8, 32, 5, 3>();
        // 14 and 15 pixels in one run: blocks of 4, then of 2 (and 1).
        check::<1, 2, 7, 16, 32, 2, 7>();
        check::<1, 3, 5, 8, 16, 3, 5>();
        check::<2, 30, 30, 16, 32, 15, 15>();
        check::<2, 60, 60, 8, 16, 30, 30>();
        check::<2, 15, 15, 32, 64, 8, 8>();
        check::<2, 7, 6, 4, 3, 4, 3>();
        check::<3, 7, 9, 2, 2, 3, 3>();
    }

    #[test]
    fn output_shape_rounds_up() {
        assert_eq!(output_shape([15, 15, 32], 64, 2), [8, 8, 64]);
        assert_eq!(output_shape([15, 15, 32], 64, 0), [0, 0, 64]);
    }
}
