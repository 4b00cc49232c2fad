//! The scandir's layout, named in one place (as `HermesHome` is for the
//! home): slot directories live in `.slots/` (s6-svscan ignores dot names)
//! and are published as symlinks; `.s6-svscan/control` is the FIFO the
//! supervisor reads.

use std::path::{Path, PathBuf};

/// Where slot directories live, relative to the scandir.
pub const SLOTS_DIR: &str = ".slots";
/// The supervisor's control FIFO, relative to the scandir.
pub const CONTROL: &str = ".s6-svscan/control";

/// One scandir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scandir {
    root: PathBuf,
}

impl Scandir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Scandir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.slots/`, where the real service directories are.
    pub fn slots(&self) -> PathBuf {
        self.root.join(SLOTS_DIR)
    }

    /// The real directory of slot `name`.
    pub fn slot_dir(&self, name: &str) -> PathBuf {
        self.slots().join(name)
    }

    /// The published name of slot `name` (a symlink into `.slots/`).
    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// What the published link of slot `name` points to (relative, so the
    /// scandir can be moved or bind-mounted).
    pub fn link_target(name: &str) -> PathBuf {
        Path::new(SLOTS_DIR).join(name)
    }

    /// The supervisor's control FIFO.
    pub fn control(&self) -> PathBuf {
        self.root.join(CONTROL)
    }

    /// Whether a supervisor reads the control FIFO.
    pub fn has_supervisor(&self) -> bool {
        crate::fifo_has_reader(&self.control())
    }
}

impl AsRef<Path> for Scandir {
    fn as_ref(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_its_parts() {
        let s = Scandir::new("/run/service");
        assert_eq!(s.slots(), Path::new("/run/service/.slots"));
        assert_eq!(
            s.slot_dir("dashboard"),
            Path::new("/run/service/.slots/dashboard")
        );
        assert_eq!(s.link("dashboard"), Path::new("/run/service/dashboard"));
        assert_eq!(
            Scandir::link_target("dashboard"),
            Path::new(".slots/dashboard")
        );
        assert_eq!(s.control(), Path::new("/run/service/.s6-svscan/control"));
        let dir = tempfile::tempdir().unwrap();
        assert!(!Scandir::new(dir.path()).has_supervisor());
    }
}
