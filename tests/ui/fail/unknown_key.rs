mini_xception::mini_xception!("models/unknown_key.yaml");

fn main() {}
