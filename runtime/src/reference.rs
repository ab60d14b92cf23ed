//! Plain ndarray implementations of every op, written for clarity, not speed.
//!
//! They share no code with the kernels: the kernels' tests and the end-to-end
//! tests of generated models compare against these, so a mistake would have to
//! be made twice, in two different styles, to go unnoticed. Layouts follow
//! Keras: images are `(height, width, channels)`, kernels `(kh, kw, in, out)`.

use crate::geometry::Padding;
use ndarray::{Array1, Array3, ArrayView1, ArrayView3, ArrayView4};

/// The element types the references take: `f32` as the kernels use, and
/// `f64` for the finite differences of the gradient checks. Every sum is
/// taken in f64 either way.
pub trait Real: Copy + PartialOrd + std::fmt::Debug {
    /// The value as f64, exactly.
    fn to_f64(self) -> f64;
    /// The nearest value to `value`.
    fn from_f64(value: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
    }
}

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
pub fn conv2d<T: Real>(
    input: ArrayView3<T>,
    kernel: ArrayView4<T>,
    bias: Option<ArrayView1<T>>,
    stride: usize,
    padding: Padding,
) -> Array3<T> {
    let (height, width, channels) = input.dim();
    let (kernel_h, kernel_w, kernel_in, filters) = kernel.dim();
    assert_eq!(channels, kernel_in, "kernel input channels");
    let (out_h, pad_top) = axis(height, kernel_h, stride, padding);
    let (out_w, pad_left) = axis(width, kernel_w, stride, padding);
    let mut output = Array3::from_elem((out_h, out_w, filters), T::from_f64(0.0));
    for oy in 0..out_h {
        for ox in 0..out_w {
            for f in 0..filters {
                let mut sum = bias.map_or(0.0, |b| b[f].to_f64());
                for ky in 0..kernel_h {
                    let Some(iy) = source_index(oy, ky, stride, pad_top, height) else {
                        continue;
                    };
                    for kx in 0..kernel_w {
                        let Some(ix) = source_index(ox, kx, stride, pad_left, width) else {
                            continue;
                        };
                        for c in 0..channels {
                            sum += input[[iy, ix, c]].to_f64() * kernel[[ky, kx, c, f]].to_f64();
                        }
                    }
                }
                output[[oy, ox, f]] = T::from_f64(sum);
            }
        }
    }
    output
}

/// A depthwise convolution with depth multiplier 1; `kernel` is `(kh, kw, channels)`.
pub fn depthwise_conv2d<T: Real>(
    input: ArrayView3<T>,
    kernel: ArrayView3<T>,
    stride: usize,
    padding: Padding,
) -> Array3<T> {
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
                sum += input[[iy, ix, c]].to_f64() * kernel[[ky, kx, c]].to_f64();
            }
        }
        T::from_f64(sum)
    })
}

/// Max pooling; padded cells never win (they count as minus infinity).
pub fn max_pool<T: Real>(
    input: ArrayView3<T>,
    window: usize,
    stride: usize,
    padding: Padding,
) -> Array3<T> {
    let (height, width, channels) = input.dim();
    let (out_h, pad_top) = axis(height, window, stride, padding);
    let (out_w, pad_left) = axis(width, window, stride, padding);
    Array3::from_shape_fn((out_h, out_w, channels), |(oy, ox, c)| {
        let mut best = T::from_f64(f64::NEG_INFINITY);
        for ky in 0..window {
            let Some(iy) = source_index(oy, ky, stride, pad_top, height) else {
                continue;
            };
            for kx in 0..window {
                let Some(ix) = source_index(ox, kx, stride, pad_left, width) else {
                    continue;
                };
                if input[[iy, ix, c]] > best {
                    best = input[[iy, ix, c]];
                }
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
pub fn global_average_pool<T: Real>(input: ArrayView3<T>) -> Array1<T> {
    let (height, width, channels) = input.dim();
    Array1::from_shape_fn(channels, |c| {
        let sum: f64 = input
            .slice(ndarray::s![.., .., c])
            .iter()
            .map(|&v| v.to_f64())
            .sum();
        T::from_f64(sum / (height * width) as f64)
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

/// Training-mode batch normalisation of a whole batch, as Keras computes it
/// while training: every channel is normalised with the mean and the biased
/// variance over all images and positions of the batch. Returns the outputs
/// and the batch's per-channel mean and biased variance.
pub fn batch_norm_training<T: Real>(
    batch: &[ArrayView3<T>],
    gamma: ArrayView1<T>,
    beta: ArrayView1<T>,
    epsilon: f64,
) -> (Vec<Array3<T>>, Array1<f64>, Array1<f64>) {
    let channels = gamma.len();
    let count: usize = batch.iter().map(|x| x.len() / channels).sum();
    let mean = Array1::from_shape_fn(channels, |c| {
        let sum: f64 = batch
            .iter()
            .flat_map(|x| x.slice(ndarray::s![.., .., c]).to_owned())
            .map(|v| v.to_f64())
            .sum();
        sum / count as f64
    });
    let variance = Array1::from_shape_fn(channels, |c| {
        let sum: f64 = batch
            .iter()
            .flat_map(|x| x.slice(ndarray::s![.., .., c]).to_owned())
            .map(|v| (v.to_f64() - mean[c]).powi(2))
            .sum();
        sum / count as f64
    });
    let outputs = batch
        .iter()
        .map(|x| {
            Array3::from_shape_fn(x.dim(), |(y, xx, c)| {
                let normalised =
                    (x[[y, xx, c]].to_f64() - mean[c]) / (variance[c] + epsilon).sqrt();
                T::from_f64(gamma[c].to_f64() * normalised + beta[c].to_f64())
            })
        })
        .collect();
    (outputs, mean, variance)
}

/// The cross-entropy between the softmax of `logits` and the label
/// distribution that puts `1 - smoothing` on `label` and spreads `smoothing`
/// evenly over all classes, computed in f64.
pub fn softmax_cross_entropy<T: Real>(logits: ArrayView1<T>, label: usize, smoothing: f64) -> f64 {
    let classes = logits.len();
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
    let log_total = logits
        .iter()
        .map(|&v| (v.to_f64() - max).exp())
        .sum::<f64>()
        .ln();
    logits
        .iter()
        .enumerate()
        .map(|(class, &v)| {
            let target =
                smoothing / classes as f64 + if class == label { 1.0 - smoothing } else { 0.0 };
            -target * (v.to_f64() - max - log_total)
        })
        .sum()
}
