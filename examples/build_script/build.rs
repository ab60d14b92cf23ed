//! Compiles the emotion model file into `OUT_DIR/mini_xception.rs`, where
//! anyone can read the generated code; a mistake in the file fails the
//! build with its place, as the macro's would.

fn main() {
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        eprintln!("build.rs: cargo sets OUT_DIR for build scripts");
        std::process::exit(1);
    };
    if mini_xception_compiler::compile("../../models/mini_xception.yaml", out_dir).is_err() {
        std::process::exit(1);
    }
}
