//! A gateway slot's `finish` moved out of s6's way while the slot stops.
//!
//! s6-supervise runs `finish` after every death of the service, and goes
//! straight to "down" when the slot has none. For the exit 0 of a gateway
//! answering a stop, the script only prints a line: the gateway logged and
//! recorded its own stop. One `/bin/sh` per gateway, whose C library
//! start-up alone was a quarter of the CPU of a 1000-gateway `stop --all`
//! (bench/results/2026-12-03-issue12-seventh-round.md, section 5).
//!
//! So a stop (`gateway stop`, `stop --all`, and the container's own stop in
//! [`crate::teardown`]) moves the script aside just before it asks s6,
//! notes the slot's status, and once the slot is down records itself, as
//! the hook would have, only a death other than exit 0
//! ([`Aside::unclean_death`]). A crash in the moment between the move and
//! the request is restarted by s6 and then stopped: only the stop's clean
//! exit is left to see.
//! A `gateway stop` then puts the script back; a start puts back one that a
//! stop killed half-way left aside, whether the gateway is up or not.

use std::ffi::OsStr;
use std::path::Path;

use hermes_core::dirfd::Dir;
use hermes_core::fsutil::{self, FsError};

use crate::svstat::StatusFile;

/// Where a slot's `finish` waits while the slot stops.
pub const DEFERRED_FINISH: &str = "finish.deferred";
const FINISH: &str = "finish";

/// A slot whose `finish` is aside: its status once the script was out of
/// s6's way (`None`: no status file yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aside {
    pub before: Option<StatusFile>,
}

impl Aside {
    /// The death s6 would have passed to `finish` since the script went
    /// aside, as `finish`'s two arguments, when it is one the hook must
    /// record: the service is down now (no finish of s6's running), its
    /// status changed since, and it did not exit 0. A death s6 was already
    /// finishing when the script went aside is s6's: its script had started.
    pub fn unclean_death(&self, now: &StatusFile) -> Option<(i32, i32)> {
        let ours = self
            .before
            .is_none_or(|b| b.stamp != now.stamp && !b.finishing());
        let args = now.finish_args();
        (ours && now.pid == 0 && !now.finishing() && args != (0, 0)).then_some(args)
    }
}

/// A slot directory as reached by whoever stops it: the init (root) through
/// a directory handle, never following a link; the tree's owner by path, one
/// system call a file operation (each is a round trip on fuse-overlayfs).
pub trait SlotDir {
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError>;
    fn status(&self) -> Option<StatusFile>;
}

impl SlotDir for Dir {
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        Dir::rename(self, OsStr::new(from), OsStr::new(to))
    }

    fn status(&self) -> Option<StatusFile> {
        StatusFile::read_in(self)
    }
}

impl SlotDir for Path {
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        fsutil::rename(&self.join(from), &self.join(to))
    }

    fn status(&self) -> Option<StatusFile> {
        StatusFile::read(self)
    }
}

/// Move the `finish` of `slot` aside; `None` when it has none. Its status
/// is read once the script is out of s6's way, so a death a moment before
/// is in it (with the script already started by s6).
pub fn defer(slot: &(impl SlotDir + ?Sized)) -> Result<Option<Aside>, FsError> {
    match slot.rename(FINISH, DEFERRED_FINISH) {
        Ok(()) => Ok(Some(Aside {
            before: slot.status(),
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Put back a `finish` that [`defer`] moved aside; nothing when there is
/// none aside (one failed rename).
pub fn restore(slot: &(impl SlotDir + ?Sized)) -> Result<(), FsError> {
    match slot.rename(DEFERRED_FINISH, FINISH) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn status(stamp: u64, pid: u64, wstat: i32, flags: u8) -> StatusFile {
        StatusFile {
            stamp: (stamp, 0),
            pid,
            wstat,
            flags,
        }
    }

    const UP: u8 = 4 | 8;
    const FINISHING: u8 = 2;

    #[test]
    fn only_a_death_after_the_script_went_aside_other_than_exit_0_is_recorded() {
        let up = Aside {
            before: Some(status(10, 42, 0, UP)),
        };
        let cases = [
            ("clean exit", status(11, 0, 0, 0), None),
            ("exit 3", status(11, 0, 3 << 8, 0), Some((3, 0))),
            ("killed", status(11, 0, 9, 0), Some((256, 9))),
            ("still up", status(10, 42, 0, UP), None),
            // s6 found a finish after all (the rename lost a race): its own.
            ("finishing", status(11, 43, 3 << 8, FINISHING), None),
        ];
        for (what, now, want) in cases {
            assert_eq!(up.unclean_death(&now), want, "{what}");
        }
        // Down before, with the finish of an earlier crash already run.
        let old = status(5, 0, 1 << 8, 0);
        let down = Aside { before: Some(old) };
        assert_eq!(down.unclean_death(&old), None);
        // Finishing before: the status moves once that script ends.
        let finishing = Aside {
            before: Some(status(5, 43, 1 << 8, FINISHING)),
        };
        assert_eq!(finishing.unclean_death(&status(6, 0, 1 << 8, 0)), None);
        // No status before: any death after counts.
        let unknown = Aside { before: None };
        assert_eq!(unknown.unclean_death(&status(3, 0, 15, 0)), Some((256, 15)));
    }

    /// One slot's script aside and back through `slot`.
    fn aside_and_back(slot: &(impl SlotDir + ?Sized), dir: &std::path::Path) {
        let (finish, deferred) = (dir.join("finish"), dir.join(DEFERRED_FINISH));
        let aside = defer(slot).unwrap().expect("moved");
        assert_eq!(aside.before, None, "no supervise/status here");
        assert!(!finish.exists() && deferred.exists());
        assert_eq!(defer(slot).unwrap(), None, "nothing left to move");
        restore(slot).unwrap();
        assert!(finish.exists() && !deferred.exists());
        restore(slot).unwrap();
        assert!(finish.exists());
    }

    #[test]
    fn defer_and_restore_move_the_script_by_handle_or_path() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("finish"), "#!/bin/sh\n").unwrap();
        aside_and_back(&Dir::open(tmp.path()).unwrap(), tmp.path());
        aside_and_back(tmp.path(), tmp.path());
    }
}
