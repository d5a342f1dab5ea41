#![no_main]
//! See `qproxy::fuzzing::retry_token`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| qproxy::fuzzing::retry_token(data));
