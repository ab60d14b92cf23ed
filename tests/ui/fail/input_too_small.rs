mini_xception::mini_xception!("models/input_too_small.yaml");

fn main() {}
