//! Windows backend: one Scheduled Task per profile, started at log-on,
//! restarted on failure, with no execution time limit; created from task XML
//! with `schtasks /Create /XML`, driven with `/Run`, `/End`, `/Delete`, and
//! read with `/Query /FO CSV /V`.

mod task;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hermes_core::name::ProfileName;
use hermes_core::service::{
    GatewaySpec, ManagerKind, ServiceError, ServiceManager, ServiceStatus, SlotStatus, Want,
};

use crate::commands::Commands;
use crate::plan::{Encoding, Plan, Step};
use crate::runner::{command_error, CommandRunner, Output};
use crate::wait::{reached, Check};

pub use task::{log_file, render_launcher, render_task_xml, task_name, RESTART_INTERVAL};

/// schtasks documents only 0 (success) and 1 (failure); the reason is in its
/// (localised) message, so these English phrases are the best available signal.
const SCHTASKS_FAILURE: i32 = 1;
const NOT_FOUND_PHRASE: &str = "cannot find";
const DENIED_PHRASE: &str = "access is denied";

#[derive(Debug, Clone)]
pub struct WindowsConfig {
    /// Where the task XML and the launcher are kept (`<HERMES_HOME>\tasks`).
    pub task_dir: PathBuf,
    /// `DOMAIN\name` whose log-on starts the task.
    pub user: Option<String>,
    pub poll_interval: Duration,
}

impl WindowsConfig {
    /// `%USERDOMAIN%\%USERNAME%` from the environment, when both are set.
    pub fn from_env(hermes_home: &Path) -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        WindowsConfig {
            task_dir: hermes_home.join("tasks"),
            user: var("USERNAME").map(|name| match var("USERDOMAIN") {
                Some(domain) => format!("{domain}\\{name}"),
                None => name,
            }),
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// The task's state columns from `schtasks /Query /FO CSV /V`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskState {
    pub status: String,
    pub last_result: Option<i64>,
}

impl TaskState {
    /// Columns are found by their English header, else by their documented
    /// position (Status 4th, Last Result 7th), since headers are localised.
    pub fn parse(csv: &str) -> Option<Self> {
        let mut rows = csv.lines().filter(|l| !l.trim().is_empty()).map(csv_fields);
        let header = rows.next()?;
        let row = rows.next()?;
        let column = |name: &str, fallback: usize| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .unwrap_or(fallback)
        };
        let status = row.get(column("Status", 3))?.clone();
        let last_result = row
            .get(column("Last Result", 6))
            .and_then(|v| v.trim().parse().ok());
        Some(TaskState {
            status,
            last_result,
        })
    }

    pub fn running(&self) -> bool {
        self.status.eq_ignore_ascii_case("Running")
    }
}

fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

pub struct WindowsManager<R> {
    config: WindowsConfig,
    runner: R,
}

impl<R: CommandRunner> WindowsManager<R> {
    pub fn new(config: WindowsConfig, runner: R) -> Self {
        WindowsManager { config, runner }
    }

    pub fn xml_path(&self, profile: &ProfileName) -> PathBuf {
        self.config
            .task_dir
            .join(format!("{}.xml", task_name(profile)))
    }

    pub fn launcher_path(&self, profile: &ProfileName) -> PathBuf {
        self.config
            .task_dir
            .join(format!("{}.cmd", task_name(profile)))
    }

    fn schtasks(words: &[&str]) -> Vec<String> {
        std::iter::once("schtasks")
            .chain(words.iter().copied())
            .map(String::from)
            .collect()
    }

    /// Write the launcher and the XML, (re)create the task with /F, and run it.
    pub fn plan_install(&self, spec: &GatewaySpec) -> Result<Plan, ServiceError> {
        let launcher = self.launcher_path(&spec.profile);
        let xml = render_task_xml(spec, &launcher, self.config.user.as_deref())?;
        let xml_path = self.xml_path(&spec.profile);
        let name = task_name(&spec.profile);
        let xml_arg = xml_path.to_string_lossy().into_owned();
        Ok(Plan {
            steps: vec![
                Step::write(launcher, render_launcher(spec)?),
                Step::Write {
                    path: xml_path,
                    text: xml,
                    encoding: Encoding::Utf16Le,
                    mode: 0o644,
                },
                Step::run(Self::schtasks(&[
                    "/Create", "/XML", &xml_arg, "/TN", &name, "/F",
                ])),
                Step::run(Self::schtasks(&["/Run", "/TN", &name])),
            ],
            warnings: Vec::new(),
        })
    }

