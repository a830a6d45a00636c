//! MMD benchmarks (placeholder).
fn main() {}
