//! Local stand-ins for both clouds on one HTTP/1.1 port, strict to the specs, with fault
//! modes: for the tests, `tillrelay demo` and integrators who cannot reach the clouds.
//!
//! Routes:
//! - `POST /cloud.api`: Ovopark (`_mt` = `open.ovopark.storehouse.sendOrder` or
//!   `open.gateway.getBusinessOrg`), see [`ovopark`].
//! - `POST /openapi?…`: Wangdiantong (`sales.RawTrade.pushSelf2`, `pushSelf`,
//!   `system.Core.now`), see [`wdt`].
//! - `GET /_emu/ovopark/orders`, `GET /_emu/wdt/trades`: what was accepted, with a
//!   per-key count (`accepted`, `duplicates` / `pushes`, `updates`) so tests can assert
//!   exactly-once.
//! - `GET /_emu/stats`: requests and answers per cloud.
//! - `POST /_emu/fault` `{"target": "ovopark"|"wdt"|"both", "mode": "http500"|"hang"|
//!   "reset"|"garbage"|"code"|"rate_limit", "count": N, "code": "16", "message": "…",
//!   "hang_secs": S}`: the next N API requests of the target fail so (before they are
//!   processed: a faulted request never changes the store). `DELETE /_emu/fault` clears.
//! - `POST /_emu/clock` `{"target": …, "skew_secs": S}`: the cloud's clock runs S
//!   seconds off (its `Date`, `stat.systime` and timestamp windows).
//! - `POST /_emu/latency` `{"target": …, "ms": N}`: each API request of the target is
//!   answered N ms after it was handled (a WAN round trip; requests on other
//!   connections go on meanwhile). `GET /_emu/stats` reports `max_in_flight`, the most
//!   API requests of a cloud seen between read and answer at once.
//!
//! Invariants: state lives in memory only; the server binds where it is told (tests and
//! `demo` use loopback); a request is handled whole under one lock, so counts are exact.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::upload::format_http_date;

pub mod ovopark;
pub mod wdt;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The emulators' tenants and credentials. `Default` is the demo tenant, matching
/// [`demo_agent_config`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmuConfig {
    pub ovopark: ovopark::OvoTenant,
    pub wdt: wdt::WdtTenant,
}

impl EmuConfig {
    /// Reads an emulator config TOML; every key is optional (defaults: the demo tenant).
    pub fn load(path: &Path) -> Result<EmuConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The `[ovopark]`/`[wdt]` agent configuration that matches the default emulator
/// tenant at `base` (`http://127.0.0.1:PORT`): for `demo` and the tests.
pub fn demo_agent_config(base: &str) -> String {
    let c = EmuConfig::default();
    let e = &c.ovopark.enterprises[0];
    format!(
        r#"[ovopark]
url = "{base}/cloud.api"
aid = "{aid}"
akey = "{akey}"
secret = "{osecret}"
org_id = "{org}"
enterprise_id = "{ent}"
shop_id = "{shop}"

[wdt]
url = "{base}/openapi"
sid = "{sid}"
key = "{key}"
secret = "{wsecret}:{salt}"
shop_no = "{shop_no}"
receiver_name = "演示门店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"
"#,
        aid = c.ovopark.aid,
        akey = c.ovopark.akey,
        osecret = c.ovopark.secret,
        org = e.org_id,
        ent = e.enterprise_id,
        shop = e.shop_ids.first().map(String::as_str).unwrap_or("D001"),
        sid = c.wdt.sid,
        key = c.wdt.key,
        wsecret = c.wdt.secret,
        salt = c.wdt.salt,
        shop_no = c
            .wdt
            .shop_nos
            .first()
            .map(String::as_str)
            .unwrap_or("SHOP1"),
    )
}

/// Which cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Ovopark,
    Wdt,
    Both,
}

impl Target {
    fn hits(self, cloud: Cloud) -> bool {
        matches!(
            (self, cloud),
            (Target::Both, _) | (Target::Ovopark, Cloud::Ovopark) | (Target::Wdt, Cloud::Wdt)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cloud {
    Ovopark = 0,
    Wdt = 1,
}

/// A fault mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// HTTP 500.
    Http500,
    /// Read the request, answer nothing until the client gives up (or `hang_secs`).
    Hang,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// The cloud's own error answer with `code` (Ovopark `stat.code`, WDT `status`).
    Code,
    /// Rate limited: WDT status 100 超过每分钟最大调用频率限制; Ovopark HTTP 429.
    RateLimit,
}

/// `POST /_emu/fault` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub target: Target,
    pub mode: FaultMode,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub hang_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone)]
