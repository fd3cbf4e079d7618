//! tillrelay: captures every sale at a checkout till and delivers it, exactly once,
//! to Ovopark (video traceback) and Wangdiantong (ERP).
//!
//! # Layout
//!
//! - [`order`]: the canonical order, the one shape an order has outside the code.
//! - [`capture`]: serial tap, ESC/POS decoder, receipt segmenter and templates.
//!
//! ARCHITECTURE.md at the repository root has the bird's-eye view and the invariants.

pub mod capture;
pub mod order;
pub mod secret;
