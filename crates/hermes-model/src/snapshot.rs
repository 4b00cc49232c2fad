//! One snapshot of everything supervised: the document `hermes status --json`
//! prints, `GET /api/status` serves and the TUI draws. The label and tone of
//! each gateway are decided here, once, so every front end agrees.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hermes_core::config::{Config, Scheme};
use hermes_core::deliveries::{self, LastDelivery};
use hermes_core::name::HookName;
use hermes_core::profile;
use hermes_core::service::{ServiceError, ServiceManager, ServiceStatus, SlotStatus, Want};
use hermes_core::state::{self, GatewayState, LastExit};
use hermes_core::ProfileName;
use serde::Serialize;

use crate::env::SupervisorView;
use crate::env::{DashboardSettings, Environment, MainProgramView, ManagerChoice};
use crate::health::{self, Health, HealthState};

/// Bumped when a field changes meaning or disappears (adding fields does not).
pub const SCHEMA_VERSION: u32 = 1;
/// Status calls and probes in flight at once; bounds threads for 1000 profiles.
const WORKERS: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub version: u32,
    /// Milliseconds since the Unix epoch.
    pub taken_at: u64,
    pub home: String,
    pub manager: ManagerChoice,
    pub supervisor: SupervisorView,
    pub main: MainProgramView,
    pub dashboard: DashboardView,
    pub ingress: IngressView,
    pub gateways: Vec<Gateway>,
    pub summary: Summary,
    /// Problems met while collecting (an unreadable profiles dir, a failed list).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardView {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub token_set: bool,
    /// The supervisor's view of the dashboard slot, where there is one.
    pub service: Option<ServiceStatus>,
    pub label: &'static str,
    pub tone: Tone,
}

/// The webhook ingress: one port from outside to every gateway.
#[derive(Debug, Clone, Serialize)]
pub struct IngressView {
    pub enabled: bool,
    pub host: String,
    /// `None`: `HERMES_INGRESS_PORT` is set but not a port.
    pub port: Option<u16>,
    /// `HERMES_PUBLIC_URL`, where the outside reaches it.
    pub public_url: Option<String>,
    pub service: Option<ServiceStatus>,
    pub label: &'static str,
    pub tone: Tone,
}

/// How a front end should colour a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Good,
    Busy,
    Idle,
    Bad,
}

/// One word for a gateway's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayLabel {
    /// Up, ready, and `/health` answers 200 (or was not probed).
    Up,
    /// Up but not ready yet.
    Starting,
    /// Up and ready, but `/health` does not answer 200 as this profile.
    Unhealthy,
    /// Down because it was asked to be.
    Stopped,
    /// The slot is down, yet a gateway answers `/health` on the profile's
    /// port as this profile: one outside the slot (left by a killed
    /// s6-supervise, or run by hand), which nothing restarts.
    Stray,
    /// Down while wanted up: the supervisor is restarting it.
    Crashing,
    /// Permanently down (`startup_failed`, or fatal configuration).
    Failed,
    /// A slot exists but no supervisor watches it.
    Unsupervised,
    /// A profile whose gateway has no slot yet.
    NoSlot,
    /// The manager could not say.
    Unknown,
}

