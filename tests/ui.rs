//! Compile-time diagnostics: every mistake in a model file, and every misuse
//! of a kernel's shapes, is a compile error with a stable message
//! (`tests/ui/fail/*.stderr`). (That the shipped models compile, the library
//! and the other tests show: a passing case here would build every
//! dependency a second time, for minutes.)

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
}
