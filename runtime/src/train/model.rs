//! What a compiled model offers the trainer: the [`TrainableModel`] trait,
//! which `mini_xception!` implements for every model, and the table of its
//! tensors in Keras' layout.

use super::batch::ReductionScratch;
use super::normalize::BatchNormSettings;
use super::pool::ReluBackward;
use crate::isa::Isa;
use crate::model::InferenceModel;
use crate::parameters::{ParameterKind, ParameterSource, ParameterSpec};
use crate::tensor::AllocError;
use bytemuck::Pod;

/// One tensor of a model's training state: a trainable parameter (in the
/// [`TrainableModel::Parameters`] struct) or a moving statistic (in the
/// [`TrainableModel::Statistics`] struct), with its Keras name and shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingTensor {
    /// The model-file layer, e.g. `modules[2].separable[1]`.
    pub layer: &'static str,
    /// Which of the layer's parameters (moving statistics are not trainable).
    pub kind: ParameterKind,
    /// Its shape in Keras' layout.
    pub shape: &'static [usize],
    /// Where its values start, counted in `f32`s from the start of the
    /// parameters struct (trainable kinds) or the statistics struct (moving
    /// statistics).
    pub offset: usize,
    /// The L2 factor on this tensor (Keras `l2(factor)` adds `factor *
    /// sum(w^2)` to the loss); 0 for none.
    pub l2: f32,
}

impl TrainingTensor {
    /// Whether training updates it with gradients (all but the moving statistics).
    pub const fn is_trainable(&self) -> bool {
        !matches!(
            self.kind,
            ParameterKind::MovingMean | ParameterKind::MovingVariance
        )
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `layer.kind`, e.g. `modules[0].residual.moving_mean`: its name in
    /// files.
    pub fn name(&self) -> String {
        format!("{}.{}", self.layer, self.kind.keras_name())
    }

    /// What a [`ParameterSource`] is asked for to fill it.
    pub fn spec(&self) -> ParameterSpec<'static> {
        ParameterSpec {
            layer: self.layer,
            kind: self.kind,
            shape: self.shape,
        }
    }

    /// Its values in a parameters struct (trainable tensors) or a statistics
    /// struct (moving statistics) viewed flat; `None` when the slice is too short.
    pub fn values<'a>(&self, flat: &'a [f32]) -> Option<&'a [f32]> {
        flat.get(self.offset..self.offset + self.len())
    }

    /// As [`TrainingTensor::values`], mutable.
    pub fn values_mut<'a>(&self, flat: &'a mut [f32]) -> Option<&'a mut [f32]> {
        flat.get_mut(self.offset..self.offset + self.len())
    }
}

/// A model that can be trained: implemented by the code `mini_xception!`
/// generates, and used by the trainer (`mini_xception::train::Trainer`) and the weight readers and
/// writers without knowing the architecture.
///
/// Parameters, their gradients and Adam's moments are all of type
/// [`Self::Parameters`], a struct of `f32` arrays that can be viewed as one
/// flat slice ([`crate::flat`]); [`Self::TENSORS`] says what lies where.
pub trait TrainableModel: InferenceModel {
    /// The trainable parameters (kernels, biases, gammas and betas) in Keras'
    /// layout, unfolded; also the type of their gradients and of Adam's moments.
    type Parameters: Pod + Send + Sync;
    /// The moving statistics of every batch norm.
    type Statistics: Pod + Send + Sync;
    /// Everything a training step keeps for one batch: every layer's
    /// activations, their gradients and the batch statistics.
    type Workspace: Send;

    /// The number of classes.
    const CLASSES: usize;
    /// The channels of the widest batch norm, for [`ReductionScratch`].
    const WIDEST_BATCH_NORM: usize;
    /// Epsilon of every batch norm, from the model file.
    const BATCH_NORM_EPSILON: f32;
    /// Every tensor of the training state, in model-file order.
    const TENSORS: &'static [TrainingTensor];

    /// Room for a batch of `batch` images, allocated once.
    fn workspace(batch: usize) -> Self::Workspace;

