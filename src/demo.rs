//! `tillrelay demo`: the whole product in one command, on loopback only. Starts both
//! cloud emulators in-process, runs the real agent (this same binary, `run`) in a temp
//! dir with the documented example configuration, and feeds every capture path at
//! once: the sample exports dropped into its folder, receipts printed through the
//! serial tap (a pair of pseudo-terminals standing in for the cables, market lane) and
//! through the network print proxy (kiosk lane turned into `kind = "tcp"`) to a
//! stand-in printer on loopback. It shows the orders flowing, that each stand-in
//! printer received every byte, and ends with what each cloud accepted.
//!
//! Invariants: nothing leaves 127.0.0.1; nothing outside the temp dir is written; the
//! temp dir is removed at the end; the sample files are built into the binary, so the
//! demo needs no checkout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use serialport::SerialPort;

use crate::emulator::{EmuConfig, Emulator, demo_agent_config};
use crate::outbox::Outbox;

const EXAMPLE_CONFIG: &str = include_str!("../config/tillrelay.toml");
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "orders-20261122-1005.json",
        include_bytes!("../examples/samples/orders-20261122-1005.json"),
    ),
    (
        "sales_20261122_1122.csv",
        include_bytes!("../examples/samples/sales_20261122_1122.csv"),
    ),
];

/// Printed through the serial tap (market lane: 3 orders and a reprint).
const MARKET_BIN: &[u8] = include_bytes!("../tests/fixtures/receipts/market.bin");
/// Printed through the network print proxy (kiosk lane: 2 orders).
const KIOSK_BIN: &[u8] = include_bytes!("../tests/fixtures/receipts/kiosk.bin");

