//! `hermes-bench report`: run everything, then write the Markdown and JSON
//! report. The output of other benchmark scripts (`bench/container`,
//! `bench/webhook-load`) is embedded verbatim when `bench/run` passes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{json, Value};

use hermes_testkit::hermes_bin;

use crate::figure::{Figure, Measured};
use crate::{control, scale, supervisord, work_parent};

#[derive(clap::Args)]
pub struct Options {
    /// CI-sized: 5 runs, 2 crash cycles, scale 10 and 50, supervisord at 10.
    #[arg(long)]
    quick: bool,
    /// Runs per control-plane figure (default 20; quick 5).
    #[arg(long)]
    runs: Option<usize>,
    /// Slot counts for the scale figures (default 100,500,1000; quick 10,50).
    #[arg(long, value_delimiter = ',')]
    scale: Option<Vec<usize>>,
    /// Gateways under supervisord for the scale baseline (default 100; quick 10).
    #[arg(long)]
    baseline_n: Option<usize>,
    /// Where <date>.md and <date>.json go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Output of another benchmark script to embed, as TITLE=FILE (repeatable):
    /// `bench/run` passes bench/container's and bench/webhook-load's.
    #[arg(long = "attach", value_parser = parse_attach)]
    attach: Vec<(String, PathBuf)>,
    /// Report file stem (default: today's date, UTC; quick runs add "-quick").
    #[arg(long)]
    name: Option<String>,
}

fn parse_attach(raw: &str) -> Result<(String, PathBuf), String> {
    raw.split_once('=')
        .map(|(t, f)| (t.to_string(), PathBuf::from(f)))
        .ok_or_else(|| format!("{raw:?}: expected TITLE=FILE"))
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    let mem_kb = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string());
    json!({
        "os": os,
        "kernel": sh("uname", &["-r"]),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "mem_total_mb": mem_kb.map(|k| k / 1024),
        "loadavg_at_start": fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
    })
}

