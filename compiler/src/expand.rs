//! Code generation: a network with known shapes becomes a model type, its
//! weights and scratch types, shape contracts and a summary.

use crate::shape::{Block, ConvBlock, ModuleBlock, Network, Shape, cost};
use crate::slots::{self, Access};
use crate::tokens::{
    doc, number, padding_name, padding_rule, padding_value, runtime, shape_array, snake_case,
    tensor_type, thousands,
};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// A row of the summary table, and the facts it is made from.
struct SummaryRow {
    name: String,
    operation: String,
    output: Vec<usize>,
    parameters: (usize, usize),
    macs: usize,
}

/// A tensor the forward pass stores in the scratch space.
struct Stored {
    shape: Shape,
    /// What it is, for its slot's doc comment.
    what: String,
}

/// What a statement of the forward pass reads.
#[derive(Clone, Copy)]
enum Operand {
    /// The model's input.
    Input,
    /// A stored tensor, by its index in `Parts::stored`.
    Stored(usize),
}

/// A kernel call of the forward pass, `kernel(input, &w.weights, arguments,
/// output)`, with its output as a stored tensor.
struct Statement {
    kernel: Ident,
    input: Operand,
    weights: Ident,
    arguments: TokenStream,
    output: usize,
}

impl Statement {
    fn new(
        kernel: &str,
        input: Operand,
        weights: &Ident,
        arguments: TokenStream,
        output: usize,
    ) -> Self {
        Self {
            kernel: format_ident!("{kernel}"),
            input,
            weights: weights.clone(),
            arguments,
            output,
        }
    }
}

/// Everything generated for the layers, gathered in one pass over the network.
#[derive(Default)]
struct Parts {
    weight_fields: Vec<TokenStream>,
    weight_reads: Vec<TokenStream>,
    weight_zeroed: Vec<TokenStream>,
    weight_tensors: Vec<TokenStream>,
    weight_tensors_mut: Vec<TokenStream>,
    stored: Vec<Stored>,
    statements: Vec<Statement>,
    contracts: Vec<TokenStream>,
    summary: Vec<SummaryRow>,
    /// `(bias, batch_norm)` of every `LayerOptions` the reads use.
    options_used: Vec<(bool, bool)>,
}

impl Parts {
    /// A tensor the forward pass stores; its index in `stored`.
    fn scratch(&mut self, shape: Shape, what: String) -> usize {
        self.stored.push(Stored { shape, what });
        self.stored.len() - 1
    }

