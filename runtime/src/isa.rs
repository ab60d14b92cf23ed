//! Instruction sets, chosen at run time: the forward pass runs the widest
//! code the CPU has (AVX-512, else AVX2), training prefers AVX2 (its
//! backward kernels have no AVX-512 code of their own), and both stay
//! correct where neither is there.
//!
//! The kernels are written once, generic over [`Arithmetic`] and always
//! inlined; [`dispatch`] calls a whole forward pass inside a function compiled
//! for the chosen instruction set, so the compiler vectorises every kernel
//! for it. The AVX-512 build has kernels of its own where LLVM's did badly
//! (`pointwise/avx512.rs`, `pool/avx512.rs`).

/// An instruction set the forward pass can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512 (F, VL, BW, DQ) with FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Whatever the build targets, without fused multiply-add.
    Portable,
}

impl Isa {
    /// Every instruction set, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The order training prefers: its backward kernels are the generic
    /// ones, which run faster compiled for AVX2 than for AVX-512.
    pub const TRAINING_PREFERENCE: [Isa; 3] = [Isa::Avx2, Isa::Avx512, Isa::Portable];

    /// The instruction set the forward pass uses by default on this CPU: the
    /// widest it has ([`Isa::ALL`] in order), since the AVX-512 build has
    /// kernels of its own.
    pub fn detect() -> Isa {
        Isa::first_available(Isa::ALL, Isa::is_available)
    }

    /// The instruction set training uses by default: the first of
    /// [`Isa::TRAINING_PREFERENCE`] for which `available` holds (for this
    /// CPU, [`Isa::is_available`]). The weights do not depend on it.
    pub fn for_training(available: impl Fn(Isa) -> bool) -> Isa {
        Isa::first_available(Isa::TRAINING_PREFERENCE, available)
    }

    /// The first of `order` for which `available` holds, or
    /// [`Isa::Portable`].
    pub fn first_available(order: [Isa; 3], available: impl Fn(Isa) -> bool) -> Isa {
        order
            .into_iter()
            .find(|&isa| available(isa))
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run code compiled for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The instruction set named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }
}

/// How a kernel multiplies and adds: fused (one rounding, where the CPU has
/// FMA) or as a multiply then an add (everywhere else, where a fused
/// multiply-add would be a slow library call).
///
/// Sealed: [`Avx512Arithmetic`] stands for a CPU checked to have AVX-512, and the
/// kernels rely on it (they use AVX-512 instructions directly when
/// `LANES` is 16), so no type outside this module may claim 16 lanes.
pub trait Arithmetic: Copy + sealed::Sealed {
    /// The `f32` lanes of the vector registers the code is compiled for,
    /// so that a kernel can shape its register blocks for them.
    const LANES: usize;

    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// Fused multiply-add (one rounding), for code compiled for AVX2 and FMA: 256-bit vectors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2Arithmetic;

/// Fused multiply-add (one rounding), for code compiled for AVX-512: 512-bit vectors.
///
/// Only [`dispatch`] makes one, inside its function compiled for AVX-512
/// and after checking that the CPU has it: its kernels use AVX-512
/// instructions directly.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Arithmetic(());

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Avx2Arithmetic {}
    impl Sealed for super::Avx512Arithmetic {}
    impl Sealed for super::PortableArithmetic {}
}

/// Separate multiply and add.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableArithmetic;

