//! One test environment: a temp dir holding `HERMES_HOME`, the scandir and
//! the alias dir; the real `hermes` binary; a real supervision tree started
//! with `hermes supervise`. Waits poll with a deadline; failures print the
//! command, its output and the files that explain it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use hermes_s6::Scandir;

use crate::procs;
use crate::wait::poll;

/// The `hermes` binary under test (an absolute path): `$HERMES_BIN`, else the one cargo built
/// next to this executable (`target/<profile>/hermes`; tests live one level
/// deeper, in `deps/`).
pub fn hermes_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HERMES_BIN").filter(|v| !v.is_empty()) {
        // Absolute: it ends up in run scripts, which s6 runs from the slot's directory.
        let bin = PathBuf::from(bin);
        return fs::canonicalize(&bin)
            .unwrap_or_else(|e| panic!("HERMES_BIN={}: {e}", bin.display()));
    }
    let exe = std::env::current_exe().expect("path of the running executable");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("hermes"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no hermes binary next to {}: run `cargo build -p hermes-cli` (same profile) or set HERMES_BIN",
                exe.display()
            )
        })
}

pub fn render_output(cmd: &str, out: &Output) -> String {
    format!(
        "command: {cmd}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stdout followed by stderr, for matching messages wherever they were printed.
pub fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    /// Extra variables for every hermes command (and the supervisor).
    pub vars: Vec<(String, String)>,
    supervisor: Option<Child>,
    /// Where the scandir is when it is not beside the home (a tmpfs, as a
    /// container's `--tmpfs /run` puts it).
    scan_dir: Option<tempfile::TempDir>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        Self::in_dir(&std::env::temp_dir(), hermes_bin())
    }

    /// An environment under `parent` running `bin`, with the root profile on a
    /// free port (its default port would clash between parallel runs).
    pub fn in_dir(parent: &Path, bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hermes-test-")
            .tempdir_in(parent)
            .expect("temp dir");
        let env = Env {
            dir,
            bin,
            vars: Vec::new(),
            supervisor: None,
            scan_dir: None,
        };
        fs::create_dir_all(env.home()).unwrap();
        fs::write(
            env.home().join("config.yaml"),
            format!(
                "gateway:\n  host: 127.0.0.1\n  port: {}\n",
                crate::free_port()
            ),
        )
        .unwrap();
        env
    }

    /// A supervised environment with profile `name` (no alias) created and
    /// its gateway started.
    pub fn with_gateway_up(name: &str) -> Self {
        let mut env = Self::new();
        env.supervise();
        env.create(&[name, "--no-alias"]);
        env.ok(&["-p", name, "gateway", "start"]);
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }
    pub fn scandir(&self) -> PathBuf {
        match &self.scan_dir {
            Some(dir) => dir.path().join("scan"),
            None => self.root().join("scan"),
        }
    }
    /// Put the scandir in a temp dir of its own under `parent`, away from
    /// the home; before the tree is started.
    pub fn scandir_in(&mut self, parent: &Path) {
        let dir = tempfile::Builder::new()
            .prefix("hermes-test-scan-")
            .tempdir_in(parent)
            .expect("temp dir");
        self.scan_dir = Some(dir);
    }
    /// The scandir's layout (slots, staging names, the control FIFO), as hermes-s6 names it.
    pub fn layout(&self) -> Scandir {
        Scandir::new(self.scandir())
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.root().join("bin")
    }
    pub fn profile_dir(&self, name: &str) -> PathBuf {
        if name == "default" {
            self.home()
        } else {
            self.home().join("profiles").join(name)
        }
    }
    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.home().join("logs/gateways").join(name)
    }
    /// The profile's slot, a service directory in the scandir.
    pub fn slot(&self, name: &str) -> PathBuf {
        self.layout().slot(&format!("gateway-{name}"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HERMES_HOME", self.home())
            .env("HERMES_SCANDIR", self.scandir())
            .env("HERMES_BIN_DIR", self.bin_dir())
            .env_remove("HERMES_CONTAINER")
            .env_remove("HERMES_SUPERVISED_CHILD")
            .env_remove("HERMES_SERVICE_MANAGER")
            .env_remove("HERMES_MAX_SLOTS")
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hermes")
    }

    /// Run hermes and insist on exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.try_ok(args)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// stdout of hermes if it exits 0, else the command, its output and [`Env::dump`].
    pub fn try_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args);
        if !out.status.success() {
            return Err(format!(
                "{}\n{}",
                render_output(&format!("hermes {}", args.join(" ")), &out),
                self.dump()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `hermes profile create ARGS… --port <free port>`: parallel tests must not share ports.
    pub fn create(&self, args: &[&str]) -> String {
        let port = crate::free_port().to_string();
        let mut full = vec!["profile", "create"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--port", &port]);
        self.ok(&full)
    }

    /// Run hermes and insist on exit `code`; returns stdout + stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        if out.status.code() != Some(code) {
            panic!(
                "expected exit {code}\n{}\n{}",
                render_output(&format!("hermes {}", args.join(" ")), &out),
                self.dump()
            );
        }
        text_of(&out)
    }

    pub fn supervisor_pid(&self) -> Option<u32> {
        self.supervisor.as_ref().map(|c| c.id())
    }

    /// Start `hermes supervise` (which execs s6-svscan) and wait until it listens.
    pub fn supervise(&mut self) {
        let log = fs::File::create(self.root().join("supervise.log")).unwrap();
        let child = self
            .command(&["supervise"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn hermes supervise");
        self.supervisor = Some(child);
        let layout = self.layout();
        self.wait_for("s6-svscan to listen", Duration::from_secs(10), || {
            layout.has_supervisor()
        });
    }

    /// SIGTERM the supervisor and wait for it (s6 brings every service down first).
    pub fn stop_supervisor(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.supervisor.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "s6-svscan did not exit within {limit:?} of SIGTERM\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_for(&self, what: &str, limit: Duration, done: impl FnMut() -> bool) {
        if !poll(limit, Duration::from_millis(5), done) {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                self.dump()
            );
        }
    }

    /// `gateway status --all --json`: one object per slot.
    pub fn status_all(&self) -> Vec<Value> {
        let out = self.ok(&["gateway", "status", "--all", "--json"]);
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(e) => panic!("bad JSON from gateway status --all --json ({e}):\n{out}"),
        }
    }

    pub fn status(&self, profile: &str) -> Value {
        let out = self.ok(&["-p", profile, "gateway", "status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }

    pub fn port_of(&self, profile: &str) -> u16 {
        let path = self.profile_dir(profile).join("config.yaml");
        let text = fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("port:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {}:\n{text}", path.display()))
    }

    /// Edit the profile's `gateway.port` by hand, as an operator would.
    pub fn set_port(&self, profile: &str, port: u16) {
        let path = self.profile_dir(profile).join("config.yaml");
        let text = fs::read_to_string(&path).unwrap();
        let old = self.port_of(profile);
        fs::write(
            &path,
            text.replace(&format!("port: {old}"), &format!("port: {port}")),
        )
        .unwrap();
    }

    /// The webhook secret from the profile's `.env`.
    pub fn secret_of(&self, profile: &str) -> String {
        let path = self.profile_dir(profile).join(".env");
        let text = fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("HERMES_WEBHOOK_SECRET="))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no secret in {}", path.display()))
    }

    pub fn state(&self, profile: &str) -> Value {
        fs::read_to_string(self.profile_dir(profile).join("gateway_state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// Everything that helps explain a failure: the tree, the supervisor's
    /// output, log tails and state files.
    pub fn dump(&self) -> String {
        let mut out = String::from("=== test environment\n");
        let tree = Command::new("find")
            .arg(self.root())
            .args(["-not", "-path", "*/supervise/*", "-printf", "%M %u %p %l\n"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.push_str(&tree);
        let log = self.root().join("supervise.log");
        out.push_str(&format!(
            "--- {}\n{}\n",
            log.display(),
            fs::read_to_string(&log).unwrap_or_default()
        ));
        for entry in fs::read_dir(self.home().join("logs/gateways"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let current = entry.path().join("current");
            let text = fs::read_to_string(&current).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last lines)\n", current.display()));
            for l in &lines[lines.len().saturating_sub(20)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        let mut stack = vec![self.home()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = e.path();
                let ft = e.file_type().ok();
                if ft.is_some_and(|t| t.is_dir()) {
                    stack.push(p);
                } else if e.file_name() == "gateway_state.json" {
                    out.push_str(&format!(
                        "--- {}\n{}\n",
                        p.display(),
                        fs::read_to_string(&p).unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    /// Kill whatever still runs for this environment (a failed test must not
    /// leave gateways behind for the next one).
    fn reap_leftovers(&self) {
        for p in procs::belonging_to(self.root()) {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let stopped = poll(Duration::from_secs(30), Duration::from_millis(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.reap_leftovers();
    }
}

/// Whether `s6-supervise` runs on the published slot of `profile`.
pub fn slot_supervised(env: &Env, profile: &str) -> bool {
    hermes_s6::is_supervised(&env.slot(profile))
}
