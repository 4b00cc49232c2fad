//! Registration: publishing a slot into the scandir (staged under a dot
//! name, then renamed) and having `s6-svscan` pick it up; unregistration
//! stops the slot, unpublishes it and waits for its supervisors to leave.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hermes_core::fsutil::{self, FsError};
use hermes_core::profile;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError};
use hermes_core::wait;
use hermes_core::ProfileName;

use crate::{is_supervised, slot, svscan, wait_until, S6Manager, FAST_POLL, POLL, TIMEOUT_KILL_MS};

const UNREGISTER_WAIT: Duration = Duration::from_secs(15);
/// How long a newly published slot may take to get its s6-supervise.
const REGISTER_WAIT: Duration = Duration::from_secs(5);
/// A batch asks s6-svscan to scan once this many slots are published, then
/// after twice as many more each time, up to [`ANNOUNCE_AT_MOST`]: the first
/// supervisors spawn on the other CPU while the rest are written (with one
/// scan per 128, a boot of 100 profiles wrote every slot before s6-svscan
/// spawned anything), and each scan `stat`s every entry (3 ms of its CPU at
/// 1000 slots), so a batch of 1000 still costs only 11 scans.
const ANNOUNCE_FIRST: usize = 16;
const ANNOUNCE_AT_MOST: usize = 128;

/// How long a registration looks every [`FAST_POLL`].
const FAST_POLL_FOR: Duration = Duration::from_millis(20);

/// Poll `done` until it holds or `deadline` passes, at [`next_pause`]'s
/// pace.
fn wait_soon(deadline: Instant, done: impl FnMut() -> bool) -> bool {
    let mut pause = FAST_POLL;
    let pace = move |waited| {
        pause = next_pause(pause, waited);
        pause
    };
    wait::until_paced(deadline, pace, done)
}

/// Every 0.5 ms for the first [`FAST_POLL_FOR`], then doubling up to
/// [`POLL`]. A new slot's s6-supervise is there a millisecond or a few after
/// the scan. Doubling from the start woke at 0.5, 1.5, 3.5, 7.5 ms and
/// overslept that by up to half the wait, so a single create grew more than
/// a bare s6 registration as the tree grew (`bench/create-loop`).
fn next_pause(pause: Duration, waited: Duration) -> Duration {
    if waited < FAST_POLL_FOR {
        FAST_POLL
    } else {
        (pause * 2).min(POLL)
    }
}

/// What [`S6Manager::refresh_scripts`] did to the slots a tree kept.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Profiles whose scripts it rewrote, sorted.
    pub changed: Vec<ProfileName>,
    /// Slots it could not rewrite. They keep their scripts: one broken slot
    /// must not keep the tree from starting.
    pub failed: Vec<(ProfileName, FsError)>,
}

impl S6Manager {
    pub fn is_registered(&self, profile: &ProfileName) -> bool {
        fsutil::symlink_metadata(&self.slot_dir(profile)).is_ok()
    }

    /// Wait until an `s6-supervise` runs on the profile's slot and has written
    /// its first status file (it opens the control FIFO first; s6-svstat needs both).
    pub(crate) fn wait_supervised(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        let real = self.slot_dir(profile);
        let status_file = real.join("supervise/status");
        let deadline = Instant::now() + REGISTER_WAIT;
        if wait_soon(deadline, || is_supervised(&real) && status_file.exists()) {
            Ok(())
        } else {
            Err(ServiceError::Timeout {
                action: "registration",
                profile: profile.clone(),
                waited: REGISTER_WAIT,
            })
        }
    }

    /// Ask s6-svscan to act (`a`: scan now; `n`: and drop what is gone),
    /// as `s6-svscanctl` would, without starting it.
    fn svscanctl(&self, commands: &[u8]) -> Result<(), ServiceError> {
        self.write_control(&self.layout().control(), commands)
    }

    /// How many gateway slots exist, exactly once it matters: while the
    /// scandir holds fewer subdirectories than `limit`, its link count
    /// (2 + subdirectories) is an upper bound, read with one `stat` instead
    /// of listing it (at 1000 slots the listing was a tenth of a create's
    /// CPU): every slot is a subdirectory, beside a few that are not slots
    /// (`.s6-svscan`, the static slots). A file system whose directories do
    /// not count their subdirectories (btrfs, a merged overlay directory:
    /// link count 1) is listed.
    fn slot_count(&self, limit: usize) -> Result<usize, ServiceError> {
        use std::os::unix::fs::MetadataExt;
        let links = fsutil::metadata(&self.cfg.scandir)?.nlink();
        match usize::try_from(links).ok().and_then(|n| n.checked_sub(2)) {
            Some(dirs) if dirs < limit => Ok(dirs),
            _ => self.listed_slot_count(),
        }
    }

    /// The published gateway slots, counted by listing the scandir.
    fn listed_slot_count(&self) -> Result<usize, ServiceError> {
        use hermes_core::service::ServiceManager;
        Ok(self.list()?.len())
    }

