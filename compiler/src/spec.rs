//! The YAML model file as typed data, every value with its position.
//!
//! Only the shape of the file is checked here (known keys, value types);
//! what the values mean is checked by `validate`, and whether the layers fit
//! together by `shape`.

use crate::diagnostic::Diagnostic;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole model file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The Rust name of the generated model type.
    pub name: Spanned<String>,
    /// The input image.
    pub input: Spanned<InputSpec>,
    /// One label per class, in output order.
    pub labels: Spanned<Vec<Spanned<String>>>,
    /// Epsilon of every batch norm; Keras' default 0.001 when absent.
    #[serde(default)]
    pub batch_norm_epsilon: Option<Spanned<f64>>,
    /// The plain convolutions before the residual modules.
    pub base: Spanned<Vec<Spanned<ConvSpec>>>,
    /// The residual depthwise-separable modules.
    pub modules: Spanned<Vec<Spanned<ModuleSpec>>>,
    /// The classifier convolution; defaults follow the paper.
    #[serde(default)]
    pub head: Option<Spanned<HeadSpec>>,
}

/// The input tensor's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub height: Spanned<usize>,
    pub width: Spanned<usize>,
    pub channels: Spanned<usize>,
}

/// A convolution of the base.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    pub filters: Spanned<usize>,
    #[serde(default)]
    pub kernel: Option<Spanned<usize>>,
    #[serde(default)]
    pub stride: Option<Spanned<usize>>,
    #[serde(default)]
    pub padding: Option<Spanned<PaddingSpec>>,
    #[serde(default)]
    pub bias: Option<Spanned<bool>>,
    #[serde(default)]
    pub batch_norm: Option<Spanned<bool>>,
    #[serde(default)]
    pub activation: Option<Spanned<ActivationSpec>>,
    /// L2 factor on the kernel while training.
    #[serde(default)]
    pub l2: Option<Spanned<f64>>,
}

/// A residual depthwise-separable module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    pub filters: Spanned<usize>,
    #[serde(default)]
    pub kernel: Option<Spanned<usize>>,
    #[serde(default)]
    pub residual: Option<Spanned<ResidualSpec>>,
    #[serde(default)]
    pub pool: Option<Spanned<PoolSetting>>,
    /// L2 factor on both separable convolutions' pointwise kernels while training.
    #[serde(default)]
    pub l2: Option<Spanned<f64>>,
}

/// The module's shortcut: a strided 1x1 convolution with batch norm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    #[serde(default)]
    pub filters: Option<Spanned<usize>>,
    #[serde(default)]
    pub stride: Option<Spanned<usize>>,
    /// L2 factor on the 1x1 kernel while training.
    #[serde(default)]
    pub l2: Option<Spanned<f64>>,
}

/// The module's max pool, or `none`.
#[derive(Debug)]
pub enum PoolSetting {
    None,
    Max(PoolSpec),
}

/// A max pool with `same` padding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default)]
    pub size: Option<Spanned<usize>>,
    #[serde(default)]
    pub stride: Option<Spanned<usize>>,
}

/// The classifier convolution.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    #[serde(default)]
    pub filters: Option<Spanned<usize>>,
    #[serde(default)]
    pub kernel: Option<Spanned<usize>>,
    #[serde(default)]
    pub padding: Option<Spanned<PaddingSpec>>,
    #[serde(default)]
    pub bias: Option<Spanned<bool>>,
    /// L2 factor on the kernel while training.
    #[serde(default)]
    pub l2: Option<Spanned<f64>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSpec {
    Valid,
    Same,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActivationSpec {
    Relu,
    Linear,
}

impl<'de> Deserialize<'de> for PoolSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PoolVisitor;

        impl<'de> serde::de::Visitor<'de> for PoolVisitor {
            type Value = PoolSetting;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or a map with `size` and `stride`")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<PoolSetting, E> {
                if value == "none" {
                    Ok(PoolSetting::None)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(value), &self))
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PoolSetting, A::Error> {
                PoolSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(PoolSetting::Max)
            }
        }

        deserializer.deserialize_any(PoolVisitor)
    }
}

/// Reads the model file's text into a [`ModelSpec`].
///
/// A syntax error or a value of the wrong type stops the parse, so it is the
/// only mistake reported; the semantic checks that follow report all of theirs.
pub fn parse(text: &str) -> Result<ModelSpec, Diagnostic> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut failed_at = None;
    let parsed =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                failed_at = Some(yaml_path(error.path()));
                error.into_inner()
            })
        });
    parsed.map_err(|error| {
        let (line, column) = error
            .location()
            .map_or((0, 0), |l| (l.line() as u32, l.column() as u32));
        let path = failed_at.unwrap_or_default();
        Diagnostic {
            line,
            column,
            path,
            message: describe(&error.to_string(), text, line, column),
        }
    })
}

/// `modules[2].filters`: the path as a model author reads it, without the
/// `value` field through which every `Spanned` is deserialized.
fn yaml_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Turns a serde-saphyr message into one for a model author: without the
/// position (the diagnostic has it) and naming the offending value.
fn describe(message: &str, text: &str, line: u32, column: u32) -> String {
    let message = match message.rfind(" at line ") {
        Some(end) => &message[..end],
        None => message,
    };
    let found = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .and_then(|l| {
            l.chars()
                .skip(column.saturating_sub(1) as usize)
                .collect::<String>()
                .split([',', ']', '}', '#'])
                .next()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty());
    match (message, found) {
        ("invalid u64" | "invalid usize", Some(found)) => {
            format!("expected a whole number, found `{found}`")
        }
        ("invalid boolean" | "invalid bool", Some(found)) => {
            format!("expected `true` or `false`, found `{found}`")
        }
        ("invalid f64" | "invalid floating point number", Some(found)) => {
            format!("expected a number, found `{found}`")
        }
        (message, _) => message.replace("expected one of ", "expected one of: "),
    }
}
