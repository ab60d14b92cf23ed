//! FER2013 CSV rows. What must hold: see `check_fer2013_csv` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_fer2013_csv(data);
});