impl GatewayLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayLabel::Up => "up",
            GatewayLabel::Starting => "starting",
            GatewayLabel::Unhealthy => "unhealthy",
            GatewayLabel::Stopped => "stopped",
            GatewayLabel::Stray => "stray",
            GatewayLabel::Crashing => "crashing",
            GatewayLabel::Failed => "failed",
            GatewayLabel::Unsupervised => "unsupervised",
            GatewayLabel::NoSlot => "no_slot",
            GatewayLabel::Unknown => "unknown",
        }
    }

    pub fn tone(self) -> Tone {
        match self {
            GatewayLabel::Up => Tone::Good,
            GatewayLabel::Starting | GatewayLabel::Crashing => Tone::Busy,
            GatewayLabel::Stopped | GatewayLabel::NoSlot => Tone::Idle,
            GatewayLabel::Unhealthy
            | GatewayLabel::Stray
            | GatewayLabel::Failed
            | GatewayLabel::Unsupervised
            | GatewayLabel::Unknown => Tone::Bad,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    pub profile: ProfileName,
    pub service: String,
    /// The profile directory exists (false: a slot left without its profile).
    pub profile_exists: bool,
    /// The manager has a slot (unit, plist, task) for this gateway.
    pub slot: bool,
    pub supervised: bool,
    pub up: bool,
    pub ready: bool,
    pub want: Option<Want>,
    pub pid: Option<u32>,
    /// Seconds up, while up.
    pub uptime_secs: Option<u64>,
    /// Seconds down, while down.
    pub down_secs: Option<u64>,
    pub restarts: u32,
    /// Consecutive failures within 10 s of starting (the crash-loop count).
    pub short_failures: u32,
    pub gateway_state: Option<String>,
    pub desired_state: Option<String>,
    pub exit_reason: Option<String>,
    pub last_exit: Option<LastExit>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub config_error: Option<String>,
    pub health: Health,
    /// Why the manager could not report this slot.
    pub status_error: Option<String>,
    pub label: GatewayLabel,
    pub tone: Tone,
    /// Configured hooks and hooks that received a delivery, by name.
    pub hooks: Vec<HookView>,
    /// The hooks in one line (`gh github: 202 accepted 5m ago; …`), or `-`.
    pub hooks_summary: String,
    /// The health column's text ([`crate::format::health`]): what every front end shows.
    pub health_text: String,
    /// How it last ended and why, each reason once ([`crate::format::last_exit`]).
    pub reason: String,
}

/// One webhook hook: how it is verified and how its last delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookView {
    pub hook: String,
    pub scheme: Scheme,
    pub secret: SecretSource,
    pub last_delivery: Option<LastDelivery>,
}

/// Which secret a hook is verified with (never its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// Its own, set with `hermes webhook secret HOOK --set`.
    Own,
    /// The profile's `HERMES_WEBHOOK_SECRET`.
    Profile,
    /// None: its scheme needs the one the sender issued.
    Missing,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub gateways: usize,
    pub up: usize,
    pub healthy: usize,
    pub stopped: usize,
    pub failing: usize,
    pub without_slot: usize,
}

/// Everything known about one gateway before the live parts are added.
pub(crate) struct Facts {
    pub(crate) profile: ProfileName,
    profile_exists: bool,
    state: GatewayState,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    config_error: Option<String>,
    hooks: Vec<HookView>,
}

/// The profiles whose `desired_state` is `running` (the gateways `hermes
/// health` answers for), from the files alone; `Err` when they cannot be listed.
pub(crate) fn wanted_running(env: &dyn Environment) -> Result<Vec<Facts>, String> {
    let profiles = profile::list(env.home()).map_err(|e| e.to_string())?;
    Ok(profiles
        .iter()
        .map(|name| facts_without_hooks(env, name))
        .filter(|f| f.state.desired_state.map(|d| d.as_str()) == Some("running"))
        .collect())
}

impl Snapshot {
    pub fn collect(env: &dyn Environment) -> Snapshot {
        Self::collect_with(env, health::DEFAULT_TIMEOUT)
    }

    pub fn collect_with(env: &dyn Environment, health_timeout: Duration) -> Snapshot {
        let home = env.home();
        let manager = env.manager();
        let mut errors = Vec::new();
        let profiles = match profile::list(home) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("unable to list profiles: {e}"));
                vec![ProfileName::default_profile()]
            }
        };
        let registered: Option<BTreeSet<ProfileName>> = if manager.supports_registration() {
            match manager.list() {
                Ok(slots) => Some(slots.into_iter().collect()),
                Err(e) => {
                    errors.push(format!("unable to list gateway slots: {e}"));
                    Some(BTreeSet::new())
                }
            }
        } else {
            None
        };
        let mut names: BTreeSet<ProfileName> = profiles.iter().cloned().collect();
        names.extend(registered.iter().flatten().cloned());
        // The root profile first, like `profile list`; then by name.
        let (root, named): (Vec<_>, Vec<_>) = names.into_iter().partition(|n| n.is_default());
        let names: Vec<(ProfileName, bool)> = root
            .into_iter()
            .chain(named)
            .map(|name| {
                let exists = profiles.contains(&name);
                (name, exists)
            })
            .collect();

        // The probes wait on every gateway process; what this process reads
        // meanwhile (slot statuses, state files, hooks) costs no wall time.
        // Only the configs (where each gateway listens) come first.
        let (statuses, facts, healths) = std::thread::scope(|scope| {
            let (configs_tx, configs_rx) = std::sync::mpsc::channel();
            let names = &names;
            let probes = scope.spawn(move || {
                let confs: Vec<Conf> = names
                    .iter()
                    .map(|(name, exists)| conf(env, name, *exists))
                    .collect();
                let targets: Vec<_> = names
                    .iter()
                    .zip(&confs)
                    .map(|((n, _), c)| c.target(n))
                    .collect();
                let _ = configs_tx.send(confs);
                probe_all(&targets, health_timeout)
            });
            let statuses = slot_statuses(env, manager.as_ref(), names, registered.as_ref());
            let confs: Vec<Conf> = configs_rx.recv().unwrap_or_default();
            let facts: Vec<Facts> = names
                .iter()
                .zip(confs)
                .map(|((name, exists), c)| facts_from(env, name, *exists, c, true))
                .collect();
            let healths = probes
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (statuses, facts, healths)
        });
        let gateways: Vec<Gateway> = facts
            .iter()
            .zip(statuses)
            .zip(healths)
            .map(|((f, status), health)| gateway(f, status, health))
            .collect();

        let settings = env.dashboard_settings();
        let dashboard = dashboard_view(settings, env.dashboard_service());
        let ingress = ingress_view(env.ingress_settings(), env.ingress_service());
        let summary = summarise(&gateways);
        let mut main = env.main_program();
        main.text = crate::format::main_program(&main);
        Snapshot {
            version: SCHEMA_VERSION,
            taken_at: state::now_ms(),
            home: home.root().display().to_string(),
            manager: env.manager_choice(),
            supervisor: env.supervisor(),
            main,
            dashboard,
            ingress,
            gateways,
            summary,
            errors,
        }
    }

    pub fn gateway(&self, profile: &ProfileName) -> Option<&Gateway> {
        self.gateways.iter().find(|g| &g.profile == profile)
    }
}