pub(crate) struct Fault {
    mode: FaultMode,
    remaining: u32,
    code: String,
    message: String,
    hang: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockSpec {
    target: Target,
    skew_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencySpec {
    target: Target,
    ms: u64,
}

/// Everything the emulators hold.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) ovo: ovopark::OvoState,
    pub(crate) wdt: wdt::WdtState,
    faults: [Option<Fault>; 2],
    skew: [i64; 2],
    requests: [u64; 2],
    answers: [BTreeMap<String, u64>; 2],
    latency: [Duration; 2],
    in_flight: [u64; 2],
    max_in_flight: [u64; 2],
}

impl State {
    pub(crate) fn now(&self, cloud: Cloud) -> i64 {
        crate::upload::local_unix() + self.skew[cloud as usize]
    }

    fn take_fault(&mut self, cloud: Cloud) -> Option<Fault> {
        let slot = &mut self.faults[cloud as usize];
        let f = slot.as_mut()?;
        if f.remaining == 0 {
            *slot = None;
            return None;
        }
        f.remaining -= 1;
        let out = f.clone();
        if f.remaining == 0 {
            *slot = None;
        }
        Some(out)
    }

    pub(crate) fn count_answer(&mut self, cloud: Cloud, code: &str) {
        *self.answers[cloud as usize]
            .entry(code.to_string())
            .or_default() += 1;
    }
}

struct Shared {
    cfg: EmuConfig,
    state: Mutex<State>,
}

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
pub(crate) enum Action {
    Respond(Response),
    Hang(Duration),
    Reset,
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub(crate) fn json(v: &serde_json::Value) -> Response {
        Response {
            status: 200,
            content_type: "application/json;charset=utf-8",
            body: v.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain;charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Decodes `application/x-www-form-urlencoded` (or a query string) into pairs.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn dispatch(shared: &Shared, req: &Request) -> Action {
    let mut st = match shared.state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let Some(cloud) = api_cloud(req) else {
        return Action::Respond(control(&mut st, req));
    };
    st.requests[cloud as usize] += 1;
    let now = st.now(cloud);
    let date = format_http_date(now);
    if let Some(f) = st.take_fault(cloud) {
        st.count_answer(cloud, &format!("fault:{:?}", f.mode).to_lowercase());
        let mut resp = match f.mode {
            FaultMode::Hang => return Action::Hang(f.hang),
            FaultMode::Reset => return Action::Reset,
            FaultMode::Http500 => Response::text(500, "Internal Server Error"),
            FaultMode::Garbage => Response {
                status: 200,
                content_type: "text/html",
                body: b"<html><body>502 gateway says hello \x00\xff</body></html>".to_vec(),
                headers: Vec::new(),
            },
            FaultMode::Code => match cloud {
                Cloud::Ovopark => {
                    Response::json(&ovopark::answer(&f.code, "FAULT", &f.message, now, None))
                }
                Cloud::Wdt => Response::json(&wdt::answer_error(&f.code, &f.message)),
            },
            FaultMode::RateLimit => match cloud {
                Cloud::Ovopark => {
                    let mut r = Response::text(429, "Too Many Requests");
                    r.headers.push(("Retry-After", "1".into()));
                    r
                }
                Cloud::Wdt => Response::json(&wdt::answer_error("100", wdt::RATE_LIMIT_MESSAGE)),
            },
        };
        resp.headers.push(("Date", date));
        return Action::Respond(resp);
    }
    let mut resp = match cloud {
        Cloud::Ovopark => ovopark::handle(&shared.cfg.ovopark, &mut st, req, now),
        Cloud::Wdt => wdt::handle(&shared.cfg.wdt, &mut st, req, now),
    };
    resp.headers.push(("Date", date));
    Action::Respond(resp)
}

/// The `/_emu/…` control and listing endpoints.
fn control(st: &mut State, req: &Request) -> Response {
    let bad = |m: String| Response::text(400, &m);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_emu/health") => Response::text(200, "ok"),
        ("GET", "/_emu/ovopark/orders") => Response::json(&st.ovo.listing()),
        ("GET", "/_emu/wdt/trades") => Response::json(&st.wdt.listing()),
        ("GET", "/_emu/stats") => {
            let side = |c: Cloud| {
                serde_json::json!({
                    "requests": st.requests[c as usize],
                    "answers": st.answers[c as usize],
                    "skew_secs": st.skew[c as usize],
                    "latency_ms": st.latency[c as usize].as_millis() as u64,
                    "max_in_flight": st.max_in_flight[c as usize],
                    "fault": st.faults[c as usize].as_ref().map(|f| serde_json::json!({
                        "mode": format!("{:?}", f.mode).to_lowercase(), "remaining": f.remaining})),
                })
            };
            Response::json(
                &serde_json::json!({"ovopark": side(Cloud::Ovopark), "wdt": side(Cloud::Wdt)}),
            )
        }
        ("POST", "/_emu/fault") => match serde_json::from_slice::<FaultSpec>(&req.body) {
            Ok(spec) => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        let code = match &spec.code {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => match cloud {
                                Cloud::Ovopark => "-500".into(),
                                Cloud::Wdt => "99".into(),
                            },
                        };
                        st.faults[cloud as usize] = Some(Fault {
                            mode: spec.mode,
                            remaining: spec.count,
                            code,
                            message: spec
                                .message
                                .clone()
                                .unwrap_or_else(|| "injected fault".into()),
                            hang: Duration::from_secs(spec.hang_secs.unwrap_or(3600)),
                        });
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Err(e) => bad(format!("fault: {e}")),
        },
        ("DELETE", "/_emu/fault") => {
            st.faults = [None, None];
            Response::json(&serde_json::json!({"ok": true}))
        }
        ("POST", "/_emu/clock") => match serde_json::from_slice::<ClockSpec>(&req.body) {
            Ok(spec) => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        st.skew[cloud as usize] = spec.skew_secs;
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Err(e) => bad(format!("clock: {e}")),
        },
        ("POST", "/_emu/latency") => match serde_json::from_slice::<LatencySpec>(&req.body) {
            Ok(spec) if spec.ms <= 60_000 => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        st.latency[cloud as usize] = Duration::from_millis(spec.ms);
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Ok(_) => bad("latency: ms must be at most 60000".into()),
            Err(e) => bad(format!("latency: {e}")),
        },
        (_, p) if p.starts_with("/_emu/") || p == "/cloud.api" || p == "/openapi" => {
            Response::text(405, "method not allowed")
        }
        _ => Response::text(404, "not found"),
    }
}

/// Reads one request from the connection; `Ok(None)` when the peer closed cleanly.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, u16> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("").to_string();
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let (path, query) = (path.to_string(), query.to_string());
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let find = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.trim().to_string())
                };
                if find("transfer-encoding").is_some() {
                    return Err(411);
                }
                let len: usize = match find("content-length") {
                    Some(v) => v.parse().map_err(|_| 400u16)?,
                    None => 0,
                };
                if len > MAX_BODY {
                    return Err(413);
                }
                buf.drain(..head_len);
                while buf.len() < len {
                    let mut chunk = [0u8; 8192];
                    let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
                    if n == 0 {
                        return Err(400);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: Vec<u8> = buf.drain(..len).collect();
                return Ok(Some(Request {
                    method,
                    path,
                    query,
                    headers,
                    body,
                }));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(413);
                }
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
                if n == 0 {
                    return if buf.is_empty() { Ok(None) } else { Err(400) };
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => return Err(400),
        }
    }
}

async fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.flush().await
}

/// Which cloud an API request is for (`None`: a control route or nothing).
fn api_cloud(req: &Request) -> Option<Cloud> {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/cloud.api") => Some(Cloud::Ovopark),
        ("POST", "/openapi") => Some(Cloud::Wdt),
        _ => None,
    }
}

/// Counts an API request in flight from its reading to its answer (or to the
/// connection's end), for `max_in_flight`.
struct InFlight {
    shared: Arc<Shared>,
    cloud: Cloud,
}

impl InFlight {
    /// Starts counting; returns the guard and the cloud's configured latency.
    fn start(shared: &Arc<Shared>, cloud: Cloud) -> (InFlight, Duration) {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = cloud as usize;
        st.in_flight[c] += 1;
        st.max_in_flight[c] = st.max_in_flight[c].max(st.in_flight[c]);
        let latency = st.latency[c];
        let guard = InFlight {
            shared: shared.clone(),
            cloud,
        };
        (guard, latency)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_flight[self.cloud as usize] -= 1;
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ =
                    write_response(&mut stream, &Response::text(status, "bad request"), true).await;
                return;
            }
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let in_flight = api_cloud(&req).map(|c| InFlight::start(&shared, c));
        let action = dispatch(&shared, &req);
        if let Some((_, latency)) = &in_flight {
            if !latency.is_zero() {
                tokio::time::sleep(*latency).await;
            }
        }
        match action {
            Action::Respond(resp) => {
                drop(in_flight);
                if write_response(&mut stream, &resp, close).await.is_err() || close {
                    return;
                }
            }
            Action::Hang(d) => {
                // Hold the connection until the client gives up or the time passes.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(d, async {
                    loop {
                        match stream.read(&mut sink).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                return;
            }
            Action::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
        }
    }
}

