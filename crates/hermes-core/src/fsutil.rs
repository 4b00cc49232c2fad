//! Filesystem helpers that every writer of hermes state uses: atomic replace,
//! reads and directory creation that refuse symlinks, and advisory locks;
//! and `std::fs`'s plain calls, whose own errors do not say which path failed.
//! Every error here names the path it failed on. Libraries call these, never
//! `std::fs` (clippy's `disallowed-methods` in `clippy.toml`); this module is
//! the one place that may.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
#[error("unable to {op} {path}: {source}")]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

/// `std::fs::metadata` (follows symlinks).
pub fn metadata(path: &Path) -> Result<fs::Metadata, FsError> {
    fs::metadata(path).map_err(|e| FsError::new("stat", path, e))
}

/// `std::fs::symlink_metadata` (a symlink itself).
pub fn symlink_metadata(path: &Path) -> Result<fs::Metadata, FsError> {
    fs::symlink_metadata(path).map_err(|e| FsError::new("lstat", path, e))
}

pub fn read_dir(path: &Path) -> Result<fs::ReadDir, FsError> {
    fs::read_dir(path).map_err(|e| FsError::new("list", path, e))
}

pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("read", path, e))
}

pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    fs::read_to_string(path).map_err(|e| FsError::new("read", path, e))
}

pub fn read_link(path: &Path) -> Result<PathBuf, FsError> {
    fs::read_link(path).map_err(|e| FsError::new("read the link", path, e))
}

pub fn open(path: &Path) -> Result<File, FsError> {
    File::open(path).map_err(|e| FsError::new("open", path, e))
}

/// A plain write in place; state files use [`atomic_write`].
pub fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<(), FsError> {
    fs::write(path, data).map_err(|e| FsError::new("write", path, e))
}

pub fn create_dir(path: &Path) -> Result<(), FsError> {
    fs::create_dir(path).map_err(|e| FsError::new("create", path, e))
}

pub fn create_dir_all(path: &Path) -> Result<(), FsError> {
    fs::create_dir_all(path).map_err(|e| FsError::new("create", path, e))
}

pub fn remove_file(path: &Path) -> Result<(), FsError> {
    fs::remove_file(path).map_err(|e| FsError::new("remove", path, e))
}

pub fn remove_dir(path: &Path) -> Result<(), FsError> {
    fs::remove_dir(path).map_err(|e| FsError::new("remove", path, e))
}

pub fn remove_dir_all(path: &Path) -> Result<(), FsError> {
    fs::remove_dir_all(path).map_err(|e| FsError::new("remove", path, e))
}

/// `std::fs::rename`; the error names the destination.
pub fn rename(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(|e| FsError::new("rename into", to, e))
}

/// A second name for `from`, the file itself if `from` is a link (never followed).
pub fn hard_link(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::hard_link(from, to).map_err(|e| FsError::new("link", to, e))
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), FsError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("chmod", path, e))
}

fn symlink_refused(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link; refusing to follow it",
        path.display()
    ))
}

/// What a replaced file promises after a power loss, once the write returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The new content: the file is fsynced before the rename and its
    /// directory after it.
    Durable,
    /// The old content or the new, never a mix nor an empty file (the file
    /// is fsynced before the rename), but which one is not promised until
    /// the directory is synced ([`sync_dir`]): for what a process reports
    /// about itself, and for a batch whose directories are synced together
    /// once every file is renamed.
    Atomic,
    /// Nothing after a power loss (the old content, the new, an empty file
    /// or none): no fsync at all. Readers still see the old content or the
    /// new, never a mix. Only for a file whose loss is harmless and whose
    /// content a crash makes stale anyway (`gateway.pid`, what the init
    /// writes about this boot alone).
    Volatile,
}

/// Write `data` to `path` so that readers see the old content or the new, never a mix,
/// and the new content is on disk when this returns: [`replace`], [`Durability::Durable`].
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<(), FsError> {
    replace(path, data, mode, Durability::Durable)
}

