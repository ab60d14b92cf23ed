//! Compile-time diagnostics: every mistake in a model file, and every misuse
//! of a kernel's shapes, is a compile error with a stable message
//! (`fail/*.stderr`; the model files the cases name are in `models/`, paths
//! relative to this crate as to any user's). That the shipped models compile,
//! the library and the other tests show.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("fail/*.rs");
}
