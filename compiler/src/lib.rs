//! The mini-Xception model-definition compiler: a YAML model file in, the
//! Rust code of a statically shaped, allocation-free model out, or every
//! mistake in the file with its place.
//!
//! The work is a pipeline, one stage per file: `file` finds and reads the
//! YAML, `spec` parses it with positions, `validate` checks the values and
//! fills in defaults, `shape` infers every tensor's shape, and `expand` writes
//! the code. Every stage reports mistakes as `file:line:col: layer: message`.
//!
//! The `mini_xception!` proc-macro (crate `mini-xception-macro`) is a thin
//! wrapper around [`expand_model_file`].

mod diagnostic;
mod expand;
mod expand_train;
mod file;
mod shape;
mod spec;
mod validate;

#[cfg(test)]
mod tests;

pub use diagnostic::Diagnostic;
pub use file::roots;

use diagnostic::Diagnostics;
use proc_macro2::{Span, TokenStream};
use std::path::PathBuf;

/// The whole pipeline for the proc-macro: the model file `written` (as the
/// user wrote its path), looked for under each of `roots` in turn, compiled
/// to code, or to `compile_error!`s that point at `error_span` (the path in
/// the macro call), one per mistake.
pub fn expand_model_file(written: &str, roots: &[PathBuf], error_span: Span) -> TokenStream {
    let model_file = match file::read(written, roots) {
        Ok(model_file) => model_file,
        Err(message) => return expand::expand_errors(&[message], None, error_span),
    };
    let spec = match spec::parse(&model_file.text) {
        Ok(spec) => spec,
        Err(diagnostic) => {
            return expand::expand_errors(&[diagnostic.render(written)], None, error_span);
        }
    };
    let mut diagnostics = Diagnostics::default();
    let network = validate::validate(&spec, &mut diagnostics)
        .and_then(|model| shape::infer(&model, &mut diagnostics));
    match network {
        Some(network) if diagnostics.is_empty() => {
            expand::expand(&network, written, &model_file.absolute.to_string_lossy())
        }
        _ => {
            let messages: Vec<String> = diagnostics
                .into_sorted()
                .iter()
                .map(|d| d.render(written))
                .collect();
            expand::expand_errors(&messages, Some(&spec.name.value), error_span)
        }
    }
}
