//! Scale: N profile slots on one supervisor — register, start, stop, memory,
//! teardown — for N in {100, 500, 1000}. The per-slot columns are what should
//! stay flat if the cost curve is linear.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;

use hermes_testkit::{http, procs};
use hermes_testkit::{text_of, Env};

use crate::control::{kill_and_time_recovery, Ports};
use crate::figure::{ms_since, Measured};

#[derive(Debug, Serialize)]
pub struct ScaleRun {
    pub n: usize,
    /// The s6-svscan command line, which shows the service cap in force.
    pub svscan_argv: Vec<String>,
    /// Each `profile create` (which registers the slot and waits for its s6-supervise).
    pub register: Measured,
    pub register_total_ms: f64,
    pub start_all_ms: f64,
    /// ms per slot over the first and the last tenth of `start --all`'s
    /// output lines: equal when each start costs the same however many run.
    pub start_pace_ms: (f64, f64),
    pub healthy: usize,
    pub stop_all_ms: f64,
    pub stop_pace_ms: (f64, f64),
    pub teardown_ms: f64,
    pub tree_rss_kb: u64,
    pub tree_pss_kb: u64,
    pub gateways_rss_kb: u64,
    pub gateways_pss_kb: u64,
    pub supervise_procs: usize,
    pub log_procs: usize,
    pub gateways: usize,
    /// SIGKILL of a settled gateway with N slots running.
    pub restart: Measured,
    pub failures: Vec<String>,
}

pub fn run(parent: &Path, bin: PathBuf, n: usize, restarts: usize) -> anyhow::Result<ScaleRun> {
    let mut env = Env::in_dir(parent, bin);
    env.vars
        .push(("HERMES_MAX_SLOTS".to_string(), n.to_string()));
    env.supervise();
    let svscan = env.supervisor_pid().expect("supervisor running");
    let svscan_argv = procs::read(svscan).map(|p| p.argv).unwrap_or_default();
    let mut ports = Ports::for_env(&env);
    let mut failures = Vec::new();

    // Only the profiles created go on; a failed create is reported, not fatal.
    let mut names = Vec::with_capacity(n);
    let mut register = Vec::new();
    let mut register_fail = Vec::new();
    let t_all = Instant::now();
    for name in (0..n).map(|i| format!("s{i:04}")) {
        let port = ports.next().to_string();
        let t0 = Instant::now();
        let out = env.run(&["profile", "create", &name, "--no-alias", "--port", &port]);
        if out.status.success() {
            register.push(ms_since(t0));
            names.push(name);
        } else {
            register_fail.push(format!(
                "profile create {name} --port {port}: {}",
                text_of(&out)
            ));
        }
    }
    let register_total_ms = ms_since(t_all);

    let (start_all_ms, start_pace_ms, out) =
        timed_lines(&env, &["gateway", "start", "--all", "--timeout", "60"])?;
    if !out.status.success() {
        let text = text_of(&out);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("up and ready"))
            .take(10)
            .collect();
        failures.push(format!("gateway start --all failed: {}", lines.join(" | ")));
    }
    let healthy = names
        .iter()
        .filter(|name| http::healthy(env.port_of(name)))
        .count();
    std::thread::sleep(Duration::from_millis(2200));

    let tree = procs::descendants(svscan);
    let mut m = Mem::default();
    m.add_tree(procs::read(svscan).as_ref());
    for p in &tree {
        match p.comm.as_str() {
            "s6-supervise" => {
                m.supervise += 1;
                m.add_tree(Some(p));
            }
            "s6-log" => {
                m.log += 1;
                m.add_tree(Some(p));
            }
            // `hermes -p P gateway run`, or its slot's run script read by hermes.
            "hermes"
                if p.argv
                    .iter()
                    .any(|a| a == "run" || a == hermes_s6::run_script::INTERPRETER_ARG) =>
            {
                m.gateways += 1;
                m.gw_rss += procs::rss_kb(p.pid).unwrap_or(0);
                m.gw_pss += procs::pss_kb(p.pid).unwrap_or(0);
            }
            _ => {}
        }
    }

    let (mut restart, mut restart_fail) = (vec![], vec![]);
    for name in names.iter().take(restarts) {
        let port = env.port_of(name);
        match crate::control::gateway_pid(&env, name) {
            Some(pid) => match kill_and_time_recovery(pid, port, Signal::SIGKILL) {
                Ok(ms) => restart.push(ms),
                Err(e) => restart_fail.push(e),
            },
            None => restart_fail.push(format!("{name}: no pid")),
        }
    }

    let (stop_all_ms, stop_pace_ms, out) =
        timed_lines(&env, &["gateway", "stop", "--all", "--timeout", "60"])?;
    if !out.status.success() {
        failures.push(format!("gateway stop --all failed: {}", text_of(&out)));
    }
    let t0 = Instant::now();
    env.stop_supervisor(Duration::from_secs(120));
    let teardown_ms = ms_since(t0);

    Ok(ScaleRun {
        n,
        svscan_argv,
        register: Measured::new(
            format!("each of {n} `profile create` (registers and waits for supervision)"),
            register,
            register_fail,
        ),
        register_total_ms,
        start_all_ms,
        start_pace_ms,
        healthy,
        stop_all_ms,
        stop_pace_ms,
        teardown_ms,
        tree_rss_kb: m.tree_rss,
        tree_pss_kb: m.tree_pss,
        gateways_rss_kb: m.gw_rss,
        gateways_pss_kb: m.gw_pss,
        supervise_procs: m.supervise,
        log_procs: m.log,
        gateways: m.gateways,
        restart: Measured::new(
            format!("{n} slots: SIGKILL of a gateway up > 2 s → /health 200"),
            restart,
            restart_fail,
        ),
        failures,
    })
}

/// Run hermes, stamping each stdout line (one per slot for `--all`) as it
/// arrives: the total ms, the pace over the first and last tenth of the
/// lines, and the output.
fn timed_lines(env: &Env, args: &[&str]) -> anyhow::Result<(f64, (f64, f64), Output)> {
    let t0 = Instant::now();
    let mut child = env
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stamps = Vec::new();
    let mut text = Vec::new();
    for line in BufReader::new(stdout).split(b'\n') {
        stamps.push(ms_since(t0));
        text.extend(line?);
        text.push(b'\n');
    }
    let mut out = child.wait_with_output()?;
    let total = ms_since(t0);
    out.stdout = text;
    let tenth = (stamps.len() / 10).max(1);
    let pace = if stamps.len() > tenth {
        let last = stamps.len() - 1;
        (
            stamps[tenth - 1] / tenth as f64,
            (stamps[last] - stamps[last - tenth]) / tenth as f64,
        )
    } else {
        (0.0, 0.0)
    };
    Ok((total, pace, out))
}

#[derive(Default)]
struct Mem {
    tree_rss: u64,
    tree_pss: u64,
    gw_rss: u64,
    gw_pss: u64,
    supervise: usize,
    log: usize,
    gateways: usize,
}

impl Mem {
    fn add_tree(&mut self, p: Option<&procs::Proc>) {
        if let Some(p) = p {
            self.tree_rss += procs::rss_kb(p.pid).unwrap_or(0);
            self.tree_pss += procs::pss_kb(p.pid).unwrap_or(0);
        }
    }
}
