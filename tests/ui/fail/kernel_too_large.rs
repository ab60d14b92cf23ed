mini_xception::mini_xception!("models/kernel_too_large.yaml");

fn main() {}
