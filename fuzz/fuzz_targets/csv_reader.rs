//! `cargo fuzz run csv_reader`: see [`tillrelay_fuzz::csv_reader`] for the input layout and
//! what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tillrelay_fuzz::csv_reader(data));
