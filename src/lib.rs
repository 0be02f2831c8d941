//! The workspace root package: it only owns `examples/` and `benches/`.
