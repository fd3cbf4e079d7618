//! The contract between the upload engine and a cloud: what the engine asks of any
//! destination, so that it holds no cloud's rules.
//!
//! Invariants:
//! - [`Destination::send`] hands over exactly one outcome per order it attempted, each
//!   as soon as its request's answer is known, and marks the last outcome of each
//!   request (`request_done`: the engine persists then). Orders never handed over were
//!   not attempted.
//! - How many requests are in flight, and which orders may share one, is the
//!   destination's business (Ovopark: `concurrency` single-order requests, the first of
//!   a pass alone; Wangdiantong: `concurrency` batches of distinct tids). A request is
//!   not started while the sender's previous outcome is still being recorded (the
//!   callback returns once it is), so sent-and-unrecorded requests never exceed
//!   `concurrency`: each is at most one re-send after a crash.
//! - [`ControlFlow::Break`] from the callback (the outbox failed) stops new requests;
//!   the ones in flight finish and are dropped, never half persisted.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::{Outcome, ServerOffset};
use crate::order::Order;

/// Called with each order's index (in the slice given), its outcome, and whether that
/// outcome completes its request (persist now). `Break` stops the sending.
pub type Each<'a> = dyn FnMut(usize, Outcome, bool) -> ControlFlow<()> + 'a;

/// One cloud as the engine drives it.
pub trait Destination: Send + Sync {
    /// `ovopark`, `wdt`: the outbox's destination name and the log prefix.
    fn name(&self) -> &'static str;

    /// How many orders one pass claims (enough to keep every request in flight busy).
    fn batch_limit(&self) -> usize;

    /// Sends `orders`, handing each outcome to `each` as soon as it is known. `tick`
    /// is called per request's outcomes (the worker's heartbeat: a batch of slow
    /// requests is progress, not a stuck loop).
    fn send(&self, orders: &[&Order], tick: &dyn Fn(), each: &mut Each<'_>);

    /// The learned offset of the server's clock (share it, show it in `status`).
    fn server_offset(&self) -> &Arc<ServerOffset>;

    /// `check-config --online`: harmless calls that show whether the configuration
    /// works: the account and key first (when they fail, nothing else is checked),
    /// then each source's identity as the config resolved it.
    fn online_checks(&self) -> Vec<OnlineCheck>;
}

/// One answer of `check-config --online`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineCheck {
    /// `None`: the destination itself (account, key, reachability); `Some(name)`: a
    /// source's identity (its shop, its enterprise).
    pub source: Option<String>,
    /// `Ok`: what was found; `Err`: the plain problem.
    pub result: Result<String, String>,
}

impl OnlineCheck {
    pub fn account(result: Result<String, String>) -> OnlineCheck {
        OnlineCheck {
            source: None,
            result,
        }
    }
}

/// All checks in one: `Err` with every problem when any failed, else what was found.
pub fn summarize(checks: &[OnlineCheck]) -> Result<String, String> {
    let text = |c: &OnlineCheck, t: &str| match &c.source {
        None => t.to_string(),
        Some(s) => format!("source {s}: {t}"),
    };
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|c| c.result.as_ref().err().map(|e| text(c, e)))
        .collect();
    if failed.is_empty() {
        Ok(checks
            .iter()
            .filter_map(|c| c.result.as_ref().ok().map(|t| text(c, t)))
            .collect::<Vec<_>>()
            .join("; "))
    } else {
        Err(failed.join("; "))
    }
}

impl<D: Destination + ?Sized> Destination for Box<D> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn batch_limit(&self) -> usize {
        (**self).batch_limit()
    }
    fn send(&self, orders: &[&Order], tick: &dyn Fn(), each: &mut Each<'_>) {
        (**self).send(orders, tick, each)
    }
    fn server_offset(&self) -> &Arc<ServerOffset> {
        (**self).server_offset()
    }
    fn online_checks(&self) -> Vec<OnlineCheck> {
        (**self).online_checks()
    }
}
