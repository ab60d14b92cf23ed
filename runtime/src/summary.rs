//! A Keras-style summary table of a generated model.

use std::fmt::Write;

/// One row of a model summary: a YAML layer with what it computes and costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// The YAML layer, e.g. `modules[1].separable[0]`.
    pub name: &'static str,
    /// What it computes, e.g. `SeparableConv2D 3x3 same + BN + ReLU`.
    pub operation: &'static str,
    /// Its output shape: `[H, W, C]`, or `[classes]` after pooling.
    pub output: &'static [usize],
    /// Keras parameters, batch norm statistics included.
    pub parameters: usize,
    /// The part of `parameters` that training does not update (batch norm
    /// moving means and variances).
    pub non_trainable_parameters: usize,
    /// Multiply-accumulates per image.
    pub macs: usize,
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Renders the table with totals, as Keras' `model.summary()` would, plus MACs.
pub fn render_summary(model: &str, source: &str, layers: &[LayerSummary]) -> String {
    let shape = |dims: &[usize]| {
        dims.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x")
    };
    let name_width = layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let op_width = layers
        .iter()
        .map(|l| l.operation.len())
        .max()
        .unwrap_or(0)
        .max(9);
    let rule = "=".repeat(name_width + op_width + 44);
    let mut out = String::new();
    // Writing to a String cannot fail, so the results are ignored.
    let _ = writeln!(out, "Model: {model} ({source})");
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "{:name_width$}  {:op_width$}  {:>14}  {:>10}  {:>12}",
        "Layer", "Operation", "Output shape", "Params", "MACs"
    );
    let _ = writeln!(out, "{}", "-".repeat(rule.len()));
    for layer in layers {
        let _ = writeln!(
            out,
            "{:name_width$}  {:op_width$}  {:>14}  {:>10}  {:>12}",
            layer.name,
            layer.operation,
            shape(layer.output),
            thousands(layer.parameters),
            thousands(layer.macs)
        );
    }
    let total: usize = layers.iter().map(|l| l.parameters).sum();
    let frozen: usize = layers.iter().map(|l| l.non_trainable_parameters).sum();
    let macs: usize = layers.iter().map(|l| l.macs).sum();
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "Total params: {}", thousands(total));
    let _ = writeln!(out, "Trainable params: {}", thousands(total - frozen));
    let _ = writeln!(out, "Non-trainable params: {}", thousands(frozen));
    let _ = writeln!(
        out,
        "MACs per image: {} ({} FLOPs)",
        thousands(macs),
        thousands(2 * macs)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(58_423), "58,423");
        assert_eq!(thousands(10_163_392), "10,163,392");
    }

    #[test]
    fn the_table_totals_its_rows() {
        let layers = [
            LayerSummary {
                name: "base[0]",
                operation: "Conv2D",
                output: &[62, 62, 8],
                parameters: 104,
                non_trainable_parameters: 16,
                macs: 276_768,
            },
            LayerSummary {
                name: "head",
                operation: "Conv2D",
                output: &[4, 4, 7],
                parameters: 8071,
                non_trainable_parameters: 0,
                macs: 129_024,
            },
        ];
        let table = render_summary("Tiny", "tiny.yaml", &layers);
        assert!(table.contains("Total params: 8,175"), "{table}");
        assert!(table.contains("Trainable params: 8,159"), "{table}");
        assert!(table.contains("Non-trainable params: 16"), "{table}");
        assert!(table.contains("MACs per image: 405,792"), "{table}");
        assert!(table.contains("62x62x8"), "{table}");
    }
}
