//! A directory held open by descriptor, for root working below directories
//! the service user can write. Every operation is relative to the handle and
//! names one entry; walking down opens each component with
//! `O_NOFOLLOW|O_DIRECTORY`, so a symbolic link planted at any component is
//! refused instead of followed, and renaming a component after the walk
//! cannot redirect what is done through the handle.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use crate::fsutil::{Durability, FsError};

/// An open directory and the path it was reached by (for messages only).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What kind of entry a name is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    pub fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// An error for `name` below `dir`; a link met where a directory was expected says so.
fn refused(op: &'static str, path: &Path, e: Errno) -> FsError {
    let source = if e == Errno::ELOOP || e == Errno::ENOTDIR {
        io::Error::other(format!(
            "{} is a symbolic link or not a directory; refusing to follow it",
            path.display()
        ))
    } else {
        io_err(e)
    };
    FsError::new(op, path, source)
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// One plain name: no `/`, not `.` or `..`.
fn check_name(dir: &Path, name: &OsStr) -> Result<(), FsError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(FsError::new(
            "use",
            &dir.join(name),
            io::Error::other("not a plain file name"),
        ));
    }
    Ok(())
}

impl Dir {
    /// Open `path`, refusing a symbolic link at its last component. The
    /// components before it are the administrator's (`HERMES_HOME`, `/run`).
    pub fn open(path: &Path) -> Result<Dir, FsError> {
        let fd = fcntl::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| refused("open directory", path, e))?;
        Ok(Dir {
            // SAFETY: open returned a new descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// Open the absolute `path` from `/`, one component at a time, refusing a
    /// link at any of them: for root re-opening a place below directories
    /// the service user can write.
    pub fn open_no_links(path: &Path) -> Result<Dir, FsError> {
        let rel = path.strip_prefix("/").map_err(|_| {
            FsError::new(
                "open directory",
                path,
                io::Error::other("not an absolute path"),
            )
        })?;
        Dir::open(Path::new("/"))?.open_beneath(rel).map(|mut d| {
            d.path = path.to_path_buf();
            d
        })
    }

    /// Open `path`, creating it (and its parents, with `mode`) when missing.
    pub fn open_or_create(path: &Path, mode: u32) -> Result<Dir, FsError> {
        match Dir::open(path) {
            Err(e) if e.is_not_found() => {
                crate::fsutil::ensure_dir(path, mode)?;
                Dir::open(path)
            }
            other => other,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry `name` opened as a directory, never through a link.
    pub fn open_dir(&self, name: &OsStr) -> Result<Dir, FsError> {
        check_name(&self.path, name)?;
        let path = self.path.join(name);
        let fd = fcntl::openat(Some(self.fd.as_raw_fd()), name, DIR_FLAGS, Mode::empty())
            .map_err(|e| refused("open directory", &path, e))?;
        Ok(Dir {
            // SAFETY: openat returned a new descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path,
        })
    }

    /// Walk `rel` (relative, plain components) one directory at a time.
    pub fn open_beneath(&self, rel: &Path) -> Result<Dir, FsError> {
        self.walk(rel, None)
    }

    /// Like `open_beneath`, creating missing components with `mode`.
    pub fn create_beneath(&self, rel: &Path, mode: u32) -> Result<Dir, FsError> {
        self.walk(rel, Some(mode))
    }

    fn walk(&self, rel: &Path, create: Option<u32>) -> Result<Dir, FsError> {
        let mut dir = self.reopen()?;
        for part in rel.components() {
            let Component::Normal(name) = part else {
                return Err(FsError::new(
                    "open directory",
                    &self.path.join(rel),
                    io::Error::other("only plain components are allowed"),
                ));
            };
            if let Some(mode) = create {
                dir.mkdir(name, mode)?;
            }
            dir = dir.open_dir(name)?;
        }
        Ok(dir)
    }

    /// A second handle on the same directory.
    pub fn reopen(&self) -> Result<Dir, FsError> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| FsError::new("duplicate the handle of", &self.path, e))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    /// Create the directory `name` unless something is there already (which
    /// `open_dir` then checks).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        match stat::mkdirat(
            Some(self.fd.as_raw_fd()),
            name,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(FsError::new(
                "create directory",
                &self.path.join(name),
                io_err(e),
            )),
        }
    }

    /// The entry's metadata, not following a link; `None` when it is absent.
    pub fn stat(&self, name: &OsStr) -> Result<Option<FileStat>, FsError> {
        check_name(&self.path, name)?;
        match stat::fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(FsError::new("inspect", &self.path.join(name), io_err(e))),
        }
    }

