//! launchd backend: one LaunchAgent per profile in `~/Library/LaunchAgents`,
//! driven with the modern `launchctl bootstrap/bootout/kickstart/kill/print`
//! verbs in the `gui/<uid>` domain (never the legacy load/unload/start/stop).

mod plist;

use std::path::PathBuf;
use std::time::Duration;

use hermes_core::name::ProfileName;
use hermes_core::service::{
    GatewaySpec, ManagerKind, ServiceError, ServiceManager, ServiceStatus, SlotStatus, Want,
};

use crate::commands::Commands;
use crate::host::HostEnv;
use crate::plan::{Plan, Step};
use crate::runner::{command_error, CommandRunner, Output};
use crate::wait::{reached, Check};

pub use plist::{label, render_plist, stderr_path, stdout_path, THROTTLE_INTERVAL_SECS};

/// launchctl exits with an error number that `launchctl error <n>` explains:
/// errno values, plus launchd's own codes above 100.
const EPERM: i32 = 1;
/// "No such process": the service is not loaded, or (for `kill`) not running.
const ESRCH: i32 = 3;
/// "Could not find specified domain": no GUI session for the user (ssh only).
const DOMAIN_NOT_FOUND: i32 = 112;
/// "Could not find service … in domain".
const SERVICE_NOT_FOUND: i32 = 113;

#[derive(Debug, Clone)]
pub struct LaunchdConfig {
    /// `~/Library/LaunchAgents`.
    pub agents_dir: PathBuf,
    pub uid: u32,
    pub poll_interval: Duration,
}

impl LaunchdConfig {
    pub fn from_env(env: &HostEnv) -> Self {
        LaunchdConfig {
            agents_dir: env.home_dir.join("Library/LaunchAgents"),
            uid: env.uid,
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// What `launchctl print` says about a loaded job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobState {
    pub running: bool,
    pub pid: Option<u32>,
    pub last_exit: Option<i32>,
    pub last_signal: Option<String>,
}

impl JobState {
    /// `launchctl print` output is text meant for people; only the job's own
    /// top-level `key = value` lines (one tab deep) are read.
    pub fn parse(text: &str) -> Self {
        let mut state = JobState::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix('\t') else {
                continue;
            };
            if rest.starts_with('\t') {
                continue;
            }
            let Some((key, value)) = rest.split_once(" = ") else {
                continue;
            };
            match key.trim() {
                "state" => state.running = value.trim() == "running",
                "pid" => state.pid = value.trim().parse().ok(),
                "last exit code" => state.last_exit = value.trim().parse().ok(),
                "last terminating signal" => state.last_signal = Some(value.trim().to_string()),
                _ => {}
            }
        }
        state
    }
}

pub struct LaunchdManager<R> {
    config: LaunchdConfig,
    runner: R,
}

impl<R: CommandRunner> LaunchdManager<R> {
    pub fn new(config: LaunchdConfig, runner: R) -> Self {
        LaunchdManager { config, runner }
    }

    pub fn plist_path(&self, profile: &ProfileName) -> PathBuf {
        self.config
            .agents_dir
            .join(format!("{}.plist", label(profile)))
    }

    fn domain(&self) -> String {
        format!("gui/{}", self.config.uid)
    }

    fn target(&self, profile: &ProfileName) -> String {
        format!("gui/{}/{}", self.config.uid, label(profile))
    }

    fn launchctl(words: &[&str]) -> Vec<String> {
        std::iter::once("launchctl")
            .chain(words.iter().copied())
            .map(String::from)
            .collect()
    }

    /// Write the plist, unload any old definition, enable, and bootstrap (which
    /// starts it: RunAtLoad). Reinstalling therefore restarts the gateway.
    pub fn plan_install(&self, spec: &GatewaySpec) -> Result<Plan, ServiceError> {
        let text = render_plist(spec)?;
        let path = self.plist_path(&spec.profile);
        let target = self.target(&spec.profile);
        let plist = path.to_string_lossy().into_owned();
        Ok(Plan {
            steps: vec![
                // launchd opens the log files but does not create their directory.
                Step::CreateDir {
                    path: spec.log_dir.clone(),
                },
                Step::write(path, text),
                Step::run_tolerating(
                    Self::launchctl(&["bootout", &target]),
                    &[ESRCH, SERVICE_NOT_FOUND],
                ),
                // A job disabled earlier (launchctl disable) refuses to bootstrap.
                Step::run(Self::launchctl(&["enable", &target])),
                Step::run(Self::launchctl(&["bootstrap", &self.domain(), &plist])),
            ],
            warnings: Vec::new(),
        })
    }

