//! Start, stop and restart through any service manager, recording the
//! operator's wish (`desired_state`) first. The CLI, the dashboard and the
//! TUI all act through here, so the rules live in one place.

use std::path::Path;
use std::time::Duration;

use crate::fsutil::{self, Durability};
use crate::home::{HermesHome, ProfilePaths};
use crate::name::ProfileName;
use crate::pool;
use crate::profile::{self, ProfileError};
use crate::service::{GatewaySpec, ServiceError, ServiceManager, SlotStatus};
use crate::state::{self, DesiredState, StateError};

/// A lifecycle action on one gateway, as every front end names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Action> {
        match raw {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    State(#[from] StateError),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: SlotStatus,
    /// The profile had no slot and this call registered one.
    pub registered: bool,
}

/// [`apply_many`] for one gateway.
pub fn apply(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    program: &Path,
    profile: &ProfileName,
    action: Action,
    timeout: Duration,
) -> Result<Outcome, LifecycleError> {
    let mut results = apply_many(
        manager,
        home,
        program,
        std::slice::from_ref(profile),
        action,
        timeout,
    );
    results.pop().expect("one result per profile")
}

/// Record every profile's `desired_state`, then act on all of them in one
/// [`ServiceManager::act_many`] call (which waits for them together when
/// the manager can). One result per profile, in the order given.
pub fn apply_many(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    program: &Path,
    profiles: &[ProfileName],
    action: Action,
    timeout: Duration,
) -> Vec<Result<Outcome, LifecycleError>> {
    let desired = match action {
        Action::Stop => DesiredState::Stopped,
        Action::Start | Action::Restart => DesiredState::Running,
    };
    let mut results: Vec<Option<Result<Outcome, LifecycleError>>> =
        profiles.iter().map(|_| None).collect();
    let mut asked = Vec::with_capacity(profiles.len());
    for (i, recorded) in record_all(home, profiles, desired).into_iter().enumerate() {
        match recorded {
            Ok(()) => asked.push(i),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let targets: Vec<ProfileName> = asked.iter().map(|&i| profiles[i].clone()).collect();
    let done = manager.act_many(&targets, action, timeout);
    for (i, result) in asked.into_iter().zip(done) {
        let profile = &profiles[i];
        results[i] = Some(match result {
            Err(ServiceError::NotRegistered { .. })
                if action != Action::Stop && manager.supports_registration() =>
            {
                register_and_start(manager, home, program, profile, timeout)
            }
            result => result
                .map(|status| Outcome {
                    status,
                    registered: false,
                })
                .map_err(LifecycleError::from),
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every profile was answered"))
        .collect()
}

/// Threads recording wishes at once. Each file's own fsync waits on the
/// disk; the kernel serves the ones that wait together with one journal
/// commit, so the batch costs a few commits, not one per profile.
const RECORD_THREADS: usize = 32;

/// [`record`] for every profile, all durable before any is asked for; one
/// result per profile, in order. Each file is replaced atomically (its
/// content fsynced before the rename), and the directories are synced only
/// once every file is renamed, so one journal commit can carry every rename
/// of the batch instead of one commit per profile. One `syncfs(2)` instead
/// was no faster here, and it waits for every dirty page of the file
/// system, other containers' too. A wish the file already holds is not
/// written again, and its directory not synced.
fn record_all(
    home: &HermesHome,
    profiles: &[ProfileName],
    desired: DesiredState,
) -> Vec<Result<(), LifecycleError>> {
    let written = pool::map(profiles, RECORD_THREADS, |p| record(home, p, desired));
    let dirs: Vec<Option<&Path>> = written
        .iter()
        .map(|r| match r {
            Ok(Some(paths)) => Some(paths.dir.as_path()),
            Ok(None) | Err(_) => None,
        })
        .collect();
    let synced = pool::map(&dirs, RECORD_THREADS, |dir| dir.map(fsutil::sync_dir));
    written
        .into_iter()
        .zip(synced)
        .map(|(written, synced)| {
            written?;
            synced.map_or(Ok(()), |r| r.map_err(|e| LifecycleError::State(e.into())))
        })
        .collect()
}

/// Record the wish in the profile's state file, replaced atomically; the
/// paths of a profile whose file changed, for the caller to sync its
/// directory. The file is left alone when it already holds this wish: the
/// call that recorded it made it durable, and other writers carry it over.
fn record(
    home: &HermesHome,
    profile: &ProfileName,
    desired: DesiredState,
) -> Result<Option<ProfilePaths>, LifecycleError> {
    let paths = profile::existing(home, profile)?;
    let written = state::update_if_changed(&paths, Durability::Atomic, |s| {
        s.desired_state = Some(desired);
        if desired == DesiredState::Running {
            // An explicit start is a fresh chance after a crash loop.
            s.fast_failures = 0;
        }
    })?;
    Ok(written.then_some(paths))
}

/// A profile created from outside (no slot yet) is registered, not refused;
/// under the profiles lock, so a concurrent delete cannot leave a slot
/// behind for a profile that is gone.
fn register_and_start(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    program: &Path,
    profile: &ProfileName,
    timeout: Duration,
) -> Result<Outcome, LifecycleError> {
    let held = profile::lock(home)?;
    profile::existing(home, profile)?;
    manager.register(&GatewaySpec::for_profile(home, profile, program), false)?;
    drop(held);
    Ok(Outcome {
        status: manager.start(profile, timeout)?,
        registered: true,
    })
}

/// Take a gateway out of supervision for good (`gateway uninstall` on s6):
/// `stopped` is recorded first, so a boot reconcile never brings it back,
/// then the slot goes. A profile whose directory is gone has no wish to record.
pub fn unregister(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    profile: &ProfileName,
) -> Result<(), LifecycleError> {
    if let Ok(paths) = profile::existing(home, profile) {
        state::update(&paths, |s| s.desired_state = Some(DesiredState::Stopped))?;
    }
    manager.unregister(profile)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Loaded;

    #[test]
    fn record_all_records_every_wish_and_fails_alone_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let mut names = Vec::new();
        for i in 0..40 {
            let name = ProfileName::parse(&format!("p{i:02}")).unwrap();
            let held = profile::lock(&home).unwrap();
            profile::create(&home, &held, &name, None).unwrap();
            names.push(name);
        }
        let ghost = ProfileName::parse("ghost").unwrap();
        names.insert(7, ghost.clone());
        state::update(&home.profile(&names[0]), |s| s.fast_failures = 4).unwrap();

        for desired in [DesiredState::Running, DesiredState::Stopped] {
            let results = record_all(&home, &names, desired);
            assert_eq!(results.len(), names.len());
            for (name, result) in names.iter().zip(&results) {
                if *name == ghost {
                    assert!(
                        matches!(
                            result,
                            Err(LifecycleError::Profile(ProfileError::NotFound(_)))
                        ),
                        "{result:?}"
                    );
                    continue;
                }
                assert!(result.is_ok(), "{name}: {result:?}");
                let Loaded::Found(s) = state::load(&home.profile(name).state()).unwrap() else {
                    panic!("{name}: no state recorded");
                };
                assert_eq!(s.desired_state, Some(desired), "{name}");
                assert_eq!(s.fast_failures, 0, "{name}: a start clears the failures");
            }
        }
    }

    #[test]
    fn a_wish_already_recorded_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let name = ProfileName::parse("steady").unwrap();
        let held = profile::lock(&home).unwrap();
        profile::create(&home, &held, &name, None).unwrap();
        drop(held);
        let state_file = home.profile(&name).state();
        let inode = || std::fs::metadata(&state_file).unwrap().ino();

        let names = std::slice::from_ref(&name);
        assert!(record_all(&home, names, DesiredState::Running)[0].is_ok());
        let recorded = inode();
        assert!(record_all(&home, names, DesiredState::Running)[0].is_ok());
        assert_eq!(inode(), recorded, "the same wish replaced the file");

        // A crash loop counted since: the start clears it, so it writes.
        state::update(&home.profile(&name), |s| s.fast_failures = 2).unwrap();
        let counted = inode();
        assert!(record_all(&home, names, DesiredState::Running)[0].is_ok());
        assert_ne!(inode(), counted);
        let Loaded::Found(s) = state::load(&state_file).unwrap() else {
            panic!("no state");
        };
        assert_eq!(s.fast_failures, 0);
        let cleared = inode();
        assert!(record_all(&home, names, DesiredState::Stopped)[0].is_ok());
        assert_ne!(inode(), cleared, "a new wish must be written");
    }
}
