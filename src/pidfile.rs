//! The daemon's pid file, `<state_dir>/tillrelay.pid`, and who holds it.
//!
//! The running agent holds a POSIX write lock (`fcntl(F_SETLK)`) on the whole file
//! for its life ([`PidFile::acquire`]); the kernel drops the lock when the process
//! ends, however it ends (SIGKILL, a watchdog abort). The commands that signal the
//! agent (`flush`, `reload`) and `status` ask the kernel who holds the lock
//! ([`holder`], `F_GETLK`): the pid they signal is the one the kernel names, never
//! just what the file says. A file left by an agent that died (its pid since reused
//! by an unrelated process, whose default action for SIGUSR1 and SIGHUP is to die)
//! is unlocked, and reported as "no running agent".
//!
//! Why `fcntl` locks rather than `flock(2)`: `F_GETLK` names the holder's pid, so the
//! file's contents are only for people. Their one pitfall, that closing any
//! descriptor of the file drops the process's lock, does not apply: the daemon opens
//! the file once, here, and never again.
//!
//! Invariant: while [`holder`] returns `Running(pid)`, `pid` is a live process
//! holding the lock, i.e. an agent (short of a pid reused between this check and the
//! signal, which would take a whole wrap of the pid space within microseconds).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The daemon's pid file, in the state dir: for `tillrelay flush` (SIGUSR1) and
/// `tillrelay reload` (SIGHUP).
pub const FILE: &str = "tillrelay.pid";

/// The pid file, locked by this process until dropped (then removed).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    // Held open: closing it releases the lock.
    _file: File,
}

/// Why the pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Another live process (another agent on the same state dir) holds it.
    #[error("{path} is held by another running agent (pid {pid})")]
    Held { path: PathBuf, pid: i32 },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Who holds the pid file, as far as the kernel knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// An agent runs with this pid (it holds the lock).
    Running(i32),
    /// The file exists but no process holds its lock: left by an agent that ended
    /// without removing it. It names `pid`, which must not be signalled.
    Stale(Option<i32>),
    /// No pid file.
    Missing,
}

fn lock_struct(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (whole file from 0).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as _;
    l.l_whence = libc::SEEK_SET as _;
    l
}

impl PidFile {
    /// Takes the lock on `path` (creating the file) and writes this process's pid in
    /// it. The file is locked before it is rewritten, so a command never finds a
    /// locked file naming another process.
    pub fn acquire(path: &Path) -> Result<PidFile, AcquireError> {
        let io_err = |source| AcquireError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io_err)?;
        let l = lock_struct(libc::F_WRLCK);
        // SAFETY: a valid descriptor and a valid flock struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &l) } != 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
                let pid = match holder_of(&file) {
                    Ok(Some(pid)) => pid,
                    _ => 0,
                };
                return Err(AcquireError::Held {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            return Err(io_err(e));
        }
        file.set_len(0).map_err(io_err)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_err)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no command sees an unlocked file of ours.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid of the process holding a write lock that conflicts with ours on `file`,
/// or `None` when the file is not locked.
fn holder_of(file: &File) -> io::Result<Option<i32>> {
    let mut l = lock_struct(libc::F_WRLCK);
    // SAFETY: a valid descriptor and a valid flock struct the kernel fills in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((l.l_type as libc::c_int != libc::F_UNLCK).then_some(l.l_pid))
}

/// Who holds the pid file at `path`. An error is a file that exists but cannot be
/// read (permissions: the state dir is the agent's).
pub fn holder(path: &Path) -> io::Result<Holder> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holder::Missing),
        Err(e) => return Err(e),
    };
    match holder_of(&file)? {
        // 0: the holder lives in another pid namespace; this process cannot signal
        // it by pid.
        Some(pid) if pid > 0 => Ok(Holder::Running(pid)),
        Some(_) => Err(io::Error::other(format!(
            "{} is held by a process outside this pid namespace",
            path.display()
        ))),
        None => {
            let named = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            Ok(Holder::Stale(named))
        }
    }
}

/// The running agent's pid, if one holds the pid file in `state_dir`.
pub fn running_pid(state_dir: &Path) -> Option<i32> {
    match holder(&state_dir.join(FILE)) {
        Ok(Holder::Running(pid)) => Some(pid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_held_file_names_a_running_agent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tillrelay.pid");
        assert_eq!(holder(&path).unwrap(), Holder::Missing);
        // A file left behind, naming a live process (this one) that holds no lock.
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(
            holder(&path).unwrap(),
            Holder::Stale(Some(std::process::id() as i32))
        );
        std::fs::write(&path, "not a pid").unwrap();
        assert_eq!(holder(&path).unwrap(), Holder::Stale(None));
        // Taken: rewritten with our pid, and unlinked on drop. (A process does not
        // conflict with its own fcntl lock, so holding it is checked from a child in
        // tests/reload.rs.)
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(held);
        assert!(!path.exists());
    }
}
