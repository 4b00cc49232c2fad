//! The model's [`Environment`] over the CLI's [`Context`]: the real service
//! manager, the real supervisor and the dashboard settings from the
//! environment. `status`, `doctor`, `dashboard` and `tui` all build this one.

use std::path::{Path, PathBuf};

use hermes_core::service::{ManagerKind, ServiceManager, Want};
use hermes_core::HermesHome;
use hermes_model::{
    DashboardSettings, Environment, MainProgramView, ManagerChoice, ServiceView, SupervisorView,
};
use hermes_s6::static_slot::{DASHBOARD, INGRESS};

use crate::Context;

pub struct CliEnv {
    ctx: Context,
    choice: ManagerChoice,
}

impl CliEnv {
    pub fn new(ctx: &Context) -> CliEnv {
        let detected = ctx.detection();
        CliEnv {
            ctx: ctx.clone(),
            choice: ManagerChoice {
                kind: detected.kind,
                reason: detected.reason,
            },
        }
    }

    /// A static slot as s6 sees it; `None` off s6 or when it is not in the scandir.
    fn static_service(&self, name: &str) -> Option<ServiceView> {
        if self.choice.kind != ManagerKind::S6 {
            return None;
        }
        let dir = hermes_s6::Scandir::new(&self.ctx.scandir).link(name);
        if std::fs::symlink_metadata(&dir).is_err() {
            return None;
        }
        let service = name.to_string();
        // s6-svstat failing means no supervisor answers for the slot.
        let stat = hermes_s6::svstat::read(&dir).ok().flatten();
        Some(match stat {
            Some(s) => ServiceView {
                service,
                supervised: true,
                up: s.up,
                ready: s.ready_now(),
                want: s.want(),
                pid: s.pid,
                for_secs: s.for_secs,
                exit_code: s.last_exit_code(),
            },
            None => ServiceView {
                service,
                supervised: false,
                up: false,
                ready: false,
                want: Want::Down,
                pid: None,
                for_secs: None,
                exit_code: None,
            },
        })
    }
}

impl Environment for CliEnv {
    fn home(&self) -> &HermesHome {
        &self.ctx.home
    }

    fn manager(&self) -> Box<dyn ServiceManager> {
        self.ctx.manager()
    }

    fn manager_choice(&self) -> ManagerChoice {
        self.choice.clone()
    }

    fn supervisor(&self) -> SupervisorView {
        match self.choice.kind {
            ManagerKind::S6 => {}
            // Detection found nothing to supervise gateways: say so, with its reason.
            ManagerKind::None => {
                return SupervisorView {
                    name: "none".to_string(),
                    scandir: Some(self.ctx.scandir.clone()),
                    reachable: false,
                    detail: Some(self.choice.reason.clone()),
                }
            }
            other => {
                return SupervisorView {
                    name: other.to_string(),
                    scandir: None,
                    reachable: true,
                    detail: None,
                }
            }
        }
        let checked = self.ctx.s6().check_supervisor();
        SupervisorView {
            name: "s6-svscan".to_string(),
            scandir: Some(self.ctx.scandir.clone()),
            reachable: checked.is_ok(),
            detail: checked.err().map(|e| e.to_string()),
        }
    }

    fn dashboard_service(&self) -> Option<ServiceView> {
        self.static_service(DASHBOARD)
    }

    fn ingress_service(&self) -> Option<ServiceView> {
        self.static_service(INGRESS)
    }

    fn ingress_settings(&self) -> hermes_core::ingress::Settings {
        hermes_core::ingress::Settings::from_env()
    }

    fn dashboard_settings(&self) -> DashboardSettings {
        dashboard_settings()
    }

    fn main_program(&self) -> MainProgramView {
        if !self.ctx.in_container {
            return MainProgramView::not_applicable();
        }
        let recorded = std::fs::read_to_string(
            hermes_core::runtime::run_dir(
                Some(self.ctx.home.root()),
                PathBuf::from(hermes_init::RUN_DIR),
            )
            .join(hermes_init::init::MAIN_PID_FILE),
        )
        .unwrap_or_default();
        let pid = recorded.trim().parse::<u32>().ok();
        MainProgramView {
            applicable: true,
            pid,
            running: pid.map(|p| Path::new(&format!("/proc/{p}")).exists()),
            command: None,
            server_mode: recorded.trim() == hermes_init::init::SERVER_MODE,
            text: String::new(),
        }
    }

    fn program(&self) -> &Path {
        &self.ctx.program
    }

    fn alias_dir(&self) -> Option<&Path> {
        Some(&self.ctx.alias_dir)
    }
}

/// The dashboard's bind and token as the environment sets them (the token itself stays here).
pub fn dashboard_settings() -> DashboardSettings {
    let s = hermes_core::dashboard::Settings::from_env();
    DashboardSettings {
        enabled: s.enabled,
        host: s.host,
        port: s.port,
        token_set: s.token.is_some(),
        token_len: s.token.map_or(0, |t| t.len()),
    }
}
