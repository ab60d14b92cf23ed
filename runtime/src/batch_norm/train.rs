//! Batch normalisation while training: each channel is normalised with the
//! mean and biased variance of the whole batch (every image, every
//! position), the moving statistics follow the batch's, and the backward
//! pass gives the gradients of gamma, beta and the input.
//!
//! The batch's statistics need every image, so the work is split in per-image
//! pieces that the trainer runs in parallel and sums in image order:
//! [`channel_sums`] and [`centered_square_sums`] give each image's share of the
//! statistics, [`BatchStatistics::from_sums`] combines them, and
//! [`batch_norm_image_forward`] normalises each image; backward,
//! [`batch_norm_backward_sums`] gives each image's share of the parameter
//! gradients and [`batch_norm_backward_input`] the input gradient.

use crate::tensor::Tensor;
use bytemuck::{Pod, Zeroable};

/// The trainable parameters of a batch norm over `C` channels, as Keras names them.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct BatchNormParameters<const C: usize> {
    /// Scale.
    pub gamma: [f32; C],
    /// Offset.
    pub beta: [f32; C],
}

// SAFETY: `repr(C)` with only `[f32; C]` fields, each of alignment 4 and a
// size that is a multiple of 4, so there is no padding; every bit pattern is
// a valid f32. Exercised by `flat_views_cover_every_field` below.
unsafe impl<const C: usize> Pod for BatchNormParameters<C> {}

impl<const C: usize> BatchNormParameters<C> {
    /// Keras' initial values: gamma 1, beta 0.
    pub fn keras_initial() -> Self {
        Self {
            gamma: [1.0; C],
            beta: [0.0; C],
        }
    }
}

/// The moving statistics of a batch norm over `C` channels: what inference
/// normalises with. Training updates them, but they are not trained.
#[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
#[repr(C)]
pub struct MovingStatistics<const C: usize> {
    /// Keras' `moving_mean`.
    pub mean: [f32; C],
    /// Keras' `moving_variance`.
    pub variance: [f32; C],
}

// SAFETY: as for `BatchNormParameters`: `repr(C)`, only `[f32; C]` fields.
unsafe impl<const C: usize> Pod for MovingStatistics<C> {}

impl<const C: usize> MovingStatistics<C> {
    /// Keras' initial values: mean 0, variance 1.
    pub fn keras_initial() -> Self {
        Self {
            mean: [0.0; C],
            variance: [1.0; C],
        }
    }

    /// Moves the statistics toward the batch's, as Keras does after each
    /// training batch: `moving = moving * momentum + batch * (1 - momentum)`.
    /// The variance moves toward the batch's unbiased variance (divided by
    /// `n - 1`), as TensorFlow's fused batch norm, which Keras uses for
    /// images, computes it.
    pub fn update(&mut self, batch: &BatchStatistics<C>, momentum: f32) {
        let rest = 1.0 - momentum;
        let correction = if batch.count > 1 {
            batch.count as f64 / (batch.count - 1) as f64
        } else {
            1.0
        };
        for c in 0..C {
            let variance = (batch.variance[c] as f64 * correction) as f32;
            self.mean[c] = self.mean[c] * momentum + batch.mean[c] * rest;
            self.variance[c] = self.variance[c] * momentum + variance * rest;
        }
    }
}

/// The statistics a batch norm normalised a batch with: the per-channel
/// mean and biased variance over `count` values, and
/// `1 / sqrt(variance + epsilon)`. Usually the batch's own; in inference mode
/// the moving statistics, which are then constants of the backward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchStatistics<const C: usize> {
    /// Mean over the batch and positions.
    pub mean: [f32; C],
    /// Biased variance (divided by `count`).
    pub variance: [f32; C],
    /// `1 / sqrt(variance + epsilon)`.
    pub inverse_deviation: [f32; C],
    /// Values per channel: batch size times positions.
    pub count: usize,
    /// Whether these are the moving statistics, which do not depend on the
    /// batch: the input gradient then has no terms through the mean and
    /// variance.
    pub fixed: bool,
}

