//! The scandir's layout, named in one place (as `HermesHome` is for the
//! home): each slot is a service directory in the scandir itself, built
//! under a dot name (s6-svscan ignores those) and renamed into place, and
//! renamed back out under a dot name to be retired; `.s6-svscan/control`
//! is the FIFO the supervisor reads.

use std::path::{Path, PathBuf};

/// The supervisor's control FIFO, relative to the scandir.
pub const CONTROL: &str = ".s6-svscan/control";
/// The markers of the dot names a slot takes while it is built or retired.
const STAGING: &str = ".tmp.";
const RETIRED: &str = ".gone.";

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

    /// The service directory of slot `name`, where s6-svscan finds it.
    pub fn slot(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where process `pid` builds slot `name` before renaming it into place.
    pub fn staging(&self, name: &str, pid: u32) -> PathBuf {
        self.root.join(format!(".{name}{STAGING}{pid}"))
    }

    /// Where process `pid` moves slot `name` out of s6-svscan's sight, to
    /// delete it once no supervisor runs in it.
    pub fn retired(&self, name: &str, pid: u32) -> PathBuf {
        self.root.join(format!(".{name}{RETIRED}{pid}"))
    }

    /// Whether an entry of the scandir is a slot a registration or an
    /// unregistration left half way ([`Self::staging`], [`Self::retired`]).
    pub fn is_leftover(entry: &str) -> bool {
        entry.strip_prefix('.').is_some_and(|rest| {
            rest.starts_with("gateway-") && (rest.contains(STAGING) || rest.contains(RETIRED))
        })
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
        assert_eq!(s.slot("dashboard"), Path::new("/run/service/dashboard"));
        assert_eq!(
            s.staging("gateway-a", 12),
            Path::new("/run/service/.gateway-a.tmp.12")
        );
        assert_eq!(
            s.retired("gateway-a", 12),
            Path::new("/run/service/.gateway-a.gone.12")
        );
        assert_eq!(s.control(), Path::new("/run/service/.s6-svscan/control"));
        let dir = tempfile::tempdir().unwrap();
        assert!(!Scandir::new(dir.path()).has_supervisor());
    }

    #[test]
    fn only_a_gateway_slot_half_built_or_half_retired_is_a_leftover() {
        for name in [".gateway-a.tmp.12", ".gateway-a.gone.7"] {
            assert!(Scandir::is_leftover(name), "{name}");
        }
        for name in [
            "gateway-a",
            "gateway-a.tmp.12",
            ".s6-svscan",
            ".hermes-shared",
            ".dashboard.tmp.1",
            ".gateway-a",
        ] {
            assert!(!Scandir::is_leftover(name), "{name}");
        }
    }
}
