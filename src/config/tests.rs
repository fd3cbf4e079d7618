//! Tests of the whole config: files in, `Config` or every problem out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::settings::parse_size;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/tillrelay/test.toml"))
}

const MINIMAL: &str = r#"
    [[source]]
    name = "lane1"
    kind = "folder"
    path = "export"
    shop = "D001"
    machine_id = "NVR01-CH03"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.agent.state_dir, PathBuf::from("/var/lib/tillrelay"));
    assert_eq!(c.agent.timezone.local_minus_utc(), 8 * 3600);
    assert_eq!(c.outbox.synchronous, Synchronous::Full);
    let s = &c.sources[0];
    assert_eq!(s.identity.video.pre_roll, Duration::from_secs(60));
    let SourceKind::Folder(f) = &s.kind else {
        panic!("a folder source")
    };
    // relative paths resolve against the config file's folder
    assert_eq!(f.path, PathBuf::from("/etc/tillrelay/export"));
    assert_eq!(f.done_dir, PathBuf::from("/etc/tillrelay/export/done"));
    assert!(c.destinations.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
        [agent]
        timezone = "Asia/Nowhere"
        [outbox]
        synchronous = "sometimes"
        [[source]]
        name = "lane 1"
        kind = "folder"
        [[source]]
        name = "lane2"
        kind = "folder"
        path = "/x"
        shop = "D1"
        machine_id = "M"
        settle = "soon"
        [source.csv]
        encoding = "latin9"
        [source.csv.columns]
        colour = "颜色"
    "#;
    let e = load(text).unwrap_err().to_string();
    for needle in [
        "/etc/tillrelay/test.toml",
        "agent.timezone",
        "outbox.synchronous",
        "source[0].name",
        "source[lane2].settle",
        "source[lane2].csv.encoding",
        "source[lane2].csv.columns.colour",
    ] {
        assert!(e.contains(needle), "missing {needle} in:\n{e}");
    }
}

