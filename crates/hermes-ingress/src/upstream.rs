//! Where a profile's gateway listens and what it allows, read from the
//! profile's `config.yaml` (profiles come and go while the ingress runs;
//! [`Upstreams`] reads it again only when it changed), and why it cannot be
//! reached when it cannot.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::Duration;

use hermes_core::config::Config;
use hermes_core::state::{self, DesiredState, RunState};
use hermes_core::{fsutil, profile, HermesHome, ProfileName};

/// A profile's gateway as the ingress forwards to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` on this machine.
    pub addr: String,
    /// `webhooks.max_body_bytes`.
    pub max_body_bytes: u64,
    /// `gateway.limits.body_timeout_secs`.
    pub body_timeout: Duration,
    /// How long a kept-alive connection to it may stay idle: half its
    /// `gateway.limits.head_timeout_secs`, after which it may close one.
    pub idle_limit: Duration,
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
        idle_limit: Duration::from_millis(config.gateway.limits.head_timeout_secs * 500),
    })
}

/// What tells one version of a `config.yaml` from the next: modification
/// time, size and inode (a config is saved by renaming a new file over it).
type Stamp = (i64, i64, u64, u64);

fn stamp(home: &HermesHome, name: &ProfileName) -> Option<Stamp> {
    let meta = fsutil::metadata(&home.profile(name).config()).ok()?;
    Some((meta.mtime(), meta.mtime_nsec(), meta.len(), meta.ino()))
}

/// [`lookup`], with each profile's answer kept while its `config.yaml` is
/// unchanged: one `stat` per request instead of reading and parsing it.
#[derive(Default)]
pub struct Upstreams {
    known: Mutex<HashMap<ProfileName, (Stamp, Upstream)>>,
}

impl Upstreams {
    pub fn lookup(&self, home: &HermesHome, name: &ProfileName) -> Result<Upstream, LookupError> {
        let known = || self.known.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stamp) = stamp(home, name) else {
            known().remove(name);
            return lookup(home, name);
        };
        if let Some((seen, upstream)) = known().get(name) {
            if *seen == stamp {
                return Ok(upstream.clone());
            }
        }
        // Stamped before reading: a change in between is read again next time.
        let upstream = lookup(home, name)?;
        known().insert(name.clone(), (stamp, upstream.clone()));
        Ok(upstream)
    }
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
