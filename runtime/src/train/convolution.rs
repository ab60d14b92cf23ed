//! The convolutions over a batch: each image's kernel call is compiled for
//! the chosen instruction set (through [`dispatch`]) and the images run in
//! parallel on the calling thread pool.
//!
//! A closure handed to rayon is compiled apart from any function with the
//! instruction set's target features, so each image's work is a small struct
//! whose [`WithArithmetic::run`] calls the kernels, and `dispatch` runs it
//! inside a function compiled for the instruction set.

use super::batch::ReductionScratch;
use super::normalize::store_image_moments;
use crate::conv::{
    Conv2dWeights, bias_backward, conv2d, conv2d_backward_input_transposed, conv2d_backward_kernel,
    transpose_conv_into,
};
use crate::depthwise::{
    depthwise_conv2d, depthwise_conv2d_backward_input_same, depthwise_conv2d_backward_kernel,
};
use crate::epilogue::Identity;
use crate::geometry::{PaddingMode, Same, Stride};
use crate::isa::{Arithmetic, Isa, WithArithmetic, dispatch};
use crate::pointwise::{
    PointwiseWeights, pointwise_conv2d, pointwise_conv2d_backward_input_add_transposed,
    pointwise_conv2d_backward_input_transposed, pointwise_conv2d_backward_kernel, transpose_into,
};
use crate::separable::SeparableConv2dWeights;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// One image of [`conv2d_forward`].
struct ConvForward<
    'a,
    P,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> {
    input: &'a Tensor<H, W, CI>,
    weights: &'a Conv2dWeights<K, CI, CO>,
    padding: P,
    output: &'a mut Tensor<OH, OW, CO>,
}

impl<
    P: PaddingMode,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> WithArithmetic for ConvForward<'_, P, S, H, W, K, CI, CO, OH, OW>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        conv2d(
            self.input,
            self.weights,
            self.padding,
            Stride::<S>,
            arithmetic,
            Identity,
            self.output,
        );
    }
}

/// `outputs[i] = conv2d(inputs[i], weights)` for every image (the bias
/// included: it is zero for a layer without one).
pub fn conv2d_forward<
    P: PaddingMode + Send + Sync,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    weights: &Conv2dWeights<K, CI, CO>,
    padding: P,
    _stride: Stride<S>,
    outputs: &mut [Tensor<OH, OW, CO>],
    moments: Option<&mut ReductionScratch>,
) {
    for_each_image(isa, inputs.par_iter(), outputs, moments, |input, output| {
        dispatch(
            isa,
            ConvForward::<P, S, H, W, K, CI, CO, OH, OW> {
                input,
                weights,
                padding,
                output,
            },
        );
    });
}

/// Runs `forward` on every image in parallel; with `moments`, then stores
/// each image's batch-norm moments of its output there, while the output is
/// still in cache (see [`batch_norm_forward`](super::batch_norm_forward)).
fn for_each_image<I: Send, const H: usize, const W: usize, const C: usize>(
    isa: Isa,
    inputs: impl IndexedParallelIterator<Item = I>,
    outputs: &mut [Tensor<H, W, C>],
    moments: Option<&mut ReductionScratch>,
    forward: impl Fn(I, &mut Tensor<H, W, C>) + Sync,
) {
    match moments {
        Some(scratch) => outputs
            .par_iter_mut()
            .zip(inputs)
            .zip(scratch.par_images())
            .for_each(|((output, input), values)| {
                forward(input, output);
                store_image_moments(isa, output, values);
            }),
        None => outputs
            .par_iter_mut()
            .zip(inputs)
            .for_each(|(output, input)| forward(input, output)),
    }
}

/// One image of [`conv2d_backward`].
struct ConvBackward<
    'a,
    P,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> {
    input: &'a Tensor<H, W, CI>,
    output_gradient: &'a Tensor<OH, OW, CO>,
    weights: &'a Conv2dWeights<K, CI, CO>,
    transposed: &'a Conv2dWeights<K, CO, CI>,
    padding: P,
    input_gradient: Option<&'a mut Tensor<H, W, CI>>,
    gradient: &'a mut Conv2dWeights<K, CI, CO>,
    bias: Bias,
}

