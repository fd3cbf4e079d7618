//! `tillrelay reparse`: the last step of the template workflow at the till. Once a
//! template is fixed, it runs the current templates over what the journal kept
//! unparsed (or over the entries named).
//!
//! Invariants:
//! - It never makes a second copy of an order: orders go through the same
//!   (source, order_no) uniqueness as live capture.
//! - It reads the journal page by page, so memory does not grow with the journal.

use crate::capture::formats::read_receipts;
use crate::capture::receipt::parse_one;
use crate::capture::template::Parsed;
use crate::config::Config;
use crate::outbox::{CaptureKind, Outbox};
use crate::stamp::stamp;

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
            let Some(rules) = src.receipt_rules() else {
                eprintln!(
                    "journal entry {}: source {} has no receipt template; skipped",
                    e.id, src.identity.name
                );
                continue;
            };
            let (mut orders, errors) = match e.kind {
                CaptureKind::Receipt => match parse_one(&e.raw, rules).1 {
                    Ok(Parsed::Order(o)) => {
                        if let Some(note) = rules.unchecked_totals(&o) {
                            eprintln!("journal entry {}: warning: {note}", e.id);
                        }
                        (vec![*o], vec![])
                    }
                    Ok(_) => (vec![], vec![]),
                    Err(err) => (vec![], vec![err.to_string()]),
                },
                CaptureKind::File => {
                    let p = read_receipts(&e.raw, rules);
                    (p.orders, p.errors.iter().map(|x| x.to_string()).collect())
                }
            };
            for o in orders.iter_mut() {
                stamp(o, &src.identity);
            }
            let error = (!errors.is_empty()).then(|| errors.join("\n"));
            let r = ob.reparsed(e.id, &src.identity.name, &orders, error.as_deref())?;
            report.entries += 1;
            report.orders += r.new;
            report.duplicates += r.duplicates.len();
            if let Some(err) = &error {
                report.still_unparsed += 1;
                eprintln!(
                    "journal entry {} ({}): still not readable: {err}",
                    e.id, src.identity.name
                );
            }
        }
    }
    Ok(report)
}
