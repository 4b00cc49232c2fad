//! The test kit of hermes (a dev-dependency only): one environment per test
//! (a private `HERMES_HOME` and scandir, the real `hermes` binary, a real
//! `s6-svscan` started through `hermes supervise`), and the helpers the
//! suites share: ports, deadline polls, `/proc`, HTTP requests and webhook
//! signing, a tmpfs, and a headless Chromium.
#![allow(clippy::disallowed_methods)] // dev-only: a failed test panics with the path

pub mod cdp;
pub mod env;
pub mod http;
pub mod procs;
pub mod tmpfs;
pub mod wait;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

pub use env::{hermes_bin, render_output, slot_supervised, text_of, Env};
pub use procs::alive;
pub use wait::{poll, wait_for};

/// A port nobody listens on right now (the OS picks it, so parallel tests do
/// not clash), and never one this process was given before: a profile's port
/// is not bound until its gateway runs, so the OS may hand it out again.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        if given.insert(port) {
            return port;
        }
    }
}

/// `tool` on PATH, or a failure naming the Debian package: the tools the
/// tests run are installed by `scripts/test`, and a missing one is not a pass.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not on PATH: scripts/test installs it (Debian: apt-get install {package})")
        })
}

/// Whether this test runs as root (what mounting a tmpfs or switching uid needs).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Run `cmd` with `input` on its stdin and return its stdout; a failure
/// panics with the command, its output and the input (a document a checker
/// such as `promtool` or a parser refused).
pub fn pipe_through(cmd: &mut std::process::Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // A checker that fails early may close its stdin: its exit says why.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} exited {}:\n{}{}\n--- input ---\n{input}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
