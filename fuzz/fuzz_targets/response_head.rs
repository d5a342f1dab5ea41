#![no_main]
//! See `qproxy::fuzzing::response_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::response_head(data));