fn versions(bin: &Path) -> Value {
    json!({
        "s6": sh("dpkg-query", &["-W", "-f", "${Version}", "s6"]),
        "execline": sh("dpkg-query", &["-W", "-f", "${Version}", "execline"]),
        "supervisor": supervisord::version(),
        "docker_server": sh("docker", &["version", "--format", "{{.Server.Version}}"]),
        "docker_client": sh("docker", &["version", "--format", "{{.Client.Version}}"]),
        "hermes": sh(&bin.to_string_lossy(), &["--version"]),
        "git": sh("git", &["describe", "--always", "--dirty"]),
    })
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cell(m: &Measured) -> (String, String, String) {
    match &m.summary {
        Some(s) => (fmt_ms(s.median), fmt_ms(s.p95), s.n.to_string()),
        None => ("–".into(), "–".into(), "0".into()),
    }
}

#[derive(Serialize)]
struct Report {
    date: String,
    mode: &'static str,
    runs: usize,
    machine: Value,
    versions: Value,
    figures: Vec<Figure>,
    scale: Vec<scale::ScaleRun>,
    supervisord_scale: Option<Value>,
    crash_loop_end: Value,
    /// Other scripts' output, by title, verbatim.
    attached: BTreeMap<String, String>,
    loadavg_at_end: Option<String>,
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let runs = opts.runs.unwrap_or(if opts.quick { 5 } else { 20 });
    // A crash cycle takes about 10 s (five deaths, back-off, parking).
    let crash_cycles = if opts.quick { 2 } else { runs.min(10) };
    let sizes = opts.scale.clone().unwrap_or(if opts.quick {
        vec![10, 50]
    } else {
        vec![100, 500, 1000]
    });
    let baseline_n = opts.baseline_n.unwrap_or(if opts.quick { 10 } else { 100 });
    let bin = hermes_bin();
    let parent = work_parent();
    let date = sh("date", &["-u", "+%Y-%m-%d"]).unwrap_or_else(|| "undated".into());
    let stem = opts.name.clone().unwrap_or_else(|| {
        if opts.quick {
            format!("{date}-quick")
        } else {
            date.clone()
        }
    });
    let machine = machine();
    let versions = versions(&bin);
    eprintln!("hermes-bench: {runs} runs per figure, scale {sizes:?}, supervisord at {baseline_n}; binary {}", bin.display());

    eprintln!("hermes-bench: control plane (hermes on s6)");
    let h = control::run(&parent, bin.clone(), runs, crash_cycles)?;
    eprintln!("hermes-bench: control plane (supervisord baseline)");
    let b = supervisord::control(&parent, bin.clone(), runs, crash_cycles)?;

    let mut figures = vec![
        Figure::new(
            "status",
            "control plane",
            "`gateway status` round trip",
            "ms",
            h.status,
        )
        .baseline(b.status)
        .baseline(h.svstat)
        .target(10.0),
        Figure::new(
            "create",
            "control plane",
            "`profile create` → slot supervised",
            "ms",
            h.create,
        )
        .baseline(b.create)
        .target(50.0),
        Figure::new(
            "start",
            "control plane",
            "`gateway start` → `/health` 200",
            "ms",
            h.start,
        )
        .baseline(b.start)
        .target(200.0),
        Figure::new("stop", "control plane", "`gateway stop`", "ms", h.stop).baseline(b.stop),
        Figure::new(
            "recovery",
            "recovery",
            "kill -9 (up > 2 s) → `/health` 200",
            "ms",
            h.recovery,
        )
        .baseline(b.recovery)
        .target(300.0),
    ];
    for (i, (hm, bm)) in h.crash_loop.into_iter().zip(b.crash_loop).enumerate() {
        let fig = Figure::new(
            &format!("crash_loop_{}", i + 1),
            "recovery",
            &format!("crash loop: failure {} in a row → `/health` 200", i + 1),
            "ms",
            hm,
        )
        .baseline(bm);
        figures.push(if i > 0 { fig } else { fig.note("hermes: s6's 1 s respawn floor for a service not ready > 1 s, plus the finish hook's back-off (0, 0.5, 1, 2 s); parked at the 5th; supervisord: startsecs=1, startretries=3, back-off 1, 2, 3 s, then FATAL") });
    }
    let kb_to_mb = |m: Measured| {
        let samples: Vec<f64> = m.samples.iter().map(|k| k / 1024.0).collect();
        Measured::new(m.what, samples, m.failures)
    };
    let idle = kb_to_mb(h.idle_rss_kb);
    figures.push(
        Figure::new("gateway_idle_rss", "memory", "gateway idle RSS", "MB", idle)
            .baseline(kb_to_mb(h.idle_pss_kb))
            .target(10.0)
            .note("the second row is PSS (shared library pages split between gateways)"),
    );
    figures.push(Figure::new(
        "slot_tree_rss",
        "memory",
        "supervision per slot (s6-supervise ×2 + s6-log) RSS",
        "MB",
        kb_to_mb(h.tree_rss_kb),
    ));

    let mut scale_runs = Vec::new();
    for &n in &sizes {
        eprintln!("hermes-bench: scale {n} (hermes on s6)");
        scale_runs.push(scale::run(&parent, bin.clone(), n, runs.min(n))?);
    }
    eprintln!("hermes-bench: scale {baseline_n} (supervisord baseline)");
    let sd_scale = supervisord::scale(&parent, bin.clone(), baseline_n, runs.min(baseline_n))?;
    if let Some(s) = scale_runs.iter().find(|s| s.n == baseline_n) {
        figures.push(
            Figure::new(
                "restart_at_scale",
                "recovery",
                &format!("kill -9 → `/health` 200 with {baseline_n} gateways running"),
                "ms",
                s.restart.clone(),
            )
            .baseline(sd_scale.restart.clone()),
        );
    }
    // Report order: by group, in the order groups first appear.
    let order = ["control plane", "recovery", "memory"];
    figures.sort_by_key(|f| {
        order
            .iter()
            .position(|g| *g == f.group)
            .unwrap_or(order.len())
    });
    let sd_scale_json = json!({
        "n": sd_scale.n,
        "add_ms": sd_scale.add_ms,
        "start_all_ms": sd_scale.start_ms,
        "stop_all_ms": sd_scale.stop_ms,
        "supervisord_rss_kb": sd_scale.supervisord_rss_kb,
        "gateways_rss_kb": sd_scale.gateways_rss_kb,
        "gateways_pss_kb": sd_scale.gateways_pss_kb,
        "restart": sd_scale.restart,
        "failures": sd_scale.failures,
    });

    let attached = opts
        .attach
        .iter()
        .map(|(title, path)| {
            let text = fs::read_to_string(path)
                .unwrap_or_else(|e| format!("(unable to read {}: {e})", path.display()));
            (title.clone(), text)
        })
        .collect();

    let report = Report {
        date: date.clone(),
        mode: if opts.quick { "quick" } else { "full" },
        runs,
        machine,
        versions,
        figures,
        scale: scale_runs,
        supervisord_scale: Some(sd_scale_json),
        crash_loop_end: json!({"hermes": h.crash_loop_end, "supervisord": b.crash_loop_end}),
        attached,
        loadavg_at_end: fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.trim().to_string()),
    };
    fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let json_path = opts.out.join(format!("{stem}.json"));
    let md_path = opts.out.join(format!("{stem}.md"));
    fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let md = markdown(&report);
    fs::write(&md_path, &md)?;
    println!("{md}");
    eprintln!(
        "hermes-bench: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    Ok(true)
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let v = |x: &Value| {
        x.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "unavailable".into())
    };
    let _ = writeln!(md, "# hermes benchmarks, {} ({} mode)\n", r.date, r.mode);
    let _ = writeln!(
        md,
        "Machine: {} · kernel {} · {} · {} CPUs · {} MB RAM · load at start {} / end {}  ",
        v(&r.machine["os"]),
        v(&r.machine["kernel"]),
        v(&r.machine["cpu"]),
        r.machine["cpus"],
        r.machine["mem_total_mb"],
        v(&r.machine["loadavg_at_start"]),
        r.loadavg_at_end.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "Versions: s6 {} · execline {} · {} · Docker server {} (client {}) · {} · git {}\n",
        v(&r.versions["s6"]),
        v(&r.versions["execline"]),
        r.versions["supervisor"]
            .as_str()
            .map(|s| format!("supervisord {s}"))
            .unwrap_or_else(|| "supervisord unavailable".into()),
        v(&r.versions["docker_server"]),
        v(&r.versions["docker_client"]),
        v(&r.versions["hermes"]),
        v(&r.versions["git"]),
    );
    let _ = writeln!(
        md,
        "Every figure: median and p95 (nearest rank) over n runs, measured in this run; the baseline rows were measured in the same invocation on the same gateways. The machine is shared (see load), so compare rows of one report rather than reports of different days.\n"
    );
    let mut group = String::new();
    for f in &r.figures {
        if f.group != group {
            group = f.group.clone();
            let _ = writeln!(md, "\n## {}\n", capitalise(&group));
            let _ = writeln!(md, "| figure | what | median | p95 | n | target |");
            let _ = writeln!(md, "|---|---|---:|---:|---:|---|");
        }
        let (med, p95, n) = cell(&f.hermes);
        let target = match (f.target, f.met()) {
            (Some(t), Some(true)) => format!("< {} {} ✅", fmt_ms(t), f.unit),
            (Some(t), Some(false)) => format!("< {} {} ❌", fmt_ms(t), f.unit),
            (Some(t), None) => format!("< {} {} (no data)", fmt_ms(t), f.unit),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            md,
            "| **{}** (hermes, {}) | {} | {med} | {p95} | {n} | {target} |",
            f.label, f.unit, f.hermes.what
        );
        for b in &f.baselines {
            let (med, p95, n) = cell(b);
            let _ = writeln!(md, "| ↳ baseline | {} | {med} | {p95} | {n} | |", b.what);
        }
    }
    let failures: Vec<String> = r
        .figures
        .iter()
        .flat_map(|f| std::iter::once(&f.hermes).chain(f.baselines.iter()))
        .flat_map(|m| {
            m.failures
                .iter()
                .map(move |e| format!("{}: {}", m.what, first_line(e)))
        })
        .collect();
    let notes: Vec<String> = r
        .figures
        .iter()
        .filter_map(|f| f.note.as_ref().map(|n| format!("{}: {n}", f.label)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:");
        for n in dedup(notes) {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(md, "\nCrash loop, the failure after the last measured one:");
    for who in ["hermes", "supervisord"] {
        for line in r.crash_loop_end[who]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
        {
            let _ = writeln!(md, "- {who}: {}", line.as_str().unwrap_or(""));
        }
    }

    let _ = writeln!(md, "\n## Scale (one supervisor)\n");
    let _ = writeln!(md, "| slots | register: per slot median / p95 (ms) | register total (s) | `start --all` (s) | healthy | `stop --all` (s) | teardown (s) | tree RSS / slot (KB) | tree PSS / slot (KB) | gateway RSS / slot (KB) | gateway PSS / slot (KB) | procs (supervise / log / gateways) |");
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for s in &r.scale {
        let (med, p95, _) = cell(&s.register);
        let per = |kb: u64| if s.n == 0 { 0 } else { kb / s.n as u64 };
        let _ = writeln!(
            md,
            "| {} | {med} / {p95} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} / {} / {} |",
            s.n,
            s.register_total_ms / 1000.0,
            s.start_all_ms / 1000.0,
            s.healthy,
            s.stop_all_ms / 1000.0,
            s.teardown_ms / 1000.0,
            per(s.tree_rss_kb),
            per(s.tree_pss_kb),
            per(s.gateways_rss_kb),
            per(s.gateways_pss_kb),
            s.supervise_procs,
            s.log_procs,
            s.gateways
        );
    }
    let _ = writeln!(
        md,
        "\nPace per slot, first tenth → last tenth of the slots (ms; flat when each start or stop costs the same however many slots already run):"
    );
    for s in &r.scale {
        let _ = writeln!(
            md,
            "- {} slots: `start --all` {:.1} → {:.1} · `stop --all` {:.1} → {:.1}",
            s.n, s.start_pace_ms.0, s.start_pace_ms.1, s.stop_pace_ms.0, s.stop_pace_ms.1
        );
    }
    if let Some(sd) = &r.supervisord_scale {
        let n = sd["n"].as_u64().unwrap_or(1).max(1);
        let _ = writeln!(
            md,
            "\nBaseline, supervisord with {n} gateways: add (write sections + `supervisorctl update`) {:.2} s · `start all` → all healthy {:.2} s · `stop all` {:.2} s · supervisord RSS {} KB ({} KB per slot) · gateway RSS / slot {} KB, PSS / slot {} KB",
            sd["add_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            sd["start_all_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            sd["stop_all_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            sd["supervisord_rss_kb"],
            sd["supervisord_rss_kb"].as_u64().unwrap_or(0) / n,
            sd["gateways_rss_kb"].as_u64().unwrap_or(0) / n,
            sd["gateways_pss_kb"].as_u64().unwrap_or(0) / n,
        );
    }
    for s in &r.scale {
        let _ = writeln!(
            md,
            "\ns6-svscan for {} slots: `{}`",
            s.n,
            s.svscan_argv.join(" ")
        );
        for f in s.failures.iter().chain(&s.register.failures).take(5) {
            let _ = writeln!(md, "- failure: {}", first_line(f));
        }
    }
    let _ = writeln!(
        md,
        "\nThe cap: s6 {} takes `-c` (services; 2.12+ take `-C`, loggers counted). `hermes supervise` sets it to 2 × (HERMES_MAX_SLOTS + 16) for the version it finds, and registration refuses past HERMES_MAX_SLOTS; the scale runs set HERMES_MAX_SLOTS to N.",
        v(&r.versions["s6"])
    );

    for (title, text) in &r.attached {
        let _ = writeln!(md, "\n## {title}\n\n```\n{}\n```", text.trim_end());
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Runs that produced no sample\n");
        for f in failures.iter().take(40) {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(200).collect()
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.dedup();
    v
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
