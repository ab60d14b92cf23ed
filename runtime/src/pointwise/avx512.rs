//! The pointwise kernel of the AVX-512 build, written with its instructions
//! rather than left to LLVM's vectorisers.
//!
//! The kernels give LLVM groups of lanes to vectorise (`[f32; 16]` arrays
//! operated on lane by lane). Compiled for AVX2 that works; compiled for
//! AVX-512, LLVM's loop vectoriser takes the loop around such a group (over
//! pixels) first and vectorises across it with gathers and scatters. A loop
//! whose body is already made of vector instructions is left alone.
//!
//! So the AVX-512 forward pass runs the pointwise half of each separable
//! convolution and the residual branches (two thirds of the multiply-adds)
//! with the kernel below, 16 output channels to a register; its max pools
//! have their own (`pool/avx512.rs`), and every other kernel runs as it is
//! compiled for AVX2 ([`compiled_for_avx2`](crate::isa::compiled_for_avx2)).
//!
//! Only kernels running with [`Avx512Arithmetic`](crate::isa::Avx512Arithmetic)
//! call these, and only [`dispatch`](crate::isa::dispatch) makes one, after
//! checking that the CPU has AVX-512.

use super::PointwiseWeights;
use crate::epilogue::{Epilogue, EpilogueKind};
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_storeu_ps,
};

/// Output pixels computed together: 8 accumulators of 16 channels keep
/// the FMA latency covered, and each input value is broadcast into its
/// multiply-add straight from memory (`vfmadd231ps m32{1to16}`).
const PIXEL_BLOCK: usize = 8;

/// `out[p] = E(pixel(p) . kernel + bias)` for every `p` of `out`, as
/// `pointwise::multiply_pixels` computes it (the same fused multiply-adds
/// in the same order, so the same bits as the AVX2 code), for `CO` a
/// multiple of 16.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[inline(always)]
pub(crate) unsafe fn multiply_pixels<'a, E: Epilogue, F, const CI: usize, const CO: usize>(
    pixel: F,
    weights: &PointwiseWeights<CI, CO>,
    out: &mut [[f32; CO]],
) where
    F: Fn(usize) -> &'a [f32; CI],
{
    // A function of its own, called through a pointer the optimiser cannot
    // see through: inlined into the whole forward pass, its accumulators
    // compete for registers with everything around them and LLVM spills
    // one to the stack inside the multiply-add loop.
    let run: unsafe fn(F, &PointwiseWeights<CI, CO>, &mut [[f32; CO]]) =
        multiply_row::<E, F, CI, CO>;
    // SAFETY: the caller guarantees AVX-512F.
    unsafe { std::hint::black_box(run)(pixel, weights, out) }
}

/// The body of [`multiply_pixels`].
///
/// # Safety
///
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
#[inline(never)]
unsafe fn multiply_row<'a, E: Epilogue, F, const CI: usize, const CO: usize>(
    pixel: F,
    weights: &PointwiseWeights<CI, CO>,
    out: &mut [[f32; CO]],
) where
    F: Fn(usize) -> &'a [f32; CI],
{
    // Channels past the last multiple of 16 would be left alone: the caller
    // comes here only when `CO` is a multiple of 16.
    let mut first = 0;
    while first + PIXEL_BLOCK <= out.len() {
        // SAFETY: the caller guarantees AVX-512F, and the block ends inside `out`.
        unsafe { pixel_block::<E, PIXEL_BLOCK, CI, CO>(&pixel, weights, first, out) };
        first += PIXEL_BLOCK;
    }
    if first + 4 <= out.len() {
        // SAFETY: the caller guarantees AVX-512F, and the block ends inside `out`.
        unsafe { pixel_block::<E, 4, CI, CO>(&pixel, weights, first, out) };
        first += 4;
    }
    if first + 2 <= out.len() {
        // SAFETY: the caller guarantees AVX-512F, and the block ends inside `out`.
        unsafe { pixel_block::<E, 2, CI, CO>(&pixel, weights, first, out) };
        first += 2;
    }
    if first < out.len() {
        // SAFETY: the caller guarantees AVX-512F, and the block ends inside `out`.
        unsafe { pixel_block::<E, 1, CI, CO>(&pixel, weights, first, out) };
    }
}

/// `out[first..first + P]`, 16 output channels at a time, `P` accumulator
/// registers.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[inline(always)]
unsafe fn pixel_block<'a, E: Epilogue, const P: usize, const CI: usize, const CO: usize>(
    pixel: &impl Fn(usize) -> &'a [f32; CI],
    weights: &PointwiseWeights<CI, CO>,
    first: usize,
    out: &mut [[f32; CO]],
) {
    let inputs: [&[f32; CI]; P] = std::array::from_fn(|b| pixel(first + b));
    let out = &mut out[first..first + P];
    let (bias_blocks, _) = weights.bias.as_chunks::<16>();
    for (block, bias) in bias_blocks.iter().enumerate() {
        // SAFETY: every load and store is of a whole `[f32; 16]`; the caller
        // guarantees AVX-512F.
        unsafe {
            let mut acc = [_mm512_loadu_ps(bias.as_ptr()); P];
            for (ci, kernel_row) in weights.kernel.iter().enumerate() {
                let (kernel_blocks, _) = kernel_row.as_chunks::<16>();
                let w = _mm512_loadu_ps(kernel_blocks[block].as_ptr());
                for (acc, input) in acc.iter_mut().zip(&inputs) {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(input[ci]), w, *acc);
                }
            }
            for (out, &acc) in out.iter_mut().zip(&acc) {
                let (out_blocks, _) = out.as_chunks_mut::<16>();
                apply::<E>(acc, &mut out_blocks[block]);
            }
        }
    }
}

