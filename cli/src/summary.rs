//! `mini-xception summary`: a model's layer table.

use crate::args::{CliError, ModelChoice};
use mini_xception::models::{emotion, gender};
use std::process::ExitCode;

/// The arguments of `mini-xception summary`.
#[derive(clap::Args)]
pub struct Args {
    /// The model whose layers to print.
    #[arg(long, value_enum, default_value_t = ModelChoice::Emotion)]
    pub model: ModelChoice,
}

/// Prints the model's layers, output shapes, parameters and MACs.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let table = match args.model {
        ModelChoice::Emotion => emotion::MiniXception::summary(),
        ModelChoice::Gender => gender::GenderMiniXception::summary(),
    };
    say!("{table}");
    Ok(ExitCode::SUCCESS)
}