impl<const C: usize> BatchStatistics<C> {
    /// Statistics of no batch yet: a place to keep the coming batch's.
    pub fn empty() -> Self {
        Self {
            mean: [0.0; C],
            variance: [0.0; C],
            inverse_deviation: [0.0; C],
            count: 0,
            fixed: false,
        }
    }

    /// The moving statistics as what a batch is normalised with, in
    /// inference mode (Keras' `training=False`), for `count` values per
    /// channel.
    pub fn from_moving(moving: &MovingStatistics<C>, count: usize, epsilon: f32) -> Self {
        Self {
            mean: moving.mean,
            variance: moving.variance,
            inverse_deviation: moving
                .variance
                .map(|v| (1.0 / (v as f64 + epsilon as f64).sqrt()) as f32),
            count,
            fixed: true,
        }
    }

    /// The statistics from the batch's per-channel sum and, around that
    /// mean, its sum of squares (see [`centered_square_sums`]), over `count`
    /// values per channel.
    pub fn from_sums(
        mean: &[f64; C],
        centered_squares: &[f64; C],
        count: usize,
        epsilon: f32,
    ) -> Self {
        let count_f = count.max(1) as f64;
        let variance = centered_squares.map(|s| s / count_f);
        Self {
            mean: mean.map(|m| m as f32),
            variance: variance.map(|v| v as f32),
            inverse_deviation: variance.map(|v| (1.0 / (v + epsilon as f64).sqrt()) as f32),
            count,
            fixed: false,
        }
    }

    /// The statistics of a batch from each image's [`image_moments`], each
    /// over `pixels` positions, merged in the order given: the batch mean is
    /// the mean of the sums, and the sum of squares around it is
    /// `sum(M2_i + n (mean_i - mean)^2)` (Chan, Golub and LeVeque's pairwise
    /// formula), as exact as a second pass over the whole batch.
    pub fn from_image_moments<'a>(
        images: impl Iterator<Item = (&'a [f64; C], &'a [f64; C])> + Clone,
        pixels: usize,
        epsilon: f32,
    ) -> Self {
        let n = pixels as f64;
        let mut sums = [0.0f64; C];
        let mut count = 0;
        for (image_sums, _) in images.clone() {
            for (sum, value) in sums.iter_mut().zip(image_sums) {
                *sum += value;
            }
            count += pixels;
        }
        let mean = sums.map(|s| s / count.max(1) as f64);
        let mut squares = [0.0f64; C];
        for (image_sums, image_squares) in images {
            for c in 0..C {
                let offset = image_sums[c] / n.max(1.0) - mean[c];
                squares[c] += image_squares[c] + n * offset * offset;
            }
        }
        Self::from_sums(&mean, &squares, count, epsilon)
    }
}

/// Channels in one vector register (AVX2): the passes below work on blocks
/// of this many channels, written as whole-array operations so that LLVM
/// turns each into one vector instruction (a loop over the channels of a
/// pixel stayed scalar), and on the channels left over one at a time.
const LANES: usize = 8;

type Lanes = [f32; LANES];

/// The `block`th group of [`LANES`] channels of `values`.
#[inline(always)]
fn lanes<const C: usize>(values: &[f32; C], block: usize) -> Lanes {
    values.as_chunks::<LANES>().0[block]
}

/// The channels past the last whole block of [`LANES`].
const fn rest_start(channels: usize) -> usize {
    channels / LANES * LANES
}

