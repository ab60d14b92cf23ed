mini_xception::mini_xception!("models/no_such_model.yaml");

fn main() {}
