//! The generated forward passes against a plain ndarray implementation of
//! mini-Xception that applies batch norm unfolded, layer by layer as Keras does,
//! with the same seeded random parameters.

mod support;

use mini_xception::runtime::{
    AllocError, Isa, ParameterKind, ParameterSource, ParameterSpec, Tensor,
};
use support::{Architecture, RandomSource, assert_all_close, random_image, reference_forward};

// The library's own instances of the three models: the same generated code,
// which compiled again here at the test profile's opt-level 3 only cost CI
// time.
use mini_xception::models::{emotion::*, gender::*, paz::*};

macro_rules! check_against_reference {
    ($model:ident, $scratch:ident, $input:ident, $architecture:expr, $seed:expr) => {{
        let mut source = RandomSource::new($seed);
        let model = $model::from_source(&mut source).unwrap();
        let mut scratch = $scratch::new();
        let [height, width, _] = $model::INPUT_SHAPE;
        for image_seed in 0..3 {
            let image = random_image($seed * 100 + image_seed, height, width);
            let mut input = $input::zeroed_boxed();
            input.copy_from_view(image.view()).unwrap();
            let logits = model.logits(&input, &mut scratch);
            let probabilities = model.forward(&input, &mut scratch);
            let (expected_logits, expected_probabilities) =
                reference_forward(&source, &$architecture, image.view());
            assert_all_close("logits", &logits, expected_logits.as_slice().unwrap(), 1e-4);
            assert_all_close(
                "probabilities",
                &probabilities,
                expected_probabilities.as_slice().unwrap(),
                1e-5,
            );
            assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        source
    }};
}

#[test]
fn emotion_model_matches_the_reference() {
    let source = check_against_reference!(
        MiniXception,
        MiniXceptionScratch,
        MiniXceptionInput,
        Architecture::paper(),
        1
    );
    // Two base convs, four modules of three layers, and the head.
    let layers: std::collections::BTreeSet<&str> = source
        .given
        .keys()
        .map(|(layer, _)| layer.as_str())
        .collect();
    assert_eq!(layers.len(), 2 + 4 * 3 + 1);
    let parameters: usize = source.given.values().map(|(_, values)| values.len()).sum();
    assert_eq!(parameters, MiniXception::PARAMETERS);
}

#[test]
fn gender_model_matches_the_reference() {
    check_against_reference!(
        GenderMiniXception,
        GenderMiniXceptionScratch,
        GenderMiniXceptionInput,
        Architecture::paper(),
        2
    );
}

#[test]
fn paz_model_matches_the_reference() {
    let architecture = Architecture {
        base: 2,
        modules: vec![(2, true), (2, true), (2, true), (1, false)],
        epsilon: 1e-3,
    };
    check_against_reference!(
        MiniXceptionPaz,
        MiniXceptionPazScratch,
        MiniXceptionPazInput,
        architecture,
        3
    );
}

#[test]
fn keras_shapes_are_asked_for() {
    let source = {
        let mut source = RandomSource::new(4);
        MiniXceptionWeights::from_source(&mut source).unwrap();
        source
    };
    assert_eq!(source.get("base[0]", ParameterKind::Kernel).0, [3, 3, 1, 8]);
    assert_eq!(
        source
            .get("modules[1].separable[0]", ParameterKind::DepthwiseKernel)
            .0,
        [3, 3, 16, 1]
    );
    assert_eq!(
        source
            .get("modules[1].separable[0]", ParameterKind::PointwiseKernel)
            .0,
        [1, 1, 16, 32]
    );
    assert_eq!(
        source
            .get("modules[3].residual", ParameterKind::MovingVariance)
            .0,
        [128]
    );
    assert_eq!(source.get("head", ParameterKind::Kernel).0, [3, 3, 128, 7]);
    assert_eq!(source.get("head", ParameterKind::Bias).0, [7]);
}

/// A source that fails on one layer, as a weight file missing a tensor would.
struct FailingSource {
    inner: RandomSource,
    fail_on: &'static str,
}

/// What [`FailingSource`] reports.
#[derive(Debug, PartialEq)]
struct SourceFailure(String);

impl From<AllocError> for SourceFailure {
    fn from(error: AllocError) -> Self {
        SourceFailure(error.to_string())
    }
}

impl ParameterSource for FailingSource {
    type Error = SourceFailure;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), SourceFailure> {
        if spec.layer == self.fail_on {
            return Err(SourceFailure(format!("no {spec}")));
        }
        Ok(self.inner.read(spec, values)?)
    }
}