impl<
    P: PaddingMode,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> WithArithmetic for ConvBackward<'_, P, S, H, W, K, CI, CO, OH, OW>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        if let Some(input_gradient) = self.input_gradient {
            conv2d_backward_input_transposed(
                self.output_gradient,
                self.weights,
                self.transposed,
                self.padding,
                Stride::<S>,
                arithmetic,
                input_gradient,
            );
        }
        conv2d_backward_kernel(
            self.input,
            self.output_gradient,
            self.padding,
            Stride::<S>,
            arithmetic,
            &mut self.gradient.kernel,
        );
        if self.bias == Bias::Learned {
            bias_backward(self.output_gradient, &mut self.gradient.bias);
        }
    }
}

/// Whether a convolution has a bias of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    /// It has one, trained with the kernel.
    Learned,
    /// It has none: a batch norm follows, whose beta plays its part.
    Absent,
}

/// The backward pass of [`conv2d_forward`]: each image's kernel gradient (and
/// bias gradient, when the layer has a bias) is added to that image's slot,
/// `slot(&mut image_gradients[i])`; the input gradients are written when
/// wanted (not for the network's input), with `transposed` as room for the
/// kernel transposed.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward<
    G: Send,
    P: PaddingMode + Send + Sync,
    const S: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    output_gradients: &[Tensor<OH, OW, CO>],
    weights: &Conv2dWeights<K, CI, CO>,
    transposed: &mut Conv2dWeights<K, CO, CI>,
    padding: P,
    _stride: Stride<S>,
    bias: Bias,
    input_gradients: Option<&mut [Tensor<H, W, CI>]>,
    image_gradients: &mut [G],
    slot: fn(&mut G) -> &mut Conv2dWeights<K, CI, CO>,
) {
    if input_gradients.is_some() {
        transpose_conv_into(weights, transposed);
    }
    let transposed = &*transposed;
    let run = |input, output_gradient, input_gradient, image: &mut G| {
        dispatch(
            isa,
            ConvBackward::<P, S, H, W, K, CI, CO, OH, OW> {
                input,
                output_gradient,
                weights,
                transposed,
                padding,
                input_gradient,
                gradient: slot(image),
                bias,
            },
        );
    };
    match input_gradients {
        Some(input_gradients) => input_gradients
            .par_iter_mut()
            .zip(inputs)
            .zip(output_gradients)
            .zip(image_gradients)
            .for_each(|(((input_gradient, input), output_gradient), image)| {
                run(input, output_gradient, Some(input_gradient), image)
            }),
        None => inputs
            .par_iter()
            .zip(output_gradients)
            .zip(image_gradients)
            .for_each(|((input, output_gradient), image)| run(input, output_gradient, None, image)),
    }
}

/// One image of [`separable_forward`].
struct SeparableForward<
    'a,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
> {
    input: &'a Tensor<H, W, CI>,
    weights: &'a SeparableConv2dWeights<K, CI, CO>,
    depthwise: &'a mut Tensor<H, W, CI>,
    output: &'a mut Tensor<H, W, CO>,
}

impl<const H: usize, const W: usize, const K: usize, const CI: usize, const CO: usize>
    WithArithmetic for SeparableForward<'_, H, W, K, CI, CO>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        depthwise_conv2d(
            self.input,
            &self.weights.depthwise,
            Same,
            Stride::<1>,
            arithmetic,
            self.depthwise,
        );
        pointwise_conv2d(
            self.depthwise,
            &self.weights.pointwise,
            Stride::<1>,
            arithmetic,
            Identity,
            self.output,
        );
    }
}

/// `outputs[i] = separable_conv2d(inputs[i], weights)` (`same`, stride 1, as
/// in every module), keeping each image's depthwise output for the backward
/// pass; `moments` as for [`conv2d_forward`].
pub fn separable_forward<
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    weights: &SeparableConv2dWeights<K, CI, CO>,
    depthwise: &mut [Tensor<H, W, CI>],
    outputs: &mut [Tensor<H, W, CO>],
    moments: Option<&mut ReductionScratch>,
) {
    let inputs = inputs.par_iter().zip(depthwise);
    for_each_image(
        isa,
        inputs,
        outputs,
        moments,
        |(input, depthwise), output| {
            dispatch(
                isa,
                SeparableForward {
                    input,
                    weights,
                    depthwise,
                    output,
                },
            );
        },
    );
}

