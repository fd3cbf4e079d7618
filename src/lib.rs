//! tillrelay: captures every sale at a checkout till and delivers it, exactly once,
//! to Ovopark (video traceback) and Wangdiantong (ERP).
//!
//! # Layout
//!
//! - [`config`]: TOML → validated runtime config, in two stages.
//! - [`order`]: the canonical order, the one shape an order has outside the code.
//! - [`secret`]: secret values that print as `***`.
//! - [`outbox`]: the SQLite journal, orders and delivery rows; durability lives here.
//!
//! ARCHITECTURE.md at the repository root has the bird's-eye view and the invariants.

pub mod config;
pub mod order;
pub mod outbox;
pub mod secret;
