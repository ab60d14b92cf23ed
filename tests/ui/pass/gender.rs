mini_xception::mini_xception!("models/gender_mini_xception.yaml");

fn main() {
    assert_eq!(GenderMiniXception::NUM_CLASSES, 2);
    let _scratch = GenderMiniXceptionScratch::new();
}