/// How long the demo waits for every order to reach both clouds.
const DEADLINE: Duration = Duration::from_secs(25);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // SIGTERM first: the orderly stop is part of what is shown.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let dir = TempDir(std::env::temp_dir().join(format!(
        "tillrelay-demo-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    )));
    let inbox = dir.0.join("inbox");
    std::fs::create_dir_all(&inbox).context("cannot create the demo's temp dir")?;

    let emu = Emulator::start("127.0.0.1:0", EmuConfig::default())
        .context("cannot start the emulators on 127.0.0.1")?;
    writeln!(
        out,
        "emulators: Ovopark {0}/cloud.api, Wangdiantong {0}/openapi",
        emu.base_url()
    )?;

    // The serial lane's cables: the POS writes to one pty, the printer reads another;
    // the agent opens their device ends by path, as /dev/ttyUSB0 in a shop.
    let (mut pos_tty, pos_dev) = serialport::TTYPort::pair().context("cannot open a pty")?;
    let (printer_tty, printer_dev) = serialport::TTYPort::pair().context("cannot open a pty")?;
    let serial_printer = Sink::tty(printer_tty);
    let tcp_printer = Sink::tcp().context("cannot listen on 127.0.0.1")?;
    let proxy_port = free_port().context("no free port on 127.0.0.1")?;
    let lanes = Lanes {
        pos_tty: pos_dev.name().context("the pty has no name")?,
        printer_tty: printer_dev.name().context("the pty has no name")?,
        proxy: proxy_port,
        printer: tcp_printer
            .addr
            .context("the stand-in printer has no address")?,
    };
    writeln!(
        out,
        "printers:  serial tap {} → {} (ptys), print proxy 127.0.0.1:{} → {} (stand-in)",
        lanes.pos_tty, lanes.printer_tty, lanes.proxy, lanes.printer
    )?;

    let config = dir.0.join("tillrelay.toml");
    std::fs::write(
        &config,
        agent_config(&dir.0, &inbox, &emu.base_url(), &lanes),
    )?;
    let log_path = dir.0.join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let agent = AgentProcess(
        Command::new(exe)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the agent")?,
    );
    writeln!(
        out,
        "agent:     tillrelay run --config {}",
        config.display()
    )?;

    for (name, bytes) in SAMPLES {
        // Written beside the folder and renamed in, as a POS should.
        let tmp = dir.0.join(name);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, inbox.join(name))?;
        writeln!(out, "dropped:   {name}")?;
    }

    // The POS of the market lane prints on its serial line…
    let pos_serial = std::thread::spawn(move || -> std::io::Result<()> {
        for chunk in MARKET_BIN.chunks(64) {
            pos_tty.write_all(chunk)?;
        }
        pos_tty.flush()?;
        // keep the line open until the agent has read it all
        std::thread::sleep(Duration::from_secs(1));
        drop(pos_tty);
        Ok(())
    });
    // …and the kiosk prints to its network printer, now the box's proxy port.
    let proxy: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    let pos_net = std::thread::spawn(move || -> std::io::Result<TcpStream> {
        let deadline = Instant::now() + DEADLINE;
        let mut s = loop {
            match TcpStream::connect(proxy) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.write_all(KIOSK_BIN)?;
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(s)
    });
    writeln!(
        out,
        "printing:  {} bytes on the serial line, {} bytes to the network printer",
        MARKET_BIN.len(),
        KIOSK_BIN.len()
    )?;

    let db = dir.0.join("state").join(crate::config::DB_FILE);
    let start = Instant::now();
    let mut last = String::new();
    // the sample exports' 4, market's 3 (its reprint is not an order), kiosk's 2
    let expected = 9;
    loop {
        let line = progress(&db).unwrap_or_else(|| "starting…".into());
        if line != last {
            writeln!(out, "  {:>5.1}s  {line}", start.elapsed().as_secs_f64())?;
            last = line;
        }
        if delivered_everywhere(&db) == Some(expected)
            && serial_printer.len() >= MARKET_BIN.len()
            && tcp_printer.len() >= KIOSK_BIN.len()
        {
            break;
        }
        if start.elapsed() > DEADLINE {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "not every order reached both clouds within {DEADLINE:?}; the agent's log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
    let _pos_net = pos_net.join().ok().and_then(Result::ok);
    let _ = pos_serial.join();

    writeln!(
        out,
        "\ncapture path            sent   printer got  identical"
    )?;
    for (path, sent, got) in [
        ("serial tap (pty)", MARKET_BIN, serial_printer.bytes()),
        ("print proxy (tcp)", KIOSK_BIN, tcp_printer.bytes()),
    ] {
        writeln!(
            out,
            "  {path:<20} {:>6}   {:>11}  {}",
            sent.len(),
            got.len(),
            if got == sent { "yes" } else { "NO" }
        )?;
        if got != sent {
            bail!("the {path} stand-in printer did not get the bytes the POS sent");
        }
    }

    writeln!(out, "\nOvopark accepted (order → video of camera):")?;
    let ovo = fetch(&emu.base_url(), "/_emu/ovopark/orders")?;
    for o in ovo.as_array().into_iter().flatten() {
        let ipos = &o["ipos"];
        writeln!(
            out,
            "  {:<16} {:<10} {:>3} goods  machine {}  video {} → {}",
            o["order_no"].as_str().unwrap_or(""),
            ipos["orderType"].as_str().unwrap_or(""),
            ipos["goods"].as_array().map_or(0, |g| g.len()),
            ipos["machineId"].as_str().unwrap_or(""),
            ipos["startTime"].as_str().unwrap_or(""),
            ipos["endTime"].as_str().unwrap_or("")
        )?;
    }
    writeln!(out, "\nWangdiantong accepted (raw trades):")?;
    let wdt = fetch(&emu.base_url(), "/_emu/wdt/trades")?;
    for t in wdt.as_array().into_iter().flatten() {
        let trade = &t["trade"];
        writeln!(
            out,
            "  {:<16} shop {:<6} {:>2} line(s)  receivable {:>8}  pushes {}",
            t["tid"].as_str().unwrap_or(""),
            t["shop_no"].as_str().unwrap_or(""),
            t["orders"].as_array().map_or(0, |g| g.len()),
            value_text(&trade["receivable"]),
            t["pushes"]
        )?;
    }
    writeln!(
        out,
        "\n{expected} orders captured and delivered to both clouds in {:.1}s.",
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where the demo's printing lanes are wired.
struct Lanes {
    pos_tty: String,
    printer_tty: String,
    proxy: u16,
    printer: SocketAddr,
}

/// The example configuration with demo paths, short settle, the market lane on the
/// ptys, the kiosk lane as a print proxy on loopback, and the emulators' tenant as the
/// destinations.
fn agent_config(dir: &Path, inbox: &Path, base_url: &str, lanes: &Lanes) -> String {
    let mut text = String::new();
    let mut skip_dest = false;
    let mut lane = String::new();
    for line in EXAMPLE_CONFIG.lines() {
        if let Some(name) = line.strip_prefix("name = ") {
            lane = name.trim_matches('"').to_string();
        }
        let serial_key = ["device =", "baud =", "flow_control =", "passthrough ="]
            .iter()
            .any(|k| line.starts_with(k));
        match lane.as_str() {
            "market" if line.starts_with("enabled =") => {
                text.push_str("enabled = true\n");
                continue;
            }
            "market" if line.starts_with("device =") => {
                text.push_str(&format!("device = {:?}\n", lanes.pos_tty));
                continue;
            }
            "market" if line.starts_with("passthrough =") => {
                text.push_str(&format!("passthrough = {:?}\n", lanes.printer_tty));
                continue;
            }
            // a pty has no RTS/CTS lines
            "market" if line.starts_with("flow_control =") => {
                text.push_str("flow_control = \"none\"\n");
                continue;
            }
            "kiosk" if line.starts_with("kind =") => {
                text.push_str(&format!(
                    "kind = \"tcp\"\nlisten = \"127.0.0.1:{}\"\nprinter = \"{}\"\nallow = [\"127.0.0.1\"]\n",
                    lanes.proxy, lanes.printer
                ));
                continue;
            }
            "kiosk" if line.starts_with("enabled =") => {
                text.push_str("enabled = true\n");
                continue;
            }
            "kiosk" if serial_key => continue,
            _ => {}
        }
        // The example's own destination sections (if any) are replaced by the demo's.
        if line.starts_with("[ovopark]") || line.starts_with("[wdt]") {
            skip_dest = true;
        } else if line.starts_with('[') {
            skip_dest = false;
        }
        if skip_dest {
            continue;
        }
        let l = if line.starts_with("state_dir =") {
            format!("state_dir = {:?}", dir.join("state"))
        } else if line.starts_with("path =") {
            format!("path = {inbox:?}")
        } else if line.starts_with("settle =") {
            "settle = \"300ms\"".to_string()
        } else {
            line.to_string()
        };
        text.push_str(&l);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&demo_agent_config(base_url));
    text
}

fn progress(db: &Path) -> Option<String> {
    let ob = Outbox::open_read_only(db).ok()?;
    let st = ob.status(crate::outbox::now()).ok()?;
    let captured: i64 = st.sources.iter().map(|s| s.orders).sum();
    let dests: Vec<String> = st
        .destinations
        .iter()
        .map(|d| {
            let mut s = format!(
                "{} {}/{}",
                d.name,
                d.delivered,
                d.pending + d.delivered + d.rejected
            );
            if d.rejected > 0 {
                s.push_str(&format!(" ({} rejected)", d.rejected));
            }
            s
        })
        .collect();
    Some(format!(
        "captured {captured} order(s); delivered: {}",
        if dests.is_empty() {
            "-".to_string()
        } else {
            dests.join(", ")
        }
    ))
}

/// The number of orders delivered to every destination, once both have rows.
fn delivered_everywhere(db: &Path) -> Option<i64> {
    let ob = Outbox::open_read_only(db).ok()?;
    let st = ob.status(crate::outbox::now()).ok()?;
    if st.destinations.len() < 2 {
        return None;
    }
    st.destinations.iter().map(|d| d.delivered).min()
}

/// A port free on 127.0.0.1 now (the agent binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A stand-in printer: keeps every byte it receives, on a pty or a TCP port.
struct Sink {
    addr: Option<SocketAddr>,
    got: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn spawn(
        addr: Option<SocketAddr>,
        f: impl FnOnce(&Mutex<Vec<u8>>, &AtomicBool) + Send + 'static,
    ) -> Sink {
        let got: Arc<Mutex<Vec<u8>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || f(&g, &st));
        Sink {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads the printer's end of the serial cable.
    fn tty(mut tty: serialport::TTYPort) -> Sink {
        let _ = tty.set_timeout(Duration::from_millis(50));
        Sink::spawn(None, move |got, stop| {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match tty.read(&mut buf) {
                    Ok(n) => got
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
    }

    /// A raw-TCP receipt printer on 127.0.0.1 (port 9100's stand-in).
    fn tcp() -> std::io::Result<Sink> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        Ok(Sink::spawn(Some(addr), move |got, stop| {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }
        }))
    }

    fn bytes(&self) -> Vec<u8> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fetch(base: &str, path: &str) -> anyhow::Result<Value> {
    let body = ureq::get(&format!("{base}{path}"))
        .call()
        .with_context(|| format!("cannot list {path} from the emulator"))?
        .into_body()
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}
