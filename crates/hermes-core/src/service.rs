//! The one trait every service manager implements (s6 in the container and
//! under `hermes supervise`; systemd, launchd, Windows Scheduled Tasks and
//! `none` on hosts), and the types the CLI, dashboard and TUI share.
//!
//! Tier 1 is lifecycle (install, start, stop, restart, status). Tier 2 is
//! runtime registration of profile gateways, which only s6 supports; the
//! default methods refuse it with a typed error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::fsutil::FsError;
use crate::home::HermesHome;
use crate::lifecycle::Action;
use crate::name::ProfileName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    S6,
    Systemd,
    Launchd,
    Windows,
    None,
}

impl ManagerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagerKind::S6 => "s6",
            ManagerKind::Systemd => "systemd",
            ManagerKind::Launchd => "launchd",
            ManagerKind::Windows => "windows",
            ManagerKind::None => "none",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim().to_ascii_lowercase().as_str() {
            "s6" => ManagerKind::S6,
            "systemd" => ManagerKind::Systemd,
            "launchd" => ManagerKind::Launchd,
            "windows" => ManagerKind::Windows,
            "none" => ManagerKind::None,
            _ => return None,
        })
    }
}

impl fmt::Display for ManagerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a service manager needs to run one profile's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    pub profile: ProfileName,
    /// Absolute path of the hermes binary.
    pub program: PathBuf,
    /// `HERMES_HOME` (the root, not the profile directory).
    pub home: PathBuf,
    /// Working directory of the gateway: the profile directory.
    pub workdir: PathBuf,
    pub log_dir: PathBuf,
    /// Environment for the gateway, on top of what the manager provides.
    pub env: BTreeMap<String, String>,
}

impl GatewaySpec {
    /// The spec every manager starts from: the profile directory as working
    /// directory, the shared log directory, and `HERMES_HOME` in the environment.
    pub fn for_profile(home: &HermesHome, profile: &ProfileName, program: &Path) -> Self {
        GatewaySpec {
            profile: profile.clone(),
            program: program.to_path_buf(),
            home: home.root().to_path_buf(),
            workdir: home.profile(profile).dir,
            log_dir: home.gateway_log_dir(profile),
            env: BTreeMap::from([(
                "HERMES_HOME".to_string(),
                home.root().to_string_lossy().into_owned(),
            )]),
        }
    }

    /// Arguments after the program. The default profile takes no `-p`.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self.profile.is_default() {
            args.push("-p".to_string());
            args.push(self.profile.to_string());
        }
        args.extend(["gateway", "run", "--replace"].map(String::from));
        args
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    Up,
    Down,
}

/// The supervisor's view of one service: a gateway's slot, or a static
/// one (the dashboard, the ingress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The manager's name for the service (`gateway-coder`, `hermes-gateway-coder.service`, `dashboard`, …).
    #[serde(rename = "service")]
    pub name: String,
    /// A supervisor process is watching the service.
    pub supervised: bool,
    pub up: bool,
    /// Up and has signalled readiness.
    pub ready: bool,
    pub want: Want,
    pub pid: Option<u32>,
    /// Seconds in the current up or down state.
    pub for_secs: Option<u64>,
    /// How the last run ended, when the service is down.
    pub exit_code: Option<i32>,
}

impl ServiceStatus {
    /// A service no supervisor watches.
    pub fn unsupervised(name: impl Into<String>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            supervised: false,
            up: false,
            ready: false,
            want: Want::Down,
            pid: None,
            for_secs: None,
            exit_code: None,
        }
    }
}