/// Adds one image row's sums per channel to `sums`: `block_terms(x, b)` gives
/// the `N` values summed at pixel `x` of the row for the channels of block
/// `b`, and `channel_terms(x, c)` those of a channel `c` past the blocks.
///
/// A row is summed in f32, its even and odd pixels in two accumulators so
/// that two chains of additions run at once, and the row's sum is added in
/// f64: a row holds at most a few dozen values, and f64 across rows keeps a
/// batch's sums exact far below the tolerance of the parity with Keras
/// (which sums in f32).
#[inline(always)]
fn add_row_sums<const W: usize, const C: usize, const N: usize>(
    sums: &mut [[f64; C]; N],
    block_terms: impl Fn(usize, usize) -> [Lanes; N],
    channel_terms: impl Fn(usize, usize) -> [f32; N],
) {
    for block in 0..C / LANES {
        let mut even = [[0.0f32; LANES]; N];
        let mut odd = [[0.0f32; LANES]; N];
        for x in (0..W / 2).map(|pair| 2 * pair) {
            let (a, b) = (block_terms(x, block), block_terms(x + 1, block));
            for n in 0..N {
                even[n] = std::array::from_fn(|l| even[n][l] + a[n][l]);
                odd[n] = std::array::from_fn(|l| odd[n][l] + b[n][l]);
            }
        }
        if W % 2 == 1 {
            let a = block_terms(W - 1, block);
            for n in 0..N {
                even[n] = std::array::from_fn(|l| even[n][l] + a[n][l]);
            }
        }
        for n in 0..N {
            for l in 0..LANES {
                sums[n][block * LANES + l] += (even[n][l] + odd[n][l]) as f64;
            }
        }
    }
    // `c` is a channel number for `channel_terms` as well as an index.
    #[allow(clippy::needless_range_loop)]
    for c in rest_start(C)..C {
        let mut total = [0.0f32; N];
        for x in 0..W {
            let t = channel_terms(x, c);
            for n in 0..N {
                total[n] += t[n];
            }
        }
        for n in 0..N {
            sums[n][c] += total[n] as f64;
        }
    }
}

/// The sum of every channel of one image: the first pass of the batch mean.
#[inline(always)]
pub fn channel_sums<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
) -> [f64; C] {
    let mut sums = [[0.0f64; C]; 1];
    for row in &input.data {
        add_row_sums::<W, C, 1>(
            &mut sums,
            |x, block| [lanes(&row[x], block)],
            |x, c| [row[x][c]],
        );
    }
    sums[0]
}

/// The sum of `(x - mean)^2` of every channel of one image: the second pass
/// of the batch variance, which is more exact than `E[x^2] - E[x]^2`.
#[inline(always)]
pub fn centered_square_sums<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
    mean: &[f64; C],
) -> [f64; C] {
    let mean = mean.map(|m| m as f32);
    let mut sums = [[0.0f64; C]; 1];
    for row in &input.data {
        add_row_sums::<W, C, 1>(
            &mut sums,
            |x, block| {
                let (x, m) = (lanes(&row[x], block), lanes(&mean, block));
                [std::array::from_fn(|l| (x[l] - m[l]) * (x[l] - m[l]))]
            },
            |x, c| {
                let d = row[x][c] - mean[c];
                [d * d]
            },
        );
    }
    sums[0]
}

/// One image's per-channel sum, and sum of squares around the image's own
/// mean: its share of the batch statistics
/// ([`BatchStatistics::from_image_moments`]). Both passes read the image
/// while it is in cache, so the batch's statistics cost one pass over
/// memory rather than two.
#[inline(always)]
pub fn image_moments<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
) -> ([f64; C], [f64; C]) {
    let sums = channel_sums(input);
    let mean = sums.map(|s| s / (H * W).max(1) as f64);
    (sums, centered_square_sums(input, &mean))
}

/// `output = gamma * (input - mean) / sqrt(variance + epsilon) + beta` with the
/// batch's statistics, then ReLU when `relu` is set.
#[inline(always)]
pub fn batch_norm_image_forward<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
    statistics: &BatchStatistics<C>,
    parameters: &BatchNormParameters<C>,
    relu: bool,
    output: &mut Tensor<H, W, C>,
) {
    let mut scale = [0.0f32; C];
    let mut shift = [0.0f32; C];
    for c in 0..C {
        scale[c] = parameters.gamma[c] * statistics.inverse_deviation[c];
        shift[c] = parameters.beta[c] - statistics.mean[c] * scale[c];
    }
    let activate = |y: f32| if relu { y.max(0.0) } else { y };
    for (out, pixel) in output
        .data
        .as_flattened_mut()
        .iter_mut()
        .zip(input.data.as_flattened())
    {
        for block in 0..C / LANES {
            let (x, a, b) = (
                lanes(pixel, block),
                lanes(&scale, block),
                lanes(&shift, block),
            );
            out.as_chunks_mut::<LANES>().0[block] =
                std::array::from_fn(|l| activate(x[l] * a[l] + b[l]));
        }
        for c in rest_start(C)..C {
            out[c] = activate(pixel[c] * scale[c] + shift[c]);
        }
    }
}

