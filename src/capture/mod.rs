//! Capture: where orders come from.
//!
//! - [`formats`]: export files (canonical JSON, mapped CSV) → orders.
//! - [`folder`]: the watched folder loop (settle, commit, move).
//!
//! Invariant for every capture path: a unit is acknowledged (file moved, receipt
//! counted) only after the outbox committed it.

pub mod folder;
pub mod formats;
