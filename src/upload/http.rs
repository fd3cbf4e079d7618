//! The HTTP(S) agent both clients use: ureq over rustls (ring) with the bundled Mozilla
//! roots, because checkout boxes carry stale CA stores.
//!
//! Invariants:
//! - A connect timeout and an overall timeout are always set; nothing waits forever.
//! - Certificate verification is never switched off. `ca_file` replaces the bundled roots
//!   with the given ones (a private CA, an intercepting proxy, a test server); there is
//!   no option that skips verification.
//! - `https_proxy` / `http_proxy` / `all_proxy` (either case) are honoured, with
//!   `no_proxy`; loopback is always reached directly (the emulators, a local relay).
//! - What may be logged or put in an error: the method, scheme, host and path of the
//!   URL, the HTTP status, the transport failure's kind. Never the query string (the
//!   WDT query carries `key`, `salt` and `sign`), never a request body, never a secret.
//!   [`TransportError`] is built from those parts only.
//! - A proxy that refuses the tunnel (`CONNECT host:port` answered other than 200)
//!   is named in the error with its status and the tunnel's target (the proxy's
//!   address without credentials): a plain `http://` URL is tunnelled to port 80,
//!   which common proxies refuse, and "proxy failed" alone sent integrators looking
//!   everywhere else (issue #26). A 4xx there is the proxy's policy or credentials:
//!   the same for every order, so the destination pauses; other answers are retried.
//! - A host name is looked up at most once per [`RESOLVE_TTL`], not per request: ureq
//!   resolves before it looks in its connection pool, and its resolver runs each lookup
//!   on a fresh thread (to time it out), so a drain cost one thread and one DNS query per
//!   order. A failed lookup is never cached.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config as UreqConfig;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// How long a looked-up address is used before it is looked up again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// Cap on a reply body: both clouds answer a few hundred bytes; a captive portal or a
/// misdirected URL must not make the box buffer megabytes.
const MAX_BODY: u64 = 1 << 20;

/// Validated HTTP settings of one destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    /// Whole request, connect to last body byte.
    pub timeout: Duration,
    /// PEM file of root certificates to trust instead of the bundled ones.
    pub ca_file: Option<PathBuf>,
}

pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

impl HttpConfig {
    /// Validates the raw keys shared by the destinations; `prefix` names the table in
    /// errors (`ovopark`, `wdt`).
    pub fn from_raw(
        prefix: &str,
        connect_timeout_secs: Option<u64>,
        timeout_secs: Option<u64>,
        ca_file: Option<PathBuf>,
    ) -> Result<HttpConfig, String> {
        let connect = connect_timeout_secs.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);
        let total = timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(1..=300).contains(&connect) {
            return Err(format!(
                "{prefix}.connect_timeout_secs: must be 1..=300, got {connect}"
            ));
        }
        if !(1..=600).contains(&total) {
            return Err(format!(
                "{prefix}.timeout_secs: must be 1..=600, got {total}"
            ));
        }
        if let Some(p) = &ca_file {
            let pem = std::fs::read(p)
                .map_err(|e| format!("{prefix}.ca_file: cannot read {}: {e}", p.display()))?;
            if load_certs(&pem).map_or(true, |c| c.is_empty()) {
                return Err(format!(
                    "{prefix}.ca_file: {} holds no PEM certificate",
                    p.display()
                ));
            }
        }
        Ok(HttpConfig {
            connect_timeout: Duration::from_secs(connect),
            timeout: Duration::from_secs(total),
            ca_file,
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            ca_file: None,
        }
    }
}

fn load_certs(pem: &[u8]) -> Result<Vec<Certificate<'static>>, ureq::Error> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) = item? {
            out.push(c);
        }
    }
    Ok(out)
}

/// What came back: enough for classification, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub status: u16,
    /// The `Date` header, for clock-skew learning.
    pub date: Option<String>,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `Retry-After` in seconds (the date form is not worth the bytes here), capped at
    /// an hour so a broken header cannot park a destination for days.
    pub fn retry_after(&self) -> Option<Duration> {
        let secs: u64 = self.retry_after.as_deref()?.trim().parse().ok()?;
        Some(Duration::from_secs(secs.min(3600)))
    }
}

