//! `mini-xception compile`: the code a model file compiles to, or its mistakes.

use super::CliError;
use std::path::Path;
use std::process::ExitCode;

/// Prints (or writes to `out`) the formatted code of `model`; with mistakes,
/// prints each as `file:line:col: layer: message` and fails.
pub fn run(model: &Path, out: Option<&Path>) -> Result<ExitCode, CliError> {
    let text = std::fs::read_to_string(model).map_err(|e| format!("{}: {e}", model.display()))?;
    let file = model.display().to_string();
    match mini_xception_compiler::compile_to_string(&text, &file) {
        Ok(code) => {
            match out {
                Some(out) => {
                    std::fs::write(out, code).map_err(|e| format!("{}: {e}", out.display()))?
                }
                None => say!("{code}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{}", diagnostic.render(&file));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
