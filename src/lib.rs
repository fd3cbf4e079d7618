//! tillrelay: captures every sale at a checkout till and delivers it, exactly once,
//! to Ovopark (video traceback) and Wangdiantong (ERP).
//!
//! # Layout
//!
//! - [`order`]: the canonical order, the one shape an order has outside the code.
//! - [`upload`]: the clients of both clouds and what a delivery attempt ends in.
//! - [`emulator`]: local stand-ins for both clouds, strict to the specs, with fault modes.
//!
//! ARCHITECTURE.md at the repository root has the bird's-eye view and the invariants.

pub mod emulator;
pub mod order;
pub mod secret;
pub mod upload;
