//! tillrelay: captures every sale at a checkout till and delivers it, exactly once,
//! to Ovopark (video traceback) and Wangdiantong (ERP).
//!
//! # Layout
//!
//! - [`order`]: the canonical order, the one shape an order has outside the code.
//! - [`systemd`]: READY / WATCHDOG / STOPPING / STATUS to the service manager.
//!
//! ARCHITECTURE.md at the repository root has the bird's-eye view and the invariants.

pub mod order;
pub mod secret;
pub mod systemd;