    pub fn plan_uninstall(&self, profile: &ProfileName) -> Result<Plan, ServiceError> {
        let path = self.plist_path(profile);
        if !path.exists() {
            return Err(self.not_installed(profile));
        }
        Ok(Plan {
            steps: vec![
                Step::run_tolerating(
                    Self::launchctl(&["bootout", &self.target(profile)]),
                    &[ESRCH, SERVICE_NOT_FOUND],
                ),
                Step::Remove { path },
            ],
            warnings: Vec::new(),
        })
    }

    fn not_installed(&self, profile: &ProfileName) -> ServiceError {
        let p = if profile.is_default() {
            String::new()
        } else {
            format!(" -p {profile}")
        };
        ServiceError::ServiceNotInstalled {
            manager: ManagerKind::Launchd,
            service: label(profile),
            fix: format!("hermes{p} gateway install"),
        }
    }

    /// Map a failed `launchctl` call to a typed error by its error number.
    pub fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        let denied = |hint: &str| ServiceError::PermissionDenied {
            argv: argv.to_vec(),
            code: out.code,
            stderr: out.stderr.clone(),
            hint: hint.to_string(),
        };
        match out.code {
            Some(ESRCH) | Some(SERVICE_NOT_FOUND) => self.not_installed(profile),
            Some(EPERM) => denied("run it as the user who owns the LaunchAgent, without sudo"),
            Some(DOMAIN_NOT_FOUND) => denied(&format!(
                "the {} domain exists only while the user is logged in at the Mac; log in there once",
                self.domain()
            )),
            _ => command_error(argv, out),
        }
    }

    fn job(&self, profile: &ProfileName) -> Result<JobState, ServiceError> {
        let argv = Self::launchctl(&["print", &self.target(profile)]);
        let out = self.runner.run(&argv)?;
        if !out.success() {
            return Err(self.failure(profile, &argv, &out));
        }
        Ok(JobState::parse(&out.stdout))
    }

    fn slot(&self, profile: &ProfileName, job: &JobState) -> SlotStatus {
        SlotStatus {
            profile: profile.clone(),
            service: ServiceStatus {
                name: label(profile),
                supervised: true,
                up: job.running,
                // launchd has no readiness protocol: running is as far as it can tell.
                ready: job.running,
                want: if job.running { Want::Up } else { Want::Down },
                pid: job.pid.filter(|_| job.running),
                for_secs: None,
                exit_code: job.last_exit.filter(|_| !job.running),
            },
            signal: job.last_signal.clone().filter(|_| !job.running),
        }
    }

    fn wait(
        &self,
        profile: &ProfileName,
        action: &'static str,
        timeout: Duration,
        done: impl Fn(&JobState) -> bool,
    ) -> Result<SlotStatus, ServiceError> {
        let job = reached(profile, action, timeout, self.config.poll_interval, || {
            let job = self.job(profile)?;
            Ok(Check::done_if(done(&job), job))
        })?;
        Ok(self.slot(profile, &job))
    }
}

impl<R: CommandRunner> Commands for LaunchdManager<R> {
    fn runner(&self) -> &dyn CommandRunner {
        &self.runner
    }
    fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        LaunchdManager::failure(self, profile, argv, out)
    }
}

impl<R: CommandRunner> ServiceManager for LaunchdManager<R> {
    fn kind(&self) -> ManagerKind {
        ManagerKind::Launchd
    }

    fn install(&self, spec: &GatewaySpec) -> Result<(), ServiceError> {
        self.apply(&spec.profile, &self.plan_install(spec)?)
    }

    fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.apply(profile, &self.plan_uninstall(profile)?)
    }

    fn start(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        self.run_checked(
            profile,
            &Self::launchctl(&["kickstart", &self.target(profile)]),
        )?;
        self.wait(profile, "start", timeout, |job| job.running)
    }

    /// SIGTERM: the gateway drains and exits 0, which KeepAlive (SuccessfulExit
    /// = false) does not restart. The job stays loaded, so `start` works again.
    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        let argv = Self::launchctl(&["kill", "SIGTERM", &self.target(profile)]);
        let out = self.runner.run(&argv)?;
        // ESRCH from kill: loaded but no process, which is what stop wants.
        if !out.success() && out.code != Some(ESRCH) {
            return Err(self.failure(profile, &argv, &out));
        }
        self.wait(profile, "stop", timeout, |job| !job.running)
    }

    fn restart(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let before = self.job(profile)?.pid;
        self.run_checked(
            profile,
            &Self::launchctl(&["kickstart", "-k", &self.target(profile)]),
        )?;
        self.wait(profile, "restart", timeout, |job| {
            job.running && job.pid.is_some() && job.pid != before
        })
    }

    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        let job = self.job(profile)?;
        Ok(self.slot(profile, &job))
    }

    /// Profiles with a LaunchAgent plist.
    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        crate::listing::installed_profiles(
            &self.config.agents_dir,
            "hermes.gateway.",
            ".plist",
            |p| format!("{}.plist", label(p)),
        )
    }
}
