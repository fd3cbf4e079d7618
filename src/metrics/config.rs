//! The configuration's reloads (`SIGHUP`, `tillrelay reload`), named as Prometheus
//! names its own: whether the last load was applied, when one last was, how many
//! were asked and how many refused.
//!
//! Invariant: a refused reload shows here (`tillrelay_config_last_reload_successful`
//! 0) until a later one is applied; the agent meanwhile runs on the configuration of
//! `tillrelay_config_last_reload_success_timestamp_seconds`.

use super::expo::Expo;
use super::registry::ReloadState;

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
