//! Failpoints: named places where a test can make the real binary die on purpose,
//! to prove the crash-safety invariants with real crashes rather than simulations.
//!
//! `TILLRELAY_FAILPOINT=<name>` makes [`hit`] kill the process with SIGKILL when the
//! named point is reached. Unset (always, in production), a hit costs one load of a
//! cached value. Points:
//! - `folder.after_commit`: a file's orders are committed, the file is not yet moved.
//! - `serial.after_commit`: a receipt is journalled, the next one is not.
//! - `wdt.after_push`: Wangdiantong answered a push, its outcome is not yet kept.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("TILLRELAY_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        log::error!("failpoint {name}: killing the process (test)");
        // SAFETY: raise() with a valid signal number has no preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
