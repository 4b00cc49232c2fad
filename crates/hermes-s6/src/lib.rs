//! The s6 backend of hermes. Slots are service directories kept in
//! `<scandir>/.slots/` (s6-svscan ignores dot names) and published into the
//! scandir as symlinks, so removing one never yanks a directory from under a
//! live `s6-supervise`. Every write is staged under a dot name and renamed.
//!
//! Lifecycle goes through `s6-svc`/`s6-svstat` only; supervised processes
//! are never signalled directly.
// Not yet routed through `fsutil` (issue 15): the lint is off here until it is.
#![allow(clippy::disallowed_methods)]

pub mod cmd;
pub mod finish;
pub mod scandir;
pub mod slot;
pub mod static_slot;
pub mod supervise;
pub mod svscan;
pub mod svstat;

pub use hermes_core::fifo::fifo_has_reader;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hermes_core::fsutil::{self, FsError};
use hermes_core::service::{
    GatewaySpec, ManagerKind, ServiceError, ServiceManager, SlotStatus, Want,
};
use hermes_core::state::{self, DesiredState, GatewayState, LastExit, RunState};
use hermes_core::{HermesHome, ProfileName};

pub use scandir::Scandir;
/// How long s6-supervise waits after SIGTERM before SIGKILL.
pub const TIMEOUT_KILL_MS: u32 = 5_000;
const POLL: Duration = Duration::from_millis(5);
const UNREGISTER_WAIT: Duration = Duration::from_secs(15);
/// How long a newly published slot may take to get its s6-supervise.
const REGISTER_WAIT: Duration = Duration::from_secs(5);
/// How long `all_up_and_ready` lets `s6-svwait` run: it answers at once when
/// all slots are ready, and this bounds the cost when one is not (the
/// timeout also covers its start-up handshake with `s6-ftrigrd`).
const QUICK_WAIT_MS: &str = "300";

/// The container's scandir when `/run` can hold it.
pub const CONTAINER_SCANDIR: &str = "/run/service";

/// `$HERMES_SCANDIR`; in the container the one the init recorded in the
/// volume (`/run/service` or its fallback); on a host a per-user runtime dir.
pub fn default_scandir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERMES_SCANDIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if std::env::var_os("HERMES_CONTAINER").is_some_and(|v| v == "1") {
        let home = HermesHome::from_env();
        return hermes_core::runtime::scandir(
            home.as_ref().map(|h| h.root()),
            PathBuf::from(CONTAINER_SCANDIR),
        );
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("hermes/service"),
        None => PathBuf::from(format!("/tmp/hermes-{}/service", nix::unistd::geteuid())),
    }
}

#[derive(Debug, Clone)]
pub struct S6Config {
    pub scandir: PathBuf,
    pub home: HermesHome,
    /// The hermes binary run scripts exec.
    pub program: PathBuf,
    /// Loggers also copy lines to the supervisor's stdout (the container's `docker logs`).
    pub echo_to_stdout: bool,
}

#[derive(Debug, Clone)]
pub struct S6Manager {
    cfg: S6Config,
}

/// Whether an `s6-supervise` runs on the service directory `dir` (what `s6-svok` checks).
pub fn is_supervised(dir: &Path) -> bool {
    fifo_has_reader(&dir.join("supervise/control"))
}

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// What a start or restart compares against to tell a new failure from an old one.
struct Baseline {
    at_ms: u64,
    restarts: u32,
    /// The process that must be replaced (restart), if any.
    pid: Option<u32>,
}

impl Baseline {
    fn now(recorded: &GatewayState, pid: Option<u32>) -> Self {
        Baseline {
            at_ms: state::now_ms(),
            restarts: recorded.restarts,
            pid,
        }
    }
}

impl S6Manager {
    pub fn new(cfg: S6Config) -> Self {
        S6Manager { cfg }
    }

    pub fn scandir(&self) -> &Path {
        &self.cfg.scandir
    }

    /// The published name of a profile's slot (a symlink into `.slots/`).
    pub fn slot_link(&self, profile: &ProfileName) -> PathBuf {
        self.layout().link(&profile.service_name())
    }

