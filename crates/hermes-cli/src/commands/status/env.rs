//! The model's [`Environment`] over the CLI's [`Context`]: the real service
//! manager, the real supervisor and the dashboard settings from the
//! environment. `status`, `doctor`, `dashboard` and `tui` all build this one.

use std::path::{Path, PathBuf};

use hermes_core::service::{ManagerKind, ServiceManager, ServiceStatus};
use hermes_core::HermesHome;
use hermes_model::{
    DashboardSettings, Environment, MainProgramView, ManagerChoice, SupervisorView,
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
    fn static_service(&self, name: &str) -> Option<ServiceStatus> {
        let scandir = hermes_s6::Scandir::new(&self.ctx.scandir);
        (self.choice.kind == ManagerKind::S6)
            .then(|| hermes_s6::static_slot::status(&scandir, name))
            .flatten()
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
        SupervisorView::of(&self.choice, &self.ctx.scandir, || {
            self.ctx.s6().check_supervisor().map_err(|e| e.to_string())
        })
    }

    fn dashboard_service(&self) -> Option<ServiceStatus> {
        self.static_service(DASHBOARD)
    }

    fn ingress_service(&self) -> Option<ServiceStatus> {
        self.static_service(INGRESS)
    }

    fn ingress_settings(&self) -> hermes_core::ingress::Settings {
        hermes_core::ingress::Settings::from_env()
    }

    fn dashboard_settings(&self) -> DashboardSettings {
        hermes_core::dashboard::Settings::from_env().into()
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
