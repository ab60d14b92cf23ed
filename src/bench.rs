//! Timing of the compiled-in models: median one-image latency on one thread,
//! and batch throughput on a given number of threads.

use crate::runtime::peak::multiply_adds_per_second;
use crate::runtime::{Isa, ParameterKind, ParameterSource, ParameterSpec};
use std::time::{Duration, Instant};

/// Seeded pseudo-random weights of a plausible scale. The forward pass has no
/// data-dependent branches, so its speed does not depend on the values.
pub struct SyntheticWeights {
    state: u64,
}

impl SyntheticWeights {
    /// Weights from `seed`.
    pub fn new(seed: u64) -> Self {
        SyntheticWeights {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// A value in `[-1, 1)` (xorshift64*).
    fn next(&mut self) -> f32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
}

impl ParameterSource for SyntheticWeights {
    /// Only the weights' own allocation can fail.
    type Error = crate::runtime::AllocError;

    fn read(&mut self, spec: &ParameterSpec<'_>, values: &mut [f32]) -> Result<(), Self::Error> {
        let scale = match spec.kind {
            ParameterKind::Gamma | ParameterKind::MovingVariance => {
                values.fill(1.0);
                return Ok(());
            }
            ParameterKind::Kernel
            | ParameterKind::DepthwiseKernel
            | ParameterKind::PointwiseKernel => {
                (3.0 / (spec.len() as f32 / spec.shape.last().copied().unwrap_or(1) as f32)).sqrt()
            }
            _ => 0.1,
        };
        for value in values {
            *value = self.next() * scale;
        }
        Ok(())
    }
}

/// What a benchmark run measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub isa: String,
    pub threads: usize,
    pub batch: usize,
    /// Median of single-image forward passes on one thread, in milliseconds.
    pub latency_ms_median: f64,
    /// Images per second over whole batches on `threads` threads.
    pub images_per_s: f64,
    /// Multiply-adds of one image's forward pass.
    pub macs_per_image: usize,
    /// Multiply-adds per second one thread of this machine reaches at best
    /// with the same instruction set, measured just before
    /// ([`mini_xception_runtime::peak`]).
    pub peak_macs_per_s: f64,
    /// The one-image latency's multiply-add rate as a fraction of that peak.
    pub latency_peak_fraction: f64,
    /// The batch throughput's multiply-add rate as a fraction of `threads`
    /// times the one-thread peak.
    pub throughput_peak_fraction: f64,
}

/// The median duration of `run` over repeated calls for about `budget`,
/// after a warm-up; at least 11 calls.
pub fn median_latency(budget: Duration, mut run: impl FnMut()) -> Duration {
    let warm_up = Instant::now();
    while warm_up.elapsed() < budget / 10 {
        run();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 11 || start.elapsed() < budget {
        let t = Instant::now();
        run();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// Images per second of `run_batch` (which runs `batch` images) over about `budget`.
pub fn throughput(budget: Duration, batch: usize, mut run_batch: impl FnMut()) -> f64 {
    run_batch();
    let start = Instant::now();
    let mut images = 0;
    while images == 0 || start.elapsed() < budget {
        run_batch();
        images += batch;
    }
    images as f64 / start.elapsed().as_secs_f64()
}

/// Benchmarks a model given as closures over its own types. `forward` runs one
/// image of `macs_per_image` multiply-adds; `forward_batch` runs `batch`
/// images on the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &str,
    macs_per_image: usize,
    isa: Isa,
    threads: usize,
    batch: usize,
    seconds: f64,
    forward: impl FnMut(),
    forward_batch: impl FnMut() + Send,
) -> Result<BenchReport, rayon::ThreadPoolBuildError> {
    let budget = Duration::from_secs_f64(seconds.max(0.02) / 2.0);
    let peak_macs_per_s = multiply_adds_per_second(isa, budget / 4);
    let latency = median_latency(budget, forward);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let images_per_s = pool.install(|| throughput(budget, batch, forward_batch));
    Ok(BenchReport {
        model: model.to_string(),
        isa: isa.name().to_string(),
        threads,
        batch,
        latency_ms_median: latency.as_secs_f64() * 1e3,
        images_per_s,
        macs_per_image,
        peak_macs_per_s,
        latency_peak_fraction: macs_per_image as f64
            / latency.as_secs_f64().max(1e-12)
            / peak_macs_per_s,
        throughput_peak_fraction: images_per_s * macs_per_image as f64
            / (peak_macs_per_s * threads as f64),
    })
}
