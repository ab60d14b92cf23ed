//! Every input a fuzz target found a fault with (`fuzz/regressions/<target>/`),
//! and every seed (`fuzz/seeds/<target>/`), replayed on the stable toolchain
//! through the same checks the fuzz targets make (`fuzz/checks.rs`). See
//! `fuzz/README.md`.

mini_xception::mini_xception!("tests/models/tiny_train.yaml");

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every kept input of `target`; how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn model_text() {
    assert!(replay("model_text", checks::check_model_text) >= 1);
}

#[test]
fn keras_hdf5() {
    assert!(replay("keras_hdf5", checks::check_keras_hdf5) >= 1);
}

#[test]
fn native_safetensors() {
    assert!(replay("native_safetensors", checks::check_native_safetensors) >= 1);
}

#[test]
fn checkpoint() {
    assert!(replay("checkpoint", checks::check_checkpoint) >= 1);
}

#[test]
fn cascade_xml() {
    assert!(replay("cascade_xml", checks::check_cascade_xml) >= 1);
}

#[test]
fn image() {
    assert!(replay("image", checks::check_image) >= 1);
}

#[test]
fn fer2013_csv() {
    assert!(replay("fer2013_csv", checks::check_fer2013_csv) >= 1);
}

/// The edit lists the file targets read: a byte XORed, a cut, or the input
/// taken whole.
#[test]
fn edits_apply_as_documented() {
    let valid = b"abcdef";
    assert_eq!(checks::edited(valid, b""), valid);
    assert_eq!(checks::edited(valid, b"\x00xyz"), b"xyz");
    // XOR 0x20 at position 7 % 6 = 1, then cut to 4 % 7.
    assert_eq!(
        checks::edited(valid, b"\x01\x07\x00\x00\x00\x20\x04"),
        b"aBcd"
    );
}

/// The fuzz target's own cascade must load and pass windows on the
/// target's image; otherwise its mutants would stop at the first check and
/// the detector would go unfuzzed.
#[test]
fn the_fuzz_cascade_loads_and_finds_boxes() {
    let cascade = mini_xception::detect::Cascade::from_xml_str(checks::SMALL_CASCADE, "small.xml")
        .expect("it loads");
    assert_eq!(cascade.window_size(), (20, 16));
    let (image, options) = checks::detection_case();
    let faces = cascade.detect(&image, &options).expect("detection runs");
    assert!(!faces.is_empty());
}
