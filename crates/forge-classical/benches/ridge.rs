//! Criterion benches: ridge on a California-housing-sized problem, one SGD epoch.
fn main() {}
