//! systemd backend: one unit per profile (`hermes-gateway-<profile>.service`),
//! a user unit by default or a system unit running as `--run-as-user`.
//! Lifecycle goes through `systemctl`, state is read from `systemctl show`.

mod show;
mod unit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hermes_core::fsutil;
use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError, ServiceManager, SlotStatus};

use crate::commands::Commands;
use crate::host::HostEnv;
use crate::plan::{Plan, Step};
use crate::runner::{argv, command_error, CommandRunner, Output};
use crate::wait::{reached, Check};

pub use show::{UnitState, PROPERTIES};
pub use unit::{render_unit, unit_name, RESTART_SEC, START_LIMIT_BURST, START_LIMIT_INTERVAL_SECS};

/// `systemctl` exit codes for verbs other than `status`/`is-*`, from its
/// translation of D-Bus errors (LSB init-script codes, systemd's exit-status.h).
const EXIT_NOTIMPLEMENTED: i32 = 3;
const EXIT_NOPERMISSION: i32 = 4;
const EXIT_NOTINSTALLED: i32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A unit of the invoking user's manager (`systemctl --user`).
    User,
    /// A unit of the system manager; the gateway runs as `run_as`, never as root by default.
    System { run_as: String },
}

#[derive(Debug, Clone)]
pub struct SystemdConfig {
    pub scope: Scope,
    /// Where the unit file is written.
    pub unit_dir: PathBuf,
    /// systemd's lingering flag file for the user (user scope); `None` when unknown.
    pub linger_file: Option<PathBuf>,
    pub poll_interval: Duration,
    /// CLOCK_MONOTONIC now: systemd's `*TimestampMonotonic` properties use it.
    pub monotonic_now: fn() -> Duration,
}

impl SystemdConfig {
    /// User units in `$XDG_CONFIG_HOME/systemd/user` (else `~/.config/systemd/user`).
    pub fn user(env: &HostEnv) -> Self {
        SystemdConfig {
            scope: Scope::User,
            unit_dir: env.config_dir().join("systemd/user"),
            linger_file: env
                .user_name
                .as_ref()
                .map(|name| Path::new("/var/lib/systemd/linger").join(name)),
            poll_interval: Duration::from_millis(100),
            monotonic_now,
        }
    }

    /// System units in `/etc/systemd/system`.
    pub fn system(run_as: String) -> Self {
        SystemdConfig {
            scope: Scope::System { run_as },
            unit_dir: PathBuf::from(SYSTEM_UNIT_DIR),
            linger_file: None,
            poll_interval: Duration::from_millis(100),
            monotonic_now,
        }
    }

    /// The scope `profile`'s unit is installed in, so lifecycle commands find a
    /// unit installed with `--system` without being told: the user unit if it
    /// exists, else a system unit (running as its `User=`), else user scope.
    pub fn for_installed(env: &HostEnv, profile: &ProfileName) -> Self {
        Self::for_installed_in(env, profile, Path::new(SYSTEM_UNIT_DIR))
    }

    fn for_installed_in(env: &HostEnv, profile: &ProfileName, system_dir: &Path) -> Self {
        let user = SystemdConfig::user(env);
        let name = unit_name(profile);
        if user.unit_dir.join(&name).exists() {
            return user;
        }
        match fsutil::read_to_string(&system_dir.join(&name)) {
            Ok(text) => {
                let run_as = text
                    .lines()
                    .find_map(|l| l.strip_prefix("User="))
                    .unwrap_or("root");
                let mut config = SystemdConfig::system(run_as.trim().to_string());
                config.unit_dir = system_dir.to_path_buf();
                config
            }
            Err(_) => user,
        }
    }
}

const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

pub struct SystemdManager<R> {
    config: SystemdConfig,
    runner: R,
}

impl<R: CommandRunner> SystemdManager<R> {
    pub fn new(config: SystemdConfig, runner: R) -> Self {
        SystemdManager { config, runner }
    }

    pub fn unit_path(&self, profile: &ProfileName) -> PathBuf {
        self.config.unit_dir.join(unit_name(profile))
    }

    fn systemctl(&self, words: &[&str]) -> Vec<String> {
        let mut out = vec!["systemctl".to_string()];
        if self.config.scope == Scope::User {
            out.push("--user".to_string());
        }
        out.extend(words.iter().map(|w| w.to_string()));
        out
    }

