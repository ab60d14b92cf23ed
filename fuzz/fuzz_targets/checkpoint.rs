//! Training checkpoints restored into a trainer. What must hold: see `check_checkpoint` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_checkpoint(data);
});
