//! The training loss: softmax cross-entropy with optional label smoothing,
//! and its gradient with respect to the logits.

/// A label that is not one of the model's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelOutOfRange {
    /// The label given.
    pub label: usize,
    /// The number of classes.
    pub classes: usize,
}

impl std::fmt::Display for LabelOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "label {} is out of range for {} classes",
            self.label, self.classes
        )
    }
}

impl std::error::Error for LabelOutOfRange {}

/// The cross-entropy of `softmax(logits)` against the target distribution
/// that puts `1 - smoothing` on `label` and `smoothing` spread evenly over
/// all `N` classes (Keras' `label_smoothing`), and the gradient of
/// `scale * loss` with respect to the logits, `scale * (softmax - target)`.
///
/// A batch's mean loss takes `scale = 1 / batch` for each image. Computed in
/// f64 from the logits, as TensorFlow's `softmax_cross_entropy_with_logits`
/// does (it never takes the log of a rounded probability).
pub fn softmax_cross_entropy<const N: usize>(
    logits: &[f32; N],
    label: usize,
    smoothing: f32,
    scale: f32,
) -> Result<(f64, [f32; N]), LabelOutOfRange> {
    let mut gradient = [0.0f32; N];
    let loss = softmax_cross_entropy_into(logits, label, smoothing, scale, &mut gradient)?;
    Ok((loss, gradient))
}

/// [`softmax_cross_entropy`] for a number of classes known only at run
/// time: `logits.len()` classes, the gradient written to `gradient` (of the
/// same length; extra values on either side are ignored).
pub fn softmax_cross_entropy_into(
    logits: &[f32],
    label: usize,
    smoothing: f32,
    scale: f32,
    gradient: &mut [f32],
) -> Result<f64, LabelOutOfRange> {
    let classes = logits.len();
    if label >= classes {
        return Err(LabelOutOfRange { label, classes });
    }
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let total: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let log_total = total.ln();
    let smoothing = smoothing as f64;
    let mut loss = 0.0;
    for (class, (&logit, g)) in logits.iter().zip(gradient.iter_mut()).enumerate() {
        let target =
            smoothing / classes as f64 + if class == label { 1.0 - smoothing } else { 0.0 };
        let log_probability = logit as f64 - max - log_total;
        loss -= target * log_probability;
        *g = ((log_probability.exp() - target) * scale as f64) as f32;
    }
    Ok(loss)
}

/// Knowledge distillation (Hinton, Vinyals and Dean, 2015): how much a
/// teacher's probabilities count in a step's loss, and at what temperature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distillation {
    /// The teacher's share `a` of the loss: `(1 - a) * CE(label, softmax(z))
    /// + a * T^2 * CE(teacher, softmax(z / T))`.
    pub weight: f32,
    /// The temperature `T` of the student's softmax in the teacher's term
    /// (the teacher's probabilities are given already at it).
    pub temperature: f32,
}