    /// Write (or rewrite) the unit, reload, restart it if it was running an older
    /// definition, enable it and start it. Reads the current unit; changes nothing.
    pub fn plan_install(&self, spec: &GatewaySpec) -> Result<Plan, ServiceError> {
        let text = render_unit(spec, &self.config.scope)?;
        let path = self.unit_path(&spec.profile);
        let unit = unit_name(&spec.profile);
        let existing = fsutil::read_to_string(&path).ok();
        let mut plan = Plan::default();
        if existing.as_deref() != Some(text.as_str()) {
            plan.steps.push(Step::write(path, text));
            plan.steps
                .push(Step::run(self.systemctl(&["daemon-reload"])));
            if existing.is_some() {
                // A running gateway keeps its old definition until restarted.
                plan.steps
                    .push(Step::run(self.systemctl(&["try-restart", &unit])));
            }
        }
        plan.steps
            .push(Step::run(self.systemctl(&["enable", "--now", &unit])));
        if let Some(linger) = &self.config.linger_file {
            if !linger.exists() {
                let user = linger.file_name().unwrap_or_default().to_string_lossy();
                plan.warnings.push(format!(
                    "lingering is off for {user}: the gateway stops when you log out and does not start at boot; enable it with `loginctl enable-linger {user}`"
                ));
            }
        }
        Ok(plan)
    }

    /// Stop and disable the unit, remove it, reload, forget its failed state.
    pub fn plan_uninstall(&self, profile: &ProfileName) -> Result<Plan, ServiceError> {
        let path = self.unit_path(profile);
        if !path.exists() {
            return Err(self.not_installed(profile));
        }
        let unit = unit_name(profile);
        Ok(Plan {
            steps: vec![
                Step::run_tolerating(
                    self.systemctl(&["disable", "--now", &unit]),
                    &[EXIT_NOTINSTALLED],
                ),
                Step::Remove { path },
                Step::run(self.systemctl(&["daemon-reload"])),
                // Once the unit is gone systemd may answer "not loaded": nothing to reset.
                Step::run_tolerating(
                    self.systemctl(&["reset-failed", &unit]),
                    &[1, EXIT_NOTINSTALLED],
                ),
            ],
            warnings: Vec::new(),
        })
    }

    /// `install` that also returns the plan's warnings for the caller to show.
    pub fn install_with_warnings(&self, spec: &GatewaySpec) -> Result<Vec<String>, ServiceError> {
        let plan = self.plan_install(spec)?;
        self.apply(&spec.profile, &plan)?;
        Ok(plan.warnings)
    }

    fn not_installed(&self, profile: &ProfileName) -> ServiceError {
        let p = if profile.is_default() {
            String::new()
        } else {
            format!(" -p {profile}")
        };
        let system = match &self.config.scope {
            Scope::User => String::new(),
            Scope::System { run_as } if run_as.is_empty() => " --system".to_string(),
            Scope::System { run_as } => format!(" --system --run-as-user {run_as}"),
        };
        ServiceError::ServiceNotInstalled {
            manager: ManagerKind::Systemd,
            service: unit_name(profile),
            fix: format!("hermes{p} gateway install{system}"),
        }
    }

    /// Map a failed `systemctl` verb to a typed error by its documented exit code.
    pub fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        match out.code {
            Some(EXIT_NOTINSTALLED) => self.not_installed(profile),
            Some(EXIT_NOPERMISSION) => ServiceError::PermissionDenied {
                argv: argv.to_vec(),
                code: out.code,
                stderr: out.stderr.clone(),
                hint: match self.config.scope {
                    Scope::User => "check that you run this as the unit's owner".to_string(),
                    Scope::System { .. } => {
                        "system units need root: run it with sudo, or drop --system for a user unit"
                            .to_string()
                    }
                },
            },
            Some(EXIT_NOTIMPLEMENTED) | Some(_) | None => command_error(argv, out),
        }
    }

    fn show(&self, profile: &ProfileName) -> Result<UnitState, ServiceError> {
        let unit = unit_name(profile);
        let argv = self.systemctl(&["show", &unit, &format!("--property={PROPERTIES}")]);
        let out = self.runner.run(&argv)?;
        if !out.success() {
            return Err(self.failure(profile, &argv, &out));
        }
        let state = UnitState::parse(&out.stdout);
        if !state.loaded() {
            return Err(self.not_installed(profile));
        }
        Ok(state)
    }

    fn slot(&self, profile: &ProfileName, state: &UnitState) -> SlotStatus {
        state.to_slot(profile, &unit_name(profile), (self.config.monotonic_now)())
    }

    /// A start that ended in `failed`, with the journal's last lines when readable.
    fn start_failed(&self, profile: &ProfileName, state: &UnitState) -> ServiceError {
        let mut words = vec!["journalctl"];
        if self.config.scope == Scope::User {
            words.push("--user");
        }
        let unit = unit_name(profile);
        words.extend(["--unit", &unit, "--lines=20", "--no-pager", "--output=cat"]);
        let tail = self
            .runner
            .run(&argv(&words))
            .ok()
            .filter(|o| o.success() && !o.stdout.trim().is_empty())
            .map(|o| format!("\nlast log lines:\n{}", o.stdout.trim_end()))
            .unwrap_or_default();
        ServiceError::StartFailed {
            profile: profile.clone(),
            reason: format!("{unit} is {}{tail}", state.describe_exit()),
        }
    }

    /// Issue `verb --no-block`, then poll `show` until `done` says the unit got there.
    fn transition(
        &self,
        profile: &ProfileName,
        verb: &str,
        action: &'static str,
        timeout: Duration,
        done: impl Fn(&UnitState, &UnitState) -> Progress,
    ) -> Result<SlotStatus, ServiceError> {
        let before = self.show(profile)?;
        let unit = unit_name(profile);
        if verb != "stop" && before.failed() {
            // An explicit start is the operator's "try again" after the crash-loop
            // give-up; systemd refuses starts until the failure is reset.
            self.run_checked(profile, &self.systemctl(&["reset-failed", &unit]))?;
        }
        self.run_checked(profile, &self.systemctl(&[verb, "--no-block", &unit]))?;
        let state = reached(profile, action, timeout, self.config.poll_interval, || {
            let now = self.show(profile)?;
            Ok(match done(&before, &now) {
                Progress::Reached => Check::Done(now),
                Progress::Failed => Check::Failed(self.start_failed(profile, &now)),
                Progress::Pending => Check::Pending,
            })
        })?;
        Ok(self.slot(profile, &state))
    }
}

