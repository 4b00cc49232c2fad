//! One supervision tree per `HERMES_HOME`. The container init and
//! `hermes supervise` take an exclusive lock on `HERMES_HOME/.hermes.lock`
//! before they write anything, and hold it for the life of the tree: the
//! container's init (PID 1 for the container's life, `s6-svscan` its child),
//! or the process `hermes supervise` execs into `s6-svscan` on a host. It is
//! a POSIX record lock, owned by that one process: released by the kernel
//! when it dies, SIGKILL included, so a `docker restart` or a `kill -9`
//! never leaves a stale owner, and never held by its children, which may
//! outlive it. After taking it, the holder
//! writes who it is into the file, so a refused second tree can name it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};

use crate::dirfd::Dir;
use crate::fsutil::{self, FsError};

/// The lock file's name in `HERMES_HOME`.
pub const LOCK_FILE: &str = ".hermes.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{home} is in use by another hermes ({holder}): one supervision tree per volume; \
         stop that one first, or give this one its own volume"
    )]
    Held { home: PathBuf, holder: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Who holds the lock, as written into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    /// Docker's container id when running in one.
    pub container: Option<String>,
    pub pid: u32,
    /// Milliseconds since the epoch.
    pub since_ms: u64,
}

impl Owner {
    /// This process, now.
    pub fn current() -> Owner {
        let host = fsutil::read_to_string(Path::new("/proc/sys/kernel/hostname"))
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        let container = fsutil::read_to_string(Path::new("/proc/self/mountinfo"))
            .ok()
            .and_then(|m| container_id(&m));
        Owner {
            host,
            container,
            pid: std::process::id(),
            since_ms: crate::state::now_ms(),
        }
    }

    /// One line: `host H, container C, pid P, since T`.
    pub fn line(&self) -> String {
        let container = self
            .container
            .as_deref()
            .map(|c| format!(", container {}", &c[..c.len().min(12)]))
            .unwrap_or_default();
        format!(
            "host {}{container}, pid {}, since {}",
            self.host,
            self.pid,
            crate::state::utc_timestamp(self.since_ms)
        )
    }
}

/// Docker bind-mounts `/etc/hostname` from `…/containers/<64 hex>/hostname`.
fn container_id(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let start = line.find("/containers/")? + "/containers/".len();
        let id: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        (id.len() == 64).then_some(id)
    })
}

/// The held lock: a POSIX record lock (`fcntl(F_SETLK)`) on the whole file.
/// Such a lock belongs to the process: the descriptor is close-on-exec, so
/// a child's `exec` never carries it; it survives this process's own `exec`
/// only when asked (`keep_across_exec`); it is never inherited by children
/// (so no gateway can hold the volume, or unlock it, after the tree is gone)
/// and is released by the kernel when the process dies, SIGKILL included.
/// Closing any descriptor of the file in the holding process releases it
/// too: nothing else in that process may open the lock file.
#[derive(Debug)]
pub struct VolumeLock {
    file: File,
    path: PathBuf,
}

impl VolumeLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the descriptor open in this process's next `exec` (it is
    /// close-on-exec otherwise, and closing it would release the lock).
    pub fn keep_across_exec(&self) -> Result<(), FsError> {
        nix::fcntl::fcntl(
            self.file.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(drop)
        .map_err(|e| FsError::new("keep open", &self.path, io::Error::from(e)))
    }

    /// Give up the handle without closing it: the lock stays held by this
    /// process (and the program it execs) until it dies.
    pub fn leak(self) -> RawFd {
        self.file.into_raw_fd()
    }
}

/// A whole-file record lock request of `kind` (`F_WRLCK`, `F_UNLCK`).
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value of it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Open (creating) the lock file in `home` without following a link, and
/// give it to `owner` (uid, gid) so a tree of that user can lock it too.
fn open_lock_file(home: &Dir, owner: Option<(u32, u32)>) -> Result<File, FsError> {
    let name = OsStr::new(LOCK_FILE);
    let file = home.open_file(name, OFlag::O_RDWR | OFlag::O_CREAT, 0o644)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| FsError::new("change the owner of", &home.path().join(name), e))?;
    }
    Ok(file)
}

/// Take the lock on `home` or say who holds it. `owner`: when running as
/// root, the service user the file is handed to.
pub fn acquire(
    home: &Dir,
    who: &Owner,
    owner: Option<(u32, u32)>,
) -> Result<VolumeLock, LockError> {
    let path = home.path().join(LOCK_FILE);
    let mut file = open_lock_file(home, owner)?;
    let request = whole_file(libc::F_WRLCK);
    match nix::fcntl::fcntl(file.as_raw_fd(), FcntlArg::F_SETLK(&request)) {
        Ok(_) => {}
        Err(Errno::EAGAIN | Errno::EACCES) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim().to_string();
            return Err(LockError::Held {
                home: home.path().to_path_buf(),
                holder: if holder.is_empty() {
                    "it has not said who it is yet".to_string()
                } else {
                    holder
                },
            });
        }
        Err(e) => return Err(FsError::new("lock", &path, io::Error::from(e)).into()),
    }
    // Not synced: the lock is the kernel's, this is only who to name, and
    // a crash releases the lock whatever the file says.
    let record = || -> io::Result<()> {
        file.set_len(0)?;
        nix::sys::uio::pwrite(&file, format!("{}\n", who.line()).as_bytes(), 0)?;
        Ok(())
    };
    record().map_err(|e| FsError::new("write", &path, e))?;
    Ok(VolumeLock { file, path })
}

