//! Denormal (subnormal) floats flushed to zero on training threads.
//!
//! With L2 regularisation many weights and gradients shrink toward zero and
//! become denormal, which x86 cores compute with far more slowly.
//! TensorFlow's thread pools run with them flushed too, so flushing also
//! keeps training close to Keras'.

/// Sets flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) on the
/// calling thread: denormal results become zero, and denormal inputs are
/// read as zero. Does nothing on other architectures.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut control: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR register at the address
        // given, a live local `u32`; it touches nothing else.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut control, options(nostack, preserves_flags));
        }
        control |= (1 << 15) | (1 << 6);
        // SAFETY: `ldmxcsr` loads MXCSR from a live local `u32` holding the
        // register's own value with two more mode bits set; setting FTZ and
        // DAZ changes how denormals round, not memory or control flow.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &control, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn denormal_results_become_zero_on_the_flushed_thread_only() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        // On a fresh thread a denormal result survives...
        let before = std::thread::spawn(move || std::hint::black_box(tiny) / 4.0)
            .join()
            .unwrap();
        assert!(before > 0.0 && before < f32::MIN_POSITIVE);
        // ... and after flushing it becomes zero, and a denormal input reads as zero.
        let after = std::thread::spawn(move || {
            flush_denormals();
            let halved = std::hint::black_box(tiny) / 4.0;
            let denormal = std::hint::black_box(f32::from_bits(1));
            (halved, denormal * 2.0)
        })
        .join()
        .unwrap();
        assert_eq!(after, (0.0, 0.0));
    }
}
