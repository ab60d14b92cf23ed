mini_xception::mini_xception!("models/channel_mismatch.yaml");

fn main() {}
