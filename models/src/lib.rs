//! The shipped mini-Xception models, compiled from the YAML files beside
//! this crate, with their training code compiled here once
//! (`inline_training = false`) for every crate that trains them.
//!
//! Use them through the `mini-xception` crate, as `mini_xception::models`.

// The generated code names the runtime as `::mini_xception::runtime`, as a
// user's crate sees it through the facade; here that is this crate.
extern crate self as mini_xception;

pub use mini_xception_runtime as runtime;

/// The paper's emotion model, `models/mini_xception.yaml`.
pub mod emotion {
    mini_xception_macro::mini_xception!("mini_xception.yaml", inline_training = false);
}

/// The paper's gender model, `models/gender_mini_xception.yaml`.
pub mod gender {
    mini_xception_macro::mini_xception!("gender_mini_xception.yaml", inline_training = false);
}

/// The 48x48 variant of oarriaga/paz, `models/mini_xception_paz.yaml`.
pub mod paz {
    mini_xception_macro::mini_xception!("mini_xception_paz.yaml", inline_training = false);
}

/// The emotion model at twice the width, `models/mini_xception_wide.yaml`:
/// a distillation teacher, trained with `mini-xception train --model wide`.
pub mod wide {
    mini_xception_macro::mini_xception!("mini_xception_wide.yaml", inline_training = false);
}