    /// The directory's own metadata.
    pub fn stat_self(&self) -> Result<FileStat, FsError> {
        stat::fstat(self.fd.as_raw_fd()).map_err(|e| FsError::new("inspect", &self.path, io_err(e)))
    }

    /// The names in the directory (without `.` and `..`).
    pub fn names(&self) -> Result<Vec<std::ffi::OsString>, FsError> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| FsError::new("list", &self.path, e))?;
        let mut dir =
            nix::dir::Dir::from(fd).map_err(|e| FsError::new("list", &self.path, io_err(e)))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| FsError::new("list", &self.path, io_err(e)))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        Ok(names)
    }

    /// Remove the entry `name`: a link or file is unlinked (never followed),
    /// a directory emptied through handles and removed. Absent is fine.
    pub fn remove(&self, name: &OsStr) -> Result<(), FsError> {
        let Some(st) = self.stat(name)? else {
            return Ok(());
        };
        let path = self.path.join(name);
        if Kind::of(&st) == Kind::Dir {
            match self.open_dir(name) {
                Ok(sub) => sub.empty()?,
                // Replaced by a link or a file since the stat: unlink that instead.
                Err(_) => return self.unlink(name, false),
            }
            return self.unlink(name, true).or_else(|e| {
                if e.source.raw_os_error() == Some(libc::ENOTDIR) {
                    self.unlink(name, false)
                } else {
                    Err(FsError::new("remove", &path, e.source))
                }
            });
        }
        self.unlink(name, false)
    }

    fn unlink(&self, name: &OsStr, dir: bool) -> Result<(), FsError> {
        let flag = if dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unistd::unlinkat(Some(self.fd.as_raw_fd()), name, flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(FsError::new("remove", &self.path.join(name), io_err(e))),
        }
    }

    /// Remove everything inside this directory.
    pub fn empty(&self) -> Result<(), FsError> {
        for name in self.names()? {
            self.remove(&name)?;
        }
        Ok(())
    }

    /// Replace `name` with `data` (mode exactly `mode`): a temporary file
    /// created exclusively (never an existing file or link), renamed; synced
    /// as `durability` asks ([`Durability::Volatile`] for files about this
    /// boot alone, such as the run directory's: on Docker's disk each sync
    /// costs milliseconds before the main program starts).
    pub fn write_file(
        &self,
        name: &OsStr,
        data: &[u8],
        mode: u32,
        durability: Durability,
    ) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        let tmp = temp_name(name);
        let tmp_path = self.path.join(&tmp);
        let _ = self.unlink(tmp.as_os_str(), false);
        let write = || -> io::Result<()> {
            let mut file = self.create_file(tmp.as_os_str(), mode)?;
            file.write_all(data)?;
            stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(io_err)?;
            match durability {
                Durability::Durable | Durability::Atomic => file.sync_all(),
                Durability::Volatile => Ok(()),
            }
        };
        if let Err(e) = write() {
            let _ = self.unlink(tmp.as_os_str(), false);
            return Err(FsError::new("write", &tmp_path, e));
        }
        fcntl::renameat(
            Some(self.fd.as_raw_fd()),
            tmp.as_os_str(),
            Some(self.fd.as_raw_fd()),
            name,
        )
        .map_err(|e| {
            let _ = self.unlink(tmp.as_os_str(), false);
            FsError::new("rename into", &self.path.join(name), io_err(e))
        })?;
        if durability != Durability::Durable {
            return Ok(());
        }
        nix::unistd::fsync(self.fd.as_raw_fd())
            .map_err(|e| FsError::new("sync directory", &self.path, io_err(e)))
    }

    /// Create `name` with `data` (mode exactly `mode`), exclusively (never
    /// an existing file or link) and unsynced: for a directory that was just
    /// emptied and that nothing reads before it is whole (a scandir before
    /// its supervisor starts), rebuilt at every boot, so nothing to sync.
    pub fn create_new_file(&self, name: &OsStr, data: &[u8], mode: u32) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        let path = self.path.join(name);
        let mut file = self
            .create_file(name, mode)
            .map_err(|e| FsError::new("create", &path, e))?;
        file.write_all(data)
            .and_then(|()| {
                stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(io_err)
            })
            .map_err(|e| FsError::new("write", &path, e))
    }

    /// A new file `name`, created here exclusively and opened for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(io_err)?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Open the existing or new regular file `name` with `flags` (plus
    /// `O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC`), refusing anything but a regular file.
    pub fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32) -> Result<File, FsError> {
        check_name(&self.path, name)?;
        let path = self.path.join(name);
        let fd = fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| {
            let source = if e == Errno::ELOOP {
                io::Error::other(format!(
                    "{} is a symbolic link; refusing to follow it",
                    path.display()
                ))
            } else {
                io_err(e)
            };
            FsError::new("open", &path, source)
        })?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let st =
            stat::fstat(file.as_raw_fd()).map_err(|e| FsError::new("inspect", &path, io_err(e)))?;
        if Kind::of(&st) != Kind::File {
            return Err(FsError::new(
                "open",
                &path,
                io::Error::other("not a regular file"),
            ));
        }
        Ok(file)
    }

    /// Change the owner of the entry `name` itself (a link is changed, not followed).
    pub fn chown_entry(&self, name: &OsStr, uid: u32, gid: u32) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        unistd::fchownat(
            Some(self.fd.as_raw_fd()),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| FsError::new("change the owner of", &self.path.join(name), io_err(e)))
    }

    /// Change the owner of this directory.
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), FsError> {
        unistd::fchown(
            self.fd.as_raw_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(|e| FsError::new("change the owner of", &self.path, io_err(e)))
    }

    /// Change the mode of this directory.
    pub fn chmod(&self, mode: u32) -> Result<(), FsError> {
        stat::fchmod(self.fd.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| FsError::new("change the mode of", &self.path, io_err(e)))
    }

    /// Change the mode of the entry `name`, refusing a link.
    pub fn chmod_entry(&self, name: &OsStr, mode: u32) -> Result<(), FsError> {
        let path = self.path.join(name);
        match self.stat(name)? {
            Some(st) if Kind::of(&st) != Kind::Symlink => {}
            _ => {
                return Err(FsError::new(
                    "change the mode of",
                    &path,
                    io::Error::other("missing or a symbolic link"),
                ))
            }
        }
        stat::fchmodat(
            Some(self.fd.as_raw_fd()),
            name,
            Mode::from_bits_truncate(mode),
            stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| FsError::new("change the mode of", &path, io_err(e)))
    }

    /// Rename the entry `from` to `to`, both in this directory (a link is
    /// renamed, not followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), FsError> {
        check_name(&self.path, from)?;
        check_name(&self.path, to)?;
        let fd = Some(self.fd.as_raw_fd());
        fcntl::renameat(fd, from, fd, to)
            .map_err(|e| FsError::new("rename into", &self.path.join(to), io_err(e)))
    }

    /// Create the symbolic link `name` pointing at `target`.
    pub fn symlink(&self, target: &Path, name: &OsStr) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        unistd::symlinkat(target, Some(self.fd.as_raw_fd()), name)
            .map_err(|e| FsError::new("create the link", &self.path.join(name), io_err(e)))
    }

    /// Create the FIFO `name`.
    pub fn mkfifo(&self, name: &OsStr, mode: u32) -> Result<(), FsError> {
        check_name(&self.path, name)?;
        unistd::mkfifoat(
            Some(self.fd.as_raw_fd()),
            name,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| FsError::new("create the FIFO", &self.path.join(name), io_err(e)))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `.<name>.tmp.<pid>`: the temporary name `atomic_write` uses too, so the
/// stale-file cleanup at boot knows them.
pub fn temp_name(name: &OsStr) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{}", std::process::id()));
    tmp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A tree with a directory outside it that links must never reach.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::create_dir_all(outside.join("b/c")).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        fs::write(outside.join("b/c/keep"), "x").unwrap();
        (dir, root, outside)
    }

    #[test]
    fn a_link_at_any_component_is_refused() {
        for planted in ["a", "a/b", "a/b/c"] {
            let (_tmp, root, outside) = setup();
            let at = root.join(planted);
            fs::remove_dir_all(&at).unwrap();
            let target = match planted {
                "a" => outside.clone(),
                "a/b" => outside.join("b"),
                _ => outside.join("b/c"),
            };
            symlink(&target, &at).unwrap();
            let vol = Dir::open(&root).unwrap();
            let err = vol.open_beneath(Path::new("a/b/c")).unwrap_err();
            assert!(err.to_string().contains("refusing to follow"), "{err}");
            assert!(vol.create_beneath(Path::new("a/b/c/d"), 0o755).is_err());
            assert!(!outside.join("b/c/d").exists() && !outside.join("d").exists());
            // Emptying the parent removes the link, not what it points at.
            let parent = at.parent().unwrap().strip_prefix(&root).unwrap().to_owned();
            vol.open_beneath(&parent).unwrap().empty().unwrap();
            assert!(outside.join("keep").exists() && outside.join("b/c/keep").exists());
        }
    }

    #[test]
    fn the_last_component_of_open_is_not_followed() {
        let (tmp, root, _outside) = setup();
        let link = tmp.path().join("vol-link");
        symlink(&root, &link).unwrap();
        assert!(Dir::open(&link).is_err());
        assert!(Dir::open(&root).is_ok());
        assert!(Dir::open_no_links(&link.join("a")).is_err());
        let real = std::fs::canonicalize(root.join("a/b")).unwrap();
        assert_eq!(Dir::open_no_links(&real).unwrap().path(), real);
    }

    #[test]
    fn writes_replace_links_and_never_write_through_them() {
        let (_tmp, root, outside) = setup();
        let vol = Dir::open(&root).unwrap();
        symlink(outside.join("keep"), root.join("file")).unwrap();
        // A planted temp name (same pid) is replaced too, not written through.
        symlink(
            outside.join("keep"),
            root.join(temp_name(OsStr::new("file"))),
        )
        .unwrap();
        vol.write_file(OsStr::new("file"), b"new", 0o640, Durability::Durable)
            .unwrap();
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"x");
        assert_eq!(fs::read(root.join("file")).unwrap(), b"new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(root.join("file"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        symlink(outside.join("keep"), root.join("lnk")).unwrap();
        assert!(vol
            .open_file(OsStr::new("lnk"), OFlag::O_RDWR, 0o600)
            .is_err());
        assert!(vol.chmod_entry(OsStr::new("lnk"), 0o777).is_err());
        let me = (unistd::getuid().as_raw(), unistd::getgid().as_raw());
        vol.chown_entry(OsStr::new("lnk"), me.0, me.1).unwrap();
        assert!(vol.open_dir(OsStr::new("..")).is_err());
        assert!(vol.open_beneath(Path::new("../outside")).is_err());
    }

    #[test]
    fn remove_and_empty_handle_every_kind() {
        let (_tmp, root, outside) = setup();
        let vol = Dir::open(&root).unwrap();
        vol.mkfifo(OsStr::new("fifo"), 0o600).unwrap();
        vol.symlink(&outside, OsStr::new("out")).unwrap();
        fs::write(root.join("a/b/f"), "x").unwrap();
        vol.empty().unwrap();
        assert!(vol.names().unwrap().is_empty());
        assert!(outside.join("b/c/keep").exists());
    }
}
