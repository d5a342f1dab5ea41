//! End-to-end test support for qproxy (the suites live in `tests/*.rs` of this crate).