/// The distilled loss of one image, `(1 - a) * CE(label) + a * T^2 *
/// CE(teacher, softmax(logits / T))` with `a` and `T` from `distillation`
/// and the label term as [`softmax_cross_entropy_into`] (smoothed), and the
/// gradient of `scale * loss` with respect to the logits, `scale * ((1 - a)
/// * (softmax(z) - target) + a * T * (softmax(z / T) - teacher))`. The `T^2`
/// keeps the teacher's gradient on the scale of the label's whatever `T`.
/// `teacher` holds one probability per class.
pub fn distillation_cross_entropy_into(
    logits: &[f32],
    label: usize,
    smoothing: f32,
    teacher: &[f32],
    distillation: Distillation,
    scale: f32,
    gradient: &mut [f32],
) -> Result<f64, LabelOutOfRange> {
    let (weight, temperature) = (
        distillation.weight as f64,
        (distillation.temperature as f64).max(f64::MIN_POSITIVE),
    );
    let label_loss = softmax_cross_entropy_into(
        logits,
        label,
        smoothing,
        ((1.0 - weight) * scale as f64) as f32,
        gradient,
    )?;
    let softened = |v: f32| v as f64 / temperature;
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(softened(v)));
    let log_total = logits
        .iter()
        .map(|&v| (softened(v) - max).exp())
        .sum::<f64>()
        .ln();
    let mut teacher_loss = 0.0;
    let teacher_scale = weight * temperature * scale as f64;
    for ((&logit, &target), g) in logits.iter().zip(teacher).zip(gradient.iter_mut()) {
        let log_probability = softened(logit) - max - log_total;
        teacher_loss -= target as f64 * log_probability;
        *g += (teacher_scale * (log_probability.exp() - target as f64)) as f32;
    }
    Ok((1.0 - weight) * label_loss + weight * temperature * temperature * teacher_loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::test_support::{assert_gradient_close, numeric_gradient, widen};
    use ndarray::ArrayView1;

    #[test]
    fn loss_and_gradient_match_the_reference_and_finite_differences() {
        let logits = [0.3f32, -1.2, 2.5, 0.0, -0.7];
        for (label, smoothing) in [(2, 0.0f32), (4, 0.0), (1, 0.1), (0, 0.3)] {
            let (loss, gradient) = softmax_cross_entropy(&logits, label, smoothing, 0.25).unwrap();
            let expected = reference::softmax_cross_entropy(
                ArrayView1::from(&logits),
                label,
                smoothing as f64,
            );
            assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
            let numeric = numeric_gradient(&widen(&logits), 1e-4, |x| {
                0.25 * reference::softmax_cross_entropy(
                    ArrayView1::from(x),
                    label,
                    smoothing as f64,
                )
            });
            assert_gradient_close("logits", &gradient, &numeric, 1e-6);
        }
    }

    #[test]
    fn the_distilled_loss_and_gradient_match_finite_differences() {
        let logits = [0.3f32, -1.2, 2.5, 0.0, -0.7];
        let teacher = [0.1f32, 0.05, 0.6, 0.2, 0.05];
        // The loss in f64, straight from its definition.
        let loss = |z: &[f64], label: usize, smoothing: f64, a: f64, t: f64| {
            let log_softmax = |z: Vec<f64>| {
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = z.iter().map(|v| (v - max).exp()).sum();
                z.iter().map(|v| v - max - total.ln()).collect::<Vec<_>>()
            };
            let plain = log_softmax(z.to_vec());
            let soft = log_softmax(z.iter().map(|v| v / t).collect());
            let n = z.len() as f64;
            let label_term: f64 = (0..z.len())
                .map(|c| {
                    -(smoothing / n + if c == label { 1.0 - smoothing } else { 0.0 }) * plain[c]
                })
                .sum();
            let teacher_term: f64 = (0..z.len()).map(|c| -(teacher[c] as f64) * soft[c]).sum();
            (1.0 - a) * label_term + a * t * t * teacher_term
        };
        for (label, smoothing, weight, temperature) in [
            (2, 0.0f32, 0.5f32, 1.0f32),
            (0, 0.1, 0.7, 4.0),
            (4, 0.0, 1.0, 2.0),
        ] {
            let distillation = Distillation {
                weight,
                temperature,
            };
            let mut gradient = [0.0f32; 5];
            let value = distillation_cross_entropy_into(
                &logits,
                label,
                smoothing,
                &teacher,
                distillation,
                0.25,
                &mut gradient,
            )
            .unwrap();
            let (a, t, e) = (weight as f64, temperature as f64, smoothing as f64);
            let expected = loss(&widen(&logits), label, e, a, t);
            assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
            let numeric =
                numeric_gradient(&widen(&logits), 1e-4, |z| 0.25 * loss(z, label, e, a, t));
            assert_gradient_close("logits", &gradient, &numeric, 1e-6);
        }
        // With no weight on the teacher it is the plain (smoothed) loss.
        let mut distilled = [0.0f32; 5];
        let mut plain = [0.0f32; 5];
        let none = Distillation {
            weight: 0.0,
            temperature: 3.0,
        };
        let a =
            distillation_cross_entropy_into(&logits, 1, 0.1, &teacher, none, 1.0, &mut distilled);
        let b = softmax_cross_entropy_into(&logits, 1, 0.1, 1.0, &mut plain);
        assert_eq!((a, distilled), (b, plain));
    }

    #[test]
    fn without_smoothing_the_loss_is_minus_the_log_probability() {
        let logits = [1.0f32, 2.0, 3.0];
        let (loss, gradient) = softmax_cross_entropy(&logits, 0, 0.0, 1.0).unwrap();
        let probability = 1.0f64.exp() / (1.0f64.exp() + 2.0f64.exp() + 3.0f64.exp());
        assert!((loss + probability.ln()).abs() < 1e-12);
        assert!((gradient[0] as f64 - (probability - 1.0)).abs() < 1e-7);
        assert!(gradient.iter().map(|&g| g as f64).sum::<f64>().abs() < 1e-6);
    }

    #[test]
    fn huge_logits_stay_finite_and_bad_labels_are_errors() {
        let (loss, gradient) = softmax_cross_entropy(&[1000.0f32, -1000.0], 1, 0.0, 1.0).unwrap();
        assert!((loss - 2000.0).abs() < 1e-9);
        assert!(gradient.iter().all(|g| g.is_finite()));
        assert_eq!(
            softmax_cross_entropy(&[0.0f32; 3], 3, 0.0, 1.0),
            Err(LabelOutOfRange {
                label: 3,
                classes: 3
            })
        );
    }
}

/// Keras' `l2(factor)` penalty of a kernel: `factor * sum(w^2)`, in f64.
pub fn l2_penalty(weights: &[f32], factor: f32) -> f64 {
    factor as f64 * weights.iter().map(|&w| w as f64 * w as f64).sum::<f64>()
}

/// Adds the gradient of [`l2_penalty`], `2 * factor * w`, to `gradient`.
pub fn l2_backward(weights: &[f32], factor: f32, gradient: &mut [f32]) {
    let twice = 2.0 * factor;
    for (g, &w) in gradient.iter_mut().zip(weights) {
        *g += twice * w;
    }
}

#[cfg(test)]
mod l2_tests {
    use super::*;
    use crate::test_support::{assert_gradient_close, numeric_gradient, widen};

    #[test]
    fn l2_gradient_matches_finite_differences() {
        let weights = [0.5f32, -1.5, 0.25, 2.0];
        assert!(
            (l2_penalty(&weights, 0.01) - 0.01f32 as f64 * (0.25 + 2.25 + 0.0625 + 4.0)).abs()
                < 1e-12
        );
        let mut gradient = [1.0f32; 4];
        l2_backward(&weights, 0.01, &mut gradient);
        let numeric = numeric_gradient(&widen(&weights), 1e-3, |w| {
            0.01 * w.iter().map(|v| v * v).sum::<f64>() + w.iter().sum::<f64>()
        });
        assert_gradient_close("weights", &gradient, &numeric, 1e-6);
    }
}
