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

pub fn apply(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    program: &Path,
    profile: &ProfileName,
    action: Action,
    timeout: Duration,
) -> Result<Outcome, LifecycleError> {
    let paths = profile::existing(home, profile)?;
    let desired = match action {
        Action::Stop => DesiredState::Stopped,
        Action::Start | Action::Restart => DesiredState::Running,
    };
    state::update(&paths, |s| {
        s.desired_state = Some(desired);
        if desired == DesiredState::Running {
            // An explicit start is a fresh chance after a crash loop.
            s.fast_failures = 0;
        }
    })?;
    let run = |action| match action {
        Action::Start => manager.start(profile, timeout),
        Action::Stop => manager.stop(profile, timeout),
        Action::Restart => manager.restart(profile, timeout),
    };
    match run(action) {
        Err(ServiceError::NotRegistered { .. })
            if action != Action::Stop && manager.supports_registration() =>
        {
            // A profile created from outside (no slot yet) is registered, not
            // refused; under the profiles lock, so a concurrent delete cannot
            // leave a slot behind for a profile that is gone.
            let held = profile::lock(home)?;
            profile::existing(home, profile)?;
            manager.register(&GatewaySpec::for_profile(home, profile, program), false)?;
            drop(held);
            Ok(Outcome {
                status: run(Action::Start)?,
                registered: true,
            })
        }
        result => Ok(Outcome {
            status: result?,
            registered: false,
        }),
    }
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