/// One image's share of the parameter gradients, given the gradient of the
/// batch norm's output: per channel, `sum(dy)` (beta's gradient) and
/// `sum(dy * x_hat)` (gamma's), where `x_hat` is the normalised input.
#[inline(always)]
pub fn batch_norm_backward_sums<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
    output_gradient: &Tensor<H, W, C>,
    statistics: &BatchStatistics<C>,
) -> ([f64; C], [f64; C]) {
    let mut sums = [[0.0f64; C]; 2];
    for (row, gradient_row) in input.data.iter().zip(&output_gradient.data) {
        add_backward_row_sums(&mut sums, row, gradient_row, statistics);
    }
    (sums[0], sums[1])
}

/// [`batch_norm_backward_sums`] for a batch norm followed by ReLU: first
/// zeroes `gradient` wherever `output`, the ReLU's output, is not positive
/// (ReLU's backward pass, in place), and with `GUIDED` also wherever the
/// gradient itself is not (guided back-propagation's ReLU), then sums. Row
/// by row, so that the masked row is summed while it is in the first-level
/// cache, rather than in a second pass over the image.
#[inline(always)]
pub fn batch_norm_relu_backward_sums<
    const GUIDED: bool,
    const H: usize,
    const W: usize,
    const C: usize,
>(
    input: &Tensor<H, W, C>,
    output: &Tensor<H, W, C>,
    gradient: &mut Tensor<H, W, C>,
    statistics: &BatchStatistics<C>,
) -> ([f64; C], [f64; C]) {
    let mut sums = [[0.0f64; C]; 2];
    for ((row, output_row), gradient_row) in
        input.data.iter().zip(&output.data).zip(&mut gradient.data)
    {
        for (g, &y) in gradient_row
            .as_flattened_mut()
            .iter_mut()
            .zip(output_row.as_flattened())
        {
            let keep = y > 0.0 && (!GUIDED || *g > 0.0);
            *g = if keep { *g } else { 0.0 };
        }
        add_backward_row_sums(&mut sums, row, gradient_row, statistics);
    }
    (sums[0], sums[1])
}

/// Adds one row's `dy` and `dy * x_hat` per channel to `sums`.
#[inline(always)]
fn add_backward_row_sums<const W: usize, const C: usize>(
    sums: &mut [[f64; C]; 2],
    row: &[[f32; C]; W],
    gradient_row: &[[f32; C]; W],
    statistics: &BatchStatistics<C>,
) {
    let (mean, inverse) = (&statistics.mean, &statistics.inverse_deviation);
    add_row_sums::<W, C, 2>(
        sums,
        |x, block| {
            let (v, dy) = (lanes(&row[x], block), lanes(&gradient_row[x], block));
            let (m, s) = (lanes(mean, block), lanes(inverse, block));
            [dy, std::array::from_fn(|l| dy[l] * ((v[l] - m[l]) * s[l]))]
        },
        |x, c| {
            let dy = gradient_row[x][c];
            [dy, dy * ((row[x][c] - mean[c]) * inverse[c])]
        },
    );
}