impl Gateway {
    /// One gateway as a snapshot would show it, without collecting the rest
    /// (`gateway status` of one profile stays a few milliseconds).
    pub fn collect(env: &dyn Environment, name: &ProfileName, health_timeout: Duration) -> Gateway {
        let exists = name.is_default() || env.home().profile(name).marker().is_file();
        let f = facts(env, name, exists);
        let status = slot_status(env.manager().status(name));
        gateway(&f, status, probe(&f, health_timeout))
    }
}

/// The manager's view of every gateway's slot, in the order of `names`:
/// all at once where the manager reads them cheaply, else one call each
/// on [`WORKERS`] threads. A profile `registered` does not hold has none.
fn slot_statuses(
    env: &dyn Environment,
    manager: &dyn ServiceManager,
    names: &[(ProfileName, bool)],
    registered: Option<&BTreeSet<ProfileName>>,
) -> Vec<Result<Option<SlotStatus>, String>> {
    // Without registration support every profile may have a unit: ask.
    let has_slot = |p: &ProfileName| registered.is_none_or(|r| r.contains(p));
    let asked: Vec<ProfileName> = names
        .iter()
        .map(|(name, _)| name)
        .filter(|p| has_slot(p))
        .cloned()
        .collect();
    let mut answers = match manager.status_all(&asked) {
        Some(all) => all.into_iter().map(slot_status).collect(),
        // One manager per worker: a manager is cheap but not free to make
        // (host detection), and not shareable between threads.
        None => parallel_map(&asked, || env.manager(), |m, p| slot_status(m.status(p))),
    }
    .into_iter();
    names
        .iter()
        .map(|(name, _)| {
            if has_slot(name) {
                answers.next().unwrap_or(Ok(None))
            } else {
                Ok(None)
            }
        })
        .collect()
}

