//! Where stage 1 puts the run directory and the scandir. `/run` first; when
//! it cannot hold them (read-only, not writable by the user the container
//! runs as, or noexec for the scandir that s6 executes from) a directory of
//! this container's own on the volume, `HERMES_HOME/.hermes-run/<host>/`,
//! never shared with another container. The scandir also goes there when
//! `/run` is FUSE and the volume is not ([`refuse_fuse`]). Everything is
//! done through directory handles: the volume is the service user's, and a
//! link it planted there is removed, never followed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::{Dir, Kind};
use hermes_core::fsutil::FsError;
use hermes_core::runtime::VOLUME_RUN_DIR;
use nix::sys::statfs::{fstatfs, FUSE_SUPER_MAGIC};
use nix::sys::statvfs::{fstatvfs, FsFlags};

use crate::{note, say};

/// Whether programs on the file system holding `dir` may be executed.
pub fn exec_allowed(dir: &Dir) -> bool {
    fstatvfs(dir).map_or(true, |v| !v.flags().contains(FsFlags::ST_NOEXEC))
}

/// Whether `dir` is on a FUSE file system: a container's own layer where
/// Docker stores containers with fuse-overlayfs. Each of s6's file
/// operations there (a status write is a create, a write and a rename) is a
/// round trip to one user-space daemon: with 50 profiles, `gateway start
/// --all` took 476 ms with the scandir there and 226 ms with it on the
/// volume.
pub fn is_fuse(dir: &Dir) -> bool {
    fstatfs(dir).is_ok_and(|s| s.filesystem_type() == FUSE_SUPER_MAGIC)
}

/// An error when `dir` (the scandir's place in `/run`) is FUSE and
/// `volume` is not: the tree is better off on the volume.
pub fn refuse_fuse(dir: &Dir, volume: &Dir) -> Result<(), FsError> {
    if is_fuse(dir) && !is_fuse(volume) {
        return Err(FsError::new(
            "use",
            dir.path(),
            std::io::Error::other(
                "it is on FUSE (fuse-overlayfs), where each of s6's file operations waits \
                 for the daemon",
            ),
        ));
    }
    Ok(())
}

/// `name` in `parent` as a real directory of ours: anything else found there
/// (a link, a file) is removed first. Returns the handle.
pub fn own_dir(parent: &Dir, name: &OsStr, mode: u32) -> Result<Dir, FsError> {
    if let Some(st) = parent.stat(name)? {
        if Kind::of(&st) != Kind::Dir {
            say!(
                "warning: {} was not a directory (a link or a file planted there?): \
                 removed it, without following it",
                parent.path().join(name).display()
            );
            parent.remove(name)?;
        }
    }
    parent.mkdir(name, mode)?;
    parent.open_dir(name)
}

/// This container's directory on the volume, `.hermes-run/<host>`; both
/// given to `owner` (uid, gid), like the rest of the volume, when stage 1
/// runs as root.
pub fn volume_dir(home: &Dir, host: &str, owner: Option<(u32, u32)>) -> Result<Dir, FsError> {
    let runs = own_dir(home, OsStr::new(VOLUME_RUN_DIR), 0o755)?;
    let own = own_dir(&runs, OsStr::new(host), 0o755)?;
    if let Some((uid, gid)) = owner {
        runs.chown(uid, gid)?;
        own.chown(uid, gid)?;
    }
    Ok(own)
}

/// `path` in `/run` (or wherever the administrator put it), created when
/// missing; a link at its last component (left by an earlier boot that put
/// the scandir on the volume) is removed first.
pub fn open_in_run(path: &Path) -> Result<Dir, FsError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Dir::open(path);
    };
    let parent = Dir::open_or_create(parent, 0o755)?;
    if parent
        .stat(name)?
        .is_some_and(|st| Kind::of(&st) == Kind::Symlink)
    {
        parent.remove(name)?;
    }
    own_dir(&parent, name, 0o755)
}

/// Point `link` (in `/run`) at `target` on the volume, for clients that
/// look at the usual place; best effort, as `/run` may not be writable.
pub fn link_from_run(link: &Path, target: &Path) {
    let (Some(parent), Some(name)) = (link.parent(), link.file_name()) else {
        return;
    };
    let done = Dir::open(parent).and_then(|p| {
        p.remove(name)?;
        p.symlink(target, name)
    });
    if let Err(e) = done {
        note!(
            "{e}; clients find the tree through {}",
            hermes_core::runtime::POINTER_FILE
        );
    }
}

/// Try `first`; when it fails, say why and use the volume.
pub fn first_or_volume<T>(
    what: &str,
    first: Result<T, FsError>,
    volume: impl FnOnce() -> Result<T, FsError>,
) -> Result<(T, Option<PathBuf>), FsError> {
    match first {
        Ok(t) => Ok((t, None)),
        Err(e) => {
            note!("{e}: the {what} goes on the volume instead");
            volume().map(|t| (t, Some(e.path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::fsutil::Durability;
    use std::fs;

    #[test]
    fn planted_links_in_the_volume_run_dir_are_removed_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("service")).unwrap();
        fs::write(outside.join("service/keep"), "x").unwrap();
        fs::create_dir_all(home.join(".hermes-run")).unwrap();
        let home_dir = Dir::open(&home).unwrap();
        // The attack of issue 17: <host> replaced by a link.
        std::os::unix::fs::symlink(&outside, home.join(".hermes-run/h1")).unwrap();
        let own = volume_dir(&home_dir, "h1", None).unwrap();
        let service = own_dir(&own, OsStr::new("service"), 0o755).unwrap();
        service.empty().unwrap();
        service
            .write_file(
                OsStr::new("run"),
                b"#!/bin/sh\n",
                0o755,
                Durability::Durable,
            )
            .unwrap();
        assert!(fs::symlink_metadata(home.join(".hermes-run/h1"))
            .unwrap()
            .is_dir());
        assert!(outside.join("service/keep").exists());
        assert!(!outside.join("service/run").exists());
        // .hermes-run itself replaced by a link.
        fs::remove_dir_all(home.join(".hermes-run")).unwrap();
        std::os::unix::fs::symlink(&outside, home.join(".hermes-run")).unwrap();
        let own = volume_dir(&home_dir, "service", None).unwrap();
        own.empty().unwrap();
        assert!(outside.join("service/keep").exists());
        // And a link at the last level.
        std::os::unix::fs::symlink(&outside, home.join(".hermes-run/service/x")).unwrap();
        let svc = own_dir(&own, OsStr::new("x"), 0o755).unwrap();
        svc.write_file(OsStr::new("f"), b"", 0o644, Durability::Durable)
            .unwrap();
        assert!(!outside.join("f").exists());
    }

    #[test]
    fn a_link_left_in_run_is_replaced_by_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        let link = tmp.path().join("run/service");
        fs::create_dir(tmp.path().join("run")).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dir = open_in_run(&link).unwrap();
        dir.write_file(OsStr::new("f"), b"", 0o644, Durability::Durable)
            .unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_dir());
        assert!(!target.join("f").exists());
        link_from_run(&link, &target);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}
