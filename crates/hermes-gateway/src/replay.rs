//! Refusing a signed request seen before.
//!
//! Every verified signature is remembered, with its timestamp, until that
//! timestamp leaves the 300 s window (after which the timestamp check refuses
//! it anyway). Memory is bounded: past [`MAX_ENTRIES`] the oldest entries are
//! dropped and the floor rises past their timestamp, so a request signed at or
//! before a forgotten second is refused as too old rather than let through.
//! Nothing is kept on disk: a gateway starts with its floor at the second it
//! started, so a signature from before a restart is refused in the same way.
//! The cost is that a sender whose clock lags the gateway's is refused for
//! that many seconds after a start; a sender always signs each attempt anew.

use std::collections::BTreeSet;

use crate::signature::{AuthError, Tag, TOLERANCE_SECS};

/// About 40 bytes an entry: a few MiB at most.
pub const MAX_ENTRIES: usize = 100_000;

/// Half of an HMAC tag is plenty to tell signatures apart: only the secret's
/// holder can make them.
type Short = [u8; 16];

pub struct ReplayGuard {
    seen: BTreeSet<(u64, Short)>,
    /// Timestamps below this are refused.
    floor: u64,
    max_entries: usize,
}

fn short(tag: &Tag) -> Short {
    let mut s = [0u8; 16];
    s.copy_from_slice(&tag[..16]);
    s
}

impl ReplayGuard {
    pub fn new(started_secs: u64, max_entries: usize) -> Self {
        ReplayGuard {
            seen: BTreeSet::new(),
            floor: started_secs,
            max_entries: max_entries.max(1),
        }
    }

    /// Refuse a request whose timestamp is forgotten or one of whose tags was seen;
    /// cheap enough to run before the body is read.
    pub fn check(&self, timestamp: u64, tags: &[Tag]) -> Result<(), AuthError> {
        if timestamp < self.floor {
            return Err(AuthError::Forgotten);
        }
        if tags
            .iter()
            .any(|tag| self.seen.contains(&(timestamp, short(tag))))
        {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// Remember a verified signature; refused if it is already known. Check and
    /// insert are one step, so two copies racing each other cannot both pass.
    pub fn record(&mut self, timestamp: u64, tag: &Tag, now_secs: u64) -> Result<(), AuthError> {
        while let Some(&(ts, _)) = self.seen.first() {
            if ts.saturating_add(TOLERANCE_SECS) >= now_secs {
                break;
            }
            self.seen.pop_first();
        }
        self.check(timestamp, std::slice::from_ref(tag))?;
        while self.seen.len() >= self.max_entries {
            if let Some((ts, _)) = self.seen.pop_first() {
                self.floor = self.floor.max(ts + 1);
            }
        }
        if timestamp < self.floor {
            return Err(AuthError::Forgotten);
        }
        self.seen.insert((timestamp, short(tag)));
        Ok(())
    }

    /// Forget a signature whose request was not stored (disk full, shutting
    /// down), so the sender's identical retry is not taken for a replay.
    pub fn forget(&mut self, timestamp: u64, tag: &Tag) {
        self.seen.remove(&(timestamp, short(tag)));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_800_000_000;

    fn tag(n: u8) -> Tag {
        [n; 32]
    }

    #[test]
    fn a_signature_is_accepted_once_within_the_window() {
        let mut guard = ReplayGuard::new(START, 10);
        assert_eq!(guard.record(START, &tag(1), START), Ok(()));
        assert_eq!(guard.check(START, &[tag(1)]), Err(AuthError::Replayed));
        assert_eq!(
            guard.record(START, &tag(1), START + 1),
            Err(AuthError::Replayed)
        );
        // The same tag under another timestamp is another signature.
        assert_eq!(guard.record(START + 1, &tag(1), START + 1), Ok(()));
        // Forgotten after a failed store: the identical retry passes.
        guard.forget(START, &tag(1));
        assert_eq!(guard.record(START, &tag(1), START + 1), Ok(()));
    }

    #[test]
    fn nothing_from_before_the_start_is_accepted() {
        let mut guard = ReplayGuard::new(START, 10);
        assert_eq!(
            guard.record(START - 1, &tag(1), START),
            Err(AuthError::Forgotten)
        );
        assert_eq!(guard.check(START - 1, &[tag(2)]), Err(AuthError::Forgotten));
    }

    #[test]
    fn entries_expire_with_the_window() {
        let mut guard = ReplayGuard::new(START, 10);
        guard.record(START, &tag(1), START).unwrap();
        guard.record(START + 10, &tag(2), START + 10).unwrap();
        guard
            .record(START + 11, &tag(3), START + TOLERANCE_SECS + 1)
            .unwrap();
        assert_eq!(guard.len(), 2, "the entry for START outlived its window");
    }

    #[test]
    fn memory_is_bounded_and_the_floor_rises_instead_of_forgetting_silently() {
        let mut guard = ReplayGuard::new(START, 3);
        for (ts, n) in [(START, 1), (START + 1, 2), (START + 2, 3), (START + 3, 4)] {
            guard.record(ts, &tag(n), START + 3).unwrap();
        }
        assert_eq!(guard.len(), 3);
        // The dropped entry's second is now refused as a whole, replay or not.
        assert_eq!(
            guard.record(START, &tag(1), START + 3),
            Err(AuthError::Forgotten)
        );
        assert_eq!(
            guard.record(START, &tag(9), START + 3),
            Err(AuthError::Forgotten)
        );
        assert_eq!(
            guard.record(START + 1, &tag(2), START + 3),
            Err(AuthError::Replayed)
        );
    }
}
