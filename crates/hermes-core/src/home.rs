//! The `HERMES_HOME` layout. Every path hermes reads or writes under the home
//! is derived here, so the layout is written down once.

use std::path::{Path, PathBuf};

use crate::name::ProfileName;

/// The file whose presence tells a real profile from a stray directory.
pub const PROFILE_MARKER: &str = ".hermes-profile";

/// Root of all hermes data: the `default` profile itself, with named profiles below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HermesHome {
    root: PathBuf,
}

impl HermesHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HermesHome { root: root.into() }
    }

    /// `$HERMES_HOME`, else `$HOME/.hermes`.
    pub fn from_env() -> Option<Self> {
        if let Some(home) = std::env::var_os("HERMES_HOME").filter(|v| !v.is_empty()) {
            return Some(HermesHome::new(home));
        }
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| HermesHome::new(PathBuf::from(home).join(".hermes")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// Held while profiles are created or deleted, so ports and names never race.
    pub fn profiles_lock(&self) -> PathBuf {
        self.root.join(".profiles.lock")
    }

    /// The ports the profiles claim, with the identity of each config
    /// (`ports.rs`): a cache `profile create` rebuilds when it is missing.
    pub fn port_index(&self) -> PathBuf {
        self.root.join(".profile-ports")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// s6-log's directory for one profile's gateway (always under the root home).
    pub fn gateway_log_dir(&self, profile: &ProfileName) -> PathBuf {
        self.logs_dir().join("gateways").join(profile.as_str())
    }

    pub fn dashboard_log_dir(&self) -> PathBuf {
        self.logs_dir().join("dashboard")
    }

    pub fn notify_log_dir(&self) -> PathBuf {
        self.logs_dir().join("notify")
    }

    pub fn ingress_log_dir(&self) -> PathBuf {
        self.logs_dir().join("ingress")
    }

    pub fn boot_log(&self) -> PathBuf {
        self.logs_dir().join("container-boot.log")
    }

    /// The last boot reconcile in numbers ([`crate::boot::BootReport`]).
    pub fn boot_report(&self) -> PathBuf {
        self.logs_dir().join("container-boot.json")
    }

    /// The notification outbox and the sender's delivery records.
    pub fn notify_dir(&self) -> PathBuf {
        self.root.join("notify")
    }

    pub fn profile(&self, name: &ProfileName) -> ProfilePaths {
        let dir = if name.is_default() {
            self.root.clone()
        } else {
            self.profiles_dir().join(name.as_str())
        };
        ProfilePaths {
            name: name.clone(),
            dir,
        }
    }
}

/// The files of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePaths {
    pub name: ProfileName,
    pub dir: PathBuf,
}

impl ProfilePaths {
    pub fn marker(&self) -> PathBuf {
        self.dir.join(PROFILE_MARKER)
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }
    pub fn env_file(&self) -> PathBuf {
        self.dir.join(".env")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("gateway_state.json")
    }
    /// Serialises read-modify-write of the state file between the gateway, its
    /// finish hook and the CLI.
    pub fn state_lock(&self) -> PathBuf {
        self.dir.join(".gateway_state.lock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("gateway.pid")
    }
    pub fn gateway_lock(&self) -> PathBuf {
        self.dir.join("gateway.lock")
    }
    pub fn inbox_dir(&self) -> PathBuf {
        self.dir.join("inbox")
    }
    /// A secret the hook's sender issued, 0600 beside `.env`.
    pub fn hook_secret(&self, hook: &crate::name::HookName) -> PathBuf {
        self.dir.join(format!(".env.hook.{hook}"))
    }
    /// Each hook's last delivery result, as the gateway last wrote it.
    pub fn deliveries(&self) -> PathBuf {
        self.dir.join("webhook_deliveries.json")
    }
    /// Files that only mean something while a gateway runs; removed at boot.
    pub fn stale_runtime_files(&self) -> [PathBuf; 1] {
        [self.pid_file()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_the_root() {
        let home = HermesHome::new("/h");
        let p = home.profile(&ProfileName::default_profile());
        assert_eq!(p.dir, PathBuf::from("/h"));
        let c = home.profile(&ProfileName::parse("coder").unwrap());
        assert_eq!(c.dir, PathBuf::from("/h/profiles/coder"));
        assert_eq!(
            c.state(),
            PathBuf::from("/h/profiles/coder/gateway_state.json")
        );
        assert_eq!(
            home.gateway_log_dir(&c.name),
            PathBuf::from("/h/logs/gateways/coder")
        );
    }
}