/// The manager's view of one slot; `None` when it has none (no unit, or a
/// manager that has none at all, like `none`).
fn slot_status(status: Result<SlotStatus, ServiceError>) -> Result<Option<SlotStatus>, String> {
    match status {
        Ok(s) => Ok(Some(s)),
        Err(ServiceError::NotRegistered { .. })
        | Err(ServiceError::ServiceNotInstalled { .. })
        | Err(ServiceError::Unsupported { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Where one gateway is probed: its profile, host and port, when known.
type Target<'a> = (&'a ProfileName, Option<String>, Option<u16>);

/// Every gateway's `/health` with a known port, probed at once from this
/// thread; [`Health::unknown`] for the others.
fn probe_all(targets: &[Target<'_>], timeout: Duration) -> Vec<Health> {
    let known: Vec<_> = targets
        .iter()
        .filter_map(|(profile, host, port)| {
            Some((
                host.as_deref().unwrap_or("127.0.0.1"),
                (*port)?,
                health::Expect::Gateway(profile.as_str()),
            ))
        })
        .collect();
    let mut answers = health::probe_all(&known, timeout).into_iter();
    targets
        .iter()
        .map(|(_, _, port)| match port {
            Some(_) => answers.next().unwrap_or_else(Health::unknown),
            None => Health::unknown(),
        })
        .collect()
}

pub(crate) fn probe(f: &Facts, timeout: Duration) -> Health {
    match f.port {
        Some(port) => health::probe(
            f.host.as_deref().unwrap_or("127.0.0.1"),
            port,
            f.profile.as_str(),
            timeout,
        ),
        None => Health::unknown(),
    }
}

fn facts(env: &dyn Environment, name: &ProfileName, exists: bool) -> Facts {
    facts_of(env, name, exists, true)
}

/// The facts `hermes health` needs: no hooks (their delivery records and
/// secrets are files it need not read).
fn facts_without_hooks(env: &dyn Environment, name: &ProfileName) -> Facts {
    facts_of(env, name, true, false)
}

/// A profile's `config.yaml`, as far as it could be read.
#[derive(Default)]
enum Conf {
    /// No profile directory: nothing to read.
    #[default]
    Missing,
    Loaded(Box<Config>),
    /// Unreadable or invalid; the port, if it can still be made out.
    Broken {
        port: Option<u16>,
        error: String,
    },
}

impl Conf {
    fn host(&self) -> Option<&str> {
        match self {
            Conf::Loaded(c) => Some(&c.gateway.host),
            _ => None,
        }
    }

    fn port(&self) -> Option<u16> {
        match self {
            Conf::Loaded(c) => Some(c.gateway.port),
            Conf::Broken { port, .. } => *port,
            Conf::Missing => None,
        }
    }

    fn target<'a>(&self, profile: &'a ProfileName) -> Target<'a> {
        (profile, self.host().map(str::to_string), self.port())
    }
}

fn conf(env: &dyn Environment, name: &ProfileName, exists: bool) -> Conf {
    if !exists {
        return Conf::Missing;
    }
    let path = env.home().profile(name).config();
    match Config::load(&path) {
        Ok(c) => Conf::Loaded(Box::new(c)),
        Err(e) => Conf::Broken {
            port: Config::read_port(&path),
            error: e.to_string(),
        },
    }
}

fn facts_of(env: &dyn Environment, name: &ProfileName, exists: bool, with_hooks: bool) -> Facts {
    facts_from(env, name, exists, conf(env, name, exists), with_hooks)
}

fn facts_from(
    env: &dyn Environment,
    name: &ProfileName,
    exists: bool,
    conf: Conf,
    with_hooks: bool,
) -> Facts {
    let paths = env.home().profile(name);
    let state = state::load(&paths.state())
        .map(|l| l.state())
        .unwrap_or_default();
    let (host, port, config_error, hooks) = match conf {
        Conf::Missing => (None, None, None, Vec::new()),
        Conf::Loaded(c) => (
            Some(c.gateway.host.clone()),
            Some(c.gateway.port),
            None,
            if with_hooks {
                hooks(&paths, &c)
            } else {
                Vec::new()
            },
        ),
        Conf::Broken { port, error } => (None, port, Some(error), Vec::new()),
    };
    Facts {
        profile: name.clone(),
        profile_exists: exists,
        state,
        host,
        port,
        config_error,
        hooks,
    }
}

/// The configured hooks and those the gateway recorded a delivery for.
fn hooks(paths: &hermes_core::home::ProfilePaths, config: &Config) -> Vec<HookView> {
    let mut last = deliveries::read(paths).hooks;
    let mut names: BTreeSet<String> = config.webhooks.hooks.keys().cloned().collect();
    names.extend(last.keys().cloned());
    names
        .into_iter()
        .map(|hook| {
            let scheme = config.webhooks.scheme(&hook);
            let own = HookName::parse(&hook).is_ok_and(|h| paths.hook_secret(&h).exists());
            let secret = match (own, scheme.takes_our_secret()) {
                (true, _) => SecretSource::Own,
                (false, true) => SecretSource::Profile,
                (false, false) => SecretSource::Missing,
            };
            HookView {
                last_delivery: last.remove(&hook),
                hook,
                scheme,
                secret,
            }
        })
        .collect()
}

fn gateway(f: &Facts, status: Result<Option<SlotStatus>, String>, health: Health) -> Gateway {
    let gateway_state = f.state.gateway_state.map(|s| s.as_str().to_string());
    let (slot, status_error) = match status {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let has_slot = slot.is_some() || status_error.is_some();
    let s = slot.as_ref();
    let up = s.is_some_and(|s| s.service.up);
    let desired_state = f.state.desired_state.map(|s| s.as_str().to_string());
    let label = self::label(
        has_slot,
        s,
        (gateway_state.as_deref(), desired_state.as_deref()),
        &health,
        status_error.is_some(),
    );
    let mut g = Gateway {
        profile: f.profile.clone(),
        service: s.map_or_else(|| f.profile.service_name(), |s| s.service.name.clone()),
        profile_exists: f.profile_exists,
        slot: has_slot,
        supervised: s.is_some_and(|s| s.service.supervised),
        up,
        ready: s.is_some_and(|s| s.service.ready),
        want: s.map(|s| s.service.want),
        pid: s.and_then(|s| s.service.pid),
        uptime_secs: s.filter(|s| s.service.up).and_then(|s| s.service.for_secs),
        down_secs: s.filter(|s| !s.service.up).and_then(|s| s.service.for_secs),
        restarts: f.state.restarts,
        short_failures: f.state.fast_failures,
        gateway_state,
        desired_state,
        exit_reason: f.state.exit_reason.clone(),
        last_exit: f.state.last_exit.clone(),
        host: f.host.clone(),
        port: f.port,
        config_error: f.config_error.clone(),
        health,
        status_error,
        tone: label.tone(),
        label,
        hooks_summary: crate::format::hooks(&f.hooks, state::now_ms()),
        hooks: f.hooks.clone(),
        health_text: String::new(),
        reason: String::new(),
    };
    g.health_text = crate::format::health(&g);
    g.reason = crate::format::last_exit(&g);
    g
}

fn label(
    has_slot: bool,
    s: Option<&SlotStatus>,
    (gateway_state, desired_state): (Option<&str>, Option<&str>),
    health: &Health,
    status_failed: bool,
) -> GatewayLabel {
    if status_failed {
        return GatewayLabel::Unknown;
    }
    let Some(s) = s.filter(|_| has_slot) else {
        return GatewayLabel::NoSlot;
    };
    if !s.service.supervised {
        return GatewayLabel::Unsupervised;
    }
    if s.service.up {
        return if !s.service.ready {
            GatewayLabel::Starting
        } else if health.state == HealthState::Ok || health.state == HealthState::Unknown {
            GatewayLabel::Up
        } else {
            GatewayLabel::Unhealthy
        };
    }
    if health.state == HealthState::Ok {
        return GatewayLabel::Stray;
    }
    if gateway_state == Some("startup_failed") {
        return GatewayLabel::Failed;
    }
    match s.service.want {
        Want::Up => GatewayLabel::Crashing,
        // Down for good although the operator wants it running: the finish
        // policy parked it (an exit nobody asked for).
        Want::Down if desired_state == Some("running") => GatewayLabel::Failed,
        Want::Down => GatewayLabel::Stopped,
    }
}

/// One word for a static slot (dashboard, ingress), asked for or not.
fn static_slot_label(enabled: bool, service: Option<&ServiceStatus>) -> (&'static str, Tone) {
    match service {
        None if enabled => ("not supervised", Tone::Bad),
        None => ("disabled", Tone::Idle),
        Some(s) if !s.supervised => ("unsupervised", Tone::Bad),
        Some(s) if s.up => ("up", Tone::Good),
        Some(s) if s.want == Want::Up => ("crashing", Tone::Busy),
        Some(_) if enabled => ("down", Tone::Bad),
        Some(_) => ("disabled", Tone::Idle),
    }
}

pub(crate) fn ingress_view(
    settings: hermes_core::ingress::Settings,
    service: Option<ServiceStatus>,
) -> IngressView {
    let (label, tone) = static_slot_label(settings.enabled, service.as_ref());
    IngressView {
        enabled: settings.enabled,
        host: settings.host,
        port: settings.port,
        public_url: settings.public_url,
        service,
        label,
        tone,
    }
}

pub(crate) fn dashboard_view(
    settings: DashboardSettings,
    service: Option<ServiceStatus>,
) -> DashboardView {
    let (label, tone) = static_slot_label(settings.enabled, service.as_ref());
    DashboardView {
        enabled: settings.enabled,
        host: settings.host,
        port: settings.port,
        token_set: settings.token_set,
        service,
        label,
        tone,
    }
}

fn summarise(gateways: &[Gateway]) -> Summary {
    let mut s = Summary {
        gateways: gateways.len(),
        ..Summary::default()
    };
    for g in gateways {
        match g.label {
            GatewayLabel::Up => {
                s.up += 1;
                s.healthy += usize::from(g.health.state == HealthState::Ok);
            }
            GatewayLabel::Starting | GatewayLabel::Unhealthy => s.up += 1,
            GatewayLabel::Stopped => s.stopped += 1,
            GatewayLabel::NoSlot => s.without_slot += 1,
            GatewayLabel::Crashing
            | GatewayLabel::Stray
            | GatewayLabel::Failed
            | GatewayLabel::Unsupervised
            | GatewayLabel::Unknown => s.failing += 1,
        }
        if g.label == GatewayLabel::Unhealthy {
            s.failing += 1;
        }
    }
    s
}

/// `f` over `items` on up to [`WORKERS`] threads, each with its own state
/// from `init`; results in input order.
pub(crate) fn parallel_map<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..items.len().min(WORKERS) {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(&mut state, item);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Environment;
    use crate::fake::{FakeEnv, Slot};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn every_profile_and_slot_appears_with_its_label() {
        let env = FakeEnv::new();
        env.add_profile("up1");
        env.add_profile("down1");
        env.add_profile("noslot");
        env.add_profile("broken");
        env.set_slot("up1", Slot::up(4242));
        env.set_slot("down1", Slot::down(Want::Down));
        env.set_slot("broken", Slot::down(Want::Down));
        env.set_slot("orphan", Slot::down(Want::Up));
        env.add_profile("parked");
        env.set_slot("parked", Slot::down(Want::Down));
        env.write_state("parked", r#"{"desired_state":"running","gateway_state":"stopped","exit_reason":"exited 0 unasked"}"#);
        env.write_state(
            "broken",
            r#"{"gateway_state":"startup_failed","exit_reason":"port 1 in use","restarts":5}"#,
        );
        let snap = Snapshot::collect_with(&env, Duration::from_millis(100));
        let by = |n: &str| {
            snap.gateway(&ProfileName::parse(n).unwrap())
                .unwrap()
                .clone()
        };
        assert_eq!(by("default").label, GatewayLabel::NoSlot);
        // Nothing listens on its port, so a ready slot is up but unhealthy.
        assert_eq!(by("up1").label, GatewayLabel::Unhealthy);
        assert_eq!(by("up1").pid, Some(4242));
        assert_eq!(by("down1").label, GatewayLabel::Stopped);
        assert_eq!(by("noslot").label, GatewayLabel::NoSlot);
        let broken = by("broken");
        assert_eq!(broken.label, GatewayLabel::Failed);
        assert_eq!(broken.restarts, 5);
        assert_eq!(broken.exit_reason.as_deref(), Some("port 1 in use"));
        assert_eq!(by("parked").label, GatewayLabel::Failed);
        let orphan = by("orphan");
        assert!(!orphan.profile_exists);
        assert_eq!(orphan.label, GatewayLabel::Crashing);
        assert_eq!(snap.summary.gateways, 7);
        assert_eq!(snap.summary.without_slot, 2);
        assert!(!snap.main.applicable);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["gateways"][0]["label"], "no_slot");
        assert_eq!(json["version"], SCHEMA_VERSION);
    }

    #[test]
    fn a_gateway_answering_while_its_slot_is_down_is_a_stray() {
        let env = FakeEnv::new();
        env.add_profile("orphan");
        env.add_profile("quiet");
        env.serve_stray_health("orphan");
        env.set_slot("orphan", Slot::down(Want::Down));
        env.set_slot("quiet", Slot::down(Want::Down));
        let snap = Snapshot::collect_with(&env, Duration::from_secs(2));
        let by = |n: &str| {
            snap.gateway(&ProfileName::parse(n).unwrap())
                .unwrap()
                .clone()
        };
        let orphan = by("orphan");
        assert_eq!(orphan.label, GatewayLabel::Stray);
        assert_eq!(orphan.label.tone(), Tone::Bad);
        assert_eq!(orphan.health_text, "ok");
        assert_eq!(by("quiet").label, GatewayLabel::Stopped);
        assert_eq!(snap.summary.failing, 1);
        let json = serde_json::to_value(&snap).unwrap();
        let labels: Vec<_> = json["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["label"].as_str().unwrap().to_string())
            .collect();
        assert!(labels.contains(&"stray".to_string()), "{labels:?}");
    }

    /// A profile parked on a config that does not parse, as the finish hook
    /// leaves it: every front end reads the model's one text for it.
    #[test]
    fn a_parked_bad_config_says_its_reason_once_and_its_health_is_stopped() {
        let env = FakeEnv::new();
        let name = env.add_profile("broken");
        let config = Environment::home(&env).profile(&name).config();
        std::fs::write(&config, "gateway:\n  port: 8702\n  host: not an address\n").unwrap();
        let error = hermes_core::config::Config::load(&config)
            .unwrap_err()
            .to_string();
        // What the gateway recorded, then what the finish hook made of it.
        let mut state = GatewayState {
            gateway_state: Some(hermes_core::state::RunState::StartupFailed),
            exit_reason: Some(error.clone()),
            ..GatewayState::default()
        };
        hermes_s6::finish::decide(
            &mut state,
            &name,
            hermes_s6::finish::Death::from_finish_args(78, 0, 50),
        );
        env.write_state("broken", &serde_json::to_string(&state).unwrap());
        env.set_slot("broken", Slot::down(Want::Down));
        let snap = Snapshot::collect_with(&env, Duration::from_millis(100));
        let g = snap.gateway(&name).unwrap();
        assert_eq!(g.label, GatewayLabel::Failed);
        assert_eq!(g.config_error.as_deref(), Some(error.as_str()));
        assert_eq!(g.reason.matches(&error).count(), 1, "{}", g.reason);
        assert_eq!(g.reason.matches("exit 78").count(), 1, "{}", g.reason);
        assert!(
            g.reason
                .ends_with("then run `hermes -p broken gateway start`"),
            "{}",
            g.reason
        );
        assert_eq!(g.health_text, "stopped");
        assert_eq!(g.port, Some(8702));
        // Stopped on request and never started read the same.
        assert_eq!(
            snap.gateway(&ProfileName::default_profile())
                .unwrap()
                .health_text,
            "stopped"
        );
        let json = serde_json::to_value(g).unwrap();
        assert_eq!(json["health_text"], "stopped");
        assert_eq!(json["reason"], g.reason.as_str());
    }

    #[test]
    fn a_healthy_gateway_is_up() {
        let env = FakeEnv::new();
        env.add_profile("web");
        let port = env.serve_health("web");
        env.set_slot("web", Slot::up(1));
        let snap = Snapshot::collect(&env);
        let g = snap.gateway(&ProfileName::parse("web").unwrap()).unwrap();
        assert_eq!(g.port, Some(port));
        assert_eq!((g.label, g.tone), (GatewayLabel::Up, Tone::Good));
        assert_eq!(g.health_text, "ok");
        assert_eq!(snap.summary.healthy, 1);
    }

    #[test]
    fn fifty_silent_gateways_cost_about_one_timeout() {
        // Listeners that accept but never answer: probed one after the
        // other, this would take 50 timeouts.
        let env = FakeEnv::new();
        let listeners: Vec<std::net::TcpListener> = (0..50)
            .map(|i| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let name = format!("p{i}");
                env.add_profile(&name);
                let paths = Environment::home(&env).profile(&ProfileName::parse(&name).unwrap());
                hermes_core::config::Config::new(l.local_addr().unwrap().port())
                    .save(&paths.config())
                    .unwrap();
                env.set_slot(&name, Slot::up(7));
                l
            })
            .collect();
        let timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let snap = Snapshot::collect_with(&env, timeout);
        let took = started.elapsed();
        assert!(took < timeout * 6, "took {took:?}");
        let silent = snap
            .gateways
            .iter()
            .filter(|g| g.health.state == HealthState::Unreachable);
        assert_eq!(silent.count(), 51, "50 silent and the closed root port");
        drop(listeners);
    }

    #[test]
    fn slot_by_slot_and_all_at_once_give_the_same_snapshot() {
        let env = FakeEnv::new();
        for (name, slot) in [
            ("a", Some(Slot::up(11))),
            ("b", Some(Slot::down(Want::Down))),
            ("c", None),
            ("d", Some(Slot::down(Want::Up))),
        ] {
            env.add_profile(name);
            if let Some(slot) = slot {
                env.set_slot(name, slot);
            }
        }
        env.serve_health("a");
        env.set_slot("orphan", Slot::up(12));
        // What may differ between two collections: when, and how long probes took.
        let comparable = |snap: &Snapshot| {
            let mut json = serde_json::to_value(snap).unwrap();
            json["taken_at"] = serde_json::Value::Null;
            for g in json["gateways"].as_array_mut().unwrap() {
                g["health"]["latency_ms"] = serde_json::Value::Null;
            }
            json
        };
        let timeout = Duration::from_millis(200);
        let asked = env.manager().status_calls();
        let at_once = Snapshot::collect_with(&env, timeout);
        // Only the slots that exist are asked for (a, b, d and the orphan).
        assert_eq!(env.manager().status_calls() - asked, 4);
        env.manager().answer_slot_by_slot();
        let asked = env.manager().status_calls();
        let one_by_one = Snapshot::collect_with(&env, timeout);
        assert_eq!(env.manager().status_calls() - asked, 4);
        assert_eq!(comparable(&at_once), comparable(&one_by_one));
        let labels: Vec<_> = at_once.gateways.iter().map(|g| g.label).collect();
        assert_eq!(
            labels,
            [
                GatewayLabel::NoSlot,
                GatewayLabel::Up,
                GatewayLabel::Stopped,
                GatewayLabel::NoSlot,
                GatewayLabel::Crashing,
                // No profile, so no port to probe.
                GatewayLabel::Up,
            ]
        );
    }

    #[test]
    fn slots_are_read_while_the_gateways_are_probed() {
        let env = FakeEnv::new();
        let name = env.add_profile("web");
        env.set_slot("web", Slot::up(1));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let paths = Environment::home(&env).profile(&name);
        hermes_core::config::Config::new(port)
            .save(&paths.config())
            .unwrap();
        // The gateway and the slot's status each wait (up to a deadline) for
        // the other to have begun: only if both are under way at once does
        // each see the other.
        let wait_for = |flag: &AtomicBool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            hermes_core::wait::until(deadline, Duration::from_millis(2), || {
                flag.load(Ordering::SeqCst)
            })
        };
        let probed = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicBool::new(false));
        let gateway_saw_status = Arc::new(AtomicBool::new(false));
        let status_saw_probe = Arc::new(AtomicBool::new(false));
        let (probed_, asked_, saw) = (probed.clone(), asked.clone(), gateway_saw_status.clone());
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 512];
                let _ = std::io::Read::read(&mut s, &mut buf);
                probed_.store(true, Ordering::SeqCst);
                saw.fetch_or(wait_for(&asked_), Ordering::SeqCst);
                let body = r#"{"status":"ok","profile":"web"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = std::io::Write::write_all(&mut s, answer.as_bytes());
            }
        });
        let (probed_, asked_, saw) = (probed.clone(), asked.clone(), status_saw_probe.clone());
        env.manager().before_status(move || {
            asked_.store(true, Ordering::SeqCst);
            saw.fetch_or(wait_for(&probed_), Ordering::SeqCst);
        });
        let snap = Snapshot::collect_with(&env, Duration::from_secs(5));
        assert!(
            status_saw_probe.load(Ordering::SeqCst),
            "the slot's status was read before the probe was sent"
        );
        assert!(
            gateway_saw_status.load(Ordering::SeqCst),
            "the probe was answered before the slot's status was asked"
        );
        let g = snap.gateway(&name).unwrap();
        assert_eq!(
            (g.label, g.health.state),
            (GatewayLabel::Up, HealthState::Ok)
        );
    }

    /// The document `status --json` and `GET /api/status` serve: its keys
    /// are pinned, and collecting at once or slot by slot gives the same.
    #[test]
    fn the_document_keeps_its_keys() {
        let env = FakeEnv::new();
        env.add_profile("web");
        env.serve_health("web");
        env.set_slot("web", Slot::up(3));
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(" ")
        };
        let snap = serde_json::to_value(Snapshot::collect(&env)).unwrap();
        assert_eq!(
            keys(&snap),
            "dashboard errors gateways home ingress main manager summary supervisor taken_at version"
        );
        let web = &snap["gateways"][1];
        assert_eq!(
            keys(web),
            "config_error desired_state down_secs exit_reason gateway_state health health_text \
             hooks hooks_summary host label last_exit pid port profile profile_exists ready \
             reason restarts service short_failures slot status_error supervised tone up \
             uptime_secs want"
        );
        assert_eq!(keys(&web["health"]), "error http_status latency_ms state");
        assert_eq!(
            keys(&snap["summary"]),
            "failing gateways healthy stopped up without_slot"
        );
        assert_eq!(
            (web["label"].as_str(), web["health"]["state"].as_str()),
            (Some("up"), Some("ok"))
        );
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<usize> = (0..200).collect();
        assert_eq!(
            parallel_map(&items, || (), |_, i| i * 2),
            (0..200).map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}