/// One image of [`separable_backward`].
struct SeparableBackward<
    'a,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
> {
    input: &'a Tensor<H, W, CI>,
    depthwise: &'a Tensor<H, W, CI>,
    output_gradient: &'a Tensor<H, W, CO>,
    weights: &'a SeparableConv2dWeights<K, CI, CO>,
    transposed: &'a PointwiseWeights<CO, CI>,
    depthwise_gradient: &'a mut Tensor<H, W, CI>,
    input_gradient: Option<&'a mut Tensor<H, W, CI>>,
    gradient: &'a mut SeparableConv2dWeights<K, CI, CO>,
}

impl<const H: usize, const W: usize, const K: usize, const CI: usize, const CO: usize>
    WithArithmetic for SeparableBackward<'_, H, W, K, CI, CO>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        pointwise_conv2d_backward_input_transposed(
            self.output_gradient,
            self.transposed,
            arithmetic,
            self.depthwise_gradient,
        );
        pointwise_conv2d_backward_kernel(
            self.depthwise,
            self.output_gradient,
            Stride::<1>,
            arithmetic,
            &mut self.gradient.pointwise.kernel,
        );
        if let Some(input_gradient) = self.input_gradient {
            depthwise_conv2d_backward_input_same(
                self.depthwise_gradient,
                &self.weights.depthwise,
                arithmetic,
                input_gradient,
            );
        }
        depthwise_conv2d_backward_kernel(
            self.input,
            self.depthwise_gradient,
            Same,
            Stride::<1>,
            arithmetic,
            &mut self.gradient.depthwise.kernel,
        );
    }
}

/// The backward pass of [`separable_forward`]: the depthwise and pointwise
/// kernel gradients go to each image's slot, the input gradients are written
/// when wanted; `depthwise_gradients` is scratch of the depthwise output's
/// shape, and `transposed` room for the pointwise kernel transposed.
#[allow(clippy::too_many_arguments)]
pub fn separable_backward<
    G: Send,
    const H: usize,
    const W: usize,
    const K: usize,
    const CI: usize,
    const CO: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    depthwise: &[Tensor<H, W, CI>],
    output_gradients: &[Tensor<H, W, CO>],
    weights: &SeparableConv2dWeights<K, CI, CO>,
    transposed: &mut PointwiseWeights<CO, CI>,
    depthwise_gradients: &mut [Tensor<H, W, CI>],
    input_gradients: Option<&mut [Tensor<H, W, CI>]>,
    image_gradients: &mut [G],
    slot: fn(&mut G) -> &mut SeparableConv2dWeights<K, CI, CO>,
) {
    transpose_into(&weights.pointwise, transposed);
    let transposed = &*transposed;
    let run =
        |input, depthwise, output_gradient, depthwise_gradient, input_gradient, image: &mut G| {
            dispatch(
                isa,
                SeparableBackward::<H, W, K, CI, CO> {
                    input,
                    depthwise,
                    output_gradient,
                    weights,
                    transposed,
                    depthwise_gradient,
                    input_gradient,
                    gradient: slot(image),
                },
            );
        };
    let images = depthwise_gradients
        .par_iter_mut()
        .zip(inputs)
        .zip(depthwise)
        .zip(output_gradients)
        .zip(image_gradients);
    match input_gradients {
        Some(input_gradients) => images.zip(input_gradients).for_each(
            |(
                ((((depthwise_gradient, input), depthwise), output_gradient), image),
                input_gradient,
            )| {
                run(
                    input,
                    depthwise,
                    output_gradient,
                    depthwise_gradient,
                    Some(input_gradient),
                    image,
                )
            },
        ),
        None => images.for_each(
            |((((depthwise_gradient, input), depthwise), output_gradient), image)| {
                run(
                    input,
                    depthwise,
                    output_gradient,
                    depthwise_gradient,
                    None,
                    image,
                )
            },
        ),
    }
}

