//! Snapshot of the generated code, so every change to the generator shows up
//! in review, and unit tests of the stages.

use crate::{Options, expand_model_file as compile};
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
    expansion_with(model, &Options::default())
}

fn expansion_with(model: &str, options: &Options) -> String {
    let root = workspace_root();
    let tokens = compile(
        model,
        std::slice::from_ref(&root),
        options,
        proc_macro2::Span::call_site(),
    );
    let file: syn::File = syn::parse2(tokens).expect("the expansion is valid Rust");
    prettyplease::unparse(&file).replace(&root.to_string_lossy().to_string(), "$WORKSPACE")
}

#[test]
fn emotion_model_expansion() {
    insta::assert_snapshot!(expansion("models/mini_xception.yaml"));
}

/// The attributes of the generated function that starts `signature`.
fn attributes_of<'a>(code: &'a str, signature: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with(signature))
        .unwrap_or_else(|| panic!("`{signature}` is not generated"));
    lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with("#["))
        .copied()
        .collect()
}

/// The training passes are `#[inline]` unless asked otherwise, and nothing
/// else changes with the option.
#[test]
fn inline_training_marks_only_the_training_passes() {
    let inline = expansion("models/mini_xception_paz.yaml");
    let compiled_once = expansion_with(
        "models/mini_xception_paz.yaml",
        &Options {
            inline_training: false,
        },
    );
    for pass in ["fn workspace(", "fn forward_train(", "fn backward("] {
        assert!(
            attributes_of(&inline, pass).contains(&"#[inline]"),
            "{pass}"
        );
        assert!(
            !attributes_of(&compiled_once, pass).contains(&"#[inline]"),
            "{pass}"
        );
    }
    let without_inline = |code: &str| -> Vec<String> {
        code.lines()
            .filter(|line| line.trim() != "#[inline]")
            .map(String::from)
            .collect()
    };
    assert_eq!(without_inline(&inline), without_inline(&compiled_once));
    assert_eq!(
        inline.lines().count(),
        compiled_once.lines().count() + 3,
        "only the three training passes differ"
    );
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
    // The second separable convolution stores its output in slot 1, and the
    // residual branch is added onto it there.
    assert!(
        inference.contains(
            "&w.module_3_separable_1, Same, Stride::<1>, arithmetic, Identity, s.slot_1.tensor_mut::<6, 6, 128>(),"
        ),
        "{inference}"
    );
    assert!(
        inference.contains("&w.module_3_residual, Stride::<1>, arithmetic, Accumulate, s.slot_1.tensor_mut::<6, 6, 128>(),"),
        "{inference}"
    );
    assert!(!inference.contains("modules[3]` output"), "{inference}");
    // Training keeps a module's output apart from its last separable
    // convolution's, whose output the batch norm's backward pass still needs.
    assert!(
        training
            .contains("train::copy_batch(&work.module_3_separable_1, &mut work.module_3_output);"),
        "{training}"
    );
}

#[test]
fn errors_name_the_path_as_written() {
    let tokens = compile(
        "models/absent.yaml",
        &[workspace_root()],
        &Options::default(),
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
    assert_eq!(roots.last(), Some(&root.join("tests/ui")));
    assert!(crate::file::read("models/spatial_mismatch.yaml", &roots).is_ok());
    assert!(crate::file::read("models/mini_xception.yaml", &roots).is_err());
}

#[test]
fn snake_case_of_model_names() {
    assert_eq!(crate::tokens::snake_case("MiniXception"), "mini_xception");
    assert_eq!(
        crate::tokens::snake_case("GenderMiniXception"),
        "gender_mini_xception"
    );
    assert_eq!(
        crate::tokens::snake_case("MiniXception48"),
        "mini_xception48"
    );
    assert_eq!(crate::tokens::snake_case("Model2D"), "model2_d");
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

/// The library route gives the macro's code, but for the line that makes
/// the macro watch the file (a build script tells cargo instead).
#[test]
fn compile_text_gives_the_macros_code_without_the_file_watch() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("models/mini_xception.yaml")).unwrap();
    let library = crate::compile_to_string(&text, "models/mini_xception.yaml").unwrap();
    let watch_lines = |code: &str| {
        code.lines()
            .filter(|line| {
                !line.contains("include_bytes!") && !line.contains("rebuilds the model whenever")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let from_macro = expansion("models/mini_xception.yaml");
    assert!(from_macro.contains("include_bytes!"));
    assert!(!library.contains("include_bytes!"));
    assert_eq!(watch_lines(&library), watch_lines(&from_macro));
}

/// Every mistake comes back with a place inside the text.
#[test]
fn compile_text_reports_every_mistake_inside_the_text() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("models/mini_xception.yaml"))
        .unwrap()
        .replacen("filters: 8", "filters: 0", 1)
        .replacen("64", "-3", 1);
    let diagnostics = crate::compile_text(&text, "bad.yaml").unwrap_err();
    assert!(!diagnostics.is_empty());
    let lines = text.lines().count() as u32;
    for d in &diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "{d:?}");
        let line = text.lines().nth(d.line as usize - 1).unwrap();
        assert!(
            d.column >= 1 && d.column as usize <= line.len() + 1,
            "{d:?}"
        );
    }
}