/// Serves both emulators on `listener` until `shutdown` completes; open connections
/// are dropped then.
pub async fn serve(listener: TcpListener, cfg: EmuConfig, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared {
        cfg,
        state: Mutex::new(State::default()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(connection(stream, shared.clone()));
                }
                Err(e) => {
                    log::warn!("emulator: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}

/// An emulator running on its own thread (for `demo` and in-process tests). Dropping
/// it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves on a background thread.
    pub fn start(addr: &str, cfg: EmuConfig) -> std::io::Result<Emulator> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("emulator".into())
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => {
                            serve(listener, cfg, async {
                                let _ = rx.await;
                            })
                            .await
                        }
                        Err(e) => log::error!("emulator: {e}"),
                    }
                })
            })?;
        Ok(Emulator {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `tillrelay emulate`: serves on `listen` until Ctrl-C / SIGTERM, with the tenant from
/// `config` (default: the demo tenant). Prints where each cloud is and, with no config,
/// the matching agent configuration.
pub fn run_cli(listen: &str, config: Option<&Path>) -> anyhow::Result<()> {
    let cfg = match config {
        Some(p) => EmuConfig::load(p).map_err(anyhow::Error::msg)?,
        None => EmuConfig::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        println!("Ovopark emulator:      POST http://{addr}/cloud.api");
        println!("Wangdiantong emulator: POST http://{addr}/openapi");
        println!("accepted orders:       GET  http://{addr}/_emu/ovopark/orders, /_emu/wdt/trades");
        if config.is_none() {
            println!(
                "\nagent configuration for the default tenant:\n\n{}",
                demo_agent_config(&format!("http://{addr}"))
            );
        }
        let shutdown = async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        };
        serve(listener, cfg, shutdown).await;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let check = |s: &str, expected: &[(&str, &str)]| {
            let got = parse_form(s);
            let exp: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, exp, "{s}");
        };
        check("a=1&b=%E5%8F%AF+x%20y", &[("a", "1"), ("b", "可 x y")]);
        check("a=&b", &[("a", ""), ("b", "")]);
        check("a=%zz%4", &[("a", "%zz%4")]);
    }

    /// The emulator section of docs/config-upload.toml parses and matches the defaults.
    #[test]
    fn documented_emulator_config_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config-upload.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = text.split("# ──").last().unwrap();
        let key = regex::Regex::new(r"^# (\[|[a-z_]+ = )").unwrap();
        let toml_text: String = section
            .lines()
            .filter(|l| key.is_match(l))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let parsed: EmuConfig = toml::from_str(&toml_text).unwrap();
        let mut expected = EmuConfig::default();
        expected.ovopark.enterprises.truncate(1);
        assert_eq!(parsed, expected);
    }

    #[test]
    fn faults_count_down() {
        let mut st = State::default();
        st.faults[0] = Some(Fault {
            mode: FaultMode::Http500,
            remaining: 2,
            code: String::new(),
            message: String::new(),
            hang: Duration::ZERO,
        });
        assert!(st.take_fault(Cloud::Ovopark).is_some());
        assert!(st.take_fault(Cloud::Wdt).is_none());
        assert!(st.take_fault(Cloud::Ovopark).is_some());
        assert!(st.take_fault(Cloud::Ovopark).is_none());
    }
}
