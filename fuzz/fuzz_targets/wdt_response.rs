//! `cargo fuzz run wdt_response`: see [`tillrelay_fuzz::wdt_response`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::wdt_response(data));
