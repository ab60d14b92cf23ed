//! The cascade model and its reader for OpenCV's "new" cascade XML format
//! (as written by `opencv_traincascade`), checked so that evaluation can
//! never index out of range or loop.
//!
//! Numbers are converted exactly as OpenCV 4.10's
//! `CascadeClassifierImpl::Data::read` converts them: every threshold, leaf
//! and weight is parsed as a double and stored as a `float`, and each stage
//! threshold has `1e-5f` subtracted in `float`.

use roxmltree::Document;

use super::CascadeError;
use super::xml::{Element, byte_offset, open_element_at, parse_integer, parse_real, quoted};

/// OpenCV's `THRESHOLD_EPS`, taken off every stage threshold on load.
const THRESHOLD_EPS: f32 = 1e-5;

/// OpenCV's `HaarEvaluator::Feature::RECT_NUM`.
pub(crate) const MAX_RECTS: usize = 3;

/// The window sides accepted. Trained cascades use about 20 to 40 (24 for the
/// frontal-face ones). Below 3 the variance-normalisation rectangle (the
/// window less a 1-pixel border) would be empty; the upper bound keeps every
/// offset computation small.
const MIN_WINDOW_SIDE: i64 = 3;
const MAX_WINDOW_SIDE: i64 = 4096;

/// One weighted rectangle of a Haar feature, in window coordinates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WeightedRect {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) weight: f32,
}

/// A Haar feature: up to three weighted rectangles; unused ones are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Feature {
    pub(crate) rects: [WeightedRect; MAX_RECTS],
}

/// One internal node of a weak tree. A child `> 0` is another node of the
/// same tree; a child `<= 0` is leaf `-child` (OpenCV's encoding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Node {
    pub(crate) feature: usize,
    pub(crate) threshold: f32,
    pub(crate) left: i32,
    pub(crate) right: i32,
}

/// A weak classifier: its nodes and leaves in [`Model::nodes`] and
/// [`Model::leaves`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tree {
    pub(crate) first_node: usize,
    pub(crate) node_count: usize,
    pub(crate) first_leaf: usize,
}

/// A boosted stage: trees `first_tree..first_tree + tree_count`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stage {
    pub(crate) first_tree: usize,
    pub(crate) tree_count: usize,
    pub(crate) threshold: f32,
}

/// A validated cascade: every feature index, child and leaf reference is in
/// range and every child index points further into its tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Model {
    pub(crate) window_width: u32,
    pub(crate) window_height: u32,
    pub(crate) stages: Vec<Stage>,
    pub(crate) trees: Vec<Tree>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) leaves: Vec<f32>,
    pub(crate) features: Vec<Feature>,
}

impl Model {
    /// True if every tree is a single node: OpenCV then evaluates trees as
    /// stumps (`predictOrderedStump`), left leaf below the threshold.
    pub(crate) fn all_stumps(&self) -> bool {
        self.trees.iter().all(|tree| tree.node_count == 1)
    }
}

/// Parses cascade XML `text`; `source_name` names it in errors.
pub(crate) fn parse(text: &str, source_name: &str) -> Result<Model, CascadeError> {
    if text.trim().is_empty() {
        return Err(CascadeError::Invalid {
            source_name: source_name.to_owned(),
            element: "opencv_storage".to_owned(),
            expected: "an OpenCV cascade XML document".to_owned(),
            found: "an empty file".to_owned(),
        });
    }
    let document = Document::parse(text).map_err(|error| {
        // A truncated file fails at its end, but roxmltree reports these
        // errors at 1:1, so the open element is looked for at the end.
        let truncated = matches!(
            error,
            roxmltree::Error::UnclosedRootNode | roxmltree::Error::UnexpectedEndOfStream
        );
        let at = if truncated {
            text.len()
        } else {
            byte_offset(text, error.pos().row, error.pos().col)
        };
        CascadeError::Xml {
            source_name: source_name.to_owned(),
            element: open_element_at(text, at).unwrap_or_else(|| "opencv_storage".to_owned()),
            message: if truncated {
                format!("the file ends before this element is closed (truncated?): {error}")
            } else {
                error.to_string()
            },
        }
    })?;
    let root = document.root_element();
    let root = Element::new(root, root.tag_name().name().to_owned(), source_name);
    if root.name() != "opencv_storage" {
        return Err(root.invalid(
            "an OpenCV FileStorage document (root element <opencv_storage>)",
            format!("root element <{}>", root.name()),
        ));
    }
    // OpenCV reads the first top-level node, whatever its name.
    let top = root.top_level().ok_or_else(|| {
        root.invalid(
            "a cascade element (e.g. <cascade>) inside <opencv_storage>",
            "no element",
        )
    })?;
    if top.attribute("type_id") == Some("opencv-haar-classifier") {
        return Err(top.unsupported(
            "the old cascade format (type_id \"opencv-haar-classifier\"); convert it with \
             OpenCV's cascade converter or use a cascade written by opencv_traincascade",
        ));
    }
    read_cascade(&top)
}

