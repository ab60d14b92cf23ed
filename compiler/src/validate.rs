//! Checks what the values of a model file mean, fills in the paper's defaults,
//! and gathers every mistake it finds.

use crate::diagnostic::Diagnostics;
use crate::limits::Limit;
use crate::spec::{
    ActivationSpec, ConvSpec, HeadSpec, ModelSpec, ModuleSpec, PaddingSpec, PoolSetting,
};
use serde_saphyr::{Location, Spanned};

/// Keras' default batch norm epsilon, which the paper's models use.
const DEFAULT_EPSILON: f64 = 0.001;

/// The paper's L2 factor (`l2(0.01)`) on the base convolutions' kernels and
/// the separable convolutions' pointwise kernels; the residual and head
/// kernels have none.
const PAPER_L2: f64 = 0.01;

/// A model file whose values all make sense on their own.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub input: [usize; 3],
    pub input_at: Location,
    pub labels: Vec<String>,
    pub batch_norm_epsilon: f32,
    pub base: Vec<Conv>,
    pub modules: Vec<Module>,
    pub head: Conv,
}

/// A plain convolution: one of the base, or the head.
#[derive(Debug)]
pub struct Conv {
    /// `base[0]` or `head`.
    pub path: String,
    /// Where the layer is written (for the head, where it would be).
    pub at: Location,
    pub filters: usize,
    pub kernel: usize,
    pub kernel_at: Location,
    pub stride: usize,
    pub padding: PaddingSpec,
    pub bias: bool,
    pub batch_norm: bool,
    pub relu: bool,
    /// L2 factor on the kernel while training.
    pub l2: f32,
}

/// A residual depthwise-separable module.
#[derive(Debug)]
pub struct Module {
    /// `modules[2]`.
    pub path: String,
    pub at: Location,
    pub filters: usize,
    pub kernel: usize,
    pub residual_filters: usize,
    pub residual_stride: usize,
    pub residual_at: Location,
    pub pool: Option<Pool>,
    /// L2 factor on the separable convolutions' pointwise kernels.
    pub l2: f32,
    /// L2 factor on the residual 1x1 kernel.
    pub residual_l2: f32,
}

/// The max pool that ends a module's main branch.
#[derive(Debug)]
pub struct Pool {
    pub size: usize,
    pub stride: usize,
}