/// One image of [`pointwise_forward`].
struct PointwiseForward<
    'a,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> {
    input: &'a Tensor<H, W, CI>,
    weights: &'a PointwiseWeights<CI, CO>,
    output: &'a mut Tensor<OH, OW, CO>,
}

impl<
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> WithArithmetic for PointwiseForward<'_, S, H, W, CI, CO, OH, OW>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        pointwise_conv2d(
            self.input,
            self.weights,
            Stride::<S>,
            arithmetic,
            Identity,
            self.output,
        );
    }
}

/// `outputs[i] = pointwise_conv2d(inputs[i], weights)` with stride `S`: a
/// module's residual branch; `moments` as for [`conv2d_forward`].
pub fn pointwise_forward<
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    weights: &PointwiseWeights<CI, CO>,
    _stride: Stride<S>,
    outputs: &mut [Tensor<OH, OW, CO>],
    moments: Option<&mut ReductionScratch>,
) {
    for_each_image(isa, inputs.par_iter(), outputs, moments, |input, output| {
        dispatch(
            isa,
            PointwiseForward::<S, H, W, CI, CO, OH, OW> {
                input,
                weights,
                output,
            },
        );
    });
}

/// One image of [`pointwise_backward`].
struct PointwiseBackward<
    'a,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> {
    input: &'a Tensor<H, W, CI>,
    output_gradient: &'a Tensor<OH, OW, CO>,
    transposed: &'a PointwiseWeights<CO, CI>,
    input_gradient: Option<&'a mut Tensor<H, W, CI>>,
    gradient: &'a mut PointwiseWeights<CI, CO>,
}

impl<
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
> WithArithmetic for PointwiseBackward<'_, S, H, W, CI, CO, OH, OW>
{
    type Output = ();

    #[inline(always)]
    fn run<A: Arithmetic>(self, arithmetic: A) {
        if let Some(input_gradient) = self.input_gradient {
            pointwise_conv2d_backward_input_add_transposed(
                self.output_gradient,
                self.transposed,
                Stride::<S>,
                arithmetic,
                input_gradient,
            );
        }
        pointwise_conv2d_backward_kernel(
            self.input,
            self.output_gradient,
            Stride::<S>,
            arithmetic,
            &mut self.gradient.kernel,
        );
    }
}

/// The backward pass of [`pointwise_forward`]. The input gradients, when
/// wanted, are **added** to `input_gradients`: the residual branch's input
/// also feeds the main branch, whose gradient is there already. `transposed`
/// is room for the kernel transposed, which the input gradients use.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_backward<
    G: Send,
    const S: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const OH: usize,
    const OW: usize,
>(
    isa: Isa,
    inputs: &[Tensor<H, W, CI>],
    output_gradients: &[Tensor<OH, OW, CO>],
    weights: &PointwiseWeights<CI, CO>,
    transposed: &mut PointwiseWeights<CO, CI>,
    _stride: Stride<S>,
    input_gradients: Option<&mut [Tensor<H, W, CI>]>,
    image_gradients: &mut [G],
    slot: fn(&mut G) -> &mut PointwiseWeights<CI, CO>,
) {
    if input_gradients.is_some() {
        transpose_into(weights, transposed);
    }
    let transposed = &*transposed;
    let run = |input, output_gradient, input_gradient, image: &mut G| {
        dispatch(
            isa,
            PointwiseBackward::<S, H, W, CI, CO, OH, OW> {
                input,
                output_gradient,
                transposed,
                input_gradient,
                gradient: slot(image),
            },
        );
    };
    match input_gradients {
        Some(input_gradients) => input_gradients
            .par_iter_mut()
            .zip(inputs)
            .zip(output_gradients)
            .zip(image_gradients)
            .for_each(|(((input_gradient, input), output_gradient), image)| {
                run(input, output_gradient, Some(input_gradient), image)
            }),
        None => inputs
            .par_iter()
            .zip(output_gradients)
            .zip(image_gradients)
            .for_each(|((input, output_gradient), image)| run(input, output_gradient, None, image)),
    }
}
