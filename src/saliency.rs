//! What a prediction looks at, from the generated backward pass run on an
//! inference model: guided back-propagation (Springenberg et al., 2015), the
//! method the paper explains its classifier with, and Grad-CAM (Selvaraju et
//! al., 2017).
//!
//! Both differentiate the score of one class, its logit (the global average
//! pool's output, before the softmax), with every batch norm in inference
//! mode: it normalises with the moving statistics, which are constants, so
//! the gradients are those of the model a user runs.

use crate::runtime::loss::LabelOutOfRange;
use crate::runtime::tensor::{flat, flat_mut, zeroed_box};
use crate::runtime::train::{
    BatchNormSettings, Normalization, ReductionScratch, ReluBackward, TrainableModel,
    TrainingState, zeroed_batch,
};
use crate::runtime::{Isa, argmax};

/// A map of how much each place of the input (guided back-propagation) or
/// of the last module's output (Grad-CAM) matters to one class's score.
#[derive(Clone, Debug, PartialEq)]
pub struct SaliencyMap {
    /// The class whose score was differentiated.
    pub label: usize,
    /// The model's logits for the input.
    pub logits: Vec<f32>,
    /// Height, width and channels of [`SaliencyMap::values`].
    pub shape: [usize; 3],
    /// The map in HWC order.
    pub values: Vec<f32>,
}

/// Computes saliency maps for a trainable model's state, one image at a
/// time, reusing its room (a workspace for a batch of one).
pub struct Saliency<M: TrainableModel> {
    isa: Isa,
    parameters: Box<M::Parameters>,
    statistics: Box<M::Statistics>,
    workspace: M::Workspace,
    scratch: ReductionScratch,
    gradients: Box<M::Parameters>,
    image_gradients: Box<[M::Parameters]>,
    input_gradients: Box<[M::Input]>,
    logits: Vec<f32>,
    logit_gradients: Vec<f32>,
}

impl<M: TrainableModel> Saliency<M> {
    /// Saliency for the model with these parameters and moving statistics.
    pub fn new(state: TrainingState<M>, isa: Isa) -> Self {
        let (parameters, statistics) = state;
        Self {
            isa,
            parameters,
            statistics,
            workspace: M::workspace(1),
            scratch: ReductionScratch::new(1, M::WIDEST_BATCH_NORM),
            gradients: zeroed_box(),
            image_gradients: zeroed_batch(1),
            input_gradients: zeroed_batch(1),
            logits: vec![0.0; M::CLASSES],
            logit_gradients: vec![0.0; M::CLASSES],
        }
    }

    /// Guided back-propagation: the gradient of `label`'s logit (the
    /// predicted class when `None`) with respect to the input, with every
    /// ReLU passing only positive gradients of positive outputs. Its shape
    /// is the input's.
    pub fn guided_backprop(
        &mut self,
        input: &M::Input,
        label: Option<usize>,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        self.input_map(input, label, ReluBackward::Guided)
    }

    /// The plain gradient of `label`'s logit (the predicted class when
    /// `None`) with respect to the input (Simonyan et al.'s saliency, 2014).
    pub fn gradient(
        &mut self,
        input: &M::Input,
        label: Option<usize>,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        self.input_map(input, label, ReluBackward::Plain)
    }

    fn input_map(
        &mut self,
        input: &M::Input,
        label: Option<usize>,
        relu: ReluBackward,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        let label = self.backward(input, label, relu)?;
        let values = self
            .input_gradients
            .first()
            .map_or_else(Vec::new, |gradient| flat(gradient).to_vec());
        Ok(SaliencyMap {
            label,
            logits: self.logits.clone(),
            shape: M::INPUT_SHAPE,
            values,
        })
    }

    /// Grad-CAM on the last module's output `A`: each channel `k` weighed by
    /// the mean over positions of the gradient of `label`'s logit (the
    /// predicted class when `None`) with respect to it, summed over the
    /// channels, and only the positive part kept:
    /// `ReLU(sum_k mean_ij(dy/dA_ijk) * A_ijk)`. Its shape is the module
    /// output's, one channel; a model without modules gives an empty map.
    pub fn grad_cam(
        &mut self,
        input: &M::Input,
        label: Option<usize>,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        let label = self.backward(input, label, ReluBackward::Plain)?;
        let (shape, values) = match M::last_module_output(&self.workspace, 0) {
            Some(feature) => {
                let [height, width, channels] = feature.shape;
                let positions = (height * width).max(1);
                let mut weights = vec![0.0f64; channels];
                for pixel in feature.gradients.chunks_exact(channels.max(1)) {
                    for (weight, &g) in weights.iter_mut().zip(pixel) {
                        *weight += g as f64;
                    }
                }
                let values = feature
                    .values
                    .chunks_exact(channels.max(1))
                    .map(|pixel| {
                        let sum: f64 = pixel
                            .iter()
                            .zip(&weights)
                            .map(|(&a, &w)| a as f64 * w / positions as f64)
                            .sum();
                        sum.max(0.0) as f32
                    })
                    .collect();
                ([height, width, 1], values)
            }
            None => ([0, 0, 1], Vec::new()),
        };
        Ok(SaliencyMap {
            label,
            logits: self.logits.clone(),
            shape,
            values,
        })
    }

    /// The forward pass in inference mode, then the backward pass of
    /// `label`'s logit (the top class when `None`) with `relu`; gives the label.
    fn backward(
        &mut self,
        input: &M::Input,
        label: Option<usize>,
        relu: ReluBackward,
    ) -> Result<usize, LabelOutOfRange> {
        if let Some(label) = label.filter(|&label| label >= M::CLASSES) {
            return Err(LabelOutOfRange {
                label,
                classes: M::CLASSES,
            });
        }
        let settings = BatchNormSettings {
            epsilon: M::BATCH_NORM_EPSILON,
            momentum: 1.0,
            normalization: Normalization::Moving,
        };
        let inputs = std::slice::from_ref(input);
        M::forward_train(
            self.isa,
            &self.parameters,
            &mut self.statistics,
            settings,
            inputs,
            &mut self.workspace,
            &mut self.scratch,
            &mut self.logits,
        );
        let label = label.unwrap_or_else(|| argmax(&self.logits));
        self.logit_gradients.fill(0.0);
        if let Some(gradient) = self.logit_gradients.get_mut(label) {
            *gradient = 1.0;
        }
        // The parameter gradients are not wanted; cleared so that they
        // cannot grow over many calls.
        flat_mut(&mut *self.gradients).fill(0.0);
        for image in self.image_gradients.iter_mut() {
            flat_mut(image).fill(0.0);
        }
        M::backward(
            self.isa,
            &self.parameters,
            inputs,
            &mut self.workspace,
            &mut self.scratch,
            &self.logit_gradients,
            relu,
            Some(&mut self.input_gradients),
            &mut self.gradients,
            &mut self.image_gradients,
        );
        Ok(label)
    }
}
