//! Uploading orders to the clouds: what one delivery attempt ends in, the clients that
//! make attempts, and the shared server-clock correction.
//!
//! - [`ovopark`]: `open.ovopark.storehouse.sendOrder`, one order per request.
//! - [`wdt`]: Wangdiantong `sales.RawTrade.pushSelf2` / `pushSelf`, up to 100 trades per request.
//! - [`Destination`]: the one contract the engine drives a cloud through; [`clients`]
//!   builds every enabled one (daemon, `check-config --online`), from each source's
//!   identity resolved once by the config ([`Routes`]).
//! - [`engine`]: one worker per destination: claim due rows, send, persist, back off.
//! - `form`: the percent/form encoding both clouds use.
//! - [`http`]: the one HTTPS agent configuration both use (rustls + bundled roots, timeouts
//!   always set, proxy from the environment).
//!
//! Invariants:
//! - Every attempt ends in an [`Outcome`] per order, and the outcome is data the outbox
//!   persists: delivered, retry later, rejected (this order's data), misconfigured (the
//!   destination's configuration; the order waits), or its source misconfigured there
//!   (the source's shop or enterprise: that source's orders wait, the others go on).
//! - Classification is a pure function of the HTTP reply (status, headers, body), with
//!   one exception each cloud documents: what a Wangdiantong answer leaves in doubt
//!   (an `error_list` entry naming no trade, counts short of the batch, a refused
//!   re-push) is confirmed by `searchSelfOrder`, never assumed delivered.
//! - The clients' only side effect besides logging is learning the server clock offset.
//! - A transient fault is never `Rejected`: what the specs do not name is retried.
//! - No secret (`secret`, the WDT `salt`) reaches an `Outcome`, a log line or an error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::secret::Secret;

pub mod counters;
mod destination;
pub mod engine;
mod first_failures;
pub(crate) mod form;
pub mod http;
mod json;
pub mod ovopark;
pub mod wdt;

pub use destination::{Destination, Each, OnlineCheck, summarize};
pub use first_failures::FirstFailures;

/// Each source's identity per cloud, resolved over the destination's defaults once,
/// when the config is read ([`ovopark::Ovopark::resolve`], [`wdt::Wdt::resolve`]). An
/// `Err` is a disabled source's (an enabled one's fails the config); its leftover
/// orders wait, misconfigured, as before.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub ovopark: HashMap<String, Result<ovopark::Route, String>>,
    pub wdt: HashMap<String, Result<wdt::ShopTarget, String>>,
}

/// Why a source's identity cannot be resolved: the key (under the source's
/// `ovopark`/`wdt` table) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub key: &'static str,
    pub reason: String,
}

/// A destination's client, or why it could not be built.
pub type Built = Result<Box<dyn Destination>, String>;

/// The client of every enabled destination, by name, in a fixed order (Ovopark, then
/// Wangdiantong): the one way the daemon, `check-config --online` and the demo build
/// them. A client that cannot be built (its TLS setup) is an `Err` of its own, so that
/// `check-config --online` still checks the other.
pub fn clients(
    ovopark: Option<&ovopark::Ovopark>,
    wdt: Option<&wdt::Wdt>,
    routes: &Routes,
) -> Vec<(&'static str, Built)> {
    let mut out: Vec<(&'static str, Built)> = Vec::new();
    if let Some(o) = ovopark {
        let c = ovopark::OvoparkClient::new(o.clone(), routes.ovopark.clone());
        out.push(("ovopark", c.map(|c| Box::new(c) as Box<dyn Destination>)));
    }
    if let Some(w) = wdt {
        let c = wdt::WdtClient::new(w.clone(), routes.wdt.clone());
        out.push(("wdt", c.map(|c| Box::new(c) as Box<dyn Destination>)));
    }
    out
}

/// What one delivery attempt of one order ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cloud has the order (also when it had it before: Ovopark 208003, WDT update).
    Delivered { note: String },
    /// A transient fault: try again later. `after` is the server's or the spec's advice
    /// (a rate limit); `None` leaves the delay to the engine's backoff.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// This order's own data is wrong: keep it with the reason, re-send after a fix.
    Rejected { reason: String },
    /// The destination's configuration is wrong (key, signature, permission, a tenant
    /// setting): stop sending there, keep the orders pending, probe again slowly.
    Misconfigured { reason: String },
    /// The identity of this order's *source* at the destination is refused (its shop,
    /// enterprise or org: WDT 店铺编号不存在或已停用, Ovopark 206004): pause that
    /// source's rows for this destination only, keep them pending, probe one of them
    /// slowly; every other source's orders go on.
    SourceMisconfigured { reason: String },
}

