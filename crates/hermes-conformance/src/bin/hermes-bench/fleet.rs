//! Fleet operations: `gateway start --all` and `stop --all` at N profiles,
//! against raw s6 (`s6-svc -u` on every slot, then poll every slot's
//! `supervise/status` until up and ready; `-d`, then until down) on the
//! same tree, and supervisord (`supervisorctl start all` until every
//! `/health` answers; `stop all`) on the same gateways, in one run.
//! With `--baseline-bin` (say main's build), that binary gets a tree of its
//! own (its gateways too), timed in the same rounds. Each tree is started
//! and stopped once untimed first; rounds alternate the trees and raw s6,
//! so each sees the same machine; the load average is printed with every
//! fleet.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use hermes_s6::svstat::{self, Direct};
use hermes_testkit::{hermes_bin, http, poll, text_of, Env};

use crate::control::{wait_healthy, POLL};
use crate::figure::{ms_since, Measured};
use crate::supervisord::Supervisord;
use crate::work_parent;

#[derive(clap::Args)]
pub struct Options {
    /// Profile counts, one fleet each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    sizes: Vec<usize>,
    /// Rounds of start then stop per fleet and per supervisor.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip supervisord (when it is not installed).
    #[arg(long)]
    no_supervisord: bool,
    /// Another hermes binary (say main's release build) to time on a tree
    /// of its own in the same rounds: the before of a before/after.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Put the trees' scandirs here instead of beside their homes (a
    /// tmpfs, as `docker run --tmpfs /run:exec -v …` lays a container out).
    #[arg(long)]
    scandirs_in: Option<PathBuf>,
}

/// Anything slower is a failure, not a sample.
const LIMIT: Duration = Duration::from_secs(300);
/// Gateway ports start here, below the kernel's ephemeral range, so no
/// client connection (the benchmark's own health checks) ever holds one.
const FIRST_PORT: u16 = 10_000;

/// The figures of one tree: its binary's `--all` and raw s6 on its slots.
struct TreeFigures {
    label: String,
    start: Measured,
    stop: Measured,
    raw_start: Measured,
    raw_stop: Measured,
}

struct Fleet {
    n: usize,
    trees: Vec<TreeFigures>,
    sd_start: Option<Measured>,
    sd_stop: Option<Measured>,
    load_before: String,
    load_after: String,
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let bin = hermes_bin();
    let biggest = opts.sizes.iter().copied().max().unwrap_or(0);
    let (nofile, nproc) = raise_limits(biggest)?;
    let mut bins = vec![("hermes".to_string(), bin.clone())];
    if let Some(base) = &opts.baseline_bin {
        let base = std::fs::canonicalize(base)
            .with_context(|| format!("--baseline-bin {}", base.display()))?;
        bins.push(("baseline".to_string(), base));
    }
    println!(
        "hermes-bench fleet: {} · {} CPUs · rounds {} · trees in {} ({}){} · RLIMIT_NOFILE {nofile} · RLIMIT_NPROC {nproc}",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.runs,
        work_parent().display(),
        fs_type(&work_parent()),
        opts.scandirs_in.as_ref().map_or(String::new(), |d| format!(
            ", their scandirs in {} ({})",
            d.display(),
            fs_type(d)
        )),
    );
    for (label, b) in &bins {
        println!("  {label}: {}", b.display());
    }
    let mut fleets = Vec::new();
    for &n in &opts.sizes {
        let load_before = loadavg();
        let trees = s6_fleet(n, opts.runs, &bins, opts.scandirs_in.as_deref())?;
        let (sd_start, sd_stop) = if opts.no_supervisord {
            (None, None)
        } else {
            let (a, b) = supervisord_fleet(n, opts.runs, &bin)?;
            (Some(a), Some(b))
        };
        let fleet = Fleet {
            n,
            trees,
            sd_start,
            sd_stop,
            load_before,
            load_after: loadavg(),
        };
        print_fleet(&fleet);
        fleets.push(fleet);
    }
    Ok(print_table(&fleets))
}