/// Who holds the lock on `home` now, if anyone (for clients; never call it
/// in the holding process: closing the file there would release the lock).
pub fn holder(home: &Path) -> Option<String> {
    let dir = Dir::open(home).ok()?;
    let mut file = dir
        .open_file(OsStr::new(LOCK_FILE), OFlag::O_RDONLY, 0)
        .ok()?;
    let mut probe = whole_file(libc::F_WRLCK);
    nix::fcntl::fcntl(file.as_raw_fd(), FcntlArg::F_GETLK(&mut probe)).ok()?;
    if probe.l_type == libc::F_UNLCK as libc::c_short {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str) -> Owner {
        Owner {
            host: host.to_string(),
            container: Some("ab".repeat(32)),
            pid: 7,
            since_ms: 0,
        }
    }

    /// Run `f` in a forked child and return its exit code. Record locks
    /// belong to processes: a conflict needs a second one. nextest runs each
    /// test in its own single-threaded process, so the fork copies no lock
    /// held by another thread.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: see above; the child only runs `f` and exits.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(f()) },
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                libc::WEXITSTATUS(status)
            }
        }
    }

    #[test]
    fn a_second_owner_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = Dir::open(dir.path()).unwrap();
        let first = acquire(&home, &owner("first"), None).unwrap();
        let path = dir.path().to_path_buf();
        let refused = in_child(|| {
            let want = "host first, container abababababab, pid 7, since 1970-01-01T00:00:00.000Z";
            if holder(&path).as_deref() != Some(want) {
                return 2;
            }
            match acquire(&Dir::open(&path).unwrap(), &owner("second"), None) {
                Err(e) => {
                    let text = e.to_string();
                    let named = text.contains(want) && text.contains(&path.display().to_string());
                    // The refused attempt changed nothing.
                    let kept = holder(&path).as_deref() == Some(want);
                    if named && kept {
                        0
                    } else {
                        3
                    }
                }
                Ok(_) => 1,
            }
        });
        assert_eq!(refused, 0);
        drop(first);
        let taken = in_child(|| {
            let ok = holder(&path).is_none()
                && acquire(&Dir::open(&path).unwrap(), &owner("second"), None).is_ok();
            i32::from(!ok)
        });
        assert_eq!(taken, 0);
    }

    #[test]
    fn the_lock_dies_with_its_process_and_is_not_inherited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child takes the lock, forks a grandchild that keeps the
        // descriptor, reports, and waits to be killed.
        let pid = match unsafe { libc::fork() } {
            0 => {
                let lock = acquire(&Dir::open(&path).unwrap(), &owner("child"), None).unwrap();
                lock.keep_across_exec().unwrap();
                let _fd = lock.leak();
                // A grandchild inherits the descriptor but not the lock.
                let grandchild = unsafe { libc::fork() };
                if grandchild == 0 {
                    unsafe { libc::pause() };
                }
                let _ = nix::unistd::write(&ready_w, &grandchild.to_ne_bytes());
                unsafe { libc::pause() };
                unsafe { libc::_exit(0) }
            }
            pid => pid,
        };
        drop(ready_w);
        let mut buf = [0u8; 4];
        assert_eq!(nix::unistd::read(ready_r.as_raw_fd(), &mut buf).unwrap(), 4);
        let grandchild = i32::from_ne_bytes(buf);
        assert!(holder(&path).unwrap().starts_with("host child,"));
        assert!(acquire(&Dir::open(&path).unwrap(), &owner("x"), None).is_err());
        // SAFETY: kills and reaps the child forked above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // The grandchild still has the descriptor, yet the volume is free.
        assert_eq!(holder(&path), None);
        assert!(acquire(&Dir::open(&path).unwrap(), &owner("x"), None).is_ok());
        // SAFETY: the grandchild forked above, identified by the pid it sent.
        unsafe { libc::kill(grandchild, libc::SIGKILL) };
    }

    #[test]
    fn no_program_a_holder_starts_gets_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let lock = acquire(&Dir::open(dir.path()).unwrap(), &owner("h"), None).unwrap();
        let flags = nix::fcntl::fcntl(lock.file.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
        assert!(
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        );
    }

    #[test]
    fn a_link_at_the_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::symlink(&outside, home.join(LOCK_FILE)).unwrap();
        let err = acquire(&Dir::open(&home).unwrap(), &owner("h"), None).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    }

    #[test]
    fn container_ids_come_from_the_hostname_mount() {
        let id = "0123456789abcdef".repeat(4);
        let line = format!(
            "614 600 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda1 rw"
        );
        assert_eq!(container_id(&line), Some(id));
        assert_eq!(container_id("1 2 0:1 / / rw - overlay overlay rw"), None);
    }
}