/// Replace `path` with `data` through a temp file in the same directory:
/// write, fsync unless [`Durability::Volatile`], rename, then fsync the
/// directory if `durability` asks.
pub fn replace(path: &Path, data: &[u8], mode: u32, durability: Durability) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(data)?;
        // The mode argument is filtered by the umask; the file must end up exactly `mode`.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        give_to_directory_owner(&file, dir)?;
        match durability {
            Durability::Volatile => Ok(()),
            Durability::Durable | Durability::Atomic => file.sync_all(),
        }
    };
    if let Err(err) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("write", &tmp, err));
    }
    // rename replaces a symlink at `path` rather than writing through it.
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FsError::new("rename into", path, e)
    })?;
    match durability {
        Durability::Durable => sync_dir(dir),
        Durability::Atomic | Durability::Volatile => Ok(()),
    }
}

/// Root writing into a directory that belongs to someone else (a profile of
/// the service user, say `hermes gateway restart` run with sudo) hands the file
/// to that owner, so the owner's gateway can still read what root wrote.
fn give_to_directory_owner(file: &File, dir: &Path) -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = fs::metadata(dir)?;
    if meta.uid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))
}

pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("sync directory", dir, e))
}

/// Read a whole file without following a symlink at its last component.
pub fn read_no_follow(path: &Path) -> Result<Vec<u8>, FsError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                FsError::new("read", path, symlink_refused(path))
            } else {
                FsError::new("read", path, e)
            }
        })?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| FsError::new("read", path, e))?;
    Ok(buf)
}

/// Create `dir` (and parents) with `mode`; an existing symlink anywhere we create is refused.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), FsError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(FsError::new("use directory", dir, symlink_refused(dir)))
        }
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(FsError::new(
                "use directory",
                dir,
                io::Error::other("exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(FsError::new("inspect", dir, e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ensure_dir(dir, mode),
        Err(e) => Err(FsError::new("create directory", dir, e)),
    }
}

/// Create `dir` below `root` (which must exist) with `mode`, refusing a symlink
/// at any component between them, so nothing is ever followed out of `root`.
pub fn ensure_dir_under(root: &Path, dir: &Path, mode: u32) -> Result<(), FsError> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        FsError::new(
            "create directory",
            dir,
            io::Error::other(format!("not below {}", root.display())),
        )
    })?;
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FsError::new("use directory", &path, symlink_refused(&path)))
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(FsError::new(
                    "use directory",
                    &path,
                    io::Error::other("exists and is not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::DirBuilder::new().mode(mode).create(&path) {
                    Ok(()) => {}
                    // Created concurrently: check it again on the next pass.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return ensure_dir_under(root, dir, mode)
                    }
                    Err(e) => return Err(FsError::new("create directory", &path, e)),
                }
            }
            Err(e) => return Err(FsError::new("inspect", &path, e)),
        }
    }
    Ok(())
}

/// An exclusive advisory lock held until dropped.
pub struct FileLock {
    _file: Flock<File>,
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::new("open lock file", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    give_to_directory_owner(&file, dir).map_err(|e| FsError::new("hand over", path, e))?;
    Ok(file)
}

/// Block until the exclusive lock on `path` is ours.
pub fn lock_exclusive(path: &Path) -> Result<FileLock, FsError> {
    let file = open_lock_file(path)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(|lock| FileLock { _file: lock })
        .map_err(|(_, errno)| FsError::new("lock", path, io::Error::from(errno)))
}

/// Take the lock if nobody holds it; `Ok(None)` when it is held elsewhere.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>, FsError> {
    let file = open_lock_file(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(FileLock { _file: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(FsError::new("lock", path, io::Error::from(errno))),
    }
}

/// Who holds a `flock` on `path`, from the kernel's own record of it
/// (`/proc/locks`, pids as this process's namespace sees them): a pid
/// file can be stale, this table cannot. `None` when nobody does, the
/// table cannot be read, or the holder is outside this pid namespace (the
/// table says 0, which `kill` would take for this process group).
pub fn flock_holder(path: &Path) -> Option<i32> {
    let meta = metadata(path).ok()?;
    let table = read_to_string(Path::new("/proc/locks")).ok()?;
    holder_in_table(&table, meta.dev(), meta.ino())
}

/// Who holds a POSIX record lock (`fcntl`) over any part of `path`, as the
/// kernel answers `F_GETLK`: the pid as this namespace sees it. s6-log
/// locks its directory's `lock` file this way. `Ok(None)` when the file is
/// missing, nobody holds a lock on it, or the holder is outside this pid
/// namespace (the kernel says 0).
pub fn record_lock_holder(path: &Path) -> Result<Option<i32>, FsError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::new("open", path, e)),
    };
    // SAFETY: `flock` is plain data; all-zero is a valid value.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as libc::c_short;
    probe.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start 0, l_len 0: the whole file.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FcntlArg::F_GETLK(&mut probe),
    )
    .map_err(|errno| FsError::new("look for a lock on", path, io::Error::from(errno)))?;
    let held = probe.l_type != libc::F_UNLCK as libc::c_short;
    Ok((held && probe.l_pid > 0).then_some(probe.l_pid))
}

