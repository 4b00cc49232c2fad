//! `hermes health`: one verdict over the same [`Snapshot`] as `status` and
//! `doctor`. Healthy means the supervisor answers, every gateway whose
//! `desired_state` is `running` is up, ready and answers its own `/health`
//! as itself, and the dashboard, when enabled, is up and answers as the
//! dashboard. The liveness variant asks only whether the supervision tree
//! answers, so a crash-looping profile never gets a whole container killed.

use std::time::Duration;

use serde::Serialize;

use crate::env::{Environment, SupervisorView};
use crate::health::{self, Expect, Health, HealthState};
use crate::snapshot::{self, DashboardView, Gateway, GatewayLabel, Snapshot, Tone};

/// One thing that makes the container unhealthy, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `supervisor`, `dashboard`, or `gateway '<profile>'`.
    pub subject: String,
    pub problem: String,
    pub fix: String,
}

impl Problem {
    fn new(subject: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// The one line a user (or `docker inspect`) sees.
    pub fn line(&self) -> String {
        format!("{}: {}; {}", self.subject, self.problem, self.fix)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Only the supervision tree was checked (`--live`).
    pub live_only: bool,
    pub supervisor: String,
    /// Gateways whose `desired_state` is `running`, all of which were checked.
    pub gateways_checked: usize,
    /// The dashboard was enabled, so it was checked.
    pub dashboard_checked: bool,
    pub problems: Vec<Problem>,
}

impl Verdict {
    fn new(live_only: bool, supervisor: &SupervisorView) -> Verdict {
        Verdict {
            ok: true,
            live_only,
            supervisor: supervisor.name.clone(),
            gateways_checked: 0,
            dashboard_checked: false,
            problems: Vec::new(),
        }
    }

    fn push(&mut self, problem: Problem) {
        self.ok = false;
        self.problems.push(problem);
    }

    /// The line printed when all is well.
    pub fn summary(&self) -> String {
        let supervisor = format!("{} answers", self.supervisor);
        if self.live_only {
            return format!("ok: {supervisor}");
        }
        let dashboard = if self.dashboard_checked {
            "; dashboard up"
        } else {
            ""
        };
        format!(
            "ok: {supervisor}; {} gateway{} up and answering as {}{dashboard}",
            self.gateways_checked,
            if self.gateways_checked == 1 { "" } else { "s" },
            if self.gateways_checked == 1 {
                "itself"
            } else {
                "themselves"
            }
        )
    }
}

/// Liveness: the supervision tree answers. Nothing else is looked at.
pub fn live(supervisor: &SupervisorView) -> Verdict {
    let mut v = Verdict::new(true, supervisor);
    if let Some(p) = supervisor_problem(supervisor) {
        v.push(p);
    }
    v
}

/// Readiness, collected: supervisor first (without one, nothing else can
/// be up); then the quick path, and when that cannot vouch for everything,
/// the full snapshot, which says what is wrong.
pub fn collect(env: &dyn Environment, timeout: Duration) -> Verdict {
    let supervisor = env.supervisor();
    if !supervisor.reachable {
        return live(&supervisor);
    }
    if let Some(healthy) = quick(env, &supervisor, timeout) {
        return healthy;
    }
    let snap = Snapshot::collect_with(env, timeout);
    let probe = dashboard_probe(&snap.dashboard, timeout);
    judge(&snap, probe.as_ref())
}

/// The healthy case at the cost of one call to the manager: when it vouches
/// that every gateway wanted running is up and ready, and each answers its
/// probe as itself (and the dashboard, if enabled, is up and answers), the
/// verdict is the one [`judge`] would give. `None` on anything else.
fn quick(env: &dyn Environment, supervisor: &SupervisorView, timeout: Duration) -> Option<Verdict> {
    let wanted = snapshot::wanted_running(env).ok()?;
    let names: Vec<_> = wanted.iter().map(|f| f.profile.clone()).collect();
    if env.manager().all_up_and_ready(&names) != Some(true) {
        return None;
    }
    // Every port must be known: a gateway without one is for the snapshot to explain.
    let targets: Vec<_> = wanted
        .iter()
        .map(|f| {
            f.port.map(|port| {
                let host = f.host.as_deref().unwrap_or("127.0.0.1");
                (host, port, Expect::Gateway(f.profile.as_str()))
            })
        })
        .collect::<Option<_>>()?;
    let answers = health::probe_all(&targets, timeout);
    if answers.iter().any(|h| h.state != HealthState::Ok) {
        return None;
    }
    let mut v = Verdict::new(false, supervisor);
    v.gateways_checked = wanted.len();
    let settings = env.dashboard_settings();
    if settings.enabled {
        let view = snapshot::dashboard_view(settings, env.dashboard_service());
        let probe = dashboard_probe(&view, timeout);
        if dashboard_problem(&view, probe.as_ref()).is_some() {
            return None;
        }
        v.dashboard_checked = true;
    }
    Some(v)
}

/// Probe the dashboard only when it is enabled and its slot is up: a down
/// slot is reported from the supervisor's view, without a probe.
fn dashboard_probe(d: &DashboardView, timeout: Duration) -> Option<Health> {
    let up = d.service.as_ref().is_some_and(|s| s.up);
    (d.enabled && up).then(|| health::probe_as(&d.host, d.port, Expect::Dashboard, timeout))
}

/// The verdict over a snapshot; `dashboard` is the dashboard's probe, if
/// one was made. Pure, so every case is a table row in the tests.
pub fn judge(snap: &Snapshot, dashboard: Option<&Health>) -> Verdict {
    let mut v = Verdict::new(false, &snap.supervisor);
    if let Some(p) = supervisor_problem(&snap.supervisor) {
        v.push(p);
    }
    for e in &snap.errors {
        v.push(Problem::new(
            "hermes",
            e.clone(),
            "run `hermes doctor` for the cause",
        ));
    }
    for g in snap
        .gateways
        .iter()
        .filter(|g| g.profile_exists && g.desired_state.as_deref() == Some("running"))
    {
        v.gateways_checked += 1;
        if let Some(p) = gateway_problem(g) {
            v.push(p);
        }
    }
    if snap.dashboard.enabled {
        v.dashboard_checked = true;
        if let Some(p) = dashboard_problem(&snap.dashboard, dashboard) {
            v.push(p);
        }
    }
    v
}

fn supervisor_problem(s: &SupervisorView) -> Option<Problem> {
    if s.reachable {
        return None;
    }
    let place = s
        .scandir
        .as_ref()
        .map(|d| format!(" on {}", d.display()))
        .unwrap_or_default();
    let why = s
        .detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    Some(Problem::new(
        "supervisor",
        format!("{}{place} does not answer{why}", s.name),
        "restart the container (on a host: `hermes supervise`)",
    ))
}

fn gateway_problem(g: &Gateway) -> Option<Problem> {
    let p = &g.profile;
    let subject = format!("gateway '{p}'");
    let log = format!("see `hermes -p {p} gateway status` and its log");
    let reason = || {
        g.exit_reason
            .as_ref()
            .or(g.config_error.as_ref())
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    };
    let (problem, fix) = match g.label {
        GatewayLabel::Up if g.health.state == HealthState::Ok => return None,
        GatewayLabel::Up | GatewayLabel::Unhealthy => return Some(health_problem(g, subject)),
        GatewayLabel::Starting => (
            "is up but not ready yet".to_string(),
            format!("wait for it; if it stays so, {log}"),
        ),
        GatewayLabel::Crashing => (
            format!("is down and being restarted{}", reason()),
            format!("{log}; it is parked after 5 quick failures"),
        ),
        GatewayLabel::Failed => (
            format!(
                "is parked ({}){}",
                g.gateway_state.as_deref().unwrap_or("down for good"),
                reason()
            ),
            format!("fix the cause ({log}), then `hermes -p {p} gateway start`"),
        ),
        GatewayLabel::Stopped => (
            "is stopped although its desired_state is running".to_string(),
            format!("`hermes -p {p} gateway start`"),
        ),
        GatewayLabel::Stray => (
            "has its slot down, yet a gateway answers on its port as it: one outside the slot (left by a killed s6-supervise, or run by hand), which nothing restarts".to_string(),
            format!("`hermes -p {p} gateway stop` ends it, then `hermes -p {p} gateway start`"),
        ),
        GatewayLabel::Unsupervised => (
            format!("slot {} has no supervisor", g.service),
            "restart the container (on a host: restart `hermes supervise`)".to_string(),
        ),
        GatewayLabel::NoSlot => (
            "has no gateway slot".to_string(),
            format!("`hermes -p {p} gateway start` registers and starts it"),
        ),
        GatewayLabel::Unknown => (
            format!(
                "the supervisor could not report it: {}",
                g.status_error.as_deref().unwrap_or("no reason given")
            ),
            "run `hermes doctor`".to_string(),
        ),
    };
    Some(Problem::new(subject, problem, fix))
}

/// Up and ready, but its port does not answer as it.
fn health_problem(g: &Gateway, subject: String) -> Problem {
    let p = &g.profile;
    let at = match (&g.host, g.port) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (None, Some(port)) => format!("port {port}"),
        _ => "its port".to_string(),
    };
    let error = g
        .health
        .error
        .as_ref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let restart = format!("`hermes -p {p} gateway restart`, and see its log if that fails");
    let (problem, fix) = match (g.health.state, &g.health.answered_as) {
        (HealthState::WrongProfile, Some(other)) => (
            format!("{at} answers as profile '{other}': what is sent to '{p}' reaches '{other}'"),
            format!(
                "give '{p}' a port of its own (gateway.port in its config.yaml), then {restart}"
            ),
        ),
        (HealthState::WrongProfile, None) => (
            format!("{at} answers, but not as profile '{p}'{error}"),
            format!(
                "stop whatever else listens there, or move '{p}' to another port; then {restart}"
            ),
        ),
        (HealthState::Unhealthy, _) => (format!("GET /health on {at} failed{error}"), restart),
        (HealthState::Unreachable, _) => (format!("{at} does not answer{error}"), restart),
        (HealthState::Unknown, _) => (
            format!(
                "its port is unknown{}",
                g.config_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            "fix its config.yaml, then restart it".to_string(),
        ),
        // Ok is only reached for a label other than Up: be explicit anyway.
        (HealthState::Ok, _) => (
            format!("is {}", g.label.as_str()),
            format!("`hermes -p {p} gateway status`"),
        ),
    };
    Problem::new(subject, problem, fix)
}

fn dashboard_problem(d: &DashboardView, probe: Option<&Health>) -> Option<Problem> {
    let fix = "see /opt/data/logs/dashboard/current (`hermes doctor` shows its tail), then restart the container";
    let up = d.service.as_ref().is_some_and(|s| s.up);
    if !up || d.tone == Tone::Bad {
        return Some(Problem::new(
            "dashboard",
            format!("HERMES_DASHBOARD is on but the dashboard is {}", d.label),
            fix,
        ));
    }
    let at = format!("{}:{}", d.host, d.port);
    match probe {
        Some(h) if h.state == HealthState::Ok => None,
        Some(h) => Some(Problem::new(
            "dashboard",
            format!(
                "up, but {at} does not answer as the dashboard: {}",
                h.error.as_deref().unwrap_or("no answer")
            ),
            fix,
        )),
        None => Some(Problem::new(
            "dashboard",
            format!("up, but {at} was not probed"),
            fix,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::DashboardSettings;
    use crate::fake::{FakeEnv, Slot};
    use hermes_core::service::ServiceStatus;
    use hermes_core::service::Want;

    fn health(state: HealthState, answered_as: Option<&str>) -> Health {
        Health {
            state,
            http_status: None,
            latency_ms: None,
            error: None,
            answered_as: answered_as.map(str::to_string),
        }
    }

    /// A snapshot of the fake environment with one gateway `g` in the state
    /// a row describes.
    fn one(label: GatewayLabel, desired: Option<&str>, h: Health) -> Snapshot {
        let env = FakeEnv::new();
        env.add_profile("g");
        env.set_slot("g", Slot::down(Want::Down));
        let mut snap = Snapshot::collect_with(&env, Duration::from_millis(50));
        // The root profile has no slot and no desired state: never checked.
        let g = snap
            .gateways
            .iter_mut()
            .find(|g| g.profile.as_str() == "g")
            .unwrap();
        g.label = label;
        g.desired_state = desired.map(str::to_string);
        g.health = h;
        g.exit_reason = Some("bind 127.0.0.1:1: address in use".into());
        snap
    }

    #[test]
    fn the_verdict_table() {
        use GatewayLabel as L;
        use HealthState as H;
        // (label, desired_state, health, problem contains or None when healthy)
        let rows: &[(L, Option<&str>, Health, Option<&str>)] = &[
            (L::Up, Some("running"), health(H::Ok, None), None),
            (
                L::Unhealthy,
                Some("running"),
                health(H::WrongProfile, Some("web")),
                Some("answers as profile 'web'"),
            ),
            (
                L::Unhealthy,
                Some("running"),
                health(H::WrongProfile, None),
                Some("not as profile 'g'"),
            ),
            (
                L::Unhealthy,
                Some("running"),
                health(H::Unreachable, None),
                Some("does not answer"),
            ),
            (
                L::Unhealthy,
                Some("running"),
                health(H::Unhealthy, None),
                Some("GET /health"),
            ),
            (
                L::Up,
                Some("running"),
                health(H::Unknown, None),
                Some("port is unknown"),
            ),
            (
                L::Starting,
                Some("running"),
                health(H::Unreachable, None),
                Some("not ready"),
            ),
            (
                L::Crashing,
                Some("running"),
                health(H::Unreachable, None),
                Some("being restarted"),
            ),
            (
                L::Failed,
                Some("running"),
                health(H::Unreachable, None),
                Some("is parked"),
            ),
            // The incident: parked, while another profile answers on its port.
            (
                L::Failed,
                Some("running"),
                health(H::WrongProfile, Some("web")),
                Some("is parked"),
            ),
            (
                L::Unsupervised,
                Some("running"),
                health(H::Unreachable, None),
                Some("no supervisor"),
            ),
            (
                L::NoSlot,
                Some("running"),
                health(H::Unknown, None),
                Some("no gateway slot"),
            ),
            (
                L::Stray,
                Some("running"),
                health(H::Ok, None),
                Some("outside the slot"),
            ),
            (
                L::Unknown,
                Some("running"),
                health(H::Unknown, None),
                Some("could not report"),
            ),
            // Not wanted running: whatever its state, not the container's health.
            (
                L::Stopped,
                Some("stopped"),
                health(H::Unreachable, None),
                None,
            ),
            (
                L::Failed,
                Some("stopped"),
                health(H::Unreachable, None),
                None,
            ),
            (L::Crashing, None, health(H::Unreachable, None), None),
            (L::NoSlot, None, health(H::Unknown, None), None),
        ];
        for (label, desired, h, want) in rows {
            let v = judge(&one(*label, *desired, h.clone()), None);
            let row = format!("{label:?} desired {desired:?} health {:?}", h.state);
            match want {
                None => assert!(v.ok && v.problems.is_empty(), "{row}: {:?}", v.problems),
                Some(text) => {
                    assert!(!v.ok, "{row}: healthy");
                    assert_eq!(v.problems.len(), 1, "{row}: {:?}", v.problems);
                    let line = v.problems[0].line();
                    assert!(line.contains(text), "{row}: {line}");
                    assert!(line.starts_with("gateway 'g': "), "{row}: {line}");
                    assert!(
                        line.contains("hermes -p g")
                            || line.contains("restart the container")
                            || line.contains("config.yaml")
                            || line.contains("doctor"),
                        "{row}: no fix in {line}"
                    );
                }
            }
            let wanted = usize::from(desired == &Some("running"));
            assert_eq!(v.gateways_checked, wanted, "{row}");
        }
    }

    #[test]
    fn a_parked_gateway_says_why_and_how_to_start_it() {
        let v = judge(
            &one(
                GatewayLabel::Failed,
                Some("running"),
                health(HealthState::Unreachable, None),
            ),
            None,
        );
        let line = v.problems[0].line();
        assert!(line.contains("address in use"), "{line}");
        assert!(line.contains("`hermes -p g gateway start`"), "{line}");
    }

    fn supervisor(reachable: bool) -> SupervisorView {
        SupervisorView {
            name: "s6-svscan".into(),
            scandir: Some("/run/service".into()),
            reachable,
            detail: (!reachable).then(|| "no reader on .s6-svscan/control".into()),
        }
    }

    #[test]
    fn liveness_looks_only_at_the_supervisor() {
        let v = live(&supervisor(true));
        assert!(v.ok && v.live_only);
        assert_eq!(v.summary(), "ok: s6-svscan answers");
        let v = live(&supervisor(false));
        assert!(!v.ok);
        let line = v.problems[0].line();
        assert!(
            line.starts_with("supervisor: s6-svscan on /run/service does not answer"),
            "{line}"
        );
        assert!(line.contains("restart the container"), "{line}");
    }

    #[test]
    fn a_silent_supervisor_fails_readiness_too() {
        let mut snap = one(
            GatewayLabel::Up,
            Some("running"),
            health(HealthState::Ok, None),
        );
        snap.supervisor = supervisor(false);
        let v = judge(&snap, None);
        assert!(!v.ok);
        assert_eq!(v.problems[0].subject, "supervisor");
    }

    fn dashboard(enabled: bool, up: bool) -> DashboardView {
        let settings = DashboardSettings {
            enabled,
            host: "127.0.0.1".into(),
            port: 9119,
            token_set: false,
            token_len: 0,
        };
        let service = ServiceStatus {
            name: "dashboard".into(),
            supervised: true,
            up,
            ready: false,
            want: if up { Want::Up } else { Want::Down },
            pid: up.then_some(9),
            for_secs: Some(5),
            exit_code: None,
        };
        crate::snapshot::dashboard_view(settings, Some(service))
    }

    #[test]
    fn the_dashboard_table() {
        use HealthState as H;
        // (enabled, slot up, probe, problem contains or None)
        let rows: &[(bool, bool, Option<Health>, Option<&str>)] = &[
            (false, false, None, None),
            (true, true, Some(health(H::Ok, None)), None),
            (true, false, None, Some("the dashboard is down")),
            (
                true,
                true,
                Some(health(H::WrongProfile, None)),
                Some("does not answer as the dashboard"),
            ),
            (
                true,
                true,
                Some(health(H::Unreachable, None)),
                Some("does not answer as the dashboard"),
            ),
        ];
        for (enabled, up, probe, want) in rows {
            let mut snap = one(
                GatewayLabel::Stopped,
                None,
                health(HealthState::Unknown, None),
            );
            snap.dashboard = dashboard(*enabled, *up);
            let v = judge(&snap, probe.as_ref());
            let row = format!("enabled {enabled} up {up} probe {probe:?}");
            assert_eq!(v.dashboard_checked, *enabled, "{row}");
            match want {
                None => assert!(v.ok, "{row}: {:?}", v.problems),
                Some(text) => {
                    assert!(!v.ok, "{row}");
                    let line = v.problems[0].line();
                    assert!(
                        line.starts_with("dashboard: ") && line.contains(text),
                        "{row}: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn collect_probes_live_gateways_as_themselves() {
        let env = FakeEnv::new();
        env.add_profile("web");
        env.add_profile("coder");
        env.serve_health("web");
        // coder's port was edited to one where web answers.
        env.serve_health_as("coder", "web");
        env.set_slot("web", Slot::up(1));
        env.set_slot("coder", Slot::up(2));
        for p in ["web", "coder"] {
            env.write_state(
                p,
                r#"{"desired_state":"running","gateway_state":"running"}"#,
            );
        }
        let v = collect(&env, Duration::from_millis(500));
        assert_eq!(v.gateways_checked, 2);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        let line = v.problems[0].line();
        assert!(
            line.starts_with("gateway 'coder': ") && line.contains("answers as profile 'web'"),
            "{line}"
        );
        let full = env.manager().status_calls();
        assert!(full >= 2, "the problem was found slot by slot");
        env.serve_health("coder");
        let v = collect(&env, Duration::from_millis(500));
        assert!(v.ok, "{:?}", v.problems);
        assert_eq!(
            v.summary(),
            "ok: fake answers; 2 gateways up and answering as themselves"
        );
        // Healthy: the manager vouched for all at once, no slot was asked alone.
        assert_eq!(env.manager().status_calls(), full);
        // One slot down: the quick path cannot vouch, the full one says which.
        env.set_slot("web", Slot::down(Want::Up));
        let v = collect(&env, Duration::from_millis(500));
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].line().starts_with("gateway 'web': is down"));
        // Its port answering as it all the same: a gateway outside the slot.
        env.serve_stray_health("web");
        let v = collect(&env, Duration::from_millis(500));
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        let line = v.problems[0].line();
        assert!(line.contains("outside the slot"), "{line}");
    }
}
