//! Snapshot of the generated code, so every change to the generator shows up
//! in review, and unit tests of the stages.

use crate::expand_model_file as compile;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The expansion of a model file, pretty-printed, with the machine-specific
/// absolute path replaced.
fn expansion(model: &str) -> String {
    let root = workspace_root();
    let tokens = compile(
        model,
        std::slice::from_ref(&root),
        proc_macro2::Span::call_site(),
    );
    let file: syn::File = syn::parse2(tokens).expect("the expansion is valid Rust");
    prettyplease::unparse(&file).replace(&root.to_string_lossy().to_string(), "$WORKSPACE")
}

#[test]
fn emotion_model_expansion() {
    insta::assert_snapshot!(expansion("models/mini_xception.yaml"));
}

#[test]
fn paz_model_expansion() {
    // The variant without a last max-pool adds its residual onto the second
    // separable convolution's output.
    let code = expansion("models/mini_xception_paz.yaml")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (inference, training) = code
        .split_once("pub struct MiniXceptionPazParameters")
        .expect("the training items follow the inference items");
    assert!(
        inference.contains("add_assign(&mut s.module_3_separable_1, &s.module_3_residual);"),
        "{inference}"
    );
    assert!(!inference.contains("module_3_output"), "{inference}");
    // Training keeps a module's output apart from its last separable
    // convolution's, whose output the batch norm's backward pass still needs.
    assert!(
        training.contains("train::copy_batch(&w.module_3_separable_1, &mut w.module_3_output);"),
        "{training}"
    );
    assert!(
        code.contains("Stride::<1>, arithmetic, &mut s.module_3_residual"),
        "{code}"
    );
}

#[test]
fn errors_name_the_path_as_written() {
    let tokens = compile(
        "models/absent.yaml",
        &[workspace_root()],
        proc_macro2::Span::call_site(),
    )
    .to_string();
    assert!(tokens.contains("compile_error"), "{tokens}");
    assert!(
        tokens.contains("models/absent.yaml: cannot find the model file"),
        "{tokens}"
    );
    assert!(
        !tokens.contains(&*workspace_root().to_string_lossy()),
        "{tokens}"
    );
}

#[test]
fn a_file_under_trybuild_resolves_from_the_crate_of_the_calling_file() {
    let root = workspace_root();
    let roots = crate::file::roots(
        Some(PathBuf::from("/nonexistent/target/tests/trybuild/x")),
        Some(root.join("tests/ui/fail/x.rs")),
    );
    assert_eq!(roots.last(), Some(&root));
    assert!(crate::file::read("models/mini_xception.yaml", &roots).is_ok());
}

#[test]
fn snake_case_of_model_names() {
    assert_eq!(crate::expand::snake_case("MiniXception"), "mini_xception");
    assert_eq!(
        crate::expand::snake_case("GenderMiniXception"),
        "gender_mini_xception"
    );
    assert_eq!(
        crate::expand::snake_case("MiniXception48"),
        "mini_xception48"
    );
    assert_eq!(crate::expand::snake_case("Model2D"), "model2_d");
}

#[test]
fn all_mistakes_are_reported_in_file_order() {
    let text = "name: T\ninput: {height: 8, width: 8, channels: 1}\nlabels: [x]\nbase:\n  - filters: 0\nmodules:\n  - filters: 4\n    kernel: 0\nhead: {filters: 2}\n";
    let spec = crate::spec::parse(text).unwrap();
    let mut diagnostics = crate::diagnostic::Diagnostics::default();
    assert!(crate::validate::validate(&spec, &mut diagnostics).is_none());
    let rendered: Vec<String> = diagnostics
        .into_sorted()
        .iter()
        .map(|d| d.render("t.yaml"))
        .collect();
    assert_eq!(
        rendered,
        [
            "t.yaml:5:14: base[0].filters: must be at least 1, found 0",
            "t.yaml:8:13: modules[0].kernel: must be at least 1, found 0",
            "t.yaml:9:17: head.filters: the head has 2 filters but 1 labels are given (line 3): there must be one filter per class",
        ]
    );
}
