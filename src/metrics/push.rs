//! Pushing for boxes behind NAT: every `push_interval`, the same exposition as
//! `/metrics` is PUT (gzipped, which the Pushgateway reads since 1.5; plain text
//! from the first time a gateway refuses it and takes plain text) to a Prometheus Pushgateway under the grouping key
//! `job="tillrelay", box_id=<[agent] box_id>` (PUT replaces the group, so a metric
//! gone from the box is gone from the gateway).
//!
//! Invariants: a push that fails is logged (once per outage, not per interval),
//! counted where the box's own `/metrics` shows it (`tillrelay_push_failures_total`:
//! a gateway that never hears from the box cannot say why), and tried again at the
//! next interval; the pusher owns no heartbeat and holds no lock another loop waits
//! for, so it can never hold back capture, upload or the watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};

use super::Metrics;
use super::expo::{CONTENT_TYPE, Expo, gzip};
use crate::lifecycle::Shutdown;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The group's URL on the gateway at `base`.
pub fn group_url(base: &str, box_id: &str) -> String {
    format!(
        "{}/metrics/job/tillrelay/box_id/{box_id}",
        base.trim_end_matches('/')
    )
}

/// `url` with its user information (`user:password@`) shown as `***@`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// What the pusher did, for the box's own exposition.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Set when the pusher starts: a box that does not push shows none of these.
    running: AtomicBool,
    pushes: AtomicU64,
    failures: AtomicU64,
    /// Unix seconds of the last push the gateway accepted (0: none yet).
    last_success: AtomicI64,
}

impl PushStats {
    fn record(&self, ok: bool, at: i64) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.last_success.store(at, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn write(&self, e: &mut Expo) {
        if !self.running.load(Ordering::Relaxed) {
            return;
        }
        e.single(
            "tillrelay_push_attempts_total",
            "counter",
            "Pushes to the Pushgateway tried since the agent started.",
            self.pushes.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "tillrelay_push_failures_total",
            "counter",
            "Pushes that failed (no answer, or not 2xx) since the agent started.",
            self.failures.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "tillrelay_push_last_success_timestamp_seconds",
            "gauge",
            "When the gateway last accepted a push (0: not yet since the start).",
            self.last_success.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Starts the pusher's thread.
pub fn start(
    base: String,
    every: Duration,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics-push".into())
        .spawn(move || run(&base, every, &metrics, &shutdown))
}

fn run(base: &str, every: Duration, metrics: &Metrics, shutdown: &Shutdown) {
    let url = group_url(base, &metrics.box_id);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    // What may be logged: the URL without any user:password.
    let shown = redact(&url);
    info!(
        "metrics: pushing to {shown} every {}",
        humantime::format_duration(every)
    );
    metrics.push.running.store(true, Ordering::Relaxed);
    let mut failing = false;
    // Gzipped (a fifth of the bytes on the shop's uplink) until a gateway older than
    // 1.5, which cannot read it, refuses a gzipped push that plain text passes.
    let mut zip = true;
    loop {
        let body = metrics.render();
        let put = |zipped: bool| {
            let req = agent.put(&url).header("Content-Type", CONTENT_TYPE);
            let r = if zipped {
                req.header("Content-Encoding", "gzip")
                    .send(&gzip(body.as_bytes())[..])
            } else {
                req.send(body.as_bytes())
            };
            match r {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err((
                    Some(resp.status().as_u16()),
                    format!("HTTP {}", resp.status().as_u16()),
                )),
                Err(e) => Err((None, e.to_string())),
            }
        };
        let mut r = put(zip);
        if zip && matches!(r, Err((Some(400 | 415), _))) && put(false).is_ok() {
            info!("metrics: {shown} does not take gzipped pushes; pushing plain text from now on");
            zip = false;
            r = Ok(());
        }
        let err = r.err().map(|(_, e)| e);
        metrics.push.record(err.is_none(), crate::outbox::now());
        match err {
            None if failing => {
                info!("metrics: pushing to {shown} works again");
                failing = false;
            }
            None => {}
            Some(e) if !failing => {
                warn!("metrics: push to {shown} failed ({e}); retrying every interval");
                failing = true;
            }
            Some(e) => log::debug!("metrics: push failed again: {e}"),
        }
        if shutdown.wait(every) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pushes_and_failures_are_counted_once_the_pusher_runs() {
        let s = super::PushStats::default();
        let mut e = super::Expo::new();
        s.write(&mut e);
        assert_eq!(e.finish(), "", "no pusher, no push figures");
        s.running.store(true, super::Ordering::Relaxed);
        s.record(false, 100);
        s.record(true, 160);
        s.record(false, 220);
        let mut e = super::Expo::new();
        s.write(&mut e);
        let text = e.finish();
        for line in [
            "tillrelay_push_attempts_total 3",
            "tillrelay_push_failures_total 2",
            "tillrelay_push_last_success_timestamp_seconds 160",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
    }

    #[test]
    fn the_group_url_names_job_and_box_and_logs_hide_credentials() {
        let u = super::group_url("https://u:pw@gw.example.net/", "shop-1");
        assert_eq!(
            u,
            "https://u:pw@gw.example.net/metrics/job/tillrelay/box_id/shop-1"
        );
        assert_eq!(
            super::redact(&u),
            "https://***@gw.example.net/metrics/job/tillrelay/box_id/shop-1"
        );
        assert_eq!(super::redact("http://gw:9091/a@b"), "http://gw:9091/a@b");
    }
}
