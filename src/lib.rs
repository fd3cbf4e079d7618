//! tillrelay: captures every sale at a checkout till and delivers it, exactly once,
//! to Ovopark (video traceback) and Wangdiantong (ERP).
//!
//! # Layout
//!
//! - [`config`]: TOML → validated runtime config, in two stages; it assembles the
//!   settings each part owns and validates ([`settings`]: their shared vocabulary).
//! - [`order`]: the canonical order, the one shape an order has outside the code.
//! - [`stamp`]: source, shop, camera and video window added to each order.
//! - [`capture`]: where orders come from: the watched folder and its readers, the
//!   serial tap, the ESC/POS decoder, receipt segmenter and templates.
//! - [`outbox`]: the SQLite journal, orders and delivery rows; durability lives here.
//! - [`upload`]: the clients of both clouds and what a delivery attempt ends in.
//! - [`emulator`]: local stand-ins for both clouds, strict to the specs, with fault modes.
//! - [`daemon`]: `tillrelay run`, the threads and their orderly stop; `supervisor`
//!   keeps the running loops by name, so that `reload` (SIGHUP) can stop and start
//!   the ones a new config changes.
//! - [`record`], [`reparse`]: the template workflow at the till (`record` live
//!   bytes, `reparse` the journal), commands beside `run` and `demo`.
//! - [`lifecycle`]: the shutdown value and the heartbeats behind the watchdog.
//! - [`expect`]: `parse --expect`, orders compared field by field with the expected.
//! - [`cli`]: the commands, their output and exit codes; `main` only calls it.
//! - [`logging`], [`secret`]: log setup; secret values that print as `***`.
//! - [`failpoint`]: places where tests make the real binary crash or hang on purpose.
//! - [`systemd`]: READY / WATCHDOG / STOPPING / STATUS to the service manager;
//!   [`pidfile`]: the running agent found by the lock it holds on its pid file.
//!
//! ARCHITECTURE.md at the repository root has the bird's-eye view and the invariants.

pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
mod daemon;
mod demo;
pub mod emulator;
pub mod expect;
mod failpoint;
mod generate;
pub mod lifecycle;
mod logging;
pub mod metrics;
pub mod order;
pub mod outbox;
mod pidfile;
mod pull;
mod record;
mod reload;
mod reparse;
pub mod secret;
pub mod settings;
pub mod source_stats;
pub mod stamp;
mod supervisor;
mod systemd;
pub mod upload;
