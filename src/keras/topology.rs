//! The network in a Keras file's `model_config`, matched to the layers of a
//! model file: which Keras convolution and batch norm stand for `base[0]`,
//! `modules[2].residual` or `head`.
//!
//! The match follows the graph, not the layer names: Keras numbers batch norms
//! in creation order, which is not graph order (a module's residual batch norm
//! is created before the main branch's), so only the connections say which is which.

use serde::Deserialize;
use std::collections::HashMap;

/// The parts of `model_config` that say what the network is.
#[derive(Debug, Deserialize)]
pub struct ModelConfig {
    pub config: GraphConfig,
}

#[derive(Debug, Deserialize)]
pub struct GraphConfig {
    pub layers: Vec<LayerConfig>,
}

#[derive(Debug, Deserialize)]
pub struct LayerConfig {
    pub name: String,
    pub class_name: String,
    #[serde(default)]
    pub config: serde_json::Value,
    /// Keras 2: `[[["input_1", 0, 0, {}], ...]]`, one list per call of the layer.
    #[serde(default)]
    pub inbound_nodes: Vec<Vec<serde_json::Value>>,
}

impl LayerConfig {
    /// The names of the layers whose outputs this layer reads.
    fn inputs(&self) -> Vec<String> {
        self.inbound_nodes
            .iter()
            .flatten()
            .filter_map(|inbound| inbound.get(0)?.as_str().map(str::to_string))
            .collect()
    }
}

/// The Keras layers behind one layer of a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedLayer {
    /// The convolution (`Conv2D` or `SeparableConv2D`).
    pub conv: String,
    /// The batch norm right after it, if any.
    pub batch_norm: Option<String>,
}

/// What went wrong while matching: the Keras layer where the graph stopped
/// looking like mini-Xception, and how.
#[derive(Debug)]
pub struct StructureError {
    pub keras_layer: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, StructureError>;

/// The graph: layers by name and who reads whose output.
struct Graph<'a> {
    layers: HashMap<&'a str, &'a LayerConfig>,
    consumers: HashMap<String, Vec<&'a str>>,
}

impl<'a> Graph<'a> {
    fn new(config: &'a GraphConfig) -> Self {
        let mut consumers: HashMap<String, Vec<&str>> = HashMap::new();
        for layer in &config.layers {
            for input in layer.inputs() {
                consumers.entry(input).or_default().push(&layer.name);
            }
        }
        let layers = config.layers.iter().map(|l| (l.name.as_str(), l)).collect();
        Graph { layers, consumers }
    }

    fn class(&self, name: &str) -> &str {
        self.layers.get(name).map_or("", |l| l.class_name.as_str())
    }

    fn consumers(&self, name: &str) -> &[&'a str] {
        self.consumers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The one layer that reads `name`'s output.
    fn sole_consumer(&self, name: &str) -> Result<&'a str> {
        match self.consumers(name) {
            [only] => Ok(only),
            [] => Err(error(name, "nothing reads its output")),
            many => Err(error(
                name,
                format!("{} layers read its output, expected one", many.len()),
            )),
        }
    }

    /// `conv`, then its batch norm if one follows, then its activation if one
    /// follows: the matched layer and the last layer of that chain.
    fn conv_chain(&self, conv: &'a str) -> (MatchedLayer, &'a str) {
        let mut end = conv;
        let mut batch_norm = None;
        if let [next] = self.consumers(end)
            && self.class(next) == "BatchNormalization"
        {
            batch_norm = Some(next.to_string());
            end = next;
        }
        if let [next] = self.consumers(end)
            && self.class(next) == "Activation"
            && self.activation(next) != Some("softmax")
        {
            end = next;
        }
        (
            MatchedLayer {
                conv: conv.to_string(),
                batch_norm,
            },
            end,
        )
    }

    fn activation(&self, name: &str) -> Option<&str> {
        self.layers.get(name)?.config.get("activation")?.as_str()
    }

    fn expect_class(&self, name: &str, class: &str, role: &str) -> Result<()> {
        if self.class(name) == class {
            Ok(())
        } else {
            Err(error(
                name,
                format!(
                    "expected the {role} to be a {class}, found a {}",
                    self.class(name)
                ),
            ))
        }
    }
}

fn error(layer: &str, message: impl Into<String>) -> StructureError {
    StructureError {
        keras_layer: layer.to_string(),
        message: message.into(),
    }
}

/// Walks the graph from its input and names every convolution as the model
/// file would: `base[i]` for the plain convolutions, `modules[i].separable[0|1]`
/// and `modules[i].residual` for each residual module, and `head` for the
/// convolution before the global average pooling.
pub fn match_layers(config: &GraphConfig) -> Result<HashMap<String, MatchedLayer>> {
    let graph = Graph::new(config);
    let input = config
        .layers
        .iter()
        .find(|l| l.class_name == "InputLayer")
        .ok_or_else(|| error("model_config", "the network has no InputLayer"))?;
    let mut matched = HashMap::new();
    let mut current: &str = &input.name;
    let (mut base, mut modules) = (0, 0);
    loop {
        match graph.consumers(current) {
            [next] if graph.class(next) == "Conv2D" => {
                let (layer, end) = graph.conv_chain(next);
                let is_head = graph
                    .consumers(end)
                    .first()
                    .is_some_and(|c| graph.class(c) == "GlobalAveragePooling2D");
                if is_head {
                    matched.insert("head".to_string(), layer);
                    return Ok(matched);
                }
                matched.insert(format!("base[{base}]"), layer);
                base += 1;
                current = end;
            }
            [a, b] => {
                let (separable, residual) = if graph.class(a) == "SeparableConv2D" {
                    (*a, *b)
                } else {
                    (*b, *a)
                };
                current = match_module(&graph, separable, residual, modules, &mut matched)?;
                modules += 1;
            }
            [] => {
                return Err(error(
                    current,
                    "the network ends before a head (a Conv2D followed by GlobalAveragePooling2D)",
                ));
            }
            consumers => {
                return Err(error(
                    current,
                    format!(
                        "its output goes to {}, which mini-Xception never does",
                        describe(&graph, consumers)
                    ),
                ));
            }
        }
    }
}

