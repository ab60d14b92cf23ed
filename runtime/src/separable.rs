//! Depthwise-separable convolution, as Keras' `SeparableConv2D` with depth
//! multiplier 1: a depthwise convolution followed by a pointwise one.

use crate::batch_norm::{BatchNorm, FoldBatchNorm};
use crate::depthwise::{DepthwiseWeights, depthwise_row};
use crate::epilogue::{Epilogue, Identity};
use crate::folded::{FoldedTensors, TensorView, TensorViewMut};
use crate::geometry::{Padding, PaddingMode, Same, Stride, Window, window_output_follows};
use crate::isa::Arithmetic;
use crate::parameters::{LayerOptions, ParameterKind, ParameterSource};
use crate::pointwise::{PointwiseWeights, multiply_pixels};
use crate::pool::max_pool_row;
use crate::tensor::{Tensor, try_zeroed_box, zeroed_box};
use bytemuck::Zeroable;

/// A `K x K` separable convolution from `CI` to `CO` channels.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct SeparableConv2dWeights<const K: usize, const CI: usize, const CO: usize> {
    /// The per-channel spatial filter.
    pub depthwise: DepthwiseWeights<K, CI>,
    /// The channel mix, which also carries the bias and any folded batch norm.
    pub pointwise: PointwiseWeights<CI, CO>,
}

// SAFETY: `repr(C)` with only `f32` arrays (or structs of them), each of
// alignment 4 and a size that is a multiple of 4: no padding, and every bit
// pattern is a valid value. The training code views a model's parameters as
// one flat slice through this (`tensor::flat`), tested with every model.
unsafe impl<const K: usize, const CI: usize, const CO: usize> bytemuck::Pod
    for SeparableConv2dWeights<K, CI, CO>
{
}

impl<const K: usize, const CI: usize, const CO: usize> SeparableConv2dWeights<K, CI, CO> {
    /// Zero weights on the heap.
    pub fn zeroed_boxed() -> Box<Self> {
        zeroed_box()
    }

    /// Reads the layer's depthwise and pointwise kernels, its bias if it has one
    /// and the batch norm that follows it if any, folded into the pointwise part.
    pub fn read<S: ParameterSource>(
        source: &mut S,
        layer: &str,
        options: LayerOptions,
    ) -> Result<Box<Self>, S::Error> {
        let mut weights = try_zeroed_box::<Self>()?;
        weights.depthwise.read_into(source, layer)?;
        weights
            .pointwise
            .read_into(source, layer, ParameterKind::PointwiseKernel, options)?;
        Ok(weights)
    }
}

impl<const K: usize, const CI: usize, const CO: usize> FoldBatchNorm<CO>
    for SeparableConv2dWeights<K, CI, CO>
{
    fn fold_batch_norm(&mut self, batch_norm: &BatchNorm<CO>) {
        self.pointwise.fold_batch_norm(batch_norm);
    }
}

impl<const K: usize, const CI: usize, const CO: usize> FoldedTensors
    for SeparableConv2dWeights<K, CI, CO>
{
    fn tensors<'a>(&'a self, layer: &str) -> Vec<TensorView<'a>> {
        let depthwise = self.depthwise.kernel.as_flattened().as_flattened();
        let mut tensors = vec![(
            format!("{layer}.depthwise_kernel"),
            vec![K, K, CI],
            depthwise,
        )];
        tensors.extend(self.pointwise.tensors(layer));
        tensors
    }

    fn tensors_mut<'a>(&'a mut self, layer: &str) -> Vec<TensorViewMut<'a>> {
        let depthwise = self.depthwise.kernel.as_flattened_mut().as_flattened_mut();
        let mut tensors = vec![(
            format!("{layer}.depthwise_kernel"),
            vec![K, K, CI],
            depthwise,
        )];
        tensors.extend(self.pointwise.tensors_mut(layer));
        tensors
    }
}

/// The output shape of a separable convolution with `filters` filters.
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

/// The depthwise pass, then the pointwise pass, one output row at a time:
/// the depthwise row stays in a small buffer on the stack, in cache, instead of
/// a whole intermediate tensor going out to memory and back. The
/// [`Epilogue`] `E` is applied as each output value is stored.
#[inline(always)]
pub fn separable_conv2d<
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
    weights: &SeparableConv2dWeights<K, CI, CO>,
    _padding: P,
    _stride: Stride<S>,
    _arithmetic: A,
    _epilogue: E,
    output: &mut Tensor<OH, OW, CO>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], K, S, [OH, OW]),
            "separable_conv2d: the output shape does not follow from the input shape, kernel, padding and stride"
        )
    };
    let mut depthwise = [[0.0f32; CI]; OW];
    for (oy, out_row) in output.data.iter_mut().enumerate() {
        depthwise_row::<P, A, S, H, W, K, CI, OW>(input, &weights.depthwise, oy, &mut depthwise);
        multiply_pixels::<A, E, CI, CO>(|p| &depthwise[p], &weights.pointwise, out_row);
    }
}

