//! Cheap lookups in `/` for the service user where the container's root is
//! FUSE (Docker's fuse-overlayfs storage driver; rootless engines on older
//! kernels).
//!
//! There, every lookup in `/` by a process that does not own it makes the
//! kernel ask the file system for the root directory's POSIX ACL (seen in a
//! kernel profile; below `/` the answer is cached), so every absolute path
//! the service user resolves, and every `#!` line s6 executes for it, waits
//! for the single-threaded fuse-overlayfs daemon: 130 to 150 µs a lookup on
//! this project's test host, against 5 µs for root (the owner: no ACL) or
//! for a path relative to a directory below `/`. In a container there with
//! 50 profiles, that was half of a `hermes status` and a sixth of a
//! `gateway start --all`.
//!
//! The kernel consults the ACL only when the directory's group bits are
//! set. So stage 1 (root) clears them and hands `/` to [`GROUP`], a group
//! no process here has; everyone else keeps read and search through the
//! "other" bits, and root keeps owning it. It only takes access away, and
//! only from that group. Nothing is changed elsewhere (kernel overlayfs has
//! no such cost), on a read-only root, or when the group is in use.

use std::path::Path;

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::FsError;

/// The group `/` is given: the last of Debian's reserved, never-allocated
/// ids (65000–65533), inside the 65536 ids a rootless engine maps.
pub const GROUP: u32 = 65_533;
const GROUP_BITS: u32 = 0o070;

/// What stage 1 found about `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDir {
    /// `statfs(2)` says FUSE.
    pub fuse: bool,
    pub mode: u32,
    pub gid: u32,
}

/// Why `/` is left as it is, or what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not FUSE, or its group bits are already clear.
    Nothing,
    /// Some process here may have [`GROUP`]: it would lose access to `/`.
    GroupInUse,
    /// Give `/` this group and mode.
    Change { gid: u32, mode: u32 },
}

/// `groups_in_use`: the service user's and this process's groups, and every
/// group `/etc/group` names; asked for only when `/` would change, so a
/// root that is not FUSE costs a boot no read of `/etc/group`.
pub fn plan(
    root: &RootDir,
    groups_in_use: impl FnOnce() -> Result<Vec<u32>, FsError>,
) -> Result<Plan, FsError> {
    if !root.fuse || root.mode & GROUP_BITS == 0 {
        return Ok(Plan::Nothing);
    }
    if groups_in_use()?.contains(&GROUP) {
        return Ok(Plan::GroupInUse);
    }
    Ok(Plan::Change {
        gid: GROUP,
        mode: root.mode & 0o7777 & !GROUP_BITS,
    })
}

/// The gids `/etc/group`-format text names.
pub fn group_file_ids(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|line| line.split(':').nth(2)?.trim().parse().ok())
        .collect()
}

/// Look at `/` and change it if [`plan`] says so; the line to note, if any.
/// Root only: the caller checks.
pub fn prepare(
    groups_in_use: impl FnOnce() -> Result<Vec<u32>, FsError>,
) -> Result<Option<String>, FsError> {
    let path = Path::new("/");
    let dir = Dir::open(path)?;
    let st = dir.stat_self()?;
    let root = RootDir {
        fuse: crate::place::is_fuse(&dir),
        mode: st.st_mode,
        gid: st.st_gid,
    };
    Ok(match plan(&root, groups_in_use)? {
        Plan::Nothing => None,
        Plan::GroupInUse => Some(format!(
            "/ is on FUSE, where every lookup in it by the service user asks the file system \
             for an ACL; left as it is because group {GROUP} is in use here"
        )),
        Plan::Change { gid, mode } => {
            dir.chown(st.st_uid, gid)?;
            dir.chmod(mode)?;
            Some(format!(
                "/ is on FUSE: mode {:o} → {mode:o}, group {} → {gid}, so a lookup in it by the \
                 service user no longer asks the file system for an ACL",
                root.mode & 0o7777,
                root.gid
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Result<Vec<u32>, FsError> {
        Ok(Vec::new())
    }

    fn root(fuse: bool, mode: u32) -> RootDir {
        RootDir {
            fuse,
            mode: 0o040000 | mode,
            gid: 0,
        }
    }

    #[test]
    fn only_a_fuse_root_with_group_bits_changes() {
        assert_eq!(
            plan(&root(true, 0o755), || Ok(vec![0, 10000])).unwrap(),
            Plan::Change {
                gid: GROUP,
                mode: 0o705
            }
        );
        // The special bits stay; only the group's go.
        assert_eq!(
            plan(&root(true, 0o1775), none).unwrap(),
            Plan::Change {
                gid: GROUP,
                mode: 0o1705
            }
        );
        assert_eq!(plan(&root(false, 0o755), none).unwrap(), Plan::Nothing);
        assert_eq!(
            plan(&root(true, 0o705), none).unwrap(),
            Plan::Nothing,
            "done"
        );
    }

    #[test]
    fn a_group_in_use_is_never_locked_out() {
        assert_eq!(
            plan(&root(true, 0o755), || Ok(vec![10000, GROUP])).unwrap(),
            Plan::GroupInUse
        );
    }

    #[test]
    fn reads_the_ids_of_a_group_file() {
        let text = "root:x:0:\nhermes:x:10000:\nbroken line\nodd:x:notanumber:\n";
        assert_eq!(group_file_ids(text), [0, 10000]);
    }
}
