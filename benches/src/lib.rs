//! Benchmarks only: see `benches/forward.rs`.
