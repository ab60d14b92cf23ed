//! OpenCV Haar cascade XML, loaded and run. What must hold: see `check_cascade_xml` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_cascade_xml(data);
});
