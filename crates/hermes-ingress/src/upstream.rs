//! Where a profile's gateway listens and what it allows, read from the
//! profile's `config.yaml` on each request (profiles come and go while the
//! ingress runs), and why it cannot be reached when it cannot.

use std::time::Duration;

use hermes_core::config::Config;
use hermes_core::state::{self, DesiredState, RunState};
use hermes_core::{profile, HermesHome, ProfileName};

/// A profile's gateway as the ingress forwards to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` on this machine.
    pub addr: String,
    /// `webhooks.max_body_bytes`.
    pub max_body_bytes: u64,
    /// `gateway.limits.body_timeout_secs`.
    pub body_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no profile {0}")]
    NotFound(ProfileName),
    #[error("profile {profile}: {message}")]
    Unusable {
        profile: ProfileName,
        message: String,
    },
}

pub fn lookup(home: &HermesHome, name: &ProfileName) -> Result<Upstream, LookupError> {
    let paths = profile::existing(home, name).map_err(|e| match e {
        profile::ProfileError::NotFound(_) | profile::ProfileError::NotAProfile(_) => {
            LookupError::NotFound(name.clone())
        }
        other => LookupError::Unusable {
            profile: name.clone(),
            message: other.to_string(),
        },
    })?;
    // The root profile exists as soon as the home does; without a config it has no gateway.
    if name.is_default() && !paths.config().exists() {
        return Err(LookupError::NotFound(name.clone()));
    }
    let config = Config::load(&paths.config()).map_err(|e| LookupError::Unusable {
        profile: name.clone(),
        message: e.to_string(),
    })?;
    Ok(Upstream {
        addr: hermes_gateway::remote::address(&config),
        max_body_bytes: config.webhooks.max_body_bytes,
        body_timeout: Duration::from_secs(config.gateway.limits.body_timeout_secs),
    })
}

/// Why a profile's gateway does not answer, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub message: String,
    pub retry_after_secs: u32,
}

/// Retry soon while the supervisor brings a gateway (back) up; later when it
/// was stopped or parked, which takes someone to act.
pub fn why_down(home: &HermesHome, name: &ProfileName) -> Down {
    let recorded = state::load(&home.profile(name).state())
        .map(|l| l.state())
        .unwrap_or_default();
    let parked = recorded.desired_state == Some(DesiredState::Stopped)
        || recorded.gateway_state == Some(RunState::StartupFailed);
    if parked {
        Down {
            message: format!(
                "the gateway of profile {name} is stopped; start it with `hermes -p {name} gateway start`"
            ),
            retry_after_secs: 60,
        }
    } else {
        Down {
            message: format!("the gateway of profile {name} is not answering; retry shortly"),
            retry_after_secs: 5,
        }
    }
}