/// The supervisor's view of one gateway service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    pub profile: ProfileName,
    #[serde(flatten)]
    pub service: ServiceStatus,
    /// The signal that ended the last run, when the service is down.
    pub signal: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no gateway slot for profile '{profile}': create it with `hermes profile create {profile}`, or pass an existing profile with -p")]
    NotRegistered { profile: ProfileName },
    #[error("no supervisor is running on {scandir}: start one with `hermes supervise` (or run hermes in its container)")]
    NoSupervisor { scandir: PathBuf },
    #[error("{program} not found: install s6 (Debian: apt-get install s6 execline)")]
    NotInstalled { program: String },
    #[error("`{}` failed ({}): {}", argv.join(" "), code.map_or("killed".to_string(), |c| format!("exit {c}")), stderr.trim())]
    Command {
        argv: Vec<String>,
        code: Option<i32>,
        stderr: String,
    },
    #[error("unable to run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} of '{profile}' did not finish within {}s", waited.as_secs_f32())]
    Timeout {
        action: &'static str,
        profile: ProfileName,
        waited: Duration,
    },
    #[error("gateway '{profile}' failed to start: {reason}")]
    StartFailed {
        profile: ProfileName,
        reason: String,
    },
    /// A gateway of the profile outside its slot (orphaned by a killed
    /// s6-supervise, or run by hand) that a stop could not signal.
    #[error("gateway '{profile}' runs outside its slot as pid {pid}, and sending it {signal} failed: {errno}; stop it as its owner (`kill {pid}`)")]
    Stray {
        profile: ProfileName,
        pid: i32,
        signal: &'static str,
        errno: nix::errno::Errno,
    },
    /// A `gateway stop` recorded after this start or restart asked for running.
    #[error("{action} of '{profile}' was overtaken by a stop: its desired state is now stopped; run `hermes -p {profile} gateway start` if it should run")]
    Overtaken {
        action: &'static str,
        profile: ProfileName,
    },
    #[error("{operation} is not supported by the {manager} service manager{}", hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default())]
    Unsupported {
        manager: ManagerKind,
        operation: &'static str,
        hint: Option<String>,
    },
    #[error("the supervisor on {path} runs as uid {owner}, not as you (uid {uid}): run this command as that user")]
    WrongUser { path: PathBuf, owner: u32, uid: u32 },
    #[error("the supervisor already has {limit} gateway slots, its limit: delete unused profiles or raise HERMES_MAX_SLOTS and restart the supervisor")]
    TooManySlots { limit: usize },
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Recording a gateway's death in its state file failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The host manager (systemd, launchd, Task Scheduler) has no service for the profile.
    #[error("{service} is not installed in {manager}: run `{fix}`")]
    ServiceNotInstalled {
        manager: ManagerKind,
        service: String,
        fix: String,
    },
    #[error("`{}` was refused ({}): {}: {hint}", argv.join(" "), code.map_or("killed".to_string(), |c| format!("exit {c}")), stderr.trim())]
    PermissionDenied {
        argv: Vec<String>,
        code: Option<i32>,
        stderr: String,
        hint: String,
    },
    /// A value (path, argument, environment) cannot be written in the manager's format
    /// without changing its meaning, so nothing is written.
    #[error("cannot write the {manager} service for '{profile}': {reason}")]
    Unrepresentable {
        manager: ManagerKind,
        profile: ProfileName,
        reason: String,
    },
}

pub trait ServiceManager {
    fn kind(&self) -> ManagerKind;

