mini_xception::mini_xception!("models/many_mistakes.yaml");

fn main() {}