/// The gradient of the input, in place of the output gradient, given the
/// whole batch's sums from [`batch_norm_backward_sums`] (gamma's and beta's
/// gradients):
/// `dx = gamma / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat))`; with
/// [`BatchStatistics::fixed`] statistics, `dx = gamma / sigma * dy`.
#[inline(always)]
pub fn batch_norm_backward_input<const H: usize, const W: usize, const C: usize>(
    input: &Tensor<H, W, C>,
    gradient: &mut Tensor<H, W, C>,
    statistics: &BatchStatistics<C>,
    parameters: &BatchNormParameters<C>,
    beta_gradient: &[f32; C],
    gamma_gradient: &[f32; C],
) {
    let count = statistics.count.max(1) as f32;
    let (mean, inverse) = (&statistics.mean, &statistics.inverse_deviation);
    let mut scale = [0.0f32; C];
    let mut mean_gradient = [0.0f32; C];
    let mut mean_product = [0.0f32; C];
    for c in 0..C {
        scale[c] = parameters.gamma[c] * inverse[c];
        if !statistics.fixed {
            mean_gradient[c] = beta_gradient[c] / count;
            mean_product[c] = gamma_gradient[c] / count;
        }
    }
    let input_gradient = |dy: f32, x: f32, c: usize| {
        let normalised = (x - mean[c]) * inverse[c];
        scale[c] * (dy - mean_gradient[c] - normalised * mean_product[c])
    };
    for (pixel, gradient) in input
        .data
        .as_flattened()
        .iter()
        .zip(gradient.data.as_flattened_mut())
    {
        for block in 0..C / LANES {
            let (x, dy) = (lanes(pixel, block), lanes(gradient, block));
            let (m, s) = (lanes(mean, block), lanes(inverse, block));
            let (a, g, p) = (
                lanes(&scale, block),
                lanes(&mean_gradient, block),
                lanes(&mean_product, block),
            );
            gradient.as_chunks_mut::<LANES>().0[block] = std::array::from_fn(|l| {
                let normalised = (x[l] - m[l]) * s[l];
                a[l] * (dy[l] - g[l] - normalised * p[l])
            });
        }
        for c in rest_start(C)..C {
            gradient[c] = input_gradient(gradient[c], pixel[c], c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::test_support::{
        assert_gradient_close, numeric_gradient, random_tensor, random_values, weighted_sum, widen,
    };
    use ndarray::{ArrayView1, ArrayView3};

    // An odd width leaves a pixel outside the pairs of the row sums; twelve
    // channels are a block of eight and four channels past it.
    const H: usize = 3;
    const W: usize = 5;
    const C: usize = 12;
    const BATCH: usize = 3;
    const EPSILON: f32 = 1e-3;

    /// The statistics of a batch, merged from each image's moments in image
    /// order as the trainer does.
    fn statistics(batch: &[Box<Tensor<H, W, C>>]) -> BatchStatistics<C> {
        let moments: Vec<_> = batch.iter().map(|image| image_moments(image)).collect();
        BatchStatistics::from_image_moments(moments.iter().map(|(s, q)| (s, q)), H * W, EPSILON)
    }

    #[allow(clippy::vec_box)] // tensors are boxed everywhere else too
    fn setup() -> (Vec<Box<Tensor<H, W, C>>>, BatchNormParameters<C>) {
        // Channels with different offsets and spreads.
        let batch: Vec<_> = (0..BATCH as u64)
            .map(|i| {
                let mut x = random_tensor::<H, W, C>(30 + i);
                for pixel in x.data.as_flattened_mut() {
                    for (c, v) in pixel.iter_mut().enumerate() {
                        *v = *v * (c as f32 + 0.5) + c as f32 - 1.0;
                    }
                }
                x
            })
            .collect();
        let mut parameters = BatchNormParameters::<C>::keras_initial();
        random_values(40, &mut parameters.gamma);
        random_values(41, &mut parameters.beta);
        (batch, parameters)
    }

    #[test]
    fn forward_matches_the_reference_and_statistics_are_the_batchs() {
        let (batch, parameters) = setup();
        let stats = statistics(&batch);
        let views: Vec<_> = batch.iter().map(|x| x.view()).collect();
        let (expected, mean, variance) = reference::batch_norm_training(
            &views,
            ArrayView1::from(&parameters.gamma),
            ArrayView1::from(&parameters.beta),
            EPSILON as f64,
        );
        for c in 0..C {
            assert!((stats.mean[c] as f64 - mean[c]).abs() < 1e-6);
            assert!((stats.variance[c] as f64 - variance[c]).abs() < 1e-5);
        }
        for (relu, image) in [(false, 0), (true, 1)] {
            let mut output = Tensor::<H, W, C>::zeroed_boxed();
            batch_norm_image_forward(&batch[image], &stats, &parameters, relu, &mut output);
            for (&y, &e) in output.as_slice().iter().zip(expected[image].iter()) {
                let e = if relu { e.max(0.0) } else { e };
                assert!((y - e).abs() < 1e-5, "{y} vs {e}");
            }
        }
    }

    #[test]
    fn flat_views_cover_every_field() {
        let mut parameters = BatchNormParameters::<3>::keras_initial();
        parameters.beta[2] = 5.0;
        assert_eq!(
            crate::tensor::flat(&parameters),
            &[1.0, 1.0, 1.0, 0.0, 0.0, 5.0]
        );
        let mut moving = MovingStatistics::<2>::keras_initial();
        crate::tensor::flat_mut(&mut moving)[1] = 3.0;
        assert_eq!(moving.mean, [0.0, 3.0]);
        assert_eq!(moving.variance, [1.0, 1.0]);
    }

    #[test]
    fn moving_statistics_follow_the_batch_with_keras_momentum() {
        let (batch, _) = setup();
        let stats = statistics(&batch);
        let mut moving = MovingStatistics::<C>::keras_initial();
        moving.update(&stats, 0.99);
        let n = (BATCH * H * W) as f32;
        for c in 0..C {
            assert!((moving.mean[c] - 0.01 * stats.mean[c]).abs() < 1e-7);
            let unbiased = stats.variance[c] * n / (n - 1.0);
            assert!((moving.variance[c] - (0.99 + 0.01 * unbiased)).abs() < 1e-6);
        }
    }

    #[test]
    fn backward_matches_finite_differences_through_the_batch_statistics() {
        let (batch, parameters) = setup();
        let stats = statistics(&batch);
        let output_gradients: Vec<_> = (0..BATCH as u64)
            .map(|i| random_tensor::<H, W, C>(50 + i))
            .collect();

        // The loss sum(r * bn(x)) over the whole batch, in f64, as a function
        // of every input value, gamma and beta.
        let loss = |inputs: &[f64], gamma: &[f64], beta: &[f64]| {
            let views: Vec<_> = inputs
                .chunks(H * W * C)
                .map(|x| ArrayView3::from_shape((H, W, C), x).unwrap())
                .collect();
            let (outputs, _, _) = reference::batch_norm_training(
                &views,
                ArrayView1::from(gamma),
                ArrayView1::from(beta),
                EPSILON as f64,
            );
            outputs
                .iter()
                .zip(&output_gradients)
                .map(|(y, r)| weighted_sum(r.as_slice(), y.iter().copied()))
                .sum::<f64>()
        };
        let inputs: Vec<f64> = batch.iter().flat_map(|x| widen(x.as_slice())).collect();
        let (gamma, beta) = (widen(&parameters.gamma), widen(&parameters.beta));

        let mut beta_sums = [0.0f64; C];
        let mut gamma_sums = [0.0f64; C];
        for (x, r) in batch.iter().zip(&output_gradients) {
            let (b, g) = batch_norm_backward_sums(x, r, &stats);
            for c in 0..C {
                beta_sums[c] += b[c];
                gamma_sums[c] += g[c];
            }
        }
        let (beta_gradient, gamma_gradient) =
            (beta_sums.map(|v| v as f32), gamma_sums.map(|v| v as f32));
        let numeric = numeric_gradient(&gamma, 1e-4, |g| loss(&inputs, g, &beta));
        assert_gradient_close("gamma", &gamma_gradient, &numeric, 1e-5);
        let numeric = numeric_gradient(&beta, 1e-4, |b| loss(&inputs, &gamma, b));
        assert_gradient_close("beta", &beta_gradient, &numeric, 1e-5);

        let mut analytic = Vec::new();
        for (x, r) in batch.iter().zip(&output_gradients) {
            let mut gradient = r.clone();
            batch_norm_backward_input(
                x,
                &mut gradient,
                &stats,
                &parameters,
                &beta_gradient,
                &gamma_gradient,
            );
            analytic.extend_from_slice(gradient.as_slice());
        }
        let numeric = numeric_gradient(&inputs, 1e-4, |x| loss(x, &gamma, &beta));
        assert_gradient_close("input", &analytic, &numeric, 1e-4);
    }

    #[test]
    fn relu_sums_mask_then_sum_as_the_two_passes_do() {
        let (batch, parameters) = setup();
        let stats = statistics(&batch);
        let mut output = Tensor::<H, W, C>::zeroed_boxed();
        batch_norm_image_forward(&batch[0], &stats, &parameters, true, &mut output);
        assert!(output.as_slice().contains(&0.0) && output.as_slice().iter().any(|&y| y > 0.0));
        let gradient = random_tensor::<H, W, C>(60);

        let mut separate = gradient.clone();
        crate::elementwise::relu_backward_in_place(&mut separate, &output);
        let expected = batch_norm_backward_sums(&batch[0], &separate, &stats);

        let mut fused = gradient.clone();
        let sums =
            batch_norm_relu_backward_sums::<false, H, W, C>(&batch[0], &output, &mut fused, &stats);
        assert_eq!(fused.as_slice(), separate.as_slice());
        assert_eq!(sums, expected);
    }

    #[test]
    fn guided_relu_passes_only_positive_gradients_of_positive_outputs() {
        let (batch, parameters) = setup();
        let stats = statistics(&batch);
        let mut output = Tensor::<H, W, C>::zeroed_boxed();
        batch_norm_image_forward(&batch[0], &stats, &parameters, true, &mut output);
        let gradient = random_tensor::<H, W, C>(61);
        let mut guided = gradient.clone();
        batch_norm_relu_backward_sums::<true, H, W, C>(&batch[0], &output, &mut guided, &stats);
        let mut negative_through_positive = 0;
        for ((&g, &y), &kept) in gradient
            .as_slice()
            .iter()
            .zip(output.as_slice())
            .zip(guided.as_slice())
        {
            negative_through_positive += usize::from(y > 0.0 && g < 0.0);
            let expected = if y > 0.0 && g > 0.0 { g } else { 0.0 };
            assert_eq!(kept, expected, "gradient {g}, output {y}");
        }
        // The plain ReLU would have passed these.
        assert!(negative_through_positive > 0);
    }

    #[test]
    fn with_the_moving_statistics_the_input_gradient_is_the_scaled_output_gradient() {
        let (batch, parameters) = setup();
        let mut moving = MovingStatistics::<C>::keras_initial();
        random_values(62, &mut moving.mean);
        random_values(63, &mut moving.variance);
        moving.variance.iter_mut().for_each(|v| *v = v.abs() + 0.5);
        let stats = BatchStatistics::from_moving(&moving, H * W, 1e-3);
        let mut gradient = random_tensor::<H, W, C>(64);
        let original = gradient.clone();
        let (beta, gamma) = batch_norm_backward_sums(&batch[0], &gradient, &stats);
        let (beta, gamma) = (beta.map(|v| v as f32), gamma.map(|v| v as f32));
        batch_norm_backward_input(&batch[0], &mut gradient, &stats, &parameters, &beta, &gamma);
        for (pixel, (&dx, &dy)) in gradient
            .as_slice()
            .iter()
            .zip(original.as_slice())
            .enumerate()
        {
            let c = pixel % C;
            let scale = parameters.gamma[c] / (moving.variance[c] as f64 + 1e-3).sqrt() as f32;
            assert!(
                (dx - scale * dy).abs() <= 1e-6 * (scale * dy).abs().max(1e-6),
                "{dx} vs {}",
                scale * dy
            );
        }
    }
}