#[test]
fn unknown_keys_are_errors_with_their_name() {
    let e = load("[agent]\nstate_dri = \"/tmp\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("state_dri"), "{e}");
}

#[test]
fn duplicate_source_names_are_refused() {
    let e = load(&format!("{MINIMAL}\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("used by another source"), "{e}");
}

#[test]
fn two_enabled_sources_on_one_folder_are_refused_naming_both() {
    let second = |path: &str, enabled: bool| {
        format!(
            "{MINIMAL}\n[[source]]\nname = \"lane2\"\nkind = \"folder\"\npath = {path:?}\nenabled = {enabled}\nshop = \"D001\"\nmachine_id = \"NVR01-CH04\"\n"
        )
    };
    for same in ["export", "./export/", "/etc/tillrelay/export"] {
        let e = load(&second(same, true)).unwrap_err().to_string();
        assert!(
            e.contains("source[lane2].path") && e.contains("also watched by source \"lane1\""),
            "{same}: {e}"
        );
    }
    load(&second("export2", true)).unwrap();
    // a disabled source does not watch anything
    load(&second("export", false)).unwrap();
    // a symlink to the same folder is the same folder
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    let text = format!(
        "{}\n[[source]]\nname = \"lane2\"\nkind = \"folder\"\npath = \"link\"\nshop = \"D001\"\nmachine_id = \"NVR01-CH04\"\n",
        MINIMAL.replace("\"export\"", "\"real\"")
    );
    let e = Config::from_toml(&text, &dir.path().join("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("also watched by source"), "{e}");
}

#[test]
fn absurd_video_durations_are_refused_with_their_key() {
    // Unbounded, these overflowed the date arithmetic of stamping (a panic).
    for (extra, key) in [
        ("[video]\npre_roll = \"400000000000d\"", "video.pre_roll"),
        ("[video]\npost_roll = \"25h\"", "video.post_roll"),
        (
            "[video]\nclock_offset = \"-300000000000d\"",
            "video.clock_offset",
        ),
    ] {
        let e = load(&format!("{extra}\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{extra}: {e}");
    }
    let e = load(&format!("{MINIMAL}[source.video]\nclock_offset = \"2d\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("source[lane1].video.clock_offset"), "{e}");
    let c = load(&format!(
        "[video]\npre_roll = \"24h\"\nclock_offset = \"-24h\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.sources[0].identity.video.clock_offset_secs, -86400);
}

#[test]
fn sizes_offsets_and_negative_clock_offsets_parse() {
    assert_eq!(parse_size("16MB").unwrap(), 16 << 20);
    assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
    assert!(parse_size("lots").is_err());
    assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -19800);
    assert!(parse_offset("+25:00").is_err());
    let c = load(&format!("[video]\nclock_offset = \"-1m 5s\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.sources[0].identity.video.clock_offset_secs, -65);
}

#[test]
fn destinations_follow_sections_and_enabled() {
    let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
    let c = load(&format!("{MINIMAL}\n{dests}")).unwrap();
    assert_eq!(c.destinations, ["ovopark", "wdt"]);
    let off = dests.replace("[wdt]", "[wdt]\nenabled = false");
    let c = load(&format!("{MINIMAL}\n{off}")).unwrap();
    assert_eq!(c.destinations, ["ovopark"]);
    // a disabled destination is not validated: it may be half filled in
    let c = load(&format!("{MINIMAL}\n[wdt]\nenabled = false\nsid = 1\n")).unwrap();
    assert!(c.destinations.is_empty());
    // … and printed as disabled, without its other keys.
    let t = c.to_toml().unwrap();
    assert!(t.contains("[wdt]\nenabled = false\n"), "{t}");
    assert!(!t.contains("sid") && !t.contains("[ovopark]"), "{t}");
    assert_eq!(effective(&reload(&c, &[])), effective(&c));
}

/// A source's identity is resolved over the destination's defaults when the
/// config is read: an enabled source that has no WDT shop fails the config with
/// its key (it used to pause the worker at the first push); a disabled one does not.
#[test]
fn an_enabled_source_without_a_wdt_shop_fails_the_config() {
    let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
    let no_shop: String = dests
        .lines()
        .filter(|l| !l.starts_with("shop_no"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(no_shop, dests, "the demo config sets wdt.shop_no");
    let e = load(&format!("{MINIMAL}\n{no_shop}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("source[lane1].wdt.shop_no: no wdt shop_no"),
        "{e}"
    );
    // Set for the source alone, it resolves.
    let with = MINIMAL.to_string() + "[source.wdt]\nshop_no = \"SHOP9\"\n";
    let c = load(&format!("{with}\n{no_shop}")).unwrap();
    let route = c.routes.wdt["lane1"].as_ref().unwrap();
    assert_eq!(route.shop_no, "SHOP9");
    // A disabled source's leftover orders wait instead (the worker is told why).
    let off = MINIMAL.replace("kind = \"folder\"", "kind = \"folder\"\nenabled = false");
    let c = load(&format!("{off}\n{no_shop}")).unwrap();
    assert!(
        c.routes.wdt["lane1"]
            .as_ref()
            .unwrap_err()
            .contains("no wdt shop_no")
    );
}

#[test]
fn secrets_never_appear_in_config_errors() {
    let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
    for bad in [
        dests.replace(
            "secret = \"demo-ovopark-secret\"",
            "secret = \"demo-ovopark-secret",
        ),
        dests.replace("secret = \"demo-ovopark-secret\"", "secret = 4242424242"),
    ] {
        let e = load(&format!("{MINIMAL}\n{bad}")).unwrap_err().to_string();
        assert!(!e.contains("demo-ovopark-secret"), "{e}");
        assert!(!e.contains("4242424242"), "{e}");
        assert!(e.contains("secret"), "{e}");
    }
}

#[test]
fn lanes_sharing_a_tenant_without_prefixes_are_warned_about() {
    let dests = crate::emulator::demo_agent_config("http://127.0.0.1:1");
    // (each lane its own folder: two sources on one folder are refused)
    let lane2 = MINIMAL
        .replace("lane1", "lane2")
        .replace("\"export\"", "\"export2\"");
    let two = format!("{MINIMAL}\n{lane2}\n{dests}");
    let c = load(&two).unwrap();
    assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
    let fixed = two.replacen(
        "machine_id = \"NVR01-CH03\"",
        "machine_id = \"NVR01-CH03\"\n[source.ovopark]\norder_no_prefix = \"L1-\"\n[source.wdt]\ntid_prefix = \"L1-\"",
        1,
    );
    assert!(load(&fixed).unwrap().warnings().is_empty());
}

#[test]
fn a_disabled_serial_source_needs_no_device() {
    let serial = |enabled: bool| {
        format!(
            "[[source]]\nname = \"till\"\nkind = \"serial\"\nenabled = {enabled}\nshop = \"D001\"\n\
             machine_id = \"NVR01-CH03\"\n[source.template.fields]\norder_no = '^No (\\d+)$'\n\
             order_time = '^At (.+)$'\n[source.template.items]\n\
             lines = ['^(?P<code>\\d+) (?P<amount>[\\d.]+)$']\n"
        )
    };
    let c = load(&serial(false)).unwrap_or_else(|e| panic!("{e}"));
    let SourceKind::Serial(t) = &c.sources[0].kind else {
        panic!("a serial source")
    };
    assert!(t.serial.pos.device.as_os_str().is_empty());
    let e = load(&serial(true)).unwrap_err().to_string();
    assert!(e.contains("source[till]: device: is required"), "{e}");
}

// ---------------------------------------------------------------------------
// The effective configuration printed back (`check-config`).
// ---------------------------------------------------------------------------

/// Every kind of source (folder json/csv/receipt, serial, tcp, listen, device),
/// keys away from their defaults, per-source video and cloud overrides, and both
/// destinations (Ovopark's secret inline, Wangdiantong's from a file).
fn every_kind(secret_file: &Path) -> String {
    format!(
        r#"
[agent]
state_dir = "state"
timezone = "-05:30"
log_level = "debug"
box_id = "shop12-lane1"
[outbox]
synchronous = "normal"
max_size = "1.5GB"
retention = "36h"
raw_retention = "90m"
[metrics]
listen = ""
push_url = "https://u:hunter2@gw.example:9091/"
push_interval = "1500ms"
[video]
pre_roll = "45s"
clock_offset = "-2m"

[ovopark]
url = "http://127.0.0.1:1/cloud.api"
akey = "AK1"
secret = "ovo-secret-value"
sign_method = "sha1"
timestamp_utc_offset = "-03:30"
org_id = 11
enterprise_id = "22"
dep_id = 33
order_no_prefix = "B1-"
order_type_void = "撤销"
connect_timeout_secs = 3
concurrency = 2
give_up_after = "2h 30m"

[wdt]
url = "http://127.0.0.1:1/openapi"
sid = "seller"
key = "appkey"
secret_file = {secret_file:?}
method = "pushSelf"
batch_size = 20
shop_no = "SHOP1"
receiver_name = "一号店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"
is_auto_wms = true
warehouse_no = "W1"
[wdt.status.refund]
trade_status = 90
[wdt.pay_method]
unknown = 1

[[source]]
name = "json"
timezone = "+09:00"
kind = "folder"
path = "in/json"
format = "json"
shop = "D1"
machine_id = "M1"
settle = "750ms"
poll = true
poll_interval = "1m 5s"
max_file_size = "1000"
after = "delete"
[source.video]
post_roll = "2m"
[source.ovopark]
shop_id = "S9"
order_no_prefix = "J-"
[source.wdt]
tid_prefix = "J-"

[[source]]
name = "csv"
kind = "folder"
path = "/srv/csv"
format = "csv"
shop = "D1"
machine_id = "M2"
done_dir = "/srv/done"
[source.csv]
encoding = "gbk"
delimiter = "\t"
time_format = "%d.%m.%Y %H:%M"
[source.csv.columns]
order_no = "No"
amount = "Sum"
[source.csv.payment]
"现金" = "cash"
[source.csv.kind]
"退货" = "refund"
[source.ovopark]
order_no_prefix = "C-"
[source.wdt]
tid_prefix = "C-"

[[source]]
name = "files"
kind = "folder"
path = "/srv/prn"
format = "receipt"
shop = "D1"
machine_id = "M3"
encoding = "cp858"
[source.segment]
cut = false
end_pattern = '^THANK YOU'
end_extra_lines = 2
start_pattern = '^SHOP'
idle_timeout_ms = 0
max_bytes = 4096
[source.template]
refund = ['^REFUND']
refund_sign = "negative"
check_totals = false
mask_cards = false
mask = ['Member:\s*(\d+)']
[source.template.fields]
order_no = '^No (\d+)$'
order_date = {{ regex = '^Date (.+)$', format = '%d.%m.%Y' }}
order_time = {{ regex = '^Time (.+)$', format = '%H:%M' }}
total = {{ regex = '(\d+\.\d\d)$', from = "qr" }}
[source.template.payment]
card = ['^CARD']
[source.template.items]
start = '^ITEMS'
end = '^-+$'
lines = ['^(?P<code>\d+) (?P<name>.+) (?P<amount>[\d.]+)$']
skip = ['^\s*$']
[source.ovopark]
order_no_prefix = "F-"
[source.wdt]
tid_prefix = "F-"

[[source]]
name = "till"
kind = "serial"
shop = "D2"
machine_id = "M4"
device = "/dev/ttyUSB0"
baud = 19200
data_bits = 7
parity = "even"
stop_bits = 2
flow_control = "xonxoff"
passthrough = {{ device = "/dev/ttyS1", baud = 38400, flow_control = "rtscts" }}
encoding = "utf-8"
[source.template.fields]
order_no = '^No (\d+)$'
order_time = '^At (.+)$'
[source.template.items]
lines = ['^(?P<code>\d+) (?P<price>[\d.]+)$']
[source.ovopark]
org_id = 12
enterprise_id = 23
[source.wdt]
shop_no = "SHOP2"
tid_prefix = "T-"

[[source]]
name = "spare"
kind = "serial"
enabled = false
shop = "D2"
machine_id = "M5"
passthrough = "/dev/ttyS2"

[[source]]
name = "front"
kind = "tcp"
shop = "D3"
machine_id = "M6"
listen = "0.0.0.0:9100"
printer = "printer.lan:9100"
allow = ["192.168.1.20", "10.0.0.0/24", "fd00::/8"]
connect_timeout = "250ms"
max_connections = 4
peer_idle_timeout = "90s"
encoding = "big5"
[source.ovopark]
order_no_prefix = "P-"
[source.wdt]
tid_prefix = "P-"

[[source]]
name = "nvr"
kind = "listen"
shop = "D3"
machine_id = "M7"
listen = "[::]:7001"
protocol = "udp"
allow = ["10.0.0.5"]
[source.ovopark]
order_no_prefix = "N-"
[source.wdt]
tid_prefix = "N-"

[[source]]
name = "usb"
kind = "device"
shop = "D3"
machine_id = "M8"
device = "/dev/g_printer0"
passthrough = "/dev/usb/lp0"
encoding = "windows-1252"
[source.ovopark]
order_no_prefix = "U-"
[source.wdt]
tid_prefix = "U-"
"#
    )
}

/// The effective configuration, in full: Debug of everything (compiled regexes
/// show their pattern, secrets `***`, so the secrets are compared on their own),
/// the routes in a fixed order.
fn effective(c: &Config) -> String {
    let routes: std::collections::BTreeMap<_, _> = c
        .routes
        .ovopark
        .iter()
        .map(|(k, v)| (format!("ovopark {k}"), format!("{v:?}")))
        .chain(
            c.routes
                .wdt
                .iter()
                .map(|(k, v)| (format!("wdt {k}"), format!("{v:?}"))),
        )
        .collect();
    let secrets = (
        c.ovopark.as_ref().map(|o| o.secret.expose().to_string()),
        c.wdt
            .as_ref()
            .map(|w| format!("{}:{}", w.secret.expose(), w.salt.expose())),
    );
    // Where the box id came from is not a setting: printed, a default is a value
    // in the file.
    let mut agent = c.agent.clone();
    agent.box_id_from = crate::metrics::settings::BoxIdFrom::File;
    format!(
        "{:#?}",
        (
            &agent,
            &c.outbox,
            &c.metrics,
            &c.video,
            &c.sources,
            &c.destinations,
            &c.ovopark,
            &c.wdt,
            &c.disabled,
            routes,
            secrets,
        )
    )
}

/// Prints `c`, puts the secrets back where it shows `***` (each `(shown, real)`
/// line), and reads it again.
fn reload(c: &Config, secrets: &[(&str, &str)]) -> Config {
    let mut text = c.to_toml().unwrap();
    for (shown, real) in secrets {
        assert!(text.contains(shown), "{shown} in:\n{text}");
        text = text.replace(shown, real);
    }
    Config::from_toml(&text, &c.path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_printed_configuration_reads_back_as_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("wdt.secret");
    std::fs::write(&secret_file, "wdt-secret:wdt-salt\n").unwrap();
    let path = dir.path().join("tillrelay.toml");
    let c = Config::from_toml(&every_kind(&secret_file), &path).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = c.sources.iter().map(|s| s.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "folder", "folder", "folder", "serial", "serial", "tcp", "listen", "device"
        ]
    );
    let printed = c.to_toml().unwrap();
    // The push URL's password is a secret too: shown as ***@, so it is put back.
    let again = reload(
        &c,
        &[
            ("secret = \"***\"", "secret = \"ovo-secret-value\""),
            (
                "push_url = \"https://***@gw.example:9091\"",
                "push_url = \"https://u:hunter2@gw.example:9091\"",
            ),
        ],
    );
    assert_eq!(effective(&again), effective(&c));
    assert_eq!(again.to_json().unwrap(), c.to_json().unwrap());
    // A fixed point: printed again, the same text.
    assert_eq!(again.to_toml().unwrap(), printed);
    // No secret, no debug text.
    for leak in ["ovo-secret-value", "wdt-secret", "wdt-salt", "hunter2"] {
        assert!(!printed.contains(leak), "{leak} in:\n{printed}");
    }
    for debug in ["{", "Some(", "PortSettings", "Duration", "Regex"] {
        assert!(!printed.contains(debug), "{debug} in:\n{printed}");
    }
    assert!(printed.contains(&format!("secret_file = {secret_file:?}")));
}

#[test]
fn the_printed_configuration_uses_the_files_own_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("wdt.secret");
    std::fs::write(&secret_file, "wdt-secret:wdt-salt\n").unwrap();
    let c = Config::from_toml(&every_kind(&secret_file), &dir.path().join("t.toml")).unwrap();
    let t = c.to_toml().unwrap();
    for line in [
        // durations and sizes as the file writes them, defaults filled in
        "max_size = \"1536MB\"",
        "retention = \"1d 12h\"",
        "raw_retention = \"1h 30m\"",
        "push_interval = \"1s 500ms\"",
        "pre_roll = \"45s\"",
        "post_roll = \"30s\"",
        "clock_offset = \"-2m\"",
        "settle = \"750ms\"",
        "poll_interval = \"1m 5s\"",
        "max_file_size = \"1000\"",
        "max_file_size = \"16MB\"",
        "connect_timeout = \"250ms\"",
        "peer_idle_timeout = \"1m 30s\"",
        "peer_idle_timeout = \"5m\"",
        "give_up_after = \"2h 30m\"",
        "give_up_after = \"1d\"",
        // code pages by name, a delimiter as a character
        "encoding = \"gb18030\"",
        "encoding = \"cp858\"",
        "encoding = \"windows-1252\"",
        "delimiter = \"\\t\"",
        "delimiter = \",\"",
        // the secrets
        "secret = \"***\"",
        "push_url = \"https://***@gw.example:9091\"",
        // the rest as written
        "timezone = \"-05:30\"",
        // a till of its own zone (issue #26)
        "timezone = \"+09:00\"",
        "log_level = \"debug\"",
        "listen = \"\"",
        "allow = [\"192.168.1.20\", \"10.0.0.0/24\", \"fd00::/8\"]",
        "listen = \"[::]:7001\"",
        "protocol = \"udp\"",
        "passthrough = \"/dev/usb/lp0\"",
        "refund_sign = \"negative\"",
        "org_id = 11",
        "kind = \"device\"",
    ] {
        assert!(t.contains(line), "{line} missing in:\n{t}");
    }
    // [video] of a source only where it differs from [video].
    assert_eq!(t.matches("[source.video]").count(), 1, "{t}");

    let j = c.to_json().unwrap();
    assert_eq!(j["outbox"]["max_size_bytes"], 1536 << 20);
    assert_eq!(j["outbox"]["retention_ms"], 36 * 3600 * 1000);
    assert_eq!(j["video"]["clock_offset_ms"], -120_000);
    assert_eq!(j["source"][0]["settle_ms"], 750);
    assert_eq!(j["source"][0]["max_file_size_bytes"], 1000);
    assert_eq!(j["source"][0]["video"]["post_roll_ms"], 120_000);
    assert_eq!(j["source"][1]["csv"]["delimiter"], "\t");
    assert_eq!(j["source"][5]["connect_timeout_ms"], 250);
    assert_eq!(j["source"][5]["peer_idle_timeout_ms"], 90_000);
    assert_eq!(j["wdt"]["give_up_after_ms"], 86_400_000);
    assert_eq!(j["ovopark"]["secret"], "***");
    // No duration or size left as text where the file has them.
    let text = j.to_string();
    for key in super::render::DURATIONS.iter().chain(super::render::SIZES) {
        assert!(!text.contains(&format!("\"{key}\":")), "{key} in {text}");
    }
}

#[test]
fn the_example_config_reads_back_as_itself() {
    let example = include_str!("../../config/tillrelay.toml");
    let c = Config::from_toml(example, Path::new("/etc/tillrelay/tillrelay.toml")).unwrap();
    let again = reload(&c, &[]);
    assert_eq!(effective(&again), effective(&c));
    assert_eq!(again.to_toml().unwrap(), c.to_toml().unwrap());
}

/// Issue #26: a plain-http URL to a remote host, and the POS method name with the
/// storehouse payload, are warned about (valid, but probably wrong); loopback is not.
#[test]
fn plain_http_and_the_pos_method_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("wdt.secret");
    std::fs::write(&secret, "s:salt").unwrap();
    let text = every_kind(&secret);
    let warned = |text: &str| load(text).unwrap().warnings().join("\n");
    let w = warned(&text);
    assert!(
        !w.contains("plain http"),
        "loopback is not warned about: {w}"
    );
    let remote = text
        .replace(
            "http://127.0.0.1:1/openapi",
            "http://wdt.wangdian.cn/openapi",
        )
        .replace(
            "[ovopark]\n",
            "[ovopark]\nmethod = \"open.ovopark.pos.sendOrder\"\n",
        );
    let w = warned(&remote);
    assert!(
        w.contains("wdt.url = \"http://wdt.wangdian.cn/openapi\" is plain http"),
        "{w}"
    );
    assert!(
        w.contains("sends the storehouse payload under the POS API's name"),
        "{w}"
    );
}

/// Issue #31.4: a receipt template with `check_totals = false` is said plainly by
/// check-config (and `run`'s log), naming the source.
#[test]
fn unchecked_totals_are_warned_about() {
    let base = r#"
[agent]
state_dir = "state"
[[source]]
name = "till"
kind = "serial"
enabled = false
shop = "D1"
machine_id = "C1"
[source.template]
check_totals = CHECK
[source.template.fields]
order_no = '^No (\d+)$'
order_time = '^T (.+)$'
[source.template.items]
lines = ['^(?P<code>\d+) (?P<amount>[\d.]+)$']
"#;
    let warned = |check: &str| {
        Config::from_toml(&base.replace("CHECK", check), Path::new("/etc/t.toml"))
            .unwrap()
            .warnings()
            .join("\n")
    };
    assert!(
        warned("false").contains("source[till].template.check_totals = false: an order whose"),
        "{}",
        warned("false")
    );
    assert!(!warned("true").contains("check_totals"));
}