/// Checks `spec`; `None` when anything is wrong, with every mistake in `diagnostics`.
pub fn validate(spec: &ModelSpec, diagnostics: &mut Diagnostics) -> Option<Model> {
    let errors_before = diagnostics.len();
    let mut checker = Checker { diagnostics };

    let name = spec.name.value.clone();
    if syn::parse_str::<syn::Ident>(&name).is_err() {
        checker.error(
            spec.name.referenced,
            "name",
            format!("`{name}` is not a Rust identifier; the model type is named after it"),
        );
    }

    let input = &spec.input.value;
    let input_shape = [
        checker.positive(&input.height, "input.height", Limit::INPUT_SIDE),
        checker.positive(&input.width, "input.width", Limit::INPUT_SIDE),
        checker.positive(&input.channels, "input.channels", Limit::CHANNELS),
    ];

    let labels: Vec<String> = spec.labels.value.iter().map(|l| l.value.clone()).collect();
    if labels.is_empty() {
        checker.error(
            spec.labels.referenced,
            "labels",
            "a classifier needs at least one label",
        );
    }
    if let Err(message) = Limit::CHANNELS.check(labels.len()) {
        checker.error(
            spec.labels.referenced,
            "labels",
            format!("{} labels: {message}", labels.len()),
        );
    }
    for (i, label) in spec.labels.value.iter().enumerate() {
        if label.value.trim().is_empty() {
            checker.error(
                label.referenced,
                format!("labels[{i}]"),
                "a label cannot be empty",
            );
        } else if labels[..i].contains(&label.value) {
            checker.error(
                label.referenced,
                format!("labels[{i}]"),
                format!("the label `{}` is given twice", label.value),
            );
        }
    }

    let batch_norm_epsilon = match &spec.batch_norm_epsilon {
        None => DEFAULT_EPSILON,
        Some(epsilon) => {
            if !(epsilon.value.is_finite() && epsilon.value > 0.0) {
                checker.error(
                    epsilon.referenced,
                    "batch_norm_epsilon",
                    format!("must be a positive number, found {}", epsilon.value),
                );
            }
            epsilon.value
        }
    } as f32;

    let blocks = spec.base.value.len() + spec.modules.value.len();
    if blocks > Limit::BLOCKS.value {
        checker.error(
            spec.modules.referenced,
            "modules",
            format!(
                "{} base convolutions and modules: {}",
                blocks,
                Limit::BLOCKS.exceeded(&blocks.to_string())
            ),
        );
    }
    let base = spec
        .base
        .value
        .iter()
        .enumerate()
        .map(|(i, conv)| checker.base_conv(conv, &format!("base[{i}]")))
        .collect();
    let modules = spec
        .modules
        .value
        .iter()
        .enumerate()
        .map(|(i, module)| checker.module(module, &format!("modules[{i}]")))
        .collect();
    let head = checker.head(
        spec.head.as_ref(),
        spec.modules.referenced,
        labels.len(),
        spec.labels.referenced,
    );

    if checker.diagnostics.len() > errors_before {
        return None;
    }
    Some(Model {
        name,
        input: input_shape,
        input_at: spec.input.referenced,
        labels,
        batch_norm_epsilon,
        base,
        modules,
        head,
    })
}

struct Checker<'a> {
    diagnostics: &'a mut Diagnostics,
}