/// A request that got no HTTP reply. Always transient for the caller (retry later).
/// Holds only the kind of failure and the URL without its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} ({target})")]
pub struct TransportError {
    pub what: String,
    /// `scheme://host:port/path`, never the query.
    pub target: String,
    /// A proxy refused the tunnel with this 4xx status: its policy or credentials,
    /// the same for every request.
    pub proxy_refused: bool,
}

impl TransportError {
    pub fn into_outcome(self) -> super::Outcome {
        if self.proxy_refused {
            super::Outcome::misconfigured(self.to_string())
        } else {
            super::Outcome::retry(self.to_string())
        }
    }
}

/// ureq's resolver with a memory of the last lookup (one destination talks to one
/// host). See the module invariants.
#[derive(Debug)]
struct CachingResolver<R = DefaultResolver> {
    inner: R,
    ttl: Duration,
    /// `scheme://authority`, when it was looked up, and what it gave.
    last: Mutex<Option<(String, Instant, ResolvedSocketAddrs)>>,
}

impl<R: Resolver> CachingResolver<R> {
    fn new(inner: R, ttl: Duration) -> Self {
        CachingResolver {
            inner,
            ttl,
            last: Mutex::new(None),
        }
    }
}

impl<R: Resolver> Resolver for CachingResolver<R> {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &UreqConfig,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, at, addrs)) = &*last {
            if *k == key && now.duration_since(*at) < self.ttl {
                return Ok(addrs.clone());
            }
        }
        // The lock is held through the lookup: a second request to the same host waits
        // for this answer rather than starting its own.
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *last = Some((key, now, addrs.clone()));
        Ok(addrs)
    }
}

/// One destination's agent. Cheap to clone (ureq agents share their pool).
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    proxied: bool,
    /// The proxy's `scheme://host:port`, without credentials (for messages).
    proxy_name: Option<String>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("proxied", &self.proxied)
            .finish()
    }
}

impl Http {
    /// An agent for requests to `url` (its scheme and host choose the proxy).
    pub fn new(cfg: &HttpConfig, url: &str) -> Result<Http, String> {
        let proxy_url = proxy_for(url, &|k| std::env::var(k).ok());
        let proxy_name = proxy_url.as_deref().map(url_without_query);
        let proxy = proxy_url
            .map(|p| {
                ureq::Proxy::new(&p)
                    .map_err(|_| "the proxy variable is not a valid URL".to_string())
            })
            .transpose()?;
        let roots = match &cfg.ca_file {
            None => RootCerts::WebPki,
            Some(p) => {
                let pem = std::fs::read(p)
                    .map_err(|e| format!("cannot read CA file {}: {e}", p.display()))?;
                let certs =
                    load_certs(&pem).map_err(|e| format!("CA file {}: {e}", p.display()))?;
                RootCerts::new_with_certs(&certs)
            }
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let proxied = proxy.is_some();
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .tls_config(tls)
            .user_agent(concat!("tillrelay/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Http {
            agent: ureq::Agent::with_parts(
                config,
                DefaultConnector::default(),
                CachingResolver::new(DefaultResolver::default(), RESOLVE_TTL),
            ),
            proxied,
            proxy_name,
        })
    }

    /// Whether requests go through a proxy from the environment.
    pub fn proxied(&self) -> bool {
        self.proxied
    }

    /// POSTs `body` to `url` and returns the reply, whatever its status.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply, TransportError> {
        let sent = self
            .agent
            .post(url)
            .header("Content-Type", content_type)
            .send(body);
        self.read_reply(url, sent).map(|(reply, _)| reply)
    }
}

