//! `mini-xception compile`: the code a model file compiles to, or its mistakes.

use crate::args::CliError;
use std::path::PathBuf;
use std::process::ExitCode;

/// The arguments of `mini-xception compile`.
#[derive(clap::Args)]
pub struct Args {
    /// The YAML model file.
    pub model: PathBuf,
    /// Write the code to FILE instead of printing it.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Prints (or writes to `out`) the formatted code of `model`; with mistakes,
/// prints each as `file:line:col: layer: message` and fails.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (model, out) = (&args.model, args.out.as_deref());
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
