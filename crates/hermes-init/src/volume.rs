//! Ownership repair of the data volume at boot: every entry not owned by the
//! service user is changed to it. The walk goes through directory handles
//! (`hermes_core::dirfd`), so no link is ever followed, not even one planted
//! in a directory after it was listed. A regular file with several hard
//! links is left alone (it may be a link to a file outside the volume,
//! planted to be handed over). Anything mounted inside the volume (a host
//! file or directory bind-mounted there, another volume, a read-only mount)
//! is not the volume's: it is neither changed nor entered. A mount is known
//! by its device or, for a bind mount from the same device, by
//! `/proc/self/mountinfo`. A read-only file system met anyway is skipped,
//! never a reason to stop the boot.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::{Dir, Kind};
use hermes_core::fsutil::{self, FsError};

/// What a repair did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    pub changed: usize,
    /// Hard-linked files that were not changed.
    pub skipped_links: Vec<PathBuf>,
    /// Mount points inside the tree, left as their owners made them.
    pub skipped_mounts: Vec<PathBuf>,
    /// Entries on a read-only file system.
    pub read_only: Vec<PathBuf>,
}

/// Undo mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Mount points strictly below `root` in mountinfo-format `text`.
pub fn mounts_below(text: &str, root: &Path) -> HashSet<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape))
        .filter(|point| point != root && point.starts_with(root))
        .collect()
}

/// The path the kernel has for an open directory (mountinfo speaks in those).
fn real_path(dir: &Dir) -> PathBuf {
    fsutil::read_link(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())))
        .unwrap_or_else(|_| dir.path().to_path_buf())
}

pub fn chown_tree(root: &Dir, uid: u32, gid: u32) -> Result<Repair, FsError> {
    let mountinfo = fsutil::read_to_string(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    let real_root = real_path(root);
    let mounts = mounts_below(&mountinfo, &real_root);
    let meta = root.stat_self()?;
    let root_dev = meta.st_dev;
    let mut repair = Repair::default();
    if meta.st_uid != uid || meta.st_gid != gid {
        match root.chown(uid, gid) {
            Ok(()) => repair.changed += 1,
            Err(e) if e.source.raw_os_error() == Some(libc::EROFS) => {
                repair.read_only.push(root.path().to_path_buf())
            }
            Err(e) => return Err(e),
        }
    }
    let mut stack = vec![(root.reopen()?, real_root)];
    while let Some((dir, real)) = stack.pop() {
        for name in dir.names()? {
            let Some(st) = dir.stat(&name)? else { continue };
            let path = dir.path().join(&name);
            if st.st_dev != root_dev || mounts.contains(&real.join(&name)) {
                repair.skipped_mounts.push(path);
                continue;
            }
            let kind = Kind::of(&st);
            if st.st_uid != uid || st.st_gid != gid {
                if kind == Kind::File && st.st_nlink > 1 {
                    repair.skipped_links.push(path.clone());
                } else {
                    match dir.chown_entry(&name, uid, gid) {
                        Ok(()) => repair.changed += 1,
                        Err(e) if e.source.raw_os_error() == Some(libc::EROFS) => {
                            repair.read_only.push(path.clone())
                        }
                        // Removed since it was listed.
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            if kind == Kind::Dir {
                // Replaced by a link or removed since the stat: not ours to walk.
                if let Ok(sub) = dir.open_dir(&name) {
                    stack.push((sub, real.join(&name)));
                }
            }
        }
    }
    Ok(repair)
}

/// Remove `.<name>.tmp.<pid>` files hermes' atomic writes leave when killed
/// mid-write, in `dir` only, when no process `pid` runs any more.
pub fn remove_stale_temp_files(dir: &Dir) -> Result<Vec<PathBuf>, FsError> {
    let mut removed = Vec::new();
    for name in dir.names()? {
        let Some(pid) = stale_temp_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if dir
            .stat(&name)?
            .is_some_and(|st| Kind::of(&st) == Kind::File)
        {
            dir.remove(&name)?;
            removed.push(dir.path().join(&name));
        }
    }
    Ok(removed)
}

/// The pid in a name of the form `.<name>.tmp.<pid>`.
fn stale_temp_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?;
    let (base, pid) = rest.rsplit_once(".tmp.")?;
    if base.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn walks_without_following_symlinks_or_touching_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir_all(root.join("profiles/a")).unwrap();
        fs::write(root.join("profiles/a/config.yaml"), "x").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/f"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.join("sub/f"), root.join("link")).unwrap();
        // A link planted at every directory level.
        std::os::unix::fs::symlink(&outside, root.join("profiles/dirlink")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("profiles/a/dirlink")).unwrap();
        fs::hard_link(outside.join("sub/f"), root.join("hard")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let vol = Dir::open(&root).unwrap();
        assert_eq!(chown_tree(&vol, me.0, me.1).unwrap(), Repair::default());
        std::os::unix::fs::symlink(&root, dir.path().join("vol-link")).unwrap();
        assert!(Dir::open(&dir.path().join("vol-link")).is_err());
        if me.0 != 0 {
            // Changing owners needs root; the Docker suite covers it too.
            return;
        }
        let repair = chown_tree(&vol, 4321, 4322).unwrap();
        // vol, profiles, profiles/a, config.yaml and the three links themselves.
        assert_eq!(repair.changed, 7);
        assert_eq!(repair.skipped_links, vec![root.join("hard")]);
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&root.join("profiles/a/config.yaml")), (4321, 4322));
        assert_eq!(owner(&root.join("link")), (4321, 4322));
        for p in ["", "sub", "sub/f"] {
            assert_eq!(owner(&outside.join(p)), me, "followed a link to {p}");
        }
    }

    #[test]
    fn mount_points_below_the_root_come_from_mountinfo() {
        let text = "\
22 1 0:21 / / rw - overlay overlay rw
30 22 254:1 /vol /opt/data rw - ext4 /dev/vda1 rw
31 30 254:1 /host/file /opt/data/host\\040file rw - ext4 /dev/vda1 rw
32 30 0:50 / /opt/data/ro ro - tmpfs tmpfs ro
33 22 0:51 / /opt/database rw - tmpfs tmpfs rw";
        let found = mounts_below(text, Path::new("/opt/data"));
        let want: HashSet<PathBuf> = ["/opt/data/host file", "/opt/data/ro"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn stale_temp_files_are_only_ours_and_only_dead_writers() {
        let dir = tempfile::tempdir().unwrap();
        let live = std::process::id();
        for name in [
            ".gateway_state.json.tmp.999999999".to_string(),
            format!(".gateway_state.json.tmp.{live}"),
            "gateway_state.json.tmp.1".to_string(),
            ".x.tmp.12a".to_string(),
            "config.yaml".to_string(),
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        let outside = dir.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(".link.tmp.999999998")).unwrap();
        let removed = remove_stale_temp_files(&Dir::open(dir.path()).unwrap()).unwrap();
        assert_eq!(
            removed,
            vec![dir.path().join(".gateway_state.json.tmp.999999999")]
        );
        assert!(outside.exists());
        assert!(dir
            .path()
            .join(format!(".gateway_state.json.tmp.{live}"))
            .exists());
    }
}