/// The build-script route writes the formatted code to `OUT_DIR/<stem>.rs`;
/// a broken file writes nothing and says where it is broken.
#[test]
fn compile_file_writes_the_code_or_the_mistakes() {
    let root = workspace_root();
    let out_dir =
        std::env::temp_dir().join(format!("mini-xception-compiler-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let written =
        crate::compile_file(&root.join("models/mini_xception_paz.yaml"), &out_dir).unwrap();
    assert_eq!(written, out_dir.join("mini_xception_paz.rs"));
    let code = std::fs::read_to_string(&written).unwrap();
    assert!(
        code.contains("pub struct MiniXceptionPaz"),
        "{}",
        &code[..200.min(code.len())]
    );

    let broken = out_dir.join("broken.yaml");
    std::fs::write(&broken, "name: Broken\ninput: [64, 64]\n").unwrap();
    let error = crate::compile_file(&broken, &out_dir)
        .unwrap_err()
        .to_string();
    assert!(error.contains("broken.yaml:"), "{error}");
    assert!(!out_dir.join("broken.rs").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The rendered mistakes of a model file that must not compile.
fn mistakes(text: &str) -> Vec<String> {
    crate::compile_text(text, "t.yaml")
        .expect_err("the file must not compile")
        .iter()
        .map(|d| d.render("t.yaml"))
        .collect()
}

/// A network too large for any real-time classifier is a compile error that
/// names the limit, not a panic when its scratch space is allocated.
#[test]
fn a_huge_input_or_layer_names_the_limit_it_passes() {
    assert_eq!(
        mistakes(
            "name: T\ninput: {height: 100000, width: 100000, channels: 1}\nlabels: [a, b]\nbase:\n  - filters: 1000000\nmodules: []\n"
        ),
        [
            "t.yaml:2:17: input.height: 100000 is past the compiler's limit of 4096 (mini_xception_compiler::limits::MAX_INPUT_SIDE)",
            "t.yaml:2:32: input.width: 100000 is past the compiler's limit of 4096 (mini_xception_compiler::limits::MAX_INPUT_SIDE)",
            "t.yaml:5:14: base[0].filters: 1000000 is past the compiler's limit of 4096 (mini_xception_compiler::limits::MAX_CHANNELS)",
        ]
    );
    assert_eq!(
        mistakes(
            "name: T\ninput: {height: 8, width: 8, channels: 1}\nlabels: [a]\nbase:\n  - {filters: 4, kernel: 65, stride: 100}\nmodules: []\n"
        ),
        [
            "t.yaml:5:26: base[0].kernel: 65 is past the compiler's limit of 64 (mini_xception_compiler::limits::MAX_WINDOW)",
            "t.yaml:5:38: base[0].stride: 100 is past the compiler's limit of 64 (mini_xception_compiler::limits::MAX_WINDOW)",
        ]
    );
}

/// Each value may be within its limit while the tensors together are not:
/// the first layer that passes the limit is named.
#[test]
fn a_network_whose_tensors_or_parameters_are_too_many_names_the_layer() {
    // 4096 x 4096 x 1 input (16.8 million values), then 16 filters at full
    // size: 268 million more.
    assert_eq!(
        mistakes(
            "name: T\ninput: {height: 4096, width: 4096, channels: 1}\nlabels: [a]\nbase:\n  - {filters: 8, padding: same}\n  - {filters: 16, padding: same}\nmodules: []\n"
        ),
        [
            "t.yaml:6:5: base[1]: with this layer's 4096x4096x16 output, the forward pass's tensors hold 419430400 values: 419430400 is past the compiler's limit of 268435456 (mini_xception_compiler::limits::MAX_TENSOR_VALUES)"
        ]
    );
    // A 64x64 kernel from 4096 channels to 4096 filters: 68.7 billion weights.
    assert_eq!(
        mistakes(
            "name: T\ninput: {height: 64, width: 64, channels: 4096}\nlabels: [a]\nbase:\n  - {filters: 4096, kernel: 64}\nmodules: []\n"
        ),
        [
            "t.yaml:5:5: base[0]: with this layer, the network has 68719493120 parameters: 68719493120 is past the compiler's limit of 67108864 (mini_xception_compiler::limits::MAX_PARAMETERS)"
        ]
    );
}

/// A network at the limits compiles: the limits refuse only what passes them.
/// Here the input, 8 + 6 filters and the one-filter head hold exactly
/// 4096 x 4096 x 16 = 2^28 values.
#[test]
fn a_network_just_within_the_limits_compiles() {
    let text = "name: T\ninput: {height: 4096, width: 4096, channels: 1}\nlabels: [a]\nbase:\n  - {filters: 8, padding: same}\n  - {filters: 6, padding: same}\nmodules: []\n";
    assert!(crate::compile_text(text, "t.yaml").is_ok());
}
