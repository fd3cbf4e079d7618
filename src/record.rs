//! `tillrelay record`: the first step of the template workflow at the till. It
//! records what the POS sends on a serial, network or device source to a capture file, against which a
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

use std::collections::BTreeMap;

use crate::capture::receipt::{ReceiptRules, mask_stream};
use crate::capture::serial::{Tap, TapOptions};
use crate::capture::stream::{SourceStats, StreamEvent, StreamKind};
use crate::capture::stream_source;
use crate::config::{Source, SourceKind};
use crate::lifecycle::Shutdown;

/// Records what the POS sends on a serial source for `seconds` (or until Ctrl-C),
/// passing it on to the printer, and writes it (card numbers masked) to `out`.
pub fn record(source: &Source, out: &Path, seconds: u64) -> anyhow::Result<()> {
    let t = match &source.kind {
        SourceKind::Serial(t) => t,
        SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
            return record_stream(source, out, seconds);
        }
        SourceKind::Folder(_) => bail!(
            "source {} is a folder source: its export files are already capture files",
            source.identity.name
        ),
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
    write_capture(out, &bytes, &t.rules)
}

/// Records what arrives on a network or device source (forwarding to its printer
/// as the daemon would). Each stream's bytes are written whole, one stream after
/// the other in the order they ended, so receipts of two POS never interleave.
/// The daemon must not be running this source at the same time (the address or
/// device would be taken).
fn record_stream(source: &Source, out: &Path, seconds: u64) -> anyhow::Result<()> {
    let (spec, rules) = source
        .stream_spec()
        .context("not a network or device source")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ctrl-C is caught from before the source listens: whoever sees it listening may
    // end the recording with SIGINT at once.
    let mut interrupt = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot handle SIGINT")?
    };
    let shutdown = Shutdown::new();
    let stats = Arc::new(SourceStats::default());
    let (running, mut rx) =
        stream_source::start(&source.identity.name, &spec, &shutdown, stats.clone()).with_context(
            || {
                format!(
                    "cannot start {} (is the agent running it?)",
                    spec.describe()
                )
            },
        )?;
    eprintln!(
        "recording {}{} for {seconds} s (Ctrl-C ends it early)",
        spec.describe(),
        running
            .local_addr()
            .map(|a| format!(" (bound {a})"))
            .unwrap_or_default()
    );
    let mut streams: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut bytes = Vec::new();
    let mut take = |ev: StreamEvent, bytes: &mut Vec<u8>| match ev.kind {
        StreamKind::Data(d) => streams.entry(ev.stream).or_default().extend_from_slice(&d),
        StreamKind::End => {
            if let Some(b) = streams.remove(&ev.stream) {
                bytes.extend_from_slice(&b);
            }
        }
    };
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => take(ev, &mut bytes),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = interrupt.recv() => break,
            }
        }
    });
    shutdown.trigger();
    running.join();
    while let Ok(ev) = rx.try_recv() {
        take(ev, &mut bytes);
    }
    for (_, b) in std::mem::take(&mut streams) {
        bytes.extend_from_slice(&b);
    }
    let refused = stats.refused_peers.load(Ordering::Relaxed);
    if refused > 0 {
        eprintln!("warning: {refused} connection(s) refused (not in allow)");
    }
    write_capture(out, &bytes, rules)
}

/// Masks card numbers in `bytes` and writes them to `out`, saying what it wrote.
fn write_capture(out: &Path, bytes: &[u8], rules: &ReceiptRules) -> anyhow::Result<()> {
    let (masked, cards) = mask_stream(bytes, rules);
    let mut f =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    f.write_all(&masked)?;
    f.sync_all()?;
    let receipts = crate::capture::receipt::split_bytes(&masked, rules).len();
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