    /// Build a slot under a dot name and rename it into place; no scan yet.
    /// `None` when the profile already has a slot. `count` slots exist and
    /// at most `limit` are allowed.
    fn publish(
        &self,
        spec: &GatewaySpec,
        start_now: bool,
        count: usize,
        limit: usize,
        shared: Option<&slot::SharedFiles>,
    ) -> Result<Option<PathBuf>, ServiceError> {
        if let Some(bad) = spec.env.keys().find(|k| !slot::valid_env_key(k)) {
            return Err(ServiceError::Unsupported {
                manager: ManagerKind::S6,
                operation: "an environment variable name that is not a shell identifier",
                hint: Some(format!("rename {bad:?}")),
            });
        }
        let profile = &spec.profile;
        if self.is_registered(profile) {
            return Ok(None);
        }
        if count >= limit {
            return Err(ServiceError::TooManySlots { limit });
        }
        // Never follow a symlink planted in the log path out of HERMES_HOME.
        fsutil::ensure_dir_under(&spec.home, &spec.log_dir, 0o700)?;
        let name = profile.service_name();
        let staging = self.layout().staging(&name, std::process::id());
        let dir = self.slot_dir(profile);
        slot::remove_tree(&staging)?;
        let mut files = slot::render(&slot::supervised(spec), start_now, self.cfg.echo_to_stdout);
        files.files.push((
            PathBuf::from("timeout-kill"),
            format!("{TIMEOUT_KILL_MS}\n"),
            0o644,
        ));
        slot::write_dir(&staging, &files, shared).inspect_err(|_| {
            let _ = slot::remove_tree(&staging);
        })?;
        if let Err(e) = fsutil::rename(&staging, &dir) {
            let _ = slot::remove_tree(&staging);
            // A concurrent registration of the same profile renamed its own
            // into place first (rename(2) replaces no directory that has
            // files): that one stands.
            return if self.is_registered(profile) {
                Ok(None)
            } else {
                Err(e.into())
            };
        }
        Ok(Some(dir))
    }

