//! `status`: the queue per source and destination, the live counters of network and
//! device sources, a damaged queue set aside (exit 5), the last reload; read-only,
//! safe while the daemon runs.

use super::*;

pub(super) fn status(cfg: &Config, json: bool) -> Result<(), CliError> {
    let db = cfg.db_path();
    let ob = match Outbox::open_read_only(&db) {
        Err(OutboxError::Missing(_)) => return Err(CliError::Other(no_queue(cfg))),
        r => r?,
    };
    let now = outbox::now();
    let mut st = ob.status(now)?;
    let damaged = db
        .parent()
        .zip(db.file_name())
        .map(|(dir, name)| outbox::damaged_files(dir, &name.to_string_lossy()))
        .unwrap_or_default();
    let attention = (!damaged.is_empty()).then(|| {
        format!(
            "a damaged queue was moved aside: {} (its orders can be recovered: see docs/INSTALL.md)",
            damaged
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    // The worker's real next attempt: the next scheduled row, or the probe it sends
    // `recheck` after a failed attempt while a backlog waits (upload::engine).
    let recheck = crate::upload::engine::EngineConfig::default()
        .recheck
        .as_secs() as i64;
    for d in &mut st.destinations {
        let failing_since = d.last_error_at.filter(|_| d.last_success_at.is_none());
        d.next_attempt_at = match (d.pending, d.next_due_at, failing_since) {
            (0, _, _) | (_, None, _) => None,
            (_, Some(due), Some(err)) => Some(due.min(err + recheck).max(now)),
            (_, Some(due), None) => Some(due.max(now)),
        };
    }
    let mut out = std::io::stdout().lock();
    // Live counters of network/device sources: the daemon's stats file.
    let live = crate::source_stats::read(&cfg.agent.state_dir);
    // The running agent's last configuration load (a refused reload shows here).
    let reload = crate::reload::read_live(&cfg.agent.state_dir);
    // The configuration pull's last check, when the box pulls.
    let pull = crate::pull::read_live(
        &cfg.agent.state_dir,
        crate::reload::running_pid(&cfg.agent.state_dir),
    );
    if json {
        let mut v = serde_json::to_value(&st).map_err(anyhow::Error::from)?;
        v["damaged_queues"] = serde_json::json!(damaged);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "live".into(),
                serde_json::to_value(&live).map_err(anyhow::Error::from)?,
            );
            m.insert(
                "reload".into(),
                serde_json::to_value(&reload).map_err(anyhow::Error::from)?,
            );
            m.insert(
                "config".into(),
                serde_json::json!({
                    "serial": cfg.origin.serial,
                    "hash": cfg.origin.hash,
                    "origin": cfg.origin.kind(),
                }),
            );
            m.insert(
                "pull".into(),
                serde_json::to_value(&pull).map_err(anyhow::Error::from)?,
            );
        }
        super::print_json(&mut out, &v)?;
        return attention.map_or(Ok(()), |a| Err(CliError::Attention(a)));
    }
    let _ = writeln!(
        out,
        "queue: {} ({})",
        cfg.db_path().display(),
        human_bytes(st.db_bytes)
    );
    let _ = writeln!(
        out,
        "config: {} (serial {}, hash {})",
        if cfg.origin.serial > 0 {
            "pulled"
        } else {
            "local file"
        },
        cfg.origin.serial,
        cfg.origin.hash
    );
    if let Some(p) = &pull {
        let ago = human_age((now - p.checked_at).max(0));
        let _ = if p.ok {
            writeln!(
                out,
                "config pull: {} checked {ago} ago: {}",
                p.url, p.message
            )
        } else {
            writeln!(
                out,
                "config pull: REFUSED {ago} ago, serial {} stays: {}",
                p.serial, p.message
            )
        };
    }
    for line in reload
        .iter()
        .flat_map(|r| crate::reload::status_lines(r, now, human_age))
    {
        let _ = writeln!(out, "{line}");
    }
    if let Some(since) = st.queue_full_since {
        let _ = writeln!(
            out,
            "  QUEUE FULL for {} (outbox.max_size {} or the disk): new captures wait; delivered \
             orders are deleted as they go out to make room",
            human_age((outbox::now() - since).max(0)),
            human_bytes(cfg.outbox.max_size)
        );
    }
    let _ = writeln!(out, "\nsources");
    for s in &cfg.sources {
        let c = st
            .sources
            .iter()
            .find(|x| x.name == s.identity.name)
            .cloned()
            .unwrap_or_default();
        let _ = match &s.kind {
            SourceKind::Folder(f) => writeln!(
                out,
                "  {} (folder {}): files seen {}, ingested {}, rejected {}; orders {}, duplicates {}",
                s.identity.name,
                f.path.display(),
                c.files_seen,
                c.files_ingested,
                c.files_rejected,
                c.orders,
                c.duplicates
            ),
            SourceKind::Serial(t) => writeln!(
                out,
                "  {} (serial {}): receipts {}, not parsed {}; orders {}, duplicates {}",
                s.identity.name,
                t.serial.pos.device.display(),
                c.receipts,
                c.unparsed,
                c.orders,
                c.duplicates
            ),
            SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
                let what = s
                    .stream_spec()
                    .map(|(x, _)| x.describe())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} ({what}): receipts {}, not parsed {}; orders {}, duplicates {}",
                    s.identity.name, c.receipts, c.unparsed, c.orders, c.duplicates
                );
                live_line(&mut out, &s.kind, live.as_ref(), &s.identity.name)
            }
        };
        if c.corrected > 0 {
            let _ = writeln!(
                out,
                "    {} rejected order(s) corrected by a later copy and sent again",
                c.corrected
            );
        }
        if c.unparsed > 0 {
            let _ = writeln!(
                out,
                "    {} receipt(s) kept unparsed: fix the template, then `tillrelay reparse --source {}`",
                c.unparsed, s.identity.name
            );
        }
        if c.conflicts > 0 {
            let _ = writeln!(
                out,
                "    {} order number(s) seen again with other content (conflicts kept aside: \
                 sqlite3 queue.db 'SELECT order_no, body FROM conflict')",
                c.conflicts
            );
        }
        if c.unparsed_dropped > 0 {
            let _ = writeln!(
                out,
                "    {} unparsed receipt(s) dropped to keep junk within its share of the queue \
                 (outbox.unparsed_percent)",
                c.unparsed_dropped
            );
        }
        if c.malformed_commands > 0 {
            let _ = writeln!(
                out,
                "    {} print command(s) the decoder could not follow, skipped (the receipts \
                 around them were captured)",
                c.malformed_commands
            );
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "    last error: {}", e.replace('\n', "; "));
        }
    }
    for s in st.sources.iter().filter(|s| cfg.source(&s.name).is_none()) {
        let _ = writeln!(
            out,
            "  {} (no longer configured): orders {}",
            s.name, s.orders
        );
    }
    let _ = writeln!(out, "\ndestinations");
    if st.destinations.is_empty() && cfg.destinations.is_empty() {
        let _ = writeln!(out, "  none configured: orders are stored, not uploaded");
    }
    for name in &cfg.destinations {
        if !st.destinations.iter().any(|d| &d.name == name) {
            let _ = writeln!(out, "  {name}: nothing queued yet");
        }
    }
    for d in &st.destinations {
        let oldest = d
            .oldest_pending_age
            .map(|a| format!(" (oldest {})", human_age(a)))
            .unwrap_or_default();
        let state = match &d.paused {
            Some(r) => format!("  PAUSED: {r}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}: pending {}{}, delivered {}, rejected {}{}",
            d.name, d.pending, oldest, d.delivered, d.rejected, state
        );
        // A source whose identity this destination refuses (its shop, its
        // enterprise): its orders wait, every other source's go on.
        for p in &d.paused_sources {
            let _ = writeln!(
                out,
                "    source {} PAUSED ({} ago): {} ({} order(s) wait; the other sources' go on)",
                p.source,
                human_age((now - p.since).max(0)),
                p.reason,
                p.pending
            );
        }
        if let (Some(at), None) = (d.next_attempt_at, &d.paused) {
            let when = match at - now {
                s if s <= 0 => "now".to_string(),
                s => format!("in {}", human_age(s)),
            };
            let _ = writeln!(out, "    next attempt: {when}");
        }
        if d.quarantined > 0 {
            let _ = writeln!(
                out,
                "    {} order(s) QUARANTINED: their stored row is damaged (`tillrelay orders --state quarantined`)",
                d.quarantined
            );
        }
        // An error followed by a success is over: not shown (kept in --json).
        if let (Some(e), None) = (&d.last_error, d.last_success_at) {
            let ago = d
                .last_error_at
                .map(|t| format!(" ({} ago)", human_age((now - t).max(0))))
                .unwrap_or_default();
            let _ = writeln!(out, "    last error{ago}: {e}");
        }
    }
    if let Some(a) = attention {
        return Err(CliError::Attention(a));
    }
    Ok(())
}

