mini_xception::mini_xception!("models/spatial_mismatch.yaml");

fn main() {}