impl Arithmetic for Avx2Arithmetic {
    const LANES: usize = 8;

    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Arithmetic for Avx512Arithmetic {
    const LANES: usize = 16;

    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Arithmetic for PortableArithmetic {
    // SSE2, the x86-64 baseline; other targets' portable code is shaped
    // the same.
    const LANES: usize = 4;

    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// A computation that can run with either arithmetic; generated models
/// implement it for their forward pass.
pub trait WithArithmetic {
    /// What the computation returns.
    type Output;

    /// Runs the computation with arithmetic `A`.
    fn run<A: Arithmetic>(self, arithmetic: A) -> Self::Output;
}

/// Work given as a closure that needs no choice of arithmetic (max pooling,
/// batch-norm passes), run by [`dispatch`] inside its function compiled for
/// the instruction set, so that the loops are vectorised for it rather than
/// for the baseline x86-64 (SSE2) that closures handed to rayon are compiled
/// for. Mark the closure `#[inline(always)]`: `dispatch` calls `run` in three
/// places, and LLVM does not inline a large closure called thrice, which
/// leaves it compiled for the baseline after all.
pub struct Compiled<F>(pub F);

// `FnMut` rather than `FnOnce`: a closure called through `FnOnce` goes through
// a shim that is not inlined, whatever the closure's own attribute.
impl<R, F: FnMut() -> R> WithArithmetic for Compiled<F> {
    type Output = R;

    #[inline(always)]
    fn run<A: Arithmetic>(self, _arithmetic: A) -> R {
        let mut work = self.0;
        work()
    }
}

/// Runs `work` compiled for `isa`, or portably when this CPU lacks `isa`.
#[inline(always)]
pub fn dispatch<W: WithArithmetic>(isa: Isa, work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && isa.is_available() {
            // SAFETY: the CPU has every feature `run_avx512` is compiled for;
            // `is_available` just checked them.
            return unsafe { run_avx512(work) };
        }
        if isa == Isa::Avx2 && isa.is_available() {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { run_avx2(work) };
        }
    }
    let _ = isa;
    work.run(PortableArithmetic)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
unsafe fn run_avx512<W: WithArithmetic>(work: W) -> W::Output {
    work.run(Avx512Arithmetic(()))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<W: WithArithmetic>(work: W) -> W::Output {
    work.run(Avx2Arithmetic)
}

/// Runs `work` compiled for AVX2 and FMA only, from inside the AVX-512
/// build: for kernels whose AVX-512 build LLVM vectorises worse than their
/// AVX2 one (`pointwise/avx512.rs` says why). Mark the closure `#[inline(always)]` and
/// give its kernels [`Avx2Arithmetic`]: its body is then compiled into
/// [`run_compiled_for_avx2`], for AVX2.
///
/// # Safety
///
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn compiled_for_avx2<R, F: FnMut() -> R>(work: F) -> R {
    // Called directly, `run_compiled_for_avx2` was inlined into its AVX-512 caller,
    // `#[inline(never)]` notwithstanding, and vectorised for AVX-512 there
    // after all (seen with Rust 1.95); through a pointer the optimiser
    // cannot see through, it keeps its own body.
    let run: unsafe fn(F) -> R = run_compiled_for_avx2::<R, F>;
    // SAFETY: the caller guarantees AVX2 and FMA.
    unsafe { std::hint::black_box(run)(work) }
}

/// The body of [`compiled_for_avx2`].
///
/// # Safety
///
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn run_compiled_for_avx2<R, F: FnMut() -> R>(mut work: F) -> R {
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of products: the fused and unfused results may differ in the last
    /// bits, but both must be close to the exact value.
    struct DotProduct<'a>(&'a [f32], &'a [f32]);

    impl WithArithmetic for DotProduct<'_> {
        type Output = f32;

        fn run<A: Arithmetic>(self, _: A) -> f32 {
            self.0
                .iter()
                .zip(self.1)
                .fold(0.0, |acc, (&a, &b)| A::mul_add(a, b, acc))
        }
    }

    #[test]
    fn every_available_isa_runs_and_agrees() {
        let a: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..100).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        for isa in Isa::ALL {
            let result = dispatch(isa, DotProduct(&a, &b));
            assert!(
                (result as f64 - exact).abs() < 1e-4,
                "{isa:?}: {result} vs {exact}"
            );
        }
        assert!(Isa::Portable.is_available());
        assert!(Isa::detect().is_available());
        assert_eq!(Isa::from_name(Isa::detect().name()), Some(Isa::detect()));
    }

    #[test]
    fn training_prefers_avx2_and_portable_is_the_fallback() {
        // A CPU with every instruction set trains with AVX2.
        assert_eq!(Isa::for_training(|_| true), Isa::Avx2);
        // One with AVX-512 but, impossibly, no AVX2 would still get AVX-512.
        assert_eq!(Isa::for_training(|isa| isa != Isa::Avx2), Isa::Avx512);
        assert_eq!(Isa::for_training(|isa| isa == Isa::Portable), Isa::Portable);
        assert_eq!(Isa::for_training(|_| false), Isa::Portable);
        // Every instruction set is in each order exactly once.
        for isa in Isa::ALL {
            assert_eq!(Isa::ALL.iter().filter(|&&p| p == isa).count(), 1);
            let in_training = Isa::TRAINING_PREFERENCE.iter().filter(|&&p| p == isa);
            assert_eq!(in_training.count(), 1);
        }
    }

    /// The forward pass's default as the kernel's own report of the CPU
    /// predicts it, whatever the vendor: the widest instruction set there.
    #[test]
    fn the_default_is_the_widest_instruction_set_the_cpu_has() {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            eprintln!("no /proc/cpuinfo: the CPU's flags cannot be checked here");
            return;
        };
        let flags: Vec<&str> = info
            .lines()
            .find(|line| line.starts_with("flags"))
            .map(|line| line.split_whitespace().collect())
            .unwrap_or_default();
        let has = |flag: &str| flags.contains(&flag);
        let avx2 = has("avx2") && has("fma");
        let avx512 = avx2
            && ["avx512f", "avx512vl", "avx512bw", "avx512dq"]
                .iter()
                .all(|f| has(f));
        let expected = if avx512 {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Portable
        };
        assert_eq!(Isa::detect(), expected);
    }

    #[test]
    fn fused_rounds_once() {
        // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: the last term is lost when the
        // product is rounded before the add.
        let x = 1.0 + 2f32.powi(-12);
        assert_eq!(
            Avx2Arithmetic::mul_add(x, x, -1.0),
            2f32.powi(-11) + 2f32.powi(-24)
        );
        assert_eq!(PortableArithmetic::mul_add(x, x, -1.0), 2f32.powi(-11));
    }
}
