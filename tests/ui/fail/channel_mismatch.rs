mini_xception::mini_xception!("tests/ui/models/channel_mismatch.yaml");

fn main() {}
