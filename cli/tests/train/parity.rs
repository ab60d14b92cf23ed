//! The trainer against Keras: three Adam steps of the emotion model and of a
//! small model, from the same initial weights on the same batches, compared
//! element-wise with what TensorFlow 2.15 computed
//! (`scripts/keras_training_reference.py`, outputs in `tests/training/`).

use mini_xception::runtime::train::{TrainableModel, read_training_state};
use mini_xception::runtime::{
    BatchNormParameters, BatchStatistics, Isa, ParameterSource, ParameterSpec, Tensor, bytemuck,
    flat, flat_mut,
};
use mini_xception::train::{Trainer, TrainerOptions};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

// The small model, compiled once for the whole binary in `main.rs`.
use super::{TinyTrain, TinyTrainInput};
// The library's own compiled models (models/mini_xception.yaml):
// compiling them again here would only cost build time.
use mini_xception::models::emotion::*;

/// A Keras reference file.
struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn open(name: &str) -> Self {
        let path = format!("{}/tests/training/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Self { bytes }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("a safetensors file")
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let tensors = self.tensors();
        let tensor = tensors
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"));
        assert_eq!(tensor.dtype(), Dtype::F32, "{name}");
        tensor
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn shape(&self, name: &str) -> Vec<usize> {
        self.tensors().tensor(name).unwrap().shape().to_vec()
    }

    fn bytes_of(&self, name: &str) -> Vec<u8> {
        self.tensors().tensor(name).unwrap().data().to_vec()
    }
}

/// Serves `{prefix}{layer}.{kind}` tensors of a reference as parameters.
struct ReferenceSource<'r> {
    reference: &'r Reference,
    prefix: &'static str,
}

/// A tensor [`ReferenceSource`] lacks, or a failed allocation.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug when a test fails
struct ReferenceMissing(String);

impl From<mini_xception::runtime::AllocError> for ReferenceMissing {
    fn from(error: mini_xception::runtime::AllocError) -> Self {
        ReferenceMissing(error.to_string())
    }
}

impl ParameterSource for ReferenceSource<'_> {
    type Error = ReferenceMissing;

    fn read(
        &mut self,
        spec: &ParameterSpec<'_>,
        values: &mut [f32],
    ) -> Result<(), ReferenceMissing> {
        let name = format!("{}{}.{}", self.prefix, spec.layer, spec.kind.keras_name());
        if self.reference.shape(&name) != spec.shape {
            return Err(ReferenceMissing(format!(
                "{name}: shape {:?}, expected {:?}",
                self.reference.shape(&name),
                spec.shape
            )));
        }
        values.copy_from_slice(&self.reference.f32s(&name));
        Ok(())
    }
}

