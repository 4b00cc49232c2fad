//! Control-plane and recovery figures for hermes on s6: one supervisor, the
//! real CLI, timed from the moment the command is spawned (or the gateway is
//! killed) to the moment the outcome is observable from outside.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use hermes_testkit::{free_port, poll, render_output, slot_supervised, text_of, Env};
use hermes_testkit::{http, procs};

use crate::figure::{ms_since, Measured};

/// How often the benchmarks poll: fine enough that it adds at most 1 ms.
pub const POLL: Duration = Duration::from_millis(1);
/// Anything slower than this is a failure, not a sample.
const LIMIT: Duration = Duration::from_secs(30);
/// s6-supervise restarts at once only a service that was ready for over 1 s;
/// 2 s is the "up > 2 s" case of the brief.
const SETTLED: Duration = Duration::from_millis(2200);
/// The finish policy parks a slot at the 5th failure in a row within 10 s.
pub const CRASH_STEPS: usize = 4;

pub struct Results {
    pub status: Measured,
    pub svstat: Measured,
    pub create: Measured,
    pub start: Measured,
    pub stop: Measured,
    pub recovery: Measured,
    /// One entry per fast failure in a row (1st, 2nd, ...).
    pub crash_loop: Vec<Measured>,
    /// What happened at the failure after the last measured step.
    pub crash_loop_end: Vec<String>,
    pub idle_rss_kb: Measured,
    pub idle_pss_kb: Measured,
    pub tree_rss_kb: Measured,
}

/// Ports handed out by the OS for distinct profiles in one run.
pub struct Ports(HashSet<u16>);

impl Ports {
    pub fn new() -> Self {
        Ports(HashSet::new())
    }
    /// Ports for profiles of `env`, never the one its default profile has.
    pub fn for_env(env: &Env) -> Self {
        Ports(HashSet::from([env.port_of("default")]))
    }
    pub fn next(&mut self) -> u16 {
        loop {
            let p = free_port();
            if self.0.insert(p) {
                return p;
            }
        }
    }
}

pub fn hermes(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    env.try_ok(args).map_err(anyhow::Error::msg)
}