    /// A weights field of type `kind<generics>` for the layer at `path`.
    fn weights(
        &mut self,
        field: &Ident,
        kind: &str,
        generics: TokenStream,
        path: &str,
        text: String,
        options: &Ident,
    ) {
        let doc = doc(text);
        let kind = format_ident!("{kind}");
        self.weight_fields.push(quote! {
            #[doc = #doc]
            pub #field: Box<#kind<#generics>>,
        });
        self.weight_reads
            .push(quote!(#field: #kind::read(source, #path, #options)?,));
        self.weight_zeroed.push(quote!(#field: try_zeroed_box()?,));
        self.weight_tensors
            .push(quote!(self.#field.tensors(&format!("{prefix}{}", #path)),));
        self.weight_tensors_mut
            .push(quote!(self.#field.tensors_mut(&format!("{prefix}{}", #path)),));
    }

    fn contract(&mut self, computed: TokenStream, expected: Shape, message: String) {
        let expected = shape_array(expected);
        self.contracts.push(quote! {
            const _: () = assert!(shape_eq(#computed, #expected), #message);
        });
    }

    fn options(&mut self, bias: bool, batch_norm: bool) -> Ident {
        if !self.options_used.contains(&(bias, batch_norm)) {
            self.options_used.push((bias, batch_norm));
        }
        layer_options(bias, batch_norm)
    }

    fn conv(&mut self, conv: &ConvBlock, input: Operand) -> Operand {
        let field = format_ident!("{}", conv.field);
        let (k, ci, co) = (
            number(conv.kernel),
            number(conv.input.channels),
            number(conv.output.channels),
        );
        let operation = format!(
            "Conv2D {k}x{k}{stride} {padding}{bn}{relu}{bias}",
            k = conv.kernel,
            stride = if conv.stride == 1 {
                String::new()
            } else {
                format!("/{}", conv.stride)
            },
            padding = padding_name(conv.padding),
            bn = if conv.batch_norm { " + BN" } else { "" },
            relu = if conv.relu { " + ReLU" } else { "" },
            bias = if conv.bias { " (bias)" } else { "" },
        );
        let options = self.options(conv.bias, conv.batch_norm);
        let path = &conv.path;
        self.weights(
            &field,
            "Conv2dWeights",
            quote!(#k, #ci, #co),
            path,
            format!(
                "`{path}`: {operation}, {} -> {} channels.",
                conv.input.channels, conv.output.channels
            ),
            &options,
        );
        let output = self.scratch(conv.output, format!("`{path}` output"));

        let (padding, stride) = (padding_value(conv.padding), number(conv.stride));
        let epilogue = if conv.relu {
            quote!(Relu)
        } else {
            quote!(Identity)
        };
        self.statements.push(Statement::new(
            "conv2d",
            input,
            &field,
            quote!(#padding, Stride::<#stride>, arithmetic, #epilogue),
            output,
        ));
        let (input_shape, rule) = (shape_array(conv.input), padding_rule(conv.padding));
        self.contract(
            quote!(conv::output_shape(#input_shape, #k, #co, #rule, #stride)),
            conv.output,
            format!(
                "{path}: {operation} must map {} to {}",
                conv.input, conv.output
            ),
        );
        self.summary.push(SummaryRow {
            name: path.clone(),
            operation,
            output: vec![conv.output.height, conv.output.width, conv.output.channels],
            parameters: cost::conv_parameters(conv),
            macs: cost::conv_macs(conv),
        });
        Operand::Stored(output)
    }

    fn module(&mut self, module: &ModuleBlock, input: Operand) -> Operand {
        let path = &module.path;
        let k = number(module.kernel);
        let options = self.options(false, true);
        let mut main_input = input;
        let mut step_input = module.input;
        for (i, &output) in module.separable.iter().enumerate() {
            let field = format_ident!("{}_separable_{i}", module.field);
            let layer = format!("{path}.separable[{i}]");
            let relu = i == 0;
            let operation = format!(
                "SeparableConv2D {0}x{0} same + BN{1}",
                module.kernel,
                if relu { " + ReLU" } else { "" }
            );
            let (ci, co) = (number(step_input.channels), number(output.channels));
            self.weights(
                &field,
                "SeparableConv2dWeights",
                quote!(#k, #ci, #co),
                &layer,
                format!(
                    "`{layer}`: {operation}, {} -> {} channels.",
                    step_input.channels, output.channels
                ),
                &options,
            );
            // The last convolution of a module with a pool is fused with the
            // pool (below): its output is never stored whole.
            let pooled = i + 1 == module.separable.len() && module.pool.is_some();
            if !pooled {
                let stored = self.scratch(output, format!("`{layer}` output"));
                let epilogue = if relu { quote!(Relu) } else { quote!(Identity) };
                self.statements.push(Statement::new(
                    "separable_conv2d",
                    main_input,
                    &field,
                    quote!(Same, Stride::<1>, arithmetic, #epilogue),
                    stored,
                ));
                main_input = Operand::Stored(stored);
            }
            let input_shape = shape_array(step_input);
            self.contract(
                quote!(separable::output_shape(#input_shape, #k, #co, Padding::Same, 1)),
                output,
                format!("{layer}: {operation} must map {step_input} to {output}"),
            );
            self.summary.push(SummaryRow {
                name: layer,
                operation,
                output: vec![output.height, output.width, output.channels],
                parameters: cost::separable_parameters(module.kernel, step_input, output),
                macs: cost::separable_macs(module.kernel, step_input, output),
            });
            step_input = output;
        }

        let last = format_ident!("{}_separable_1", module.field);
        let output = match (&module.pool, main_input) {
            (Some(pool), _) => {
                let (size, stride) = (number(pool.size), number(pool.stride));
                let operation = format!("MaxPool {0}x{0}/{1} same", pool.size, pool.stride);
                let output = self.scratch(
                    module.output,
                    format!("`{path}` output (the pooled main branch plus the residual branch)"),
                );
                self.statements.push(Statement::new(
                    "separable_conv2d_max_pool",
                    main_input,
                    &last,
                    quote!(arithmetic, Window::<#size>, Stride::<#stride>, Same),
                    output,
                ));
                let input_shape = shape_array(step_input);
                self.contract(
                    quote!(pool::output_shape(#input_shape, #size, Padding::Same, #stride)),
                    module.output,
                    format!(
                        "{path}.pool: {operation} must map {step_input} to {}",
                        module.output
                    ),
                );
                self.summary.push(SummaryRow {
                    name: format!("{path}.pool"),
                    operation,
                    output: vec![
                        module.output.height,
                        module.output.width,
                        module.output.channels,
                    ],
                    parameters: (0, 0),
                    macs: 0,
                });
                output
            }
            // Without a pool the residual is added onto the last separable output.
            (None, Operand::Stored(stored)) => stored,
            // `ModuleBlock::separable` is two outputs, and without a pool
            // neither is fused, so the loop above stored the second.
            (None, Operand::Input) => {
                unreachable!("a module without a pool stores its separable outputs")
            }
        };

        let residual = format_ident!("{}_residual", module.field);
        let layer = format!("{path}.residual");
        let stride = number(module.residual_stride);
        let operation = format!("Conv2D 1x1/{} same + BN", module.residual_stride);
        let (ci, co) = (
            number(module.input.channels),
            number(module.output.channels),
        );
        self.weights(
            &residual,
            "PointwiseWeights",
            quote!(#ci, #co),
            &layer,
            format!(
                "`{layer}`: {operation}, {} -> {} channels.",
                module.input.channels, module.output.channels
            ),
            &options,
        );
        // The residual branch is added onto the main branch as it is stored.
        self.statements.push(Statement::new(
            "pointwise_conv2d",
            input,
            &residual,
            quote!(Stride::<#stride>, arithmetic, Accumulate),
            output,
        ));
        let input_shape = shape_array(module.input);
        self.contract(
            quote!(pointwise::output_shape(#input_shape, #co, #stride)),
            module.output,
            format!(
                "{layer}: {operation} must map {} to {}",
                module.input, module.output
            ),
        );
        for (name, operation, parameters, macs) in [
            (
                layer,
                operation,
                cost::residual_parameters(module),
                cost::residual_macs(module),
            ),
            (format!("{path}.add"), "Add".to_string(), (0, 0), 0),
        ] {
            self.summary.push(SummaryRow {
                name,
                operation,
                output: vec![
                    module.output.height,
                    module.output.width,
                    module.output.channels,
                ],
                parameters,
                macs,
            });
        }
        Operand::Stored(output)
    }
}

/// The name of the `LayerOptions` binding in `from_source` for a layer with
/// or without its own bias and a following batch norm.
fn layer_options(bias: bool, batch_norm: bool) -> Ident {
    format_ident!(
        "{}",
        match (bias, batch_norm) {
            (false, true) => "batch_norm",
            (true, false) => "bias",
            (true, true) => "bias_and_batch_norm",
            (false, false) => "no_bias",
        }
    )
}

/// The `LayerOptions` bindings that `from_source` uses, in a fixed order.
fn layer_option_bindings(used: &[(bool, bool)], epsilon: f32) -> Vec<TokenStream> {
    let epsilon = Literal::f32_unsuffixed(epsilon);
    [(false, true), (true, false), (true, true), (false, false)]
        .into_iter()
        .filter(|options| used.contains(options))
        .map(|(bias, batch_norm)| {
            let name = layer_options(bias, batch_norm);
            let epsilon = if batch_norm {
                quote!(Some(#epsilon))
            } else {
                quote!(None)
            };
            quote!(let #name = LayerOptions { bias: #bias, batch_norm_epsilon: #epsilon };)
        })
        .collect()
}

/// The scratch struct's fields and initialisers and the forward pass's
/// statements, with every stored tensor in a slot it shares with tensors
/// whose lives do not overlap its own; `result` is the stored tensor the
/// pass ends with.
struct Scratch {
    fields: Vec<TokenStream>,
    inits: Vec<TokenStream>,
    statements: Vec<TokenStream>,
    result: TokenStream,
    values: usize,
}

fn scratch(stored: &[Stored], statements: &[Statement], result: usize) -> Scratch {
    let accesses: Vec<Access> = statements
        .iter()
        .map(|statement| Access {
            writes: statement.output,
            reads: match statement.input {
                Operand::Stored(index) => Some(index),
                Operand::Input => None,
            },
        })
        .collect();
    let lives = slots::lives(stored.len(), &accesses, result);
    let sizes: Vec<usize> = stored
        .iter()
        .map(|tensor| tensor.shape.height * tensor.shape.width * tensor.shape.channels)
        .collect();
    let plan = slots::plan(&sizes, &lives);
    let slot = |index: usize| format_ident!("slot_{}", plan.slot_of[index]);
    let view = |index: usize, method: &str| {
        let (slot, method) = (slot(index), format_ident!("{method}"));
        let shape = stored[index].shape;
        let (h, w, c) = (
            number(shape.height),
            number(shape.width),
            number(shape.channels),
        );
        quote!(s.#slot.#method::<#h, #w, #c>())
    };
    let (mut fields, mut inits) = (Vec::new(), Vec::new());
    for (number_of_slot, &length) in plan.lengths.iter().enumerate() {
        let holds: Vec<&str> = (0..stored.len())
            .filter(|&index| plan.slot_of[index] == number_of_slot)
            .map(|index| stored[index].what.as_str())
            .collect();
        let doc = doc(format!("Holds in turn: {}.", holds.join(", then ")));
        let (field, length) = (format_ident!("slot_{number_of_slot}"), number(length));
        fields.push(quote! {
            #[doc = #doc]
            #field: Box<Slot<#length>>,
        });
        inits.push(quote!(#field: try_zeroed_box()?,));
    }
    let statements = statements
        .iter()
        .map(|statement| {
            let Statement {
                kernel,
                input,
                weights,
                arguments,
                output,
            } = statement;
            let input = match *input {
                Operand::Input => quote!(input),
                Operand::Stored(index) => view(index, "tensor"),
            };
            let output = view(*output, "tensor_mut");
            quote!(#kernel(#input, &w.#weights, #arguments, #output);)
        })
        .collect();
    Scratch {
        fields,
        inits,
        statements,
        result: view(result, "tensor"),
        values: plan.lengths.iter().sum(),
    }
}

/// The names of a model's generated items.
struct Names {
    /// The model type, as the file names it.
    model: Ident,
    weights: Ident,
    scratch: Ident,
    input: Ident,
    /// The input's tensor type.
    input_type: TokenStream,
    /// The number of classes, as a literal.
    classes: Literal,
}

impl Names {
    fn of(network: &Network) -> Self {
        Self {
            model: format_ident!("{}", network.name),
            weights: format_ident!("{}Weights", network.name),
            scratch: format_ident!("{}Scratch", network.name),
            input: format_ident!("{}Input", network.name),
            input_type: tensor_type(network.input),
            classes: number(network.labels.len()),
        }
    }
}

/// The layer table of the summary, with the totals it adds up to.
struct Summary {
    rows: Vec<TokenStream>,
    parameters: usize,
    trainable: usize,
    macs: usize,
}

/// The summary's rows: the input, every layer the blocks gave, and the
/// pooling and softmax of the head.
fn summary(network: &Network, layers: Vec<SummaryRow>) -> Summary {
    let classes = network.labels.len();
    let input_row = SummaryRow {
        name: "input".into(),
        operation: "Input".into(),
        output: vec![
            network.input.height,
            network.input.width,
            network.input.channels,
        ],
        parameters: (0, 0),
        macs: 0,
    };
    let pooled = |name: &str, operation: &str| SummaryRow {
        name: name.into(),
        operation: operation.into(),
        output: vec![classes],
        parameters: (0, 0),
        macs: 0,
    };
    let rows: Vec<SummaryRow> = std::iter::once(input_row)
        .chain(layers)
        .chain([
            pooled("global_average_pool", "GlobalAveragePooling2D"),
            pooled("softmax", "Softmax"),
        ])
        .collect();
    let parameters: usize = rows.iter().map(|r| r.parameters.0).sum();
    let trainable: usize = rows.iter().map(|r| r.parameters.0 - r.parameters.1).sum();
    let macs: usize = rows.iter().map(|r| r.macs).sum();
    let rows = rows
        .iter()
        .map(|row| {
            let SummaryRow {
                name,
                operation,
                output,
                parameters: (total, frozen),
                macs,
            } = row;
            let output = output.iter().map(|&d| number(d));
            let (total, frozen, macs) = (number(*total), number(*frozen), number(*macs));
            quote! {
                LayerSummary {
                    name: #name,
                    operation: #operation,
                    output: &[#(#output),*],
                    parameters: #total,
                    non_trainable_parameters: #frozen,
                    macs: #macs,
                },
            }
        })
        .collect();
    Summary {
        rows,
        parameters,
        trainable,
        macs,
    }
}

/// The model type's constants and methods, and the forward pass that
/// `dispatch` compiles once per instruction set.
fn model_items(
    network: &Network,
    source: &str,
    names: &Names,
    summary: &Summary,
    forward: &[TokenStream],
    result: &TokenStream,
) -> TokenStream {
    let Names {
        model: name,
        weights: weights_name,
        scratch: scratch_name,
        input_type,
        classes: classes_lit,
        ..
    } = names;
    let model_name = &network.name;
    let input_shape = shape_array(network.input);
    let labels = &network.labels;
    let (parameters_lit, trainable_lit, macs_lit) = (
        number(summary.parameters),
        number(summary.trainable),
        number(summary.macs),
    );
    let layer_rows = &summary.rows;
    quote! {
    impl #name {
        /// The type's name in the model file.
        pub const NAME: &'static str = #model_name;
        /// The model file, as given to `mini_xception!`.
        pub const SOURCE: &'static str = #source;
        /// `[height, width, channels]` of the input.
        pub const INPUT_SHAPE: [usize; 3] = #input_shape;
        /// The number of classes.
        pub const NUM_CLASSES: usize = #classes_lit;
        /// The class labels, in output order.
        pub const LABELS: [&'static str; #classes_lit] = [#(#labels),*];
        /// Parameters as Keras counts them, batch norm statistics included.
        pub const PARAMETERS: usize = #parameters_lit;
        /// Parameters that training updates (all but the batch norm statistics).
        pub const TRAINABLE_PARAMETERS: usize = #trainable_lit;
        /// Multiply-accumulates per image.
        pub const MACS: usize = #macs_lit;
        /// One row per layer, for [`Self::summary`].
        pub const LAYERS: &'static [LayerSummary] = &[#(#layer_rows)*];

        /// A model with the given weights, running this CPU's default instruction set ([`Isa::detect`]).
        pub fn new(weights: #weights_name) -> Self {
            Self { weights, isa: Isa::detect() }
        }

        /// The same model running `isa`, or the portable code where this CPU lacks it.
        pub fn with_isa(self, isa: Isa) -> Self {
            let isa = if isa.is_available() { isa } else { Isa::Portable };
            Self { isa, ..self }
        }

        /// The instruction set the forward pass runs.
        pub fn isa(&self) -> Isa {
            self.isa
        }

        /// A model with weights read from `source`.
        pub fn from_source<S: ParameterSource>(source: &mut S) -> Result<Self, S::Error> {
            #weights_name::from_source(source).map(Self::new)
        }

        /// The model's weights.
        pub fn weights(&self) -> &#weights_name {
            &self.weights
        }

        /// The class scores before softmax (the global average pooling output).
        pub fn logits(&self, input: &#input_type, scratch: &mut #scratch_name) -> [f32; #classes_lit] {
            dispatch(self.isa, ForwardPass { weights: &self.weights, input, scratch })
        }

        /// The class probabilities. Allocates nothing.
        pub fn forward(&self, input: &#input_type, scratch: &mut #scratch_name) -> [f32; #classes_lit] {
            softmax(&self.logits(input, scratch))
        }

        /// The class probabilities of every input, one image per thread
        /// task with one scratch space per thread (give as many as there
        /// are threads). Allocates nothing per image. Returns how many
        /// images ran: all, unless `outputs` is shorter.
        pub fn forward_batch(
            &self,
            inputs: &[#input_type],
            outputs: &mut [[f32; #classes_lit]],
            scratches: &mut [#scratch_name],
        ) -> usize {
            run_batch(inputs, outputs, scratches, |input, scratch| self.forward(input, scratch))
        }

        /// A Keras-style table of the layers, their output shapes, parameters and MACs.
        pub fn summary() -> String {
            render_summary(Self::NAME, Self::SOURCE, Self::LAYERS)
        }
    }

    /// One forward pass, compiled once per instruction set by [`dispatch`].
    struct ForwardPass<'a> {
        weights: &'a #weights_name,
        input: &'a #input_type,
        scratch: &'a mut #scratch_name,
    }

    impl WithArithmetic for ForwardPass<'_> {
        type Output = [f32; #classes_lit];

        #[inline(always)]
        fn run<A: Arithmetic>(self, arithmetic: A) -> [f32; #classes_lit] {
            let (w, s, input) = (self.weights, self.scratch, self.input);
            #(#forward)*
            global_average_pool(#result)
        }
    }

    }
}

/// Reading, zeroing and listing the weights.
fn weights_items(names: &Names, option_bindings: &[TokenStream], parts: &Parts) -> TokenStream {
    let weights_name = &names.weights;
    let Parts {
        weight_reads,
        weight_zeroed,
        weight_tensors,
        weight_tensors_mut,
        ..
    } = parts;
    quote! {
    impl #weights_name {
        /// Reads every parameter from `source` and folds each batch norm
        /// into the convolution before it.
        pub fn from_source<S: ParameterSource>(source: &mut S) -> Result<Self, S::Error> {
            #(#option_bindings)*
            Ok(Self {
                #(#weight_reads)*
            })
        }

        /// All-zero weights, to be filled from a saved file through [`FoldedTensors::tensors_mut`].
        ///
        /// # Panics
        ///
        /// When the memory runs out; [`Self::try_zeroed`] returns the error instead.
        pub fn zeroed() -> Self {
            Self::try_zeroed().unwrap_or_else(|error| panic!("{error}"))
        }

        /// All-zero weights, or the error when the memory runs out.
        pub fn try_zeroed() -> Result<Self, AllocError> {
            Ok(Self {
                #(#weight_zeroed)*
            })
        }
    }

    impl FoldedTensors for #weights_name {
        fn tensors<'a>(&'a self, prefix: &str) -> Vec<TensorView<'a>> {
            [#(#weight_tensors)*].into_iter().flatten().collect()
        }

        fn tensors_mut<'a>(&'a mut self, prefix: &str) -> Vec<TensorViewMut<'a>> {
            [#(#weight_tensors_mut)*].into_iter().flatten().collect()
        }
    }

    }
}

/// The model as the runtime's `InferenceModel` sees it.
fn inference_model_impl(network: &Network, names: &Names) -> TokenStream {
    let Names {
        model: name,
        weights: weights_name,
        scratch: scratch_name,
        input_type,
        ..
    } = names;
    let model_name = &network.name;
    let input_shape = shape_array(network.input);
    quote! {
    impl InferenceModel for #name {
        type Input = #input_type;
        type Weights = #weights_name;
        type Scratch = #scratch_name;

        const NAME: &'static str = #model_name;
        const INPUT_SHAPE: [usize; 3] = #input_shape;
        const CLASS_LABELS: &'static [&'static str] = &Self::LABELS;

        fn weights_from_source<S: ParameterSource>(source: &mut S) -> Result<#weights_name, S::Error> {
            #weights_name::from_source(source)
        }

        fn try_zeroed_weights() -> Result<#weights_name, AllocError> {
            #weights_name::try_zeroed()
        }

        fn with_weights(weights: #weights_name, isa: Isa) -> Self {
            Self::new(weights).with_isa(isa)
        }

        fn model_weights(&self) -> &#weights_name {
            &self.weights
        }

        fn try_new_scratch() -> Result<#scratch_name, AllocError> {
            #scratch_name::try_new()
        }

        fn logits_into(&self, input: &#input_type, scratch: &mut #scratch_name, logits: &mut [f32]) {
            for (out, value) in logits.iter_mut().zip(self.logits(input, scratch)) {
                *out = value;
            }
        }
    }

    }
}

/// Allocating the scratch space.
fn scratch_items(names: &Names, scratch_inits: &[TokenStream]) -> TokenStream {
    let scratch_name = &names.scratch;
    quote! {
    impl #scratch_name {
        /// Zeroed tensors, each allocated directly on the heap.
        ///
        /// # Panics
        ///
        /// When the memory runs out; [`Self::try_new`] returns the error instead.
        pub fn new() -> Self {
            Self::try_new().unwrap_or_else(|error| panic!("{error}"))
        }

        /// Zeroed tensors, or the error when the memory runs out.
        pub fn try_new() -> Result<Self, AllocError> {
            Ok(Self {
                #(#scratch_inits)*
            })
        }
    }

    impl Default for #scratch_name {
        fn default() -> Self {
            Self::new()
        }
    }

    }
}

/// Generates the model. `source` is the path as the user wrote it,
/// `absolute` the file the compiler must watch for changes, if any (a build
/// script tells cargo itself).
pub fn expand(
    network: &Network,
    source: &str,
    absolute: Option<&str>,
    options: &crate::Options,
) -> TokenStream {
    let runtime = runtime();
    let watch = absolute.map(|absolute| {
        quote! {
            // The compiler rebuilds the model whenever the model file changes.
            const _: &[u8] = include_bytes!(#absolute);
        }
    });
    let mut parts = Parts::default();
    let mut input = Operand::Input;
    for block in &network.blocks {
        input = match block {
            Block::Conv(conv) => parts.conv(conv, input),
            Block::Module(module) => parts.module(module, input),
        };
    }
    let (Some(Block::Conv(_)), Operand::Stored(logits)) = (network.blocks.last(), input) else {
        return quote!(compile_error!("a model must end with its head"););
    };
    let scratch = scratch(&parts.stored, &parts.statements, logits);
    let names = Names::of(network);
    let summary = summary(network, std::mem::take(&mut parts.summary));
    let option_bindings = layer_option_bindings(&parts.options_used, network.batch_norm_epsilon);
    let model_items = model_items(
        network,
        source,
        &names,
        &summary,
        &scratch.statements,
        &scratch.result,
    );
    let weights_items = weights_items(&names, &option_bindings, &parts);
    let inference_model_impl = inference_model_impl(network, &names);
    let scratch_items = scratch_items(&names, &scratch.inits);
    let training = crate::expand_train::expand_training(network, options.inline_training);

    let model_name = &network.name;
    let classes = network.labels.len();
    let model_doc = doc(format!(
        "The `{model_name}` model compiled from `{source}`: input {}, {classes} classes ({}), {} Keras parameters, {} multiply-accumulates per image.",
        network.input,
        network.labels.join(", "),
        thousands(summary.parameters),
        thousands(summary.macs)
    ));
    let weights_doc = doc(format!(
        "The weights of [`{model_name}`], batch norm folded into the convolutions before it."
    ));
    let scratch_doc = doc(format!(
        "The intermediate tensors of [`{model_name}`], allocated once so that a forward pass allocates nothing: {} slots of {} values in all ({} kB), each holding in turn tensors whose lives do not overlap. One per thread.",
        scratch.fields.len(),
        thousands(scratch.values),
        thousands(scratch.values * 4 / 1000),
    ));
    let input_doc = doc(format!(
        "The input of [`{model_name}`]: a normalised {} image.",
        network.input
    ));
    let Names {
        model: name,
        weights: weights_name,
        scratch: scratch_name,
        input: input_name,
        input_type,
        ..
    } = &names;
    let parameters_name = format_ident!("{}Parameters", network.name);
    let statistics_name = format_ident!("{}Statistics", network.name);
    let workspace_name = format_ident!("{}Workspace", network.name);
    let module_name = format_ident!("{}_model", snake_case(&network.name));
    let scratch_fields = &scratch.fields;
    let Parts {
        weight_fields,
        contracts,
        ..
    } = &parts;

    quote! {
        #[doc = #model_doc]
        mod #module_name {
            use #runtime::{
                conv, conv2d, global_average_pool, pointwise, pointwise_conv2d, pool,
                render_summary, run_batch, separable, separable_conv2d, separable_conv2d_max_pool, shape_eq, softmax, dispatch,
                try_zeroed_box, Accumulate, AllocError, Slot, Arithmetic, Conv2dWeights, FoldedTensors, InferenceModel, Isa, LayerOptions, LayerSummary, Padding, ParameterSource,
                Identity, PointwiseWeights, Relu, Same, SeparableConv2dWeights, Stride, Tensor, Valid, Window, WithArithmetic,
            };
            use #runtime::folded::{TensorView, TensorViewMut};
            use #runtime::train::{self, TrainableModel, TrainingTensor};
            use #runtime::{bytemuck, BatchNormParameters, BatchStatistics, MovingStatistics, ParameterKind};
            use ::core::mem::offset_of;

            #watch

            // Each kernel's shape contract, with the numbers the macro inferred,
            // checked against the runtime's own arithmetic by `cargo check`.
            #(#contracts)*

            #[doc = #input_doc]
            pub type #input_name = #input_type;

            #[doc = #model_doc]
            pub struct #name {
                weights: #weights_name,
                isa: Isa,
            }

            #[doc = #weights_doc]
            pub struct #weights_name {
                #(#weight_fields)*
            }

            #[doc = #scratch_doc]
            pub struct #scratch_name {
                #(#scratch_fields)*
            }

            #model_items

            #weights_items

            #inference_model_impl

            #scratch_items

            #training
        }

        pub use #module_name::{
            #name, #input_name, #scratch_name, #weights_name, #parameters_name, #statistics_name, #workspace_name,
        };
    }
}

/// What the macro emits after a mistake: the errors, and empty types of the
/// model's names so that the mistake is not followed by a cascade of
/// "cannot find type" errors.
pub fn expand_errors(messages: &[String], name: Option<&str>, span: Span) -> TokenStream {
    let errors = messages
        .iter()
        .map(|message| quote_spanned!(span=> compile_error!(#message);));
    let stubs = name
        .filter(|n| syn::parse_str::<Ident>(n).is_ok())
        .map(|name| {
            let stubs = [
                "",
                "Weights",
                "Scratch",
                "Input",
                "Parameters",
                "Statistics",
                "Workspace",
            ]
            .map(|suffix| Ident::new(&format!("{name}{suffix}"), Span::call_site()));
            quote!(#(pub struct #stubs;)*)
        });
    quote!(#(#errors)* #stubs)
}
