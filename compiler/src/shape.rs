//! Shape inference: the one place in the macro that knows the arithmetic of
//! convolutions, pools and padding. It turns a validated model into a network
//! whose every tensor has a concrete shape, and reports layers that cannot
//! fit together.

use crate::diagnostic::Diagnostics;
use crate::limits::Limit;
use crate::spec::PaddingSpec;
use crate::validate::{Conv, Model, Module};
use serde_saphyr::Location;
use std::fmt;

/// A tensor shape, height x width x channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

impl Shape {
    pub fn with_channels(self, channels: usize) -> Shape {
        Shape { channels, ..self }
    }

    /// Values in a tensor of this shape.
    pub fn values(self) -> usize {
        self.height * self.width * self.channels
    }
}

/// Output positions along one axis, following TensorFlow; `None` when a
/// `valid` window does not fit.
pub fn output_size(
    input: usize,
    window: usize,
    stride: usize,
    padding: PaddingSpec,
) -> Option<usize> {
    match padding {
        PaddingSpec::Valid => input.checked_sub(window).map(|rest| rest / stride + 1),
        PaddingSpec::Same => Some(input.div_ceil(stride)),
    }
}

/// A model with every tensor's shape known.
#[derive(Debug)]
pub struct Network {
    pub name: String,
    pub input: Shape,
    pub labels: Vec<String>,
    pub batch_norm_epsilon: f32,
    /// The base, the modules and the head, in order; each block reads the
    /// output of the one before it (the first reads the input).
    pub blocks: Vec<Block>,
}

#[derive(Debug)]
pub enum Block {
    Conv(ConvBlock),
    Module(ModuleBlock),
}

/// A plain convolution with its optional batch norm and ReLU.
#[derive(Debug)]
pub struct ConvBlock {
    /// `base[1]` or `head`.
    pub path: String,
    /// The Rust field name, `base_1` or `head`.
    pub field: String,
    pub kernel: usize,
    pub stride: usize,
    pub padding: PaddingSpec,
    pub bias: bool,
    pub batch_norm: bool,
    pub relu: bool,
    /// L2 factor on the kernel while training.
    pub l2: f32,
    pub input: Shape,
    pub output: Shape,
}

/// A residual module: two separable convolutions and an optional max pool on
/// the main branch, a strided 1x1 convolution on the residual branch, added.
#[derive(Debug)]
pub struct ModuleBlock {
    /// `modules[2]`.
    pub path: String,
    /// The Rust field prefix, `module_2`.
    pub field: String,
    pub kernel: usize,
    pub input: Shape,
    /// The outputs of the two separable convolutions (stride 1, `same`).
    pub separable: [Shape; 2],
    pub pool: Option<PoolStep>,
    pub residual_stride: usize,
    pub output: Shape,
    /// L2 factor on the separable convolutions' pointwise kernels.
    pub l2: f32,
    /// L2 factor on the residual 1x1 kernel.
    pub residual_l2: f32,
}

#[derive(Debug)]
pub struct PoolStep {
    pub size: usize,
    pub stride: usize,
}

/// Infers every shape of `model`; `None` when a layer cannot follow the one
/// before it, with the reason in `diagnostics`.
///
/// Inference stops at the first such layer: every later shape depends on it,
/// so later complaints would only repeat the first one.
pub fn infer(model: &Model, diagnostics: &mut Diagnostics) -> Option<Network> {
    let input = Shape {
        height: model.input[0],
        width: model.input[1],
        channels: model.input[2],
    };
    let mut size = NetworkSize::default();
    size.add(
        input,
        input.values(),
        0,
        model.input_at,
        "input",
        diagnostics,
    )?;
    let mut blocks = Vec::new();
    let mut current = input;
    for conv in &model.base {
        let block = infer_conv(conv, current, input, diagnostics)?;
        let parameters = cost::conv_parameters(&block).0;
        size.add(
            block.output,
            block.output.values(),
            parameters,
            conv.at,
            &conv.path,
            diagnostics,
        )?;
        current = block.output;
        blocks.push(Block::Conv(block));
    }
    for module in &model.modules {
        let block = infer_module(module, current, diagnostics)?;
        let [first, second] = block.separable;
        // Two separable outputs, the pooled output and the residual branch.
        let values = first.values() + second.values() + 2 * block.output.values();
        let parameters = cost::separable_parameters(block.kernel, block.input, first).0
            + cost::separable_parameters(block.kernel, first, second).0
            + cost::residual_parameters(&block).0;
        size.add(
            block.output,
            values,
            parameters,
            module.at,
            &module.path,
            diagnostics,
        )?;
        current = block.output;
        blocks.push(Block::Module(block));
    }
    let head = infer_conv(&model.head, current, input, diagnostics)?;
    let parameters = cost::conv_parameters(&head).0;
    let at = model.head.at;
    size.add(
        head.output,
        head.output.values(),
        parameters,
        at,
        "head",
        diagnostics,
    )?;
    blocks.push(Block::Conv(head));
    Some(Network {
        name: model.name.clone(),
        input,
        labels: model.labels.clone(),
        batch_norm_epsilon: model.batch_norm_epsilon,
        blocks,
    })
}

/// The values and parameters of the layers inferred so far, held to the
/// compiler's limits.
#[derive(Default)]
struct NetworkSize {
    values: usize,
    parameters: usize,
}

