//! Where the container's supervision tree lives this boot. The init puts the
//! scandir and its run directory in `/run` when it can, and on the volume
//! when `/run` is read-only, not writable by the user the container runs as,
//! or noexec (the scandir also when `/run` is FUSE). Processes the init
//! starts learn the places from
//! `HERMES_SCANDIR`/`HERMES_RUN_DIR`; a `docker exec` does not inherit them,
//! so the init also records them in `HERMES_HOME/.hermes-runtime`. A client
//! believes that pointer only when it was written in this container (same
//! host name), the volume lock is held (the tree is alive) and it names
//! absolute directories.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::dirfd::Dir;
use crate::fsutil::{self, Durability, FsError};

/// The pointer's name in `HERMES_HOME`.
pub const POINTER_FILE: &str = ".hermes-runtime";
/// Per-container runtime directories on the volume, by host name.
pub const VOLUME_RUN_DIR: &str = ".hermes-run";
/// In the run directory once the init is bringing the tree down (it is
/// emptied at every boot): a gateway's finish script reads it.
pub const STOPPING_FILE: &str = "stopping";

/// Whether the container's init is bringing the tree down: the
/// [`STOPPING_FILE`] in the run directory of this process's environment.
pub fn container_stopping() -> bool {
    std::env::var_os("HERMES_RUN_DIR")
        .is_some_and(|dir| fsutil::symlink_metadata(&Path::new(&dir).join(STOPPING_FILE)).is_ok())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    pub host: String,
    pub scandir: PathBuf,
    pub run_dir: PathBuf,
}

impl Places {
    fn render(&self) -> String {
        format!(
            "host={}\nscandir={}\nrun_dir={}\n",
            self.host,
            self.scandir.display(),
            self.run_dir.display()
        )
    }

    fn parse(text: &str) -> Option<Places> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .filter(|v| !v.is_empty())
        };
        let path = |key: &str| Some(PathBuf::from(field(key)?)).filter(|p| p.is_absolute());
        Some(Places {
            host: field("host")?.to_string(),
            scandir: path("scandir")?,
            run_dir: path("run_dir")?,
        })
    }
}

/// This container's host name (Docker: the short container id), as a file name.
pub fn host_name() -> String {
    fsutil::read_to_string(Path::new("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/') && !h.starts_with('.'))
        .unwrap_or_else(|| "container".to_string())
}

/// Record `places` in the volume (through the home's handle: never a link).
/// Not synced: it speaks of this boot alone, and after a crash no client
/// believes it (the volume lock is no longer held).
pub fn record(home: &Dir, places: &Places) -> Result<(), FsError> {
    home.write_file(
        OsStr::new(POINTER_FILE),
        places.render().as_bytes(),
        0o644,
        Durability::Volatile,
    )
}

/// The places recorded in `home`, if they are this container's and alive.
pub fn recorded(home: &Path) -> Option<Places> {
    let text = fsutil::read_no_follow(&home.join(POINTER_FILE)).ok()?;
    let places = Places::parse(&String::from_utf8_lossy(&text))?;
    let alive = crate::volume_lock::holder(home).is_some();
    let dirs = places.scandir.is_dir() && places.run_dir.is_dir();
    (places.host == host_name() && alive && dirs).then_some(places)
}

/// `$HERMES_SCANDIR`, else this container's recorded scandir, else `default`.
pub fn scandir(home: Option<&Path>, default: PathBuf) -> PathBuf {
    from_env_or_pointer("HERMES_SCANDIR", home, |p| p.scandir).unwrap_or(default)
}

/// `$HERMES_RUN_DIR`, else this container's recorded run directory, else `default`.
pub fn run_dir(home: Option<&Path>, default: PathBuf) -> PathBuf {
    from_env_or_pointer("HERMES_RUN_DIR", home, |p| p.run_dir).unwrap_or(default)
}

fn from_env_or_pointer(
    var: &str,
    home: Option<&Path>,
    pick: fn(Places) -> PathBuf,
) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    home.and_then(recorded).map(pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume_lock::{self, Owner};
    use std::os::fd::AsRawFd;

    /// Hold the volume lock in a forked child (record locks belong to a
    /// process: the test process itself must not hold it); returns its pid.
    fn hold_in_child(home: &Path) -> libc::pid_t {
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        // SAFETY: nextest runs each test in its own single-threaded process;
        // the child takes the lock, reports and waits to be killed.
        match unsafe { libc::fork() } {
            0 => {
                let lock = volume_lock::acquire(&Dir::open(home).unwrap(), &Owner::current(), None);
                let _fd = lock.unwrap().leak();
                let _ = nix::unistd::write(&ready_w, b"x");
                unsafe { libc::pause() };
                unsafe { libc::_exit(0) }
            }
            pid => {
                drop(ready_w);
                let mut buf = [0u8; 1];
                assert_eq!(nix::unistd::read(ready_r.as_raw_fd(), &mut buf).unwrap(), 1);
                pid
            }
        }
    }

    #[test]
    fn a_pointer_counts_only_while_its_tree_holds_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let home = Dir::open(dir.path()).unwrap();
        let places = Places {
            host: host_name(),
            scandir: dir.path().to_path_buf(),
            run_dir: dir.path().to_path_buf(),
        };
        record(&home, &places).unwrap();
        // Nobody holds the volume: a pointer left by a dead container.
        assert_eq!(recorded(dir.path()), None);
        let holder = hold_in_child(dir.path());
        assert_eq!(recorded(dir.path()), Some(places.clone()));
        // Written by another container on the same volume.
        let other = Places {
            host: "elsewhere".into(),
            ..places.clone()
        };
        record(&home, &other).unwrap();
        assert_eq!(recorded(dir.path()), None);
        // A place that is not a directory.
        let gone = Places {
            scandir: dir.path().join("missing"),
            ..places
        };
        record(&home, &gone).unwrap();
        assert_eq!(recorded(dir.path()), None);
        // SAFETY: kills and reaps the child forked above.
        unsafe {
            libc::kill(holder, libc::SIGKILL);
            libc::waitpid(holder, std::ptr::null_mut(), 0);
        }
    }

    #[test]
    fn parsing_wants_every_field_and_absolute_paths() {
        let p = Places::parse("host=h\nscandir=/a\nrun_dir=/b\n").unwrap();
        assert_eq!(p.scandir, Path::new("/a"));
        assert!(Places::parse("host=h\nscandir=a\nrun_dir=/b\n").is_none());
        assert!(Places::parse("scandir=/a\nrun_dir=/b\n").is_none());
    }
}
