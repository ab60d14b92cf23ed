//! The fuzz targets' checks (`../checks.rs`, shared with the project's
//! regression test) and the small training model they need.

mini_xception::mini_xception!("../tests/models/tiny_train.yaml");

#[path = "../checks.rs"]
pub mod checks;
