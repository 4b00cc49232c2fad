//! `hermes doctor`: checks over a [`Snapshot`] and the files behind it. Each
//! failed check says what is wrong and how to fix it; the report fails when
//! any check does.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use hermes_core::fsutil;
use nix::unistd::{access, AccessFlags};
use serde::Serialize;

use crate::env::{Environment, MIN_TOKEN_LEN};
use crate::health::HealthState;
use crate::logs;
use crate::snapshot::{GatewayLabel, SecretSource, Snapshot, Tone};

/// Below this much free space in `HERMES_HOME`, logs and state writes start failing.
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;
/// Log lines shown for a permanently down slot.
const DOWN_TAIL: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it, for a failed check.
    pub fix: Option<String>,
    /// The log tail of a failing gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
            log_tail: Vec::new(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            log_tail: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

pub fn run(env: &dyn Environment, snap: &Snapshot) -> Report {
    let mut checks = vec![supervisor(snap)];
    // The service user is whoever owns HERMES_HOME (the container init makes it so).
    let service_uid = fsutil::metadata(env.home().root())
        .map_or_else(|_| nix::unistd::geteuid().as_raw(), |m| m.uid());
    if let Some(scandir) = &snap.supervisor.scandir {
        checks.push(scandir_owner(scandir, service_uid));
        // Without a scandir the two checks below would only repeat that.
        if scandir.is_dir() {
            checks.push(scandir_writable(scandir));
            checks.push(slot_permissions(scandir, service_uid));
        }
    }
    checks.extend(permanently_down(env, snap));
    checks.push(unsupervised(snap));
    if snap.manager.kind == hermes_core::service::ManagerKind::S6 {
        checks.push(without_slot(snap));
    }
    checks.push(configs(snap));
    checks.push(hooks(snap));
    checks.push(port_clashes(snap));
    checks.push(answers_as_itself(snap));
    checks.push(inside_their_slots(snap));
    checks.push(dashboard(env));
    checks.push(dashboard_slot(env, snap));
    checks.push(ingress_slot(env, snap));
    checks.push(notifications(env.home(), hermes_core::state::now_ms()));
    checks.push(log_ownership(env.home().root(), &env.home().logs_dir()));
    checks.push(disk_space(env.home().root()));
    Report {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// A target failing longer than this is reported (shorter: a retry in progress).
pub const NOTIFY_FAILING_LONG_MS: u64 = 60_000;

/// The `notify:` sections (root and per profile) and the sender's record of
/// each target: a mistake in a section, or a target failing for a minute, is
/// one line; the events wait in the outbox either way.
pub fn notifications(home: &hermes_core::HermesHome, now_ms: u64) -> Check {
    use hermes_core::notify;
    let name = "notifications";
    let mut problems = Vec::new();
    let mut targets = 0;
    let profiles = hermes_core::profile::list(home)
        .unwrap_or_else(|_| vec![hermes_core::ProfileName::default_profile()]);
    for p in &profiles {
        match notify::load_section(&home.profile(p).config()) {
            Ok(section) => targets += section.map_or(0, |s| s.targets.len()),
            Err(why) => problems.push(why),
        }
    }
    let sender = notify::SenderState::load(home);
    let mut delivered = 0;
    for record in sender.targets.values() {
        let st = &record.status;
        delivered += st.delivered;
        if let Some(since) = st.failing_since_ms {
            let secs = now_ms.saturating_sub(since) / 1000;
            if now_ms.saturating_sub(since) >= NOTIFY_FAILING_LONG_MS {
                problems.push(format!(
                    "{} has failed for {secs} s ({} attempts, {} events waiting): {}",
                    st.url,
                    st.failures,
                    st.pending,
                    st.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
        }
    }
    if problems.is_empty() {
        Check::pass(
            name,
            if targets == 0 {
                "no notify: targets configured".to_string()
            } else {
                format!("{targets} target(s) configured, {delivered} event(s) delivered")
            },
        )
    } else {
        Check::fail(
            name,
            problems.join("; "),
            "fix the notify: section or the target named (events wait in $HERMES_HOME/notify/outbox.jsonl and go out once it works)",
        )
    }
}

fn supervisor(snap: &Snapshot) -> Check {
    let s = &snap.supervisor;
    let place = s
        .scandir
        .as_ref()
        .map(|d| format!(" on {}", d.display()))
        .unwrap_or_default();
    if s.reachable {
        Check::pass("supervisor reachable", format!("{}{place} answers", s.name))
    } else {
        Check::fail(
            "supervisor reachable",
            format!(
                "{}{place} is not running{}",
                s.name,
                s.detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            "start it with `hermes supervise` (host), or restart the container",
        )
    }
}

/// The scandir must belong to the service user (the owner of `HERMES_HOME`),
/// be writable by no one else, and be watched by a supervisor running as that
/// same user: a supervisor of another user (root) executing `run` scripts the
/// service user can write is a privilege escalation.
fn scandir_owner(scandir: &Path, service_uid: u32) -> Check {
    let name = "scandir ownership";
    let meta = match fsutil::metadata(scandir) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                name,
                e.to_string(),
                "start the supervisor (`hermes supervise`), which creates it",
            )
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    let control = hermes_s6::Scandir::new(scandir).control();
    let supervisor_uid = fsutil::metadata(&control).ok().map(|m| m.uid());
    if meta.uid() != service_uid {
        Check::fail(
            name,
            format!(
                "{} belongs to uid {}, not to the service user (uid {service_uid}, owner of HERMES_HOME)",
                scandir.display(),
                meta.uid()
            ),
            format!("chown {service_uid} {} and restart the supervisor as that user", scandir.display()),
        )
    } else if mode & 0o022 != 0 {
        Check::fail(
            name,
            format!(
                "{} is writable by group or others (mode {mode:o}): they could add a run script the supervisor executes",
                scandir.display()
            ),
            format!("chmod go-w {}", scandir.display()),
        )
    } else if let Some(uid) = supervisor_uid.filter(|u| *u != service_uid) {
        Check::fail(
            name,
            format!(
                "the supervisor on {} runs as uid {uid}, but its slots are written by uid {service_uid}: it would execute what that user writes",
                scandir.display()
            ),
            "run the supervision tree as the service user (`hermes supervise` as that user; the container init does this)",
        )
    } else {
        Check::pass(
            name,
            format!(
                "{} belongs to the service user (uid {service_uid}) alone",
                scandir.display()
            ),
        )
    }
}

/// Whoever runs doctor must be able to register slots (the service user can).
fn scandir_writable(scandir: &Path) -> Check {
    let name = "scandir writable";
    match access(scandir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Check::pass(name, format!("{} is writable by you", scandir.display())),
        Err(e) => Check::fail(
            name,
            format!("{} is not writable by you: {e}", scandir.display()),
            format!(
                "run hermes as the user that owns {0} (the service user in the container: `docker exec -u hermes`)",
                scandir.display()
            ),
        ),
    }
}

/// Slots must be owned by the supervisor's user and writable by no one else:
/// a `run` script anyone else can write is code they get the supervisor to run.
fn slot_permissions(scandir: &Path, service_uid: u32) -> Check {
    let name = "slot permissions";
    let Ok(entries) = fsutil::read_dir(scandir) else {
        return Check::pass(name, format!("{} is empty or missing", scandir.display()));
    };
    let mut bad = Vec::new();
    let mut count = 0;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') {
            continue;
        }
        count += 1;
        let slot = entry.path();
        for path in [slot.clone(), slot.join("run"), slot.join("finish")] {
            let Ok(meta) = fsutil::metadata(&path) else {
                continue;
            };
            if meta.uid() != service_uid {
                bad.push(format!("{} is owned by uid {}", path.display(), meta.uid()));
            } else if meta.permissions().mode() & 0o022 != 0 {
                bad.push(format!(
                    "{} is writable by group or others (mode {:o})",
                    path.display(),
                    meta.permissions().mode() & 0o7777
                ));
            }
        }
        let control = slot.join("supervise").join("control");
        if control.exists() && access(&control, AccessFlags::W_OK).is_err() {
            bad.push(format!("{} is not writable by you", control.display()));
        }
    }
    if bad.is_empty() {
        Check::pass(
            name,
            format!("{count} slots owned by the service user, not writable by others"),
        )
    } else {
        Check::fail(
            name,
            bad.join("; "),
            format!("chown -R {service_uid} the slots named, and `chmod go-w` them"),
        )
    }
}

fn permanently_down(env: &dyn Environment, snap: &Snapshot) -> Vec<Check> {
    let name = "slots permanently down";
    let down: Vec<_> = snap
        .gateways
        .iter()
        .filter(|g| matches!(g.label, GatewayLabel::Failed | GatewayLabel::Crashing))
        .collect();
    if down.is_empty() {
        return vec![Check::pass(name, "no slot is down against its wish")];
    }
    down.into_iter()
        .map(|g| {
            let reason = g
                .exit_reason
                .clone()
                .or_else(|| g.last_exit.as_ref().map(|e| match (e.code, e.signal) {
                    (Some(c), _) => format!("last exit code {c}"),
                    (None, Some(s)) => format!("killed by signal {s}"),
                    _ => "no exit recorded".to_string(),
                }))
                .unwrap_or_else(|| "no reason recorded".to_string());
            let what = match (g.label, g.gateway_state.as_deref()) {
                (GatewayLabel::Failed, Some("startup_failed")) => {
                    "is permanently down (startup_failed)"
                }
                (GatewayLabel::Failed, _) => {
                    "is down for good although its desired_state is running"
                }
                _ => "is down while wanted up (restarting)",
            };
            let mut check = Check::fail(
                name,
                format!("gateway '{}' {what}: {reason}", g.profile),
                format!(
                    "fix the cause (see the log tail and `hermes -p {0} gateway status`), then `hermes -p {0} gateway start`",
                    g.profile
                ),
            );
            check.log_tail = logs::tail(&logs::gateway_log(env.home(), &g.profile), DOWN_TAIL);
            check
        })
        .collect()
}

fn unsupervised(snap: &Snapshot) -> Check {
    let name = "slots supervised";
    let lost: Vec<_> = snap
        .gateways
        .iter()
        .filter(|g| g.slot && (!g.supervised || g.status_error.is_some()))
        .map(|g| match &g.status_error {
            Some(e) => format!("{}: {e}", g.service),
            None => g.service.clone(),
        })
        .collect();
    if lost.is_empty() {
        let n = snap.gateways.iter().filter(|g| g.slot).count();
        Check::pass(name, format!("{n} slots, each with its supervisor"))
    } else {
        Check::fail(
            name,
            format!("no supervisor watches: {}", lost.join(", ")),
            "the supervisor may be past its service limit (s6-svscan -c/-C) or was killed: restart it (`hermes supervise`, or restart the container)",
        )
    }
}

fn without_slot(snap: &Snapshot) -> Check {
    let name = "profiles with a slot";
    // The root profile is only expected to have a slot once someone started it.
    let missing: Vec<_> = snap
        .gateways
        .iter()
        .filter(|g| g.label == GatewayLabel::NoSlot && g.profile_exists)
        .filter(|g| !g.profile.is_default() || g.desired_state.is_some())
        .map(|g| g.profile.to_string())
        .collect();
    if missing.is_empty() {
        Check::pass(name, "every profile has a gateway slot")
    } else {
        Check::fail(
            name,
            format!("profiles without a gateway slot: {}", missing.join(", ")),
            "register them with `hermes container reconcile`, or `hermes -p NAME gateway start` for one",
        )
    }
}

fn configs(snap: &Snapshot) -> Check {
    let name = "profile configs";
    let broken: Vec<_> = snap
        .gateways
        .iter()
        .filter_map(|g| {
            g.config_error
                .as_ref()
                .map(|e| format!("{}: {e}", g.profile))
        })
        .collect();
    if broken.is_empty() {
        Check::pass(name, "every config.yaml is valid")
    } else {
        Check::fail(
            name,
            broken.join("; "),
            "edit the config.yaml named above; a gateway with a bad config exits 78 and is not restarted",
        )
    }
}

/// Each hook's scheme and last delivery; fails on a hook that cannot verify
/// anything yet (its sender issues the secret and none is stored).
fn hooks(snap: &Snapshot) -> Check {
    let name = "webhook hooks";
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for g in &snap.gateways {
        for h in &g.hooks {
            lines.push(format!(
                "{}: {}",
                g.profile,
                crate::format::hook(h, snap.taken_at)
            ));
            if h.secret == SecretSource::Missing {
                missing.push(format!(
                    "hermes -p {} webhook secret {} --set",
                    g.profile, h.hook
                ));
            }
        }
    }
    if lines.is_empty() {
        return Check::pass(
            name,
            "no hook configured (every hook takes hermes signatures)",
        );
    }
    if missing.is_empty() {
        Check::pass(name, lines.join("; "))
    } else {
        Check::fail(
            name,
            lines.join("; "),
            format!(
                "store the secret each sender issued, then restart the gateway: {}",
                missing.join(", ")
            ),
        )
    }
}

fn port_clashes(snap: &Snapshot) -> Check {
    let name = "gateway ports";
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for g in snap.gateways.iter().filter(|g| g.profile_exists) {
        if let Some(port) = g.port {
            by_port.entry(port).or_default().push(g.profile.to_string());
        }
    }
    let clashes: Vec<_> = by_port
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(port, p)| format!("port {port}: {}", p.join(", ")))
        .collect();
    if clashes.is_empty() {
        Check::pass(
            name,
            format!(
                "{} profiles, no shared port",
                by_port.values().map(Vec::len).sum::<usize>()
            ),
        )
    } else {
        Check::fail(
            name,
            format!("profiles share a port ({})", clashes.join("; ")),
            "give each profile its own gateway.port in its config.yaml, then restart its gateway",
        )
    }
}

/// A gateway's port must be answered by that gateway: a port edited to
/// another profile's is answered by that profile, and webhooks sent to the
/// one reach the other (whatever state the first is in).
fn answers_as_itself(snap: &Snapshot) -> Check {
    let name = "gateways answer as themselves";
    let wrong: Vec<_> = snap
        .gateways
        .iter()
        .filter(|g| g.health.state == HealthState::WrongProfile)
        .map(|g| {
            let port = g.port.map(|p| p.to_string()).unwrap_or_default();
            match &g.health.answered_as {
                Some(other) => format!(
                    "'{}' (port {port}) answered as profile '{other}'",
                    g.profile
                ),
                None => format!(
                    "'{}' (port {port}) answered without naming its profile",
                    g.profile
                ),
            }
        })
        .collect();
    if wrong.is_empty() {
        Check::pass(name, "no port answers as another profile")
    } else {
        Check::fail(
            name,
            wrong.join("; "),
            "give each profile its own gateway.port in its config.yaml (`hermes profile list` shows them), then restart its gateway",
        )
    }
}

/// A gateway that answers as itself while its slot is down runs outside
/// the slot (label `stray`): left by an s6-supervise that was killed, or
/// run by hand. It serves, but nothing restarts it.
fn inside_their_slots(snap: &Snapshot) -> Check {
    let name = "gateways inside their slots";
    let strays: Vec<_> = snap
        .gateways
        .iter()
        .filter(|g| g.label == GatewayLabel::Stray)
        .map(|g| {
            let port = g.port.map(|p| p.to_string()).unwrap_or_default();
            format!("'{}' (port {port})", g.profile)
        })
        .collect();
    if strays.is_empty() {
        Check::pass(name, "no gateway answers while its slot is down")
    } else {
        Check::fail(
            name,
            format!(
                "answering while the slot is down, so outside it: {}",
                strays.join(", ")
            ),
            "`hermes -p NAME gateway stop` ends it, then `hermes -p NAME gateway start` if it should run",
        )
    }
}

fn dashboard(env: &dyn Environment) -> Check {
    let name = "dashboard bind";
    let s = env.dashboard_settings();
    if let Err(why) = s.check_bind() {
        return Check::fail(
            name,
            why,
            "set HERMES_DASHBOARD_TOKEN (at least 16 random characters), or HERMES_DASHBOARD_HOST=127.0.0.1",
        );
    }
    if s.token_set && s.token_len < MIN_TOKEN_LEN {
        return Check::fail(
            name,
            format!("HERMES_DASHBOARD_TOKEN has {} characters", s.token_len),
            format!("use a token of at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 16`)"),
        );
    }
    let auth = if s.token_set {
        "token from HERMES_DASHBOARD_TOKEN"
    } else {
        "loopback, generated token: `hermes dashboard url`"
    };
    Check::pass(name, format!("{}:{} ({auth})", s.host, s.port))
}

/// The webhook ingress, when the container was asked for it, must be up on a port.
fn ingress_slot(env: &dyn Environment, snap: &Snapshot) -> Check {
    let name = "ingress slot";
    let i = &snap.ingress;
    let log = env.home().ingress_log_dir().join("current");
    if i.enabled && i.port.is_none() {
        return Check::fail(
            name,
            "HERMES_INGRESS_PORT is not a port number",
            "set HERMES_INGRESS_PORT to 1-65535 (default 8644), then restart the container",
        );
    }
    if i.tone != Tone::Bad {
        return Check::pass(name, i.label);
    }
    static_slot_down(
        name,
        format!("HERMES_INGRESS is on but the ingress is {}", i.label),
        &log,
        "HERMES_INGRESS_HOST:HERMES_INGRESS_PORT must be free to bind",
    )
}

/// The dashboard slot, when the container was asked for it, must be up.
fn dashboard_slot(env: &dyn Environment, snap: &Snapshot) -> Check {
    let name = "dashboard slot";
    let d = &snap.dashboard;
    if d.tone != Tone::Bad {
        return Check::pass(name, d.label);
    }
    static_slot_down(
        name,
        format!("HERMES_DASHBOARD is on but the dashboard is {}", d.label),
        &env.home().dashboard_log_dir().join("current"),
        "a non-loopback HERMES_DASHBOARD_HOST needs HERMES_DASHBOARD_TOKEN",
    )
}

/// A static slot the container was asked for is not up: the hint points at
/// its log (whose tail goes with the check) and says what usually stops it.
fn static_slot_down(name: &'static str, problem: String, log: &Path, usual_cause: &str) -> Check {
    let mut check = Check::fail(
        name,
        problem,
        format!(
            "see {} ({usual_cause}), then restart the container",
            log.display()
        ),
    );
    check.log_tail = logs::tail(log, DOWN_TAIL);
    check
}

/// Log directories must belong to the owner of `HERMES_HOME`, or s6-log (run
/// as that user) cannot write them.
fn log_ownership(home: &Path, logs: &Path) -> Check {
    let name = "log directory ownership";
    let Ok(owner) = fsutil::metadata(home).map(|m| m.uid()) else {
        return Check::fail(
            name,
            format!("{} does not exist", home.display()),
            "create it, or set HERMES_HOME to the data directory",
        );
    };
    let mut dirs = vec![logs.to_path_buf(), logs.join("gateways")];
    if let Ok(entries) = fsutil::read_dir(&logs.join("gateways")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    let wrong: Vec<_> = dirs
        .iter()
        .filter_map(|d| fsutil::metadata(d).ok().map(|m| (d, m.uid())))
        .filter(|(_, uid)| *uid != owner)
        .map(|(d, uid)| format!("{} (uid {uid})", d.display()))
        .collect();
    if wrong.is_empty() {
        Check::pass(
            name,
            format!("owned by uid {owner}, like {}", home.display()),
        )
    } else {
        Check::fail(
            name,
            format!("not owned by uid {owner}: {}", wrong.join(", ")),
            format!("chown -R {owner} {}", logs.display()),
        )
    }
}

fn disk_space(home: &Path) -> Check {
    let name = "disk space";
    match nix::sys::statvfs::statvfs(home) {
        Ok(st) => {
            // fsblkcnt_t and c_ulong are narrower than u64 on some targets.
            #[allow(clippy::unnecessary_cast)]
            let free = st.blocks_available() as u64 * st.fragment_size() as u64;
            let mib = free / (1024 * 1024);
            if free >= MIN_FREE_BYTES {
                Check::pass(name, format!("{mib} MiB free in {}", home.display()))
            } else {
                Check::fail(
                    name,
                    format!("only {mib} MiB free in {}", home.display()),
                    format!(
                        "free space on that volume (at least {} MiB); old logs are in {}/logs",
                        MIN_FREE_BYTES / (1024 * 1024),
                        home.display()
                    ),
                )
            }
        }
        Err(e) => Check::fail(
            name,
            format!("unable to stat {}: {e}", home.display()),
            "check that HERMES_HOME is mounted",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeEnv, Slot};
    use hermes_core::config::Config;
    use hermes_core::service::ServiceStatus;
    use hermes_core::service::Want;
    use hermes_core::ProfileName;
    use std::fs;
    use std::time::Duration;

    fn report(env: &FakeEnv) -> Report {
        run(env, &Snapshot::collect_with(env, Duration::from_millis(50)))
    }

    fn failed<'a>(r: &'a Report, name: &str) -> Vec<&'a Check> {
        r.checks
            .iter()
            .filter(|c| c.name == name && !c.ok)
            .collect()
    }

    #[test]
    fn a_healthy_setup_passes() {
        let env = FakeEnv::new();
        env.add_profile("a");
        env.set_slot("a", Slot::down(Want::Down));
        let r = report(&env);
        assert!(
            r.ok,
            "{:#?}",
            r.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
        );
    }

    #[test]
    fn failures_name_the_slot_reason_tail_and_fix() {
        let mut env = FakeEnv::new();
        env.add_profile("dead");
        env.add_profile("loose");
        env.add_profile("twin");
        env.set_slot("dead", Slot::down(Want::Down));
        env.set_slot("twin", Slot::down(Want::Down));
        env.set_slot(
            "ghost",
            Slot {
                supervised: false,
                ..Slot::down(Want::Up)
            },
        );
        env.write_state(
            "dead",
            r#"{"gateway_state":"startup_failed","exit_reason":"address in use"}"#,
        );
        env.write_log("dead", "boot\nbind failed\n");
        let port = Config::read_port(
            &Environment::home(&env)
                .profile(&ProfileName::parse("dead").unwrap())
                .config(),
        )
        .unwrap();
        Config::new(port)
            .save(
                &Environment::home(&env)
                    .profile(&ProfileName::parse("twin").unwrap())
                    .config(),
            )
            .unwrap();
        env.dashboard.host = "0.0.0.0".into();
        let r = report(&env);
        assert!(!r.ok);
        let down = failed(&r, "slots permanently down");
        assert_eq!(down.len(), 1);
        assert!(down[0].detail.contains("dead") && down[0].detail.contains("address in use"));
        assert_eq!(down[0].log_tail, ["boot", "bind failed"]);
        assert!(down[0].fix.as_ref().unwrap().contains("gateway start"));
        assert!(failed(&r, "slots supervised")[0]
            .detail
            .contains("gateway-ghost"));
        assert!(failed(&r, "profiles with a slot")[0]
            .detail
            .contains("loose"));
        assert!(failed(&r, "gateway ports")[0].detail.contains("dead, twin"));
        assert!(failed(&r, "dashboard bind")[0]
            .fix
            .as_ref()
            .unwrap()
            .contains("HERMES_DASHBOARD_TOKEN"));
        env.dashboard.token_set = true;
        env.dashboard.token_len = 4;
        env.dashboard.enabled = true;
        let r = report(&env);
        assert!(failed(&r, "dashboard bind")[0].detail.contains("4 bytes"));
        assert!(failed(&r, "dashboard slot")[0]
            .detail
            .contains("not supervised"));
    }

    #[test]
    fn hooks_show_their_scheme_and_fail_without_the_senders_secret() {
        use hermes_core::config::{HookSection, Scheme};
        let env = FakeEnv::new();
        env.add_profile("a");
        env.set_slot("a", Slot::down(Want::Down));
        let paths = Environment::home(&env).profile(&ProfileName::parse("a").unwrap());
        let mut config = Config::load(&paths.config()).unwrap();
        config.webhooks.hooks.insert(
            "pay".into(),
            HookSection {
                scheme: Scheme::Stripe,
            },
        );
        config.webhooks.hooks.insert(
            "gh".into(),
            HookSection {
                scheme: Scheme::Github,
            },
        );
        config.save(&paths.config()).unwrap();
        let r = report(&env);
        let c = failed(&r, "webhook hooks");
        assert_eq!(c.len(), 1, "{:#?}", r.checks);
        assert!(
            c[0].detail.contains("a: gh github: no delivery yet")
                && c[0].detail.contains("pay stripe: NO SECRET"),
            "{}",
            c[0].detail
        );
        assert!(c[0]
            .fix
            .as_ref()
            .unwrap()
            .contains("webhook secret pay --set"));
        let hook = hermes_core::name::HookName::parse("pay").unwrap();
        hermes_core::profile::set_hook_secret(&paths, &hook, "whsec_x").unwrap();
        assert!(failed(&report(&env), "webhook hooks").is_empty());
    }

    #[test]
    fn the_ingress_asked_for_must_be_up_on_a_port() {
        let mut env = FakeEnv::new();
        let check = |env: &FakeEnv| {
            let r = report(env);
            r.checks
                .iter()
                .find(|c| c.name == "ingress slot")
                .cloned()
                .unwrap()
        };
        let c = check(&env);
        assert!(c.ok && c.detail == "disabled", "{c:?}");
        env.ingress.enabled = true;
        let c = check(&env);
        assert!(!c.ok && c.detail.contains("not supervised"), "{c:?}");
        assert!(c.fix.unwrap().contains("logs/ingress/current"));
        env.ingress_service = Some(ServiceStatus {
            name: "ingress".into(),
            supervised: true,
            up: true,
            ready: false,
            want: Want::Up,
            pid: Some(7),
            for_secs: Some(3),
            exit_code: None,
        });
        let c = check(&env);
        assert!(c.ok && c.detail == "up", "{c:?}");
        env.ingress.port = None;
        let c = check(&env);
        assert!(!c.ok && c.detail.contains("HERMES_INGRESS_PORT"), "{c:?}");
    }

    #[test]
    fn a_port_answered_by_another_profile_fails() {
        let env = FakeEnv::new();
        env.add_profile("web");
        env.add_profile("coder");
        env.serve_health("web");
        env.serve_health_as("coder", "web");
        env.set_slot("web", Slot::up(1));
        env.set_slot("coder", Slot::down(Want::Down));
        let r = report(&env);
        let c = failed(&r, "gateways answer as themselves");
        assert_eq!(c.len(), 1, "{:#?}", r.checks);
        assert!(
            c[0].detail.contains("'coder'") && c[0].detail.contains("answered as profile 'web'"),
            "{}",
            c[0].detail
        );
    }

    #[test]
    fn a_gateway_answering_while_its_slot_is_down_is_outside_it() {
        let env = FakeEnv::new();
        env.add_profile("orphan");
        env.add_profile("fine");
        let port = env.serve_stray_health("orphan");
        env.serve_health("fine");
        env.set_slot("orphan", Slot::down(Want::Down));
        env.set_slot("fine", Slot::up(1));
        let r = report(&env);
        let c = failed(&r, "gateways inside their slots");
        assert_eq!(c.len(), 1, "{:#?}", r.checks);
        assert!(
            c[0].detail.contains(&format!("'orphan' (port {port})"))
                && !c[0].detail.contains("fine"),
            "{}",
            c[0].detail
        );
        assert!(
            c[0].fix.as_deref().unwrap_or("").contains("gateway stop"),
            "{:?}",
            c[0]
        );
    }

    #[test]
    fn group_writable_slots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("gateway-x");
        fs::create_dir(&slot).unwrap();
        fs::write(slot.join("run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(slot.join("run"), fs::Permissions::from_mode(0o775)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let c = slot_permissions(dir.path(), me);
        assert!(
            !c.ok && c.detail.contains("run is writable by group"),
            "{}",
            c.detail
        );
        fs::set_permissions(slot.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&slot, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(slot_permissions(dir.path(), me).ok);
        assert!(!slot_permissions(dir.path(), me + 1).ok);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let c = scandir_owner(dir.path(), me);
        assert!(
            !c.ok && c.detail.contains("writable by group or others"),
            "{}",
            c.detail
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(scandir_owner(dir.path(), me).ok);
        assert!(!scandir_owner(dir.path(), me + 1).ok);
    }

    #[test]
    fn a_notify_typo_and_a_long_failing_target_are_one_line_each() {
        use hermes_core::notify::{SenderState, TargetRecord, TargetStatus};
        let env = FakeEnv::new();
        let home = Environment::home(&env).clone();
        let check = notifications(&home, 100_000);
        assert!(check.ok, "{}", check.detail);
        std::fs::write(
            home.profile(&ProfileName::default_profile()).config(),
            "gateway:\n  port: 8700\nnotify:\n  targtes: []\n",
        )
        .unwrap();
        let check = notifications(&home, 100_000);
        assert!(
            !check.ok && check.detail.contains("targtes"),
            "{}",
            check.detail
        );
        Config::new(8700)
            .save(&home.profile(&ProfileName::default_profile()).config())
            .unwrap();
        let mut state = SenderState::default();
        state.targets.insert(
            "k".into(),
            TargetRecord {
                status: TargetStatus {
                    url: "http://127.0.0.1:9/x".into(),
                    failures: 7,
                    failing_since_ms: Some(10_000),
                    last_error: Some("answered 500".into()),
                    pending: 3,
                    ..TargetStatus::default()
                },
                delivered_ids: Vec::new(),
            },
        );
        state.save(&home).unwrap();
        // Failing for 30 s: a retry in progress, not yet worth a line.
        assert!(notifications(&home, 40_000).ok);
        let check = notifications(&home, 100_000);
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            "http://127.0.0.1:9/x has failed for 90 s (7 attempts, 3 events waiting): answered 500"
        );
    }
}
