//! `cargo fuzz run escpos_decode`: see [`tillrelay_fuzz::escpos_decode`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::escpos_decode(data));
