//! The integration-test harness: a temp `HERMES_HOME`, scandir and alias dir
//! per test, the real `hermes` binary, and a real `s6-svscan` started through
//! `hermes supervise`. Waits poll with a deadline; failures dump the command,
//! its output and the relevant files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hermes");

pub struct Env {
    pub dir: tempfile::TempDir,
    supervisor: Option<Child>,
}

/// A port nobody listens on right now (the OS picks it, so parallel tests do not clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub fn render_output(cmd: &str, out: &Output) -> String {
    format!(
        "command: {cmd}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hermes-it-")
            .tempdir()
            .expect("temp dir");
        let env = Env {
            dir,
            supervisor: None,
        };
        // The root profile's default port would clash between parallel tests.
        std::fs::create_dir_all(env.home()).unwrap();
        std::fs::write(
            env.home().join("config.yaml"),
            format!("gateway:\n  host: 127.0.0.1\n  port: {}\n", free_port()),
        )
        .unwrap();
        env
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn scandir(&self) -> PathBuf {
        self.dir.path().join("scan")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    pub fn profile_dir(&self, name: &str) -> PathBuf {
        if name == "default" {
            self.home()
        } else {
            self.home().join("profiles").join(name)
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("HERMES_HOME", self.home())
            .env("HERMES_SCANDIR", self.scandir())
            .env("HERMES_BIN_DIR", self.bin_dir())
            .env_remove("HERMES_CONTAINER")
            .env_remove("HERMES_SUPERVISED_CHILD")
            .env_remove("HERMES_SERVICE_MANAGER")
            .stdin(Stdio::null());
        cmd
    }

    /// Run hermes to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hermes")
    }

    /// Run hermes and insist on exit 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            panic!(
                "{}\n{}",
                render_output(&format!("hermes {}", args.join(" ")), &out),
                self.dump()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `hermes profile create ARGS… --port <free port>`: parallel tests must not share ports.
    pub fn create(&self, args: &[&str]) -> String {
        let port = free_port().to_string();
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
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Start `hermes supervise` and wait until s6-svscan listens.
    pub fn supervise(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("supervise.log")).unwrap();
        let child = self
            .command(&["supervise"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn hermes supervise");
        self.supervisor = Some(child);
        let control = self.scandir().join(".s6-svscan/control");
        self.wait_for("s6-svscan to listen", Duration::from_secs(10), || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags_nonblock()
                .open(&control)
                .is_ok()
        });
    }

    /// SIGTERM the supervisor and return its exit status.
    pub fn stop_supervisor(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.supervisor.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "s6-svscan did not exit within 15 s of SIGTERM\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {what}\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn status_json(&self, profile: &str) -> serde_json::Value {
        let out = self.ok(&["-p", profile, "gateway", "status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }

    pub fn port_of(&self, profile: &str) -> u16 {
        let text = std::fs::read_to_string(self.profile_dir(profile).join("config.yaml")).unwrap();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("port:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in config:\n{text}"))
    }

    pub fn state(&self, profile: &str) -> serde_json::Value {
        let path = self.profile_dir(profile).join("gateway_state.json");
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Everything that helps explain a failure.
    pub fn dump(&self) -> String {
        let mut out = String::from("=== test environment\n");
        let tree = Command::new("find")
            .arg(self.dir.path())
            .arg("-not")
            .arg("-path")
            .arg("*/supervise/*")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.push_str(&tree);
        let supervise_log = self.dir.path().join("supervise.log");
        out.push_str(&format!(
            "--- {}\n{}\n",
            supervise_log.display(),
            std::fs::read_to_string(&supervise_log).unwrap_or_default()
        ));
        let logs = self.home().join("logs/gateways");
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for e in entries.flatten() {
                let current = e.path().join("current");
                let text = std::fs::read_to_string(&current).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                out.push_str(&format!("--- {} (last lines)\n", current.display()));
                for l in tail.iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        for state in find_files(&self.home(), "gateway_state.json") {
            out.push_str(&format!(
                "--- {}\n{}\n",
                state.display(),
                std::fs::read_to_string(&state).unwrap_or_default()
            ));
        }
        out
    }
}

fn find_files(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            } else if e.file_name() == name {
                found.push(p);
            }
        }
    }
    found
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// `GET path` on 127.0.0.1:port: (status code, body), or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], "")
}

/// A request on 127.0.0.1:port: (status code, body), or None when nothing answers.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Whether a process with this pid exists (not a zombie).
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}