impl Outcome {
    /// Short name for logs and `status`: `delivered`, `retry`, `rejected`,
    /// `misconfigured`, `source misconfigured`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Misconfigured { .. } => "misconfigured",
            Outcome::SourceMisconfigured { .. } => "source misconfigured",
        }
    }

    /// The note or reason, for the outbox row.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Delivered { note } => note,
            Outcome::Retry { reason, .. }
            | Outcome::Rejected { reason }
            | Outcome::Misconfigured { reason }
            | Outcome::SourceMisconfigured { reason } => reason,
        }
    }

    pub(crate) fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn misconfigured(reason: impl Into<String>) -> Outcome {
        Outcome::Misconfigured {
            reason: reason.into(),
        }
    }

    pub(crate) fn source_misconfigured(reason: impl Into<String>) -> Outcome {
        Outcome::SourceMisconfigured {
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Outcome {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }

    /// The outcome with `secrets` blanked out of its text (see [`redact`]).
    pub(crate) fn redacted(self, secrets: &[&str]) -> Outcome {
        match self {
            Outcome::Delivered { note } => Outcome::Delivered {
                note: redact(&note, secrets),
            },
            Outcome::Retry { after, reason } => Outcome::Retry {
                after,
                reason: redact(&reason, secrets),
            },
            Outcome::Rejected { reason } => Outcome::Rejected {
                reason: redact(&reason, secrets),
            },
            Outcome::Misconfigured { reason } => Outcome::Misconfigured {
                reason: redact(&reason, secrets),
            },
            Outcome::SourceMisconfigured { reason } => Outcome::SourceMisconfigured {
                reason: redact(&reason, secrets),
            },
        }
    }
}

/// `text` with every occurrence of each (non-empty) secret value replaced by `***`.
///
/// For text that comes from a server: a cloud or a gateway in front of it may echo a
/// request's parameters in its error message (the WDT salt travels in the query
/// string), and that message is logged, stored as the delivery's last error and shown
/// by `status`. The clients pass each reply's text through this with their own secret
/// values before anything else sees it.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s) {
            out = out.replace(s, crate::secret::REDACTED);
        }
    }
    out
}

/// Classification of an HTTP reply that did not reach the vendor's own JSON: the
/// same for both clouds. `None` means "2xx: read the body".
pub(crate) fn classify_http_status(reply: &http::Reply) -> Option<Outcome> {
    let s = reply.status;
    if (200..300).contains(&s) {
        return None;
    }
    Some(match s {
        // Rate limited or timed out at a proxy: transient; honour the server's advice.
        429 | 408 => Outcome::Retry {
            after: reply.retry_after(),
            reason: format!("HTTP {s}"),
        },
        500..=599 => Outcome::Retry {
            after: reply.retry_after(),
            reason: format!("HTTP {s}"),
        },
        // A redirect or a client error is the same for every order: the URL, a proxy's
        // policy or the credentials are wrong.
        _ => Outcome::misconfigured(format!(
            "HTTP {s} from the server: check the destination url"
        )),
    })
}

/// Seconds between local time and a server's time (server − local), learned from the
/// servers' replies and applied to the request timestamps. Boxes often boot with a wrong
/// clock and no RTC; the clouds refuse stale timestamps.
///
/// Shared by the attempts of one destination (each destination learns its own: the
/// clouds' clocks need not agree).
#[derive(Debug, Default)]
pub struct ServerOffset {
    offset: AtomicI64,
}

/// Differences below this are the one-second resolution of HTTP `Date` plus latency,
/// not skew; learning them would make the offset jitter.
const SKEW_NOISE_SECS: i64 = 2;

impl ServerOffset {
    pub fn new() -> ServerOffset {
        ServerOffset::default()
    }

    /// A clock that starts with a known offset (tests; a value persisted across restarts).
    pub fn with_offset(secs: i64) -> ServerOffset {
        ServerOffset {
            offset: AtomicI64::new(secs),
        }
    }

    /// The current offset, server − local, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// The server's idea of now, in unix seconds.
    pub fn now_unix(&self) -> i64 {
        local_unix() + self.offset()
    }

    /// Learns from a server time observed now; returns the new offset when it changed
    /// by more than the noise of a one-second `Date` header.
    pub fn learn(&self, server_unix: i64) -> Option<i64> {
        self.learn_at(server_unix, local_unix())
    }

    fn learn_at(&self, server_unix: i64, local: i64) -> Option<i64> {
        let new = server_unix - local;
        let old = self.offset();
        if (new - old).abs() <= SKEW_NOISE_SECS {
            return None;
        }
        self.offset.store(new, Ordering::Relaxed);
        Some(new)
    }

