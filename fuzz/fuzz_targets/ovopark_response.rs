//! `cargo fuzz run ovopark_response`: see [`tillrelay_fuzz::ovopark_response`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::ovopark_response(data));
