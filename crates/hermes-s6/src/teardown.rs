//! A container's stop without a process per gateway. On its way down
//! s6-supervise runs every slot's `finish` script: a `/bin/sh` that, for
//! the exit 0 of a gateway answering the stop, only prints a line (the
//! gateway recorded its own stop). Those 50 shells were a third of the
//! CPU of a 50-gateway `docker stop`. So the init moves each gateway
//! slot's `finish` aside ([`crate::finish_aside`]) before it signals the
//! tree, and once the tree is down runs the script itself, as s6-supervise
//! would have, only for the gateways whose last death was not that clean
//! exit: a crash or a kill during the stop is still recorded by the hook.
//!
//! Which deaths happened during the stop comes from `supervise/status`,
//! which s6-supervise rewrites on every change and leaves behind.
//!
//! The init is root and the slots are the service user's (s6-supervise
//! writes in them): everything here goes through directory handles, never
//! through a link, and the scripts are run as the service user.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::FsError;

use crate::finish_aside::{self, Aside, DEFERRED_FINISH};
use crate::svstat::StatusFile;

/// The gateway slots whose `finish` was moved aside, with their status
/// before the stop.
#[derive(Debug, Default)]
pub struct DeferredFinish {
    scandir: PathBuf,
    slots: Vec<(OsString, Aside)>,
}

/// One `finish` to run now: the script and s6's two arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishRun {
    pub slot: OsString,
    pub script: PathBuf,
    pub code: i32,
    pub signal: i32,
}

impl FinishRun {
    pub fn args(&self) -> [String; 2] {
        [self.code.to_string(), self.signal.to_string()]
    }
}

/// Move the `finish` of every gateway slot of `scandir` aside,
/// noting each slot's status. A slot whose script cannot be moved keeps it
/// (s6-supervise runs it as before); a scandir that cannot be read gives
/// an empty set and the error. Five file operations a slot, on the way to
/// the stop: through a fuse-overlayfs `/run` each costs a few tenths of a
/// millisecond.
pub fn defer_finish(scandir: &Path) -> (DeferredFinish, Option<FsError>) {
    let mut deferred = DeferredFinish {
        scandir: scandir.to_path_buf(),
        slots: Vec::new(),
    };
    let opened =
        Dir::open_no_links(scandir).and_then(|root| root.names().map(|names| (root, names)));
    let (root, names) = match opened {
        Ok(opened) => opened,
        Err(e) => return (deferred, Some(e)),
    };
    let mut first_error = None;
    for name in names {
        if !name.to_str().is_some_and(|n| n.starts_with("gateway-")) {
            continue;
        }
        match root
            .open_dir(&name)
            .and_then(|slot| finish_aside::defer(&slot))
        {
            Ok(Some(aside)) => deferred.slots.push((name, aside)),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (deferred, first_error)
}

impl DeferredFinish {
    /// The finish runs s6-supervise would have started during the stop:
    /// every slot with an [`Aside::unclean_death`], in slot order.
    pub fn unclean_deaths(&self) -> Vec<FinishRun> {
        let Ok(root) = Dir::open_no_links(&self.scandir) else {
            return Vec::new();
        };
        let mut runs: Vec<FinishRun> = self
            .slots
            .iter()
            .filter_map(|(name, aside)| {
                let now = StatusFile::read_in(&root.open_dir(name).ok()?)?;
                let (code, signal) = aside.unclean_death(&now)?;
                Some(FinishRun {
                    slot: name.clone(),
                    script: root.path().join(name).join(DEFERRED_FINISH),
                    code,
                    signal,
                })
            })
            .collect();
        runs.sort_by(|a, b| a.slot.cmp(&b.slot));
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scandir;
    use std::fs;

    /// A 35-byte status (s6 2.11 to 2.13) with these fields.
    fn status(stamp_secs: u64, pid: u64, wstat: u16, flags: u8) -> Vec<u8> {
        let mut pack = vec![0u8; 35];
        pack[0..8].copy_from_slice(&stamp_secs.to_be_bytes());
        pack[24..32].copy_from_slice(&pid.to_be_bytes());
        pack[32..34].copy_from_slice(&wstat.to_be_bytes());
        pack[34] = flags;
        pack
    }

    fn slot(scandir: &Path, name: &str, pack: Option<Vec<u8>>) -> PathBuf {
        let dir = Scandir::new(scandir).slot(name);
        fs::create_dir_all(dir.join("supervise")).unwrap();
        fs::write(dir.join("finish"), "#!/bin/sh\n").unwrap();
        if let Some(pack) = pack {
            fs::write(dir.join("supervise/status"), pack).unwrap();
        }
        dir
    }

    #[test]
    fn only_deaths_during_the_stop_other_than_exit_0_are_run() {
        let tmp = tempfile::tempdir().unwrap();
        let scan = tmp.path();
        let up = |stamp| Some(status(stamp, 42, 0, 4));
        let clean = slot(scan, "gateway-clean", up(10));
        let killed = slot(scan, "gateway-killed", up(10));
        let crashed = slot(scan, "gateway-crashed", up(10));
        // Down before the stop, after a crash whose finish already ran.
        let old = slot(scan, "gateway-old", Some(status(5, 0, 1 << 8, 0)));
        let still_up = slot(scan, "gateway-hung", up(10));
        let static_slot = slot(scan, "dashboard", up(10));
        let (deferred, error) = defer_finish(scan);
        assert!(error.is_none());
        assert_eq!(deferred.slots.len(), 5);
        assert!(
            static_slot.join("finish").exists(),
            "static slots keep theirs"
        );
        for dir in [&clean, &killed, &crashed, &old, &still_up] {
            assert!(!dir.join("finish").exists());
            assert!(dir.join(DEFERRED_FINISH).exists());
        }
        fs::write(clean.join("supervise/status"), status(11, 0, 0, 0)).unwrap();
        fs::write(killed.join("supervise/status"), status(11, 0, 9, 0)).unwrap();
        fs::write(crashed.join("supervise/status"), status(12, 0, 3 << 8, 0)).unwrap();
        assert_eq!(
            deferred.unclean_deaths(),
            [
                FinishRun {
                    slot: "gateway-crashed".into(),
                    script: crashed.join(DEFERRED_FINISH),
                    code: 3,
                    signal: 0
                },
                FinishRun {
                    slot: "gateway-killed".into(),
                    script: killed.join(DEFERRED_FINISH),
                    code: 256,
                    signal: 9
                },
            ]
        );
    }

    #[test]
    fn a_planted_link_is_neither_followed_nor_renamed_through() {
        let tmp = tempfile::tempdir().unwrap();
        let scan = tmp.path().join("scan");
        fs::create_dir_all(&scan).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("finish"), "").unwrap();
        // The slot directory itself replaced by a link out of the scandir.
        std::os::unix::fs::symlink(&elsewhere, scan.join("gateway-x")).unwrap();
        let (deferred, error) = defer_finish(&scan);
        assert!(deferred.slots.is_empty());
        assert!(error.is_some_and(|e| e.to_string().contains("gateway-x")));
        assert!(elsewhere.join("finish").exists());
    }

    #[test]
    fn a_slot_without_a_status_before_counts_any_death_after() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = slot(tmp.path(), "gateway-new", None);
        let (deferred, _) = defer_finish(tmp.path());
        assert!(deferred.unclean_deaths().is_empty(), "no status at all");
        fs::write(dir.join("supervise/status"), status(3, 0, 15, 0)).unwrap();
        assert_eq!(deferred.unclean_deaths()[0].args(), ["256", "15"]);
    }
}
