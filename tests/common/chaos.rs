//! Helpers of the reliability tests (crash loop, clock jumps, secrets, TLS): the agent
//! as a killable child whose log goes to a file, the in-process cloud emulators and
//! their control endpoints, configs made from the example config, receipts for a POS
//! on a pseudo-terminal, and a TLS-terminating proxy with a throwaway CA.
//!
//! Included by the tests as `#[path = "common/chaos.rs"] mod chaos;` next to
//! `mod common;`, so `tests/common/mod.rs` stays as it is.
//!
//! Invariants: nothing leaves 127.0.0.1; every child process and thread started here
//! is stopped by a `Drop` (a failing test leaves no agent behind holding ptys or ports).
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use serialport::SerialPort;
use tillrelay::emulator::{EmuConfig, Emulator};

use crate::common::{fixture, tillrelay, wait_until};

// ───────────────────────────── the agent ─────────────────────────────

/// `tillrelay run` as a child. stderr goes to a file (appended), never to a pipe the
/// test might not read: a full pipe would block the agent's logging and stall it.
pub struct Agent {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = tillrelay();
        cmd.args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Agent {
            child: Some(cmd.spawn().unwrap()),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running (false once it exited by itself).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILL, as a power cut or the OOM killer would, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status (the agent must stop within 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("agent already stopped");
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("the agent did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the agent to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of this process.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The last `n` lines of a log, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ───────────────────────────── the CLI ─────────────────────────────

pub fn cli(config: &Path, args: &[&str]) -> Output {
    tillrelay()
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A `--json` command's output; `None` when it failed (no database yet).
pub fn cli_json(config: &Path, args: &[&str]) -> Option<Value> {
    let out = cli(config, args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Every stored order (`orders --json`), or none while there is no database.
pub fn stored_orders(config: &Path) -> Vec<Value> {
    cli_json(config, &["orders", "--json", "--limit", "10000000"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The state of `dest`'s delivery of a stored order (`pending`, `delivered`, …).
pub fn delivery_state<'a>(order: &'a Value, dest: &str) -> Option<&'a str> {
    order["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["dest"] == dest)?["state"]
        .as_str()
}

// ───────────────────────────── the emulators ─────────────────────────────

/// Both clouds' emulators in this process, and their control endpoints over HTTP.
pub struct Emu {
    pub emu: Emulator,
    http: ureq::Agent,
}

impl Emu {
    pub fn start(cfg: EmuConfig) -> Emu {
        Emu {
            emu: Emulator::start("127.0.0.1:0", cfg).unwrap(),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }

    pub fn base(&self) -> String {
        self.emu.base_url()
    }

    pub fn get(&self, path: &str) -> Value {
        let mut r = self
            .http
            .get(format!("{}{path}", self.base()))
            .call()
            .unwrap();
        // A long crash loop's listings pass ureq's default 10 MB cap.
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    fn send(&self, method: &str, path: &str, body: &Value) {
        let url = format!("{}{path}", self.base());
        let r = if method == "DELETE" {
            self.http.delete(url).call().unwrap()
        } else {
            self.http
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes())
                .unwrap()
        };
        assert_eq!(r.status().as_u16(), 200, "{method} {path} {body}");
    }

    /// `POST /_emu/fault`.
    pub fn fault(&self, spec: Value) {
        self.send("POST", "/_emu/fault", &spec);
    }

    pub fn clear_faults(&self) {
        self.send("DELETE", "/_emu/fault", &Value::Null);
    }

    /// Ovopark's accepted orders: `[{order_no, accepted, duplicates, ipos, …}]`.
    pub fn ovopark_orders(&self) -> Vec<Value> {
        self.get("/_emu/ovopark/orders")
            .as_array()
            .cloned()
            .unwrap()
    }

    /// Wangdiantong's raw trades: `[{tid, pushes, updates, trade, orders, …}]`.
    pub fn wdt_trades(&self) -> Vec<Value> {
        self.get("/_emu/wdt/trades").as_array().cloned().unwrap()
    }

    /// API requests each cloud received (faulted ones included).
    pub fn requests(&self) -> (u64, u64) {
        let s = self.get("/_emu/stats");
        (
            s["ovopark"]["requests"].as_u64().unwrap(),
            s["wdt"]["requests"].as_u64().unwrap(),
        )
    }
}

// ───────────────────────────── configs ─────────────────────────────

/// Where a test's box keeps things.
pub struct Layout {
    pub state: PathBuf,
    pub inbox: PathBuf,
    pub config: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        let l = Layout {
            state: dir.join("state"),
            inbox: dir.join("inbox"),
            config: dir.join("tillrelay.toml"),
        };
        fs::create_dir_all(&l.inbox).unwrap();
        l
    }

    pub fn done(&self) -> PathBuf {
        self.inbox.join("done")
    }

    /// Writes `name` beside the folder and renames it in, as a POS should.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let tmp = self.inbox.parent().unwrap().join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.inbox.join(name)).unwrap();
    }

    /// Names of the regular files directly in `dir`.
    pub fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The example config (config/tillrelay.toml) for this box: its folder lane on
/// `inbox` with a short settle time, the market serial lane on the given pty devices
/// (`(pos, printer)`) when asked, and then `tail` (typically the destinations from
/// `demo_agent_config`). What is tested is the shipped config, not a test-only one.
pub fn example_config(l: &Layout, serial: Option<(&str, &str)>, tail: &str) -> String {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tillrelay.toml"))
            .unwrap();
    let mut text = String::new();
    let mut in_market = false;
    for line in example.lines() {
        if line.starts_with("name = ") {
            in_market = line == "name = \"market\"";
        }
        let l = if line.starts_with("state_dir =") {
            format!("state_dir = {:?}", l.state)
        } else if line.starts_with("path =") {
            format!("path = {:?}", l.inbox)
        } else if line.starts_with("settle =") {
            "settle = \"200ms\"".to_string()
        } else if let (true, Some((pos, printer))) = (in_market, serial) {
            if line.starts_with("enabled =") {
                "enabled = true".into()
            } else if line.starts_with("device =") {
                format!("device = {pos:?}")
            } else if line.starts_with("passthrough =") {
                format!("passthrough = {printer:?}")
            } else if line.starts_with("flow_control =") {
                // a pty has no RTS/CTS lines
                "flow_control = \"none\"".into()
            } else {
                line.to_string()
            }
        } else {
            line.to_string()
        };
        text.push_str(&l);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(tail);
    text
}

/// A JSON export file of the folder lane: `n` orders numbered `{prefix}-{i}`, each
/// with two lines, in the shape docs/ and the fixtures use.
pub fn orders_file(prefix: &str, n: usize) -> Vec<u8> {
    let orders: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "order_no": format!("{prefix}-{i:02}"),
                "order_time": "2026-11-22 09:15:02",
                "cashier": "张三",
                "payment": "cash",
                "total": "9.00",
                "paid": "9.00",
                "lines": [
                    {"code": "6901234567892", "name": "可口可乐500ml", "qty": "2", "price": "3.50", "amount": "7.00"},
                    {"code": format!("69{:011}", i), "name": "农夫山泉550ml", "qty": "1", "price": "2.00", "amount": "2.00"}
                ]
            })
        })
        .collect();
    serde_json::to_vec_pretty(&orders).unwrap()
}

// ───────────────────────────── receipts on a pty ─────────────────────────────

/// The first receipt of tests/fixtures/receipts/market.bin (GB18030 text, a raster
/// logo, a barcode, a cash-drawer kick, ending in a GS V cut) with its 13-digit order
/// number replaced everywhere it is printed (the 单号 line and the barcode, whose
/// length prefix stays right because the length does not change).
pub fn market_receipt(order_no: &str) -> Vec<u8> {
    assert_eq!(
        order_no.len(),
        13,
        "the receipt's order number has 13 digits"
    );
    let bin = fs::read(fixture("receipts/market.bin")).unwrap();
    let cut = b"\x1dVB\x03";
    let end = bin.windows(cut.len()).position(|w| w == cut).unwrap() + cut.len();
    replace_all(&bin[..end], b"2026112200013", order_no.as_bytes())
}

/// The order the market template reads from [`market_receipt`] (canonical fields).
pub fn market_order(order_no: &str) -> Value {
    let expected: Vec<Value> =
        serde_json::from_slice(&fs::read(fixture("receipts/market.expected.json")).unwrap())
            .unwrap();
    let mut o = expected[0].clone();
    o["order_no"] = Value::String(order_no.to_string());
    o
}

pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The canonical fields of a stored order (stamp and delivery states removed).
pub fn canonical(o: &Value) -> Value {
    let mut o = o.clone();
    let m = o.as_object_mut().unwrap();
    for k in [
        "source",
        "shop",
        "machine_id",
        "video_start",
        "video_end",
        "deliveries",
    ] {
        m.remove(k);
    }
    o
}

/// A pseudo-terminal: the test holds the wire end (`master`) and keeps the device
/// end open (`slave`), so the pty outlives any agent that opens it by `path`.
pub struct Pty {
    pub master: serialport::TTYPort,
    pub slave: serialport::TTYPort,
    pub path: String,
}

impl Pty {
    pub fn new() -> Pty {
        let (mut master, slave) = serialport::TTYPort::pair().expect("openpty");
        master
            .set_timeout(Duration::from_millis(50))
            .expect("pty timeout");
        let path = slave.name().expect("pty name");
        Pty {
            master,
            slave,
            path,
        }
    }
}

/// Clears the exclusive-open flag (TIOCEXCL) a SIGKILLed agent leaves on a pty: with a
/// real serial device the kernel forgets it at the last close, but here the test's own
/// open device end (`slave`) keeps the tty alive. (Root ignores the flag anyway.)
pub fn clear_exclusive(slave: &serialport::TTYPort) {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCNXCL on a tty fd this process owns; no pointer argument.
    unsafe {
        libc::ioctl(slave.as_raw_fd(), libc::TIOCNXCL);
    }
}

/// Reads everything the agent forwards to the printer end, on its own thread, as a
/// printer would (a printer that is not read stops the tap's forwarding, and with
/// it, by back-pressure, the POS side). Counts the bytes.
pub struct PrinterSink {
    stop: Arc<AtomicBool>,
    pub bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PrinterSink {
    pub fn start(mut master: serialport::TTYPort) -> PrinterSink {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), bytes.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !s.load(Ordering::Relaxed) {
                match master.read(&mut buf) {
                    Ok(n) => {
                        b.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        PrinterSink {
            stop,
            bytes,
            thread: Some(thread),
        }
    }
}

impl Drop for PrinterSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ───────────────────────────── TLS ─────────────────────────────

/// A throwaway certificate authority and a server certificate it issued.
pub struct TestPki {
    /// The CA certificate, PEM (what `ca_file` points at).
    pub ca_pem: String,
    pub server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// `names`: the server certificate's subject alternative names ("127.0.0.1" is an IP
/// SAN). `expired`: a certificate whose validity ended in 2020.
pub fn test_pki(names: &[&str], expired: bool) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tillrelay test CA (throwaway)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "tillrelay test server");
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2019, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![leaf_cert.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// What the TLS proxy saw.
#[derive(Debug, Default, Clone)]
pub struct TlsCounts {
    /// Handshakes that completed (a client that trusted the certificate).
    pub handshakes: u64,
    /// Connections closed during the handshake (the client refused the certificate),
    /// with the alerts/errors rustls reported.
    pub refused: u64,
    pub errors: Vec<String>,
}

/// A TLS-terminating proxy on 127.0.0.1: accepts HTTPS with the given certificate and
/// forwards the plaintext to `upstream` (the emulators' plain HTTP port).
pub struct TlsProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub counts: Arc<Mutex<TlsCounts>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsProxy {
    pub fn start(pki: &TestPki, upstream: SocketAddr) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(TlsCounts::default()));
        let (s, c) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (cfg, s, c) = (config.clone(), s.clone(), c.clone());
                        conns.push(std::thread::spawn(move || {
                            proxy_conn(cfg, stream, upstream, &s, &c)
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                conns.retain(|h| !h.is_finished());
            }
            for h in conns {
                let _ = h.join();
            }
        });
        TlsProxy {
            addr,
            stop,
            counts,
            thread: Some(thread),
        }
    }

    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn counts(&self) -> TlsCounts {
        self.counts.lock().unwrap().clone()
    }

    /// The counts once at least `n` connections were refused (the proxy notices a
    /// client's refusal a moment after the client has moved on), or as they are
    /// after 10 s.
    pub fn counts_after_refusals(&self, n: u64) -> TlsCounts {
        wait_until(Duration::from_secs(10), || self.counts().refused >= n);
        self.counts()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One proxied connection, driven by hand over non-blocking sockets (rustls' own
/// state machine; no async runtime needed in a test).
fn proxy_conn(
    cfg: Arc<rustls::ServerConfig>,
    mut client: TcpStream,
    upstream: SocketAddr,
    stop: &AtomicBool,
    counts: &Mutex<TlsCounts>,
) {
    let Ok(mut tls) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let _ = client.set_nonblocking(true);
    let mut up: Option<TcpStream> = None;
    let mut handshaken = false;
    let mut buf = vec![0u8; 16 * 1024];
    let finish = |handshaken: bool, err: Option<String>| {
        let mut c = counts.lock().unwrap();
        if !handshaken {
            c.refused += 1;
        }
        if let Some(e) = err {
            c.errors.push(e);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut progress = false;
        // network → rustls
        match tls.read_tls(&mut client) {
            Ok(0) => {
                finish(handshaken, None);
                return;
            }
            Ok(_) => {
                progress = true;
                if let Err(e) = tls.process_new_packets() {
                    // Send our alert, then give up on the connection.
                    let _ = tls.write_tls(&mut client);
                    finish(handshaken, Some(e.to_string()));
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                finish(handshaken, Some(e.to_string()));
                return;
            }
        }
        if !handshaken && !tls.is_handshaking() {
            handshaken = true;
            counts.lock().unwrap().handshakes += 1;
            match TcpStream::connect(upstream) {
                Ok(s) => {
                    let _ = s.set_nonblocking(true);
                    up = Some(s);
                }
                Err(_) => return,
            }
        }
        if let Some(u) = up.as_mut() {
            // plaintext from the client → upstream
            match tls.reader().read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    progress = true;
                    if write_all_nb(u, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            // upstream → client
            match u.read(&mut buf) {
                Ok(0) => {
                    tls.send_close_notify();
                    let _ = flush_tls(&mut tls, &mut client);
                    return;
                }
                Ok(n) => {
                    progress = true;
                    if tls.writer().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        if flush_tls(&mut tls, &mut client).is_err() {
            finish(handshaken, None);
            return;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn flush_tls(tls: &mut rustls::ServerConnection, client: &mut TcpStream) -> std::io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(client) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all_nb(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `cond` holds, panicking with `what()` if it does not within `timeout`.
pub fn expect_within(timeout: Duration, cond: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    if !wait_until(timeout, cond) {
        panic!("{}", what());
    }
}
