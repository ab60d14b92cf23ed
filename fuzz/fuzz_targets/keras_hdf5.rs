//! Keras HDF5 weight files read into the emotion model. What must hold: see `check_keras_hdf5` in `fuzz/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_xception_fuzz::checks::check_keras_hdf5(data);
});
