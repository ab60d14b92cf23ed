//! Code generation for training: the model's trainable parameters and moving
//! statistics in Keras' layout, the workspace of a batch, the table of
//! tensors, and the forward (training mode) and backward passes, one runtime
//! call per layer, forward in order and backward in reverse.

use crate::shape::{Block, ConvBlock, ModuleBlock, Network, Shape};
use crate::tokens::{literal, padding_value, tensor_type};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// Everything generated for training, gathered in one pass over the blocks.
struct TrainParts {
    parameters: Ident,
    statistics: Ident,
    parameter_fields: Vec<TokenStream>,
    statistics_fields: Vec<TokenStream>,
    workspace_fields: Vec<TokenStream>,
    workspace_inits: Vec<TokenStream>,
    tensors: Vec<TokenStream>,
    forward: Vec<TokenStream>,
    /// Each block's backward code, in forward order; emitted reversed.
    backward: Vec<TokenStream>,
    widest_batch_norm: usize,
}

impl TrainParts {
    /// A workspace field holding one `shape` tensor per image of the batch.
    fn batch(&mut self, field: &Ident, shape: Shape, text: &str) {
        let ty = tensor_type(shape);
        let doc = format!(" {text}");
        self.workspace_fields.push(quote! {
            #[doc = #doc]
            pub #field: Box<[#ty]>,
        });
        self.workspace_inits
            .push(quote!(#field: train::zeroed_batch(batch),));
    }

    /// A batch norm over `channels` after the layer `field` (`path` in the
    /// model file): its parameters, moving statistics, batch statistics and
    /// table entries.
    fn batch_norm(&mut self, field: &Ident, path: &str, channels: usize) {
        let norm = format_ident!("{field}_norm");
        let batch = format_ident!("{field}_batch");
        let c = literal(channels);
        let doc = format!(" `{path}`: the batch norm's gamma and beta.");
        self.parameter_fields.push(quote! {
            #[doc = #doc]
            pub #norm: BatchNormParameters<#c>,
        });
        let doc = format!(" `{path}`: the batch norm's moving mean and variance.");
        self.statistics_fields.push(quote! {
            #[doc = #doc]
            pub #norm: MovingStatistics<#c>,
        });
        let doc = format!(" `{path}`: the last batch's statistics, for the backward pass.");
        self.workspace_fields.push(quote! {
            #[doc = #doc]
            pub #batch: BatchStatistics<#c>,
        });
        self.workspace_inits
            .push(quote!(#batch: BatchStatistics::empty(),));
        let parameters = &self.parameters;
        let statistics = &self.statistics;
        for (kind, member, owner) in [
            (quote!(Gamma), quote!(gamma), parameters),
            (quote!(Beta), quote!(beta), parameters),
            (quote!(MovingMean), quote!(mean), statistics),
            (quote!(MovingVariance), quote!(variance), statistics),
        ] {
            self.tensors.push(quote! {
                TrainingTensor {
                    layer: #path,
                    kind: ParameterKind::#kind,
                    shape: &[#c],
                    offset: offset_of!(#owner, #norm.#member) / 4,
                    l2: 0.0,
                },
            });
        }
        self.widest_batch_norm = self.widest_batch_norm.max(channels);
    }

    /// A table entry for a trainable tensor of the parameters struct.
    fn tensor(
        &mut self,
        path: &str,
        kind: TokenStream,
        shape: &[usize],
        member: TokenStream,
        l2: f32,
    ) {
        let parameters = &self.parameters;
        let shape = shape.iter().map(|&d| literal(d));
        let l2 = Literal::f32_unsuffixed(l2);
        self.tensors.push(quote! {
            TrainingTensor {
                layer: #path,
                kind: ParameterKind::#kind,
                shape: &[#(#shape),*],
                offset: offset_of!(#parameters, #member) / 4,
                l2: #l2,
            },
        });
    }

    /// A plain convolution (a base layer or the head) reading `input`, whose
    /// gradient goes to `input_gradient` (`None` for the network's input).
    fn conv(&mut self, conv: &ConvBlock, input: &TokenStream, input_gradient: &TokenStream) {
        let field = format_ident!("{}", conv.field);
        let path = &conv.path;
        let (k, ci, co) = (conv.kernel, conv.input.channels, conv.output.channels);
        let (kl, cil, col) = (literal(k), literal(ci), literal(co));
        let doc = format!(
            " `{path}`: the {k}x{k} kernel{}.",
            if conv.bias {
                " and bias"
            } else {
                " (its bias stays zero: the layer has none)"
            }
        );
        self.parameter_fields.push(quote! {
            #[doc = #doc]
            pub #field: Conv2dWeights<#kl, #cil, #col>,
        });
        self.tensor(
            path,
            quote!(Kernel),
            &[k, k, ci, co],
            quote!(#field.kernel),
            conv.l2,
        );
        if conv.bias {
            self.tensor(path, quote!(Bias), &[co], quote!(#field.bias), 0.0);
        }

        let gradient = format_ident!("{field}_gradient");
        let transposed = format_ident!("{field}_transposed");
        let doc = format!(" `{path}`: room for the kernel transposed, for the backward pass.");
        self.workspace_fields.push(quote! {
            #[doc = #doc]
            pub #transposed: Box<Conv2dWeights<#kl, #col, #cil>>,
        });
        self.workspace_inits
            .push(quote!(#transposed: Conv2dWeights::zeroed_boxed(),));
        self.batch(&field, conv.output, &format!("`{path}` output."));
        self.batch(
            &gradient,
            conv.output,
            &format!("The gradient of the `{path}` output."),
        );
        let (pad, stride, relu, bias) = (
            padding_value(conv.padding),
            literal(conv.stride),
            conv.relu,
            if conv.bias {
                quote!(train::Bias::Learned)
            } else {
                quote!(train::Bias::Absent)
            },
        );
        let norm = format_ident!("{field}_norm");
        let batch = format_ident!("{field}_batch");
        let relu_rule = relu_rule(relu);
        let activation = activation(relu);
        if conv.batch_norm {
            let pre = format_ident!("{field}_conv");
            self.batch(
                &pre,
                conv.output,
                &format!("`{path}` output before its batch norm."),
            );
            self.batch_norm(&field, path, co);
            self.forward.push(quote! {
                train::conv2d_forward(isa, #input, &p.#field, #pad, Stride::<#stride>, &mut work.#pre, Some(scratch));
                train::batch_norm_forward(isa, &work.#pre, &p.#norm, settings, #activation, &mut s.#norm, &mut work.#batch, &mut work.#field, scratch);
            });
            self.backward.push(quote! {
                train::batch_norm_backward(isa, &work.#pre, &work.#field, &p.#norm, &work.#batch, #relu_rule, &mut work.#gradient, &mut g.#norm, scratch);
                train::conv2d_backward(isa, #input, &work.#gradient, &p.#field, &mut work.#transposed, #pad, Stride::<#stride>, #bias, #input_gradient, images, |g| &mut g.#field);
            });
        } else {
            let relu_forward = relu.then(|| quote!(train::relu_forward(isa, &mut work.#field);));
            let relu_backward = relu.then(
                || quote!(train::relu_backward(isa, relu, &mut work.#gradient, &work.#field);),
            );
            self.forward.push(quote! {
                train::conv2d_forward(isa, #input, &p.#field, #pad, Stride::<#stride>, &mut work.#field, None);
                #relu_forward
            });
            self.backward.push(quote! {
                #relu_backward
                train::conv2d_backward(isa, #input, &work.#gradient, &p.#field, &mut work.#transposed, #pad, Stride::<#stride>, #bias, #input_gradient, images, |g| &mut g.#field);
            });
        }
    }

    fn module(&mut self, module: &ModuleBlock, input: &TokenStream, input_gradient: &TokenStream) {
        let path = &module.path;
        let k = module.kernel;
        let kl = literal(k);
        let mut step_input = input.clone();
        let mut step_shape = module.input;
        let mut backward = Vec::new();
        for (i, &output) in module.separable.iter().enumerate() {
            let field = format_ident!("{}_separable_{i}", module.field);
            let layer = format!("{path}.separable[{i}]");
            let (ci, co) = (step_shape.channels, output.channels);
            let (cil, col) = (literal(ci), literal(co));
            let doc = format!(" `{layer}`: the depthwise and pointwise kernels (no bias).");
            self.parameter_fields.push(quote! {
                #[doc = #doc]
                pub #field: SeparableConv2dWeights<#kl, #cil, #col>,
            });
            self.tensor(
                &layer,
                quote!(DepthwiseKernel),
                &[k, k, ci, 1],
                quote!(#field.depthwise.kernel),
                0.0,
            );
            self.tensor(
                &layer,
                quote!(PointwiseKernel),
                &[1, 1, ci, co],
                quote!(#field.pointwise.kernel),
                module.l2,
            );

            let depthwise = format_ident!("{field}_depthwise");
            let depthwise_gradient = format_ident!("{field}_depthwise_gradient");
            let transposed = format_ident!("{field}_transposed");
            let doc = format!(
                " `{layer}`: room for the pointwise kernel transposed, for the backward pass."
            );
            self.workspace_fields.push(quote! {
                #[doc = #doc]
                pub #transposed: Box<PointwiseWeights<#col, #cil>>,
            });
            self.workspace_inits
                .push(quote!(#transposed: PointwiseWeights::zeroed_boxed(),));
            let pre = format_ident!("{field}_conv");
            let gradient = format_ident!("{field}_gradient");
            let norm = format_ident!("{field}_norm");
            let batch = format_ident!("{field}_batch");
            self.batch(
                &depthwise,
                step_shape,
                &format!("`{layer}` depthwise output."),
            );
            self.batch(
                &depthwise_gradient,
                step_shape,
                &format!("The gradient of the `{layer}` depthwise output."),
            );
            self.batch(
                &pre,
                output,
                &format!("`{layer}` output before its batch norm."),
            );
            self.batch(&field, output, &format!("`{layer}` output."));
            self.batch(
                &gradient,
                output,
                &format!("The gradient of the `{layer}` output."),
            );
            self.batch_norm(&field, &layer, co);
            let relu = i == 0;
            let relu_rule = relu_rule(relu);
            let activation = activation(relu);
            self.forward.push(quote! {
                train::separable_forward(isa, #step_input, &p.#field, &mut work.#depthwise, &mut work.#pre, Some(scratch));
                train::batch_norm_forward(isa, &work.#pre, &p.#norm, settings, #activation, &mut s.#norm, &mut work.#batch, &mut work.#field, scratch);
            });
            let step_input_gradient = if i == 0 {
                input_gradient.clone()
            } else {
                let previous = format_ident!("{}_separable_0_gradient", module.field);
                quote!(Some(&mut work.#previous))
            };
            backward.push(quote! {
                train::batch_norm_backward(isa, &work.#pre, &work.#field, &p.#norm, &work.#batch, #relu_rule, &mut work.#gradient, &mut g.#norm, scratch);
                train::separable_backward(isa, #step_input, &work.#depthwise, &work.#gradient, &p.#field, &mut work.#transposed, &mut work.#depthwise_gradient, #step_input_gradient, images, |g| &mut g.#field);
            });
            step_input = quote!(&work.#field);
            step_shape = output;
        }

        let last = format_ident!("{}_separable_1", module.field);
        let last_gradient = format_ident!("{}_separable_1_gradient", module.field);
        let output = format_ident!("{}_output", module.field);
        let output_gradient = format_ident!("{}_output_gradient", module.field);
        self.batch(
            &output,
            module.output,
            &format!("`{path}` output: the main branch plus the residual branch."),
        );
        self.batch(
            &output_gradient,
            module.output,
            &format!("The gradient of the `{path}` output."),
        );
        let (pool_forward, pool_backward) = match &module.pool {
            Some(pool) => {
                let (size, stride) = (literal(pool.size), literal(pool.stride));
                (
                    quote!(train::max_pool_forward(isa, &work.#last, Window::<#size>, Stride::<#stride>, Same, &mut work.#output);),
                    quote!(train::max_pool_backward(isa, &work.#last, &work.#output_gradient, Window::<#size>, Stride::<#stride>, Same, &mut work.#last_gradient);),
                )
            }
            None => (
                quote!(train::copy_batch(&work.#last, &mut work.#output);),
                quote!(train::copy_batch(&work.#output_gradient, &mut work.#last_gradient);),
            ),
        };

        let residual = format_ident!("{}_residual", module.field);
        let layer = format!("{path}.residual");
        let (ci, co) = (module.input.channels, module.output.channels);
        let (cil, col) = (literal(ci), literal(co));
        let doc = format!(" `{layer}`: the 1x1 kernel (no bias).");
        self.parameter_fields.push(quote! {
            #[doc = #doc]
            pub #residual: PointwiseWeights<#cil, #col>,
        });
        self.tensor(
            &layer,
            quote!(Kernel),
            &[1, 1, ci, co],
            quote!(#residual.kernel),
            module.residual_l2,
        );
        let pre = format_ident!("{residual}_conv");
        let gradient = format_ident!("{residual}_gradient");
        let norm = format_ident!("{residual}_norm");
        let batch = format_ident!("{residual}_batch");
        self.batch(
            &pre,
            module.output,
            &format!("`{layer}` output before its batch norm."),
        );
        self.batch(&residual, module.output, &format!("`{layer}` output."));
        self.batch(
            &gradient,
            module.output,
            &format!("The gradient of the `{layer}` output."),
        );
        self.batch_norm(&residual, &layer, co);
        let residual_transposed = format_ident!("{residual}_transposed");
        let doc = format!(" `{layer}`: room for the kernel transposed, for the backward pass.");
        self.workspace_fields.push(quote! {
            #[doc = #doc]
            pub #residual_transposed: Box<PointwiseWeights<#col, #cil>>,
        });
        self.workspace_inits
            .push(quote!(#residual_transposed: PointwiseWeights::zeroed_boxed(),));
        let stride = literal(module.residual_stride);
        self.forward.push(quote! {
            #pool_forward
            train::pointwise_forward(isa, #input, &p.#residual, Stride::<#stride>, &mut work.#pre, Some(scratch));
            train::batch_norm_forward(isa, &work.#pre, &p.#norm, settings, train::Activation::Linear, &mut s.#norm, &mut work.#batch, &mut work.#residual, scratch);
            train::add_forward(isa, &mut work.#output, &work.#residual);
        });
        // Backward: the add sends the output gradient to both branches; the
        // main branch writes the input gradient, the residual branch adds to it.
        let mut module_backward = vec![quote! {
            #pool_backward
            train::copy_batch(&work.#output_gradient, &mut work.#gradient);
        }];
        module_backward.extend(backward.into_iter().rev());
        module_backward.push(quote! {
            train::batch_norm_backward(isa, &work.#pre, &work.#residual, &p.#norm, &work.#batch, None, &mut work.#gradient, &mut g.#norm, scratch);
            train::pointwise_backward(isa, #input, &work.#gradient, &p.#residual, &mut work.#residual_transposed, Stride::<#stride>, #input_gradient, images, |g| &mut g.#residual);
        });
        self.backward.push(quote!(#(#module_backward)*));
    }
}

/// The ReLU rule of a batch norm's backward pass: the pass's `relu` when the
/// layer has a ReLU, else none.
/// What follows a batch norm in the generated forward pass.
fn activation(relu: bool) -> TokenStream {
    if relu {
        quote!(train::Activation::Relu)
    } else {
        quote!(train::Activation::Linear)
    }
}

fn relu_rule(relu: bool) -> TokenStream {
    if relu {
        quote!(Some(relu))
    } else {
        quote!(None)
    }
}

/// The output field of a block, and its gradient field.
fn output_fields(block: &Block) -> (Ident, Ident) {
    let field = match block {
        Block::Conv(conv) => format_ident!("{}", conv.field),
        Block::Module(module) => format_ident!("{}_output", module.field),
    };
    let gradient = format_ident!("{field}_gradient");
    (field, gradient)
}

/// The training items of `network`, inside the model's module (which has
/// imported the runtime's names); the forward and backward passes are
/// `#[inline]` when `inline` is (see [`crate::Options::inline_training`]).
pub fn expand_training(network: &Network, inline: bool) -> TokenStream {
    let name = format_ident!("{}", network.name);
    let parameters = format_ident!("{}Parameters", network.name);
    let statistics = format_ident!("{}Statistics", network.name);
    let workspace = format_ident!("{}Workspace", network.name);
    let input_name = format_ident!("{}Input", network.name);
    let mut parts = TrainParts {
        parameters: parameters.clone(),
        statistics: statistics.clone(),
        parameter_fields: Vec::new(),
        statistics_fields: Vec::new(),
        workspace_fields: Vec::new(),
        workspace_inits: Vec::new(),
        tensors: Vec::new(),
        forward: Vec::new(),
        backward: Vec::new(),
        widest_batch_norm: 0,
    };
    let mut input = quote!(inputs);
    // A module uses its input gradient twice (both branches write to it), a
    // convolution once.
    let first_is_module = matches!(network.blocks.first(), Some(Block::Module(_)));
    let (input_gradients_binding, mut input_gradient) = if first_is_module {
        (
            quote!(mut input_gradients),
            quote!(input_gradients.as_deref_mut()),
        )
    } else {
        (quote!(input_gradients), quote!(input_gradients))
    };
    for block in &network.blocks {
        match block {
            Block::Conv(conv) => parts.conv(conv, &input, &input_gradient),
            Block::Module(module) => parts.module(module, &input, &input_gradient),
        }
        let (output, gradient) = output_fields(block);
        input = quote!(&work.#output);
        input_gradient = quote!(Some(&mut work.#gradient));
    }
    let Some(Block::Conv(head)) = network.blocks.last() else {
        return quote!(compile_error!("a model must end with its head"););
    };
    let last_module = network.blocks.iter().rev().find_map(|block| match block {
        Block::Module(module) => Some(module),
        Block::Conv(_) => None,
    });
    let last_module_output = match last_module {
        Some(module) => {
            let output = format_ident!("{}_output", module.field);
            let output_gradient = format_ident!("{}_output_gradient", module.field);
            let shape = module.output;
            let (h, w, c) = (
                literal(shape.height),
                literal(shape.width),
                literal(shape.channels),
            );
            quote! {
                Some(train::FeatureMap {
                    shape: [#h, #w, #c],
                    values: workspace.#output.get(image)?.as_slice(),
                    gradients: workspace.#output_gradient.get(image)?.as_slice(),
                })
            }
        }
        None => quote!(None),
    };
    let head_field = format_ident!("{}", head.field);
    let head_gradient = format_ident!("{}_gradient", head.field);
    let classes = literal(network.labels.len());
    let model_name = &network.name;
    let epsilon = Literal::f32_unsuffixed(network.batch_norm_epsilon);
    let TrainParts {
        parameter_fields,
        statistics_fields,
        workspace_fields,
        workspace_inits,
        tensors,
        forward,
        backward,
        widest_batch_norm,
        ..
    } = parts;
    let backward = backward.into_iter().rev();
    let widest = literal(widest_batch_norm);
    let crate_path = "::mini_xception::runtime::bytemuck";
    let inline = inline.then(|| quote!(#[inline]));
    let parameters_doc = format!(
        " The trainable parameters of [`{model_name}`] in Keras' layout, batch norm unfolded; also the type of their gradients and of Adam's moments. [`{model_name}::TENSORS`](TrainableModel::TENSORS) names every tensor and its place."
    );
    let statistics_doc = format!(" The moving statistics of every batch norm of [`{model_name}`].");
    let workspace_doc = format!(
        " What a training step of [`{model_name}`] keeps for one batch: every layer's activations, their gradients and the batch statistics, allocated once."
    );

    quote! {
        #[doc = #parameters_doc]
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        #[bytemuck(crate = #crate_path)]
        #[repr(C)]
        pub struct #parameters {
            #(#parameter_fields)*
        }

        #[doc = #statistics_doc]
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        #[bytemuck(crate = #crate_path)]
        #[repr(C)]
        pub struct #statistics {
            #(#statistics_fields)*
        }

        #[doc = #workspace_doc]
        pub struct #workspace {
            #(#workspace_fields)*
        }

        impl TrainableModel for #name {
            type Parameters = #parameters;
            type Statistics = #statistics;
            type Workspace = #workspace;

            const CLASSES: usize = #classes;
            const WIDEST_BATCH_NORM: usize = #widest;
            const BATCH_NORM_EPSILON: f32 = #epsilon;
            const TENSORS: &'static [TrainingTensor] = &[#(#tensors)*];

            #inline
            fn workspace(batch: usize) -> #workspace {
                #workspace {
                    #(#workspace_inits)*
                }
            }

            // A model without batch norms would leave `settings`, `s` and
            // `scratch` unused.
            #inline
            #[allow(unused_variables)]
            fn forward_train(
                isa: Isa,
                p: &#parameters,
                s: &mut #statistics,
                settings: train::BatchNormSettings,
                inputs: &[#input_name],
                work: &mut #workspace,
                scratch: &mut train::ReductionScratch,
                logits: &mut [f32],
            ) {
                #(#forward)*
                train::logits_forward(&work.#head_field, logits.as_chunks_mut::<#classes>().0);
            }

            #inline
            #[allow(unused_variables)]
            fn backward(
                isa: Isa,
                p: &#parameters,
                inputs: &[#input_name],
                work: &mut #workspace,
                scratch: &mut train::ReductionScratch,
                logit_gradients: &[f32],
                relu: train::ReluBackward,
                #input_gradients_binding: Option<&mut [#input_name]>,
                g: &mut #parameters,
                images: &mut [#parameters],
            ) {
                train::logits_backward(logit_gradients.as_chunks::<#classes>().0, &mut work.#head_gradient);
                #(#backward)*
            }

            #[allow(unused_variables)]
            fn last_module_output(workspace: &#workspace, image: usize) -> Option<train::FeatureMap<'_>> {
                #last_module_output
            }
        }
    }
}
