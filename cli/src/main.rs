//! `mini-xception`: the command-line tool over the shipped models. Each
//! subcommand is a module with its arguments (`Args`, one `clap::Args`
//! struct) and its `run`.

/// `print!` for a command's output: a closed standard output (the reader,
/// such as `head`, has had enough) is an error the command returns, which
/// `main` ends quietly, where `print!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `println!` for a command's output; see [`say!`].
macro_rules! sayln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod args;
mod bench;
mod classify;
mod compile;
mod detect;
mod eval;
mod explain;
mod faces;
mod plots;
mod recalibrate;
mod summary;
mod train;
mod video;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mini-xception",
    version,
    about = "The mini-Xception emotion and gender classifiers (Arriaga et al., 2017), compiled from YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images, each taken as one face crop.
    Classify(classify::Args),
    /// Accuracy, per-class accuracy and confusion matrix of the emotion model
    /// on one split of a FER2013 CSV.
    Eval(eval::Args),
    /// Find the faces of each photo with the Haar cascade, as OpenCV's
    /// detectMultiScale does, and time it.
    Detect(detect::Args),
    /// Find the faces of each photo (Haar cascade) and label each with an
    /// emotion and, with --gender-weights, a gender.
    Faces(faces::Args),
    /// Label the faces of every frame of a video (read with the ffmpeg
    /// command-line tool), each face's label smoothed over its last 10 frames.
    Video(video::Args),
    /// Show what the classifier looks at: the saliency of each face's
    /// predicted (or given) label, written as a PNG (the face, the map, the
    /// map over the face) beside each image, as <name>.<method>.png.
    Explain(explain::Args),
    /// Median one-image latency and batch throughput of a model on this machine
    /// (seeded random weights: the speed does not depend on their values).
    Bench(bench::Args),
    /// Train a model on FER2013: Training to learn, PublicTest to select.
    /// Writes best.safetensors, last.checkpoint and history.csv to --out.
    Train(train::Args),
    /// Measure a trained run's batch-norm statistics afresh on the
    /// unaugmented Training faces and write its weights with them (as
    /// `train --recalibrate-bn` does each epoch); prints PublicTest's loss
    /// and accuracy before and after.
    Recalibrate(recalibrate::Args),
    /// Print the Rust code a model file compiles to, formatted, or every
    /// mistake in it as file:line:col (exit code 1).
    Compile(compile::Args),
    /// Print a model's layers, output shapes, parameters and MACs.
    Summary(summary::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Classify(args) => classify::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Faces(args) => faces::run(args),
        Command::Video(args) => video::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(args),
        Command::Recalibrate(args) => recalibrate::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Summary(args) => summary::run(args),
    };
    result.unwrap_or_else(|error| {
        // The reader of our output stopped reading (`... | head`): nothing
        // went wrong here, and there is no one left to tell.
        let broken_pipe = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        eprintln!("mini-xception: {error}");
        ExitCode::FAILURE
    })
}
