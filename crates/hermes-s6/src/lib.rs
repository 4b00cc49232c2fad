//! The s6 backend of hermes. Slots are service directories in the scandir,
//! built under a dot name (s6-svscan ignores dot names) and renamed into
//! place; one is removed by renaming it back out under a dot name and
//! deleting it once no `s6-supervise` runs in it, so a directory is never
//! yanked from under a live supervisor.
//!
//! Lifecycle goes through s6 only (`s6-svc`'s commands, written to each
//! slot's control FIFO, and its `supervise/status`); supervised processes
//! are never signalled directly (but for an s6-log whose supervisor was
//! killed: see `logger`).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cmd;
pub mod finish;
pub mod finish_aside;
mod lifecycle;
pub mod logger;
mod registration;
pub mod run_script;
pub mod scandir;
pub mod slot;
pub mod static_slot;
pub mod supervise;
pub mod svscan;
pub mod svstat;
pub mod teardown;

pub use hermes_core::fifo::fifo_has_reader;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hermes_core::fsutil;
use hermes_core::lifecycle::Action;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError, ServiceManager, SlotStatus};
use hermes_core::state::{self, GatewayState};
use hermes_core::{HermesHome, ProfileName};

pub use registration::Refreshed;
pub use scandir::Scandir;
/// How long s6-supervise waits after SIGTERM before SIGKILL.
pub const TIMEOUT_KILL_MS: u32 = 5_000;
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// The shortest pause between two looks at what s6 is doing.
pub(crate) const FAST_POLL: Duration = Duration::from_micros(500);
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

pub(crate) fn wait_until(deadline: Instant, done: impl FnMut() -> bool) -> bool {
    hermes_core::wait::until(deadline, POLL, done)
}

impl S6Manager {
    pub fn new(cfg: S6Config) -> Self {
        S6Manager { cfg }
    }

    pub fn scandir(&self) -> &Path {
        &self.cfg.scandir
    }

    /// The service directory of a profile's slot.
    pub fn slot_dir(&self, profile: &ProfileName) -> PathBuf {
        self.layout().slot(&profile.service_name())
    }

    pub(crate) fn layout(&self) -> Scandir {
        Scandir::new(&self.cfg.scandir)
    }

    pub fn spec(&self, profile: &ProfileName) -> GatewaySpec {
        GatewaySpec::for_profile(&self.cfg.home, profile, &self.cfg.program)
    }

    /// A supervisor listens on the scandir, and it is ours to talk to.
    pub fn check_supervisor(&self) -> Result<(), ServiceError> {
        let control = self.layout().control();
        let meta = match fsutil::metadata(&control) {
            Ok(meta) => meta,
            Err(e) if e.is_not_found() => {
                return Err(ServiceError::NoSupervisor {
                    scandir: self.cfg.scandir.clone(),
                })
            }
            Err(e) => return Err(e.into()),
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

    /// The profile's slot directory, or why there is none to act on.
    pub(crate) fn registered_slot(&self, profile: &ProfileName) -> Result<PathBuf, ServiceError> {
        if !self.is_registered(profile) {
            return Err(ServiceError::NotRegistered {
                profile: profile.clone(),
            });
        }
        Ok(self.slot_dir(profile))
    }

    /// Write s6's one-byte commands to a control FIFO, as `s6-svc`
    /// (`supervise/control`) and `s6-svscanctl` (`.s6-svscan/control`) do:
    /// the same bytes from s6 2.11 to 2.13, and no process spawned for them.
    pub(crate) fn write_control(
        &self,
        control: &Path,
        commands: &[u8],
    ) -> Result<(), ServiceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(control)
            .and_then(|mut fifo| fifo.write_all(commands));
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Err(ServiceError::NoSupervisor {
                scandir: self.cfg.scandir.clone(),
            }),
            Err(e) => Err(fsutil::FsError::new("write to", control, e).into()),
        }
    }

    /// Send `s6-svc`'s one-byte commands straight to the slot's control
    /// FIFO, without a process per slot.
    pub(crate) fn svc(&self, slot: &Path, commands: &[u8]) -> Result<(), ServiceError> {
        self.write_control(&slot.join("supervise/control"), commands)
    }

    pub(crate) fn status_of(
        &self,
        profile: &ProfileName,
        slot: &Path,
    ) -> Result<SlotStatus, ServiceError> {
        let stat = svstat::read(slot)?;
        Ok(svstat::to_status(
            profile,
            &profile.service_name(),
            stat.as_ref(),
        ))
    }

    pub(crate) fn recorded(&self, profile: &ProfileName) -> Result<GatewayState, ServiceError> {
        Ok(state::load(&self.cfg.home.profile(profile).state())?.state())
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
        self.act(profile, Action::Start, timeout)
    }

    fn stop(&self, profile: &ProfileName, timeout: Duration) -> Result<SlotStatus, ServiceError> {
        self.act(profile, Action::Stop, timeout)
    }

    fn restart(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        self.act(profile, Action::Restart, timeout)
    }

    /// One slot is a batch of one: the same requests, waits and verdicts.
    fn act(
        &self,
        profile: &ProfileName,
        action: Action,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let mut results = self.act_slots(std::slice::from_ref(profile), action, timeout);
        results.pop().expect("one result per profile")
    }

    fn act_many(
        &self,
        profiles: &[ProfileName],
        action: Action,
        timeout: Duration,
    ) -> Vec<Result<SlotStatus, ServiceError>> {
        self.act_slots(profiles, action, timeout)
    }

    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        if !self.is_registered(profile) {
            return Err(ServiceError::NotRegistered {
                profile: profile.clone(),
            });
        }
        self.status_of(profile, &self.slot_dir(profile))
    }

    /// Each slot's `supervise/status`, read here: microseconds a slot.
    fn status_all(
        &self,
        profiles: &[ProfileName],
    ) -> Option<Vec<Result<SlotStatus, ServiceError>>> {
        Some(profiles.iter().map(|p| self.status(p)).collect())
    }

    fn supports_registration(&self) -> bool {
        true
    }

    fn register(&self, spec: &GatewaySpec, start_now: bool) -> Result<(), ServiceError> {
        self.register_slot(spec, start_now)
    }

    fn register_many(
        &self,
        slots: &[(GatewaySpec, bool)],
    ) -> Result<Vec<Result<(), ServiceError>>, ServiceError> {
        self.register_batch(slots)
    }

    fn unregister(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.unregister_slot(profile)
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
            match svstat::read_direct(&self.slot_dir(p), now) {
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
        args.extend(profiles.iter().map(|p| self.slot_dir(p).into_os_string()));
        match cmd::run("s6-svwait", &args) {
            Ok(ran) if ran.code() == Some(0) => Some(true),
            _ => None,
        }
    }

    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        let dir = &self.cfg.scandir;
        let entries = match fsutil::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut names: Vec<ProfileName> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| ProfileName::from_service_name(&e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        Ok(names)
    }
}