fn read_cascade(cascade: &Element<'_, '_>) -> Result<Model, CascadeError> {
    let stage_type = cascade.child("stageType")?;
    if stage_type.word()? != "BOOST" {
        return Err(stage_type.invalid("BOOST", quoted(stage_type.text()?.trim())));
    }
    let feature_type = cascade.child("featureType")?;
    match feature_type.word()?.as_str() {
        "HAAR" => {}
        "LBP" | "HOG" => {
            return Err(feature_type.unsupported(format!(
                "{} features (only HAAR cascades are implemented)",
                feature_type.word()?
            )));
        }
        other => return Err(feature_type.invalid("HAAR", quoted(other))),
    }
    let window_height = window_side(&cascade.child("height")?)?;
    let window_width = window_side(&cascade.child("width")?)?;

    let feature_params = cascade.child("featureParams")?;
    if let Some(categories) = feature_params.optional_child("maxCatCount") {
        let count = categories.integer()?;
        if count != 0 {
            return Err(categories.invalid(
                "0 (HAAR features are ordered, not categorical)",
                count.to_string(),
            ));
        }
    }

    let features = cascade
        .child("features")?
        .items()?
        .iter()
        .map(|item| read_feature(item, window_width, window_height))
        .collect::<Result<Vec<_>, _>>()?;
    if features.is_empty() {
        return Err(cascade
            .child("features")?
            .invalid("at least one feature", "none"));
    }

    let mut model = Model {
        window_width,
        window_height,
        stages: Vec::new(),
        trees: Vec::new(),
        nodes: Vec::new(),
        leaves: Vec::new(),
        features,
    };
    let stages = cascade.child("stages")?;
    for stage in stages.items()? {
        read_stage(&stage, &mut model)?;
    }
    if model.stages.is_empty() {
        return Err(stages.invalid("at least one stage", "none"));
    }
    Ok(model)
}

fn window_side(element: &Element<'_, '_>) -> Result<u32, CascadeError> {
    let side = element.integer()?;
    if !(MIN_WINDOW_SIDE..=MAX_WINDOW_SIDE).contains(&side) {
        return Err(element.invalid(
            format!("a window side from {MIN_WINDOW_SIDE} to {MAX_WINDOW_SIDE}"),
            side.to_string(),
        ));
    }
    u32::try_from(side).map_err(|_| element.invalid("a window side", side.to_string()))
}

fn read_feature(
    item: &Element<'_, '_>,
    window_width: u32,
    window_height: u32,
) -> Result<Feature, CascadeError> {
    if let Some(tilted) = item.optional_child("tilted")
        && tilted.integer()? != 0
    {
        return Err(tilted
            .unsupported("tilted (45-degree) Haar features; the frontal-face cascades have none"));
    }
    let rects = item.child("rects")?;
    let rect_items = rects.items()?;
    if rect_items.is_empty() || rect_items.len() > MAX_RECTS {
        return Err(rects.invalid(
            format!("1 to {MAX_RECTS} rectangles"),
            format!("{} rectangles", rect_items.len()),
        ));
    }
    let mut feature = Feature::default();
    for (slot, rect) in feature.rects.iter_mut().zip(&rect_items) {
        *slot = read_rect(rect, window_width, window_height)?;
    }
    Ok(feature)
}

