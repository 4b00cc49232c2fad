//! `hermes-bench chaos`: N profiles serving signed webhook deliveries, and the
//! dashboard in its slot as the container runs it, while at random intervals
//! a random gateway, `s6-supervise`, `s6-log` or the dashboard is SIGKILLed,
//! or a gateway is stopped or started. Afterwards it checks: every gateway
//! whose desired state is running is up (and every stopped one down), and the
//! dashboard serves; every acknowledged event is stored exactly once; no
//! half-published slot; every log's `current` is there and readable; one
//! gateway process per running profile; nothing left running once the
//! supervisor is stopped.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hermes_core::state::{self, Loaded};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use hermes_testkit::{hermes_bin, http, procs};
use hermes_testkit::{poll, text_of, Env};

use crate::control::{wait_healthy, Ports};
use crate::work_parent;

const HOOK: &str = "chaos";
/// Longer than the finish policy's 10 s short-run window, with margin for the restart.
const COOLDOWN: Duration = Duration::from_secs(12);

#[derive(clap::Args)]
pub struct Options {
    /// How long to inflict chaos, in seconds (CI: 60; by hand: 1800).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Profiles (gateways) running at once.
    #[arg(long, default_value_t = 4)]
    profiles: usize,
    /// Random seed (printed, so a failing run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Shortest and longest pause between two disruptions, in ms.
    #[arg(long, default_value_t = 200)]
    min_pause_ms: u64,
    #[arg(long, default_value_t = 1500)]
    max_pause_ms: u64,
}

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    duplicates_acked: AtomicU64,
    retries: AtomicU64,
    resigned: AtomicU64,
    rejected: AtomicU64,
}

struct Profile {
    name: String,
    port: u16,
    secret: String,
    /// Its `gateway_state.json`, which says when the running gateway started.
    state_file: PathBuf,
}

/// Whether the profile's gateway started after the Unix second `signed`:
/// it then refuses that signature by design (`timestamp_out_of_window`,
/// "sign the request again"), as it cannot know whether its predecessor
/// saw it, and the sender signs again.
fn started_after(p: &Profile, signed: u64) -> bool {
    match state::load(&p.state_file) {
        Ok(Loaded::Found(state)) => state
            .started_at
            .is_some_and(|started_ms| started_ms / 1000 > signed),
        _ => false,
    }
}

