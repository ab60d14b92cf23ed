//! What the `mini-xception` facade crate gives the code `mini_xception!`
//! generates, re-exported the same way: the macro and the runtime. The
//! compile-fail cases in `fail/` are written against it exactly as a user's
//! crate writes them against the facade.

pub use mini_xception_macro::mini_xception;
pub use mini_xception_runtime as runtime;