/// Find the FLOCK entry for (dev, inode) in `/proc/locks` text.
/// Lines look like `3: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, device in hex.
fn holder_in_table(table: &str, dev: u64, ino: u64) -> Option<i32> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let wanted = format!("{major:02x}:{minor:02x}:{ino}");
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as "-> FLOCK ..."; they do not hold the lock.
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        (fields.get(5) == Some(&wanted.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
            .filter(|&pid: &i32| pid > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lock_nobody_holds_has_no_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        assert_eq!(record_lock_holder(&lock).unwrap(), None, "missing file");
        fs::write(&lock, "").unwrap();
        assert_eq!(record_lock_holder(&lock).unwrap(), None, "unlocked file");
        // A held one is tested with a real s6-log in hermes-s6's `logger`.
    }

    #[test]
    fn parses_the_kernel_lock_table() {
        let dev = libc::makedev(0xfd, 0x01);
        let table = "1: POSIX  ADVISORY  WRITE 99 fd:01:42 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 777 fd:01:42 0 EOF\n";
        assert_eq!(holder_in_table(table, dev, 42), Some(1234));
        assert_eq!(holder_in_table(table, dev, 43), None);
        let unseen = "1: FLOCK  ADVISORY  WRITE 0 fd:01:42 0 EOF\n";
        assert_eq!(holder_in_table(unseen, dev, 42), None);
    }

    #[test]
    fn names_the_holder_of_a_lock_and_nobody_once_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = try_lock_exclusive(&path).unwrap().expect("free");
        assert_eq!(flock_holder(&path), Some(std::process::id() as i32));
        drop(held);
        assert_eq!(flock_holder(&path), None);
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_write(&path, b"one", 0o600).unwrap();
        atomic_write(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp file left behind");
    }

    #[test]
    fn every_durability_leaves_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let (atomic, durable) = (dir.path().join("a"), dir.path().join("d"));
        let volatile = dir.path().join("v");
        for (path, durability) in [
            (&atomic, Durability::Atomic),
            (&durable, Durability::Durable),
            (&volatile, Durability::Volatile),
        ] {
            replace(path, b"old", 0o600, durability).unwrap();
            replace(path, b"new", 0o644, durability).unwrap();
            assert_eq!(fs::read(path).unwrap(), b"new");
            assert_eq!(
                fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o644
            );
        }
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "temp file left behind");
    }

    #[test]
    fn atomic_write_replaces_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        fs::write(&target, b"precious").unwrap();
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        atomic_write(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn reads_refuse_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_no_follow(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(ensure_dir(&link, 0o700).is_err());
    }

    #[test]
    fn ensure_dir_under_refuses_a_symlinked_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("p")).unwrap();
        fs::create_dir_all(root.join("logs")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("logs/gateways")).unwrap();
        let err = ensure_dir_under(&root, &root.join("logs/gateways/p"), 0o700).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        ensure_dir_under(&root, &root.join("a/b"), 0o700).unwrap();
        assert!(root.join("a/b").is_dir());
        assert!(ensure_dir_under(&root, Path::new("/elsewhere"), 0o700).is_err());
    }

    #[test]
    fn try_lock_sees_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = try_lock_exclusive(&path).unwrap();
        assert!(held.is_some());
        assert!(try_lock_exclusive(&path).unwrap().is_none());
        drop(held);
        assert!(try_lock_exclusive(&path).unwrap().is_some());
    }
}