impl Http {
    /// GETs `url`, sending `If-None-Match: etag` when given; the reply whatever its
    /// status, with its `ETag` (the configuration pull: `crate::pull`).
    pub fn get(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<(Reply, Option<String>), TransportError> {
        let mut req = self.agent.get(url);
        if let Some(tag) = etag {
            req = req.header("If-None-Match", tag);
        }
        self.read_reply(url, req.call())
    }

    /// What a request to `url` came to: the reply (body at most [`MAX_BODY`]) and
    /// its `ETag`, or the transport's failure (a proxy's refusal named as such).
    fn read_reply(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(Reply, Option<String>), TransportError> {
        let fail = |what: String| TransportError {
            what,
            target: url_without_query(url),
            proxy_refused: false,
        };
        let mut resp = sent.map_err(|e| match (&e, &self.proxy_name) {
            (ureq::Error::ConnectProxyFailed(reason), Some(proxy)) => {
                self.proxy_refusal(url, proxy, reason)
            }
            _ => fail(describe(&e)),
        })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (date, retry_after, tag) = (header("date"), header("retry-after"), header("etag"));
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| fail(format!("reading the reply: {}", describe(&e))))?;
        Ok((
            Reply {
                status,
                date,
                retry_after,
                body,
            },
            tag,
        ))
    }

    /// The proxy's refusal of the tunnel to `url`'s host, naming the proxy, its
    /// status and the tunnel's target port.
    fn proxy_refusal(&self, url: &str, proxy: &str, reason: &str) -> TransportError {
        // ureq: "proxy server responded 403/403" (status, then its text), or "proxy
        // server did not respond".
        let status: Option<u16> = reason
            .strip_prefix("proxy server responded ")
            .and_then(|r| r.split(['/', ' ']).next())
            .and_then(|s| s.trim().parse().ok());
        let target = host_port(url).unwrap_or_default();
        let plain = url.starts_with("http://");
        let hint = if plain {
            ": a plain http:// URL is tunnelled to port 80, which proxies commonly refuse; use https://"
        } else {
            ""
        };
        let what = match status {
            Some(s) => format!("proxy {proxy} refused CONNECT {target} with HTTP {s}{hint}"),
            None => format!("proxy {proxy} failed the tunnel (CONNECT {target}): {reason}"),
        };
        TransportError {
            what,
            target: url_without_query(url),
            proxy_refused: status.is_some_and(|s| (400..500).contains(&s)),
        }
    }
}

/// `host:port` of a URL (the scheme's default port when none is written).
fn host_port(url: &str) -> Option<String> {
    let (scheme, host) = host_of(url)?;
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let port = authority
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| if scheme == "https" { "443" } else { "80" }.to_string());
    Some(format!("{host}:{port}"))
}

/// Whether a URL is plain `http://` to a host that is not loopback: the key, the WDT
/// salt and the orders would cross the network in clear (`check-config` warns).
pub fn cleartext_remote(url: &str) -> bool {
    match host_of(url) {
        Some((scheme, host)) => {
            scheme == "http" && !(host == "localhost" || host == "::1" || host.starts_with("127."))
        }
        None => false,
    }
}

/// A failure described without any part of the request (ureq's own Display of a few
/// variants would include the URI).
fn describe(e: &ureq::Error) -> String {
    use ureq::Error as E;
    match e {
        E::Timeout(t) => format!("timed out ({t})"),
        E::Io(io) => format!("network error: {io}"),
        E::HostNotFound => "host not found".into(),
        E::ConnectionFailed => "connection failed".into(),
        E::Rustls(r) => format!("TLS: {r}"),
        E::Tls(m) => format!("TLS: {m}"),
        E::Pem(_) => "TLS: bad PEM".into(),
        E::Protocol(_) => "malformed HTTP reply".into(),
        E::BodyExceedsLimit(n) => format!("reply larger than {n} bytes"),
        E::ConnectProxyFailed(_) | E::InvalidProxyUrl => "proxy failed".into(),
        E::LargeResponseHeader(..) => "reply header too large".into(),
        E::BadUri(_) | E::Http(_) => "bad URL".into(),
        E::TooManyRedirects | E::RedirectFailed => "redirected".into(),
        E::RequireHttpsOnly(_) | E::TlsRequired => "TLS required".into(),
        E::StatusCode(c) => format!("HTTP {c}"),
        _ => "transport error".into(),
    }
}

/// `scheme://host[:port]/path` of a URL, dropping the query and any userinfo.
pub fn url_without_query(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            format!("{scheme}://{rest}")
        }
        None => no_query.to_string(),
    }
}

