//! The `mini_xception!` proc-macro: compiles a YAML model definition into a
//! statically shaped, allocation-free Rust model.
//!
//! The work is a pipeline, one stage per file: `file` finds and reads the
//! YAML, `spec` parses it with positions, `validate` checks the values and
//! fills in defaults, `shape` infers every tensor's shape, and `expand` writes
//! the code. Every stage reports mistakes as `file:line:col: layer: message`.

mod diagnostic;
mod expand;
mod expand_train;
mod file;
mod shape;
mod spec;
mod validate;

#[cfg(test)]
mod tests;

use diagnostic::Diagnostics;
use proc_macro::TokenStream;
use std::path::PathBuf;

/// Compiles a YAML model file into a model type.
///
/// ```ignore
/// mini_xception::mini_xception!("models/mini_xception.yaml");
/// ```
///
/// The path is relative to the calling crate's manifest directory. For a
/// model named `MiniXception` this defines `MiniXception`, `MiniXceptionWeights`,
/// `MiniXceptionScratch` and `MiniXceptionInput`; see the crate documentation
/// of `mini_xception` for the model file format.
#[proc_macro]
pub fn mini_xception(input: TokenStream) -> TokenStream {
    let path = match syn::parse::<syn::LitStr>(input) {
        Ok(path) => path,
        Err(error) => {
            let message = format!(
                "{error}: expected the model file's path, e.g. `mini_xception!(\"models/mini_xception.yaml\")`"
            );
            return syn::Error::new(error.span(), message)
                .to_compile_error()
                .into();
        }
    };
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let calling_file = proc_macro::Span::call_site().local_file();
    let roots = file::roots(manifest_dir, calling_file);
    compile(&path.value(), &roots, path.span()).into()
}

/// The whole pipeline, free of `proc_macro` so that it can be tested.
///
/// Errors point at `error_span`, the path in the macro call.
pub(crate) fn compile(
    written: &str,
    roots: &[PathBuf],
    error_span: proc_macro2::Span,
) -> proc_macro2::TokenStream {
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
