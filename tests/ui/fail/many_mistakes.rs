mini_xception::mini_xception!("tests/ui/models/many_mistakes.yaml");

fn main() {}