    /// The forward pass in training mode over a batch: batch norms normalise
    /// with the batch's statistics and move the moving statistics; writes
    /// `Self::CLASSES` logits per image to `logits`.
    #[allow(clippy::too_many_arguments)]
    fn forward_train(
        isa: Isa,
        parameters: &Self::Parameters,
        statistics: &mut Self::Statistics,
        settings: BatchNormSettings,
        inputs: &[Self::Input],
        workspace: &mut Self::Workspace,
        scratch: &mut ReductionScratch,
        logits: &mut [f32],
    );

    /// The backward pass of the last [`TrainableModel::forward_train`], given
    /// the gradient of the loss with respect to every logit: the batch-norm
    /// parameter gradients are added to `gradients`, every image's kernel
    /// gradients to its own slot in `image_gradients` (summed later, in
    /// order). Every ReLU's gradient follows `relu` ([`ReluBackward::Plain`]
    /// to train); the gradients of the inputs are written to
    /// `input_gradients` when given (to train, they are not needed).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        isa: Isa,
        parameters: &Self::Parameters,
        inputs: &[Self::Input],
        workspace: &mut Self::Workspace,
        scratch: &mut ReductionScratch,
        logit_gradients: &[f32],
        relu: ReluBackward,
        input_gradients: Option<&mut [Self::Input]>,
        gradients: &mut Self::Parameters,
        image_gradients: &mut [Self::Parameters],
    );

    /// Image `image`'s output of the last residual module and its gradient,
    /// as kept by the last forward and backward passes (what Grad-CAM
    /// weighs); `None` for a model without modules or an image past the batch.
    fn last_module_output(workspace: &Self::Workspace, image: usize) -> Option<FeatureMap<'_>>;
}

/// A layer's output for one image and the gradient of a score with respect
/// to it, both in HWC order.
#[derive(Clone, Copy, Debug)]
pub struct FeatureMap<'a> {
    /// Height, width and channels.
    pub shape: [usize; 3],
    /// The activations.
    pub values: &'a [f32],
    /// Their gradients.
    pub gradients: &'a [f32],
}

/// Fills parameters and moving statistics from `source` (a Keras file,
/// native weights, a reference), asking for every tensor of
/// [`TrainableModel::TENSORS`] by layer, kind and Keras shape.
pub fn read_training_state<M: TrainableModel, S: ParameterSource>(
    source: &mut S,
    parameters: &mut M::Parameters,
    statistics: &mut M::Statistics,
) -> Result<(), S::Error> {
    let parameters = crate::tensor::flat_mut(parameters);
    let statistics = crate::tensor::flat_mut(statistics);
    for tensor in M::TENSORS {
        let flat: &mut [f32] = if tensor.is_trainable() {
            parameters
        } else {
            statistics
        };
        if let Some(values) = tensor.values_mut(flat) {
            source.read(&tensor.spec(), values)?;
        }
    }
    Ok(())
}

/// A [`ParameterSource`] over a training state, so that inference weights
/// are folded from it exactly as from a Keras file (`Weights::from_source`).
pub struct TrainingStateSource<'a, M: TrainableModel> {
    parameters: &'a [f32],
    statistics: &'a [f32],
    _model: std::marker::PhantomData<M>,
}

impl<'a, M: TrainableModel> TrainingStateSource<'a, M> {
    /// A source reading `parameters` and `statistics`.
    pub fn new(parameters: &'a M::Parameters, statistics: &'a M::Statistics) -> Self {
        Self {
            parameters: crate::tensor::flat(parameters),
            statistics: crate::tensor::flat(statistics),
            _model: std::marker::PhantomData,
        }
    }
}

/// A tensor that a training state does not have: the model asked for a
/// layer or kind that its own table lacks (a bug in generated code, never
/// the user's input), reported rather than a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTensor(pub String);

impl std::fmt::Display for MissingTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the training state has no tensor {}", self.0)
    }
}

impl std::error::Error for MissingTensor {}

/// Why a training state could not be folded into an inference model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldError {
    /// The state lacks a tensor the model asks for.
    Missing(MissingTensor),
    /// The memory ran out for the folded weights.
    OutOfMemory(AllocError),
}

