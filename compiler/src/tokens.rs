//! The pieces of generated code that inference and training share:
//! literals, tensor types, paddings, names, doc text.

use crate::shape::Shape;
use crate::spec::PaddingSpec;
use proc_macro2::{Literal, TokenStream};
use quote::quote;

/// Where the generated code finds the runtime.
pub(crate) fn runtime() -> TokenStream {
    quote!(::mini_xception::runtime)
}

/// An integer literal as it is.
pub(crate) fn literal(value: usize) -> Literal {
    Literal::usize_unsuffixed(value)
}

/// An integer literal, with `_` between groups of thousands from 10,000 up.
pub(crate) fn number(value: usize) -> Literal {
    if value < 10_000 {
        return Literal::usize_unsuffixed(value);
    }
    let grouped = thousands(value).replace(',', "_");
    grouped
        .parse()
        .unwrap_or_else(|_| Literal::usize_unsuffixed(value))
}

/// `58423` as `58,423`.
pub(crate) fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A doc comment's text; the leading space makes it print as `/// text`.
pub(crate) fn doc(text: impl std::fmt::Display) -> String {
    format!(" {text}")
}

/// `[height, width, channels]`.
pub(crate) fn shape_array(shape: Shape) -> TokenStream {
    let (h, w, c) = (
        number(shape.height),
        number(shape.width),
        number(shape.channels),
    );
    quote!([#h, #w, #c])
}

/// `Tensor<height, width, channels>`.
pub(crate) fn tensor_type(shape: Shape) -> TokenStream {
    let (h, w, c) = (
        number(shape.height),
        number(shape.width),
        number(shape.channels),
    );
    quote!(Tensor<#h, #w, #c>)
}

/// The padding as the kernels take it, a type (`Valid`, `Same`).
pub(crate) fn padding_value(padding: PaddingSpec) -> TokenStream {
    match padding {
        PaddingSpec::Valid => quote!(Valid),
        PaddingSpec::Same => quote!(Same),
    }
}

/// The padding as a value (`Padding::Valid`, `Padding::Same`).
pub(crate) fn padding_rule(padding: PaddingSpec) -> TokenStream {
    match padding {
        PaddingSpec::Valid => quote!(Padding::Valid),
        PaddingSpec::Same => quote!(Padding::Same),
    }
}

/// The padding as the model file writes it.
pub(crate) fn padding_name(padding: PaddingSpec) -> &'static str {
    match padding {
        PaddingSpec::Valid => "valid",
        PaddingSpec::Same => "same",
    }
}

/// A model's type name in snake case, for the module of its code:
/// `MiniXception` gives `mini_xception`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            let previous_lower = name[..name.char_indices().nth(i).map_or(0, |(b, _)| b)]
                .chars()
                .last()
                .is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            if i > 0 && previous_lower {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
