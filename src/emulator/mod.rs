//! Local stand-ins for both clouds on one HTTP/1.1 port, strict to the specs, with fault
//! modes: for the tests, `tillrelay demo` and integrators who cannot reach the clouds.
//!
//! Routes:
//! - `POST /cloud.api`: Ovopark (`_mt` = `open.ovopark.storehouse.sendOrder` or
//!   `open.gateway.getBusinessOrg`), see [`ovopark`].
//! - `POST /openapi?…`: Wangdiantong (`sales.RawTrade.pushSelf2`, `pushSelf`,
//!   `searchSelfOrder`, `setting.Shop.queryShop`, `system.Core.now`), see [`wdt`].
//!   queryShop lists the tenant's `shop_nos` (own platform, 127) and its `[[wdt.shop]]`
//!   records (another platform's shop refuses pushes with 店铺平台不是自有平台).
//! - `GET /_emu/ovopark/orders`, `GET /_emu/wdt/trades`: what was accepted, with a
//!   per-key count (`accepted`, `duplicates` / `pushes`, `updates`) so tests can assert
//!   exactly-once.
//! - `GET /_emu/stats`: requests and answers per cloud.
//! - `POST /_emu/fault` `{"target": "ovopark"|"wdt"|"both", "mode": "http500"|"hang"|
//!   "reset"|"garbage"|"code"|"rate_limit", "count": N, "code": "16", "message": "…",
//!   "hang_secs": S}`: the next N API requests of the target fail so (before they are
//!   processed: a faulted request never changes the store). `DELETE /_emu/fault` clears.
//! - `POST /_emu/wdt/refuse` `{"tid": "K0150", "message": "商家编码和货品编号不匹配",
//!   "whole_call": true, "names_tid": true}`: Wangdiantong refuses every push holding
//!   that trade, failing the whole call with status 100 (or, `whole_call: false`, as an
//!   `error_list` entry), the message ending `,原始单号为：K0150` when `names_tid`.
//!   `POST /_emu/wdt/held`: a push of a trade already held fails the whole call
//!   (`订单已递交,不能修改,原始单号为：…`), as after a submitted trade.
//!   `DELETE /_emu/wdt/refuse` clears both. `sales.RawTrade.searchSelfOrder` answers
//!   what is held (by tid and shop, and by *modification* time as its page defines
//!   it: when the trade was pushed, at most 30 days apart). With `"whole_call":
//!   false`, `"entry_key"` chooses how the `error_list` entry names the trade (`no`
//!   as the page has it, `oid`: a line's id, `""`: no id). `POST /_emu/wdt/drop`
//!   `{"tid"}`: the ERP silently stores nothing of that trade, names it nowhere, and
//!   counts it in neither `new_count` nor `chg_count` (cleared with the refusals).
//! - `POST /_emu/deny` `{"target": "ovopark"|"wdt"|"both", "method": "…"}`: the key
//!   may not call that method (a key without its permission): Wangdiantong answers
//!   status 100 `权限不足`, Ovopark code 9 (the seed names no permission code; 9 is its
//!   answer for a method not registered for the key). `DELETE /_emu/deny` clears.
//! - `POST /_emu/ovopark/reply` `{"numeric_code": bool, "systime": "millis_text"|
//!   "millis"|"datetime", "date_header": bool, "front_date": bool}`: the shape of Ovopark's `stat` (code
//!   as a number; systime as epoch ms text (default), an epoch ms number, or
//!   `yyyy-MM-dd HH:mm:ss` in the tenant's zone), whether answers carry `Date`, and
//!   whether that `Date` is a front server's right clock rather than the gateway's.
//! - `POST /_emu/clock` `{"target": …, "skew_secs": S}`: the cloud's clock runs S
//!   seconds off (its `Date`, `stat.systime` and timestamp windows).
//! - `POST /_emu/latency` `{"target": …, "ms": N}`: each API request of the target is
//!   answered N ms after it was handled (a WAN round trip; requests on other
//!   connections go on meanwhile). `GET /_emu/stats` reports `in_flight`, the API
//!   requests of a cloud between read and answer now, and `max_in_flight`, the most
//!   seen at once.
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

mod control;
mod http;
pub mod ovopark;
mod spec;

use control::*;
pub use control::{FaultMode, FaultSpec};
pub use http::serve;
use http::*;
pub mod wdt;

pub(crate) const MAX_HEAD: usize = 64 * 1024;
pub(crate) const MAX_BODY: usize = 8 * 1024 * 1024;

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
    pub(crate) fn hits(self, cloud: Cloud) -> bool {
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

/// Everything the emulators hold.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) ovo: ovopark::OvoState,
    pub(crate) wdt: wdt::WdtState,
    pub(crate) faults: [Option<Fault>; 2],
    pub(crate) skew: [i64; 2],
    pub(crate) requests: [u64; 2],
    pub(crate) answers: [BTreeMap<String, u64>; 2],
    pub(crate) latency: [Duration; 2],
    pub(crate) in_flight: [u64; 2],
    pub(crate) max_in_flight: [u64; 2],
}

impl State {
    pub(crate) fn now(&self, cloud: Cloud) -> i64 {
        crate::clock::unix_now() + self.skew[cloud as usize]
    }

    pub(crate) fn take_fault(&mut self, cloud: Cloud) -> Option<Fault> {
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

pub(crate) struct Shared {
    pub(crate) cfg: EmuConfig,
    pub(crate) state: Mutex<State>,
}

/// An emulator running on its own thread (for `demo` and in-process tests). Dropping
/// it stops the server.
pub struct Emulator {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
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
    pub(crate) fn form_decoding() {
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

    /// docs/emulator.toml parses and matches the defaults.
    #[test]
    pub(crate) fn documented_emulator_config_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/emulator.toml");
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

    /// Ovopark's `stat` in each form the switch offers, from one answer.
    #[test]
    pub(crate) fn ovopark_stat_forms() {
        use ovopark::{ReplyForm, SystimeForm, answer, shaped};
        // 2019-11-28 14:16:20 at UTC+8.
        let now = 1_574_921_780;
        let a = || answer("16", "TIMESTAMP_OVERTIME", "", now, None);
        let plain = shaped(a(), &ReplyForm::default(), 8 * 3600);
        assert_eq!(plain["stat"]["code"], "16");
        assert_eq!(plain["stat"]["systime"], "1574921780000");
        let form = |systime| ReplyForm {
            numeric_code: true,
            systime,
            date_header: false,
            front_date: false,
        };
        let n = shaped(a(), &form(SystimeForm::Millis), 8 * 3600);
        assert_eq!(n["stat"]["code"], 16);
        assert_eq!(n["stat"]["systime"], 1_574_921_780_000i64);
        let d = shaped(a(), &form(SystimeForm::Datetime), 8 * 3600);
        assert_eq!(d["stat"]["systime"], "2019-11-28 14:16:20");
    }

    #[test]
    pub(crate) fn faults_count_down() {
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
