//! The max-pool merge of the AVX-512 build: one `vmaxps` per 16 channels.
//! Compiled for AVX-512, LLVM turns the generic merge's lane loop into
//! gathers and scatters (`pointwise/avx512.rs` says why); this one is
//! written with AVX-512's instructions. Only kernels running with
//! [`Avx512Arithmetic`](crate::isa::Avx512Arithmetic) call it.

use std::arch::x86_64::{_mm512_loadu_ps, _mm512_max_ps, _mm512_storeu_ps};

/// `best[i] = max(best[i], values[i])` for the 16 lanes; a NaN in `values`
/// never wins (`vmaxps` gives its second operand, `best`, when either is NaN).
///
/// # Safety
///
/// The CPU has AVX-512F.
#[inline(always)]
pub(crate) unsafe fn max16(best: &mut [f32; 16], values: &[f32; 16]) {
    // SAFETY: the caller guarantees AVX-512F; both pointers are to 16
    // valid, aligned-enough `f32`s (unaligned loads and stores).
    unsafe {
        let old = _mm512_loadu_ps(best.as_ptr());
        let new = _mm512_loadu_ps(values.as_ptr());
        _mm512_storeu_ps(best.as_mut_ptr(), _mm512_max_ps(new, old));
    }
}

#[cfg(test)]
mod tests {
    use crate::geometry::{Same, Stride, Window};
    use crate::isa::{Arithmetic, Isa, WithArithmetic, dispatch};
    use crate::separable::{SeparableConv2dWeights, separable_conv2d_max_pool};
    use crate::tensor::Tensor;
    use crate::test_support::{avx512_here, random_tensor, random_values};

    /// A separable convolution and its max pool, run by [`dispatch`].
    struct SeparablePool<'a, const H: usize, const CI: usize, const CO: usize, const OH: usize> {
        input: &'a Tensor<H, H, CI>,
        weights: &'a SeparableConv2dWeights<3, CI, CO>,
        output: &'a mut Tensor<OH, OH, CO>,
    }

    impl<const H: usize, const CI: usize, const CO: usize, const OH: usize> WithArithmetic
        for SeparablePool<'_, H, CI, CO, OH>
    {
        type Output = ();

        #[inline(always)]
        fn run<A: Arithmetic>(self, arithmetic: A) {
            separable_conv2d_max_pool(
                self.input,
                self.weights,
                arithmetic,
                Window::<3>,
                Stride::<2>,
                Same,
                self.output,
            );
        }
    }

    fn check_separable_pool<const H: usize, const CI: usize, const CO: usize, const OH: usize>() {
        let input = random_tensor::<H, H, CI>(41);
        let mut weights = SeparableConv2dWeights::<3, CI, CO>::zeroed_boxed();
        random_values(
            42,
            weights
                .depthwise
                .kernel
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        random_values(43, weights.pointwise.kernel.as_flattened_mut());
        random_values(44, &mut weights.pointwise.bias);
        let outputs: Vec<_> = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .map(|isa| {
                let mut output = Tensor::<OH, OH, CO>::zeroed_boxed();
                output.as_mut_slice().fill(f32::NAN);
                let work = SeparablePool {
                    input: &input,
                    weights: &weights,
                    output: &mut output,
                };
                dispatch(isa, work);
                output
            })
            .collect();
        assert!(outputs[0].as_slice().iter().all(|v| v.is_finite()));
        assert_eq!(
            outputs[0].as_slice(),
            outputs[1].as_slice(),
            "AVX-512 and AVX2 differ"
        );
    }

    #[test]
    fn the_avx512_max_pool_and_the_avx2_compiled_depthwise_match_the_avx2_build_bit_for_bit() {
        if !avx512_here() {
            return;
        }
        check_separable_pool::<30, 32, 32, 15>();
        check_separable_pool::<15, 16, 64, 8>();
        check_separable_pool::<9, 8, 24, 5>();
    }
}
