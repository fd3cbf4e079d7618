//! The sources collector: what each source captured (from the outbox's `status`
//! view) and its live state (from the daemon's counters: connected, printer
//! reachable, bytes forwarded).
//!
//! Invariant: every configured source has every capture series from the agent's
//! start (0 until it captures), so "never captured" is a value rules can see.

use super::Snapshot;
use super::expo::Expo;
use super::registry::Registry;
use crate::outbox::SourceStatus;

/// A counter family read from a source's `status` line: name, help, field.
type Counter = (&'static str, &'static str, fn(&SourceStatus) -> i64);

pub fn write(e: &mut Expo, s: &Snapshot, reg: &Registry) {
    // Every source of the config and every one the queue remembers, once each.
    let mut names: Vec<&str> = reg.sources.iter().map(|(n, _)| n.as_str()).collect();
    for st in &s.status.sources {
        if !names.contains(&st.name.as_str()) {
            names.push(&st.name);
        }
    }
    let status = |n: &str| s.status.sources.iter().position(|x| x.name == n);
    let counters: [Counter; 8] = [
        (
            "tillrelay_source_files_total",
            "Export files captured (ingested).",
            |x| x.files_ingested,
        ),
        (
            "tillrelay_source_receipts_total",
            "Receipts captured from the print stream.",
            |x| x.receipts,
        ),
        ("tillrelay_source_orders_total", "Orders stored.", |x| {
            x.orders
        }),
        (
            "tillrelay_source_duplicates_total",
            "Orders captured again and not stored twice.",
            |x| x.duplicates,
        ),
        (
            "tillrelay_source_unparsed_receipts_total",
            "Receipts the template could not read (kept raw for reparse).",
            |x| x.unparsed,
        ),
        (
            "tillrelay_source_rejected_files_total",
            "Export files moved to rejected/.",
            |x| x.files_rejected,
        ),
        (
            "tillrelay_source_malformed_commands_total",
            "Print commands the receipt decoder could not follow and skipped.",
            |x| x.malformed_commands,
        ),
        (
            "tillrelay_source_unparsed_dropped_total",
            "Unparsed receipts dropped to keep them within their share of the queue.",
            |x| x.unparsed_dropped,
        ),
    ];
    for (name, help, get) in counters {
        e.family(name, "counter", help);
        for n in &names {
            let v = status(n).map_or(0, |i| get(&s.status.sources[i]));
            e.sample(name, &[("source", n)], v as f64);
        }
    }
    let name = "tillrelay_source_last_capture_timestamp_seconds";
    e.family(
        name,
        "gauge",
        "When the source last captured a file or receipt (0: never, as far as the queue remembers).",
    );
    // Every source has the series from the start: a lane that never captured is 0,
    // which an alert sees, where no series at all would be silence.
    for n in &names {
        let t = status(n).and_then(|i| s.status.sources[i].last_capture_at);
        e.sample(name, &[("source", n)], t.unwrap_or(0) as f64);
    }
    let live: Vec<_> = reg.sources.iter().map(|(n, m)| (n, m.live())).collect();
    let name = "tillrelay_source_connected";
    e.family(
        name,
        "gauge",
        "1 while the device or POS peer is connected.",
    );
    for (n, l) in &live {
        if let Some(c) = l.connected {
            e.sample(name, &[("source", n)], f64::from(u8::from(c)));
        }
    }
    let name = "tillrelay_source_printer_reachable";
    e.family(
        name,
        "gauge",
        "1 while the printer behind the source answers.",
    );
    for (n, l) in &live {
        if let Some(c) = l.printer_reachable {
            e.sample(name, &[("source", n)], f64::from(u8::from(c)));
        }
    }
    let name = "tillrelay_source_forwarded_bytes_total";
    e.family(name, "counter", "POS bytes passed on to the printer.");
    for (n, l) in &live {
        if l.connected.is_some() {
            e.sample(name, &[("source", n)], l.bytes_forwarded as f64);
        }
    }
}
