mini_xception::mini_xception!("models/wrong_type.yaml", inline_trainig = false);

fn main() {}