    /// Make the manager know the gateway (write its unit, plist, task or slot), started.
    fn install(&self, spec: &GatewaySpec) -> Result<(), ServiceError>;
    fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError>;
    /// Bring the gateway up and wait (at most `timeout`) until it is ready or has failed.
    fn start(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError>;
    /// Bring the gateway down and wait until it is.
    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError>;
    fn restart(&self, profile: &ProfileName, timeout: Duration)
        -> Result<SlotStatus, ServiceError>;
    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError>;
    /// [`status`](Self::status) of every one of `profiles`, in the order
    /// given, when the manager reads them cheaply in this thread (s6: a few
    /// syscalls a slot). `None` when each costs a process (`systemctl`,
    /// `launchctl`, `schtasks`): callers then ask slot by slot, in parallel.
    fn status_all(
        &self,
        profiles: &[ProfileName],
    ) -> Option<Vec<Result<SlotStatus, ServiceError>>> {
        let _ = profiles;
        None
    }

    /// [`start`](Self::start), [`stop`](Self::stop) or [`restart`](Self::restart), by name.
    fn act(
        &self,
        profile: &ProfileName,
        action: Action,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        match action {
            Action::Start => self.start(profile, timeout),
            Action::Stop => self.stop(profile, timeout),
            Action::Restart => self.restart(profile, timeout),
        }
    }

    /// [`act`](Self::act) on many gateways: one result per profile, in the
    /// order given. One after another here (what the host managers keep);
    /// a manager that can ask for every slot first and then wait for all of
    /// them together overrides it.
    fn act_many(
        &self,
        profiles: &[ProfileName],
        action: Action,
        timeout: Duration,
    ) -> Vec<Result<SlotStatus, ServiceError>> {
        profiles
            .iter()
            .map(|p| self.act(p, action, timeout))
            .collect()
    }

    fn supports_registration(&self) -> bool {
        false
    }
    /// Publish a supervised slot at run time; down unless `start_now`.
    fn register(&self, spec: &GatewaySpec, start_now: bool) -> Result<(), ServiceError> {
        let _ = (spec, start_now);
        Err(self.registration_unsupported("register"))
    }
    /// [`register`](Self::register) many slots: one result per slot, in the
    /// order given; `Err` only when none could be tried. One after another
    /// here; a manager whose every registration costs a scan of all its
    /// slots (s6) overrides it to share the scans.
    fn register_many(
        &self,
        slots: &[(GatewaySpec, bool)],
    ) -> Result<Vec<Result<(), ServiceError>>, ServiceError> {
        Ok(slots
            .iter()
            .map(|(spec, start_now)| self.register(spec, *start_now))
            .collect())
    }
    /// Stop the slot, wait for it to be down, and remove it.
    fn unregister(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        let _ = profile;
        Err(self.registration_unsupported("unregister"))
    }
    /// Profiles with a registered slot, sorted.
    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        Err(self.registration_unsupported("list"))
    }
    /// Whether every one of `profiles` is up and ready right now, asked in
    /// one call: `Some(true)` only when the manager vouches for all of them.
    /// `None` when it cannot tell cheaply, or not for all: callers then ask
    /// [`status`](Self::status) slot by slot, which says why.
    fn all_up_and_ready(&self, profiles: &[ProfileName]) -> Option<bool> {
        let _ = profiles;
        None
    }

    fn registration_unsupported(&self, operation: &'static str) -> ServiceError {
        ServiceError::Unsupported {
            manager: self.kind(),
            operation,
            hint: Some("use `hermes gateway install` for this manager".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gateway status --json`, the dashboard's actions and `status --json`'s
    /// static slots print these: their keys stay as they were.
    #[test]
    fn status_json_keeps_its_keys() {
        let service = ServiceStatus {
            pid: Some(7),
            ..ServiceStatus::unsupervised("gateway-web")
        };
        let slot = SlotStatus {
            profile: ProfileName::parse("web").unwrap(),
            service: service.clone(),
            signal: Some("SIGTERM".into()),
        };
        let common = r#""service":"gateway-web","supervised":false,"up":false,"ready":false,"want":"down","pid":7,"for_secs":null,"exit_code":null"#;
        assert_eq!(
            serde_json::to_string(&service).unwrap(),
            format!("{{{common}}}")
        );
        assert_eq!(
            serde_json::to_string(&slot).unwrap(),
            format!(r#"{{"profile":"web",{common},"signal":"SIGTERM"}}"#)
        );
    }

    #[test]
    fn default_profile_runs_without_p() {
        let spec = |name: &str| GatewaySpec {
            profile: ProfileName::parse(name).unwrap(),
            program: "/usr/bin/hermes".into(),
            home: "/h".into(),
            workdir: "/h".into(),
            log_dir: "/h/logs".into(),
            env: BTreeMap::new(),
        };
        assert_eq!(spec("default").args(), ["gateway", "run", "--replace"]);
        assert_eq!(
            spec("coder").args(),
            ["-p", "coder", "gateway", "run", "--replace"]
        );
    }

    #[test]
    fn command_errors_name_argv_code_and_stderr() {
        let e = ServiceError::Command {
            argv: vec!["s6-svc".into(), "-u".into(), "/x".into()],
            code: Some(111),
            stderr: "s6-svc: fatal: oops\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "`s6-svc -u /x` failed (exit 111): s6-svc: fatal: oops"
        );
    }
}