    /// Learns from an HTTP reply's `Date` header, if it has a readable one.
    pub fn learn_from_reply(&self, reply: &http::Reply) -> Option<i64> {
        let server = parse_http_date(reply.date.as_deref()?)?;
        self.learn(server)
    }
}

/// Local unix time in seconds (what the box believes; [`crate::clock::unix_now`]).
pub fn local_unix() -> i64 {
    crate::clock::unix_now()
}

/// Parses an HTTP `Date` header (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) into unix
/// seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// Formats unix seconds as an HTTP `Date` header.
pub fn format_http_date(unix: i64) -> String {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) => t.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        None => String::new(),
    }
}

/// Parses Ovopark's `stat.systime`: the spec gives only "the current time of the
/// interface call", type String, so accept epoch milliseconds, epoch seconds, or
/// `yyyy-MM-dd HH:mm:ss` in the tenant's zone (`zone_secs` east of UTC).
pub fn parse_ovopark_systime(s: &str, zone_secs: i32) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return Some(if s.len() >= 12 { n / 1000 } else { n });
    }
    let t = chrono::NaiveDateTime::parse_from_str(s, crate::order::TIME_FORMAT).ok()?;
    Some(t.and_utc().timestamp() - i64::from(zone_secs))
}

/// Checks an optional text key of a destination or `[source.*]` section: at most
/// `max` characters, no control characters. `empty_ok`: "" means something (a prefix:
/// none) rather than a mistake (an identity left blank).
pub(crate) fn text_key(
    prefix: &str,
    key: &str,
    v: Option<String>,
    max: usize,
    empty_ok: bool,
) -> Result<Option<String>, String> {
    match v {
        Some(s)
            if (!empty_ok && s.trim().is_empty())
                || s.chars().count() > max
                || s.chars().any(char::is_control) =>
        {
            let least = if empty_ok { 0 } else { 1 };
            Err(format!(
                "{prefix}.{key}: must be {least}..={max} characters without control characters, got {s:?}"
            ))
        }
        other => Ok(other),
    }
}

/// Reads `secret` or `secret_file` (exactly one) under `prefix`.
pub(crate) fn secret_from(
    prefix: &str,
    secret: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Secret, String> {
    match (secret, file) {
        (Some(_), Some(_)) => Err(format!(
            "{prefix}.secret: set secret or secret_file, not both"
        )),
        (None, None) => Err(format!("{prefix}.secret: missing (or set secret_file)")),
        (Some(s), None) if s.is_empty() => Err(format!("{prefix}.secret: is empty")),
        (Some(s), None) => Ok(s),
        (None, Some(p)) => Secret::from_file(&p).map_err(|e| format!("{prefix}.secret_file: {e}")),
    }
}

pub(crate) fn check_url(key: &str, url: &str) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(['?', '#', ' '])
    {
        return Err(format!(
            "{key}: must be an http(s) URL without a query, got {url:?}"
        ));
    }
    Ok(())
}

/// Cuts `s` to at most `max` characters at a character boundary; `None` when it fits.
pub(crate) fn cut_chars(s: &str, max: usize) -> Option<String> {
    s.char_indices().nth(max).map(|(i, _)| s[..i].to_string())
}

