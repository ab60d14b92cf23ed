//! Model file text through the whole compiler. What must hold: see `check_model_text` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_model_text(data);
});