/// A `same` separable convolution (stride 1) followed by a max pool, without
/// the convolution's output ever stored whole: each of its rows is pooled
/// into the output as soon as it is made. At 60x60x16 that output is 230 kB,
/// more than the L1 and a large part of the L2 cache, written once and read
/// three times by a separate pool.
///
/// `output = max_pool(separable_conv2d(input, weights))`, both as their own
/// functions compute them.
#[inline(always)]
pub fn separable_conv2d_max_pool<
    A: Arithmetic,
    P: PaddingMode,
    const K: usize,
    const PK: usize,
    const PS: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Tensor<H, W, CI>,
    weights: &SeparableConv2dWeights<K, CI, CO>,
    _arithmetic: A,
    _window: Window<PK>,
    _stride: Stride<PS>,
    _pool_padding: P,
    output: &mut Tensor<OH, OW, CO>,
) {
    const {
        assert!(
            window_output_follows(P::PADDING, [H, W], PK, PS, [OH, OW]),
            "separable_conv2d_max_pool: the output shape does not follow from the input shape, pool window, padding and stride"
        )
    };
    let mut depthwise = [[0.0f32; CI]; W];
    let mut row = [[0.0f32; CO]; W];
    for iy in 0..H {
        depthwise_row::<Same, A, 1, H, W, K, CI, W>(input, &weights.depthwise, iy, &mut depthwise);
        multiply_pixels::<A, Identity, CI, CO>(|p| &depthwise[p], &weights.pointwise, &mut row);
        max_pool_row::<A, P, PK, PS, H, W, CO, OH, OW>(&row, iy, output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epilogue::Relu;
    use crate::isa::Avx2Arithmetic;
    use crate::pool::max_pool;
    use crate::reference;
    use crate::test_support::{assert_close, random_tensor, random_values};
    use ndarray::{ArrayView1, ArrayView3, ArrayView4};

    fn random_weights<const CI: usize, const CO: usize>(
        seed: u64,
    ) -> Box<SeparableConv2dWeights<3, CI, CO>> {
        let mut weights = SeparableConv2dWeights::<3, CI, CO>::zeroed_boxed();
        random_values(
            seed + 1,
            weights
                .depthwise
                .kernel
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        random_values(seed + 2, weights.pointwise.kernel.as_flattened_mut());
        random_values(seed + 3, &mut weights.pointwise.bias);
        weights
    }

    /// A separable convolution against a depthwise then a pointwise
    /// reference convolution, with seeded random weights.
    fn check<const H: usize, const W: usize, const CI: usize, const CO: usize>(seed: u64) {
        let input = random_tensor::<H, W, CI>(seed);
        let weights = random_weights::<CI, CO>(seed);
        let mut output = Tensor::<H, W, CO>::zeroed_boxed();
        separable_conv2d(
            &input,
            &weights,
            Same,
            Stride::<1>,
            Avx2Arithmetic,
            Identity,
            &mut output,
        );

        let depthwise_kernel = ArrayView3::from_shape(
            (3, 3, CI),
            weights.depthwise.kernel.as_flattened().as_flattened(),
        )
        .unwrap();
        let pointwise_kernel =
            ArrayView4::from_shape((1, 1, CI, CO), weights.pointwise.kernel.as_flattened())
                .unwrap();
        let spatial = reference::depthwise_conv2d(input.view(), depthwise_kernel, 1, Padding::Same);
        let bias = ArrayView1::from(&weights.pointwise.bias);
        let expected = reference::conv2d(
            spatial.view(),
            pointwise_kernel,
            Some(bias),
            1,
            Padding::Valid,
        );
        assert_close(output.view(), expected.view(), 1e-5);
        output.as_mut_slice().fill(f32::NAN);
        separable_conv2d(
            &input,
            &weights,
            Same,
            Stride::<1>,
            Avx2Arithmetic,
            Relu,
            &mut output,
        );
        assert_close(output.view(), expected.mapv(|v| v.max(0.0)).view(), 1e-5);
    }

    /// The fused convolution and pool against the two run one after the other.
    fn check_pooled<
        const H: usize,
        const W: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
        const OW: usize,
    >(
        seed: u64,
    ) {
        let input = random_tensor::<H, W, CI>(seed);
        let weights = random_weights::<CI, CO>(seed);
        let mut convolved = Tensor::<H, W, CO>::zeroed_boxed();
        separable_conv2d(
            &input,
            &weights,
            Same,
            Stride::<1>,
            Avx2Arithmetic,
            Identity,
            &mut convolved,
        );
        let mut expected = Tensor::<OH, OW, CO>::zeroed_boxed();
        max_pool(&convolved, Window::<3>, Stride::<2>, Same, &mut expected);
        let mut output = Tensor::<OH, OW, CO>::zeroed_boxed();
        output.as_mut_slice().fill(f32::NAN);
        separable_conv2d_max_pool(
            &input,
            &weights,
            Avx2Arithmetic,
            Window::<3>,
            Stride::<2>,
            Same,
            &mut output,
        );
        assert_eq!(output.as_slice(), expected.as_slice());
    }

    #[test]
    fn a_fused_pool_equals_the_pool_after_the_convolution() {
        // The four modules of mini-Xception at 64x64 (padding at the bottom
        // and right only), then a size padded on both sides.
        check_pooled::<60, 60, 8, 16, 30, 30>(61);
        check_pooled::<30, 30, 16, 32, 15, 15>(62);
        check_pooled::<15, 15, 32, 64, 8, 8>(63);
        check_pooled::<8, 8, 64, 128, 4, 4>(64);
        check_pooled::<9, 7, 4, 6, 5, 4>(65);
    }

    #[test]
    fn equals_a_depthwise_then_a_pointwise_reference_convolution() {
        // Channel counts below the kernels' 16-channel blocks.
        check::<9, 8, 4, 6>(41);
        // Blocks of 4 pixels and 16 channels, and the pixels left over.
        check::<7, 13, 16, 32>(51);
    }
}
