//! The baseline: Debian's supervisord managing the same hermes gateways
//! (`hermes -p P gateway run`, each profile in its own `[program:]`), driven
//! with `supervisorctl` the way an operator would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use hermes_testkit::procs;
use hermes_testkit::{poll, render_output, text_of, Env};

use crate::control::{kill_and_time_recovery, wait_healthy, Ports, CRASH_STEPS, POLL};
use crate::figure::{ms_since, Measured};

pub struct Supervisord {
    /// Profiles live in this env's HERMES_HOME; supervisord's files in its root.
    pub env: Env,
    child: Option<Child>,
}

pub fn version() -> Option<String> {
    let out = Command::new("supervisord").arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|v| !v.is_empty())
}

impl Supervisord {
    pub fn start(parent: &Path, bin: PathBuf) -> anyhow::Result<Self> {
        Self::start_for(parent, bin, 0)
    }

    /// A supervisord with room for `programs` programs: it raises its own
    /// limits to `minfds` descriptors (default 1024; it keeps about three per
    /// program: the log file and the pipes) and `minprocs`, and refuses to
    /// start when it cannot.
    pub fn start_for(parent: &Path, bin: PathBuf, programs: usize) -> anyhow::Result<Self> {
        let env = Env::in_dir(parent, bin);
        let root = env.root().to_path_buf();
        fs::create_dir_all(root.join("conf.d"))?;
        fs::create_dir_all(root.join("childlogs"))?;
        let conf = format!(
            "[unix_http_server]\nfile={r}/supervisor.sock\n\n\
             [supervisord]\nlogfile={r}/supervisord.log\npidfile={r}/supervisord.pid\n\
             childlogdir={r}/childlogs\nnodaemon=true\nloglevel=warn\n\
             minfds={fds}\nminprocs={procs}\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{r}/supervisor.sock\n\n\
             [include]\nfiles = {r}/conf.d/*.conf\n",
            r = root.display(),
            fds = 1024.max(4 * programs + 256),
            procs = 200.max(2 * programs + 64),
        );
        fs::write(root.join("supervisord.conf"), conf)?;
        let child = Command::new("supervisord")
            .args(["-n", "-c"])
            .arg(root.join("supervisord.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn supervisord (apt-get install supervisor)")?;
        let sd = Supervisord {
            env,
            child: Some(child),
        };
        if !poll(Duration::from_secs(20), Duration::from_millis(20), || {
            sd.ctl(&["pid"]).status.success()
        }) {
            bail!("supervisord did not answer within 20 s");
        }
        Ok(sd)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new("supervisorctl")
            .arg("-c")
            .arg(self.env.root().join("supervisord.conf"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn supervisorctl")
    }

    pub fn ctl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.ctl(args);
        // supervisorctl's exit code is unreliable across versions; its words are not.
        let text = text_of(&out);
        if !out.status.success() || text.contains("ERROR") {
            bail!(
                "{}",
                render_output(&format!("supervisorctl {}", args.join(" ")), &out)
            );
        }
        Ok(text)
    }

    /// Write `[program:NAME]` for an existing hermes profile. `startsecs=0`
    /// lets `supervisorctl start` return once the process is spawned (its
    /// default, 1 s, would add a full second to every start); `fast=false`
    /// keeps supervisord's defaults (startsecs=1, startretries=3) for the
    /// crash-loop comparison.
    pub fn write_program(&self, profile: &str, fast: bool) -> anyhow::Result<()> {
        let root = self.env.root();
        let conf = format!(
            "[program:{profile}]\ncommand={bin} -p {profile} gateway run --no-supervise\n\
             environment=HERMES_HOME=\"{home}\"\ndirectory={dir}\n\
             autostart=false\nautorestart=true\n{secs}stopsignal=TERM\nstopwaitsecs=5\n\
             redirect_stderr=true\nstdout_logfile={root}/childlogs/{profile}.log\n",
            bin = self.env.bin.display(),
            home = self.env.home().display(),
            dir = self.env.profile_dir(profile).display(),
            secs = if fast { "startsecs=0\n" } else { "" },
            root = root.display(),
        );
        fs::write(root.join("conf.d").join(format!("{profile}.conf")), conf)?;
        Ok(())
    }

    pub fn gateway_pid(&self, program: &str) -> Option<u32> {
        let out = self.ctl(&["pid", program]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
    }

    /// RSS of supervisord itself (KiB).
    pub fn own_rss_kb(&self) -> Option<u64> {
        procs::rss_kb(self.pid()?)
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop", "all"]);
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if !poll(Duration::from_secs(20), Duration::from_millis(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub struct Results {
    pub status: Measured,
    pub create: Measured,
    pub start: Measured,
    pub stop: Measured,
    pub recovery: Measured,
    pub crash_loop: Vec<Measured>,
    pub crash_loop_end: Vec<String>,
}

fn timed(f: impl FnOnce() -> Output) -> (f64, Output) {
    let t0 = Instant::now();
    let out = f();
    (ms_since(t0), out)
}

/// The control-plane figures, the same runs as `control::run`.
pub fn control(
    parent: &Path,
    bin: PathBuf,
    runs: usize,
    crash_cycles: usize,
) -> anyhow::Result<Results> {
    let sd = Supervisord::start(parent, bin)?;
    let mut ports = Ports::new();

    // Register a program: write its section, then `supervisorctl update NAME`.
    let (mut create, mut create_fail, mut names) = (vec![], vec![], vec![]);
    for i in 0..runs {
        let name = format!("c{i:03}");
        let port = ports.next().to_string();
        sd.env
            .ok(&["profile", "create", &name, "--no-alias", "--port", &port]);
        let t0 = Instant::now();
        sd.write_program(&name, true)?;
        let out = sd.ctl(&["update", &name]);
        let ms = ms_since(t0);
        if text_of(&out).contains("added") {
            create.push(ms);
            names.push(name);
        } else {
            create_fail.push(text_of(&out));
        }
    }
    let bench = names
        .first()
        .context("supervisord: no program added")?
        .clone();
    let port = sd.env.port_of(&bench);

    let (mut start, mut start_fail, mut stop, mut stop_fail) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = sd.ctl(&["start", &bench]);
        let ok = wait_healthy(port, Duration::from_secs(30));
        let ms = ms_since(t0);
        if ok {
            start.push(ms);
        } else {
            start_fail.push(text_of(&out));
        }
        let (ms, out) = timed(|| sd.ctl(&["stop", &bench]));
        if text_of(&out).contains("stopped") {
            stop.push(ms);
        } else {
            stop_fail.push(text_of(&out));
        }
    }

    sd.ctl_ok(&["start", &bench])?;
    wait_healthy(port, Duration::from_secs(30));
    let (mut status, mut status_fail) = (vec![], vec![]);
    for _ in 0..runs {
        let (ms, out) = timed(|| sd.ctl(&["status", &bench]));
        if text_of(&out).contains("RUNNING") {
            status.push(ms);
        } else {
            status_fail.push(text_of(&out));
        }
    }

    let (mut recovery, mut recovery_fail) = (vec![], vec![]);
    for _ in 0..runs {
        std::thread::sleep(Duration::from_millis(2200));
        match sd.gateway_pid(&bench) {
            Some(pid) => match kill_and_time_recovery(pid, port, Signal::SIGKILL) {
                Ok(ms) => recovery.push(ms),
                Err(e) => recovery_fail.push(e),
            },
            None => recovery_fail.push("no pid from supervisorctl pid".to_string()),
        }
    }
    sd.ctl(&["stop", &bench]);

    // Crash loop under supervisord's defaults (startsecs=1, startretries=3).
    let loop_name = names.get(1).cloned().unwrap_or_else(|| bench.clone());
    let loop_port = sd.env.port_of(&loop_name);
    sd.ctl(&["stop", &loop_name]);
    sd.ctl(&["remove", &loop_name]);
    sd.write_program(&loop_name, false)?;
    sd.ctl(&["update", &loop_name]);
    let mut crash: Vec<Vec<f64>> = vec![Vec::new(); CRASH_STEPS];
    let mut crash_fail: Vec<Vec<String>> = vec![Vec::new(); CRASH_STEPS];
    let mut crash_end = Vec::new();
    for cycle in 0..crash_cycles {
        sd.ctl(&["stop", &loop_name]);
        sd.ctl(&["start", &loop_name]);
        if !wait_healthy(loop_port, Duration::from_secs(30)) {
            crash_fail[0].push(format!("cycle {cycle}: never healthy"));
            continue;
        }
        for step in 0..CRASH_STEPS {
            let Some(pid) = sd.gateway_pid(&loop_name) else {
                crash_fail[step].push(format!("cycle {cycle}: no pid"));
                break;
            };
            match kill_and_time_recovery(pid, loop_port, Signal::SIGABRT) {
                Ok(ms) => crash[step].push(ms),
                Err(e) => {
                    crash_fail[step].push(format!("cycle {cycle}: {e}"));
                    break;
                }
            }
        }
        if let Some(pid) = sd.gateway_pid(&loop_name) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGABRT);
            let back = poll(Duration::from_secs(8), POLL, || {
                hermes_testkit::http::healthy(loop_port)
            });
            let state = text_of(&sd.ctl(&["status", &loop_name]));
            crash_end.push(format!(
                "cycle {cycle}: after failure {}: {} ({})",
                CRASH_STEPS + 1,
                if back { "restarted" } else { "stays down" },
                state.split_whitespace().nth(1).unwrap_or("?")
            ));
        }
    }
    sd.ctl(&["stop", "all"]);
    let crash_loop = crash
        .into_iter()
        .zip(crash_fail)
        .enumerate()
        .map(|(i, (s, f))| {
            Measured::new(
                format!(
                    "supervisord defaults: failure {} in a row: SIGABRT → /health 200",
                    i + 1
                ),
                s,
                f,
            )
        })
        .collect();
    Ok(Results {
        status: Measured::new(
            format!("`supervisorctl status {bench}`"),
            status,
            status_fail,
        ),
        create: Measured::new(
            "write [program:NAME] + `supervisorctl update NAME`",
            create,
            create_fail,
        ),
        start: Measured::new(
            format!("`supervisorctl start {bench}` (startsecs=0) spawn → GET /health 200"),
            start,
            start_fail,
        ),
        stop: Measured::new(format!("`supervisorctl stop {bench}`"), stop, stop_fail),
        recovery: Measured::new(
            "supervisord autorestart: SIGKILL of a gateway up > 2 s → GET /health 200",
            recovery,
            recovery_fail,
        ),
        crash_loop,
        crash_loop_end: crash_end,
    })
}

pub struct ScaleResults {
    pub n: usize,
    pub add_ms: f64,
    pub start_ms: f64,
    pub stop_ms: f64,
    pub supervisord_rss_kb: u64,
    pub gateways_rss_kb: u64,
    pub gateways_pss_kb: u64,
    pub restart: Measured,
    pub failures: Vec<String>,
}

/// supervisord managing `n` gateways: add all, start all, memory, restart delay, stop all.
pub fn scale(
    parent: &Path,
    bin: PathBuf,
    n: usize,
    restarts: usize,
) -> anyhow::Result<ScaleResults> {
    let sd = Supervisord::start(parent, bin)?;
    let mut ports = Ports::new();
    let mut failures = Vec::new();
    let names: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    for name in &names {
        let port = ports.next().to_string();
        sd.env
            .ok(&["profile", "create", name, "--no-alias", "--port", &port]);
    }
    let t0 = Instant::now();
    for name in &names {
        sd.write_program(name, true)?;
    }
    sd.ctl_ok(&["update"])?;
    let add_ms = ms_since(t0);

    let t0 = Instant::now();
    let out = sd.ctl(&["start", "all"]);
    let all_healthy = names.iter().all(|name| {
        let port = sd.env.port_of(name);
        wait_healthy(port, Duration::from_secs(60))
    });
    let start_ms = ms_since(t0);
    if !all_healthy {
        failures.push(format!(
            "not every gateway became healthy: {}",
            text_of(&out)
        ));
    }
    std::thread::sleep(Duration::from_millis(2200));
    let supervisord_rss_kb = sd.own_rss_kb().unwrap_or(0);
    let (mut rss, mut pss) = (0, 0);
    for name in &names {
        if let Some(pid) = sd.gateway_pid(name) {
            rss += procs::rss_kb(pid).unwrap_or(0);
            pss += procs::pss_kb(pid).unwrap_or(0);
        }
    }

    let (mut restart, mut restart_fail) = (vec![], vec![]);
    for name in names.iter().take(restarts) {
        match sd.gateway_pid(name) {
            Some(pid) => match kill_and_time_recovery(pid, sd.env.port_of(name), Signal::SIGKILL) {
                Ok(ms) => restart.push(ms),
                Err(e) => restart_fail.push(e),
            },
            None => restart_fail.push(format!("{name}: no pid")),
        }
    }

    let t0 = Instant::now();
    let out = sd.ctl(&["stop", "all"]);
    let stop_ms = ms_since(t0);
    if names.iter().any(|n| sd.gateway_pid(n).is_some()) {
        failures.push(format!(
            "gateways still up after stop all: {}",
            text_of(&out)
        ));
    }
    Ok(ScaleResults {
        n,
        add_ms,
        start_ms,
        stop_ms,
        supervisord_rss_kb,
        gateways_rss_kb: rss,
        gateways_pss_kb: pss,
        restart: Measured::new(
            format!("supervisord with {n} gateways: SIGKILL of a gateway up > 2 s → /health 200"),
            restart,
            restart_fail,
        ),
        failures,
    })
}
