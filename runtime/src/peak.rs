//! The multiply-add throughput one core reaches at best, measured: what the
//! forward pass's speed is a fraction of.
//!
//! Clock speeds under a hypervisor or with turbo are not what the CPU's
//! model name says, so the peak is measured: independent chains of vector
//! multiply-adds, as many as cover the FMA latency on both FMA units, with
//! nothing else in the loop.

use crate::isa::{Arithmetic, Isa, WithArithmetic, dispatch};
use std::time::{Duration, Instant};

/// Independent accumulator chains: a Zen 3 or Skylake core has 2 FMA units
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
        let mut acc = [[0.5f32; LANES]; CHAINS];
        for _ in 0..self.rounds {
            for chain in acc.iter_mut() {
                let old = *chain;
                *chain = std::array::from_fn(|lane| A::mul_add(old[lane], a, b));
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
        for isa in Isa::ALL {
            let sum = dispatch(
                isa,
                Chains::<8> {
                    rounds,
                    seed: b as f32,
                },
            );
            let expected = (CHAINS * 8) as f64 * x_n;
            assert!(
                (sum as f64 - expected).abs() < 1e-3 * expected,
                "{isa:?}: {sum} vs {expected}"
            );
        }
        let rate = multiply_adds_per_second(Isa::detect(), Duration::from_millis(20));
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }
}
