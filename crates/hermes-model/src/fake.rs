//! An in-memory service manager over a temp `HERMES_HOME`, for the tests of
//! the model, the dashboard and the TUI (feature `fake`). Slots behave like a
//! well-mannered supervisor: start makes them up and ready, stop makes them down.
#![allow(clippy::disallowed_methods)] // test support, not library code

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hermes_core::config::Config;
use hermes_core::profile;
use hermes_core::service::{
    GatewaySpec, ManagerKind, ServiceError, ServiceManager, ServiceStatus, SlotStatus, Want,
};
use hermes_core::{HermesHome, ProfileName};

use crate::env::{DashboardSettings, Environment, MainProgramView, ManagerChoice, SupervisorView};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub up: bool,
    pub want: Want,
    pub pid: Option<u32>,
    pub supervised: bool,
}

impl Slot {
    pub fn up(pid: u32) -> Slot {
        Slot {
            up: true,
            want: Want::Up,
            pid: Some(pid),
            supervised: true,
        }
    }

    pub fn down(want: Want) -> Slot {
        Slot {
            up: false,
            want,
            pid: None,
            supervised: true,
        }
    }
}

type Slots = Arc<Mutex<BTreeMap<ProfileName, Slot>>>;

/// The fake manager: every call is recorded as `"<verb> <profile>"`.
#[derive(Clone, Default)]
pub struct FakeManager {
    slots: Slots,
    calls: Arc<Mutex<Vec<String>>>,
    status_calls: Arc<AtomicUsize>,
    /// Answer no `status_all`, like a host manager (a process per slot).
    slot_by_slot: Arc<AtomicBool>,
    /// Run before each status is answered (a slow manager, a test's probe).
    before_status: Arc<Mutex<Option<StatusHook>>>,
}

type StatusHook = Box<dyn Fn() + Send + Sync>;

impl FakeManager {
    /// How many times one slot's status was asked for.
    pub fn status_calls(&self) -> usize {
        self.status_calls.load(Ordering::Relaxed)
    }

    /// From now on, let callers ask each slot's status on its own.
    pub fn answer_slot_by_slot(&self) {
        self.slot_by_slot.store(true, Ordering::Relaxed);
    }

    /// From now on, run `hook` before answering each slot's status.
    pub fn before_status(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.before_status.lock().unwrap() = Some(Box::new(hook));
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn slot_status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        let slots = self.slots.lock().unwrap();
        let slot = slots
            .get(profile)
            .ok_or_else(|| ServiceError::NotRegistered {
                profile: profile.clone(),
            })?;
        Ok(SlotStatus {
            profile: profile.clone(),
            service: ServiceStatus {
                name: profile.service_name(),
                supervised: slot.supervised,
                up: slot.up,
                ready: slot.up,
                want: slot.want,
                pid: slot.pid,
                for_secs: Some(3),
                exit_code: (!slot.up).then_some(0),
            },
            signal: None,
        })
    }

    fn set(&self, profile: &ProfileName, up: bool) -> Result<SlotStatus, ServiceError> {
        {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots
                .get_mut(profile)
                .ok_or_else(|| ServiceError::NotRegistered {
                    profile: profile.clone(),
                })?;
            slot.up = up;
            slot.want = if up { Want::Up } else { Want::Down };
            slot.pid = up.then_some(1000 + profile.as_str().len() as u32);
        }
        self.slot_status(profile)
    }
}

impl ServiceManager for FakeManager {
    fn kind(&self) -> ManagerKind {
        ManagerKind::S6
    }
    fn install(&self, spec: &GatewaySpec) -> Result<(), ServiceError> {
        self.register(spec, true)
    }
    fn uninstall(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.unregister(profile)
    }
    fn start(&self, profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        self.record(format!("start {profile}"));
        self.set(profile, true)
    }
    fn stop(&self, profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        self.record(format!("stop {profile}"));
        self.set(profile, false)
    }
    fn restart(&self, profile: &ProfileName, _t: Duration) -> Result<SlotStatus, ServiceError> {
        self.record(format!("restart {profile}"));
        self.set(profile, true)
    }
    fn status(&self, profile: &ProfileName) -> Result<SlotStatus, ServiceError> {
        self.status_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.before_status.lock().unwrap().as_ref() {
            hook();
        }
        self.slot_status(profile)
    }
    fn status_all(
        &self,
        profiles: &[ProfileName],
    ) -> Option<Vec<Result<SlotStatus, ServiceError>>> {
        if self.slot_by_slot.load(Ordering::Relaxed) {
            return None;
        }
        Some(profiles.iter().map(|p| self.status(p)).collect())
    }
    fn all_up_and_ready(&self, profiles: &[ProfileName]) -> Option<bool> {
        let slots = self.slots.lock().unwrap();
        profiles
            .iter()
            .all(|p| slots.get(p).is_some_and(|s| s.up && s.supervised))
            .then_some(true)
    }
    fn supports_registration(&self) -> bool {
        true
    }
    fn register(&self, spec: &GatewaySpec, start_now: bool) -> Result<(), ServiceError> {
        self.record(format!("register {}", spec.profile));
        let slot = if start_now {
            Slot::up(1)
        } else {
            Slot::down(Want::Down)
        };
        self.slots
            .lock()
            .unwrap()
            .insert(spec.profile.clone(), slot);
        Ok(())
    }
    fn unregister(&self, profile: &ProfileName) -> Result<(), ServiceError> {
        self.record(format!("unregister {profile}"));
        self.slots.lock().unwrap().remove(profile);
        Ok(())
    }
    fn list(&self) -> Result<Vec<ProfileName>, ServiceError> {
        Ok(self.slots.lock().unwrap().keys().cloned().collect())
    }
}

