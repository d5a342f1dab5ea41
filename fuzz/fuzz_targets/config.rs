#![no_main]
//! See `qproxy::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::config(data));