    fn layout(&self) -> Scandir {
        Scandir::new(&self.cfg.scandir)
    }

    fn slot_dir(&self, profile: &ProfileName) -> PathBuf {
        self.layout().slot_dir(&profile.service_name())
    }

    pub fn spec(&self, profile: &ProfileName) -> GatewaySpec {
        GatewaySpec::for_profile(&self.cfg.home, profile, &self.cfg.program)
    }

    pub fn is_registered(&self, profile: &ProfileName) -> bool {
        fs::symlink_metadata(self.slot_link(profile)).is_ok()
    }

    /// A supervisor listens on the scandir, and it is ours to talk to.
    pub fn check_supervisor(&self) -> Result<(), ServiceError> {
        let control = self.layout().control();
        let meta = match fs::metadata(&control) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ServiceError::NoSupervisor {
                    scandir: self.cfg.scandir.clone(),
                })
            }
            Err(e) => return Err(FsError::new("inspect", &control, e).into()),
        };
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            // s6-svc -w… waits on a FIFO the supervisor must open: another user's tree would hang us.
            return Err(ServiceError::WrongUser {
                path: self.cfg.scandir.clone(),
                owner: meta.uid(),
                uid,
            });
        }
        if !fifo_has_reader(&control) {
            return Err(ServiceError::NoSupervisor {
                scandir: self.cfg.scandir.clone(),
            });
        }
        Ok(())
    }

    fn require_slot(&self, profile: &ProfileName) -> Result<PathBuf, ServiceError> {
        self.check_supervisor()?;
        let link = self.slot_link(profile);
        if !self.is_registered(profile) {
            return Err(ServiceError::NotRegistered {
                profile: profile.clone(),
            });
        }
        // A slot published a moment ago by another process may not be supervised yet.
        self.wait_supervised(profile)?;
        Ok(link)
    }

    /// Wait until an `s6-supervise` runs on the profile's slot and has written
    /// its first status file (it opens the control FIFO first; s6-svstat needs both).
    fn wait_supervised(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        let real = self.slot_dir(profile);
        let status_file = real.join("supervise/status");
        let deadline = Instant::now() + REGISTER_WAIT;
        if wait_until(deadline, || is_supervised(&real) && status_file.exists()) {
            Ok(())
        } else {
            Err(ServiceError::Timeout {
                action: "registration",
                profile: profile.clone(),
                waited: REGISTER_WAIT,
            })
        }
    }

    fn svc(&self, flag: &str, dir: &Path) -> Result<(), ServiceError> {
        cmd::run("s6-svc", [flag.as_ref(), dir.as_os_str()])?.checked()?;
        Ok(())
    }

    fn svscanctl(&self, flag: &str) -> Result<(), ServiceError> {
        cmd::run(
            "s6-svscanctl",
            [flag.as_ref(), self.cfg.scandir.as_os_str()],
        )?
        .checked()?;
        Ok(())
    }

    fn set_down_marker(&self, link: &Path, down: bool) -> Result<(), ServiceError> {
        let marker = link.join("down");
        if down {
            fsutil::atomic_write(&marker, b"", 0o644)?;
        } else if let Err(e) = fs::remove_file(&marker) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(FsError::new("remove", &marker, e).into());
            }
        }
        Ok(())
    }

    fn status_of(&self, profile: &ProfileName, link: &Path) -> Result<SlotStatus, ServiceError> {
        let stat = svstat::read(link)?;
        Ok(svstat::to_status(
            profile,
            &profile.service_name(),
            stat.as_ref(),
        ))
    }

    fn recorded(&self, profile: &ProfileName) -> Result<GatewayState, ServiceError> {
        Ok(state::load(&self.cfg.home.profile(profile).state())?.state())
    }

    fn slot_count(&self) -> Result<usize, ServiceError> {
        Ok(self.list()?.len())
    }

    /// Build a slot under a dot name and publish its link; no scan yet.
    /// `None` when the profile already has a slot. `count` slots exist and
    /// at most `limit` are allowed.
    fn publish(
        &self,
        spec: &GatewaySpec,
        start_now: bool,
        count: usize,
        limit: usize,
    ) -> Result<Option<PathBuf>, ServiceError> {
        if let Some(bad) = spec.env.keys().find(|k| !slot::valid_env_key(k)) {
            return Err(ServiceError::Unsupported {
                manager: ManagerKind::S6,
                operation: "an environment variable name that is not a shell identifier",
                hint: Some(format!("rename {bad:?}")),
            });
        }
        let profile = &spec.profile;
        if self.is_registered(profile) {
            return Ok(None);
        }
        if count >= limit {
            return Err(ServiceError::TooManySlots { limit });
        }
        // Never follow a symlink planted in the log path out of HERMES_HOME.
        fsutil::ensure_dir_under(&spec.home, &spec.log_dir, 0o700)?;
        let slots = self.layout().slots();
        fsutil::ensure_dir(&slots, 0o755)?;
        let name = profile.service_name();
        let pid = std::process::id();
        let staging = slots.join(format!(".{name}.tmp.{pid}"));
        let real = self.slot_dir(profile);
        slot::remove_tree(&staging)?;
        // A directory without a published link is a leftover of an interrupted run.
        slot::remove_tree(&real)?;
        // Marks the gateway as supervised so it never redirects itself into a slot again.
        let mut spec = spec.clone();
        spec.env
            .insert("HERMES_SUPERVISED_CHILD".to_string(), "1".to_string());
        let mut files = slot::render(&spec, start_now, self.cfg.echo_to_stdout);
        files.files.push((
            PathBuf::from("timeout-kill"),
            format!("{TIMEOUT_KILL_MS}\n"),
            0o644,
        ));
        slot::write_dir(&staging, &files).inspect_err(|_| {
            let _ = slot::remove_tree(&staging);
        })?;
        fs::rename(&staging, &real).map_err(|e| FsError::new("rename into", &real, e))?;
        let link = self.slot_link(profile);
        let link_tmp = self.cfg.scandir.join(format!(".{name}.link.{pid}"));
        let _ = fs::remove_file(&link_tmp);
        let publish = std::os::unix::fs::symlink(Scandir::link_target(&name), &link_tmp)
            .and_then(|()| fs::rename(&link_tmp, &link));
        if let Err(e) = publish {
            let _ = fs::remove_file(&link_tmp);
            let _ = slot::remove_tree(&real);
            return Err(FsError::new("publish", &link, e).into());
        }
        Ok(Some(real))
    }

    /// Register many slots with a single scan, then wait for all of them to
    /// be supervised: boot reconciliation of hundreds of profiles costs one
    /// `s6-svscanctl -a` instead of one per profile. One result per slot.
    pub fn register_many(
        &self,
        slots: &[(GatewaySpec, bool)],
    ) -> Result<Vec<Result<(), ServiceError>>, ServiceError> {
        self.check_supervisor()?;
        let limit = svscan::read_limit(&self.cfg.scandir);
        let mut count = self.slot_count()?;
        let mut results = Vec::with_capacity(slots.len());
        let mut pending = Vec::new();
        for (i, (spec, start_now)) in slots.iter().enumerate() {
            match self.publish(spec, *start_now, count, limit) {
                Ok(Some(real)) => {
                    count += 1;
                    pending.push((i, real));
                    results.push(Ok(()));
                }
                Ok(None) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        if pending.is_empty() {
            return Ok(results);
        }
        self.svscanctl("-a")?;
        // Each slot costs s6-svscan two supervisors and a logger to spawn:
        // a few hundred per second, fewer on a loaded machine.
        let waited = REGISTER_WAIT + Duration::from_millis(20) * pending.len() as u32;
        let deadline = Instant::now() + waited;
        wait_until(deadline, || {
            pending.retain(|(_, real)| !is_supervised(real));
            pending.is_empty()
        });
        for (i, _) in pending {
            results[i] = Err(ServiceError::Timeout {
                action: "registration",
                profile: slots[i].0.profile.clone(),
                waited,
            });
        }
        Ok(results)
    }

    /// Wait until the gateway is up and ready with a pid other than `old_pid`,
    /// or has failed since `since_ms`.
    fn wait_ready(
        &self,
        profile: &ProfileName,
        link: &Path,
        before: &Baseline,
        action: &'static str,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let deadline = Instant::now() + timeout;
        // s6-svc only queues the command: until the supervisor shows "want up",
        // a "want down" is the old state, not a verdict.
        let mut seen_want_up = false;
        loop {
            let status = self.status_of(profile, link)?;
            if !status.supervised {
                return Err(ServiceError::NoSupervisor {
                    scandir: self.cfg.scandir.clone(),
                });
            }
            if status.ready && status.pid.is_some() && status.pid != before.pid {
                return Ok(status);
            }
            seen_want_up |= status.want == Want::Up;
            let recorded = self.recorded(profile)?;
            // Every caller recorded "running" before asking s6; "stopped" now
            // means a later stop won, and waiting would only run out the timeout.
            if recorded.desired_state == Some(DesiredState::Stopped) {
                return Err(ServiceError::Overtaken {
                    action,
                    profile: profile.clone(),
                });
            }
            // The finish hook records every death; a requested SIGTERM (restart)
            // is not a failure, and the next gateway may already have cleared the reason.
            let last_exit = recorded.last_exit.as_ref().filter(|e| e.at > before.at_ms);
            let failed = recorded.restarts > before.restarts
                || recorded.gateway_state == Some(RunState::StartupFailed)
                || (recorded.gateway_state == Some(RunState::Stopped)
                    && !recorded.stopped_on_request());
            let died_since = last_exit.is_some() && failed;
            // A death recorded since the command also proves s6 acted on it.
            let parked =
                (seen_want_up || last_exit.is_some()) && !status.up && status.want == Want::Down;
            if died_since || parked {
                let retrying = recorded.gateway_state == Some(RunState::Starting) && !parked;
                if !retrying && !parked && Instant::now() < deadline {
                    // The finish hook has recorded a permanent failure; report it
                    // once s6 has acted on it, so the status we print is settled.
                    thread::sleep(POLL);
                    continue;
                }
                let reason = recorded
                    .exit_reason
                    .clone()
                    .unwrap_or_else(|| match last_exit {
                        Some(LastExit {
                            code: Some(code), ..
                        }) => format!("it exited with code {code} before becoming ready"),
                        Some(LastExit {
                            signal: Some(sig), ..
                        }) => format!("it was killed by signal {sig} before becoming ready"),
                        _ => "it exited before becoming ready".to_string(),
                    });
                return Err(ServiceError::StartFailed {
                    profile: profile.clone(),
                    reason: if retrying {
                        format!("{reason} (the supervisor retries with back-off)")
                    } else {
                        reason
                    },
                });
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Timeout {
                    action,
                    profile: profile.clone(),
                    waited: timeout,
                });
            }
            thread::sleep(POLL);
        }
    }

    fn wait_down(
        &self,
        profile: &ProfileName,
        link: &Path,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status_of(profile, link)?;
            if !status.up {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Timeout {
                    action: "stop",
                    profile: profile.clone(),
                    waited: timeout,
                });
            }
            thread::sleep(POLL);
        }
    }
}

