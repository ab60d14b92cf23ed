//! Where weights come from: a [`ParameterSource`] hands out every parameter a
//! generated model needs, in Keras layout, one tensor at a time.
//!
//! Generated models read their weights through this trait, so a Keras HDF5
//! file, a safetensors file or a seeded random generator can all stand behind
//! it. The source learns which YAML layer and which Keras parameter is asked
//! for, and the shape Keras gives it.

/// One kind of parameter, named as Keras names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterKind {
    /// A convolution kernel, `(kh, kw, in, out)`.
    Kernel,
    /// A convolution bias, `(out,)`.
    Bias,
    /// A separable convolution's depthwise kernel, `(kh, kw, in, 1)`.
    DepthwiseKernel,
    /// A separable convolution's pointwise kernel, `(1, 1, in, out)`.
    PointwiseKernel,
    /// Batch norm scale, `(channels,)`.
    Gamma,
    /// Batch norm offset, `(channels,)`.
    Beta,
    /// Batch norm running mean, `(channels,)`; not trainable.
    MovingMean,
    /// Batch norm running variance, `(channels,)`; not trainable.
    MovingVariance,
}

impl ParameterKind {
    /// The Keras weight name without its layer prefix, e.g. `moving_mean`.
    pub const fn keras_name(self) -> &'static str {
        match self {
            ParameterKind::Kernel => "kernel",
            ParameterKind::Bias => "bias",
            ParameterKind::DepthwiseKernel => "depthwise_kernel",
            ParameterKind::PointwiseKernel => "pointwise_kernel",
            ParameterKind::Gamma => "gamma",
            ParameterKind::Beta => "beta",
            ParameterKind::MovingMean => "moving_mean",
            ParameterKind::MovingVariance => "moving_variance",
        }
    }

    /// Whether this parameter belongs to the batch norm that follows a layer.
    pub const fn is_batch_norm(self) -> bool {
        matches!(
            self,
            ParameterKind::Gamma
                | ParameterKind::Beta
                | ParameterKind::MovingMean
                | ParameterKind::MovingVariance
        )
    }
}

/// The parameter a generated model asks a [`ParameterSource`] for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterSpec<'a> {
    /// The YAML layer, e.g. `modules[2].separable[1]` or `head`.
    pub layer: &'a str,
    /// Which of the layer's parameters.
    pub kind: ParameterKind,
    /// Its shape in Keras layout; the values are row-major in this shape.
    pub shape: &'a [usize],
}

impl ParameterSpec<'_> {
    /// The number of values, the product of the shape.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the parameter holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for ParameterSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        write!(
            f,
            "{} {} ({})",
            self.layer,
            self.kind.keras_name(),
            shape.join("x")
        )
    }
}

/// Anything that can fill a model's parameters.
pub trait ParameterSource {
    /// What goes wrong, e.g. a missing tensor or one of another shape, or
    /// the memory running out for the weights being read.
    type Error: From<crate::tensor::AllocError>;

    /// Fills `values` (exactly `spec.len()` of them) with the parameter `spec`
    /// in Keras layout.
    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), Self::Error>;

    /// The epsilon of the batch norm that follows `layer`. The model file's
    /// value is `model_epsilon`; a source that knows the trained value (a Keras
    /// file records it) returns that instead.
    fn batch_norm_epsilon(&mut self, layer: &str, model_epsilon: f32) -> Result<f32, Self::Error> {
        let _ = layer;
        Ok(model_epsilon)
    }
}

/// How to read one convolution-like layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerOptions {
    /// The layer has its own bias (Keras `use_bias`).
    pub bias: bool,
    /// A batch norm with this epsilon follows the layer and is folded into it.
    pub batch_norm_epsilon: Option<f32>,
}