/// Host of a URL (lower case, without port or brackets).
fn host_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// The proxy URL to use for `url`, from the environment as curl reads it: the scheme's
/// variable, then `all_proxy`; none when `no_proxy` matches or the host is loopback.
fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let (scheme, host) = host_of(url)?;
    if host == "localhost" || host == "::1" || host.starts_with("127.") {
        return None;
    }
    let get = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| env(n))
            .find(|v| !v.trim().is_empty())
    };
    if let Some(list) = get(&["no_proxy", "NO_PROXY"]) {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                return None;
            }
            let suffix = entry.trim_start_matches('.');
            if host == suffix || host.ends_with(&format!(".{suffix}")) {
                return None;
            }
        }
    }
    let scheme_vars: &[&str] = if scheme == "https" {
        &["https_proxy", "HTTPS_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY"]
    };
    get(scheme_vars).or_else(|| get(&["all_proxy", "ALL_PROXY"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts lookups; fails for hosts named `fail…`.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &ureq::http::Uri,
            _: &UreqConfig,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if uri.host().unwrap_or_default().starts_with("fail") {
                return Err(ureq::Error::HostNotFound);
            }
            let mut v = self.empty();
            v.push(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                1000 + n as u16,
            )));
            Ok(v)
        }
    }

    #[test]
    fn lookups_are_reused_within_the_ttl_and_failures_are_not_cached() {
        let cfg = UreqConfig::default();
        let lookup = |r: &CachingResolver<Counting>, u: &str| {
            r.resolve(&u.parse().unwrap(), &cfg, NextTimeout::default())
                .map(|a| a.iter().map(|s| s.port()).collect::<Vec<_>>())
        };
        let r = CachingResolver::new(Counting::default(), Duration::from_secs(3600));
        let a = lookup(&r, "https://cloud.example/cloud.api?x=1").unwrap();
        // Another path and query on the same host: the same answer, no new lookup.
        assert_eq!(lookup(&r, "https://cloud.example/other").unwrap(), a);
        assert_eq!(r.inner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Another host or port is looked up.
        assert_ne!(lookup(&r, "https://cloud.example:8443/").unwrap(), a);
        assert_eq!(r.inner.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A failure is returned, and the next request asks again.
        assert!(lookup(&r, "https://fail.example/").is_err());
        assert!(lookup(&r, "https://fail.example/").is_err());
        assert_eq!(r.inner.0.load(std::sync::atomic::Ordering::SeqCst), 4);
        // Past the TTL, the host is looked up again.
        let r = CachingResolver::new(Counting::default(), Duration::ZERO);
        lookup(&r, "https://cloud.example/").unwrap();
        lookup(&r, "https://cloud.example/").unwrap();
        assert_eq!(r.inner.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn proxy_selection() {
        let env = env_of(&[
            ("https_proxy", "http://p:3128"),
            ("HTTP_PROXY", "http://q:8080"),
            ("no_proxy", "internal.example, .corp"),
        ]);
        let check = |url: &str, expected: Option<&str>| {
            assert_eq!(proxy_for(url, &env).as_deref(), expected, "{url}")
        };
        check(
            "https://openapi.opretail.com/cloud.api",
            Some("http://p:3128"),
        );
        check(
            "http://wdt.wangdian.cn/openapi?sid=x",
            Some("http://q:8080"),
        );
        check("https://internal.example/x", None);
        check("https://a.b.corp/x", None);
        check("http://127.0.0.1:9000/openapi", None);
        check("http://localhost:9000/openapi", None);
        check("http://[::1]:9000/openapi", None);
        let all = env_of(&[("ALL_PROXY", "http://r:1")]);
        assert_eq!(
            proxy_for("https://x.y/", &all).as_deref(),
            Some("http://r:1")
        );
        assert_eq!(proxy_for("https://x.y/", &env_of(&[])), None);
    }

    #[test]
    fn logged_url_has_no_query_or_userinfo() {
        assert_eq!(
            url_without_query("http://u:pw@h:80/openapi?sid=a&key=b&salt=c&sign=d"),
            "http://h:80/openapi"
        );
    }

    #[test]
    fn config_limits_name_the_key() {
        let e = HttpConfig::from_raw("wdt", Some(0), None, None).unwrap_err();
        assert!(e.starts_with("wdt.connect_timeout_secs"), "{e}");
        let e = HttpConfig::from_raw("ovopark", None, Some(100000), None).unwrap_err();
        assert!(e.starts_with("ovopark.timeout_secs"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a cert").unwrap();
        let e = HttpConfig::from_raw("ovopark", None, None, Some(p)).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn retry_after_is_capped() {
        let r = Reply {
            retry_after: Some("999999".into()),
            ..Reply::default()
        };
        assert_eq!(r.retry_after(), Some(Duration::from_secs(3600)));
    }
}