impl NetworkSize {
    /// Adds a layer's tensors and parameters; `None`, with the reason in
    /// `diagnostics`, when the network grows past a limit there.
    fn add(
        &mut self,
        output: Shape,
        values: usize,
        parameters: usize,
        at: Location,
        path: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<()> {
        // Every term is bounded by the validated limits, so these sums
        // cannot overflow; the limits are checked after each layer.
        self.values += values;
        self.parameters += parameters;
        if let Err(message) = Limit::TENSOR_VALUES.check(self.values) {
            diagnostics.error(
                at,
                path,
                format!(
                    "with this layer's {output} output, the forward pass's tensors hold {} values: {message}",
                    self.values
                ),
            );
            return None;
        }
        if let Err(message) = Limit::PARAMETERS.check(self.parameters) {
            diagnostics.error(
                at,
                path,
                format!(
                    "with this layer, the network has {} parameters: {message}",
                    self.parameters
                ),
            );
            return None;
        }
        Some(())
    }
}

fn infer_conv(
    conv: &Conv,
    input: Shape,
    model_input: Shape,
    diagnostics: &mut Diagnostics,
) -> Option<ConvBlock> {
    let height = output_size(input.height, conv.kernel, conv.stride, conv.padding);
    let width = output_size(input.width, conv.kernel, conv.stride, conv.padding);
    let (Some(height), Some(width)) = (height, width) else {
        let cause = if input == model_input {
            String::new()
        } else {
            format!(" (the {model_input} model input is too small for this network)")
        };
        diagnostics.error(
            conv.kernel_at,
            &conv.path,
            format!(
                "the {k}x{k} kernel is larger than its {input} input, so the `valid` output would have size 0{cause}",
                k = conv.kernel
            ),
        );
        return None;
    };
    Some(ConvBlock {
        path: conv.path.clone(),
        field: conv.path.replace('[', "_").replace(']', ""),
        kernel: conv.kernel,
        stride: conv.stride,
        padding: conv.padding,
        bias: conv.bias,
        batch_norm: conv.batch_norm,
        relu: conv.relu,
        l2: conv.l2,
        input,
        output: Shape {
            height,
            width,
            channels: conv.filters,
        },
    })
}

fn infer_module(
    module: &Module,
    input: Shape,
    diagnostics: &mut Diagnostics,
) -> Option<ModuleBlock> {
    // Separable convolutions are `same` with stride 1: they keep the size.
    let separable = [
        input.with_channels(module.filters),
        input.with_channels(module.filters),
    ];
    let main = match &module.pool {
        None => separable[1],
        Some(pool) => Shape {
            height: input.height.div_ceil(pool.stride),
            width: input.width.div_ceil(pool.stride),
            channels: module.filters,
        },
    };
    let residual = Shape {
        height: input.height.div_ceil(module.residual_stride),
        width: input.width.div_ceil(module.residual_stride),
        channels: module.residual_filters,
    };
    if residual != main {
        let main_desc = match &module.pool {
            Some(pool) => format!(
                "{main} (after its {}x{} max-pool with stride {})",
                pool.size, pool.size, pool.stride
            ),
            None => format!("{main} (it has no max-pool)"),
        };
        diagnostics.error(
            module.residual_at,
            format!("{}.residual", module.path),
            format!(
                "the residual branch of {residual} (1x1 conv, stride {}, {} filters) cannot be added to the main branch of {main_desc}",
                module.residual_stride, module.residual_filters
            ),
        );
        return None;
    }
    Some(ModuleBlock {
        path: module.path.clone(),
        field: module.path.replace("modules[", "module_").replace(']', ""),
        kernel: module.kernel,
        input,
        separable,
        pool: module.pool.as_ref().map(|p| PoolStep {
            size: p.size,
            stride: p.stride,
        }),
        residual_stride: module.residual_stride,
        output: main,
        l2: module.l2,
        residual_l2: module.residual_l2,
    })
}

/// Keras parameter counts and multiply-accumulates, per layer.
pub mod cost {
    use super::{ConvBlock, ModuleBlock, Shape};

    /// Parameters of a layer and the batch norm after it: `(total, non-trainable)`.
    pub fn with_batch_norm(weights: usize, channels: usize, batch_norm: bool) -> (usize, usize) {
        if batch_norm {
            (weights + 4 * channels, 2 * channels)
        } else {
            (weights, 0)
        }
    }

    pub fn conv_parameters(conv: &ConvBlock) -> (usize, usize) {
        let weights = conv.kernel * conv.kernel * conv.input.channels * conv.output.channels;
        let bias = if conv.bias { conv.output.channels } else { 0 };
        with_batch_norm(weights + bias, conv.output.channels, conv.batch_norm)
    }

    pub fn conv_macs(conv: &ConvBlock) -> usize {
        positions(conv.output)
            * conv.output.channels
            * conv.kernel
            * conv.kernel
            * conv.input.channels
    }

    /// A separable convolution from `input` to `output` with batch norm.
    pub fn separable_parameters(kernel: usize, input: Shape, output: Shape) -> (usize, usize) {
        with_batch_norm(
            kernel * kernel * input.channels + input.channels * output.channels,
            output.channels,
            true,
        )
    }

    pub fn separable_macs(kernel: usize, input: Shape, output: Shape) -> usize {
        positions(output) * input.channels * (kernel * kernel + output.channels)
    }

    pub fn residual_parameters(module: &ModuleBlock) -> (usize, usize) {
        with_batch_norm(
            module.input.channels * module.output.channels,
            module.output.channels,
            true,
        )
    }

    pub fn residual_macs(module: &ModuleBlock) -> usize {
        positions(module.output) * module.input.channels * module.output.channels
    }

    fn positions(shape: Shape) -> usize {
        shape.height * shape.width
    }
}