impl std::fmt::Display for FoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoldError::Missing(missing) => missing.fmt(f),
            FoldError::OutOfMemory(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for FoldError {}

impl From<MissingTensor> for FoldError {
    fn from(missing: MissingTensor) -> Self {
        FoldError::Missing(missing)
    }
}

impl From<AllocError> for FoldError {
    fn from(error: AllocError) -> Self {
        FoldError::OutOfMemory(error)
    }
}

impl<M: TrainableModel> ParameterSource for TrainingStateSource<'_, M> {
    type Error = FoldError;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), FoldError> {
        let tensor = M::TENSORS
            .iter()
            .find(|t| t.layer == spec.layer && t.kind == spec.kind && t.len() == values.len())
            .ok_or_else(|| MissingTensor(spec.to_string()))?;
        let flat = if tensor.is_trainable() {
            self.parameters
        } else {
            self.statistics
        };
        let stored = tensor
            .values(flat)
            .ok_or_else(|| MissingTensor(spec.to_string()))?;
        values.copy_from_slice(stored);
        Ok(())
    }
}

/// The inference model of a training state: every batch norm folded, with
/// the moving statistics, exactly as weights read from a Keras file are.
pub fn fold<M: TrainableModel>(
    parameters: &M::Parameters,
    statistics: &M::Statistics,
    isa: Isa,
) -> Result<M, FoldError> {
    let weights =
        M::weights_from_source(&mut TrainingStateSource::<M>::new(parameters, statistics))?;
    Ok(M::with_weights(weights, isa))
}

/// A model's trainable parameters and moving statistics.
pub type TrainingState<M> = (
    Box<<M as TrainableModel>::Parameters>,
    Box<<M as TrainableModel>::Statistics>,
);

/// A training state with the same outputs as folded `weights`, for what
/// needs the training graph of an inference model (gradients of its outputs,
/// see `mini_xception::saliency::Saliency`): every kernel and bias as folded, every batch
/// norm an identity plus the folded bias (gamma 1, beta the bias, moving
/// mean 0 and moving variance `1 - epsilon`), and the bias of a layer with a
/// batch norm zero, since its beta now holds it.
pub fn unfold<M: TrainableModel>(weights: &M::Weights) -> Result<TrainingState<M>, MissingTensor> {
    use crate::folded::FoldedTensors;
    /// Where a tensor's values come from.
    enum Fill {
        /// The folded tensor of this name.
        Folded(String),
        /// This value everywhere.
        Value(f32),
    }
    let folded: std::collections::HashMap<String, &[f32]> = weights
        .tensors("")
        .into_iter()
        .map(|(name, _, values)| (name, values))
        .collect();
    let has_batch_norm = |layer: &str| {
        M::TENSORS
            .iter()
            .any(|t| t.layer == layer && t.kind == ParameterKind::Gamma)
    };
    let mut parameters: Box<M::Parameters> = crate::tensor::zeroed_box();
    let mut statistics: Box<M::Statistics> = crate::tensor::zeroed_box();
    let (parameter_values, statistic_values) = (
        crate::tensor::flat_mut(&mut *parameters),
        crate::tensor::flat_mut(&mut *statistics),
    );
    for tensor in M::TENSORS {
        let layer = tensor.layer;
        let fill = match tensor.kind {
            ParameterKind::Kernel | ParameterKind::PointwiseKernel => {
                Fill::Folded(format!("{layer}.kernel"))
            }
            ParameterKind::DepthwiseKernel => Fill::Folded(format!("{layer}.depthwise_kernel")),
            ParameterKind::Bias if has_batch_norm(layer) => Fill::Value(0.0),
            ParameterKind::Bias | ParameterKind::Beta => Fill::Folded(format!("{layer}.bias")),
            ParameterKind::Gamma => Fill::Value(1.0),
            ParameterKind::MovingMean => Fill::Value(0.0),
            ParameterKind::MovingVariance => Fill::Value(1.0 - M::BATCH_NORM_EPSILON),
        };
        let destination = if tensor.is_trainable() {
            &mut *parameter_values
        } else {
            &mut *statistic_values
        };
        let values = tensor
            .values_mut(destination)
            .ok_or_else(|| MissingTensor(tensor.name()))?;
        match fill {
            Fill::Folded(name) => {
                let source = folded
                    .get(&name)
                    .filter(|v| v.len() == values.len())
                    .ok_or(MissingTensor(name))?;
                values.copy_from_slice(source);
            }
            Fill::Value(value) => values.fill(value),
        }
    }
    Ok((parameters, statistics))
}
