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
//!
//! A complete walk leaves [`MARKER`] in the volume's root: "repaired for
//! uid:gid", a file of root's. The next boot for the same ids trusts it and
//! walks nothing (a warm boot of a volume with thousands of files looks at
//! two entries). Only a marker the service user cannot have made counts: a
//! regular file owned by the one who repairs (root), writable by nobody
//! else, with one link, on the volume's device. The service user owns the
//! volume's directories, so it can remove the marker (the next boot walks
//! everything) or rename it, but it cannot make a file of root's, and the
//! walk gives every other entry of the volume to it, an old marker moved
//! aside included: after a walk, the only file of root's in the volume is
//! the marker just written. What the marker cannot see is a file another
//! user puts in the volume later (`docker cp`, a root shell, the host
//! writing into a bind-mounted directory): removing the marker asks the
//! next boot for a complete repair.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::{Dir, Kind};
use hermes_core::fsutil::{self, Durability, FsError};

/// In the volume's root: the ids a complete repair gave the volume to.
pub const MARKER: &str = ".hermes-owner";

/// What a repair did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Entries looked at (the root included).
    pub examined: usize,
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

/// Give the volume open as `root` to `uid:gid`, unless a complete repair
/// for those ids already did and left its marker (see the module
/// documentation); `trusted` owns markers that count (root, the caller).
pub fn repair_volume(root: &Dir, uid: u32, gid: u32, trusted: u32) -> Result<Repair, FsError> {
    let meta = root.stat_self()?;
    if meta.st_uid == uid && meta.st_gid == gid && marked(root, meta.st_dev, uid, gid, trusted) {
        return Ok(Repair {
            examined: 2,
            ..Repair::default()
        });
    }
    let repair = chown_tree(root, uid, gid)?;
    if repair.read_only.is_empty() {
        // Synced after changes, so it never outlives them on disk. After a
        // walk that changed nothing there is nothing for it to outlive: a
        // marker lost in a crash only makes the next boot walk again.
        let text = marker_text(uid, gid);
        let durability = if repair.changed > 0 {
            Durability::Durable
        } else {
            Durability::Volatile
        };
        let written = root.write_file(OsStr::new(MARKER), text.as_bytes(), 0o644, durability);
        // A read-only root is a warning already; without a marker the next boot walks again.
        match written {
            Ok(()) => {}
            Err(e) if e.source.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(repair)
}

fn marker_text(uid: u32, gid: u32) -> String {
    format!("{uid}:{gid}\n")
}

/// Whether the volume holds a marker of `trusted`'s for `uid:gid`. Judged
/// on the open file, so what was checked is what was read.
fn marked(root: &Dir, dev: u64, uid: u32, gid: u32, trusted: u32) -> bool {
    use std::io::Read;
    let Ok(file) = root.open_file(OsStr::new(MARKER), nix::fcntl::OFlag::O_RDONLY, 0) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(file.as_raw_fd()) else {
        return false;
    };
    if st.st_uid != trusted || st.st_nlink != 1 || st.st_mode & 0o022 != 0 || st.st_dev != dev {
        return false;
    }
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).is_ok() && text == marker_text(uid, gid)
}

pub fn chown_tree(root: &Dir, uid: u32, gid: u32) -> Result<Repair, FsError> {
    let mountinfo = fsutil::read_to_string(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    let real_root = real_path(root);
    let mounts = mounts_below(&mountinfo, &real_root);
    let meta = root.stat_self()?;
    let root_dev = meta.st_dev;
    let mut repair = Repair {
        examined: 1,
        ..Repair::default()
    };
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
            repair.examined += 1;
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
        let nothing = chown_tree(&vol, me.0, me.1).unwrap();
        assert_eq!(
            (nothing.changed, nothing.skipped_links, nothing.examined),
            (0, vec![], 8),
            "vol, profiles, profiles/a, config.yaml, the three links and the hard link"
        );
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

    fn me() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    /// A volume of `profiles` profiles with three files each.
    fn volume_of(profiles: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..profiles {
            let p = dir.path().join(format!("profiles/p{i}"));
            fs::create_dir_all(&p).unwrap();
            for f in ["config.yaml", "gateway_state.json", ".hermes-profile"] {
                fs::write(p.join(f), "x").unwrap();
            }
        }
        dir
    }

    #[test]
    fn a_warm_repair_looks_at_two_entries_whatever_the_volume_holds() {
        let (uid, gid) = me();
        for profiles in [10, 1000] {
            let dir = volume_of(profiles);
            let vol = Dir::open(dir.path()).unwrap();
            let cold = repair_volume(&vol, uid, gid, uid).unwrap();
            // The root, profiles/, and each profile with its three files.
            assert_eq!(cold.examined, 2 + 4 * profiles);
            let warm = repair_volume(&vol, uid, gid, uid).unwrap();
            assert_eq!(warm.examined, 2, "{profiles} profiles");
            assert_eq!(warm.changed, 0);
            // Other ids: everything again (and the marker).
            if uid == 0 && profiles == 10 {
                let other = repair_volume(&vol, uid, gid + 1, uid).unwrap();
                assert_eq!(other.examined, 2 + 4 * profiles + 1);
            }
        }
    }

    #[test]
    fn only_a_marker_the_service_user_cannot_make_counts() {
        let (uid, gid) = me();
        let dir = volume_of(3);
        let vol = Dir::open(dir.path()).unwrap();
        let full = 2 + 4 * 3 + 1; // and the marker
        repair_volume(&vol, uid, gid, uid).unwrap();
        let marker = dir.path().join(MARKER);
        let walked = |trusted: u32| repair_volume(&vol, uid, gid, trusted).unwrap().examined;
        // Not the trusted owner's.
        assert_eq!(walked(uid.wrapping_add(1)), full);
        // Writable by others, then hard-linked, then a link to a good one.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&marker, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(walked(uid), full);
        assert_eq!(walked(uid), 2, "the walk wrote a good marker again");
        fs::hard_link(&marker, dir.path().join("second-name")).unwrap();
        assert_eq!(walked(uid), full + 1);
        fs::remove_file(dir.path().join("second-name")).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::rename(&marker, elsewhere.path().join(MARKER)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join(MARKER), &marker).unwrap();
        assert_eq!(walked(uid), full);
        // Another text.
        fs::write(&marker, "1:1\n").unwrap();
        assert_eq!(walked(uid), full);
        assert_eq!(
            fs::read_to_string(&marker).unwrap(),
            format!("{uid}:{gid}\n")
        );
    }

    #[test]
    fn an_old_marker_moved_aside_is_given_away_by_the_next_walk() {
        if me().0 != 0 {
            // Owners other than our own need root; the Docker suite runs as root too.
            return;
        }
        let dir = volume_of(2);
        let vol = Dir::open(dir.path()).unwrap();
        let marker = dir.path().join(MARKER);
        let stash = dir.path().join("profiles/p0/stash");
        repair_volume(&vol, 4321, 4322, 0).unwrap();
        assert_eq!(fs::symlink_metadata(&marker).unwrap().uid(), 0);
        // The service user keeps the marker, then the ids change.
        fs::rename(&marker, &stash).unwrap();
        repair_volume(&vol, 5000, 5000, 0).unwrap();
        assert_eq!(fs::symlink_metadata(&stash).unwrap().uid(), 5000);
        // Put back, it no longer counts: the walk gives the volume back.
        fs::rename(&stash, &marker).unwrap();
        let back = repair_volume(&vol, 4321, 4322, 0).unwrap();
        assert!(back.examined > 2 && back.changed > 0, "{back:?}");
        let owner = fs::metadata(dir.path().join("profiles/p1/config.yaml")).unwrap();
        assert_eq!((owner.uid(), owner.gid()), (4321, 4322));
        // A marker of the service user's, right text and all: ignored.
        fs::remove_file(&marker).unwrap();
        fs::write(&marker, marker_text(4321, 4322)).unwrap();
        std::os::unix::fs::chown(&marker, Some(4321), Some(4322)).unwrap();
        assert!(repair_volume(&vol, 4321, 4322, 0).unwrap().examined > 2);
        assert_eq!(repair_volume(&vol, 4321, 4322, 0).unwrap().examined, 2);
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
