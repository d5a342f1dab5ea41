#![no_main]
//! See `qproxy::fuzzing::connection`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::connection(data));
