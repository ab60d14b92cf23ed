//! Pointwise (1x1) convolution with a stride: a matrix product at every
//! sampled pixel. With a 1x1 window `same` and `valid` padding agree, so there
//! is no padding to choose.

use crate::batch_norm::{BatchNorm, FoldBatchNorm, fold_into};
use crate::folded::{FoldedTensors, TensorView, TensorViewMut};
use crate::geometry::Stride;
use crate::parameters::{LayerOptions, ParameterKind, ParameterSource, ParameterSpec};
use crate::tensor::{Tensor, zeroed_box};
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
        let mut weights = Self::zeroed_boxed();
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

/// `output[y][x] = input[y * S][x * S] . kernel + bias`.
pub fn pointwise_conv2d<
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
    output: &mut Tensor<OH, OW, CO>,
) {
    const {
        assert!(
            S > 0 && OH == H.div_ceil(S) && OW == W.div_ceil(S) && OH > 0 && OW > 0,
            "pointwise_conv2d: the output shape does not follow from the input shape and stride"
        )
    };
    for oy in 0..OH {
        for ox in 0..OW {
            let out = &mut output.data[oy][ox];
            *out = weights.bias;
            for (&value, filter_row) in input.data[oy * S][ox * S].iter().zip(&weights.kernel) {
                for (acc, &weight) in out.iter_mut().zip(filter_row) {
                    *acc += value * weight;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;
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
        pointwise_conv2d(&input, &weights, Stride::<S>, &mut output);
        let kernel = ArrayView4::from_shape((1, 1, CI, CO), weights.kernel.as_flattened()).unwrap();
        let bias = ArrayView1::from(&weights.bias);
        // Keras' residual branch is a 1x1 conv with `same` padding.
        let expected = reference::conv2d(input.view(), kernel, Some(bias), S, Padding::Same);
        assert_close(output.view(), expected.view(), 1e-5);
    }

    #[test]
    fn matches_the_reference_with_strides_on_odd_and_even_sizes() {
        check::<1, 5, 4, 3, 6, 5, 4>();
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
