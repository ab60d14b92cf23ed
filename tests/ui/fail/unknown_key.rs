mini_xception::mini_xception!("tests/ui/models/unknown_key.yaml");

fn main() {}
