//! Logging setup: log + simplelog to stderr.
//!
//! Under systemd (`JOURNAL_STREAM` is set) lines carry no time stamp, since journald
//! adds its own. Only tillrelay's own records are shown, so a dependency's debug
//! output never prints request details. No log line anywhere carries a secret: secrets
//! are [`crate::secret::Secret`]s, which print as `***`.

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

/// Installs the logger once; a second call is ignored. `TILLRELAY_LOG` overrides the
/// configured level (e.g. `TILLRELAY_LOG=debug` while debugging at the till).
pub fn init(level: LevelFilter) {
    let level = std::env::var("TILLRELAY_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(level);
    let mut b = ConfigBuilder::new();
    b.set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("tillrelay");
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.set_time_level(LevelFilter::Off);
    } else {
        b.set_time_format_rfc3339();
    }
    let _ = WriteLogger::init(level, b.build(), std::io::stderr());
}
