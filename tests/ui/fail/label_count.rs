mini_xception::mini_xception!("models/label_count.yaml");

fn main() {}
