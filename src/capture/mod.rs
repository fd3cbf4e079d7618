//! Capture: where orders come from.
//!
//! # Parts
//!
//! - [`folder`]: the watched folder loop (settle, commit, move) for export files.
//! - [`formats`]: export files (canonical JSON, mapped CSV, receipt files) → orders.
//! - [`live`]: the serial source loop: tap chunks → receipts → journal and orders.
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
//! - [`workflow`]: `record` and `reparse`, the template workflow at the till.
//! - [`net`]: network sources — the TCP print proxy (`kind = "tcp"`) and
//!   receipts pushed over TCP/UDP (`kind = "listen"`), with their `allow` lists.
//! - [`device`]: a character device stream (the USB printer gadget), forwarded
//!   to a printer device, reopened when unplugged.
//! - [`stream`]: what network and device sources share: per-connection capture
//!   events on a bounded channel, counters, and the per-stream receipt chains.
//! - `codepages`: data tables for the DOS code pages `ESC t` selects.
//!
//! Invariant for every capture path: a unit is acknowledged (file moved, receipt
//! counted) only after the outbox committed it.

mod codepages;
pub mod device;
pub mod escpos;
pub mod folder;
pub mod formats;
pub mod live;
pub mod mask;
pub mod net;
pub mod receipt;
pub mod segment;
pub mod serial;
pub mod stream;
pub mod template;
pub mod workflow;
