//! `check-config` through the real binary: it prints the effective configuration as
//! a config file (the file's own keys, defaults filled in, durations and sizes as
//! written, code pages by name, secrets as `***`), warnings on stderr, and
//! `--json` the same tree for machines; the printed file, its secret put back,
//! checks to the same configuration.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::tillrelay;

const OVO_SECRET: &str = "ovo-s3cret-value";
/// An ed25519 public key (the configuration pull's), as `config keygen` prints one.
const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn config(dir: &Path) -> String {
    let wdt_secret = dir.join("wdt.secret");
    fs::write(&wdt_secret, "wdt-s3cret:wdt-salt\n").unwrap();
    format!(
        r#"
[agent]
state_dir = "state"
box_id = "box1"
config_url = "https://config.test/fleet.json"
config_poll = "2m"
config_key = "{KEY}"
[outbox]
retention = "2d"

[ovopark]
url = "http://127.0.0.1:1/cloud.api"
akey = "AK1"
secret = "{OVO_SECRET}"
org_id = 1
enterprise_id = 2

[wdt]
url = "http://127.0.0.1:1/openapi"
sid = "seller"
key = "appkey"
secret_file = {wdt_secret:?}
shop_no = "SHOP1"
receiver_name = "一号店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"

[[source]]
name = "lane1"
kind = "folder"
path = "export1"
shop = "D001"
machine_id = "CAM1"
settle = "30s"
[source.csv]
encoding = "gbk"
delimiter = ";"
decimal = ","

[[source]]
name = "lane2"
kind = "folder"
path = "export2"
shop = "D001"
machine_id = "CAM2"

[[source]]
name = "till"
kind = "serial"
enabled = false
shop = "D001"
machine_id = "CAM3"
device = "/dev/ttyUSB0"
passthrough = {{ device = "/dev/ttyS1", baud = 19200 }}
encoding = "cp858"
[source.template]
decimal = ","
grouping = " "
[source.template.fields]
order_no = '^Nr\s+(\d+)$'
order_time = {{ regex = '^(\d+\.\d+\.\d+ \d+:\d+)$', format = '%d.%m.%Y %H:%M' }}
[source.template.items]
lines = ['^(?P<code>\d+)\s+(?P<amount>-?[\d ]+,\d\d)$']
void_line = ['^STORNO$']
optional = ['^\s+\+ (?P<modifier>.+?)\s+(?P<add>[\d ]+,\d\d)$']

[[source]]
name = "front"
kind = "tcp"
enabled = false
shop = "D001"
machine_id = "CAM4"
listen = "0.0.0.0:9100"
printer = "192.168.1.50:9100"
allow = ["192.168.1.20"]
"#
    )
}

fn check(cfg: &Path, json: bool) -> Output {
    let mut cmd = tillrelay();
    cmd.arg("check-config").arg("--config").arg(cfg);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn check_config_prints_a_config_file_that_checks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tillrelay.toml");
    fs::write(&cfg, config(dir.path())).unwrap();

    let out = check(&cfg, false);
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(text.starts_with("# "), "{text}");
    assert!(text.contains("is valid"), "{text}");
    for line in [
        "delimiter = \";\"",
        "encoding = \"gb18030\"",
        "encoding = \"cp858\"",
        "settle = \"30s\"",
        "settle = \"2s\"",
        "max_size = \"256MB\"",
        "retention = \"2d\"",
        "max_file_size = \"16MB\"",
        "secret = \"***\"",
        "allow = [\"192.168.1.20\"]",
        "kind = \"tcp\"",
        "config_url = \"https://config.test/fleet.json\"",
        "config_poll = \"2m\"",
        &format!("config_key = \"{KEY}\""),
        // The number formats, each default filled in (issue #31.7).
        "decimal = \",\"\ngrouping = \".\"",
        "decimal = \",\"\ngrouping = \" \"",
        "decimal = \".\"\ngrouping = \"\"",
        "void_line = [\"^STORNO$\"]\nvoid_negative = false",
        "optional = [",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "secret_file = {:?}",
            dir.path().join("wdt.secret")
        )),
        "{text}"
    );
    for bad in [
        OVO_SECRET,
        "wdt-s3cret",
        "wdt-salt",
        "Some(",
        "Config {",
        "PortSettings",
        "\"delimiter\": ",
    ] {
        assert!(!text.contains(bad), "{bad} in:\n{text}");
    }
    // Plain TOML, every line of it: no debug text, no JSON.
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["source"].as_array().unwrap().len(), 4);
    // The lanes share a tenant: warned about, on stderr only.
    assert!(err.contains("warning: sources lane1 and lane2"), "{err}");
    assert!(!text.contains("warning"), "{text}");

    // The printed file, its secret put back, is the same configuration.
    let printed = dir.path().join("printed.toml");
    fs::write(
        &printed,
        text.replace("secret = \"***\"", &format!("secret = {OVO_SECRET:?}")),
    )
    .unwrap();
    let again = String::from_utf8(check(&printed, false).stdout).unwrap();
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&text));
    let json: serde_json::Value = serde_json::from_slice(&check(&cfg, true).stdout).unwrap();
    let json_again: serde_json::Value =
        serde_json::from_slice(&check(&printed, true).stdout).unwrap();
    assert_eq!(json, json_again);

    // The machine form: the same keys, durations in ms, sizes in bytes.
    assert_eq!(json["outbox"]["max_size_bytes"], 256 << 20);
    assert_eq!(json["outbox"]["retention_ms"], 2 * 86_400_000u64);
    assert_eq!(json["source"][0]["settle_ms"], 30_000);
    assert_eq!(json["source"][0]["csv"]["delimiter"], ";");
    assert_eq!(json["source"][0]["csv"]["decimal"], ",");
    assert_eq!(json["source"][2]["template"]["grouping"], " ");
    assert_eq!(json["source"][2]["encoding"], "cp858");
    assert_eq!(json["source"][2]["passthrough"]["baud"], 19200);
    assert_eq!(json["ovopark"]["secret"], "***");
    assert_eq!(json["wdt"]["give_up_after_ms"], 86_400_000);
    let raw = json.to_string();
    assert!(
        !raw.contains(OVO_SECRET) && !raw.contains("wdt-s3cret"),
        "{raw}"
    );
}

