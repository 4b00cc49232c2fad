//! Profile aliases that root may find on its `PATH`.
//!
//! `docker exec` takes its `PATH` from the image, the same for root and for
//! `-u hermes`, so a directory the service user can write must never be on
//! it: root would run whatever that user put there under a name like `ps`.
//! Instead, the init (root) publishes one symlink per profile,
//! `/run/hermes-aliases/<name>` → the hermes binary, in a directory root owns
//! from `/` down; hermes called by a profile's name acts as `hermes -p
//! <name>` (and, as root, drops to the service user like any other command).
//! The names come from the profile directories, validated as profile names;
//! the target is always the binary itself, so nothing the service user
//! writes is ever executed by root. Profiles created later get theirs at the
//! next boot; the service user's own `~/.local/bin` wrappers (on its `PATH`
//! in processes the init starts, and in its login shells) have them at once.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hermes_core::fsutil::{self, FsError};
use hermes_core::{HermesHome, ProfileName};

use crate::say;

/// On the image's `PATH`, after every system directory.
pub const ALIAS_DIR: &str = "/run/hermes-aliases";

/// Why the aliases were not published.
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path} is not root's alone (owner uid {uid}, mode {mode:o}): no aliases for root's PATH there")]
    Untrusted { path: PathBuf, uid: u32, mode: u32 },
}

/// The aliases of one boot, published by a thread of the init once the
/// boot's reconcile has ended: neither the main program nor the gateways
/// need them, and at 1000 profiles on a fuse-overlayfs `/run` writing them
/// took 700 ms, all before s6-svscan started, and then, beside the
/// reconciler, slowed every request it made of the same file system. A
/// container stopped before its reconcile ended never writes them. The
/// thread only creates files; the init runs no Rust code between fork and
/// exec, so a thread is safe beside them.
pub struct Pending {
    home: HermesHome,
    program: PathBuf,
}

impl Pending {
    pub fn new(home: HermesHome, program: PathBuf) -> Pending {
        Pending { home, program }
    }

    pub fn publish_beside(self) {
        let spawned = std::thread::Builder::new()
            .name("aliases".into())
            .spawn(move || self.publish());
        if let Err(e) = spawned {
            say!("no profile aliases for docker exec: unable to start a thread: {e}");
        }
    }

    /// One link per profile in [`ALIAS_DIR`]. Costs only the aliases when
    /// it fails; a read-only /run (`--read-only` without a tmpfs) is
    /// expected, not reported.
    fn publish(&self) {
        let names = match hermes_core::profile::list(&self.home) {
            Ok(names) => names,
            Err(e) => {
                say!("no profile aliases for docker exec: {e}");
                return;
            }
        };
        match publish(Path::new(ALIAS_DIR), &self.program, &names) {
            Ok(_) => {}
            Err(AliasError::Fs(e)) if e.source.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => say!("no profile aliases for docker exec: {e}"),
        }
    }
}

/// Root owns `path` and everything above it, and none of them is writable
/// by group or others: nobody but root can change what a name under `path`
/// resolves to. Symlinks on the way are followed, as a lookup would.
pub fn root_only(path: &Path) -> Result<(), AliasError> {
    let real = fs::canonicalize(path).map_err(|e| FsError::new("resolve", path, e))?;
    let mut at = Some(real.as_path());
    while let Some(dir) = at {
        let meta = fsutil::metadata(dir)?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.uid() != 0 || mode & 0o022 != 0 {
            return Err(AliasError::Untrusted {
                path: dir.to_path_buf(),
                uid: meta.uid(),
                mode,
            });
        }
        at = dir.parent();
    }
    Ok(())
}

/// Make `dir` hold exactly one symlink per name in `names`, each to
/// `program`. `dir`'s parent must be root's alone; `dir` is made root's
/// 0755 and emptied of anything else first (it lives in /run, which Docker
/// keeps across restarts). A link a previous boot left that is already
/// right stays: a warm boot with 1000 profiles reads 1000 links instead of
/// removing and writing them again. Returns how many links were written.
pub fn publish(dir: &Path, program: &Path, names: &[ProfileName]) -> Result<usize, AliasError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    root_only(parent)?;
    match fsutil::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
        Ok(_) => fsutil::remove_file(dir)?,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = fsutil::create_dir(dir) {
        if e.source.kind() != io::ErrorKind::AlreadyExists {
            return Err(e.into());
        }
    }
    // Already there from the image or a previous boot: make it root's 0755 again.
    std::os::unix::fs::chown(dir, Some(0), Some(0)).map_err(|e| FsError::new("chown", dir, e))?;
    fsutil::set_mode(dir, 0o755)?;
    root_only(dir)?;
    let mut missing: HashSet<&str> = names
        .iter()
        .filter(|n| !n.is_default())
        .map(|n| n.as_str())
        .collect();
    for entry in fsutil::read_dir(dir)? {
        let entry = entry.map_err(|e| FsError::new("list", dir, e))?;
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let name = entry.file_name();
        let wanted = name.to_str().is_some_and(|n| missing.contains(n));
        if is_link && wanted && fsutil::read_link(&path).is_ok_and(|t| t == program) {
            missing.remove(name.to_str().unwrap_or_default());
            continue;
        }
        match fsutil::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fsutil::remove_dir_all(&path)?,
            _ => fsutil::remove_file(&path)?,
        }
    }
    let mut written = 0;
    for name in missing {
        let link = dir.join(name);
        std::os::unix::fs::symlink(program, &link)
            .map_err(|e| FsError::new("create the link", &link, e))?;
        written += 1;
    }
    Ok(written)
}

