//! The last boot reconcile in numbers (`logs/container-boot.json`): written by
//! `hermes container reconcile`, read by the dashboard's `/metrics`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReport {
    /// When the reconcile finished, ms since the Unix epoch.
    pub at_ms: u64,
    pub duration_ms: u64,
    /// Slots registered and started.
    pub started: u64,
    /// Slots registered down.
    pub down: u64,
    /// Slots that already existed, left as they were.
    pub kept: u64,
    pub failed: u64,
    /// Entries of `profiles/` that are not profiles.
    pub skipped: u64,
}

impl BootReport {
    pub fn save(&self, path: &Path) -> Result<(), FsError> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        fsutil::atomic_write(path, &text, 0o644)
    }

    /// `None` when missing or unreadable: a host, or a container before its first boot.
    pub fn load(path: &Path) -> Option<BootReport> {
        let bytes = fsutil::read_no_follow(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.json");
        assert_eq!(BootReport::load(&path), None);
        let r = BootReport {
            at_ms: 5,
            duration_ms: 12,
            started: 3,
            ..BootReport::default()
        };
        r.save(&path).unwrap();
        assert_eq!(BootReport::load(&path), Some(r));
    }
}
