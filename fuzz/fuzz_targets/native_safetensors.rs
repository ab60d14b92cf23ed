//! Native safetensors weight files read into the emotion model. What must hold: see `check_native_safetensors` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_native_safetensors(data);
});
