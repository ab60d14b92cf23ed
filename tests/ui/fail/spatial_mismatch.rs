mini_xception::mini_xception!("tests/ui/models/spatial_mismatch.yaml");

fn main() {}