/// Deliver events `<profile>-<seq>` one after another; an unanswered or 5xx
/// delivery is retried with the same Idempotency-Key until acknowledged.
fn deliverer(
    p: &Profile,
    stop: &AtomicBool,
    counts: &Counts,
    acked: &Mutex<Vec<String>>,
    errors: &Mutex<Vec<String>>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let uid = format!("{}-{seq}", p.name);
        let body = format!("{{\"uid\":\"{uid}\",\"seq\":{seq}}}");
        let signed = http::unix_secs();
        match http::deliver_signed_at(p.port, HOOK, &p.secret, body.as_bytes(), &uid, signed) {
            Some(r) if r.status == 202 => {
                counts.acked.fetch_add(1, Ordering::Relaxed);
                if r.body.contains("\"duplicate\":true") {
                    counts.duplicates_acked.fetch_add(1, Ordering::Relaxed);
                }
                acked.lock().unwrap().push(uid);
                seq += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(r) if r.status >= 500 => {
                counts.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(r)
                if r.status == 401
                    && r.body.contains("\"timestamp_out_of_window\"")
                    && started_after(p, signed) =>
            {
                counts.resigned.fetch_add(1, Ordering::Relaxed);
            }
            Some(r) => {
                counts.rejected.fetch_add(1, Ordering::Relaxed);
                errors
                    .lock()
                    .unwrap()
                    .push(format!("{uid}: HTTP {} {}", r.status, r.body.trim()));
                seq += 1;
            }
            None => {
                counts.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Every stored event of the hook: idempotency key → how many times it is stored.
fn stored_events(p: &Profile) -> Result<HashMap<String, usize>, String> {
    let mut seen = HashMap::new();
    let mut after = 0u64;
    let auth = format!("Bearer {}", p.secret);
    loop {
        let path = format!("/v1/webhooks/{HOOK}/events?after={after}&limit=1000");
        let r = http::get(p.port, &path, &[("Authorization", &auth)])
            .ok_or_else(|| format!("{}: no answer to GET {path}", p.name))?;
        if r.status != 200 {
            return Err(format!(
                "{}: GET {path}: HTTP {} {}",
                p.name, r.status, r.body
            ));
        }
        let page: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("{}: bad JSON from GET {path}: {e}", p.name))?;
        for ev in page["events"].as_array().into_iter().flatten() {
            // The body, not the key, is what was stored: count the uid inside it.
            let uid = ev["body"]
                .as_str()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|b| b["uid"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("<unreadable event {}>", ev["id"]));
            *seen.entry(uid).or_insert(0) += 1;
        }
        after = page["next_after"].as_u64().unwrap_or(after);
        if page["more"] != Value::Bool(true) {
            return Ok(seen);
        }
    }
}

/// What is not (yet) as the chaos left it: each gateway whose desired state is
/// running is supervised, up, ready and serving, each stopped one is down and
/// silent, the recorded desired state matches the last command, and the
/// dashboard serves.
fn settle_violations(
    env: &Env,
    profiles: &[Arc<Profile>],
    running: &[bool],
    dashboard_port: u16,
) -> Vec<String> {
    let mut violations = Vec::new();
    let statuses = env.status_all();
    for (p, &up) in profiles.iter().zip(running) {
        let Some(st) = statuses.iter().find(|s| s["profile"] == p.name.as_str()) else {
            violations.push(format!("{}: missing from gateway status --all", p.name));
            continue;
        };
        let want = if up { "running" } else { "stopped" };
        if st["desired_state"] != want {
            violations.push(format!(
                "{}: desired_state {} but the last command asked for {want}",
                p.name, st["desired_state"]
            ));
        }
        if up && (st["supervised"] != true || st["up"] != true || st["ready"] != true) {
            violations.push(format!("{}: desired running but status says {st}", p.name));
        }
        if up && !http::healthy(p.port) {
            violations.push(format!(
                "{}: desired running but /health does not answer 200",
                p.name
            ));
        }
        if !up && st["up"] == true {
            violations.push(format!(
                "{}: desired stopped but status says up: {st}",
                p.name
            ));
        }
        if !up && http::healthy(p.port) {
            violations.push(format!("{}: desired stopped but /health answers", p.name));
        }
    }
    if !dashboard_serves(env, dashboard_port) {
        violations.push(format!(
            "dashboard: GET /api/status on port {dashboard_port} does not answer 200"
        ));
    }
    violations
}

/// The dashboard answers with the gateways' status, to the token it made at
/// first start in `$HERMES_HOME/.dashboard-token` (what `hermes dashboard url` reads).
fn dashboard_serves(env: &Env, port: u16) -> bool {
    let Ok(token) = fs::read_to_string(env.home().join(".dashboard-token")) else {
        return false;
    };
    let bearer = format!("Bearer {}", token.trim());
    http::get(port, "/api/status", &[("authorization", &bearer)]).is_some_and(|r| r.status == 200)
}

#[derive(Default)]
struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_insert(0) += 1;
    }
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let seed = opts.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).expect("random seed");
        u64::from_le_bytes(b) | 1
    });
    println!(
        "chaos: {} profiles, {} s, seed {seed} (replay with --seed {seed})",
        opts.profiles, opts.duration
    );
    let mut rng = Rng(seed);
    let mut env = Env::in_dir(&work_parent(), hermes_bin());
    let mut ports = Ports::for_env(&env);
    // The dashboard slot exactly as stage 1 writes it in the container; its
    // port reaches `container dashboard-run` through s6-svscan's environment.
    let dashboard_port = ports.next();
    env.vars
        .push(("HERMES_DASHBOARD_PORT".into(), dashboard_port.to_string()));
    let home = hermes_core::HermesHome::new(env.home());
    fs::create_dir_all(home.dashboard_log_dir()).context("dashboard log dir")?;
    fs::create_dir_all(env.scandir()).context("scandir")?;
    hermes_s6::static_slot::install(
        &hermes_core::dirfd::Dir::open(&env.scandir()).context("scandir")?,
        &hermes_init::scandir::static_slots(hermes_bin().as_path(), &home, |k| {
            (k == "HERMES_DASHBOARD").then(|| "1".to_string())
        }),
    )
    .context("dashboard slot")?;
    env.supervise();
    let svscan = env.supervisor_pid().context("supervisor pid")?;
    let mut profiles = Vec::new();
    for i in 0..opts.profiles {
        let name = format!("chaos{i}");
        let port = ports.next();
        env.ok(&[
            "profile",
            "create",
            &name,
            "--no-alias",
            "--port",
            &port.to_string(),
        ]);
        env.ok(&["-p", &name, "gateway", "start"]);
        profiles.push(Arc::new(Profile {
            secret: env.secret_of(&name),
            state_file: env.profile_dir(&name).join("gateway_state.json"),
            name,
            port,
        }));
    }
    let mut running = vec![true; profiles.len()];

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let acked: Vec<Arc<Mutex<Vec<String>>>> = profiles
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = profiles
        .iter()
        .zip(&acked)
        .map(|(p, a)| {
            let (p, a, stop, counts, errors) = (
                p.clone(),
                a.clone(),
                stop.clone(),
                counts.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || deliverer(&p, &stop, &counts, &a, &errors))
        })
        .collect();

    let mut tally = Tally::default();
    let mut last_hit: Vec<Option<Instant>> = vec![None; profiles.len()];
    let mut control_errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(opts.duration);
    while Instant::now() < deadline {
        let span = opts.max_pause_ms.saturating_sub(opts.min_pause_ms);
        std::thread::sleep(Duration::from_millis(
            opts.min_pause_ms + rng.below(span + 1),
        ));
        let i = rng.below(profiles.len() as u64) as usize;
        let p = &profiles[i];
        let service = format!("gateway-{}", p.name);
        let tree = procs::descendants(svscan);
        let supervise_of = |service: &str| {
            tree.iter()
                .find(|q| q.comm == "s6-supervise" && q.argv.get(1).is_some_and(|a| a == service))
                .map(|q| q.pid)
        };
        let supervise = |log: bool| {
            if log {
                supervise_of(&format!("{service}/log"))
            } else {
                supervise_of(&service)
            }
        };
        let child_of = |parent: Option<u32>| {
            parent.and_then(|pp| {
                tree.iter()
                    .find(|q| q.ppid == pp && !q.is_zombie())
                    .map(|q| q.pid)
            })
        };
        let mut roll = rng.below(100);
        // The finish policy parks a gateway that dies 5 times in a row within
        // 10 s of starting, by design; chaos must not be that crash loop, so a
        // profile whose gateway was hit less than COOLDOWN ago gets its
        // logger or the dashboard hit instead.
        let cooling = last_hit[i].is_some_and(|t| t.elapsed() < COOLDOWN);
        if cooling && roll < 55 {
            roll = 55 + roll % 30;
        }
        if roll < 55 {
            last_hit[i] = Some(Instant::now());
        }
        let (what, victim) = match roll {
            0..=39 => ("SIGKILL gateway", child_of(supervise(false))),
            40..=54 => ("SIGKILL s6-supervise (gateway)", supervise(false)),
            55..=64 => ("SIGKILL s6-supervise (log)", supervise(true)),
            65..=76 => ("SIGKILL s6-log", child_of(supervise(true))),
            77..=84 => ("SIGKILL dashboard", child_of(supervise_of("dashboard"))),
            _ => {
                let (verb, label) = if running[i] {
                    ("stop", "gateway stop")
                } else {
                    ("start", "gateway start")
                };
                let out = env.run(&["-p", &p.name, "gateway", verb, "--timeout", "20"]);
                if out.status.success() {
                    running[i] = !running[i];
                    tally.add(label);
                } else {
                    control_errors.push(format!("{label} {}: {}", p.name, text_of(&out).trim()));
                    tally.add("control command failed");
                }
                continue;
            }
        };
        match victim {
            Some(pid) => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                tally.add(what);
            }
            None => tally.add("no victim found (process being restarted)"),
        }
    }

    // Settle: the supervisor must bring back what is wanted up on its own. A
    // disruption just before the end may still be in flight (s6-svscan
    // respawns a killed s6-supervise after 1 s, whose new gateway then
    // replaces the orphaned one), so poll until every slot agrees or the
    // deadline passes, and report what the last look saw.
    let settle = Duration::from_secs(30);
    let settle_started = Instant::now();
    let mut violations = Vec::new();
    let mut settled = false;
    while !settled {
        violations = settle_violations(&env, &profiles, &running, dashboard_port);
        settled = violations.is_empty() || settle_started.elapsed() >= settle;
        if !settled {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let settle_ms = settle_started.elapsed().as_millis();
    let settled_ok = violations.is_empty();

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    // Exactly once: bring every gateway up to read its inbox.
    let mut stored_total = 0usize;
    for (p, a) in profiles.iter().zip(&acked) {
        let start = env.run(&["-p", &p.name, "gateway", "start", "--timeout", "30"]);
        if !wait_healthy(p.port, settle) {
            violations.push(format!(
                "{}: not serving after `gateway start` for the inbox check: {}",
                p.name,
                text_of(&start).trim()
            ));
            continue;
        }
        if !start.status.success() {
            control_errors.push(format!(
                "gateway start {} (inbox check) failed although it came up: {}",
                p.name,
                text_of(&start).trim()
            ));
        }
        match stored_events(p) {
            Ok(seen) => {
                stored_total += seen.values().sum::<usize>();
                for uid in a.lock().unwrap().iter() {
                    match seen.get(uid) {
                        Some(1) => {}
                        Some(n) => {
                            violations.push(format!("{uid}: acknowledged, stored {n} times"))
                        }
                        None => violations.push(format!("{uid}: acknowledged, not stored")),
                    }
                }
                for (uid, n) in &seen {
                    if *n > 1 && !a.lock().unwrap().contains(uid) {
                        violations.push(format!("{uid}: never acknowledged, stored {n} times"));
                    }
                }
            }
            Err(e) => violations.push(e),
        }
    }

    // No half-made slot: every gateway-* entry is a complete directory, and
    // nothing staged or retired is left.
    let scandir = env.scandir();
    for entry in fs::read_dir(&scandir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(".gateway-") {
            violations.push(format!("staging entry left in the scandir: {name}"));
        }
        if name.starts_with("gateway-")
            && !["run", "finish", "log/run", "notification-fd"]
                .iter()
                .all(|f| path.join(f).is_file())
        {
            violations.push(format!("incomplete slot {name}"));
        }
    }
    // Logs, for every profile and the dashboard: `current` is there and every
    // file readable, and what was logged is kept. A restarted s6-log moves
    // the `current` of a killed one to an `@….u` archive and starts an empty
    // one, so the lines may all be in archives.
    let logs = profiles
        .iter()
        .map(|p| env.log_dir(&p.name))
        .chain([home.dashboard_log_dir()]);
    for dir in logs {
        let current = dir.join("current");
        if let Err(e) = fs::metadata(&current) {
            violations.push(format!("{}: {e}", current.display()));
        }
        let mut logged = 0;
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "current" || name.starts_with('@') {
                match fs::read(entry.path()) {
                    Ok(bytes) => logged += bytes.len(),
                    Err(e) => violations.push(format!("{}: {e}", entry.path().display())),
                }
            }
        }
        if logged == 0 {
            violations.push(format!(
                "{}: nothing logged in current or its archives",
                dir.display()
            ));
        }
    }
    // One gateway process per profile, all inside the supervision tree.
    let tree: Vec<u32> = procs::descendants(svscan).iter().map(|p| p.pid).collect();
    for p in profiles.iter() {
        let gws: Vec<procs::Proc> = procs::belonging_to(env.root())
            .into_iter()
            .filter(|q| q.is_gateway_of(&p.name))
            .collect();
        if gws.len() != 1 {
            violations.push(format!(
                "{}: {} gateway processes: {:?}",
                p.name,
                gws.len(),
                gws.iter().map(|g| g.pid).collect::<Vec<_>>()
            ));
        }
        for g in gws.iter().filter(|g| !tree.contains(&g.pid)) {
            violations.push(format!(
                "{}: gateway pid {} runs outside the supervision tree",
                p.name, g.pid
            ));
        }
    }
    // Every log directory's lock is held by a logger inside the tree, and no
    // s6-log runs outside it: one a killed s6-supervise left behind kept
    // the lock, and its slot's new logger failed to take it every second.
    let logs_held_inside = |report: &mut Vec<String>| {
        let tree: Vec<u32> = procs::descendants(svscan).iter().map(|p| p.pid).collect();
        let dirs = profiles
            .iter()
            .map(|p| env.log_dir(&p.name))
            .chain([home.dashboard_log_dir()]);
        for dir in dirs {
            let lock = dir.join("lock");
            match hermes_core::fsutil::record_lock_holder(&lock) {
                Ok(Some(pid)) if tree.contains(&(pid as u32)) => {}
                held => report.push(format!(
                    "{}: held by {held:?}, not by a logger in the tree",
                    lock.display()
                )),
            }
        }
        for q in procs::belonging_to(env.root()) {
            if q.comm == "s6-log" && !tree.contains(&q.pid) {
                report.push(format!(
                    "s6-log pid {} runs outside the supervision tree",
                    q.pid
                ));
            }
        }
    };
    let mut loggers = Vec::new();
    // A logger whose supervisor was killed last is replaced within seconds.
    poll(settle, Duration::from_millis(50), || {
        loggers.clear();
        logs_held_inside(&mut loggers);
        loggers.is_empty()
    });
    violations.extend(loggers);
    // Nothing survives the supervisor.
    env.stop_supervisor(Duration::from_secs(60));
    let root = env.root().to_path_buf();
    if !poll(Duration::from_secs(15), Duration::from_millis(20), || {
        procs::belonging_to(&root).is_empty()
    }) {
        for p in procs::belonging_to(&root) {
            violations.push(format!("leaked process {} {:?}", p.pid, p.argv));
        }
    }

    let acked_total: usize = acked.iter().map(|a| a.lock().unwrap().len()).sum();
    if settled_ok {
        println!("settled: every slot as wanted {settle_ms} ms after the chaos ended");
    } else {
        println!("not settled {settle_ms} ms after the chaos ended");
    }
    println!("disruptions:");
    for (what, n) in &tally.0 {
        println!("  {what:<45} {n}");
    }
    println!(
        "deliveries: {acked_total} acknowledged ({} as duplicates of a retried key), {} retried after no answer or 5xx, {} signed again after the gateway restarted since their signature, {} rejected; {stored_total} events stored",
        counts.duplicates_acked.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        counts.resigned.load(Ordering::Relaxed),
        counts.rejected.load(Ordering::Relaxed),
    );
    // A signed, well-formed delivery is never refused, but for a signature
    // older than the gateway that received it, which the sender signs again.
    for e in errors.lock().unwrap().iter() {
        violations.push(format!("delivery rejected: {e}"));
    }
    for e in control_errors.iter().take(10) {
        println!(
            "  control error during chaos: {}",
            e.lines().next().unwrap_or("")
        );
    }
    if violations.is_empty() {
        println!("chaos: PASS (seed {seed})");
        Ok(true)
    } else {
        println!(
            "chaos: FAIL, {} violations (seed {seed}):",
            violations.len()
        );
        for v in violations.iter().take(50) {
            println!("  {v}");
        }
        println!("{}", env.dump());
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gateway_started_after_the_signature_excuses_its_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profile {
            name: "p".into(),
            port: 1,
            secret: "s".into(),
            state_file: dir.path().join("gateway_state.json"),
        };
        assert!(!started_after(&p, 100), "no state file");
        fs::write(&p.state_file, r#"{"started_at":101000,"pid":7}"#).unwrap();
        assert!(started_after(&p, 100));
        assert!(!started_after(&p, 101), "the same second is not refused");
        fs::write(&p.state_file, r#"{"pid":7}"#).unwrap();
        assert!(!started_after(&p, 100), "no start recorded");
    }
}