/// The markdown table of every fleet; whether every round succeeded.
fn print_table(fleets: &[Fleet]) -> bool {
    let Some(first) = fleets.first() else {
        return true;
    };
    let labels: Vec<&str> = first.trees.iter().map(|t| t.label.as_str()).collect();
    let mut head = vec!["profiles".to_string()];
    for verb in ["start", "stop"] {
        for label in &labels {
            head.push(format!("{label} `{verb} --all`"));
        }
        let flag = if verb == "start" { "-u" } else { "-d" };
        for label in &labels {
            head.push(format!("raw s6 `{flag}` + poll ({label}'s tree)"));
        }
        head.push(format!("supervisord `{verb} all`"));
    }
    head.push("load (1 min, before → after)".to_string());
    println!();
    println!("| {} |", head.join(" | "));
    println!("|{}", "---:|".repeat(head.len()));
    let sd = |m: &Option<Measured>| m.as_ref().map_or("-".to_string(), cell);
    let mut clean = true;
    for f in fleets {
        let mut row = vec![f.n.to_string()];
        row.extend(f.trees.iter().map(|t| cell(&t.start)));
        row.extend(f.trees.iter().map(|t| cell(&t.raw_start)));
        row.push(sd(&f.sd_start));
        row.extend(f.trees.iter().map(|t| cell(&t.stop)));
        row.extend(f.trees.iter().map(|t| cell(&t.raw_stop)));
        row.push(sd(&f.sd_stop));
        row.push(format!("{} → {}", f.load_before, f.load_after));
        println!("| {} |", row.join(" | "));
        for t in &f.trees {
            clean &= [&t.start, &t.stop, &t.raw_start, &t.raw_stop]
                .iter()
                .all(|m| m.failures.is_empty());
        }
        clean &= [&f.sd_start, &f.sd_stop]
            .iter()
            .all(|m| m.as_ref().is_none_or(|m| m.failures.is_empty()));
    }
    println!("\nEach cell: median (min–max) in ms over the rounds.");
    clean
}

/// `median (min–max)` of a figure's samples, or why it has none.
fn cell(m: &Measured) -> String {
    match &m.summary {
        Some(s) => {
            let min = m.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = m.samples.iter().copied().fold(0.0, f64::max);
            format!("{:.0} ({min:.0}–{max:.0})", s.median)
        }
        None => format!("failed: {}", m.failures.join("; ")),
    }
}

fn print_fleet(f: &Fleet) {
    println!(
        "== {} profiles (load {} → {})",
        f.n, f.load_before, f.load_after
    );
    let mut rows = Vec::new();
    for t in &f.trees {
        rows.extend([&t.start, &t.raw_start, &t.stop, &t.raw_stop]);
    }
    rows.extend(f.sd_start.iter());
    rows.extend(f.sd_stop.iter());
    for m in rows {
        println!("  {}: {} ms", m.what, cell(m));
        for failure in &m.failures {
            println!("    failure: {failure}");
        }
    }
}

/// The 1-minute load average now.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The file system type under `dir`, as `stat -f` names it.
fn fs_type(dir: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

/// Raise the soft descriptor limit to the hard one (every process of the
/// trees inherits it) and check both limits leave room for `n` gateways:
/// s6-svscan keeps a pipe per logged slot, supervisord a few descriptors
/// per program, and each slot runs s6-supervise twice, s6-log and the gateway.
fn raise_limits(n: usize) -> anyhow::Result<(u64, String)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    let need = 4 * n as u64 + 1024;
    if hard < need {
        bail!("{n} profiles need about {need} descriptors; the hard limit is {hard} (raise it: ulimit -Hn)");
    }
    let (nproc, _) = getrlimit(Resource::RLIMIT_NPROC).context("getrlimit(RLIMIT_NPROC)")?;
    // Root is not held to RLIMIT_NPROC.
    if !nix::unistd::geteuid().is_root() && nproc < 6 * n as u64 + 512 {
        bail!(
            "{n} profiles need about {} processes; RLIMIT_NPROC is {nproc} (ulimit -u)",
            6 * n + 512
        );
    }
    let nproc = if nproc == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        nproc.to_string()
    };
    Ok((hard, nproc))
}

/// One tree of `n` profiles under its own supervisor, run by `bin`.
struct Tree {
    label: String,
    env: Env,
    slots: Vec<PathBuf>,
    ports: Vec<u16>,
    start: Vec<f64>,
    start_f: Vec<String>,
    stop: Vec<f64>,
    stop_f: Vec<String>,
    raw_start: Vec<f64>,
    raw_start_f: Vec<String>,
    raw_stop: Vec<f64>,
    raw_stop_f: Vec<String>,
}

