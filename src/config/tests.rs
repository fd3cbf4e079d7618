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
