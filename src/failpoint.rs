//! Failpoints: named places where a test can make the real binary die or hang on
//! purpose, to prove the crash-safety invariants and the watchdog with real crashes
//! and real hangs rather than simulations.
//!
//! `TILLRELAY_FAILPOINT=<name>` makes [`hit`] kill the process with SIGKILL when the
//! named point is reached; `TILLRELAY_FAILPOINT=<name>:hang` makes the thread that
//! reaches it hang for ever instead (its loop stops beating, so the daemon stops
//! pinging the systemd watchdog and systemd kills and restarts the service).
//! `TILLRELAY_FAILPOINT_ONCE=<file>` fires the point only if `<file>` can be created
//! (it must not exist yet): once across restarts, so that the agent systemd restarts
//! with the same environment runs on. Unset (always, in production), a hit costs one
//! load of a cached value. Points:
//! - `folder.after_commit`: a file's orders are committed, the file is not yet moved.
//! - `serial.after_commit`: a receipt is journalled, the next one is not.
//! - `wdt.after_push`: Wangdiantong answered a push, its outcome is not yet kept.

use std::sync::OnceLock;

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Kill,
    Hang,
}

struct Armed {
    name: String,
    action: Action,
    once: Option<std::path::PathBuf>,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn parse(spec: &str, once: Option<String>) -> Armed {
    let (name, action) = match spec.strip_suffix(":hang") {
        Some(n) => (n, Action::Hang),
        None => (spec, Action::Kill),
    };
    Armed {
        name: name.to_string(),
        action,
        once: once.filter(|s| !s.is_empty()).map(Into::into),
    }
}

pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| {
        std::env::var("TILLRELAY_FAILPOINT")
            .ok()
            .map(|spec| parse(&spec, std::env::var("TILLRELAY_FAILPOINT_ONCE").ok()))
    });
    let Some(a) = armed.as_ref().filter(|a| a.name == name) else {
        return;
    };
    if let Some(marker) = &a.once {
        let first = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok();
        if !first {
            return;
        }
    }
    match a.action {
        Action::Kill => {
            log::error!("failpoint {name}: killing the process (test)");
            // SAFETY: raise() with a valid signal number has no preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
        Action::Hang => {
            log::error!("failpoint {name}: this loop hangs for ever (test)");
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_its_point_and_what_it_does() {
        let a = parse("folder.after_commit", None);
        assert_eq!(
            (a.name.as_str(), a.action),
            ("folder.after_commit", Action::Kill)
        );
        let a = parse("folder.after_commit:hang", Some("/x/once".into()));
        assert_eq!(
            (a.name.as_str(), a.action),
            ("folder.after_commit", Action::Hang)
        );
        assert_eq!(a.once, Some("/x/once".into()));
        assert_eq!(parse("x", Some(String::new())).once, None);
    }
}
