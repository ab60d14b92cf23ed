mini_xception::mini_xception!("models/mini_xception.yaml");

fn main() {
    assert_eq!(MiniXception::INPUT_SHAPE, [64, 64, 1]);
    let _scratch = MiniXceptionScratch::new();
}