/// `check-config --json` of a one-source config without `box_id`, run in new user,
/// mount and UTS namespaces (`unshare -rmu`, util-linux) where the host name is
/// `host`, `/etc/machine-id` holds `machine_id`, and `/proc/sys` is covered by an
/// empty tmpfs as the unit's `ProcSubset=pid` hides it. The box id it resolved.
fn box_id_in_a_sandbox(host: &str, machine_id: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tillrelay.toml");
    fs::write(
        &cfg,
        "[agent]\nstate_dir = \"state\"\n\n[[source]]\nname = \"lane1\"\nkind = \"folder\"\n\
         path = \"export\"\nshop = \"D001\"\nmachine_id = \"CAM1\"\n",
    )
    .unwrap();
    let mid = dir.path().join("machine-id");
    fs::write(&mid, machine_id).unwrap();
    let agent = tillrelay();
    let out = std::process::Command::new("unshare")
        .args(["-rmu", "sh", "-c"])
        .arg(
            "printf '%s\\n' \"$HOST\" > /proc/sys/kernel/hostname && \
             mount --bind \"$MID\" /etc/machine-id && \
             mount -t tmpfs none /proc/sys && \
             if [ -e /proc/sys/kernel/hostname ]; then echo 'still visible' >&2; exit 99; fi && \
             exec \"$@\"",
        )
        .arg("sh")
        .arg(agent.get_program())
        .args(agent.get_args())
        .args(["check-config", "--json", "--config"])
        .arg(&cfg)
        .env("HOST", host)
        .env("MID", &mid)
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        out.status.success(),
        "check-config in the sandbox ({:?}, needs user namespaces or root): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["agent"]["box_id"].as_str().unwrap().to_string()
}

/// Issue #23: `box_id` defaults to the host name, which was read from
/// `/proc/sys/kernel/hostname`; the unit's `ProcSubset=pid` hides it, so under
/// systemd the default was "" and every start failed (exit 3). The name now comes
/// from `gethostname(2)`; with no usable name, from `/etc/machine-id` (hashed: the
/// id itself must not leave the box); with neither, a fixed name: never a failure.
#[test]
fn an_unset_box_id_is_the_kernels_host_name_even_where_proc_sys_is_hidden() {
    let mid = "0123456789abcdef0123456789abcdef\n";
    assert_eq!(box_id_in_a_sandbox("till-7.shop12", mid), "till-7.shop12");
    let from_mid = box_id_in_a_sandbox("", mid);
    assert!(
        from_mid.starts_with("machine-") && from_mid.len() == 24 && !from_mid.contains("0123"),
        "{from_mid}"
    );
    assert_eq!(box_id_in_a_sandbox("localhost", mid), from_mid);
    assert_ne!(
        box_id_in_a_sandbox("", "fedcba9876543210fedcba9876543210\n"),
        from_mid
    );
    assert_eq!(box_id_in_a_sandbox("", "uninitialized\n"), "tillrelay-box");
}