impl ServiceManager for S6Manager {
    fn kind(&self) -> ManagerKind {
        ManagerKind::S6
    }

    fn install(&self, spec: &GatewaySpec) -> Result<(), ServiceError> {
        self.register(spec, true)
    }

    fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.unregister(profile)
    }

    fn start(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        let current = self.status_of(profile, &link)?;
        if current.up && current.ready {
            return Ok(current);
        }
        let before = Baseline::now(&self.recorded(profile)?, None);
        self.set_down_marker(&link, false)?;
        self.svc("-u", &link)?;
        self.wait_ready(profile, &link, &before, "start", timeout)
    }

    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        self.set_down_marker(&link, true)?;
        self.svc("-d", &link)?;
        self.wait_down(profile, &link, timeout)
    }

    fn restart(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        let current = self.status_of(profile, &link)?;
        let before = Baseline::now(&self.recorded(profile)?, current.pid.filter(|_| current.up));
        self.set_down_marker(&link, false)?;
        self.svc("-u", &link)?;
        if current.up {
            self.svc("-t", &link)?;
        }
        self.wait_ready(profile, &link, &before, "restart", timeout)
    }

    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        if !self.is_registered(profile) {
            return Err(ServiceError::NotRegistered {
                profile: profile.clone(),
            });
        }
        self.status_of(profile, &self.slot_link(profile))
    }

    fn supports_registration(&self) -> bool {
        true
    }

    fn register(&self, spec: &GatewaySpec, start_now: bool) -> Result<(), ServiceError> {
        self.check_supervisor()?;
        let limit = svscan::read_limit(&self.cfg.scandir);
        let count = self.slot_count()?;
        // Already published (maybe by a concurrent call): done once supervised.
        let Some(real) = self.publish(spec, start_now, count, limit)? else {
            return self.wait_supervised(&spec.profile);
        };
        if let Err(e) = self.svscanctl("-a") {
            let _ = fs::remove_file(self.slot_link(&spec.profile));
            let _ = slot::remove_tree(&real);
            return Err(e);
        }
        self.wait_supervised(&spec.profile)
    }

    fn unregister(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        let link = self.slot_link(profile);
        let real = self.slot_dir(profile);
        if !self.is_registered(profile) || !is_supervised(&real) {
            // Nothing supervises it: there is no process to stop, only files to remove.
            let _ = fs::remove_file(&link);
            slot::remove_tree(&real)?;
            return Ok(());
        }
        self.check_supervisor()?;
        self.set_down_marker(&link, true)?;
        self.svc("-d", &link)?;
        self.wait_down(profile, &link, UNREGISTER_WAIT)?;
        fs::remove_file(&link).map_err(|e| FsError::new("remove", &link, e))?;
        self.svscanctl("-an")?;
        let deadline = Instant::now() + UNREGISTER_WAIT;
        let gone = wait_until(deadline, || {
            !is_supervised(&real) && !is_supervised(&real.join("log"))
        });
        if !gone {
            return Err(ServiceError::Timeout {
                action: "unregistration",
                profile: profile.clone(),
                waited: UNREGISTER_WAIT,
            });
        }
        slot::remove_tree(&real)?;
        Ok(())
    }

    /// One `s6-svwait -U -a` over every slot: it reads each status file
    /// first, so slots that are all up and ready answer at once, for one
    /// spawn (and its `s6-ftrigrd`) instead of one `s6-svstat` per slot.
    /// Anything else (one slot down, a slot missing or unsupervised, a wait
    /// that times out) is `None`: the caller asks slot by slot.
    fn all_up_and_ready(&self, profiles: &[ProfileName]) -> Option<bool> {
        if profiles.is_empty() {
            return Some(true);
        }
        // Each slot's status file, read as s6-svwait -U reads it (up: a pid
        // and no finish script; ready: the flag), without its two processes
        // and fifo subscriptions; s6-svwait only for a layout we do not know.
        let now = SystemTime::now();
        let mut all = true;
        for p in profiles {
            match svstat::read_direct(&self.slot_link(p), now) {
                svstat::Direct::Read(Some(s)) if s.ready_now() => {}
                svstat::Direct::Read(_) => return None,
                svstat::Direct::Unknown => all = false,
            }
        }
        if all {
            return Some(true);
        }
        let mut args: Vec<std::ffi::OsString> =
            vec!["-U".into(), "-a".into(), "-t".into(), QUICK_WAIT_MS.into()];
        args.extend(profiles.iter().map(|p| self.slot_link(p).into_os_string()));
        match cmd::run("s6-svwait", &args) {
            Ok(ran) if ran.code() == Some(0) => Some(true),
            _ => None,
        }
    }

    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        let dir = &self.cfg.scandir;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FsError::new("list", dir, e).into()),
        };
        let mut names: Vec<ProfileName> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| ProfileName::from_service_name(&e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        Ok(names)
    }
}
