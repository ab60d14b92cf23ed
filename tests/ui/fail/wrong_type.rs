mini_xception::mini_xception!("models/wrong_type.yaml");

fn main() {}