fn read_rect(
    rect: &Element<'_, '_>,
    window_width: u32,
    window_height: u32,
) -> Result<WeightedRect, CascadeError> {
    let expected = "\"x y width height weight\" (four integers and a number)";
    let tokens = rect.tokens()?;
    let [x, y, width, height, weight] = tokens.as_slice() else {
        return Err(rect.invalid(expected, format!("{} values", tokens.len())));
    };
    let mut coordinates = [0_u32; 4];
    for (value, token) in coordinates.iter_mut().zip([x, y, width, height]) {
        let parsed = parse_integer(token).ok_or_else(|| rect.invalid(expected, quoted(token)))?;
        *value = u32::try_from(parsed)
            .map_err(|_| rect.invalid("non-negative rectangle coordinates", parsed.to_string()))?;
    }
    let [x, y, width, height] = coordinates;
    // The rectangle must lie inside the window, so that its integral-image
    // corners lie inside every scanned window.
    if u64::from(x) + u64::from(width) > u64::from(window_width)
        || u64::from(y) + u64::from(height) > u64::from(window_height)
    {
        return Err(rect.invalid(
            format!("a rectangle inside the {window_width}x{window_height} window"),
            format!("{x} {y} {width} {height}"),
        ));
    }
    let weight =
        parse_real(weight).ok_or_else(|| rect.invalid("a finite weight", quoted(weight)))?;
    Ok(WeightedRect {
        x,
        y,
        width,
        height,
        weight: weight as f32,
    })
}

fn read_stage(stage: &Element<'_, '_>, model: &mut Model) -> Result<(), CascadeError> {
    let threshold = stage.child("stageThreshold")?.real()? as f32 - THRESHOLD_EPS;
    let weak = stage.child("weakClassifiers")?;
    let first_tree = model.trees.len();
    for tree in weak.items()? {
        read_tree(&tree, model)?;
    }
    let tree_count = model.trees.len() - first_tree;
    if tree_count == 0 {
        return Err(weak.invalid("at least one weak classifier", "none"));
    }
    model.stages.push(Stage {
        first_tree,
        tree_count,
        threshold,
    });
    Ok(())
}

fn read_tree(tree: &Element<'_, '_>, model: &mut Model) -> Result<(), CascadeError> {
    let internal = tree.child("internalNodes")?;
    let leaf_values = tree.child("leafValues")?;
    let tokens = internal.tokens()?;
    let expected = "groups of \"left right featureIdx threshold\"";
    if tokens.is_empty() || tokens.len() % 4 != 0 {
        return Err(internal.invalid(expected, format!("{} values", tokens.len())));
    }
    let node_count = tokens.len() / 4;
    let leaves = leaf_values
        .tokens()?
        .iter()
        .map(|token| {
            parse_real(token)
                .map(|value| value as f32)
                .ok_or_else(|| leaf_values.invalid("finite leaf values", quoted(token)))
        })
        .collect::<Result<Vec<f32>, _>>()?;
    if leaves.len() != node_count + 1 {
        return Err(leaf_values.invalid(
            format!(
                "{} leaf values (one more than the {node_count} internal nodes)",
                node_count + 1
            ),
            format!("{} values", leaves.len()),
        ));
    }
    let feature_count = model.features.len();
    let first_node = model.nodes.len();
    for (index, group) in tokens.chunks_exact(4).enumerate() {
        let [left, right, feature, threshold] = group else {
            return Err(internal.invalid(expected, format!("{} values", tokens.len())));
        };
        let integer = |token: &String| {
            parse_integer(token).ok_or_else(|| {
                internal.invalid(format!("an integer in node {index}"), quoted(token))
            })
        };
        let feature = integer(feature)?;
        let feature = usize::try_from(feature)
            .ok()
            .filter(|&feature| feature < feature_count)
            .ok_or_else(|| {
                internal.invalid(
                    format!("a feature index below {feature_count} (the number of features) in node {index}"),
                    feature.to_string(),
                )
            })?;
        let threshold = parse_real(threshold).ok_or_else(|| {
            internal.invalid(
                format!("a finite threshold in node {index}"),
                quoted(threshold),
            )
        })?;
        let mut children = [0_i32; 2];
        for (child, token) in children.iter_mut().zip([left, right]) {
            let value = integer(token)?;
            // A positive child must be a later node of this tree (which also
            // rules out cycles); a child <= 0 must name an existing leaf.
            let valid = if value > 0 {
                value > index as i64 && value < node_count as i64
            } else {
                value >= -(node_count as i64)
            };
            if !valid {
                return Err(internal.invalid(
                    format!(
                        "a child in node {index} that is a later node (1..{node_count}) or a leaf (0..=-{node_count})"
                    ),
                    value.to_string(),
                ));
            }
            *child = i32::try_from(value)
                .map_err(|_| internal.invalid("a child index", value.to_string()))?;
        }
        model.nodes.push(Node {
            feature,
            threshold: threshold as f32,
            left: children[0],
            right: children[1],
        });
    }
    model.trees.push(Tree {
        first_node,
        node_count,
        first_leaf: model.leaves.len(),
    });
    model.leaves.extend(leaves);
    Ok(())
}
