//! Shared by the integration tests: a seeded random weight source that keeps
//! what it hands out, and a plain ndarray forward pass of mini-Xception that
//! uses those unfolded Keras parameters.

#![allow(dead_code)]

use mini_xception::runtime::reference;
use mini_xception::runtime::{Padding, ParameterKind, ParameterSource, ParameterSpec};
use ndarray::{Array1, Array3, ArrayView1, ArrayView3, ArrayView4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The parameters handed out, by `(layer, Keras name)`: shape and values.
pub type Given = BTreeMap<(String, &'static str), (Vec<usize>, Vec<f32>)>;

/// Hands out seeded random parameters of plausible scale and records them by
/// `(layer, kind)`, so a reference implementation can use the same values.
pub struct RandomSource {
    rng: StdRng,
    pub given: Given,
}

impl RandomSource {
    pub fn new(seed: u64) -> Self {
        RandomSource {
            rng: StdRng::seed_from_u64(seed),
            given: BTreeMap::new(),
        }
    }

    pub fn get(&self, layer: &str, kind: ParameterKind) -> (&[usize], &[f32]) {
        let (shape, values) = self
            .given
            .get(&(layer.to_string(), kind.keras_name()))
            .unwrap_or_else(|| panic!("the model never asked for {layer} {}", kind.keras_name()));
        (shape, values)
    }
}

impl ParameterSource for RandomSource {
    /// Only the weights' own allocation can fail.
    type Error = mini_xception::runtime::AllocError;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), Self::Error> {
        assert_eq!(values.len(), spec.len(), "{spec}: buffer length");
        // Kernels get unit-variance outputs (uniform with variance 1 / fan-in);
        // batch norm statistics stay in ranges a trained network has.
        let shape = spec.shape;
        let (low, high) = match spec.kind {
            ParameterKind::Kernel | ParameterKind::PointwiseKernel => {
                let fan_in = (shape[0] * shape[1] * shape[2]) as f32;
                let bound = (3.0 / fan_in).sqrt();
                (-bound, bound)
            }
            ParameterKind::DepthwiseKernel => {
                let bound = (3.0 / (shape[0] * shape[1]) as f32).sqrt();
                (-bound, bound)
            }
            ParameterKind::Bias | ParameterKind::Beta | ParameterKind::MovingMean => (-0.5, 0.5),
            ParameterKind::Gamma | ParameterKind::MovingVariance => (0.5, 1.5),
        };
        for value in values.iter_mut() {
            *value = self.rng.random_range(low..high);
        }
        let key = (spec.layer.to_string(), spec.kind.keras_name());
        let previous = self.given.insert(key, (shape.to_vec(), values.to_vec()));
        assert!(previous.is_none(), "{spec} was asked for twice");
        Ok(())
    }
}

/// What the reference forward pass needs to know of a model file.
pub struct Architecture {
    pub base: usize,
    /// Per module: the residual stride and whether it has a max pool.
    pub modules: Vec<(usize, bool)>,
    pub epsilon: f32,
}

impl Architecture {
    pub fn paper() -> Self {
        Architecture {
            base: 2,
            modules: vec![(2, true); 4],
            epsilon: 1e-3,
        }
    }
}

fn kernel4<'a>(shape: &[usize], values: &'a [f32]) -> ArrayView4<'a, f32> {
    ArrayView4::from_shape((shape[0], shape[1], shape[2], shape[3]), values).unwrap()
}

fn batch_norm(source: &RandomSource, layer: &str, x: ArrayView3<f32>, epsilon: f32) -> Array3<f32> {
    let get = |kind| ArrayView1::from(source.get(layer, kind).1);
    reference::batch_norm(
        x,
        get(ParameterKind::Gamma),
        get(ParameterKind::Beta),
        get(ParameterKind::MovingMean),
        get(ParameterKind::MovingVariance),
        epsilon,
    )
}

fn separable(source: &RandomSource, layer: &str, x: ArrayView3<f32>) -> Array3<f32> {
    let (shape, depthwise) = source.get(layer, ParameterKind::DepthwiseKernel);
    let depthwise = ArrayView3::from_shape((shape[0], shape[1], shape[2]), depthwise).unwrap();
    let spatial = reference::depthwise_conv2d(x, depthwise, 1, Padding::Same);
    let (shape, pointwise) = source.get(layer, ParameterKind::PointwiseKernel);
    reference::conv2d(
        spatial.view(),
        kernel4(shape, pointwise),
        None,
        1,
        Padding::Valid,
    )
}

/// The unfolded forward pass, layer by layer as Keras runs it: `(logits, probabilities)`.
pub fn reference_forward(
    source: &RandomSource,
    architecture: &Architecture,
    input: ArrayView3<f32>,
) -> (Array1<f32>, Array1<f32>) {
    let epsilon = architecture.epsilon;
    let mut x = input.to_owned();
    for i in 0..architecture.base {
        let layer = format!("base[{i}]");
        let (shape, kernel) = source.get(&layer, ParameterKind::Kernel);
        let conv = reference::conv2d(x.view(), kernel4(shape, kernel), None, 1, Padding::Valid);
        x = reference::relu(batch_norm(source, &layer, conv.view(), epsilon).view());
    }
    for (i, &(residual_stride, pool)) in architecture.modules.iter().enumerate() {
        let first = format!("modules[{i}].separable[0]");
        let second = format!("modules[{i}].separable[1]");
        let main = separable(source, &first, x.view());
        let main = reference::relu(batch_norm(source, &first, main.view(), epsilon).view());
        let main = separable(source, &second, main.view());
        let mut main = batch_norm(source, &second, main.view(), epsilon);
        if pool {
            main = reference::max_pool(main.view(), 3, 2, Padding::Same);
        }
        let layer = format!("modules[{i}].residual");
        let (shape, kernel) = source.get(&layer, ParameterKind::Kernel);
        let residual = reference::conv2d(
            x.view(),
            kernel4(shape, kernel),
            None,
            residual_stride,
            Padding::Same,
        );
        x = main + batch_norm(source, &layer, residual.view(), epsilon);
    }
    let (shape, kernel) = source.get("head", ParameterKind::Kernel);
    let bias = ArrayView1::from(source.get("head", ParameterKind::Bias).1);
    let head = reference::conv2d(
        x.view(),
        kernel4(shape, kernel),
        Some(bias),
        1,
        Padding::Same,
    );
    let logits = reference::global_average_pool(head.view());
    let probabilities = reference::softmax(logits.view());
    (logits, probabilities)
}

/// A seeded random image in [-1, 1), as the models' inputs are normalised.
pub fn random_image(seed: u64, height: usize, width: usize) -> Array3<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array3::from_shape_fn((height, width, 1), |_| rng.random_range(-1.0..1.0))
}

/// Asserts `|actual - expected| <= tolerance * max(1, |expected|)` element-wise.
pub fn assert_all_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let bound = tolerance * e.abs().max(1.0);
        assert!(
            (a - e).abs() <= bound,
            "{what}[{i}]: {a} differs from the reference {e} by more than {bound}"
        );
    }
}

// Not every test binary that includes this module reads the reference files.
#[allow(unused_imports)]
pub use mini_xception_testdata::shared;
