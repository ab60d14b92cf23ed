mini_xception::mini_xception!("tests/ui/models/label_count.yaml");

fn main() {}