/// A jittered delay in `[lo, hi]` seconds (the vendor's "wait 5–10 minutes").
pub(crate) fn jitter_secs(lo: u64, hi: u64) -> Duration {
    Duration::from_secs(fastrand::u64(lo..=hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keys_allow_empty_prefixes_but_not_blank_identities() {
        let ok = |v: &str, empty_ok| text_key("p", "k", Some(v.to_string()), 5, empty_ok);
        assert_eq!(ok("", true), Ok(Some(String::new())));
        assert_eq!(ok("L2-", true), Ok(Some("L2-".into())));
        assert_eq!(text_key("p", "k", None, 5, false), Ok(None));
        for (v, empty_ok) in [
            ("", false),
            ("  ", false),
            ("toolong", true),
            ("a\tb", true),
        ] {
            let e = ok(v, empty_ok).unwrap_err();
            assert!(e.starts_with("p.k: must be"), "{v:?}: {e}");
        }
        // The documented default of both prefixes validates.
        let wdt = wdt::RawWdtShop {
            tid_prefix: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(wdt.validate().unwrap().tid_prefix.as_deref(), Some(""));
        let ovo = ovopark::RawOvoparkShop {
            order_no_prefix: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(ovo.validate().unwrap().order_no_prefix.as_deref(), Some(""));
    }

    #[test]
    fn server_text_loses_echoed_secrets() {
        let check = |text: &str, expected: &str| {
            assert_eq!(redact(text, &["s3cr3t", "", "salt-1"]), expected, "{text}");
        };
        check("sign error", "sign error");
        check("salt=salt-1&x=s3cr3t", "salt=***&x=***");
        check("s3cr3ts3cr3t", "******");
        let o = Outcome::retry("echo: s3cr3t").redacted(&["s3cr3t"]);
        assert_eq!(o.text(), "echo: ***");
        assert_eq!(o.kind(), "retry");
    }

    #[test]
    fn http_date_round_trips_and_rejects_junk() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t, 784111777);
        assert_eq!(format_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn systime_forms() {
        let check = |s: &str, expected: Option<i64>| {
            assert_eq!(parse_ovopark_systime(s, 8 * 3600), expected, "{s}")
        };
        check("1574921780123", Some(1574921780));
        check("1574921780", Some(1574921780));
        // 2019-11-28 14:16:20 at UTC+8 is 06:16:20 UTC.
        check("2019-11-28 14:16:20", Some(1574921780));
        check("", None);
        check("later", None);
    }

    #[test]
    fn clock_learns_only_real_skew() {
        let c = ServerOffset::new();
        assert_eq!(c.learn_at(1000 + 2, 1000), None, "within noise");
        assert_eq!(c.learn_at(1000 + 3600, 1000), Some(3600));
        assert_eq!(c.offset(), 3600);
        assert_eq!(c.learn_at(2000 + 3601, 2000), None);
        assert_eq!(c.learn_at(2000 - 50, 2000), Some(-50));
    }

    /// config/tillrelay.toml's upload section names only keys that exist: its
    /// commented-out destination keys all deserialize (unknown keys are refused).
    #[test]
    fn documented_config_keys_exist() {
        #[derive(serde::Deserialize)]
        struct Both {
            ovopark: ovopark::RawOvopark,
            wdt: wdt::RawWdt,
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let text = text
            .split("# Upload destinations:")
            .nth(1)
            .and_then(|t| t.split_once('\n'))
            .expect("the upload section of config/tillrelay.toml")
            .1;
        let dest = text.split("# Per source").next().unwrap();
        let key = regex::Regex::new(r"^# ([a-z_]+ = |\[wdt\.|\[ovopark\]$|\[wdt\]$)").unwrap();
        let uncommented: String = dest
            .lines()
            .map(|l| if key.is_match(l) { &l[2..] } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        let both: Both = toml::from_str(&uncommented).unwrap();
        assert_eq!(both.wdt.batch_size, Some(100));
        assert_eq!(both.wdt.concurrency, Some(wdt::DEFAULT_CONCURRENCY));
        assert_eq!(both.ovopark.sign_method.as_deref(), Some("md5"));
        assert_eq!(both.ovopark.concurrency, Some(ovopark::DEFAULT_CONCURRENCY));
        let per_source = text
            .split("# Per source")
            .nth(1)
            .unwrap()
            .split("# -----")
            .next()
            .unwrap();
        let mut ovo_src = String::new();
        let mut wdt_src = String::new();
        let mut into = None;
        for l in per_source.lines() {
            match l {
                "# [source.ovopark]" => into = Some(0),
                "# [source.wdt]" => into = Some(1),
                _ if key.is_match(l) => match into {
                    Some(0) => ovo_src.push_str(&format!("{}\n", &l[2..])),
                    Some(1) => wdt_src.push_str(&format!("{}\n", &l[2..])),
                    _ => {}
                },
                _ => {}
            }
        }
        toml::from_str::<ovopark::RawOvoparkShop>(&ovo_src)
            .unwrap()
            .validate()
            .unwrap();
        toml::from_str::<wdt::RawWdtShop>(&wdt_src)
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut_chars("可口可乐", 2).as_deref(), Some("可口"));
        assert_eq!(cut_chars("可口可乐", 4), None);
        assert_eq!(cut_chars("abc", 5), None);
    }
}

/// Shared by the unit tests of the clients: the project's fixture orders, stamped.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::order::Order;

    pub(crate) fn stamp(mut o: Order) -> Order {
        o.source = Some("lane1".into());
        o.shop = Some("D001".into());
        o.machine_id = Some("NVR01-CH03".into());
        o.video_start = Some(o.order_time - chrono::Duration::seconds(60));
        o.video_end = Some(o.order_time + chrono::Duration::seconds(30));
        o
    }

    /// Every order of `tests/fixtures/exports/expected.json` and the receipts', stamped.
    pub(crate) fn fixture_orders() -> Vec<Order> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut out = Vec::new();
        for rel in [
            "exports/expected.json",
            "receipts/market.expected.json",
            "receipts/kiosk.expected.json",
        ] {
            let text = std::fs::read_to_string(dir.join(rel)).unwrap();
            let orders: Vec<Order> = serde_json::from_str(&text).unwrap();
            out.extend(orders.into_iter().map(stamp));
        }
        out
    }
}
