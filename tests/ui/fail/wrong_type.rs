mini_xception::mini_xception!("tests/ui/models/wrong_type.yaml");

fn main() {}
