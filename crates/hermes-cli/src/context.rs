//! Everything a command needs to know about where it runs, read once from the
//! environment: the home, the profile, the scandir, the binary, the alias dir.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context as _;
use hermes_core::service::ServiceManager;
use hermes_core::{ExitStatus, HermesHome, ProfileName};
use hermes_s6::{S6Config, S6Manager};

use crate::CodedError;

#[derive(Debug, Clone)]
pub struct Context {
    pub home: HermesHome,
    pub profile: ProfileName,
    pub scandir: PathBuf,
    /// Absolute path of this hermes binary (written into run scripts and aliases).
    pub program: PathBuf,
    /// Where profile alias wrappers go.
    pub alias_dir: PathBuf,
    /// Set by the container init for everything it starts.
    pub in_container: bool,
    detected: OnceLock<hermes_hostmgr::Detection>,
}

impl Context {
    pub fn from_env(profile: Option<ProfileName>) -> anyhow::Result<Self> {
        let home = HermesHome::from_env().ok_or_else(|| CodedError {
            message: "neither HERMES_HOME nor HOME is set: set HERMES_HOME to the data directory"
                .to_string(),
            status: ExitStatus::Config,
        })?;
        let program = std::env::current_exe().context("unable to find the hermes binary's path")?;
        let alias_dir = std::env::var_os("HERMES_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin")))
            .unwrap_or_else(|| home.root().join("bin"));
        Ok(Context {
            scandir: hermes_s6::default_scandir(),
            home,
            profile: profile.unwrap_or_else(ProfileName::default_profile),
            program,
            alias_dir,
            in_container: std::env::var_os("HERMES_CONTAINER").is_some_and(|v| v == "1"),
            detected: OnceLock::new(),
        })
    }

    pub fn s6_config(&self) -> S6Config {
        S6Config {
            scandir: self.scandir.clone(),
            home: self.home.clone(),
            program: self.program.clone(),
            echo_to_stdout: self.in_container,
        }
    }

    pub fn s6(&self) -> S6Manager {
        S6Manager::new(self.s6_config())
    }

    /// The service manager lifecycle commands go through.
    pub fn manager(&self) -> Box<dyn ServiceManager> {
        // The detected backend; a systemd unit is looked for in the scope it was
        // installed in (user, or system after `install --system`).
        let env = hermes_hostmgr::HostEnv::from_process();
        let systemd = hermes_hostmgr::systemd::SystemdConfig::for_installed(&env, &self.profile);
        let kind = self.detection().kind;
        match hermes_hostmgr::HostBackend::new(
            kind,
            &env,
            self.home.root(),
            systemd,
            hermes_hostmgr::SystemRunner,
        ) {
            Some(host) => host.into_manager(),
            None => Box::new(self.s6()),
        }
    }

    /// Which service manager runs gateways here, and the fact that decided it.
    /// Decided once per process: on a systemd host it costs a `systemctl` call.
    pub fn detection(&self) -> hermes_hostmgr::Detection {
        self.detected
            .get_or_init(|| {
                hermes_hostmgr::detect_service_manager(
                    &hermes_hostmgr::HostFacts::new(hermes_hostmgr::SystemRunner),
                    &self.scandir,
                    false,
                )
            })
            .clone()
    }
}
