//! Ownership repair of the data volume at boot: every entry not owned by the
//! service user is `lchown`ed to it. Symbolic links are changed themselves and
//! never followed, other file systems mounted inside are not entered, and a
//! regular file with several hard links is left alone (it may be a link to a
//! file outside the volume, planted to be handed over).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hermes_core::fsutil::FsError;

/// What a repair did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    pub changed: usize,
    /// Hard-linked files that were not changed.
    pub skipped_links: Vec<PathBuf>,
}

pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<Repair, FsError> {
    let meta = fs::symlink_metadata(root).map_err(|e| FsError::new("inspect", root, e))?;
    if meta.file_type().is_symlink() {
        return Err(FsError::new(
            "repair ownership of",
            root,
            io::Error::other("the volume root is a symbolic link; refusing to follow it"),
        ));
    }
    let root_dev = meta.dev();
    let mut repair = Repair::default();
    let mut stack = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        if meta.uid() != uid || meta.gid() != gid {
            if meta.is_file() && meta.nlink() > 1 {
                repair.skipped_links.push(path.clone());
            } else {
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(|e| FsError::new("change the owner of", &path, e))?;
                repair.changed += 1;
            }
        }
        // A directory on another device is a mount point: its owner is fixed
        // above, its contents belong to whoever mounted it.
        if !meta.is_dir() || meta.dev() != root_dev {
            continue;
        }
        let entries = fs::read_dir(&path).map_err(|e| FsError::new("list", &path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::new("list", &path, e))?;
            let child = entry.path();
            let child_meta =
                fs::symlink_metadata(&child).map_err(|e| FsError::new("inspect", &child, e))?;
            stack.push((child, child_meta));
        }
    }
    Ok(repair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_without_following_symlinks_or_touching_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir_all(root.join("profiles/a")).unwrap();
        fs::write(root.join("profiles/a/config.yaml"), "x").unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        fs::hard_link(&outside, root.join("hard")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert_eq!(chown_tree(&root, me.0, me.1).unwrap(), Repair::default());
        std::os::unix::fs::symlink(&root, dir.path().join("vol-link")).unwrap();
        assert!(chown_tree(&dir.path().join("vol-link"), me.0, me.1).is_err());
        if me.0 != 0 {
            // Changing owners needs root; the Docker suite covers it too.
            return;
        }
        let repair = chown_tree(&root, 4321, 4322).unwrap();
        // vol, profiles, profiles/a, config.yaml and the link itself.
        assert_eq!(repair.changed, 5);
        assert_eq!(repair.skipped_links, vec![root.join("hard")]);
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&root.join("profiles/a/config.yaml")), (4321, 4322));
        assert_eq!(owner(&root.join("link")), (4321, 4322));
        assert_eq!(owner(&outside), me, "followed a link out of the volume");
    }
}
