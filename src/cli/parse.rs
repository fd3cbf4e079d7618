//! `parse`: what a source would make of an export or capture file (orders, or with
//! `--text` each receipt's decoded text), stored nowhere; `--expect` compares them
//! with an expected file (exit 5 when they differ).

use super::*;

/// `parse`'s options besides the file and the source.
pub(super) struct Options<'a> {
    pub(super) json: bool,
    pub(super) stamp: bool,
    pub(super) text: bool,
    pub(super) expect: Option<&'a std::path::Path>,
    /// When the receipts were captured (`--captured-at`); default: the file's
    /// modification time.
    pub(super) captured_at: Option<chrono::NaiveDateTime>,
}

pub(super) fn parse(
    cfg: &Config,
    file: &std::path::Path,
    source: &str,
    opts: Options<'_>,
) -> Result<(), CliError> {
    let Options {
        json,
        stamp,
        text,
        expect,
        captured_at,
    } = opts;
    let src = source_named(cfg, source)?;
    // Read first: a wrong path is reported before any work.
    let expected = expect
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", p.display())))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| CliError::BadInput(format!("{}: not JSON: {e}", p.display())))
        })
        .transpose()?;
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // A receipt file was captured when it was last written, unless told
    // otherwise: that places a date printed without its year
    // (docs/TEMPLATES.md §4).
    let captured = captured_at.or_else(|| {
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| chrono::DateTime::<chrono::Local>::from(t).naive_local())
    });
    let (parsed, rules) = match &src.kind {
        SourceKind::Folder(f) => match (formats::detect(f.format, name)
            == Some(crate::capture::formats::Format::Receipt))
        .then_some(f.receipt.as_ref())
        .flatten()
        {
            Some(rules) => (
                Ok(formats::read_receipts_at(&bytes, rules, captured)),
                Some(rules),
            ),
            None => (
                formats::read(&bytes, f.format, name, &f.csv, f.receipt.as_ref()),
                None,
            ),
        },
        SourceKind::Serial(t) => (
            Ok(formats::read_receipts_at(&bytes, &t.rules, captured)),
            Some(&t.rules),
        ),
        // A capture file of a network or device source is its raw stream, as for serial.
        SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
            let rules = src.receipt_rules().expect("stream sources read receipts");
            (
                Ok(formats::read_receipts_at(&bytes, rules, captured)),
                Some(rules),
            )
        }
    };
    let parsed = parsed.map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    // The text goes to stdout with the orders (`parse --text > out.txt` saves
    // it); warnings and errors about it go to stderr.
    let mut out = std::io::stdout().lock();
    if text {
        match rules {
            Some(rules) => {
                for (i, r) in crate::capture::receipt::split_bytes(&bytes, rules)
                    .iter()
                    .enumerate()
                {
                    let _ = writeln!(
                        out,
                        "── receipt {} (bytes {}..{}, ended by {:?}) ──\n{}",
                        i + 1,
                        r.stream_offset,
                        r.stream_offset + r.raw.len() as u64,
                        r.ended_by,
                        r.render_numbered()
                    );
                }
            }
            None => eprintln!(
                "(--text shows receipts; {} is not a receipt file)",
                file.display()
            ),
        }
    }
    let mut orders = parsed.orders;
    if stamp {
        for o in orders.iter_mut() {
            crate::stamp::stamp(o, &src.identity);
        }
    }
    if json {
        super::print_json(&mut out, &orders)?;
    } else {
        for o in &orders {
            let _ = writeln!(
                out,
                "{} {} {} {} paid {} ({} line(s))",
                o.order_no,
                crate::order::format_time(&o.order_time),
                o.kind.as_str(),
                o.cashier.as_deref().unwrap_or("-"),
                o.paid,
                o.lines.len()
            );
            for l in &o.lines {
                let _ = writeln!(
                    out,
                    "    {} {} × {} @ {} = {}",
                    l.code, l.name, l.qty, l.price, l.amount
                );
            }
        }
        let _ = writeln!(out, "{} order(s)", orders.len());
    }
    for w in &parsed.warnings {
        eprintln!("{}: warning: {w}", file.display());
    }
    for e in &parsed.errors {
        eprintln!("{}: {e}", file.display());
    }
    if let (Some(expected), Some(path)) = (&expected, expect) {
        let got = serde_json::to_value(&orders).map_err(anyhow::Error::from)?;
        let diffs = crate::expect::differences(&got, expected);
        for d in &diffs {
            eprintln!("{}: {d}", path.display());
        }
        if !parsed.errors.is_empty() {
            // Unreadable receipts explain the missing orders: exit 4, as without --expect.
        } else if diffs.is_empty() {
            eprintln!("{}: every order as expected", path.display());
        } else {
            return Err(CliError::Differs(format!(
                "{}: {} difference(s) from {}",
                file.display(),
                diffs.len(),
                path.display()
            )));
        }
    }
    if parsed.errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::BadInput(format!(
            "{}: {} order(s) could not be read",
            file.display(),
            parsed.errors.len()
        )))
    }
}
