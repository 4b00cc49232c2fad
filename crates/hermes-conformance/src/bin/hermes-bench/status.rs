//! The status round trip at N profiles, every gateway up: `hermes status`,
//! `status --json` and the dashboard's `GET /api/status` (what it polls
//! every 2 s), against raw s6 (`s6-svstat` on every slot, one process
//! each: the floor for asking s6 about every slot) and supervisord
//! (`supervisorctl status` over the same gateways), in one run. Rounds
//! alternate the commands, so all see the same machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hermes_testkit::{free_port, hermes_bin, http, poll, text_of, Env};

use crate::control::{wait_healthy, POLL};
use crate::figure::{ms_since, Measured};
use crate::fleet::{create_profiles, PortRange};
use crate::supervisord::Supervisord;
use crate::work_parent;

#[derive(clap::Args)]
pub struct Options {
    /// Profile counts, one tree each.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sizes: Vec<usize>,
    /// Samples of each figure per tree.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Skip supervisord (when it is not installed).
    #[arg(long)]
    no_supervisord: bool,
    /// Another hermes binary (e.g. main's) timed on the same tree in the
    /// same rounds: a before/after figure.
    #[arg(long)]
    before: Option<PathBuf>,
}

/// Setting a tree up slower than this is a failure.
const LIMIT: Duration = Duration::from_secs(300);
const TOKEN: &str = "bench-token-0123456789abcdef0123";

struct Row {
    n: usize,
    figures: Vec<Measured>,
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let bin = hermes_bin();
    println!(
        "hermes-bench status: {} · {} CPUs · {} runs · binary {}{}",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.runs,
        bin.display(),
        opts.before
            .as_ref()
            .map(|b| format!(" · before {}", b.display()))
            .unwrap_or_default()
    );
    let mut rows = Vec::new();
    for &n in &opts.sizes {
        let mut figures = s6_tree(n, opts.runs, &bin, opts.before.as_deref())?;
        if !opts.no_supervisord {
            figures.push(supervisord_status(n, opts.runs, &bin)?);
        }
        println!("== {n} profiles, every gateway up (load {})", load());
        for m in &figures {
            println!("  {}: {} ms", m.what, cell(m));
            for failure in &m.failures {
                println!("    failure: {failure}");
            }
        }
        rows.push(Row { n, figures });
    }
    print_table(&rows);
    Ok(rows
        .iter()
        .all(|r| r.figures.iter().all(|m| m.failures.is_empty())))
}

fn print_table(rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    println!();
    let heads: Vec<&str> = first
        .figures
        .iter()
        .map(|m| m.what.split(':').next().unwrap_or(&m.what))
        .collect();
    println!("| profiles | {} |", heads.join(" | "));
    println!("|---:|{}", "---:|".repeat(heads.len()));
    for r in rows {
        let cells: Vec<String> = r.figures.iter().map(cell).collect();
        println!("| {} | {} |", r.n, cells.join(" | "));
    }
    // What one more profile costs: the slope from the smallest tree.
    if let (Some(small), Some(large)) = (rows.first(), rows.last()) {
        if large.n > small.n {
            let slopes: Vec<String> = small
                .figures
                .iter()
                .zip(&large.figures)
                .map(|(a, b)| match (&a.summary, &b.summary) {
                    (Some(a), Some(b)) => {
                        format!("{:.3}", (b.median - a.median) / (large.n - small.n) as f64)
                    }
                    _ => "-".to_string(),
                })
                .collect();
            println!(
                "| ms per profile, {}→{} | {} |",
                small.n,
                large.n,
                slopes.join(" | ")
            );
        }
    }
    println!("\nEach cell: median (p95) in ms; every command timed spawn → exit.");
}