impl Tree {
    fn new(
        label: &str,
        bin: &Path,
        n: usize,
        ports: &mut PortRange,
        scandirs_in: Option<&Path>,
    ) -> anyhow::Result<Tree> {
        let mut env = Env::in_dir(&work_parent(), bin.to_path_buf());
        if let Some(parent) = scandirs_in {
            env.scandir_in(parent);
        }
        env.vars
            .push(("HERMES_MAX_SLOTS".to_string(), (n + 16).to_string()));
        env.supervise();
        let names = create_profiles(&env, n, ports)?;
        Ok(Tree {
            label: label.to_string(),
            slots: names.iter().map(|p| env.slot(p)).collect(),
            ports: names.iter().map(|p| env.port_of(p)).collect(),
            env,
            start: vec![],
            start_f: vec![],
            stop: vec![],
            stop_f: vec![],
            raw_start: vec![],
            raw_start_f: vec![],
            raw_stop: vec![],
            raw_stop_f: vec![],
        })
    }

    fn warm_up(&self) {
        let timeout = LIMIT.as_secs().to_string();
        for verb in ["start", "stop"] {
            self.env
                .run(&["gateway", verb, "--all", "--timeout", &timeout]);
        }
    }

    /// One round: `start --all`, `stop --all`, then raw s6 up and down.
    fn round(&mut self) {
        let n = self.ports.len();
        let timeout = LIMIT.as_secs().to_string();
        let t0 = Instant::now();
        let out = self
            .env
            .run(&["gateway", "start", "--all", "--timeout", &timeout]);
        let ms = ms_since(t0);
        let healthy = self.ports.iter().filter(|p| http::healthy(**p)).count();
        if out.status.success() && healthy == n {
            self.start.push(ms);
        } else {
            self.start_f.push(format!(
                "{healthy} of {n} healthy: {}",
                first_lines(&text_of(&out))
            ));
        }
        let t0 = Instant::now();
        let out = self
            .env
            .run(&["gateway", "stop", "--all", "--timeout", &timeout]);
        let ms = ms_since(t0);
        let up = self.ports.iter().filter(|p| http::healthy(**p)).count();
        if out.status.success() && up == 0 {
            self.stop.push(ms);
        } else {
            self.stop_f.push(format!(
                "{up} still serving: {}",
                first_lines(&text_of(&out))
            ));
        }
        match raw(&self.slots, "-u", |s| s.up && s.ready) {
            Ok(ms) => self.raw_start.push(ms),
            Err(e) => self.raw_start_f.push(e.to_string()),
        }
        match raw(&self.slots, "-d", |s| !s.up) {
            Ok(ms) => self.raw_stop.push(ms),
            Err(e) => self.raw_stop_f.push(e.to_string()),
        }
    }

    fn figures(mut self) -> TreeFigures {
        self.env.stop_supervisor(LIMIT);
        let (n, l) = (self.ports.len(), &self.label);
        TreeFigures {
            start: Measured::new(
                format!("{n} profiles: {l} `gateway start --all`, spawn → exit (all up and ready)"),
                self.start,
                self.start_f,
            ),
            stop: Measured::new(
                format!("{n} profiles: {l} `gateway stop --all`, spawn → exit (all down)"),
                self.stop,
                self.stop_f,
            ),
            raw_start: Measured::new(
                format!("{n} profiles: raw s6 on {l}'s tree: `s6-svc -u` on every slot, then poll every supervise/status until up and ready"),
                self.raw_start,
                self.raw_start_f,
            ),
            raw_stop: Measured::new(
                format!("{n} profiles: raw s6 on {l}'s tree: `s6-svc -d` on every slot, then poll until down"),
                self.raw_stop,
                self.raw_stop_f,
            ),
            label: self.label,
        }
    }
}

/// Every binary's tree of `n` slots, `runs` rounds each; the trees take
/// turns, in the other order every other round.
fn s6_fleet(
    n: usize,
    runs: usize,
    bins: &[(String, PathBuf)],
    scandirs_in: Option<&Path>,
) -> anyhow::Result<Vec<TreeFigures>> {
    let mut ports = PortRange::new();
    let mut trees = bins
        .iter()
        .map(|(label, bin)| Tree::new(label, bin, n, &mut ports, scandirs_in))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Untimed: the first start of a new profile also creates its files
    // (inbox, state), which would count against whichever tree went first.
    for tree in &mut trees {
        tree.warm_up();
    }
    for round in 0..runs {
        let mut order: Vec<usize> = (0..trees.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            trees[i].round();
        }
    }
    Ok(trees.into_iter().map(Tree::figures).collect())
}

