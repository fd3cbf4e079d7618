//! `cargo fuzz run json_reader`: see [`tillrelay_fuzz::json_reader`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::json_reader(data));
