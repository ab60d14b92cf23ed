//! Training: the layer operations that generated training code calls, one
//! call per layer, forward in order and backward in reverse, each over a
//! whole batch.
//!
//! Every operation works image by image on the thread pool it is called in
//! (rayon), with the per-image kernels of the op modules compiled for the
//! chosen instruction set. What spans the batch, the batch-norm statistics,
//! their gradients and the weight gradients, is summed image by image in
//! image order, so a step gives the same bits whatever the number of threads:
//! each image's weight gradients go to that image's own gradient slot, and
//! [`sum_image_gradients`] adds the slots up in order.
//!
//! Nothing here allocates: activations, gradients and scratch are allocated
//! once, for a batch size fixed then ([`zeroed_batch`], [`ReductionScratch`]).

mod batch;
mod convolution;
mod head;
mod model;
mod normalize;
mod pool;

pub use batch::{ReductionScratch, sum_image_gradients, zeroed_batch};
pub use convolution::{
    Bias, conv2d_backward, conv2d_forward, pointwise_backward, pointwise_forward,
    separable_backward, separable_forward,
};
pub use head::{distilled_loss_backward, logits_backward, logits_forward, loss_backward};
pub use model::{
    FeatureMap, FoldError, MissingTensor, TrainableModel, TrainingState, TrainingStateSource,
    TrainingTensor, fold, read_training_state, unfold,
};
pub use normalize::{
    Activation, BatchNormSettings, Normalization, batch_moments, batch_norm_backward,
    batch_norm_forward,
};
pub use pool::{
    ReluBackward, add_forward, copy_batch, max_pool_backward, max_pool_forward, relu_backward,
    relu_forward,
};