/// `out[i] = E::apply(value[i], out[i])` for the 16 lanes.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[inline(always)]
unsafe fn apply<E: Epilogue>(value: __m512, out: &mut [f32; 16]) {
    // SAFETY: `out` holds 16 `f32`s, what one unaligned 512-bit load or
    // store reads or writes; the caller guarantees AVX-512F.
    unsafe {
        let result = match E::KIND {
            EpilogueKind::Identity => value,
            // `vmaxps` gives its second operand when either is NaN: NaN and
            // -0.0 give +0.0, as `Relu::apply` does.
            EpilogueKind::Relu => _mm512_max_ps(value, _mm512_setzero_ps()),
            EpilogueKind::Accumulate => _mm512_add_ps(_mm512_loadu_ps(out.as_ptr()), value),
        };
        _mm512_storeu_ps(out.as_mut_ptr(), result);
    }
}

#[cfg(test)]
mod tests {
    use crate::epilogue::{Accumulate, Epilogue, Identity, Relu};
    use crate::geometry::Stride;
    use crate::isa::{Arithmetic, Isa, WithArithmetic, dispatch};
    use crate::pointwise::{PointwiseWeights, pointwise_conv2d};
    use crate::tensor::Tensor;
    use crate::test_support::{avx512_here, random_tensor, random_values};

    /// A strided pointwise convolution with epilogue `E`, run by [`dispatch`].
    struct Pointwise<
        'a,
        E,
        const S: usize,
        const H: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
    > {
        input: &'a Tensor<H, H, CI>,
        weights: &'a PointwiseWeights<CI, CO>,
        output: &'a mut Tensor<OH, OH, CO>,
        epilogue: E,
    }

    impl<
        E: Epilogue,
        const S: usize,
        const H: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
    > WithArithmetic for Pointwise<'_, E, S, H, CI, CO, OH>
    {
        type Output = ();

        #[inline(always)]
        fn run<A: Arithmetic>(self, arithmetic: A) {
            pointwise_conv2d(
                self.input,
                self.weights,
                Stride::<S>,
                arithmetic,
                self.epilogue,
                self.output,
            );
        }
    }

    /// The AVX-512 build against the AVX2 build, bit for bit (the same
    /// fused multiply-adds in the same order), and against the portable
    /// build within rounding.
    fn check_pointwise<
        E: Epilogue,
        const S: usize,
        const H: usize,
        const CI: usize,
        const CO: usize,
        const OH: usize,
    >(
        epilogue: E,
    ) {
        let input = random_tensor::<H, H, CI>(31);
        let mut weights = PointwiseWeights::<CI, CO>::zeroed_boxed();
        random_values(32, weights.kernel.as_flattened_mut());
        random_values(33, &mut weights.bias);
        let start = random_tensor::<OH, OH, CO>(34);
        let outputs: Vec<_> = [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .map(|isa| {
                let mut output = start.clone();
                let work = Pointwise::<E, S, H, CI, CO, OH> {
                    input: &input,
                    weights: &weights,
                    output: &mut output,
                    epilogue,
                };
                dispatch(isa, work);
                output
            })
            .collect();
        assert_eq!(
            outputs[0].as_slice(),
            outputs[1].as_slice(),
            "AVX-512 and AVX2 differ"
        );
        for (avx512, portable) in outputs[0].as_slice().iter().zip(outputs[2].as_slice()) {
            assert!(
                (avx512 - portable).abs() <= 1e-5 * (1.0 + portable.abs()),
                "{avx512} vs {portable}"
            );
        }
    }

    #[test]
    fn the_avx512_pointwise_kernel_matches_the_avx2_build_bit_for_bit() {
        if !avx512_here() {
            return;
        }
        // Rows of 15 pixels (blocks of 8, 4, 2 and 1), one and eight blocks
        // of 16 channels, every epilogue.
        check_pointwise::<Relu, 1, 15, 8, 16, 15>(Relu);
        check_pointwise::<Identity, 1, 7, 32, 128, 7>(Identity);
        check_pointwise::<Accumulate, 2, 15, 16, 32, 8>(Accumulate);
        // 24 channels: not a multiple of 16, so the generic kernel runs.
        check_pointwise::<Relu, 1, 5, 8, 24, 5>(Relu);
    }
}
