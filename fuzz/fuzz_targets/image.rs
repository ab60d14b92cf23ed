//! Image files through the project loader, libjpeg-turbo included. What must hold: see `check_image` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_image(data);
});
