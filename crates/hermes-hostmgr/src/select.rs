//! One value for "the host backend in use": built from a `ManagerKind`, it
//! dispatches plans (for `--dry-run`), install with warnings, uninstall, and
//! hands out the backend as a `ServiceManager` for lifecycle commands.

use std::path::Path;

use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError, ServiceManager};

use crate::host::HostEnv;
use crate::launchd::{LaunchdConfig, LaunchdManager};
use crate::none::NoneManager;
use crate::plan::Plan;
use crate::runner::CommandRunner;
use crate::systemd::{SystemdConfig, SystemdManager};
use crate::windows::{WindowsConfig, WindowsManager};

pub enum HostBackend<R> {
    Systemd(SystemdManager<R>),
    Launchd(LaunchdManager<R>),
    Windows(WindowsManager<R>),
    None(NoneManager),
}

impl<R: CommandRunner + 'static> HostBackend<R> {
    /// The backend for `kind`; `None` for s6, which lives in its own crate.
    /// `systemd` is the systemd configuration to use (user or system scope).
    pub fn new(
        kind: ManagerKind,
        env: &HostEnv,
        hermes_home: &Path,
        systemd: SystemdConfig,
        runner: R,
    ) -> Option<Self> {
        Some(match kind {
            ManagerKind::S6 => return None,
            ManagerKind::Systemd => HostBackend::Systemd(SystemdManager::new(systemd, runner)),
            ManagerKind::Launchd => {
                HostBackend::Launchd(LaunchdManager::new(LaunchdConfig::from_env(env), runner))
            }
            ManagerKind::Windows => HostBackend::Windows(WindowsManager::new(
                WindowsConfig::from_env(hermes_home),
                runner,
            )),
            ManagerKind::None => HostBackend::None(NoneManager),
        })
    }

    pub fn kind(&self) -> ManagerKind {
        match self {
            HostBackend::Systemd(_) => ManagerKind::Systemd,
            HostBackend::Launchd(_) => ManagerKind::Launchd,
            HostBackend::Windows(_) => ManagerKind::Windows,
            HostBackend::None(_) => ManagerKind::None,
        }
    }

    pub fn plan_install(&self, spec: &GatewaySpec) -> Result<Plan, ServiceError> {
        match self {
            HostBackend::Systemd(m) => m.plan_install(spec),
            HostBackend::Launchd(m) => m.plan_install(spec),
            HostBackend::Windows(m) => m.plan_install(spec),
            HostBackend::None(_) => Err(NoneManager::refuse("install")),
        }
    }

    pub fn plan_uninstall(&self, profile: &ProfileName) -> Result<Plan, ServiceError> {
        match self {
            HostBackend::Systemd(m) => m.plan_uninstall(profile),
            HostBackend::Launchd(m) => m.plan_uninstall(profile),
            HostBackend::Windows(m) => m.plan_uninstall(profile),
            HostBackend::None(_) => Err(NoneManager::refuse("uninstall")),
        }
    }

    /// Install and return the warnings the operator should see.
    pub fn install(&self, spec: &GatewaySpec) -> Result<Vec<String>, ServiceError> {
        match self {
            HostBackend::Systemd(m) => m.install_with_warnings(spec),
            other => other.manager_ref().install(spec).map(|()| Vec::new()),
        }
    }

    pub fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.manager_ref().uninstall(profile)
    }

    fn manager_ref(&self) -> &dyn ServiceManager {
        match self {
            HostBackend::Systemd(m) => m,
            HostBackend::Launchd(m) => m,
            HostBackend::Windows(m) => m,
            HostBackend::None(m) => m,
        }
    }

    pub fn into_manager(self) -> Box<dyn ServiceManager> {
        match self {
            HostBackend::Systemd(m) => Box::new(m),
            HostBackend::Launchd(m) => Box::new(m),
            HostBackend::Windows(m) => Box::new(m),
            HostBackend::None(m) => Box::new(m),
        }
    }
}
