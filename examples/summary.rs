//! Prints the summary of every shipped model: layers, output shapes,
//! parameters and multiply-accumulates, as Keras' `model.summary()` would.
//!
//! ```text
//! cargo run -p mini-xception --example summary
//! ```

mini_xception::mini_xception!("models/mini_xception.yaml");
mini_xception::mini_xception!("models/gender_mini_xception.yaml");
mini_xception::mini_xception!("models/mini_xception_paz.yaml");

fn main() {
    for summary in [
        MiniXception::summary(),
        GenderMiniXception::summary(),
        MiniXceptionPaz::summary(),
    ] {
        println!("{summary}");
    }
}
