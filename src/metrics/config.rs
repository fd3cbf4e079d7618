//! The configuration's reloads (`SIGHUP`, `tillrelay reload`), named as Prometheus
//! names its own: whether the last load was applied, when one last was, how many
//! were asked and how many refused.
//!
//! Which configuration runs (`tillrelay_config_info{serial,hash,origin}`,
//! `tillrelay_config_serial`) and how the pull from `[agent] config_url` fares
//! (`tillrelay_config_pull_*`, only on boxes that pull).
//!
//! Invariant: a refused reload shows here (`tillrelay_config_last_reload_successful`
//! 0) until a later one is applied; the agent meanwhile runs on the configuration of
//! `tillrelay_config_last_reload_success_timestamp_seconds`.

use super::expo::Expo;
use super::registry::{PullState, ReloadState, Running};

pub fn write(e: &mut Expo, r: &ReloadState) {
    e.single(
        "tillrelay_config_last_reload_successful",
        "gauge",
        "1 if the last configuration load (start or reload) was applied, 0 if it was refused.",
        if r.last_ok { 1.0 } else { 0.0 },
    );
    e.single(
        "tillrelay_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the running configuration was loaded (start or reload), unix seconds.",
        r.last_success_at as f64,
    );
    e.single(
        "tillrelay_config_reloads_total",
        "counter",
        "Reloads asked (SIGHUP, tillrelay reload), applied or refused.",
        r.reloads as f64,
    );
    e.single(
        "tillrelay_config_reload_failures_total",
        "counter",
        "Reloads refused because the new configuration is invalid (the running one stayed).",
        r.failures as f64,
    );
}

pub fn write_running(e: &mut Expo, r: &Running, pull: Option<&PullState>) {
    e.family(
        "tillrelay_config_info",
        "gauge",
        "Always 1: the running configuration's serial (0 for a local file), the hash of its text and where it came from (pulled, local).",
    );
    let serial = r.serial.to_string();
    e.sample(
        "tillrelay_config_info",
        &[("serial", &serial), ("hash", &r.hash), ("origin", r.origin)],
        1.0,
    );
    e.single(
        "tillrelay_config_serial",
        "gauge",
        "The running configuration's serial (0: the local file, nothing pulled applied).",
        r.serial as f64,
    );
    let Some(p) = pull else {
        return;
    };
    e.single(
        "tillrelay_config_pull_successful",
        "gauge",
        "1 if the last check of agent.config_url ended well (applied or unchanged), 0 if it was refused or failed.",
        if p.last_ok { 1.0 } else { 0.0 },
    );
    e.single(
        "tillrelay_config_pull_last_success_timestamp_seconds",
        "gauge",
        "When a check of agent.config_url last ended well, unix seconds (0: never).",
        p.last_success_at as f64,
    );
    e.single(
        "tillrelay_config_pull_checks_total",
        "counter",
        "Checks of agent.config_url.",
        p.checks as f64,
    );
    e.single(
        "tillrelay_config_pull_failures_total",
        "counter",
        "Checks of agent.config_url refused or failed (unreachable, unsigned, badly signed, stale, a secret inline, invalid); the running configuration stayed.",
        p.failures as f64,
    );
}