/// Matches one residual module and returns its `Add` layer, the module's output.
fn match_module<'a>(
    graph: &Graph<'a>,
    separable: &'a str,
    residual: &'a str,
    index: usize,
    matched: &mut HashMap<String, MatchedLayer>,
) -> Result<&'a str> {
    graph.expect_class(separable, "SeparableConv2D", "main branch of a module")?;
    graph.expect_class(residual, "Conv2D", "residual branch of a module")?;
    let (first, first_end) = graph.conv_chain(separable);
    let second_conv = graph.sole_consumer(first_end)?;
    graph.expect_class(
        second_conv,
        "SeparableConv2D",
        "second separable convolution of a module",
    )?;
    let (second, second_end) = graph.conv_chain(second_conv);
    let mut main_end = graph.sole_consumer(second_end)?;
    if graph.class(main_end) == "MaxPooling2D" {
        main_end = graph.sole_consumer(main_end)?;
    }
    graph.expect_class(main_end, "Add", "end of a module's main branch")?;
    let (shortcut, residual_end) = graph.conv_chain(residual);
    let add = graph.sole_consumer(residual_end)?;
    if add != main_end {
        return Err(error(
            residual,
            format!("the residual branch ends in `{add}`, the main branch in `{main_end}`"),
        ));
    }
    matched.insert(format!("modules[{index}].separable[0]"), first);
    matched.insert(format!("modules[{index}].separable[1]"), second);
    matched.insert(format!("modules[{index}].residual"), shortcut);
    Ok(add)
}

fn describe(graph: &Graph<'_>, layers: &[&str]) -> String {
    let named: Vec<String> = layers
        .iter()
        .map(|l| format!("`{l}` ({})", graph.class(l)))
        .collect();
    named.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, class: &str, inputs: &[&str]) -> LayerConfig {
        let inbound: Vec<serde_json::Value> = inputs
            .iter()
            .map(|i| serde_json::json!([i, 0, 0, {}]))
            .collect();
        LayerConfig {
            name: name.into(),
            class_name: class.into(),
            config: serde_json::json!({}),
            inbound_nodes: if inputs.is_empty() {
                vec![]
            } else {
                vec![inbound]
            },
        }
    }

    /// One base conv, one module whose batch norms are numbered out of graph
    /// order (as Keras numbers them), and a head.
    fn tiny() -> GraphConfig {
        GraphConfig {
            layers: vec![
                layer("input_1", "InputLayer", &[]),
                layer("conv2d_1", "Conv2D", &["input_1"]),
                layer("batch_normalization_1", "BatchNormalization", &["conv2d_1"]),
                layer("activation_1", "Activation", &["batch_normalization_1"]),
                layer("separable_conv2d_1", "SeparableConv2D", &["activation_1"]),
                layer(
                    "batch_normalization_3",
                    "BatchNormalization",
                    &["separable_conv2d_1"],
                ),
                layer("activation_2", "Activation", &["batch_normalization_3"]),
                layer("separable_conv2d_2", "SeparableConv2D", &["activation_2"]),
                layer(
                    "batch_normalization_4",
                    "BatchNormalization",
                    &["separable_conv2d_2"],
                ),
                layer("conv2d_2", "Conv2D", &["activation_1"]),
                layer(
                    "max_pooling2d_1",
                    "MaxPooling2D",
                    &["batch_normalization_4"],
                ),
                layer("batch_normalization_2", "BatchNormalization", &["conv2d_2"]),
                layer(
                    "add_1",
                    "Add",
                    &["max_pooling2d_1", "batch_normalization_2"],
                ),
                layer("conv2d_3", "Conv2D", &["add_1"]),
                layer(
                    "global_average_pooling2d_1",
                    "GlobalAveragePooling2D",
                    &["conv2d_3"],
                ),
                layer("predictions", "Activation", &["global_average_pooling2d_1"]),
            ],
        }
    }

    #[test]
    fn matches_by_connections_not_by_numbers() {
        let matched = match_layers(&tiny()).unwrap();
        let get = |path: &str| matched[path].clone();
        assert_eq!(
            get("base[0]").batch_norm.as_deref(),
            Some("batch_normalization_1")
        );
        assert_eq!(
            get("modules[0].separable[0]").batch_norm.as_deref(),
            Some("batch_normalization_3")
        );
        assert_eq!(get("modules[0].separable[1]").conv, "separable_conv2d_2");
        assert_eq!(get("modules[0].residual").conv, "conv2d_2");
        assert_eq!(
            get("modules[0].residual").batch_norm.as_deref(),
            Some("batch_normalization_2")
        );
        assert_eq!(
            get("head"),
            MatchedLayer {
                conv: "conv2d_3".into(),
                batch_norm: None
            }
        );
        assert_eq!(matched.len(), 5);
    }

    #[test]
    fn a_network_of_another_shape_is_an_error_naming_the_layer() {
        let mut config = tiny();
        // The residual branch skips the module and goes straight to the head.
        config
            .layers
            .retain(|l| l.name != "global_average_pooling2d_1" && l.name != "predictions");
        let error = match_layers(&config).unwrap_err();
        assert_eq!(error.keras_layer, "conv2d_3");
        assert!(
            error.message.contains("ends before a head"),
            "{}",
            error.message
        );
    }
}
