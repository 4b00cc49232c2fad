//! The profile's gateway lock: one gateway per profile, and `--replace` to
//! take over from the one running.
//!
//! The holder is named from `/proc/locks` (the kernel's own record of who
//! holds the flock on that inode), falling back to `gateway.pid`: the pid file
//! can be stale for a moment while a new holder starts, the lock table cannot.

use std::path::Path;
use std::time::{Duration, Instant};

use hermes_core::fsutil::{self, FileLock};
use hermes_core::home::ProfilePaths;
use hermes_core::wait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::GatewayError;

/// How long `--replace` waits after SIGTERM before it sends SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long it waits after SIGKILL for the kernel to release the lock.
const KILL_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Take the profile lock; with `replace`, stop whoever holds it first.
pub fn acquire(paths: &ProfilePaths, replace: bool) -> Result<FileLock, GatewayError> {
    let lock_path = paths.gateway_lock();
    if let Some(lock) = fsutil::try_lock_exclusive(&lock_path)? {
        return Ok(lock);
    }
    let holder = holder_pid(paths);
    if !replace {
        return Err(GatewayError::AlreadyRunning {
            profile: paths.name.to_string(),
            pid: holder,
            lock: lock_path,
        });
    }
    let pid = holder
        .filter(|&pid| pid > 1 && pid != std::process::id() as i32)
        .ok_or_else(|| GatewayError::ReplaceFailed {
            lock: lock_path.clone(),
            message: "the holder's pid is unknown (no /proc/locks entry and no gateway.pid)"
                .to_string(),
        })?;
    crate::log(&format!(
        "replacing the gateway with pid {pid}: sending SIGTERM"
    ));
    send(pid, Signal::SIGTERM, &lock_path)?;
    if let Some(lock) = wait_for_lock(&lock_path, TERM_GRACE)? {
        return Ok(lock);
    }
    crate::log(&format!(
        "pid {pid} still holds the lock after {} s: sending SIGKILL",
        TERM_GRACE.as_secs()
    ));
    send(pid, Signal::SIGKILL, &lock_path)?;
    wait_for_lock(&lock_path, KILL_GRACE)?.ok_or_else(|| GatewayError::ReplaceFailed {
        lock: lock_path.clone(),
        message: format!("still held after SIGKILL to pid {pid}"),
    })
}

fn send(pid: i32, signal: Signal, lock: &Path) -> Result<(), GatewayError> {
    match kill(Pid::from_raw(pid), signal) {
        // Gone already: the lock is about to be free.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(GatewayError::ReplaceFailed {
            lock: lock.to_path_buf(),
            message: format!("unable to send {signal} to pid {pid}: {errno}"),
        }),
    }
}

fn wait_for_lock(path: &Path, limit: Duration) -> Result<Option<FileLock>, GatewayError> {
    Ok(wait::for_value(Instant::now() + limit, POLL, || {
        fsutil::try_lock_exclusive(path)
    })?)
}

/// Who holds the lock: the kernel's lock table first, then `gateway.pid`.
pub fn holder_pid(paths: &ProfilePaths) -> Option<i32> {
    fsutil::flock_holder(&paths.gateway_lock()).or_else(|| read_pid(&paths.pid_file()))
}

pub fn read_pid(path: &Path) -> Option<i32> {
    fsutil::read_no_follow(path)
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::{HermesHome, ProfileName};

    #[test]
    fn names_this_process_as_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HermesHome::new(dir.path()).profile(&ProfileName::default_profile());
        let _held = acquire(&paths, false).unwrap();
        // No pid file written: the answer comes from the lock table.
        assert_eq!(holder_pid(&paths), Some(std::process::id() as i32));
    }
}
