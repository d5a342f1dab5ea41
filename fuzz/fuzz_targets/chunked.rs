#![no_main]
//! See `qproxy::fuzzing::chunked`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::chunked(data));
