//! The `mini_xception!` proc-macro: compiles a YAML model definition into a
//! statically shaped, allocation-free Rust model. The compiler itself is the
//! library crate `mini-xception-compiler`; this crate only takes the macro's
//! argument and the calling crate's place to it.

use proc_macro::TokenStream;
use std::path::PathBuf;

/// Compiles a YAML model file into a model type.
///
/// ```ignore
/// mini_xception::mini_xception!("models/mini_xception.yaml");
/// ```
///
/// The path is relative to the calling crate's manifest directory. For a
/// model named `MiniXception` this defines `MiniXception`, `MiniXceptionWeights`,
/// `MiniXceptionScratch` and `MiniXceptionInput`; see the crate documentation
/// of `mini_xception` for the model file format.
#[proc_macro]
pub fn mini_xception(input: TokenStream) -> TokenStream {
    let path = match syn::parse::<syn::LitStr>(input) {
        Ok(path) => path,
        Err(error) => {
            let message = format!(
                "{error}: expected the model file's path, e.g. `mini_xception!(\"models/mini_xception.yaml\")`"
            );
            return syn::Error::new(error.span(), message)
                .to_compile_error()
                .into();
        }
    };
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let calling_file = proc_macro::Span::call_site().local_file();
    let roots = mini_xception_compiler::roots(manifest_dir, calling_file);
    mini_xception_compiler::expand_model_file(&path.value(), &roots, path.span()).into()
}
