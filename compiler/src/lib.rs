//! The mini-Xception model-definition compiler: a YAML model file in, the
//! Rust code of a statically shaped, allocation-free model out, or every
//! mistake in the file with its place.
//!
//! The work is a pipeline, one stage per file: `file` finds and reads the
//! YAML, `spec` parses it with positions, `validate` checks the values and
//! fills in defaults, `shape` infers every tensor's shape, and `expand` writes
//! the code. Every stage reports mistakes as `file:line:col: layer: message`.
//!
//! A model file may not ask for more than the [`limits`] allow: an input
//! or a layer too large for any real-time classifier is a compile error
//! that names the limit, not a failure when the scratch space is allocated.
//!
//! Three routes lead here:
//!
//! - the `mini_xception!` proc-macro (crate `mini-xception-macro`), a thin
//!   wrapper around [`expand_model_file`];
//! - a build script, as prost-build and bindgen offer: [`compile`] writes the
//!   code to a file in `OUT_DIR`, to be `include!`d, for those who want to
//!   read, diff or vendor it;
//! - [`compile_text`], for tools (the `mini-xception compile` command, a
//!   fuzzer): text in, code or every diagnostic out.
//!
//! ```ignore
//! // build.rs
//! fn main() {
//!     let out_dir = std::env::var("OUT_DIR").unwrap();
//!     if mini_xception_compiler::compile("models/mini_xception.yaml", out_dir).is_err() {
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs: the generated code names the runtime as `::mini_xception::runtime`.
//! include!(concat!(env!("OUT_DIR"), "/mini_xception.rs"));
//! ```

mod diagnostic;
mod expand;
mod expand_train;
mod file;
pub mod limits;
mod shape;
mod slots;
mod spec;
mod tokens;
mod validate;

#[cfg(test)]
mod tests;

pub use diagnostic::Diagnostic;
pub use file::roots;

/// How a model is compiled, beyond what its file says: the options of the
/// `mini_xception!` macro after the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Whether the training code (the `TrainableModel` forward and backward
    /// passes) is `#[inline]`. Inline, the default, it is compiled in each
    /// crate that trains the model and in no other: a model used only for
    /// inference costs no training code. Not inline (`inline_training =
    /// false`), it is compiled once, in the crate of the macro call, and
    /// every crate that trains the model links to it: for a library whose
    /// models several binaries and tests train.
    pub inline_training: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            inline_training: true,
        }
    }
}

use diagnostic::Diagnostics;
use proc_macro2::{Span, TokenStream};
use std::path::{Path, PathBuf};

/// Compiles model file text: the generated code, or every mistake found,
/// in file order. `file` names the file in the code's documentation.
pub fn compile_text(text: &str, file: &str) -> Result<TokenStream, Vec<Diagnostic>> {
    compile_spec(text, file, None, &Options::default()).map_err(|failure| failure.diagnostics)
}

/// [`compile_text`], formatted as a person would write it (prettyplease).
pub fn compile_to_string(text: &str, file: &str) -> Result<String, Vec<Diagnostic>> {
    compile_text(text, file).map(|tokens| format_code(&tokens))
}

/// A model file that did not compile: its mistakes, in file order, and the
/// model's name when the file parsed (for the macro's stand-in types).
struct Failure {
    diagnostics: Vec<Diagnostic>,
    model_name: Option<String>,
}

/// The pipeline after reading: parse, validate, infer shapes, expand;
/// `absolute` is the file for the generated code to watch, if any.
fn compile_spec(
    text: &str,
    file: &str,
    absolute: Option<&str>,
    options: &Options,
) -> Result<TokenStream, Failure> {
    let spec = spec::parse(text).map_err(|diagnostic| Failure {
        diagnostics: vec![diagnostic],
        model_name: None,
    })?;
    let mut diagnostics = Diagnostics::default();
    let network = validate::validate(&spec, &mut diagnostics)
        .and_then(|model| shape::infer(&model, &mut diagnostics));
    match network {
        Some(network) if diagnostics.is_empty() => {
            Ok(expand::expand(&network, file, absolute, options))
        }
        _ => Err(Failure {
            diagnostics: diagnostics.into_sorted(),
            model_name: Some(spec.name.value.clone()),
        }),
    }
}

/// Generated code as text: formatted when it parses as a Rust file (it
/// always should), else as the tokens print.
fn format_code(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

/// Why [`compile`] wrote nothing.
#[derive(Debug)]
pub enum CompileError {
    /// The model file or the output could not be read or written.
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    /// Mistakes in the model file, each with its place.
    Model {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl std::fmt::Display for CompileError {
    /// One line per mistake, `file:line:col: layer: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Io { file, error } => write!(f, "{}: {error}", file.display()),
            CompileError::Model { file, diagnostics } => {
                let file = file.display().to_string();
                let rendered: Vec<String> = diagnostics.iter().map(|d| d.render(&file)).collect();
                write!(f, "{}", rendered.join("\n"))
            }
        }
    }
}

impl std::error::Error for CompileError {}

/// The build-script route: compiles the model file `model` (relative to the
/// current directory, which for a build script is the package's) and
/// writes the formatted code to `out_dir/<file stem>.rs`, giving that path.
/// Tells cargo to rerun the build script when the file changes, and prints
/// each mistake as a cargo error (`cargo::error=file:line:col: ...`), which
/// cargo shows and which fails the build.
pub fn compile(
    model: impl AsRef<Path>,
    out_dir: impl AsRef<Path>,
) -> Result<PathBuf, CompileError> {
    let model = model.as_ref();
    println!("cargo::rerun-if-changed={}", model.display());
    let result = compile_file(model, out_dir.as_ref());
    if let Err(error) = &result {
        for line in error.to_string().lines() {
            println!("cargo::error={line}");
        }
    }
    result
}

/// [`compile`] without cargo's messages.
pub fn compile_file(model: &Path, out_dir: &Path) -> Result<PathBuf, CompileError> {
    let text = std::fs::read_to_string(model).map_err(|error| CompileError::Io {
        file: model.to_path_buf(),
        error,
    })?;
    let written = model.display().to_string();
    let tokens = compile_text(&text, &written).map_err(|diagnostics| CompileError::Model {
        file: model.to_path_buf(),
        diagnostics,
    })?;
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let out = out_dir.join(format!("{stem}.rs"));
    std::fs::write(&out, format_code(&tokens)).map_err(|error| CompileError::Io {
        file: out.clone(),
        error,
    })?;
    Ok(out)
}

/// The whole pipeline for the proc-macro: the model file `written` (as the
/// user wrote its path), looked for under each of `roots` in turn, compiled
/// to code with `options`, or to `compile_error!`s that point at
/// `error_span` (the path in the macro call), one per mistake.
pub fn expand_model_file(
    written: &str,
    roots: &[PathBuf],
    options: &Options,
    error_span: Span,
) -> TokenStream {
    let model_file = match file::read(written, roots) {
        Ok(model_file) => model_file,
        Err(message) => return expand::expand_errors(&[message], None, error_span),
    };
    let absolute = model_file.absolute.to_string_lossy();
    match compile_spec(&model_file.text, written, Some(&absolute), options) {
        Ok(code) => code,
        Err(failure) => {
            let messages: Vec<String> = failure
                .diagnostics
                .iter()
                .map(|d| d.render(written))
                .collect();
            expand::expand_errors(&messages, failure.model_name.as_deref(), error_span)
        }
    }
}
