//! Parameter counts, MACs and shapes of the shipped models, against Keras'
//! figures (`../shared/reference/keras_layout.txt` and `macs.txt`).

// The shipped models as `mini-xception-models` compiles them (the same
// generated code; compiled again here it only cost CI time), and a test
// model of its own.
use mini_xception::models::{emotion::*, gender::*, paz::*};
mini_xception::mini_xception!("tests/models/emotion_48.yaml");

use mini_xception::runtime::LayerSummary;

fn layer(layers: &'static [LayerSummary], name: &str) -> &'static LayerSummary {
    layers
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

#[test]
fn emotion_parameters_equal_keras() {
    assert_eq!(MiniXception::PARAMETERS, 58_423);
    assert_eq!(MiniXception::TRAINABLE_PARAMETERS, 56_951);
    assert_eq!(
        MiniXception::PARAMETERS - MiniXception::TRAINABLE_PARAMETERS,
        1_472
    );
}

#[test]
fn gender_parameters_equal_keras() {
    assert_eq!(GenderMiniXception::PARAMETERS, 52_658);
    assert_eq!(GenderMiniXception::TRAINABLE_PARAMETERS, 51_186);
    assert_eq!(GenderMiniXception::LABELS, ["woman", "man"]);
}

#[test]
fn emotion_macs_equal_the_reference_per_layer_and_in_total() {
    assert_eq!(MiniXception::MACS, 10_163_392);
    assert_eq!(MiniXception48::MACS, 5_520_448);
    // Spot checks against macs.txt: conv2d_2, separable_conv2d_4, conv2d_5, conv2d_7.
    assert_eq!(layer(MiniXception::LAYERS, "base[1]").macs, 2_073_600);
    assert_eq!(
        layer(MiniXception::LAYERS, "modules[1].separable[1]").macs,
        1_180_800
    );
    assert_eq!(
        layer(MiniXception::LAYERS, "modules[2].residual").macs,
        131_072
    );
    assert_eq!(layer(MiniXception::LAYERS, "head").macs, 129_024);
    assert_eq!(
        layer(MiniXception48::LAYERS, "modules[2].residual").macs,
        73_728
    );
}

#[test]
fn output_shapes_follow_keras_including_odd_same_pools() {
    let shape = |name| layer(MiniXception::LAYERS, name).output;
    assert_eq!(shape("base[0]"), [62, 62, 8]);
    assert_eq!(shape("modules[0].pool"), [30, 30, 16]);
    assert_eq!(shape("modules[1].pool"), [15, 15, 32]);
    assert_eq!(shape("modules[2].pool"), [8, 8, 64]);
    assert_eq!(shape("modules[3].add"), [4, 4, 128]);
    assert_eq!(shape("head"), [4, 4, 7]);
    assert_eq!(
        layer(MiniXception48::LAYERS, "modules[2].add").output,
        [6, 6, 64]
    );
}

#[test]
fn paz_variant_keeps_its_last_module_size() {
    assert_eq!(MiniXceptionPaz::INPUT_SHAPE, [48, 48, 1]);
    assert_eq!(
        layer(MiniXceptionPaz::LAYERS, "base[0]").output,
        [46, 46, 5]
    );
    assert_eq!(
        layer(MiniXceptionPaz::LAYERS, "modules[2].add").output,
        [6, 6, 64]
    );
    assert_eq!(
        layer(MiniXceptionPaz::LAYERS, "modules[3].add").output,
        [6, 6, 128]
    );
    assert!(
        MiniXceptionPaz::LAYERS
            .iter()
            .all(|l| l.name != "modules[3].pool")
    );
    // The emotion model's parameters with a 5-filter first conv: 65 + 392 in
    // the base instead of 104 + 608; modules and head are unchanged.
    assert_eq!(MiniXceptionPaz::PARAMETERS, 58_423 - 104 - 608 + 65 + 392);
}

#[test]
fn summary_lists_every_layer_and_the_totals() {
    let summary = MiniXception::summary();
    assert!(
        summary.starts_with("Model: MiniXception (mini_xception.yaml)"),
        "{summary}"
    );
    for line in [
        "Total params: 58,423",
        "Trainable params: 56,951",
        "Non-trainable params: 1,472",
        "MACs per image: 10,163,392",
    ] {
        assert!(summary.contains(line), "missing {line:?} in\n{summary}");
    }
    assert_eq!(
        summary
            .lines()
            .filter(|l| l.starts_with("modules["))
            .count(),
        4 * 5
    );
}

#[test]
fn constants_describe_the_model_file() {
    assert_eq!(MiniXception::NAME, "MiniXception");
    // The path as the macro call in `models/src/lib.rs` writes it.
    assert_eq!(MiniXception::SOURCE, "mini_xception.yaml");
    assert_eq!(MiniXception::NUM_CLASSES, 7);
    assert_eq!(MiniXception::LABELS[6], "neutral");
}

/// The distillation teacher, `models/mini_xception_wide.yaml`: every width
/// doubled. Counted by hand as Keras counts: base 144 + 2,304 weights and
/// 2 x 64 batch-norm values; modules 32, 64, 128 and 256 (a 1x1 residual,
/// two separable convolutions, three batch norms each) 2,864 + 9,824 +
/// 36,032 + 137,600; head 3 x 3 x 256 x 7 + 7. About 3.5 times the
/// 58,423 of the emotion model.
#[test]
fn the_wide_teacher_is_the_emotion_model_at_twice_the_width() {
    use mini_xception::models::wide::MiniXceptionWide;
    assert_eq!(MiniXceptionWide::INPUT_SHAPE, MiniXception::INPUT_SHAPE);
    assert_eq!(
        MiniXceptionWide::PARAMETERS,
        144 + 2_304 + 2 * 64 + 2_864 + 9_824 + 36_032 + 137_600 + 3 * 3 * 256 * 7 + 7
    );
    // Per layer, by hand: base 553,536 + 8,294,400; modules (residual,
    // depthwise, pointwise, depthwise, pointwise) 7,545,600 + 6,768,000 +
    // 6,442,688 + 7,036,928; head 4 x 4 x 9 x 256 x 7. About 3.6 times the
    // emotion model's 10,163,392.
    assert_eq!(
        MiniXceptionWide::MACS,
        553_536 + 8_294_400 + 7_545_600 + 6_768_000 + 6_442_688 + 7_036_928 + 258_048
    );
}
