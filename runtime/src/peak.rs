//! The multiply-add throughput one core reaches at best, measured: what the
//! forward pass's speed is a fraction of.
//!
//! Clock speeds under a hypervisor or with turbo are not what the CPU's
//! model name says, so the peak is measured: independent chains of vector
//! multiply-adds, as many as cover the FMA latency on both FMA units, with
//! nothing else in the loop.

use crate::isa::{Arithmetic, Isa, WithArithmetic, dispatch};
use std::time::{Duration, Instant};

/// Independent accumulator chains: current x86-64 cores have 2 FMA units
/// with a latency of 4 cycles, so 8 chains keep both busy; 12 leave margin
/// and, at 8 lanes, still fit the 16 AVX2 registers.
const CHAINS: usize = 12;

/// Multiply-adds per chain between two looks at the clock.
const STEPS: usize = 1 << 16;

struct Chains<const LANES: usize> {
    rounds: usize,
    seed: f32,
}

impl<const LANES: usize> WithArithmetic for Chains<LANES> {
    type Output = f32;

    #[inline(always)]
    fn run<A: Arithmetic>(self, _arithmetic: A) -> f32 {
        // x -> x * a + b converges to b / (1 - a), so the values stay finite
        // and normal however long it runs.
        let (a, b) = (0.999f32, self.seed);
        // One flat run of `CHAINS` vectors: LLVM keeps it in `CHAINS`
        // registers. As an array of `CHAINS` arrays of 16 lanes, LLVM
        // vectorises the loop over the chains instead, with gathers and
        // scatters, and the AVX-512 peak comes out far below AVX2's.
        let mut acc = [[0.5f32; LANES]; CHAINS];
        for _ in 0..self.rounds {
            for value in acc.as_flattened_mut() {
                *value = A::mul_add(*value, a, b);
            }
        }
        acc.as_flattened().iter().sum()
    }
}

/// Multiply-adds per second one thread reaches with `isa`'s vectors (8
/// lanes for AVX2, 16 for AVX-512, 4 portably) over about `budget`: the
/// median of several timed runs.
pub fn multiply_adds_per_second(isa: Isa, budget: Duration) -> f64 {
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Portable => 4,
    };
    let run = |rounds: usize| -> f32 {
        // The seed comes from outside the loop so the work is not folded away.
        let seed = std::hint::black_box(1e-3);
        match lanes {
            16 => dispatch(isa, Chains::<16> { rounds, seed }),
            8 => dispatch(isa, Chains::<8> { rounds, seed }),
            _ => dispatch(isa, Chains::<4> { rounds, seed }),
        }
    };
    std::hint::black_box(run(STEPS / 16));
    let mut rates = Vec::new();
    let start = Instant::now();
    while rates.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        std::hint::black_box(run(STEPS));
        let seconds = t.elapsed().as_secs_f64().max(1e-9);
        rates.push((STEPS * CHAINS * lanes) as f64 / seconds);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chain_takes_every_step() {
        // x_n = c + (x_0 - c) a^n with c = b / (1 - a): a skipped or folded
        // step would show in the sum.
        let (a, b, rounds) = (0.999f64, 1e-3f64, 3000);
        let c = b / (1.0 - a);
        let x_n = c + (0.5 - c) * a.powi(rounds as i32);
        let seed = b as f32;
        for isa in Isa::ALL {
            for (lanes, sum) in [
                (4, dispatch(isa, Chains::<4> { rounds, seed })),
                (8, dispatch(isa, Chains::<8> { rounds, seed })),
                (16, dispatch(isa, Chains::<16> { rounds, seed })),
            ] {
                let expected = (CHAINS * lanes) as f64 * x_n;
                assert!(
                    (sum as f64 - expected).abs() < 1e-3 * expected,
                    "{isa:?}, {lanes} lanes: {sum} vs {expected}"
                );
            }
        }
        // Where the CPU has the instruction set, its rate is of the same
        // order as the portable code's: a vector unit is never 8 times
        // slower than scalar code, unless its chains have been vectorised
        // into gathers and scatters.
        let portable = multiply_adds_per_second(Isa::Portable, Duration::from_millis(20));
        for isa in [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_available())
        {
            let rate = multiply_adds_per_second(isa, Duration::from_millis(20));
            assert!(
                rate > portable / 8.0,
                "{isa:?}: {rate} against portable {portable}"
            );
        }
        let rate = multiply_adds_per_second(Isa::detect(), Duration::from_millis(20));
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }
}
