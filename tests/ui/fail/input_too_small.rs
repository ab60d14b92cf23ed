mini_xception::mini_xception!("tests/ui/models/input_too_small.yaml");

fn main() {}
