mini_xception::mini_xception!("models/mini_xception_paz.yaml");

fn main() {
    assert_eq!(MiniXceptionPaz::INPUT_SHAPE, [48, 48, 1]);
    let _scratch = MiniXceptionPazScratch::new();
}