pub fn gateway_pid(env: &Env, profile: &str) -> Option<u32> {
    let out = env.run(&["-p", profile, "gateway", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("pid")?.as_u64().map(|p| p as u32)
}

pub fn wait_healthy(port: u16, limit: Duration) -> bool {
    poll(limit, POLL, || http::healthy(port))
}

/// Send `signal` to `pid`, wait until it is really gone, then time until `/health` answers 200.
/// SIGKILL is a death from outside; SIGABRT stands in for a crash of the gateway's own,
/// which is what the finish policy counts toward parking.
pub fn kill_and_time_recovery(pid: u32, port: u16, signal: Signal) -> Result<f64, String> {
    let t0 = Instant::now();
    kill(Pid::from_raw(pid as i32), signal).map_err(|e| format!("kill {pid}: {e}"))?;
    if !poll(LIMIT, Duration::from_micros(200), || !procs::alive(pid)) {
        return Err(format!("pid {pid} still alive after {signal}"));
    }
    if !wait_healthy(port, LIMIT) {
        return Err(format!("no /health 200 on port {port} within {LIMIT:?}"));
    }
    Ok(ms_since(t0))
}

fn timed(cmd: &mut Command) -> (f64, std::process::Output) {
    let t0 = Instant::now();
    let out = cmd.output().expect("spawn");
    (ms_since(t0), out)
}

/// Restart a parked slot. `gateway restart` can report the old crash-loop
/// failure although the gateway comes up (see the report's bug list); the
/// benchmark notes it and goes on once `/health` answers.
fn restart_parked(
    env: &Env,
    profile: &str,
    port: u16,
    cycle: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let out = env.run(&["-p", profile, "gateway", "restart"]);
    if !wait_healthy(port, Duration::from_secs(10)) {
        bail!(
            "{}\n{}",
            render_output(&format!("hermes -p {profile} gateway restart"), &out),
            env.dump()
        );
    }
    if !out.status.success() {
        notes.push(format!(
            "cycle {cycle}: `gateway restart` of the parked slot exited {:?} although the gateway came up: {}",
            out.status.code(),
            text_of(&out).lines().next().unwrap_or("")
        ));
    }
    Ok(())
}

pub fn run(
    parent: &std::path::Path,
    bin: PathBuf,
    runs: usize,
    crash_cycles: usize,
) -> anyhow::Result<Results> {
    let mut env = Env::in_dir(parent, bin);
    env.supervise();
    let mut ports = Ports::for_env(&env);

    // profile create → slot supervised (create waits for s6-supervise; the poll confirms it).
    let (mut create, mut create_fail) = (Vec::new(), Vec::new());
    let mut names = Vec::new();
    for i in 0..runs {
        let name = format!("c{i:03}");
        let port = ports.next().to_string();
        let t0 = Instant::now();
        let out = env.run(&["profile", "create", &name, "--port", &port]);
        let supervised = poll(LIMIT, POLL, || slot_supervised(&env, &name));
        let ms = ms_since(t0);
        if !out.status.success() || !supervised {
            create_fail.push(format!(
                "{name}: supervised={supervised}: {}",
                text_of(&out)
            ));
        } else {
            create.push(ms);
            names.push(name);
        }
    }

    let bench = names
        .first()
        .context("no profile could be created")?
        .clone();
    let port = env.port_of(&bench);

    // gateway start → /health 200, and gateway stop (command wall time; port closed after).
    let (mut start, mut start_fail, mut stop, mut stop_fail) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = env.run(&["-p", &bench, "gateway", "start"]);
        let ok = wait_healthy(port, LIMIT);
        let ms = ms_since(t0);
        if out.status.success() && ok {
            start.push(ms);
        } else {
            start_fail.push(format!("healthy={ok}: {}", text_of(&out)));
        }
        let (ms, out) = timed(&mut env.command(&["-p", &bench, "gateway", "stop"]));
        if out.status.success() && !http::healthy(port) {
            stop.push(ms);
        } else {
            stop_fail.push(text_of(&out));
        }
    }

    // gateway status round trip, with the gateway up; raw s6-svstat as the floor.
    hermes(&env, &["-p", &bench, "gateway", "start"])?;
    let slot = env.slot(&bench);
    let (mut status, mut status_fail, mut svstat) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        let (ms, out) = timed(&mut env.command(&["-p", &bench, "gateway", "status"]));
        if out.status.success() {
            status.push(ms);
        } else {
            status_fail.push(text_of(&out));
        }
        let (ms, _) = timed(Command::new("s6-svstat").arg(&slot));
        svstat.push(ms);
    }

    // kill -9 of a gateway that has been up > 2 s → /health 200 again. The
    // finish policy counts a death within 10 s of starting as a fast failure
    // (back-off 0, 0.5, 1, 2 s, parked at the 5th), so each run starts from a
    // requested restart, which clears the count: this is one crash of a
    // settled gateway, not a crash loop (measured below).
    let (mut recovery, mut recovery_fail) = (vec![], vec![]);
    for _ in 0..runs {
        hermes(&env, &["-p", &bench, "gateway", "restart"])?;
        std::thread::sleep(SETTLED);
        match gateway_pid(&env, &bench) {
            Some(pid) => match kill_and_time_recovery(pid, port, Signal::SIGKILL) {
                Ok(ms) => recovery.push(ms),
                Err(e) => recovery_fail.push(e),
            },
            None => recovery_fail.push("no pid in gateway status".to_string()),
        }
    }

    // A crash loop: kill it again as soon as it answers, CRASH_STEPS times, then once more.
    let mut crash: Vec<Vec<f64>> = vec![Vec::new(); CRASH_STEPS];
    let mut crash_fail: Vec<Vec<String>> = vec![Vec::new(); CRASH_STEPS];
    let mut crash_end = Vec::new();
    for cycle in 0..crash_cycles {
        // Bring a parked slot back, then restart it once more: the finish hook
        // clears the failure count only on a requested stop (SIGTERM), so the
        // cycle starts from zero failures whatever the previous one left.
        restart_parked(&env, &bench, port, cycle, &mut crash_end)?;
        std::thread::sleep(SETTLED);
        hermes(&env, &["-p", &bench, "gateway", "restart"])?;
        for step in 0..CRASH_STEPS {
            let Some(pid) = gateway_pid(&env, &bench) else {
                crash_fail[step].push(format!("cycle {cycle}: no pid"));
                break;
            };
            match kill_and_time_recovery(pid, port, Signal::SIGABRT) {
                Ok(ms) => crash[step].push(ms),
                Err(e) => {
                    crash_fail[step].push(format!("cycle {cycle}: {e}"));
                    break;
                }
            }
        }
        if let Some(pid) = gateway_pid(&env, &bench) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGABRT);
            let back = wait_healthy(port, Duration::from_secs(8));
            let st = env.status(&bench);
            crash_end.push(format!(
                "cycle {cycle}: after failure {}: {} (gateway_state={}, exit_reason={})",
                CRASH_STEPS + 1,
                if back { "restarted" } else { "stays down" },
                st["gateway_state"],
                st["exit_reason"]
            ));
        }
    }
    let crash_loop = crash
        .into_iter()
        .zip(crash_fail)
        .enumerate()
        .map(|(i, (s, f))| {
            Measured::new(
                format!(
                    "failure {} in a row (gateway up < 1 s): SIGABRT → /health 200",
                    i + 1
                ),
                s,
                f,
            )
        })
        .collect();

    // Idle memory: every created profile's gateway up and idle for 2 s.
    hermes(&env, &["gateway", "start", "--all"])?;
    std::thread::sleep(SETTLED);
    let (mut rss, mut pss, mut tree, mut mem_fail) = (vec![], vec![], vec![], vec![]);
    let svscan = env.supervisor_pid().context("supervisor pid")?;
    let procs_now = procs::descendants(svscan);
    for name in &names {
        let Some(pid) = gateway_pid(&env, name) else {
            mem_fail.push(format!("{name}: no pid"));
            continue;
        };
        match (procs::rss_kb(pid), procs::pss_kb(pid)) {
            (Some(r), Some(p)) => {
                rss.push(r as f64);
                pss.push(p as f64);
            }
            _ => mem_fail.push(format!("{name}: pid {pid} unreadable")),
        }
        // This slot's s6-supervise pair and its s6-log.
        let service = format!("gateway-{name}");
        let sup: Vec<&procs::Proc> = procs_now
            .iter()
            .filter(|p| {
                p.comm == "s6-supervise"
                    && p.argv
                        .get(1)
                        .is_some_and(|a| *a == service || *a == format!("{service}/log"))
            })
            .collect();
        let mut kb = 0;
        for s in &sup {
            kb += procs::rss_kb(s.pid).unwrap_or(0);
            for child in procs_now
                .iter()
                .filter(|c| c.ppid == s.pid && c.comm == "s6-log")
            {
                kb += procs::rss_kb(child.pid).unwrap_or(0);
            }
        }
        tree.push(kb as f64);
    }
    hermes(&env, &["gateway", "stop", "--all"])?;
    env.stop_supervisor(Duration::from_secs(60));

    Ok(Results {
        status: Measured::new(
            format!("`hermes -p {bench} gateway status` (gateway up), spawn → exit"),
            status,
            status_fail,
        ),
        svstat: Measured::new(
            "`s6-svstat <slot>`, spawn → exit (raw s6 floor)",
            svstat,
            vec![],
        ),
        create: Measured::new(
            "`hermes profile create NAME --port P` spawn → slot's supervise/control has a reader",
            create,
            create_fail,
        ),
        start: Measured::new(
            format!("`hermes -p {bench} gateway start` spawn → GET /health 200"),
            start,
            start_fail,
        ),
        stop: Measured::new(
            format!("`hermes -p {bench} gateway stop` spawn → exit (port closed after)"),
            stop,
            stop_fail,
        ),
        recovery: Measured::new(
            "SIGKILL of a gateway up > 2 s → GET /health 200",
            recovery,
            recovery_fail,
        ),
        crash_loop,
        crash_loop_end: crash_end,
        idle_rss_kb: Measured::new("gateway VmRSS after 2 s idle", rss, mem_fail.clone()),
        idle_pss_kb: Measured::new("gateway Pss after 2 s idle", pss, mem_fail),
        tree_rss_kb: Measured::new("VmRSS of one slot's s6-supervise ×2 + s6-log", tree, vec![]),
    })
}
