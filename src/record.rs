//! `tillrelay record`: the first step of the template workflow at the till. It
//! records what the POS sends on a serial source to a capture file, against which a
//! template is then written with `parse --text`.
//!
//! Invariants:
//! - It forwards to the printer while it records (the till keeps printing).
//! - Card numbers are masked before the file is written.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::capture::receipt::mask_stream;
use crate::capture::serial::{Tap, TapOptions};
use crate::config::{Source, SourceKind};

/// Records what the POS sends on a serial source for `seconds` (or until Ctrl-C),
/// passing it on to the printer, and writes it (card numbers masked) to `out`.
pub fn record(source: &Source, out: &Path, seconds: u64) -> anyhow::Result<()> {
    let SourceKind::Serial(t) = &source.kind else {
        bail!(
            "source {} is not a serial source (record taps a serial line)",
            source.identity.name
        );
    };
    if t.serial.pos.device.as_os_str().is_empty() {
        bail!(
            "source {} has no device (allowed only while it is disabled); set device",
            source.identity.name
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tap, mut rx) = Tap::start(
        &source.identity.name,
        &t.serial,
        TapOptions::default(),
        stop.clone(),
    )
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
