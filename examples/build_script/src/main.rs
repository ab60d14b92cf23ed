//! The emotion model through the build-script route: `build.rs` wrote its
//! code to `OUT_DIR/mini_xception.rs`, included here; the macro's route is
//! `mini_xception::mini_xception!("models/mini_xception.yaml")`.

include!(concat!(env!("OUT_DIR"), "/mini_xception.rs"));

fn main() {
    print!("{}", MiniXception::summary());
    println!("code: {}", concat!(env!("OUT_DIR"), "/mini_xception.rs"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_xception::models::emotion as from_macro;
    use mini_xception::runtime::{InferenceModel, Isa, bytemuck, flat_mut};

    /// Both routes give the same model: the same constants and, from the
    /// paper's weights, the same logits bit for bit.
    #[test]
    fn the_build_script_route_gives_the_macros_model() {
        assert_eq!(
            MiniXception::PARAMETERS,
            from_macro::MiniXception::PARAMETERS
        );
        assert_eq!(MiniXception::MACS, from_macro::MiniXception::MACS);
        let paper = mini_xception_testdata::shared("models/fer2013_mini_XCEPTION.102-0.66.hdf5");
        let ours = MiniXception::with_weights(
            mini_xception::keras::load(&paper, MiniXception::weights_from_source).unwrap(),
            Isa::detect(),
        );
        let theirs = from_macro::MiniXception::with_weights(
            mini_xception::keras::load(&paper, from_macro::MiniXception::weights_from_source)
                .unwrap(),
            Isa::detect(),
        );
        let mut input: Box<MiniXceptionInput> = bytemuck::zeroed_box();
        for (i, v) in flat_mut(&mut *input).iter_mut().enumerate() {
            *v = ((i * 31 % 255) as f32 / 255.0 - 0.5) * 2.0;
        }
        let (mut a, mut b) = (vec![0.0f32; 7], vec![0.0f32; 7]);
        ours.logits_into(&input, &mut MiniXceptionScratch::new(), &mut a);
        theirs.logits_into(&input, &mut from_macro::MiniXceptionScratch::new(), &mut b);
        assert_eq!(a, b);
        assert!(a.iter().any(|&v| v != 0.0));
    }
}
