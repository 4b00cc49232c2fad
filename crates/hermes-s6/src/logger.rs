//! A slot logger's start (`hermes log-run`, which the logger's `run`
//! execs). s6-log holds a record lock on its directory's `lock` file while
//! it runs. When the logger's s6-supervise is killed, its s6-log lives on:
//! its stdin is the pipe s6-svscan keeps open for the slot, so it never
//! reads an end. The new supervisor's s6-log then fails to take the lock
//! and is restarted every second, for good, with a fatal line each time.
//! So before the logger execs s6-log, a holder of that lock whose parent is
//! not an s6-supervise is ended. It is the one process the s6 backend
//! signals itself: nothing supervises it any more.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hermes_core::fsutil::{self, FsError};
use hermes_core::wait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a holder gets after SIGTERM (s6-log ends after the line it is
/// reading) before SIGKILL, and after SIGKILL before the logger gives up.
const TERM_GRACE: Duration = Duration::from_secs(2);
const KILL_GRACE: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);

/// A holder of the log directory's lock that was ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub pid: i32,
    /// Its name as the kernel has it (`s6-log` for the case this is for).
    pub name: String,
    /// SIGTERM was not enough.
    pub killed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error(transparent)]
    Lock(#[from] FsError),
    #[error("{name} (pid {pid}) holds {lock} and is supervised: another supervision tree logs to the same directory")]
    Supervised {
        lock: PathBuf,
        pid: i32,
        name: String,
    },
    #[error("unable to signal {name} (pid {pid}), which holds {lock}: {source}")]
    Signal {
        lock: PathBuf,
        pid: i32,
        name: String,
        source: nix::Error,
    },
    #[error("{name} (pid {pid}) still holds {lock} after SIGKILL")]
    StillHeld {
        lock: PathBuf,
        pid: i32,
        name: String,
    },
}

/// A process as `/proc` shows it: its name and its parent's pid.
pub trait Procs {
    fn name(&self, pid: i32) -> Option<String>;
    fn parent(&self, pid: i32) -> Option<i32>;
}

/// This machine's `/proc`.
pub struct ProcFs;

impl Procs for ProcFs {
    fn name(&self, pid: i32) -> Option<String> {
        let comm = fsutil::read_to_string(Path::new(&format!("/proc/{pid}/comm"))).ok()?;
        Some(comm.trim_end_matches('\n').to_string())
    }

    fn parent(&self, pid: i32) -> Option<i32> {
        parent_in_stat(&fsutil::read_to_string(Path::new(&format!("/proc/{pid}/stat"))).ok()?)
    }
}

/// The parent's pid in a `/proc/PID/stat` line: `pid (name) state ppid ...`,
/// where the name may hold blanks and parentheses.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// End whoever holds `log_dir`'s lock outside supervision, and wait until
/// the lock is free. `Ok(None)`: nobody held it, the common case, which
/// costs one `open` and one `fcntl`.
pub fn end_unsupervised_holder(
    log_dir: &Path,
    procs: &dyn Procs,
) -> Result<Option<Ended>, LoggerError> {
    let lock = log_dir.join("lock");
    let Some(pid) = fsutil::record_lock_holder(&lock)? else {
        return Ok(None);
    };
    let name = procs.name(pid).unwrap_or_else(|| "a process".to_string());
    if procs
        .parent(pid)
        .and_then(|parent| procs.name(parent))
        .is_some_and(|parent| parent == "s6-supervise")
    {
        return Err(LoggerError::Supervised { lock, pid, name });
    }
    let released = |signal: Signal, grace: Duration| -> Result<bool, LoggerError> {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                return Err(LoggerError::Signal {
                    lock: lock.clone(),
                    pid,
                    name: name.clone(),
                    source,
                })
            }
        }
        let mut failed = None;
        let free = wait::until(
            Instant::now() + grace,
            POLL,
            || match fsutil::record_lock_holder(&lock) {
                Ok(holder) => holder != Some(pid),
                Err(e) => {
                    failed = Some(e);
                    true
                }
            },
        );
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(free),
        }
    };
    if released(Signal::SIGTERM, TERM_GRACE)? {
        return Ok(Some(Ended {
            pid,
            name,
            killed: false,
        }));
    }
    if released(Signal::SIGKILL, KILL_GRACE)? {
        return Ok(Some(Ended {
            pid,
            name,
            killed: true,
        }));
    }
    Err(LoggerError::StillHeld { lock, pid, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// An s6-log on `dir` whose stdin stays open: a logger whose supervisor
    /// is gone.
    fn s6_log(dir: &Path) -> Child {
        let child = Command::new("s6-log")
            .args(["--", "T"])
            .arg(dir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("s6-log (apt-get install s6)");
        let lock = dir.join("lock");
        let locked = wait::until(Instant::now() + Duration::from_secs(10), POLL, || {
            fsutil::record_lock_holder(&lock).unwrap() == Some(child.id() as i32)
        });
        assert!(locked, "s6-log never locked {}", lock.display());
        child
    }

    struct Parent(&'static str);

    impl Procs for Parent {
        fn name(&self, pid: i32) -> Option<String> {
            (pid == 4242)
                .then(|| self.0.to_string())
                .or_else(|| ProcFs.name(pid))
        }
        fn parent(&self, _pid: i32) -> Option<i32> {
            Some(4242)
        }
    }

    #[test]
    fn an_unsupervised_s6_log_holding_the_lock_is_ended_and_the_lock_freed() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        assert_eq!(end_unsupervised_holder(&log_dir, &ProcFs).unwrap(), None);

        let mut orphan = s6_log(&log_dir);
        let pid = orphan.id() as i32;
        let ended = end_unsupervised_holder(&log_dir, &Parent("hermes")).unwrap();
        assert_eq!(
            ended,
            Some(Ended {
                pid,
                name: "s6-log".into(),
                killed: false
            })
        );
        assert!(
            orphan.wait().unwrap().success(),
            "s6-log ends cleanly on SIGTERM"
        );
        assert_eq!(
            fsutil::record_lock_holder(&log_dir.join("lock")).unwrap(),
            None
        );
        assert_eq!(end_unsupervised_holder(&log_dir, &ProcFs).unwrap(), None);
    }

    #[test]
    fn a_holder_under_an_s6_supervise_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = s6_log(dir.path());
        let err = end_unsupervised_holder(dir.path(), &Parent("s6-supervise")).unwrap_err();
        assert!(
            matches!(&err, LoggerError::Supervised { pid, .. } if *pid == logger.id() as i32),
            "{err:?}"
        );
        assert!(
            logger.try_wait().unwrap().is_none(),
            "the logger was signalled"
        );
        logger.kill().unwrap();
        logger.wait().unwrap();
    }

    #[test]
    fn a_name_with_blanks_and_parentheses_does_not_hide_the_parent() {
        assert_eq!(parent_in_stat("77 (s6-log) S 1 77 77 0"), Some(1));
        assert_eq!(parent_in_stat("78 (a) b ) R 4242 78 78 0"), Some(4242));
        assert_eq!(parent_in_stat("79 (cut"), None);
        let me = std::process::id() as i32;
        assert_eq!(ProcFs.parent(me), Some(nix::unistd::getppid().as_raw()));
        assert_eq!(ProcFs.parent(i32::MAX), None);
    }
}
