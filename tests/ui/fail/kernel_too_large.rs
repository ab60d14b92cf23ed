mini_xception::mini_xception!("tests/ui/models/kernel_too_large.yaml");

fn main() {}
