//! Scale: N profile slots on one supervisor — register, start, stop, memory,
//! teardown — for N in {100, 500, 1000}. The per-slot columns are what should
//! stay flat if the cost curve is linear.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use hermes_conformance::harness::{text_of, Env};
use hermes_conformance::{http, procs};

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
    pub healthy: usize,
    pub stop_all_ms: f64,
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
    let mut ports = Ports::new();
    let mut failures = Vec::new();

    let names: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    let mut register = Vec::new();
    let mut register_fail = Vec::new();
    let t_all = Instant::now();
    for name in &names {
        let port = ports.next().to_string();
        let t0 = Instant::now();
        let out = env.run(&["profile", "create", name, "--no-alias", "--port", &port]);
        if out.status.success() {
            register.push(ms_since(t0));
        } else {
            register_fail.push(format!("{name}: {}", text_of(&out)));
        }
    }
    let register_total_ms = ms_since(t_all);

    let t0 = Instant::now();
    let out = env.run(&["gateway", "start", "--all", "--timeout", "60"]);
    let start_all_ms = ms_since(t0);
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
            "hermes" if p.argv.iter().any(|a| a == "run") => {
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
            Some(pid) => match kill_and_time_recovery(pid, port) {
                Ok(ms) => restart.push(ms),
                Err(e) => restart_fail.push(e),
            },
            None => restart_fail.push(format!("{name}: no pid")),
        }
    }

    let t0 = Instant::now();
    let out = env.run(&["gateway", "stop", "--all", "--timeout", "60"]);
    let stop_all_ms = ms_since(t0);
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
        healthy,
        stop_all_ms,
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