#[test]
fn a_source_error_is_returned_not_a_panic() {
    let mut source = FailingSource {
        inner: RandomSource::new(5),
        fail_on: "modules[2].residual",
    };
    let error = MiniXception::from_source(&mut source).err().unwrap();
    assert_eq!(error.0, "no modules[2].residual kernel (1x1x32x64)");
}

#[test]
fn the_input_type_has_the_model_file_shape() {
    assert_eq!(MiniXceptionInput::HEIGHT, 64);
    assert_eq!(MiniXceptionPazInput::WIDTH, 48);
    let _: Box<Tensor<48, 48, 1>> = MiniXceptionPazInput::zeroed_boxed();
}

#[test]
fn a_batch_gives_each_image_what_a_single_pass_gives() {
    let model = MiniXception::from_source(&mut RandomSource::new(9)).unwrap();
    let inputs: Vec<MiniXceptionInput> = (0..7)
        .map(|seed| {
            let mut input = MiniXceptionInput::zeroed_boxed();
            input
                .copy_from_view(random_image(seed, 64, 64).view())
                .unwrap();
            *input
        })
        .collect();
    let mut scratch = MiniXceptionScratch::new();
    let expected: Vec<[f32; 7]> = inputs
        .iter()
        .map(|input| model.forward(input, &mut scratch))
        .collect();
    // One scratch space per thread, in pools of up to more threads than
    // this machine's cores, and fewer scratch spaces than threads.
    for (threads, spaces) in [(1, 1), (2, 2), (3, 3), (8, 8), (8, 3)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut scratches: Vec<MiniXceptionScratch> =
            (0..spaces).map(|_| MiniXceptionScratch::new()).collect();
        let mut outputs = vec![[0.0; 7]; inputs.len()];
        let ran = pool.install(|| model.forward_batch(&inputs, &mut outputs, &mut scratches));
        assert_eq!(ran, inputs.len());
        assert_eq!(
            outputs, expected,
            "{threads} threads, {spaces} scratch spaces"
        );
    }
}

/// The scratch space's slots each hold several tensors in turn: no kernel may
/// read what an earlier tensor of the pass, or an earlier image, left there.
/// A pass over another image, scaled up so that every slot holds large
/// values, goes first; the next image's logits must be a fresh scratch
/// space's bit for bit, on every instruction set this CPU has (each has
/// kernels of its own).
macro_rules! check_scratch_reuse {
    ($model:ident, $scratch:ident, $input:ident, $seed:expr) => {{
        let [height, width, _] = $model::INPUT_SHAPE;
        let image = |seed, scale: f32| {
            let mut input = $input::zeroed_boxed();
            input
                .copy_from_view(random_image(seed, height, width).mapv(|v| v * scale).view())
                .unwrap();
            input
        };
        let (first, second) = (image($seed + 1, 1000.0), image($seed, 1.0));
        for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
            let model = $model::from_source(&mut RandomSource::new($seed))
                .unwrap()
                .with_isa(isa);
            let fresh = model.logits(&second, &mut $scratch::new());
            let mut scratch = $scratch::new();
            let before = model.logits(&first, &mut scratch);
            assert_ne!(before, fresh, "{isa:?}");
            let reused = model.logits(&second, &mut scratch);
            assert_eq!(reused.map(f32::to_bits), fresh.map(f32::to_bits), "{isa:?}");
        }
    }};
}

#[test]
fn a_used_scratch_space_gives_what_a_fresh_one_gives() {
    check_scratch_reuse!(MiniXception, MiniXceptionScratch, MiniXceptionInput, 21);
    // The 48x48 variant's last module has no pool: its residual branch is
    // added onto a separable output in a shared slot.
    check_scratch_reuse!(
        MiniXceptionPaz,
        MiniXceptionPazScratch,
        MiniXceptionPazInput,
        22
    );
}