impl Checker<'_> {
    fn error(&mut self, at: Location, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.error(at, path, message);
    }

    /// A whole number that must be at least 1 and at most `limit`.
    fn positive(&mut self, value: &Spanned<usize>, path: &str, limit: Limit) -> usize {
        if value.value == 0 {
            self.error(value.referenced, path, "must be at least 1, found 0");
        } else if let Err(message) = limit.check(value.value) {
            self.error(value.referenced, path, message);
        }
        value.value
    }

    fn positive_or(
        &mut self,
        value: &Option<Spanned<usize>>,
        path: &str,
        limit: Limit,
        default: usize,
    ) -> (usize, Option<Location>) {
        match value {
            Some(value) => (self.positive(value, path, limit), Some(value.referenced)),
            None => (default, None),
        }
    }

    /// An L2 factor: a finite number, zero or more.
    fn l2(&mut self, value: &Option<Spanned<f64>>, path: &str, default: f64) -> f32 {
        match value {
            None => default as f32,
            Some(value) => {
                if !(value.value.is_finite() && value.value >= 0.0) {
                    self.error(
                        value.referenced,
                        path,
                        format!("must be a number of at least 0, found {}", value.value),
                    );
                }
                value.value as f32
            }
        }
    }

    fn base_conv(&mut self, spanned: &Spanned<ConvSpec>, path: &str) -> Conv {
        let conv = &spanned.value;
        let (kernel, kernel_at) =
            self.positive_or(&conv.kernel, &format!("{path}.kernel"), Limit::WINDOW, 3);
        Conv {
            path: path.to_string(),
            at: spanned.referenced,
            filters: self.positive(&conv.filters, &format!("{path}.filters"), Limit::CHANNELS),
            kernel,
            kernel_at: kernel_at.unwrap_or(spanned.referenced),
            stride: self
                .positive_or(&conv.stride, &format!("{path}.stride"), Limit::WINDOW, 1)
                .0,
            padding: conv
                .padding
                .as_ref()
                .map_or(PaddingSpec::Valid, |p| p.value),
            bias: conv.bias.as_ref().is_some_and(|b| b.value),
            batch_norm: conv.batch_norm.as_ref().is_none_or(|b| b.value),
            relu: conv
                .activation
                .as_ref()
                .is_none_or(|a| a.value == ActivationSpec::Relu),
            l2: self.l2(&conv.l2, &format!("{path}.l2"), PAPER_L2),
        }
    }

    fn module(&mut self, spanned: &Spanned<ModuleSpec>, path: &str) -> Module {
        let module = &spanned.value;
        let filters = self.positive(&module.filters, &format!("{path}.filters"), Limit::CHANNELS);
        let kernel = self
            .positive_or(&module.kernel, &format!("{path}.kernel"), Limit::WINDOW, 3)
            .0;
        let residual_path = format!("{path}.residual");
        let residual_l2 = match &module.residual {
            Some(residual) => self.l2(&residual.value.l2, &format!("{residual_path}.l2"), 0.0),
            None => 0.0,
        };
        let (residual_filters, residual_stride, residual_at) = match &module.residual {
            Some(residual) => (
                self.positive_or(
                    &residual.value.filters,
                    &format!("{residual_path}.filters"),
                    Limit::CHANNELS,
                    filters,
                )
                .0,
                self.positive_or(
                    &residual.value.stride,
                    &format!("{residual_path}.stride"),
                    Limit::WINDOW,
                    2,
                )
                .0,
                residual.referenced,
            ),
            None => (filters, 2, spanned.referenced),
        };
        let pool = match &module.pool {
            None => Some(Pool { size: 3, stride: 2 }),
            Some(Spanned {
                value: PoolSetting::None,
                ..
            }) => None,
            Some(Spanned {
                value: PoolSetting::Max(pool),
                ..
            }) => Some(Pool {
                size: self
                    .positive_or(&pool.size, &format!("{path}.pool.size"), Limit::WINDOW, 3)
                    .0,
                stride: self
                    .positive_or(
                        &pool.stride,
                        &format!("{path}.pool.stride"),
                        Limit::WINDOW,
                        2,
                    )
                    .0,
            }),
        };
        Module {
            path: path.to_string(),
            at: spanned.referenced,
            filters,
            kernel,
            residual_filters,
            residual_stride,
            residual_at,
            pool,
            l2: self.l2(&module.l2, &format!("{path}.l2"), PAPER_L2),
            residual_l2,
        }
    }

    /// The head defaults to a 3x3 `same` convolution with bias and one filter
    /// per label; given filters must match the labels.
    fn head(
        &mut self,
        head: Option<&Spanned<HeadSpec>>,
        fallback_at: Location,
        labels: usize,
        labels_at: Location,
    ) -> Conv {
        let at = head.map_or(fallback_at, |h| h.referenced);
        let spec = head.map(|h| &h.value);
        let filters = match spec.and_then(|h| h.filters.as_ref()) {
            Some(filters) => {
                let value = self.positive(filters, "head.filters", Limit::CHANNELS);
                if value != 0 && value != labels {
                    self.error(
                        filters.referenced,
                        "head.filters",
                        format!(
                            "the head has {value} filters but {labels} labels are given (line {}): there must be one filter per class",
                            labels_at.line()
                        ),
                    );
                }
                value
            }
            None => labels,
        };
        let (kernel, kernel_at) = match spec {
            Some(h) => self.positive_or(&h.kernel, "head.kernel", Limit::WINDOW, 3),
            None => (3, None),
        };
        Conv {
            path: "head".to_string(),
            at,
            filters,
            kernel,
            kernel_at: kernel_at.unwrap_or(at),
            stride: 1,
            padding: spec
                .and_then(|h| h.padding.as_ref())
                .map_or(PaddingSpec::Same, |p| p.value),
            bias: spec.and_then(|h| h.bias.as_ref()).is_none_or(|b| b.value),
            batch_norm: false,
            relu: false,
            l2: match spec {
                Some(h) => self.l2(&h.l2, "head.l2", 0.0),
                None => 0.0,
            },
        }
    }
}
