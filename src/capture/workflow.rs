//! The template workflow at the till: `record` live bytes to a capture file, write a
//! template against it with `parse --text`, and `reparse` what the journal kept
//! unparsed once the template is fixed.
//!
//! Invariants:
//! - `record` forwards to the printer while it records (the till keeps printing) and
//!   masks card numbers before the file is written.
//! - `reparse` never makes a second copy of an order: orders go through the same
//!   (source, order_no) uniqueness as live capture; it reads the journal page by page.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::capture::formats::read_receipts;
use crate::capture::receipt::{ReceiptRules, mask_stream, parse_one};
use crate::capture::serial::{Tap, TapOptions};
use crate::capture::template::Parsed;
use crate::config::{Config, Source, SourceKind};
use crate::outbox::{CaptureKind, Outbox};
use crate::stamp::stamp;

/// The receipt rules a source reads receipts with, if it reads receipts.
pub fn rules_of(source: &Source) -> Option<&ReceiptRules> {
    match &source.kind {
        SourceKind::Serial(t) => Some(&t.rules),
        SourceKind::Folder(f) => f.receipt.as_ref(),
    }
}

/// Records what the POS sends on a serial source for `seconds` (or until Ctrl-C),
/// passing it on to the printer, and writes it (card numbers masked) to `out`.
pub fn record(source: &Source, out: &Path, seconds: u64) -> anyhow::Result<()> {
    let SourceKind::Serial(t) = &source.kind else {
        bail!(
            "source {} is not a serial source (record taps a serial line)",
            source.name
        );
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tap, mut rx) = Tap::start(&source.name, &t.serial, TapOptions::default(), stop.clone())
        .context("cannot start the serial tap")?;
    let stats = tap.stats();
    eprintln!(
        "recording {} for {seconds} s (Ctrl-C ends it early){}",
        t.serial.pos.device.display(),
        if t.serial.passthrough.is_some() {
            "; passing everything on to the printer"
        } else {
            ""
        }
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut bytes = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => bytes.extend_from_slice(&c.bytes),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    });
    stop.store(true, Ordering::SeqCst);
    while let Ok(c) = rx.try_recv() {
        bytes.extend_from_slice(&c.bytes);
    }
    tap.join();
    if !stats.pos_up.load(Ordering::Relaxed) && bytes.is_empty() {
        eprintln!(
            "warning: {} could not be opened (see the messages above)",
            t.serial.pos.device.display()
        );
    }
    let (masked, cards) = mask_stream(&bytes, &t.rules);
    let mut f =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    f.write_all(&masked)?;
    f.sync_all()?;
    let receipts = crate::capture::receipt::split_bytes(&masked, &t.rules).len();
    println!(
        "recorded {} bytes, {receipts} receipt(s){} to {}",
        masked.len(),
        if cards > 0 {
            format!(", {cards} card number(s) masked")
        } else {
            String::new()
        },
        out.display()
    );
    Ok(())
}

/// What `reparse` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReparseReport {
    pub entries: usize,
    pub orders: usize,
    pub duplicates: usize,
    pub still_unparsed: usize,
}

/// Runs the current templates over the journal: the unparsed entries (of `source`,
/// or all sources), or the entries named in `ids`.
pub fn reparse(cfg: &Config, source: Option<&str>, ids: &[i64]) -> anyhow::Result<ReparseReport> {
    let mut ob = Outbox::open(&cfg.db_path(), &cfg.outbox, &cfg.destinations)?;
    let mut report = ReparseReport::default();
    let mut after = 0;
    loop {
        let page = ob.journal_entries(source, ids, after, 100)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in page {
            let Some(src) = cfg.source(&e.source) else {
                eprintln!(
                    "journal entry {}: source {:?} is no longer configured; skipped",
                    e.id, e.source
                );
                continue;
            };
            let Some(rules) = rules_of(src) else {
                eprintln!(
                    "journal entry {}: source {} has no receipt template; skipped",
                    e.id, src.name
                );
                continue;
            };
            let (mut orders, errors) = match e.kind {
                CaptureKind::Receipt => match parse_one(&e.raw, rules).1 {
                    Ok(Parsed::Order(o)) => (vec![*o], vec![]),
                    Ok(_) => (vec![], vec![]),
                    Err(err) => (vec![], vec![err.to_string()]),
                },
                CaptureKind::File => {
                    let p = read_receipts(&e.raw, rules);
                    (p.orders, p.errors.iter().map(|x| x.to_string()).collect())
                }
            };
            for o in orders.iter_mut() {
                stamp(o, src);
            }
            let error = (!errors.is_empty()).then(|| errors.join("\n"));
            let r = ob.reparsed(e.id, &src.name, &orders, error.as_deref())?;
            report.entries += 1;
            report.orders += r.new;
            report.duplicates += r.duplicates.len();
            if let Some(err) = &error {
                report.still_unparsed += 1;
                eprintln!(
                    "journal entry {} ({}): still not readable: {err}",
                    e.id, src.name
                );
            }
        }
    }
    Ok(report)
}
