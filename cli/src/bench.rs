//! `mini-xception bench`: median one-image latency and batch throughput.

use crate::args::CliError;
use mini_xception::bench::{self, BenchReport, SyntheticWeights};
use mini_xception::models::{emotion, gender, paz};
use mini_xception::runtime::Isa;
use std::process::ExitCode;

/// The arguments of `mini-xception bench`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = BenchModel::Emotion)]
    pub model: BenchModel,
    /// Threads for the batch throughput.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seconds of measurement, split between latency and throughput.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Instruction set: avx512, avx2 or portable (default: the widest this CPU has,
    /// which is the fastest).
    #[arg(long)]
    pub isa: Option<String>,
    /// One JSON object: latency_ms_median, images_per_s, threads, batch, model, isa,
    /// macs_per_image, peak_macs_per_s, latency_peak_fraction, throughput_peak_fraction.
    #[arg(long)]
    pub json: bool,
}

/// Which model to time; the 48x48 variant is here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    /// The emotion model, 64x64.
    Emotion,
    /// The gender model, 64x64.
    Gender,
    /// The 48x48 paz variant.
    Paz,
}

macro_rules! time_model {
    ($settings:expr, $isa:expr, $module:ident, $model:ident, $scratch:ident, $input:ident) => {{
        let settings: &Args = $settings;
        let model = $module::$model::from_source(&mut SyntheticWeights::new(1))
            .map_err(|error| error.to_string())?
            .with_isa($isa);
        let mut input = $module::$input::zeroed_boxed();
        for (i, value) in input.as_mut_slice().iter_mut().enumerate() {
            *value = ((i * 7919) % 255) as f32 / 127.5 - 1.0;
        }
        let inputs: Vec<$module::$input> = vec![*input; settings.batch];
        let mut outputs = vec![[0.0f32; $module::$model::NUM_CLASSES]; settings.batch];
        let mut scratches: Vec<$module::$scratch> = (0..settings.threads)
            .map(|_| $module::$scratch::try_new())
            .collect::<Result<_, _>>()
            .map_err(|error| error.to_string())?;
        let mut scratch = $module::$scratch::try_new().map_err(|error| error.to_string())?;
        bench::run(
            $module::$model::NAME,
            $module::$model::MACS,
            model.isa(),
            settings.threads,
            settings.batch,
            settings.seconds,
            || {
                std::hint::black_box(model.forward(std::hint::black_box(&input), &mut scratch));
            },
            || {
                model.forward_batch(&inputs, &mut outputs, &mut scratches);
                std::hint::black_box(&outputs);
            },
        )?
    }};
}

/// The instruction set named by `--isa`, or `default`; an error when the
/// name is unknown or the CPU cannot run it.
pub fn isa_named(name: Option<&str>, default: Isa) -> Result<Isa, CliError> {
    let isa = match name {
        None => default,
        Some(name) => Isa::from_name(name)
            .ok_or_else(|| format!("unknown instruction set `{name}` (avx512, avx2, portable)"))?,
    };
    if !isa.is_available() {
        return Err(format!("this CPU cannot run {}", isa.name()).into());
    }
    Ok(isa)
}

pub fn run(settings: Args) -> Result<ExitCode, CliError> {
    let isa = isa_named(settings.isa.as_deref(), Isa::detect())?;
    if settings.threads == 0 || settings.batch == 0 {
        return Err("--threads and --batch must be at least 1".into());
    }
    let report: BenchReport = match settings.model {
        BenchModel::Emotion => time_model!(
            &settings,
            isa,
            emotion,
            MiniXception,
            MiniXceptionScratch,
            MiniXceptionInput
        ),
        BenchModel::Gender => time_model!(
            &settings,
            isa,
            gender,
            GenderMiniXception,
            GenderMiniXceptionScratch,
            GenderMiniXceptionInput
        ),
        BenchModel::Paz => time_model!(
            &settings,
            isa,
            paz,
            MiniXceptionPaz,
            MiniXceptionPazScratch,
            MiniXceptionPazInput
        ),
    };
    if settings.json {
        sayln!("{}", serde_json::to_string(&report)?);
    } else {
        sayln!(
            "{} ({}): {:.3} ms per image (median, 1 thread); {:.0} images/s ({} threads, batches of {})",
            report.model,
            report.isa,
            report.latency_ms_median,
            report.images_per_s,
            report.threads,
            report.batch
        );
        sayln!(
            "  {:.1} GMAC/s measured peak per thread ({}); one image reaches {:.0}% of it, batches {:.0}% of {} thread(s)",
            report.peak_macs_per_s / 1e9,
            report.isa,
            100.0 * report.latency_peak_fraction,
            100.0 * report.throughput_peak_fraction,
            report.threads
        );
    }
    Ok(ExitCode::SUCCESS)
}
