//! How large a network a model file may ask for.
//!
//! A model file is input from someone else, and the code it compiles to holds
//! every tensor at a size fixed in its type. Without limits a file could ask
//! for an input of 100,000 x 100,000 or a million filters: the code would
//! compile, and then fail when it allocates the scratch space, or overflow
//! the arithmetic of sizes. These limits make such a file a compile error
//! that names the limit. They are generous for a real-time classifier: the
//! paper's model is 64x64x1 with at most 128 filters, about 0.6 million
//! values in all its tensors and 58,423 parameters.
//!
//! With every value under these limits, no size the compiler or the
//! generated code computes (values, parameters, multiply-accumulates)
//! overflows a 64-bit `usize`.

/// The largest input height or width, in pixels.
pub const MAX_INPUT_SIDE: usize = 4096;

/// The most channels of any tensor: input channels, filters, labels.
pub const MAX_CHANNELS: usize = 4096;

/// The largest kernel, stride or pool window, along one side.
pub const MAX_WINDOW: usize = 64;

/// The most layers a network may have: base convolutions and modules
/// together.
pub const MAX_BLOCKS: usize = 128;

/// The most values all the tensors of one forward pass may hold together,
/// input included: 2^28 values, 1 GiB of `f32` scratch space.
pub const MAX_TENSOR_VALUES: usize = 1 << 28;

/// The most parameters (Keras' count) a network may have: 2^26, 256 MiB of
/// `f32` weights.
pub const MAX_PARAMETERS: usize = 1 << 26;

/// One limit, named as the message shows it.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// The most allowed.
    pub value: usize,
    /// The constant's name in this module.
    pub name: &'static str,
}

impl Limit {
    pub const INPUT_SIDE: Limit = Limit {
        value: MAX_INPUT_SIDE,
        name: "MAX_INPUT_SIDE",
    };
    pub const CHANNELS: Limit = Limit {
        value: MAX_CHANNELS,
        name: "MAX_CHANNELS",
    };
    pub const WINDOW: Limit = Limit {
        value: MAX_WINDOW,
        name: "MAX_WINDOW",
    };
    pub const BLOCKS: Limit = Limit {
        value: MAX_BLOCKS,
        name: "MAX_BLOCKS",
    };
    pub const TENSOR_VALUES: Limit = Limit {
        value: MAX_TENSOR_VALUES,
        name: "MAX_TENSOR_VALUES",
    };
    pub const PARAMETERS: Limit = Limit {
        value: MAX_PARAMETERS,
        name: "MAX_PARAMETERS",
    };

    /// `found` if it is within the limit.
    pub fn check(self, found: usize) -> Result<usize, String> {
        if found <= self.value {
            Ok(found)
        } else {
            Err(self.exceeded(&found.to_string()))
        }
    }

    /// The message for a value past the limit, `found` as it should read.
    pub fn exceeded(self, found: &str) -> String {
        format!(
            "{found} is past the compiler's limit of {} (mini_xception_compiler::limits::{})",
            self.value, self.name
        )
    }
}
