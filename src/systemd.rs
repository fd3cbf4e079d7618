//! Talking to systemd: the `sd_notify` protocol (READY, WATCHDOG, STOPPING, STATUS).
//!
//! The unit (`systemd/tillrelay.service`) is `Type=notify` with `WatchdogSec=`: systemd
//! counts the agent as started only once it says `READY=1` (every source
//! loop running), restarts it when the `WATCHDOG=1` pings stop (a stuck pipeline), and expects
//! `STOPPING=1` when it begins to drain.
//!
//! The protocol is one datagram per message to the unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace); `WATCHDOG_USEC` gives the watchdog
//! timeout and `WATCHDOG_PID`, when set, the one process it applies to
//! (`sd_watchdog_enabled(3)`). It is a few lines over std, so no C library is linked.
//!
//! Invariants:
//! - Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so the same binary runs
//!   by hand, in tests and under the service manager.
//! - Nothing here ever fails or panics the caller: telling systemd is best effort. A
//!   failed send is logged (a warning the first time, then at debug level, so a vanished
//!   socket does not flood the journal from the watchdog loop).
//! - A status text is sent on one line: newlines would start new assignments.
//! - The daemon reads the environment once ([`Notifier::from_env`]); a [`Notifier`]
//!   can also take its inputs explicitly, so tests need not touch the process
//!   environment.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where notifications go: a socket file, or a name in Linux's abstract namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A handle on the service manager, or on nothing when not run by one.
#[derive(Debug)]
pub struct Notifier {
    address: Option<Address>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    /// A notifier that does nothing (not run by systemd).
    #[cfg(test)]
    pub fn disabled() -> Notifier {
        Notifier {
            address: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` of this process.
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var_os(name);
        Notifier::from_vars(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// Builds a notifier from the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID` as systemd would have set them, for the process `own_pid`.
    ///
    /// Values systemd would not produce (a relative socket path, a non-numeric
    /// timeout) leave that part disabled rather than guessed at.
    pub fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        own_pid: u32,
    ) -> Notifier {
        let address = notify_socket.and_then(parse_address);
        // A watchdog without a socket to ping is no watchdog.
        let watchdog = address
            .as_ref()
            .and_then(|_| parse_watchdog(watchdog_usec, watchdog_pid, own_pid));
        Notifier {
            address,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether a service manager is listening.
    #[cfg(test)]
    pub fn is_enabled(&self) -> bool {
        self.address.is_some()
    }

    /// `READY=1`: start-up is complete (database open, sources running).
    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// `STOPPING=1`: shutdown has begun; the agent is draining.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// `WATCHDOG=1`: the work loop is alive. Call it from the loop that does the work,
    /// at least every [`Notifier::watchdog_interval`], so that only a stuck loop (not a
    /// busy one) misses it.
    pub fn watchdog_ping(&self) {
        if self.watchdog.is_some() {
            self.notify("WATCHDOG=1");
        }
    }

    /// How often to ping: half the watchdog timeout, as `sd_watchdog_enabled(3)`
    /// advises. `None` when there is no watchdog for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// `STATUS=…`: one line shown by `systemctl status`.
    pub fn status(&self, text: &str) {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.notify(&format!("STATUS={line}"));
    }

    fn notify(&self, message: &str) {
        let Some(address) = &self.address else {
            return;
        };
        if let Err(e) = send(address, message) {
            if self.warned.swap(true, Ordering::Relaxed) {
                log::debug!("systemd notify {message:?} failed: {e}");
            } else {
                log::warn!(
                    "cannot notify systemd ({message:?}): {e}; further failures are logged at debug level"
                );
            }
        }
    }
}

fn parse_address(value: &OsStr) -> Option<Address> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Some(Address::Path(PathBuf::from(OsString::from(value)))),
        Some(b'@') if bytes.len() > 1 => Some(Address::Abstract(bytes[1..].to_vec())),
        _ => None,
    }
}

fn parse_watchdog(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    // Set by systemd when the variable may be inherited by children: only the named
    // process owes the pings. Unset means this process.
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

fn send(address: &Address, message: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let sent = match address {
        Address::Path(path) => socket.send_to(message.as_bytes(), path)?,
        Address::Abstract(name) => send_abstract(&socket, name, message)?,
    };
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram truncated",
        ))
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &str) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message.as_bytes(), &address)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service manager's end: a datagram socket of the test's own.
    struct Manager {
        _dir: tempfile::TempDir,
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl Manager {
        fn bind() -> Manager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            // Only so a broken sender fails the test instead of hanging it.
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Manager {
                _dir: dir,
                path,
                socket,
            }
        }

        fn notifier(&self, usec: Option<&str>) -> Notifier {
            Notifier::from_vars(
                Some(self.path.as_os_str()),
                usec.map(OsStr::new),
                None,
                std::process::id(),
            )
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        fn pending(&self) -> Option<String> {
            self.socket.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            let got = self
                .socket
                .recv(&mut buf)
                .ok()
                .map(|n| String::from_utf8(buf[..n].to_vec()).unwrap());
            self.socket.set_nonblocking(false).unwrap();
            got
        }
    }

    #[test]
    fn each_call_sends_its_assignment() {
        let manager = Manager::bind();
        let notifier = manager.notifier(Some("4000000"));
        assert!(notifier.is_enabled());
        notifier.ready();
        assert_eq!(manager.recv(), "READY=1");
        notifier.watchdog_ping();
        assert_eq!(manager.recv(), "WATCHDOG=1");
        notifier.status("3 orders queued");
        assert_eq!(manager.recv(), "STATUS=3 orders queued");
        notifier.stopping();
        assert_eq!(manager.recv(), "STOPPING=1");
        assert_eq!(manager.pending(), None);
    }

    #[test]
    fn status_stays_on_one_line() {
        let manager = Manager::bind();
        manager
            .notifier(None)
            .status("upload failed:\nREADY=1\r\nagain");
        assert_eq!(manager.recv(), "STATUS=upload failed: READY=1  again");
    }

    #[test]
    fn no_watchdog_pings_without_a_watchdog() {
        let manager = Manager::bind();
        let notifier = manager.notifier(None);
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.watchdog_ping();
        notifier.ready();
        // The ping was not sent: the first datagram is READY.
        assert_eq!(manager.recv(), "READY=1");
        assert_eq!(manager.pending(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_names_are_reached() {
        let name = format!(
            "tillrelay-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        );
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes());
        use std::os::linux::net::SocketAddrExt;
        let socket = UnixDatagram::bind_addr(&address.unwrap()).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let notifier = Notifier::from_vars(
            Some(OsStr::new(&format!("@{name}"))),
            None,
            None,
            std::process::id(),
        );
        notifier.ready();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_vanished_manager_does_not_fail_the_caller() {
        let manager = Manager::bind();
        let notifier = manager.notifier(Some("1000000"));
        drop(manager); // socket closed, its directory removed
        notifier.ready();
        notifier.watchdog_ping();
        notifier.watchdog_ping();
        notifier.stopping();
        assert!(notifier.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn without_notify_socket_everything_is_a_no_op() {
        let notifier = Notifier::from_vars(None, Some(OsStr::new("1000000")), None, 1);
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready();
        notifier.watchdog_ping();
        assert!(!notifier.warned.load(Ordering::Relaxed));
        assert!(!Notifier::disabled().is_enabled());
    }

    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        const OWN: u32 = 4242;
        // (WATCHDOG_USEC, WATCHDOG_PID, expected interval)
        let cases: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (Some("500000"), None, Some(Duration::from_millis(250))),
            (
                Some("30000000"),
                Some("4242"),
                Some(Duration::from_secs(15)),
            ),
            (Some("30000000"), Some("4243"), None),
            (Some("30000000"), Some("not-a-pid"), None),
            (Some("0"), None, None),
            (Some("-5"), None, None),
            (Some("30s"), None, None),
            (Some(""), None, None),
            (None, Some("4242"), None),
            (Some("1"), None, Some(Duration::from_nanos(500))),
        ];
        for (usec, pid, expected) in cases {
            let notifier = Notifier::from_vars(
                Some(OsStr::new("/run/systemd/notify")),
                usec.map(OsStr::new),
                pid.map(OsStr::new),
                OWN,
            );
            assert_eq!(
                notifier.watchdog_interval(),
                *expected,
                "WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}"
            );
        }
    }

    #[test]
    fn notify_socket_values() {
        let cases: &[(&str, Option<Address>)] = &[
            (
                "/run/systemd/notify",
                Some(Address::Path("/run/systemd/notify".into())),
            ),
            (
                "@/org/systemd/x",
                Some(Address::Abstract(b"/org/systemd/x".to_vec())),
            ),
            ("@", None),
            ("", None),
            ("relative/notify", None),
        ];
        for (value, expected) in cases {
            assert_eq!(&parse_address(OsStr::new(value)), expected, "{value:?}");
        }
    }
}