/// `s6-svc FLAG` on every slot, one process each, then poll every slot's
/// status file until `done` holds for all: the floor s6 itself sets.
fn raw(
    slots: &[PathBuf],
    flag: &str,
    done: impl Fn(&svstat::Svstat) -> bool,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    for slot in slots {
        let ok = Command::new("s6-svc")
            .arg(flag)
            .arg(slot)
            .stdin(Stdio::null())
            .status()
            .context("run s6-svc")?
            .success();
        if !ok {
            bail!("s6-svc {flag} {} failed", slot.display());
        }
    }
    let mut pending: Vec<&PathBuf> = slots.iter().collect();
    let all = poll(LIMIT, POLL, || {
        let now = SystemTime::now();
        pending.retain(
            |slot| !matches!(svstat::read_direct(slot, now), Direct::Read(Some(s)) if done(&s)),
        );
        pending.is_empty()
    });
    if !all {
        bail!("{} slots not there after {LIMIT:?}", pending.len());
    }
    Ok(ms_since(t0))
}

/// Free ports from [`FIRST_PORT`] up to the kernel's ephemeral range, each
/// handed out once per run.
pub(crate) struct PortRange {
    next: u16,
    end: u16,
}

impl PortRange {
    pub(crate) fn new() -> Self {
        let end = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768);
        PortRange {
            next: FIRST_PORT,
            end,
        }
    }

    fn next(&mut self) -> anyhow::Result<u16> {
        while self.next < self.end {
            let port = self.next;
            self.next += 1;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        bail!(
            "no free port left between {FIRST_PORT} and {} (the start of the ephemeral range)",
            self.end
        )
    }
}

pub(crate) fn create_profiles(
    env: &Env,
    n: usize,
    ports: &mut PortRange,
) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (0..n).map(|i| format!("f{i:04}")).collect();
    for name in &names {
        let port = ports.next()?.to_string();
        env.try_ok(&["profile", "create", name, "--no-alias", "--port", &port])
            .map_err(anyhow::Error::msg)?;
    }
    Ok(names)
}

/// supervisord on the same kind of gateways: `start all` spawn → every
/// `/health` 200 (it returns at spawn with startsecs=0), `stop all` spawn → exit.
fn supervisord_fleet(n: usize, runs: usize, bin: &Path) -> anyhow::Result<(Measured, Measured)> {
    let sd = Supervisord::start_for(&work_parent(), bin.to_path_buf(), n)?;
    let names = create_profiles(&sd.env, n, &mut PortRange::new())?;
    for name in &names {
        sd.write_program(name, true)?;
    }
    sd.ctl_ok(&["update"])?;
    let ports: Vec<u16> = names.iter().map(|p| sd.env.port_of(p)).collect();
    let (mut start, mut stop, mut start_f, mut stop_f) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = sd.ctl(&["start", "all"]);
        let all = ports.iter().all(|p| wait_healthy(*p, LIMIT));
        let ms = ms_since(t0);
        if all {
            start.push(ms);
        } else {
            start_f.push(format!("not all healthy: {}", first_lines(&text_of(&out))));
        }
        let t0 = Instant::now();
        let out = sd.ctl(&["stop", "all"]);
        let ms = ms_since(t0);
        let up = ports.iter().filter(|p| http::healthy(**p)).count();
        if up == 0 {
            stop.push(ms);
        } else {
            stop_f.push(format!(
                "{up} still serving: {}",
                first_lines(&text_of(&out))
            ));
        }
    }
    Ok((
        Measured::new(
            format!(
                "{n} profiles: `supervisorctl start all` (startsecs=0), spawn → every /health 200"
            ),
            start,
            start_f,
        ),
        Measured::new(
            format!("{n} profiles: `supervisorctl stop all`, spawn → exit"),
            stop,
            stop_f,
        ),
    ))
}

fn first_lines(text: &str) -> String {
    text.lines().take(5).collect::<Vec<_>>().join(" | ")
}