/// Where a unit is relative to the state a lifecycle call waits for.
enum Progress {
    Reached,
    Failed,
    Pending,
}

/// Up and ready (for `Type=notify`, after READY=1); failed ends the wait.
fn started(now: &UnitState) -> Progress {
    if now.failed() {
        Progress::Failed
    } else if now.ready() {
        Progress::Reached
    } else {
        Progress::Pending
    }
}

impl<R: CommandRunner> Commands for SystemdManager<R> {
    fn runner(&self) -> &dyn CommandRunner {
        &self.runner
    }
    fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        SystemdManager::failure(self, profile, argv, out)
    }
}

impl<R: CommandRunner> ServiceManager for SystemdManager<R> {
    fn kind(&self) -> ManagerKind {
        ManagerKind::Systemd
    }

    /// Warnings (lingering off) are dropped here; the CLI uses `install_with_warnings`.
    fn install(&self, spec: &GatewaySpec) -> Result<(), ServiceError> {
        self.install_with_warnings(spec).map(drop)
    }

    fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.apply(profile, &self.plan_uninstall(profile)?)
    }

    fn start(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        self.transition(profile, "start", "start", timeout, |_, now| started(now))
    }

    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        self.transition(profile, "stop", "stop", timeout, |_, now| {
            if now.down() {
                Progress::Reached
            } else {
                Progress::Pending
            }
        })
    }

    fn restart(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        self.transition(profile, "restart", "restart", timeout, |before, now| {
            // Ready is not enough: the main process must be a new one.
            if now.exec_start_us != before.exec_start_us {
                started(now)
            } else {
                Progress::Pending
            }
        })
    }

    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        let state = self.show(profile)?;
        Ok(self.slot(profile, &state))
    }

    /// Profiles with a unit in this scope's unit directory.
    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        crate::listing::installed_profiles(
            &self.config.unit_dir,
            "hermes-gateway-",
            ".service",
            unit_name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_finds_the_scope_a_unit_was_installed_in() {
        let dir = tempfile::tempdir().unwrap();
        let env = HostEnv {
            home_dir: dir.path().join("home"),
            xdg_config_home: None,
            uid: 1000,
            user_name: Some("ann".into()),
        };
        let system_dir = dir.path().join("etc");
        let p = ProfileName::parse("coder").unwrap();
        let pick = || SystemdConfig::for_installed_in(&env, &p, &system_dir).scope;
        assert_eq!(pick(), Scope::User);
        std::fs::create_dir_all(&system_dir).unwrap();
        std::fs::write(system_dir.join(unit_name(&p)), "[Service]\nUser=ann\n").unwrap();
        assert_eq!(
            pick(),
            Scope::System {
                run_as: "ann".into()
            }
        );
        let user_dir = dir.path().join("home/.config/systemd/user");
        std::fs::create_dir_all(&user_dir).unwrap();
        std::fs::write(user_dir.join(unit_name(&p)), "").unwrap();
        assert_eq!(pick(), Scope::User);
    }
}