/// The largest difference between two tensors, relative to the reference's
/// largest magnitude.
fn relative_difference(actual: &[f32], expected: &[f32]) -> f64 {
    let scale = expected
        .iter()
        .fold(0.0f64, |m, &v| m.max((v as f64).abs()))
        .max(1e-30);
    actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| (a as f64 - e as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

/// The layers whose ReLU input has values within `1e-5` of zero in the
/// last forward pass, with how many: at such a kink, rounding can put a value
/// on the other side of zero than in Keras, and the gradient of everything
/// before that layer changes with it (by about one pixel's share).
type Kinks<M> = fn(
    &<M as TrainableModel>::Workspace,
    &<M as TrainableModel>::Parameters,
) -> Vec<(&'static str, usize)>;

/// Values of a batch norm's output (before its ReLU) within `1e-5` of zero.
fn near_zero<const H: usize, const W: usize, const C: usize>(
    inputs: &[Tensor<H, W, C>],
    statistics: &BatchStatistics<C>,
    parameters: &BatchNormParameters<C>,
) -> usize {
    inputs
        .iter()
        .flat_map(|image| image.data.as_flattened())
        .map(|pixel| {
            (0..C)
                .filter(|&c| {
                    let normalised =
                        (pixel[c] - statistics.mean[c]) * statistics.inverse_deviation[c];
                    (normalised * parameters.gamma[c] + parameters.beta[c]).abs() < 1e-5
                })
                .count()
        })
        .sum()
}

/// With `restart` set, every step after the first starts from Keras'
/// parameters and statistics after the step before (Adam's moments stay
/// ours), so that a weight whose step a kink flipped does not carry its
/// difference into the later steps' losses. The reference has no gradients
/// of the later steps, so there a kink or a max-pool window whose two largest
/// cells are within rounding of each other (which sends a gradient to
/// another cell than Keras) cannot be told from a mistake weight by weight:
/// the later steps then check that every weight is within Adam's step bound
/// and that no more than 1% of them differ by more than 1e-5.
fn check<M: TrainableModel>(file: &str, threads: usize, restart: bool, kinks: Kinks<M>) {
    let reference = Reference::open(file);
    let pixel_shape = reference.shape("pixels");
    let (steps, batch) = (pixel_shape[0], pixel_shape[1]);
    let pixels = reference.bytes_of("pixels");
    let labels: Vec<usize> = reference
        .bytes_of("labels")
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
        .collect();
    let image = M::INPUT_SHAPE.iter().product::<usize>();
    assert_eq!(pixel_shape[2..], M::INPUT_SHAPE);

    let mut parameters: Box<M::Parameters> = bytemuck::zeroed_box();
    let mut statistics: Box<M::Statistics> = bytemuck::zeroed_box();
    let mut source = ReferenceSource {
        reference: &reference,
        prefix: "initial.",
    };
    read_training_state::<M, _>(&mut source, &mut parameters, &mut statistics).unwrap();
    let options = TrainerOptions {
        batch,
        threads,
        isa: Isa::detect(),
        ..TrainerOptions::default()
    };
    let mut trainer = Trainer::<M>::new(parameters, statistics, options).unwrap();
    let losses = reference.f32s("loss");
    let data_losses = reference.f32s("data_loss");
    let mut inputs: Vec<M::Input> = vec![bytemuck::Zeroable::zeroed(); batch];
    let mut loose = 0;
    // Weights whose Adam step is decided by rounding (see below).
    let mut ambiguous = vec![false; flat(&*bytemuck::zeroed_box::<M::Parameters>()).len()];

    for step in 0..steps {
        if restart && step > 0 {
            let (parameters, statistics) = trainer.state_mut();
            let mut source = ReferenceSource {
                reference: &reference,
                prefix: ["", "step1.", "step2."][step],
            };
            read_training_state::<M, _>(&mut source, parameters, statistics).unwrap();
        }
        for (i, input) in inputs.iter_mut().enumerate() {
            let start = (step * batch + i) * image;
            for (value, &pixel) in flat_mut(input)
                .iter_mut()
                .zip(&pixels[start..start + image])
            {
                *value = (pixel as f32 / 255.0 - 0.5) * 2.0;
            }
        }
        let report = trainer
            .step(&inputs, &labels[step * batch..(step + 1) * batch])
            .unwrap();
        let loss_error = (report.loss - losses[step] as f64).abs() / losses[step] as f64;
        let data_error =
            (report.data_loss - data_losses[step] as f64).abs() / data_losses[step] as f64;
        println!(
            "{file} step {}: loss {:.7} (Keras {:.7}, relative {loss_error:.1e}), data loss relative {data_error:.1e}",
            step + 1,
            report.loss,
            losses[step]
        );
        assert!(
            loss_error < 1e-5,
            "step {}: loss {} against Keras {}",
            step + 1,
            report.loss,
            losses[step]
        );
        assert!(
            data_error < 1e-5,
            "step {}: data loss {} against Keras {}",
            step + 1,
            report.data_loss,
            data_losses[step]
        );

        if step == 0 {
            let logits = reference.f32s("logits");
            let error = relative_difference(trainer.logits(), &logits);
            println!("  logits: relative {error:.1e}");
            assert!(error < 1e-5, "logits differ by {error:.1e}");
            // Tensors up to the last layer with a ReLU kink may differ more.
            let kinks = kinks(trainer.workspace(), trainer.parameters());
            loose = M::TENSORS
                .iter()
                .rposition(|t| kinks.iter().any(|(layer, _)| *layer == t.layer))
                .map_or(0, |last| last + 1);
            println!("  ReLU inputs within 1e-5 of zero: {kinks:?}");
            let gradients = flat(trainer.gradients());
            let (mut tight, mut loose_worst) = (0.0f64, 0.0f64);
            for (index, tensor) in M::TENSORS
                .iter()
                .enumerate()
                .filter(|(_, t)| t.is_trainable())
            {
                let expected = reference.f32s(&format!("grad.{}", tensor.name()));
                let error = relative_difference(tensor.values(gradients).unwrap(), &expected);
                if index < loose {
                    loose_worst = loose_worst.max(error);
                    assert!(
                        error < 2e-2,
                        "gradient of {} (before a kink): relative difference {error:.1e}",
                        tensor.name()
                    );
                } else {
                    tight = tight.max(error);
                    assert!(
                        error < 1e-4,
                        "gradient of {}: relative difference {error:.1e}",
                        tensor.name()
                    );
                }
            }
            println!(
                "  gradients: largest relative difference {tight:.1e}, before the last kink {loose_worst:.1e}"
            );
        }

        // Adam's first steps move a weight by about the learning rate whatever
        // its gradient's size: the step depends on the gradient relative to
        // itself. Gradients agree with Keras to a few 1e-6 of their tensor's
        // largest value, so for a weight whose gradient is under 1e-3 of that
        // largest value rounding alone changes its step by more than 1e-5, and
        // where a kink changed a gradient's sign the step flips. Those weights
        // are checked to differ by at most two steps per step; all others, and
        // every moving statistic, to 1e-5.
        let gradients = flat(trainer.gradients());
        for (index, tensor) in M::TENSORS
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_trainable())
        {
            let values = tensor.values(gradients).unwrap();
            let scale = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, &g) in values.iter().enumerate() {
                if index < loose || g.abs() < 1e-3 * scale {
                    ambiguous[tensor.offset + i] = true;
                }
            }
        }
        let parameters = flat(trainer.parameters());
        let statistics = flat(trainer.statistics());
        let (mut tight, mut flipped) = ((0.0f64, String::new()), 0);
        let step_bound = 2.0 * 1e-3 * (step + 1) as f64;
        for (index, tensor) in M::TENSORS.iter().enumerate() {
            let expected = reference.f32s(&format!("step{}.{}", step + 1, tensor.name()));
            let actual = tensor
                .values(if tensor.is_trainable() {
                    parameters
                } else {
                    statistics
                })
                .unwrap();
            for (i, (&a, &e)) in actual.iter().zip(&expected).enumerate() {
                let error = (a as f64 - e as f64).abs();
                let unsure = tensor.is_trainable()
                    && (index < loose || ambiguous[tensor.offset + i] || (restart && step > 0));
                if unsure && error >= 1e-5 {
                    flipped += 1;
                    assert!(
                        error < step_bound,
                        "step {}: {}[{i}] differs by {error:.1e}",
                        step + 1,
                        tensor.name()
                    );
                } else if error > tight.0 {
                    tight = (error, format!("{}[{i}]", tensor.name()));
                }
            }
        }
        println!(
            "  after the step: largest difference {:.1e} ({}); {} weights with a step decided by rounding, {flipped} of them off by more than 1e-5",
            tight.0,
            tight.1,
            ambiguous.iter().filter(|&&a| a).count()
        );
        assert!(
            tight.0 < 1e-5,
            "step {}: {} differs by {:.1e}",
            step + 1,
            tight.1,
            tight.0
        );
        let trainable: usize = M::TENSORS
            .iter()
            .filter(|t| t.is_trainable())
            .map(|t| t.len())
            .sum();
        assert!(
            flipped * 100 <= trainable,
            "step {}: {flipped} of {trainable} weights differ from Keras by more than 1e-5",
            step + 1
        );
    }
}

#[test]
fn a_small_model_trains_as_keras_does() {
    check::<TinyTrain>("keras_tiny_train.safetensors", 2, false, |w, p| {
        [
            (
                "base[0]",
                near_zero(&w.base_0_conv, &w.base_0_batch, &p.base_0_norm),
            ),
            (
                "base[1]",
                near_zero(&w.base_1_conv, &w.base_1_batch, &p.base_1_norm),
            ),
            (
                "modules[0].separable[0]",
                near_zero(
                    &w.module_0_separable_0_conv,
                    &w.module_0_separable_0_batch,
                    &p.module_0_separable_0_norm,
                ),
            ),
            (
                "modules[1].separable[0]",
                near_zero(
                    &w.module_1_separable_0_conv,
                    &w.module_1_separable_0_batch,
                    &p.module_1_separable_0_norm,
                ),
            ),
        ]
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .collect()
    });
}

#[test]
fn the_emotion_model_trains_as_keras_does() {
    check::<MiniXception>("keras_mini_xception.safetensors", 2, true, |w, p| {
        [
            (
                "base[0]",
                near_zero(&w.base_0_conv, &w.base_0_batch, &p.base_0_norm),
            ),
            (
                "base[1]",
                near_zero(&w.base_1_conv, &w.base_1_batch, &p.base_1_norm),
            ),
            (
                "modules[0].separable[0]",
                near_zero(
                    &w.module_0_separable_0_conv,
                    &w.module_0_separable_0_batch,
                    &p.module_0_separable_0_norm,
                ),
            ),
            (
                "modules[1].separable[0]",
                near_zero(
                    &w.module_1_separable_0_conv,
                    &w.module_1_separable_0_batch,
                    &p.module_1_separable_0_norm,
                ),
            ),
            (
                "modules[2].separable[0]",
                near_zero(
                    &w.module_2_separable_0_conv,
                    &w.module_2_separable_0_batch,
                    &p.module_2_separable_0_norm,
                ),
            ),
            (
                "modules[3].separable[0]",
                near_zero(
                    &w.module_3_separable_0_conv,
                    &w.module_3_separable_0_batch,
                    &p.module_3_separable_0_norm,
                ),
            ),
        ]
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .collect()
    });
}

/// The whole generated backward pass of the small model against central
/// finite differences of its own training-mode forward pass and loss, on
/// random images: every tensor's gradient, sampled, including the L2 terms.
#[test]
fn the_small_models_gradients_match_finite_differences() {
    use mini_xception::train::keras_initial;
    use mini_xception::train::{Adam, Optimizer};
    use rand::{Rng, SeedableRng};

    const BATCH: usize = 4;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let inputs: Vec<TinyTrainInput> = (0..BATCH)
        .map(|_| {
            let mut input = Tensor::<13, 11, 2>::zeroed_boxed();
            input
                .as_mut_slice()
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-1.0..1.0));
            *input
        })
        .collect();
    let labels = [0, 2, 1, 2];
    let (parameters, statistics) = keras_initial::<TinyTrain>(5);
    // A learning rate of zero: a step computes the loss and the gradients
    // and moves no parameter. The moving statistics move, but training mode
    // normalises with the batch's own.
    let options = TrainerOptions {
        batch: BATCH,
        threads: 1,
        optimizer: Optimizer::Adam(Adam {
            learning_rate: 0.0,
            ..Adam::default()
        }),
        ..TrainerOptions::default()
    };
    let mut trainer = Trainer::<TinyTrain>::new(parameters, statistics, options).unwrap();
    trainer.step(&inputs, &labels).unwrap();
    let analytic = flat(trainer.gradients()).to_vec();
    let start = flat(trainer.parameters()).to_vec();
    let mut loss_at = |index: usize, value: f32| {
        let (parameters, _) = trainer.state_mut();
        let old = std::mem::replace(&mut flat_mut(parameters)[index], value);
        let loss = trainer.step(&inputs, &labels).unwrap().loss;
        flat_mut(trainer.state_mut().0)[index] = old;
        loss
    };

    // f32 forward passes: a step of 1e-3 keeps rounding (about 1e-7 of a
    // loss near 2, divided by the step) near 2e-4, and the curvature error
    // (the step squared) far below. A ReLU input or a pool's runner-up within
    // a step's reach of its kink bends the difference: those few are
    // counted, and must stay few.
    const STEP: f32 = 1e-3;
    let (mut checked, mut bent) = (0, Vec::new());
    for tensor in TinyTrain::TENSORS.iter().filter(|t| t.is_trainable()) {
        let range = tensor.offset..tensor.offset + tensor.len();
        let largest = analytic[range.clone()]
            .iter()
            .fold(0.0f32, |m, g| m.max(g.abs()));
        // Up to 12 values of each tensor, spread over it.
        let samples = tensor.len().min(12);
        for k in 0..samples {
            let index = range.start + k * tensor.len() / samples;
            let value = start[index];
            let numeric =
                (loss_at(index, value + STEP) - loss_at(index, value - STEP)) / (2.0 * STEP as f64);
            let error = (numeric - analytic[index] as f64).abs();
            checked += 1;
            if error > 1e-3 + 2e-2 * largest as f64 {
                bent.push(format!(
                    "{}[{}]: analytic {} numeric {numeric}",
                    tensor.name(),
                    index - range.start,
                    analytic[index]
                ));
            }
        }
    }
    println!(
        "{} of {checked} bent by a kink:\n{}",
        bent.len(),
        bent.join("\n")
    );
    assert!(checked > 150, "{checked} values checked");
    assert!(
        bent.len() * 20 <= checked,
        "{} of {checked} gradients differ from finite differences:\n{}",
        bent.len(),
        bent.join("\n")
    );
}
