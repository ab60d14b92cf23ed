mini_xception::mini_xception!(models::mini_xception);

fn main() {}
