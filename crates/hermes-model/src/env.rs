//! The seam between the model and the machine it describes. The CLI implements
//! [`Environment`] over its `Context` (real s6, real files); tests implement it
//! over a fake service manager and a temp `HERMES_HOME`.

use std::path::{Path, PathBuf};

use hermes_core::service::{ManagerKind, ServiceManager, ServiceStatus};
use hermes_core::HermesHome;
use serde::Serialize;

/// Where the snapshot and the actions get their facts. `Send + Sync` so the
/// dashboard can serve requests from several threads.
pub trait Environment: Send + Sync {
    fn home(&self) -> &HermesHome;
    /// A manager for one call; cheap to make, so each request gets its own.
    fn manager(&self) -> Box<dyn ServiceManager>;
    /// Which service manager is in use, and why it was chosen.
    fn manager_choice(&self) -> ManagerChoice;
    /// The supervision tree behind the manager.
    fn supervisor(&self) -> SupervisorView;
    /// The static dashboard slot as the supervisor sees it; `None` when the
    /// manager has no such slot (host managers).
    fn dashboard_service(&self) -> Option<ServiceStatus>;
    fn dashboard_settings(&self) -> DashboardSettings;
    /// The static webhook ingress slot, as [`Environment::dashboard_service`].
    fn ingress_service(&self) -> Option<ServiceStatus>;
    fn ingress_settings(&self) -> hermes_core::ingress::Settings;
    fn main_program(&self) -> MainProgramView;
    /// The hermes binary that gateway slots run.
    fn program(&self) -> &Path;
    /// Where profile alias wrappers go; `None` to write none.
    fn alias_dir(&self) -> Option<&Path>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerChoice {
    pub kind: ManagerKind,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorView {
    /// What supervises the gateways (`s6-svscan`, `systemd --user`, …).
    pub name: String,
    /// The s6 scan directory, when the manager is s6.
    pub scandir: Option<PathBuf>,
    pub reachable: bool,
    /// Why it is not reachable, or other facts worth a line.
    pub detail: Option<String>,
}

impl SupervisorView {
    /// What supervises the gateways under `choice`. s6 is asked whether it
    /// answers on `scandir` (`check_s6`: why not); a detection that found
    /// no manager says its reason; host managers are taken as reachable.
    pub fn of(
        choice: &ManagerChoice,
        scandir: &Path,
        check_s6: impl FnOnce() -> Result<(), String>,
    ) -> SupervisorView {
        match choice.kind {
            ManagerKind::S6 => {
                let checked = check_s6();
                SupervisorView {
                    name: "s6-svscan".to_string(),
                    scandir: Some(scandir.to_path_buf()),
                    reachable: checked.is_ok(),
                    detail: checked.err(),
                }
            }
            ManagerKind::None => SupervisorView {
                name: "none".to_string(),
                scandir: Some(scandir.to_path_buf()),
                reachable: false,
                detail: Some(choice.reason.clone()),
            },
            other => SupervisorView {
                name: other.to_string(),
                scandir: None,
                reachable: true,
                detail: None,
            },
        }
    }
}

/// The program the container runs as its CMD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MainProgramView {
    /// False on a host, where there is no main program: shown as "n/a".
    pub applicable: bool,
    pub pid: Option<u32>,
    pub running: Option<bool>,
    pub command: Option<String>,
    /// The container runs no main program: it only supervises.
    pub server_mode: bool,
    /// All of the above in one line ([`crate::format::main_program`]).
    pub text: String,
}

impl MainProgramView {
    pub fn not_applicable() -> Self {
        MainProgramView {
            applicable: false,
            pid: None,
            running: None,
            command: None,
            server_mode: false,
            text: String::new(),
        }
    }
}

/// How the dashboard is (or would be) bound, and the rule it must obey. The
/// token itself never leaves the process: only whether one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DashboardSettings {
    /// `HERMES_DASHBOARD=1`: the container starts the dashboard slot.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub token_set: bool,
    #[serde(skip)]
    pub token_len: usize,
}

/// Tokens shorter than this are refused off loopback and flagged by doctor: guessable over a network.
pub const MIN_TOKEN_LEN: usize = hermes_core::dashboard::MIN_TOKEN_LEN;

/// The dashboard's bind and token as the environment sets them (the token itself goes no further).
impl From<hermes_core::dashboard::Settings> for DashboardSettings {
    fn from(s: hermes_core::dashboard::Settings) -> Self {
        DashboardSettings {
            enabled: s.enabled,
            host: s.host,
            port: s.port,
            token_set: s.token.is_some(),
            token_len: s.token.map_or(0, |t| t.len()),
        }
    }
}

impl DashboardSettings {
    /// Whether `host` only accepts connections from this machine.
    pub fn is_loopback_host(host: &str) -> bool {
        hermes_core::dashboard::is_loopback(host)
    }

    pub fn is_loopback(&self) -> bool {
        Self::is_loopback_host(&self.host)
    }

    /// The bind rule: a non-loopback bind needs a token of [`MIN_TOKEN_LEN`] bytes. `Err` says why not.
    pub fn check_bind(&self) -> Result<(), String> {
        let len = if self.token_set { self.token_len } else { 0 };
        match hermes_core::dashboard::bind_refusal_for_length(&self.host, self.port, len) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, token: Option<&str>) -> DashboardSettings {
        DashboardSettings {
            enabled: true,
            host: host.into(),
            port: 9119,
            token_set: token.is_some(),
            token_len: token.map_or(0, str::len),
        }
    }

    #[test]
    fn the_supervisor_by_manager() {
        let scandir = Path::new("/run/service");
        let choice = |kind, reason: &str| ManagerChoice {
            kind,
            reason: reason.into(),
        };
        let s6 = SupervisorView::of(&choice(ManagerKind::S6, "fifo"), scandir, || {
            Err("no supervisor".into())
        });
        assert_eq!(
            (s6.name.as_str(), s6.reachable, s6.detail.as_deref()),
            ("s6-svscan", false, Some("no supervisor"))
        );
        assert_eq!(s6.scandir.as_deref(), Some(scandir));
        let none = SupervisorView::of(&choice(ManagerKind::None, "nothing found"), scandir, || {
            unreachable!("s6 is not asked")
        });
        assert_eq!(
            (none.name.as_str(), none.reachable, none.detail.as_deref()),
            ("none", false, Some("nothing found"))
        );
        let host = SupervisorView::of(&choice(ManagerKind::Systemd, "unit"), scandir, || {
            unreachable!("s6 is not asked")
        });
        assert!(host.reachable && host.scandir.is_none(), "{host:?}");
        assert_eq!(host.name, ManagerKind::Systemd.to_string());
    }

    #[test]
    fn loopback_binds_need_no_token() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"] {
            assert!(settings(host, None).check_bind().is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.168.1.2", "example.org"] {
            let err = settings(host, None).check_bind().unwrap_err();
            assert!(err.contains("HERMES_DASHBOARD_TOKEN"), "{err}");
            assert!(settings(host, Some("x")).check_bind().is_err());
            assert!(settings(host, Some("0123456789abcdef"))
                .check_bind()
                .is_ok());
        }
    }
}
