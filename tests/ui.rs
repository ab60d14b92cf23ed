//! Compile-time diagnostics: every mistake in a model file, and every misuse
//! of a kernel's shapes, is a compile error with a stable message
//! (`tests/ui/fail/*.stderr`); the shipped models compile.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
