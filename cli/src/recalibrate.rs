//! `mini-xception recalibrate`: a run's weights with batch-norm statistics
//! measured afresh on the unaugmented Training faces.

use crate::args::CliError;
use mini_xception::models::{emotion::MiniXception, paz::MiniXceptionPaz, wide::MiniXceptionWide};
use mini_xception::runtime::Isa;
use mini_xception::runtime::train::TrainableModel;
use mini_xception::train::checkpoint::read_header;
use mini_xception::train::recalibrate;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The arguments of `mini-xception recalibrate`.
#[derive(clap::Args)]
pub struct Args {
    /// The FER2013 CSV (plain or gzip-compressed).
    #[arg(long)]
    pub data: PathBuf,
    /// The weights to write (native .safetensors, batch norms folded).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Threads (default: one per core); the result does not depend on them.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Instruction set of the kernels: avx512, avx2 or portable
    /// (default as for `train`).
    #[arg(long)]
    pub isa: Option<String>,
    /// A run's checkpoint (`train`'s RUN/last.checkpoint); its model,
    /// batch size, training-face limit and L2 factors are the run's.
    pub checkpoint: PathBuf,
}

/// Recalibrates the checkpoint's weights and writes them to `--out`.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (checkpoint, data, out) = (&args.checkpoint, &args.data, &args.out);
    let isa = args.isa.as_deref();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // As `train`: AVX2 before AVX-512, the same weights either way.
    let isa = crate::bench::isa_named(isa, Isa::for_training(Isa::is_available))?;
    let model = read_header(checkpoint)?.model;
    if model == MiniXception::NAME {
        run_model::<MiniXception>(checkpoint, data, out, threads, isa)
    } else if model == MiniXceptionPaz::NAME {
        run_model::<MiniXceptionPaz>(checkpoint, data, out, threads, isa)
    } else if model == MiniXceptionWide::NAME {
        run_model::<MiniXceptionWide>(checkpoint, data, out, threads, isa)
    } else {
        Err(format!(
            "{}: a checkpoint of the model `{model}`, which this binary does not have (it has {}, {} and {})",
            checkpoint.display(),
            MiniXception::NAME,
            MiniXceptionPaz::NAME,
            MiniXceptionWide::NAME
        )
        .into())
    }
}

fn run_model<M: TrainableModel>(
    checkpoint: &Path,
    data: &Path,
    out: &Path,
    threads: usize,
    isa: Isa,
) -> Result<ExitCode, CliError> {
    let result = recalibrate::<M>(checkpoint, data, out, threads, isa)?;
    for (what, evaluation) in [
        ("as trained", &result.before),
        ("recalibrated", &result.after),
    ] {
        sayln!(
            "{what:<13} PublicTest loss {:.4}, accuracy {:.2}%",
            evaluation.loss,
            100.0 * evaluation.accuracy
        );
    }
    sayln!("weights in {}", out.display());
    Ok(ExitCode::SUCCESS)
}
