//! Fleet operations: `gateway start --all` and `stop --all` at N profiles,
//! against raw s6 (`s6-svc -u` on every slot, then poll every slot's
//! `supervise/status` until up and ready; `-d`, then until down) on the
//! same tree, and supervisord (`supervisorctl start all` until every
//! `/health` answers; `stop all`) on the same gateways, in one run.
//! Rounds alternate hermes and raw s6, so both see the same machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use hermes_s6::svstat::{self, Direct};
use hermes_testkit::{hermes_bin, http, poll, text_of, Env};

use crate::control::{wait_healthy, Ports, POLL};
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
}

/// Anything slower is a failure, not a sample.
const LIMIT: Duration = Duration::from_secs(120);

struct Fleet {
    n: usize,
    start: Measured,
    raw_start: Measured,
    sd_start: Option<Measured>,
    stop: Measured,
    raw_stop: Measured,
    sd_stop: Option<Measured>,
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let bin = hermes_bin();
    println!(
        "hermes-bench fleet: {} · {} CPUs · rounds {} · binary {}",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.runs,
        bin.display()
    );
    let mut fleets = Vec::new();
    for &n in &opts.sizes {
        let (start, raw_start, stop, raw_stop) = s6_fleet(n, opts.runs, &bin)?;
        let (sd_start, sd_stop) = if opts.no_supervisord {
            (None, None)
        } else {
            let (a, b) = supervisord_fleet(n, opts.runs, &bin)?;
            (Some(a), Some(b))
        };
        let fleet = Fleet {
            n,
            start,
            raw_start,
            sd_start,
            stop,
            raw_stop,
            sd_stop,
        };
        print_fleet(&fleet);
        fleets.push(fleet);
    }
    println!();
    println!("| profiles | `start --all` | raw s6 `-u` + poll | supervisord `start all` | `stop --all` | raw s6 `-d` + poll | supervisord `stop all` |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut clean = true;
    for f in &fleets {
        let sd = |m: &Option<Measured>| m.as_ref().map_or("-".to_string(), cell);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.n,
            cell(&f.start),
            cell(&f.raw_start),
            sd(&f.sd_start),
            cell(&f.stop),
            cell(&f.raw_stop),
            sd(&f.sd_stop)
        );
        let all = [&f.start, &f.raw_start, &f.stop, &f.raw_stop];
        clean &= all.iter().all(|m| m.failures.is_empty());
        clean &= [&f.sd_start, &f.sd_stop]
            .iter()
            .all(|m| m.as_ref().is_none_or(|m| m.failures.is_empty()));
    }
    println!("\nEach cell: median (min–max) in ms over the rounds.");
    Ok(clean)
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
    println!("== {} profiles", f.n);
    let mut rows = vec![&f.start, &f.raw_start, &f.stop, &f.raw_stop];
    rows.extend(f.sd_start.iter());
    rows.extend(f.sd_stop.iter());
    for m in rows {
        println!("  {}: {} ms", m.what, cell(m));
        for failure in &m.failures {
            println!("    failure: {failure}");
        }
    }
}

/// hermes's `--all` and raw s6 on one tree of `n` slots, `runs` rounds each.
fn s6_fleet(
    n: usize,
    runs: usize,
    bin: &std::path::Path,
) -> anyhow::Result<(Measured, Measured, Measured, Measured)> {
    let mut env = Env::in_dir(&work_parent(), bin.to_path_buf());
    env.vars
        .push(("HERMES_MAX_SLOTS".to_string(), n.max(16).to_string()));
    env.supervise();
    let names = create_profiles(&env, n)?;
    let slots: Vec<PathBuf> = names.iter().map(|p| env.slot(p)).collect();
    let ports: Vec<u16> = names.iter().map(|p| env.port_of(p)).collect();
    let (mut start, mut raw_start, mut stop, mut raw_stop) = (vec![], vec![], vec![], vec![]);
    let (mut start_f, mut raw_start_f, mut stop_f, mut raw_stop_f) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = env.run(&["gateway", "start", "--all", "--timeout", "120"]);
        let ms = ms_since(t0);
        let healthy = ports.iter().filter(|p| http::healthy(**p)).count();
        if out.status.success() && healthy == n {
            start.push(ms);
        } else {
            start_f.push(format!(
                "{healthy} of {n} healthy: {}",
                first_lines(&text_of(&out))
            ));
        }
        let t0 = Instant::now();
        let out = env.run(&["gateway", "stop", "--all", "--timeout", "120"]);
        let ms = ms_since(t0);
        let up = ports.iter().filter(|p| http::healthy(**p)).count();
        if out.status.success() && up == 0 {
            stop.push(ms);
        } else {
            stop_f.push(format!(
                "{up} still serving: {}",
                first_lines(&text_of(&out))
            ));
        }

        match raw(&slots, "-u", |s| s.up && s.ready) {
            Ok(ms) => raw_start.push(ms),
            Err(e) => raw_start_f.push(e.to_string()),
        }
        match raw(&slots, "-d", |s| !s.up) {
            Ok(ms) => raw_stop.push(ms),
            Err(e) => raw_stop_f.push(e.to_string()),
        }
    }
    env.stop_supervisor(LIMIT);
    Ok((
        Measured::new(
            format!("{n} profiles: `hermes gateway start --all`, spawn → exit (all up and ready)"),
            start,
            start_f,
        ),
        Measured::new(
            format!("{n} profiles: raw s6: `s6-svc -u` on every slot, then poll every supervise/status until up and ready"),
            raw_start,
            raw_start_f,
        ),
        Measured::new(
            format!("{n} profiles: `hermes gateway stop --all`, spawn → exit (all down)"),
            stop,
            stop_f,
        ),
        Measured::new(
            format!("{n} profiles: raw s6: `s6-svc -d` on every slot, then poll until down"),
            raw_stop,
            raw_stop_f,
        ),
    ))
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

pub(crate) fn create_profiles(env: &Env, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ports = Ports::for_env(env);
    let names: Vec<String> = (0..n).map(|i| format!("f{i:04}")).collect();
    for name in &names {
        let port = ports.next().to_string();
        env.try_ok(&["profile", "create", name, "--no-alias", "--port", &port])
            .map_err(anyhow::Error::msg)?;
    }
    Ok(names)
}

/// supervisord on the same kind of gateways: `start all` spawn → every
/// `/health` 200 (it returns at spawn with startsecs=0), `stop all` spawn → exit.
fn supervisord_fleet(
    n: usize,
    runs: usize,
    bin: &std::path::Path,
) -> anyhow::Result<(Measured, Measured)> {
    let sd = Supervisord::start(&work_parent(), bin.to_path_buf())?;
    let names = create_profiles(&sd.env, n)?;
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
