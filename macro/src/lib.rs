//! The `mini_xception!` proc-macro: compiles a YAML model definition into a
//! statically shaped, allocation-free Rust model. The compiler itself is the
//! library crate `mini-xception-compiler`; this crate only takes the macro's
//! arguments and the calling crate's place to it.

use mini_xception_compiler::Options;
use proc_macro::TokenStream;
use std::path::PathBuf;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitBool, LitStr, Token};

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
///
/// One option may follow the path:
///
/// ```ignore
/// mini_xception::mini_xception!("models/mini_xception.yaml", inline_training = false);
/// ```
///
/// `inline_training` (default `true`): the training passes are `#[inline]`,
/// compiled in each crate that trains the model and in no other. With
/// `false` they are compiled once, in this crate, and every crate that
/// trains the model links to them: for a library whose models several
/// binaries and tests train.
#[proc_macro]
pub fn mini_xception(input: TokenStream) -> TokenStream {
    let (path, options) = match arguments.parse(input) {
        Ok(arguments) => arguments,
        Err(error) => return error.to_compile_error().into(),
    };
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let calling_file = proc_macro::Span::call_site().local_file();
    let roots = mini_xception_compiler::roots(manifest_dir, calling_file);
    mini_xception_compiler::expand_model_file(&path.value(), &roots, &options, path.span()).into()
}

/// The macro's arguments: the model file's path, then `key = value` options
/// separated by commas. An unknown or repeated option is an error at its key.
fn arguments(input: ParseStream) -> syn::Result<(LitStr, Options)> {
    let path = input.parse::<LitStr>().map_err(|error| {
        let message = format!(
            "{error}: expected the model file's path, e.g. `mini_xception!(\"models/mini_xception.yaml\")`"
        );
        syn::Error::new(error.span(), message)
    })?;
    let mut options = Options::default();
    let mut seen: Vec<String> = Vec::new();
    while !input.is_empty() {
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            break;
        }
        let key: Ident = input.parse()?;
        let name = key.to_string();
        if seen.contains(&name) {
            return Err(syn::Error::new(
                key.span(),
                format!("`{name}` is given twice"),
            ));
        }
        input.parse::<Token![=]>()?;
        match name.as_str() {
            "inline_training" => options.inline_training = input.parse::<LitBool>()?.value,
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown option `{name}`: the one option is `inline_training = true|false`"
                    ),
                ));
            }
        }
        seen.push(name);
    }
    Ok((path, options))
}
