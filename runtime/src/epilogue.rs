//! What a convolution does with each value as it stores it.
//!
//! In mini-Xception a ReLU follows three kinds of convolution and the residual
//! branch is added onto the main one. Done as passes of their own, each reads
//! and writes a whole tensor again (at 60x60x16, more than the L1 cache holds);
//! done in the convolution's stores, they cost a few instructions on values
//! already in registers.

/// The operation fused into a kernel's stores.
pub trait Epilogue: Copy {
    /// Which operation this is, for kernels that apply it to a whole vector
    /// register at once (`pointwise/avx512.rs`).
    const KIND: EpilogueKind;

    /// The value to store, given the `value` computed and the value `stored`
    /// at that place before the kernel ran. Epilogues that ignore `stored`
    /// cost no load: the call is inlined and the read optimised away.
    fn apply(value: f32, stored: f32) -> f32;
}

/// The operations an [`Epilogue`] can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpilogueKind {
    /// [`Identity`].
    Identity,
    /// [`Relu`].
    Relu,
    /// [`Accumulate`].
    Accumulate,
}

/// Stores the value as it is computed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

/// Stores `max(value, 0)`: the convolution followed by a ReLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

/// Adds the value to what the output holds: the convolution is the residual
/// branch and the output already holds the main branch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Accumulate;

impl Epilogue for Identity {
    const KIND: EpilogueKind = EpilogueKind::Identity;

    #[inline(always)]
    fn apply(value: f32, _stored: f32) -> f32 {
        value
    }
}

impl Epilogue for Relu {
    const KIND: EpilogueKind = EpilogueKind::Relu;

    #[inline(always)]
    fn apply(value: f32, _stored: f32) -> f32 {
        // A compare and select, one `vmaxps` on x86 (NaN gives 0, as with
        // `f32::max`). Written as `value.max(0.0)`, the call's NaN rule made
        // LLVM's cost model keep the accumulators in scalar registers.
        if value > 0.0 { value } else { 0.0 }
    }
}

impl Epilogue for Accumulate {
    const KIND: EpilogueKind = EpilogueKind::Accumulate;

    #[inline(always)]
    fn apply(value: f32, stored: f32) -> f32 {
        stored + value
    }
}

/// `out[i] = E::apply(values[i], out[i])` for every lane.
///
/// Eight lanes at a time, each group read whole and written whole, as
/// `pool::max_into` does: written as a loop over single lanes, LLVM keeps the
/// loop, so the accumulators it stores cannot stay in vector registers and
/// the whole kernel around it goes scalar. (The AVX-512 code stores its own
/// way, `pointwise/avx512.rs`.)
#[inline(always)]
pub(crate) fn store<E: Epilogue, const N: usize>(out: &mut [f32; N], values: &[f32; N]) {
    let (out_lanes, out_rest) = out.as_chunks_mut::<8>();
    let (value_lanes, value_rest) = values.as_chunks::<8>();
    for (out, values) in out_lanes.iter_mut().zip(value_lanes) {
        let (old, new) = (*out, *values);
        *out = std::array::from_fn(|lane| E::apply(new[lane], old[lane]));
    }
    for (out, &value) in out_rest.iter_mut().zip(value_rest) {
        *out = E::apply(value, *out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epilogue_stores_what_its_unfused_pass_would() {
        let values = [-2.0, -0.0, 0.5, 3.0];
        let before = [1.0, 2.0, -4.0, 0.25];
        let mut out = before;
        store::<Identity, 4>(&mut out, &values);
        assert_eq!(out, values);
        let mut out = before;
        store::<Relu, 4>(&mut out, &values);
        assert_eq!(out, [0.0, 0.0, 0.5, 3.0]);
        let mut out = before;
        store::<Accumulate, 4>(&mut out, &values);
        assert_eq!(out, [-1.0, 2.0, -3.5, 3.25]);
    }
}
