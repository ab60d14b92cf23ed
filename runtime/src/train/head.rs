//! The end of the network while training: global average pooling to
//! logits, the loss, and their backward passes.

use crate::global_pool::{global_average_pool, global_average_pool_backward};
use crate::loss::{
    Distillation, LabelOutOfRange, distillation_cross_entropy_into, softmax_cross_entropy_into,
};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// `logits[i] = global_average_pool(head_outputs[i])`.
pub fn logits_forward<const H: usize, const W: usize, const C: usize>(
    head_outputs: &[Tensor<H, W, C>],
    logits: &mut [[f32; C]],
) {
    logits
        .par_iter_mut()
        .zip(head_outputs)
        .for_each(|(logits, output)| *logits = global_average_pool(output));
}

/// The batch's mean softmax cross-entropy (labels smoothed by `smoothing`),
/// summed in image order, and each image's logit gradient of that mean;
/// `logits` and `logit_gradients` hold `classes` values per image. A label
/// out of range is an error, found before any gradient is written.
pub fn loss_backward(
    logits: &[f32],
    classes: usize,
    labels: &[usize],
    smoothing: f32,
    logit_gradients: &mut [f32],
) -> Result<f64, LabelOutOfRange> {
    distilled_loss_backward(logits, classes, labels, smoothing, None, logit_gradients)
}

/// [`loss_backward`] with, when given, a teacher's probabilities
/// (`classes` per image) and how they count
/// ([`distillation_cross_entropy_into`]).
pub fn distilled_loss_backward(
    logits: &[f32],
    classes: usize,
    labels: &[usize],
    smoothing: f32,
    teacher: Option<(&[f32], Distillation)>,
    logit_gradients: &mut [f32],
) -> Result<f64, LabelOutOfRange> {
    if let Some(&label) = labels.iter().find(|&&label| label >= classes) {
        return Err(LabelOutOfRange { label, classes });
    }
    let images = labels.len().max(1);
    let scale = 1.0 / images as f32;
    let mut total = 0.0;
    let per_image = classes.max(1);
    for (image, ((logits, &label), gradient)) in logits
        .chunks_exact(per_image)
        .zip(labels)
        .zip(logit_gradients.chunks_exact_mut(per_image))
        .enumerate()
    {
        let targets = teacher.and_then(|(probabilities, distillation)| {
            let start = image * per_image;
            Some((probabilities.get(start..start + per_image)?, distillation))
        });
        total += match targets {
            Some((targets, distillation)) => distillation_cross_entropy_into(
                logits,
                label,
                smoothing,
                targets,
                distillation,
                scale,
                gradient,
            )?,
            None => softmax_cross_entropy_into(logits, label, smoothing, scale, gradient)?,
        };
    }
    Ok(total / images as f64)
}

/// The backward pass of [`logits_forward`]: overwrites `head_gradients`.
pub fn logits_backward<const H: usize, const W: usize, const C: usize>(
    logit_gradients: &[[f32; C]],
    head_gradients: &mut [Tensor<H, W, C>],
) {
    head_gradients
        .par_iter_mut()
        .zip(logit_gradients)
        .for_each(|(gradient, logits)| global_average_pool_backward(logits, gradient));
}
