//! Plain ndarray implementations of every op, written for clarity, not speed.
//!
//! They share no code with the kernels: the kernels' tests and the end-to-end
//! tests of generated models compare against these, so a mistake would have to
//! be made twice, in two different styles, to go unnoticed. Layouts follow
//! Keras: images are `(height, width, channels)`, kernels `(kh, kw, in, out)`.

use crate::geometry::Padding;
use ndarray::{Array1, Array3, ArrayView1, ArrayView3, ArrayView4};

/// The input index read by output position `out` and window tap `tap`, or
/// `None` when it falls in the padding.
fn source_index(
    out: usize,
    tap: usize,
    stride: usize,
    pad_before: usize,
    input: usize,
) -> Option<usize> {
    let position = (out * stride + tap).checked_sub(pad_before)?;
    (position < input).then_some(position)
}

/// Output size and top/left padding along one axis, written out here from
/// TensorFlow's definition rather than taken from `geometry`, so that the
/// kernels' padding is checked against a second implementation.
fn axis(input: usize, window: usize, stride: usize, padding: Padding) -> (usize, usize) {
    let output = match padding {
        Padding::Valid => (input - window) / stride + 1,
        Padding::Same => input.div_ceil(stride),
    };
    let total = ((output - 1) * stride + window).saturating_sub(input);
    let before = if padding == Padding::Same {
        total / 2
    } else {
        0
    };
    (output, before)
}

/// A full 2-D convolution (cross-correlation, as in every framework).
pub fn conv2d(
    input: ArrayView3<f32>,
    kernel: ArrayView4<f32>,
    bias: Option<ArrayView1<f32>>,
    stride: usize,
    padding: Padding,
) -> Array3<f32> {
    let (height, width, channels) = input.dim();
    let (kernel_h, kernel_w, kernel_in, filters) = kernel.dim();
    assert_eq!(channels, kernel_in, "kernel input channels");
    let (out_h, pad_top) = axis(height, kernel_h, stride, padding);
    let (out_w, pad_left) = axis(width, kernel_w, stride, padding);
    let mut output = Array3::zeros((out_h, out_w, filters));
    for oy in 0..out_h {
        for ox in 0..out_w {
            for f in 0..filters {
                let mut sum = bias.map_or(0.0, |b| b[f]) as f64;
                for ky in 0..kernel_h {
                    let Some(iy) = source_index(oy, ky, stride, pad_top, height) else {
                        continue;
                    };
                    for kx in 0..kernel_w {
                        let Some(ix) = source_index(ox, kx, stride, pad_left, width) else {
                            continue;
                        };
                        for c in 0..channels {
                            sum += input[[iy, ix, c]] as f64 * kernel[[ky, kx, c, f]] as f64;
                        }
                    }
                }
                output[[oy, ox, f]] = sum as f32;
            }
        }
    }
    output
}

/// A depthwise convolution with depth multiplier 1; `kernel` is `(kh, kw, channels)`.
pub fn depthwise_conv2d(
    input: ArrayView3<f32>,
    kernel: ArrayView3<f32>,
    stride: usize,
    padding: Padding,
) -> Array3<f32> {
    let (height, width, channels) = input.dim();
    let (kernel_h, kernel_w, kernel_c) = kernel.dim();
    assert_eq!(channels, kernel_c, "kernel channels");
    let (out_h, pad_top) = axis(height, kernel_h, stride, padding);
    let (out_w, pad_left) = axis(width, kernel_w, stride, padding);
    Array3::from_shape_fn((out_h, out_w, channels), |(oy, ox, c)| {
        let mut sum = 0.0f64;
        for ky in 0..kernel_h {
            let Some(iy) = source_index(oy, ky, stride, pad_top, height) else {
                continue;
            };
            for kx in 0..kernel_w {
                let Some(ix) = source_index(ox, kx, stride, pad_left, width) else {
                    continue;
                };
                sum += input[[iy, ix, c]] as f64 * kernel[[ky, kx, c]] as f64;
            }
        }
        sum as f32
    })
}

/// Max pooling; padded cells never win (they count as minus infinity).
pub fn max_pool(
    input: ArrayView3<f32>,
    window: usize,
    stride: usize,
    padding: Padding,
) -> Array3<f32> {
    let (height, width, channels) = input.dim();
    let (out_h, pad_top) = axis(height, window, stride, padding);
    let (out_w, pad_left) = axis(width, window, stride, padding);
    Array3::from_shape_fn((out_h, out_w, channels), |(oy, ox, c)| {
        let mut best = f32::NEG_INFINITY;
        for ky in 0..window {
            let Some(iy) = source_index(oy, ky, stride, pad_top, height) else {
                continue;
            };
            for kx in 0..window {
                let Some(ix) = source_index(ox, kx, stride, pad_left, width) else {
                    continue;
                };
                best = best.max(input[[iy, ix, c]]);
            }
        }
        best
    })
}

/// Inference-mode batch normalisation over the last axis, as Keras computes it:
/// `gamma * (x - mean) / sqrt(variance + epsilon) + beta`.
pub fn batch_norm(
    input: ArrayView3<f32>,
    gamma: ArrayView1<f32>,
    beta: ArrayView1<f32>,
    mean: ArrayView1<f32>,
    variance: ArrayView1<f32>,
    epsilon: f32,
) -> Array3<f32> {
    Array3::from_shape_fn(input.dim(), |(y, x, c)| {
        gamma[c] * (input[[y, x, c]] - mean[c]) / (variance[c] + epsilon).sqrt() + beta[c]
    })
}

/// `max(x, 0)` element-wise.
pub fn relu(input: ArrayView3<f32>) -> Array3<f32> {
    input.mapv(|v| v.max(0.0))
}

/// The mean of every channel over all positions.
pub fn global_average_pool(input: ArrayView3<f32>) -> Array1<f32> {
    let (height, width, channels) = input.dim();
    Array1::from_shape_fn(channels, |c| {
        let sum: f64 = input
            .slice(ndarray::s![.., .., c])
            .iter()
            .map(|&v| v as f64)
            .sum();
        (sum / (height * width) as f64) as f32
    })
}

/// The softmax of a vector, computed in f64.
pub fn softmax(logits: ArrayView1<f32>) -> Array1<f32> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / total) as f32).collect()
}