/// A temp `HERMES_HOME` with a [`FakeManager`].
pub struct FakeEnv {
    dir: tempfile::TempDir,
    home: HermesHome,
    manager: FakeManager,
    pub dashboard: DashboardSettings,
    pub ingress: hermes_core::ingress::Settings,
    /// What the supervisor says of the ingress slot.
    pub ingress_service: Option<ServiceStatus>,
}

impl Default for FakeEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEnv {
    pub fn new() -> FakeEnv {
        let dir = tempfile::tempdir().expect("create a temp HERMES_HOME");
        let home = HermesHome::new(dir.path().join("home"));
        profile::ensure_root(&home).expect("write the root profile");
        // Point the root profile at a closed port so no stray service answers.
        Config::new(closed_port())
            .save(&home.profile(&ProfileName::default_profile()).config())
            .expect("write the root config");
        FakeEnv {
            dir,
            home,
            manager: FakeManager::default(),
            dashboard: DashboardSettings {
                enabled: false,
                host: hermes_core::dashboard::DEFAULT_HOST.into(),
                port: hermes_core::dashboard::DEFAULT_PORT,
                token_set: false,
                token_len: 0,
            },
            ingress: hermes_core::ingress::Settings::from_vars(|_| None),
            ingress_service: None,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn manager(&self) -> &FakeManager {
        &self.manager
    }

    pub fn calls(&self) -> Vec<String> {
        self.manager.calls.lock().unwrap().clone()
    }

    /// Create a profile on a closed port (nothing answers its `/health`).
    pub fn add_profile(&self, name: &str) -> ProfileName {
        let name = ProfileName::parse(name).unwrap();
        // The OS may hand the same free port out twice: pick again on a clash.
        for _ in 0..20 {
            match profile::lock(&self.home)
                .and_then(|held| profile::create(&self.home, &held, &name, Some(closed_port())))
            {
                Ok(_) => return name,
                Err(profile::ProfileError::PortTaken { .. }) => continue,
                Err(e) => panic!("create profile {name}: {e}"),
            }
        }
        panic!("no free port for profile {name} after 20 tries");
    }

    pub fn set_slot(&self, name: &str, slot: Slot) {
        let name = ProfileName::parse(name).unwrap();
        self.manager.slots.lock().unwrap().insert(name, slot);
    }

    pub fn slot(&self, name: &str) -> Option<Slot> {
        let name = ProfileName::parse(name).unwrap();
        self.manager.slots.lock().unwrap().get(&name).cloned()
    }

    pub fn write_state(&self, name: &str, json: &str) {
        let paths = self.home.profile(&ProfileName::parse(name).unwrap());
        std::fs::write(paths.state(), json).expect("write gateway_state.json");
    }

    pub fn write_log(&self, name: &str, text: &str) -> PathBuf {
        let dir = self
            .home
            .gateway_log_dir(&ProfileName::parse(name).unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("current");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("append to the log");
        path
    }

    /// Answer `GET /health` with 200 as `name` on a fresh port, like its
    /// gateway would, and point the profile at it. Like a gateway in its
    /// slot, it answers only while the fake slot is up (or there is none):
    /// a connection to a down one is closed unanswered.
    pub fn serve_health(&self, name: &str) -> u16 {
        self.serve_health_as(name, name)
    }

    /// Point profile `name` at a fresh port whose `/health` answers as
    /// `answer_as`, whose gateway it is: while `answer_as`'s fake slot is up
    /// (or there is none).
    pub fn serve_health_as(&self, name: &str, answer_as: &str) -> u16 {
        let slots = self.manager.slots.clone();
        let profile = ProfileName::parse(answer_as).unwrap();
        self.serve(name, answer_as, move || {
            slots.lock().unwrap().get(&profile).is_none_or(|s| s.up)
        })
    }

    /// A gateway outside its slot (left by a killed supervisor, or run by
    /// hand): `/health` answers as `name` whatever the slot says.
    pub fn serve_stray_health(&self, name: &str) -> u16 {
        self.serve(name, name, || true)
    }

    fn serve(
        &self,
        name: &str,
        answer_as: &str,
        answering: impl Fn() -> bool + Send + 'static,
    ) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = format!(r#"{{"status":"ok","profile":"{answer_as}"}}"#);
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                if !answering() {
                    continue;
                }
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes());
            }
        });
        let paths = self.home.profile(&ProfileName::parse(name).unwrap());
        Config::new(port).save(&paths.config()).unwrap();
        port
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

impl Environment for FakeEnv {
    fn home(&self) -> &HermesHome {
        &self.home
    }
    fn manager(&self) -> Box<dyn ServiceManager> {
        Box::new(self.manager.clone())
    }
    fn manager_choice(&self) -> ManagerChoice {
        ManagerChoice {
            kind: ManagerKind::S6,
            reason: "fake manager for tests".into(),
        }
    }
    fn supervisor(&self) -> SupervisorView {
        SupervisorView {
            name: "fake".into(),
            scandir: None,
            reachable: true,
            detail: None,
        }
    }
    fn dashboard_service(&self) -> Option<ServiceStatus> {
        None
    }
    fn dashboard_settings(&self) -> DashboardSettings {
        self.dashboard.clone()
    }
    fn ingress_service(&self) -> Option<ServiceStatus> {
        self.ingress_service.clone()
    }
    fn ingress_settings(&self) -> hermes_core::ingress::Settings {
        self.ingress.clone()
    }
    fn main_program(&self) -> MainProgramView {
        MainProgramView::not_applicable()
    }
    fn program(&self) -> &Path {
        Path::new("/usr/bin/hermes")
    }
    fn alias_dir(&self) -> Option<&Path> {
        None
    }
}