fn cell(m: &Measured) -> String {
    match &m.summary {
        Some(s) => format!("{:.1} ({:.1})", s.median, s.p95),
        None => format!("failed: {}", m.failures.join("; ")),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// One timed sample: `Ok(ms)` when `ok` holds for what ran, else why not.
type Sample = Result<f64, String>;

/// One figure's samples, and why the others failed.
struct Series {
    what: String,
    samples: Vec<f64>,
    failures: Vec<String>,
}

impl Series {
    fn new(what: String) -> Series {
        Series {
            what,
            samples: Vec::new(),
            failures: Vec::new(),
        }
    }
    fn push(&mut self, sample: Sample) {
        match sample {
            Ok(ms) => self.samples.push(ms),
            Err(e) => self.failures.push(e),
        }
    }
    fn done(self) -> Measured {
        Measured::new(self.what, self.samples, self.failures)
    }
}

/// Spawn → exit of `cmd`; a failure when it does not exit 0 or its
/// stdout lacks `expect`.
fn timed(cmd: &mut Command, expect: &str) -> Sample {
    let t0 = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let ms = ms_since(t0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains(expect) {
        Ok(ms)
    } else {
        Err(first_lines(&text_of(&out)))
    }
}

fn s6_tree(
    n: usize,
    runs: usize,
    bin: &Path,
    before: Option<&Path>,
) -> anyhow::Result<Vec<Measured>> {
    let mut env = Env::in_dir(&work_parent(), bin.to_path_buf());
    env.vars
        .push(("HERMES_MAX_SLOTS".to_string(), n.max(16).to_string()));
    env.vars
        .push(("HERMES_DASHBOARD_TOKEN".to_string(), TOKEN.to_string()));
    env.supervise();
    let names = create_profiles(&env, n, &mut PortRange::new())?;
    env.try_ok(&["gateway", "start", "--all", "--timeout", "300"])
        .map_err(anyhow::Error::msg)?;
    for name in &names {
        if !wait_healthy(env.port_of(name), LIMIT) {
            bail!("{n} profiles: {name} never answered /health");
        }
    }
    let slots: Vec<PathBuf> = names.iter().map(|p| env.slot(p)).collect();
    let dashboard = Dashboard::start(&env)?;
    let all_up = format!("{n} up,");

    let mut version = Series::new(format!(
        "`hermes --version`: the process floor ({n} profiles)"
    ));
    let mut text = Series::new(format!("`hermes status`: {n} profiles"));
    let mut json = Series::new(format!("`hermes status --json`: {n} profiles"));
    let mut api = Series::new(format!(
        "`GET /api/status`: the dashboard's answer to one poll, {n} profiles"
    ));
    let mut raw = Series::new(format!(
        "`s6-svstat` on every slot: one process a slot, one after another, {n} slots"
    ));
    let mut old = before.map(|b| {
        Series::new(format!(
            "before (`{}`) `hermes status`: {n} profiles",
            b.display()
        ))
    });
    // Warm the page cache and the dashboard's first collection.
    timed(&mut env.command(&["status"]), &all_up).map_err(anyhow::Error::msg)?;
    dashboard.status(n).map_err(anyhow::Error::msg)?;
    for _ in 0..runs {
        version.push(timed(&mut env.command(&["--version"]), "hermes"));
        text.push(timed(&mut env.command(&["status"]), &all_up));
        json.push(timed(
            &mut env.command(&["status", "--json"]),
            "\"gateways\"",
        ));
        api.push(dashboard.status(n));
        raw.push(svstat_all(&slots));
        if let (Some(series), Some(b)) = (old.as_mut(), before) {
            series.push(timed(&mut run_by(&env.command(&["status"]), b), &all_up));
        }
    }
    drop(dashboard);
    env.try_ok(&["gateway", "stop", "--all", "--timeout", "300"])
        .map_err(anyhow::Error::msg)?;
    env.stop_supervisor(LIMIT);
    let mut figures = vec![text.done(), json.done(), api.done()];
    figures.extend(old.map(Series::done));
    figures.push(raw.done());
    figures.push(version.done());
    Ok(figures)
}

/// `cmd` (its arguments and environment) run by another binary.
fn run_by(cmd: &Command, program: &Path) -> Command {
    let mut other = Command::new(program);
    other.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => other.env(k, v),
            None => other.env_remove(k),
        };
    }
    other
}

/// `s6-svstat` on every slot, one after the other, each exiting 0.
fn svstat_all(slots: &[PathBuf]) -> Sample {
    let t0 = Instant::now();
    for slot in slots {
        let out = Command::new("s6-svstat")
            .arg(slot)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn s6-svstat: {e}"))?;
        if !out.status.success() || !out.stdout.starts_with(b"up") {
            return Err(format!(
                "s6-svstat {}: {}",
                slot.display(),
                first_lines(&text_of(&out))
            ));
        }
    }
    Ok(ms_since(t0))
}

/// How long the dashboard reuses one collection for `GET /api/status`
/// (hermes-dashboard's `SNAPSHOT_REUSE`), with a margin.
const DASHBOARD_REUSE: Duration = Duration::from_millis(1100);

/// `hermes dashboard` on a free loopback port, for as long as this lives.
struct Dashboard {
    child: Child,
    port: u16,
    /// When the last answer was collected.
    last: std::cell::Cell<Instant>,
}

impl Dashboard {
    fn start(env: &Env) -> anyhow::Result<Dashboard> {
        let port = free_port();
        let child = env
            .command(&["dashboard", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn hermes dashboard")?;
        let d = Dashboard {
            child,
            port,
            last: std::cell::Cell::new(Instant::now()),
        };
        if !poll(Duration::from_secs(20), POLL, || {
            http::get(port, "/api/session", &[("Authorization", &bearer())])
                .is_some_and(|r| r.status == 200)
        }) {
            bail!("the dashboard did not answer on port {port}");
        }
        Ok(d)
    }

    /// One `GET /api/status`, request → whole answer, which must count `n`
    /// gateways up. Each is a fresh collection, as a poll every 2 s is: the
    /// answer the dashboard reuses for a second is waited out first.
    fn status(&self, n: usize) -> Sample {
        std::thread::sleep(DASHBOARD_REUSE.saturating_sub(self.last.get().elapsed()));
        let t0 = Instant::now();
        let answer = http::get(self.port, "/api/status", &[("Authorization", &bearer())]);
        let ms = ms_since(t0);
        self.last.set(Instant::now());
        let answer = answer.ok_or("no answer to GET /api/status")?;
        let up = answer.json()["summary"]["up"].as_u64();
        if answer.status == 200 && up == Some(n as u64) {
            Ok(ms)
        } else {
            Err(format!(
                "GET /api/status: {} with {up:?} of {n} up",
                answer.status
            ))
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `supervisorctl status` over `n` running gateways (every program listed).
fn supervisord_status(n: usize, runs: usize, bin: &Path) -> anyhow::Result<Measured> {
    let sd = Supervisord::start(&work_parent(), bin.to_path_buf())?;
    let names = create_profiles(&sd.env, n, &mut PortRange::new())?;
    for name in &names {
        sd.write_program(name, true)?;
    }
    sd.ctl_ok(&["update"])?;
    sd.ctl_ok(&["start", "all"])?;
    for name in &names {
        if !wait_healthy(sd.env.port_of(name), LIMIT) {
            bail!("supervisord, {n} profiles: {name} never answered /health");
        }
    }
    let mut series = Series::new(format!(
        "`supervisorctl status`: supervisord over the same {n} gateways"
    ));
    let last = names.last().map(String::as_str).unwrap_or_default();
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = sd.ctl(&["status"]);
        let ms = ms_since(t0);
        let text = text_of(&out);
        let running = text.lines().filter(|l| l.contains("RUNNING")).count();
        if running == n && text.contains(last) {
            series.push(Ok(ms));
        } else {
            series.push(Err(format!(
                "{running} of {n} RUNNING: {}",
                first_lines(&text)
            )));
        }
    }
    sd.ctl_ok(&["stop", "all"])?;
    Ok(series.done())
}

fn first_lines(text: &str) -> String {
    text.lines().take(5).collect::<Vec<_>>().join(" | ")
}
