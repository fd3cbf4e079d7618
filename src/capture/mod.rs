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
//! - [`escpos`]: streaming ESC/POS decoder, raw bytes → text lines, cuts, codes;
//!   its command tables and code pages (`escpos/codepages.rs`: the DOS tables).
//! - [`segment`]: receipt boundaries (cut, end pattern, idle timeout, start
//!   pattern) over decoder events; yields [`segment::Receipt`]s with their raw bytes.
//! - [`number`]: a source's number format (decimal mark, grouping) and the one
//!   reader of printed amounts (receipts and CSV): an amount fits or is an error.
//! - [`mask`]: blanks card numbers in a receipt's text and raw bytes before
//!   anything is stored.
//! - [`template`]: config-driven receipt text → canonical [`crate::order::Order`].
//! - [`receipt`]: the whole chain for one source (decoder → segmenter → masker),
//!   for live bytes and for files (`parse`, folder `format = "receipt"`, reparse).
//! - [`net`]: network sources — the TCP print proxy (`kind = "tcp"`) and
//!   receipts pushed over TCP/UDP (`kind = "listen"`), with their `allow` lists.
//! - [`device`]: a character device stream (the USB printer gadget), forwarded
//!   to a printer device, reopened when unplugged.
//! - `reopen`: what the serial tap and the device source share when they
//!   reopen a path: the backoff that grows until an opening lasts, and the
//!   refusal of regular files.
//! - [`stream`]: what network and device sources share: per-connection capture
//!   events on a bounded channel, counters, and the per-stream receipt chains.
//! - [`stream_source`]: the daemon's loop of a network or device source: starts
//!   its part, per-stream receipts → journal + orders (the serial loop's
//!   [`live::Journal`]).
//!
//! Each part owns its settings: the folder's in `folder::settings`, the readers' in
//! `formats::settings`, the tap's, segmenter's and templates' beside their code.
//! Nothing here reads the config: the daemon and the commands hand each part its
//! settings.
//!
//! Invariant for every capture path: a unit is acknowledged (file moved, receipt
//! counted) only after the outbox committed it.

pub mod counters;
pub mod device;
pub mod escpos;
pub mod folder;
pub mod formats;
pub mod live;
pub mod mask;
pub mod net;
pub mod number;
pub mod receipt;
mod reopen;
pub mod segment;
pub mod serial;
pub mod stream;
pub mod stream_source;
pub mod template;
