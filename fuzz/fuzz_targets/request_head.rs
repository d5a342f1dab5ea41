#![no_main]
//! See `qproxy::fuzzing::request_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::request_head(data));