/// Why there is no queue to read: a state dir that cannot be written (a read-only
/// disk: the daemon forwards to the printer but cannot capture), or no daemon yet.
fn no_queue(cfg: &Config) -> anyhow::Error {
    let db = cfg.db_path();
    let dir = &cfg.agent.state_dir;
    let why = if dir.exists() && !dir.is_dir() {
        format!(
            "{} is not a directory: no queue can be created there; printing goes on, capture waits",
            dir.display()
        )
    } else if dir.is_dir() && !writable(dir) {
        format!(
            "{} cannot be written (a read-only disk?): no queue can be created there; printing goes on, capture waits",
            dir.display()
        )
    } else {
        "has the daemon run yet?".to_string()
    };
    anyhow::anyhow!("no queue database at {}: {why}", db.display())
}

fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a NUL-terminated path and touches no other memory.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The live counters of a network/device source, from the daemon's stats file.
fn live_line(
    out: &mut impl Write,
    kind: &SourceKind,
    live: Option<&crate::source_stats::Snapshot>,
    name: &str,
) -> std::io::Result<()> {
    let Some((snap, c)) = live.and_then(|l| l.sources.get(name).map(|c| (l, c))) else {
        return writeln!(
            out,
            "    live counters: none (the agent has not run this source)"
        );
    };
    let age = (crate::outbox::now() - (snap.written_ms / 1000) as i64).max(0);
    let printer = match kind {
        SourceKind::Tcp(_) => format!(
            ", printer {}",
            if c.printer_reachable {
                "reachable"
            } else if c.printer_failures > 0 {
                "UNREACHABLE"
            } else {
                "not tried yet"
            }
        ),
        _ => String::new(),
    };
    let last = if c.last_receipt_ms == 0 {
        "none yet".to_string()
    } else {
        let secs = (crate::outbox::now() - (c.last_receipt_ms / 1000) as i64).max(0);
        format!("{} ago", human_age(secs))
    };
    writeln!(
        out,
        "    peers connected {} (of {} so far){printer}; bytes POS→printer {}, printer→POS {}; \
         refused peers {}; last receipt {last} (as of {} ago)",
        c.connected_peers,
        c.connections,
        human_bytes(c.bytes_to_printer.max(c.bytes_from_pos)),
        human_bytes(c.bytes_to_pos),
        c.refused_peers,
        human_age(age)
    )?;
    if c.capture_dropped_bytes > 0 {
        writeln!(
            out,
            "    {} forwarded but NOT captured (capture fell behind)",
            human_bytes(c.capture_dropped_bytes)
        )?;
    }
    if c.evicted_idle + c.idle_closed + c.refused_busy + c.cut_for_memory > 0 {
        writeln!(
            out,
            "    idle connections given way to a new one {}, closed idle {}; datagrams \
             dropped (too many senders) {}; receipts cut to bound memory {}",
            c.evicted_idle, c.idle_closed, c.refused_busy, c.cut_for_memory
        )?;
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

pub(crate) fn human_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}
