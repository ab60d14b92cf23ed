//! Softmax over class logits.

/// `exp(x - max) / sum(exp(x - max))`, stable for large logits.
#[inline(always)]
pub fn softmax<const N: usize>(logits: &[f32; N]) -> [f32; N] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps = logits.map(|v| (v - max).exp());
    let total: f32 = exps.iter().sum();
    exps.map(|e| e / total)
}

/// [`softmax`] of a slice, with the same arithmetic, for a number of
/// classes known only at run time.
pub fn softmax_slice(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// The index of the largest value (the first one on ties), or 0 when empty.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate() {
        if value > values[best] {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use ndarray::ArrayView1;

    #[test]
    fn matches_the_reference_and_sums_to_one() {
        let logits = [1.5f32, -0.25, 3.0, 0.0, 2.75];
        let probabilities = softmax(&logits);
        let expected = reference::softmax(ArrayView1::from(&logits));
        for (p, e) in probabilities.iter().zip(expected.iter()) {
            assert!((p - e).abs() <= 1e-7, "{p} vs {e}");
        }
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() <= 1e-6);
        assert_eq!(argmax(&probabilities), 2);
        assert_eq!(softmax_slice(&logits), probabilities.to_vec());
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let probabilities = softmax(&[1000.0f32, 999.0]);
        assert!(probabilities.iter().all(|p| p.is_finite()));
        assert!((probabilities[0] - 0.731_058_6).abs() < 1e-6);
    }
}
