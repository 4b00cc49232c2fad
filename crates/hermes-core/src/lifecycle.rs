//! Start, stop and restart through any service manager, recording the
//! operator's wish (`desired_state`) first. The CLI, the dashboard and the
//! TUI all act through here, so the rules live in one place.

use std::path::Path;
use std::time::Duration;

use crate::home::HermesHome;
use crate::name::ProfileName;
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

/// Threads recording wishes at once: each record is an atomic write with
/// two fsyncs, which the disk overlaps across threads (one after another,
/// 100 profiles cost ~0.7 s of fsync on an ext4 disk).
const RECORD_THREADS: usize = 16;

/// [`record`] for every profile, all done before any is asked for; one
/// result per profile, in order.
fn record_all(
    home: &HermesHome,
    profiles: &[ProfileName],
    desired: DesiredState,
) -> Vec<Result<(), LifecycleError>> {
    let record_chunk = |chunk: &[ProfileName]| -> Vec<Result<(), LifecycleError>> {
        chunk.iter().map(|p| record(home, p, desired)).collect()
    };
    if profiles.len() < 2 {
        return record_chunk(profiles);
    }
    let per_thread = profiles.len().div_ceil(RECORD_THREADS);
    std::thread::scope(|scope| {
        let threads: Vec<_> = profiles
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || record_chunk(chunk)))
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a record thread panicked"))
            .collect()
    })
}

fn record(
    home: &HermesHome,
    profile: &ProfileName,
    desired: DesiredState,
) -> Result<(), LifecycleError> {
    let paths = profile::existing(home, profile)?;
    state::update(&paths, |s| {
        s.desired_state = Some(desired);
        if desired == DesiredState::Running {
            // An explicit start is a fresh chance after a crash loop.
            s.fast_failures = 0;
        }
    })?;
    Ok(())
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