/// The profile a hermes binary called by another name stands for: a link
/// named after a profile. `None` for `hermes` itself (any name starting
/// with `hermes`, e.g. a versioned copy) and for names that are no profile.
pub fn profile_of_invocation(argv0: &std::ffi::OsStr) -> Option<ProfileName> {
    let base = Path::new(argv0).file_name()?.to_str()?;
    if base.starts_with("hermes") {
        return None;
    }
    ProfileName::parse(base)
        .ok()
        .filter(|n| n.as_str() == base && !n.is_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn names(list: &[&str]) -> Vec<ProfileName> {
        list.iter()
            .map(|n| ProfileName::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn a_profile_name_as_argv0_stands_for_that_profile() {
        let of = |s: &str| profile_of_invocation(OsStr::new(s)).map(|n| n.to_string());
        assert_eq!(of("coder").as_deref(), Some("coder"));
        assert_eq!(of("/run/hermes-aliases/coder").as_deref(), Some("coder"));
        for not_a_profile in [
            "hermes",
            "/usr/local/bin/hermes",
            "hermes-x86_64",
            "default",
            "Coder",
            "a.b",
            "",
        ] {
            assert_eq!(of(not_a_profile), None, "{not_a_profile}");
        }
    }

    #[test]
    fn aliases_are_links_to_the_binary_in_a_root_only_directory() {
        if nix::unistd::geteuid().as_raw() != 0 {
            // Only root can make a directory root's; the Docker suite covers it too.
            return;
        }
        let base = tempfile::Builder::new()
            .prefix("hermes-aliases-")
            .tempdir_in("/run")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        if root_only(base.path()).is_err() {
            // /tmp is world-writable: nothing can be trusted under it.
            let err = publish(&base.path().join("a"), Path::new("/bin/true"), &[]).unwrap_err();
            assert!(matches!(err, AliasError::Untrusted { .. }), "{err}");
            return;
        }
        let dir = base.path().join("aliases");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("stale"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let n = publish(
            &dir,
            Path::new("/bin/true"),
            &names(&["default", "coder", "web"]),
        )
        .unwrap();
        assert_eq!(n, 2);
        let mut entries: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        assert_eq!(entries, ["coder", "web"]);
        assert_eq!(
            fs::read_link(dir.join("coder")).unwrap(),
            Path::new("/bin/true")
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755
        );
        root_only(&dir).unwrap();

        // The next boot: links already right stay, one to another program
        // and one for a profile gone are replaced or removed.
        fs::remove_file(dir.join("web")).unwrap();
        std::os::unix::fs::symlink("/bin/false", dir.join("web")).unwrap();
        let n = publish(
            &dir,
            Path::new("/bin/true"),
            &names(&["coder", "web", "new"]),
        )
        .unwrap();
        assert_eq!(n, 2, "only web and new are written");
        let mut entries: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        assert_eq!(entries, ["coder", "new", "web"]);
        for name in ["coder", "new", "web"] {
            assert_eq!(
                fs::read_link(dir.join(name)).unwrap(),
                Path::new("/bin/true")
            );
        }
        let n = publish(&dir, Path::new("/bin/true"), &names(&["web"])).unwrap();
        assert_eq!(n, 0);
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1);

        // A parent others can write is refused, and nothing is written.
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = publish(&dir, Path::new("/bin/true"), &names(&["x"])).unwrap_err();
        assert!(
            matches!(&err, AliasError::Untrusted { path, .. } if path == base.path()),
            "{err}"
        );
        assert!(!dir.join("x").exists());
    }

    #[test]
    fn a_directory_owned_by_another_user_is_not_root_only() {
        let dir = tempfile::tempdir().unwrap();
        if nix::unistd::geteuid().as_raw() == 0 {
            std::os::unix::fs::chown(dir.path(), Some(10000), None).unwrap();
        }
        let err = root_only(dir.path()).unwrap_err();
        assert!(matches!(err, AliasError::Untrusted { .. }), "{err}");
    }
}