    pub fn plan_uninstall(&self, profile: &ProfileName) -> Result<Plan, ServiceError> {
        let xml_path = self.xml_path(profile);
        if !xml_path.exists() {
            return Err(self.not_installed(profile));
        }
        let name = task_name(profile);
        Ok(Plan {
            steps: vec![
                // Fails when the task is not running, which is fine here.
                Step::run_tolerating(Self::schtasks(&["/End", "/TN", &name]), &[SCHTASKS_FAILURE]),
                Step::run(Self::schtasks(&["/Delete", "/TN", &name, "/F"])),
                Step::Remove { path: xml_path },
                Step::Remove {
                    path: self.launcher_path(profile),
                },
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
            manager: ManagerKind::Windows,
            service: task_name(profile),
            fix: format!("hermes{p} gateway install"),
        }
    }

    /// Map a failed `schtasks` call to a typed error (exit 1 plus its message).
    pub fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        let message = format!("{}{}", out.stderr, out.stdout).to_ascii_lowercase();
        match out.code {
            Some(SCHTASKS_FAILURE) if message.contains(NOT_FOUND_PHRASE) => {
                self.not_installed(profile)
            }
            Some(SCHTASKS_FAILURE) if message.contains(DENIED_PHRASE) => {
                ServiceError::PermissionDenied {
                    argv: argv.to_vec(),
                    code: out.code,
                    stderr: out.stderr.clone(),
                    hint: "run it as the user who installed the task".to_string(),
                }
            }
            _ => command_error(argv, out),
        }
    }

    fn query(&self, profile: &ProfileName) -> Result<TaskState, ServiceError> {
        let argv = Self::schtasks(&["/Query", "/TN", &task_name(profile), "/FO", "CSV", "/V"]);
        let out = self.runner.run(&argv)?;
        if !out.success() {
            return Err(self.failure(profile, &argv, &out));
        }
        TaskState::parse(&out.stdout).ok_or_else(|| ServiceError::Command {
            argv,
            code: out.code,
            stderr: format!("unexpected output: {}", out.stdout.trim()),
        })
    }

    fn slot(&self, profile: &ProfileName, task: &TaskState) -> SlotStatus {
        let running = task.running();
        SlotStatus {
            profile: profile.clone(),
            service: ServiceStatus {
                name: task_name(profile),
                supervised: true,
                up: running,
                // Task Scheduler has no readiness protocol, and no pid in its output.
                ready: running,
                want: if running { Want::Up } else { Want::Down },
                pid: None,
                for_secs: None,
                exit_code: task
                    .last_result
                    .filter(|_| !running)
                    .and_then(|r| i32::try_from(r).ok()),
            },
            signal: None,
        }
    }

    fn wait(
        &self,
        profile: &ProfileName,
        action: &'static str,
        timeout: Duration,
        want_running: bool,
    ) -> Result<SlotStatus, ServiceError> {
        let task = reached(profile, action, timeout, self.config.poll_interval, || {
            let task = self.query(profile)?;
            Ok(Check::done_if(task.running() == want_running, task))
        })?;
        Ok(self.slot(profile, &task))
    }
}

impl<R: CommandRunner> Commands for WindowsManager<R> {
    fn runner(&self) -> &dyn CommandRunner {
        &self.runner
    }
    fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError {
        WindowsManager::failure(self, profile, argv, out)
    }
}

impl<R: CommandRunner> ServiceManager for WindowsManager<R> {
    fn kind(&self) -> ManagerKind {
        ManagerKind::Windows
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
            &Self::schtasks(&["/Run", "/TN", &task_name(profile)]),
        )?;
        self.wait(profile, "start", timeout, true)
    }

    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        self.run_checked(
            profile,
            &Self::schtasks(&["/End", "/TN", &task_name(profile)]),
        )?;
        self.wait(profile, "stop", timeout, false)
    }

    fn restart(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let name = task_name(profile);
        if self.query(profile)?.running() {
            self.run_checked(profile, &Self::schtasks(&["/End", "/TN", &name]))?;
            self.wait(profile, "restart", timeout, false)?;
        }
        self.run_checked(profile, &Self::schtasks(&["/Run", "/TN", &name]))?;
        self.wait(profile, "restart", timeout, true)
    }

    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        let task = self.query(profile)?;
        Ok(self.slot(profile, &task))
    }

    /// Profiles whose task XML this backend wrote.
    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        crate::listing::installed_profiles(&self.config.task_dir, "hermes-gateway-", ".xml", |p| {
            format!("{}.xml", task_name(p))
        })
    }
}