    /// Register many slots, announced by a scan after the first
    /// [`ANNOUNCE_FIRST`] published and then at growing intervals, then
    /// wait for all of them to be supervised: boot reconciliation of 1000
    /// profiles asks for 11 scans instead of 1000, and s6-svscan spawns the
    /// first supervisors while the rest are still being written. One result
    /// per slot.
    pub(crate) fn register_batch(
        &self,
        slots: &[(GatewaySpec, bool)],
    ) -> Result<Vec<Result<(), ServiceError>>, ServiceError> {
        self.check_supervisor()?;
        let limit = svscan::read_limit(&self.cfg.scandir);
        // Exact once the batch could reach the limit; until then the upper
        // bound of one `stat` is enough (a create of one name is a batch
        // too, and listing 1000 slots was a twentieth of its CPU).
        let mut count = self.slot_count(limit.saturating_sub(slots.len()))?;
        let shared = slot::SharedFiles::prepare(&self.cfg.scandir);
        let mut results = Vec::with_capacity(slots.len());
        let mut pending = Vec::new();
        let mut announced = 0;
        let mut interval = ANNOUNCE_FIRST;
        for (i, (spec, start_now)) in slots.iter().enumerate() {
            match self.publish(spec, *start_now, count, limit, shared.as_ref()) {
                Ok(Some(real)) => {
                    count += 1;
                    pending.push((i, real));
                    results.push(Ok(()));
                    if pending.len() - announced == interval {
                        self.svscanctl(b"a")?;
                        announced = pending.len();
                        interval = (interval * 2).min(ANNOUNCE_AT_MOST);
                    }
                }
                Ok(None) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        if pending.is_empty() {
            return Ok(results);
        }
        if announced < pending.len() {
            self.svscanctl(b"a")?;
        }
        // Each slot costs s6-svscan two supervisors and a logger to spawn:
        // a few hundred per second, fewer on a loaded machine.
        let waited = REGISTER_WAIT + Duration::from_millis(20) * pending.len() as u32;
        let deadline = Instant::now() + waited;
        // Every one must be supervised: check the first not seen so yet,
        // not all of them at each poll (1000 FIFO opens every 5 ms took CPU
        // from the spawning being waited for); the rest once at the deadline.
        let mut seen = 0;
        wait_soon(deadline, || {
            while seen < pending.len() && is_supervised(&pending[seen].1) {
                seen += 1;
            }
            seen == pending.len()
        });
        pending.drain(..seen);
        pending.retain(|(_, real)| !is_supervised(real));
        for (i, _) in pending {
            results[i] = Err(ServiceError::Timeout {
                action: "registration",
                profile: slots[i].0.profile.clone(),
                waited,
            });
        }
        Ok(results)
    }

    /// Publish one slot, scan, and wait until it is supervised.
    pub(crate) fn register_slot(
        &self,
        spec: &GatewaySpec,
        start_now: bool,
    ) -> Result<(), ServiceError> {
        self.check_supervisor()?;
        let limit = svscan::read_limit(&self.cfg.scandir);
        let count = self.slot_count(limit)?;
        // Already published (maybe by a concurrent call): done once supervised.
        let shared = slot::SharedFiles::prepare(&self.cfg.scandir);
        let Some(real) = self.publish(spec, start_now, count, limit, shared.as_ref())? else {
            return self.wait_supervised(&spec.profile);
        };
        if let Err(e) = self.svscanctl(b"a") {
            let _ = slot::remove_tree(&real);
            return Err(e);
        }
        self.wait_supervised(&spec.profile)
    }

    /// A tree keeps its slots across its restarts, with the scripts of the
    /// hermes that wrote them, and [`Self::publish`] leaves a slot that
    /// exists alone. So before any supervisor runs (`hermes supervise`),
    /// every slot whose profile still exists gets this hermes's scripts
    /// ([`slot::refresh_scripts`]). A slot whose profile is gone is left as
    /// it is.
    pub(crate) fn refresh_scripts(&self) -> Result<Refreshed, ServiceError> {
        use hermes_core::service::ServiceManager;
        let mut refreshed = Refreshed::default();
        for profile in self.list()? {
            if profile::existing(&self.cfg.home, &profile).is_err() {
                continue;
            }
            let spec = self.spec(&profile);
            match slot::refresh_scripts(&self.slot_dir(&profile), &spec, self.cfg.echo_to_stdout) {
                Ok(true) => refreshed.changed.push(profile),
                Ok(false) => {}
                Err(e) => refreshed.failed.push((profile, e)),
            }
        }
        Ok(refreshed)
    }

    /// Stop the slot, move it out of s6-svscan's sight, and wait for its
    /// supervisors to exit before removing its files (a directory deleted
    /// under a live s6-supervise floods its log with "unable to write
    /// status file").
    pub(crate) fn unregister_slot(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        let dir = self.slot_dir(profile);
        if !self.is_registered(profile) || !is_supervised(&dir) {
            // Nothing supervises it: there is no process to stop, only files to remove.
            slot::remove_tree(&dir)?;
            return Ok(());
        }
        self.check_supervisor()?;
        self.set_down_marker(&dir, true)?;
        self.svc(&dir, b"d")?;
        self.wait_down(profile, &dir, UNREGISTER_WAIT)?;
        let retired = self
            .layout()
            .retired(&profile.service_name(), std::process::id());
        slot::remove_tree(&retired)?;
        fsutil::rename(&dir, &retired)?;
        self.svscanctl(b"an")?;
        let deadline = Instant::now() + UNREGISTER_WAIT;
        let gone = wait_until(deadline, || {
            !is_supervised(&retired) && !is_supervised(&retired.join("log"))
        });
        if !gone {
            return Err(ServiceError::Timeout {
                action: "unregistration",
                profile: profile.clone(),
                waited: UNREGISTER_WAIT,
            });
        }
        slot::remove_tree(&retired)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::HermesHome;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn manager(scandir: &std::path::Path) -> S6Manager {
        S6Manager::new(crate::S6Config {
            scandir: scandir.to_path_buf(),
            home: HermesHome::new("/nonexistent"),
            program: "/bin/true".into(),
            echo_to_stdout: false,
        })
    }

    #[test]
    fn a_registration_looks_every_half_millisecond_at_first_then_backs_off() {
        let ms = Duration::from_millis;
        assert_eq!(next_pause(FAST_POLL, ms(0)), FAST_POLL);
        assert_eq!(next_pause(FAST_POLL, ms(19)), FAST_POLL);
        let mut pause = FAST_POLL;
        let mut later = Vec::new();
        for _ in 0..5 {
            pause = next_pause(pause, ms(25));
            later.push(pause.as_micros());
        }
        assert_eq!(later, [1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn the_slot_count_is_exact_once_it_reaches_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        assert_eq!(m.slot_count(3).unwrap(), 0, "an empty scandir");
        let layout = m.layout();
        for name in ["gateway-a", "gateway-b", "gateway-c"] {
            fs::create_dir(layout.slot(name)).unwrap();
        }
        // Two directories that are not gateway slots: a static slot and a staging leftover.
        fs::create_dir(layout.slot("dashboard")).unwrap();
        fs::create_dir(layout.staging("gateway-d", 1)).unwrap();
        let dirs = fs::metadata(dir.path()).unwrap().nlink() - 2;
        if dirs == 5 {
            // Far from the limit: the directories, an upper bound, from one stat.
            assert_eq!(m.slot_count(100).unwrap(), 5);
        }
        // At the limit by that bound: the published slots, counted.
        assert_eq!(m.slot_count(5).unwrap(), 3);
        assert_eq!(m.slot_count(4).unwrap(), 3);
    }
}
