//! `cargo fuzz run receipt_template`: see [`tillrelay_fuzz::receipt_template`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::receipt_template(data));
