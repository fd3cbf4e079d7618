//! Capturing sales at the till.
//!
//! # Parts
//!
//! - [`serial`]: the serial tap — reads what the POS sends to its receipt printer,
//!   passes every byte on to the real printer (and the printer's replies back),
//!   reopens vanished devices, and hands raw chunks to capture.
//! - [`escpos`]: streaming ESC/POS decoder, raw bytes → text lines, cuts, codes.
//! - [`segment`]: receipt boundaries (cut, end pattern, idle timeout, start
//!   pattern) over decoder events; yields [`segment::Receipt`]s with their raw bytes.
//! - [`mask`]: blanks card numbers in a receipt's text and raw bytes before
//!   anything is stored.
//! - [`template`]: config-driven receipt text → canonical [`crate::order::Order`].
//! - [`receipt`]: the whole chain for one source (decoder → segmenter → masker),
//!   for live bytes and for files (`parse`, folder `format = "receipt"`, reparse).
//! - `codepages`: data tables for the DOS code pages `ESC t` selects.

mod codepages;
pub mod escpos;
pub mod mask;
pub mod receipt;
pub mod segment;
pub mod serial;
pub mod template;
