//! What every compiled model offers generic code: the [`InferenceModel`]
//! trait, which `mini_xception!` implements, so that weight loaders, face
//! classifiers, evaluation and the trainer are written once for any model
//! file.

use crate::folded::FoldedTensors;
use crate::isa::Isa;
use crate::parameters::ParameterSource;
use crate::tensor::AllocError;
use bytemuck::Pod;

/// A model compiled from a model file, for inference.
pub trait InferenceModel: Sized + Send + Sync {
    /// The input image: a normalised `INPUT_SHAPE` tensor.
    type Input: Pod + Send + Sync;
    /// The weights, batch norm folded in.
    type Weights: FoldedTensors + Send + Sync;
    /// The intermediate tensors of one forward pass; one per thread.
    type Scratch: Send;

    /// The model's name in its model file.
    const NAME: &'static str;
    /// `[height, width, channels]` of the input.
    const INPUT_SHAPE: [usize; 3];
    /// The class labels, in output order.
    const CLASS_LABELS: &'static [&'static str];

    /// Reads every parameter from `source` (a Keras file, a training state)
    /// and folds each batch norm into the layer before it.
    fn weights_from_source<S: ParameterSource>(source: &mut S) -> Result<Self::Weights, S::Error>;

    /// All-zero weights, to be filled from a saved file, or the error when
    /// the memory runs out.
    fn try_zeroed_weights() -> Result<Self::Weights, AllocError>;

    /// A model with these weights, running `isa` (or the portable code where
    /// this CPU lacks it).
    fn with_weights(weights: Self::Weights, isa: Isa) -> Self;

    /// The model's weights.
    fn model_weights(&self) -> &Self::Weights;

    /// A scratch space for [`InferenceModel::logits_into`], or the error
    /// when the memory runs out.
    fn try_new_scratch() -> Result<Self::Scratch, AllocError>;

    /// The class scores before softmax, written to `logits` (one per class;
    /// extra room is left as it is). Allocates nothing.
    fn logits_into(&self, input: &Self::Input, scratch: &mut Self::Scratch, logits: &mut [f32]);
}
