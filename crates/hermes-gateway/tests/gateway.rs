//! The gateway process end to end: each test starts real gateway processes
//! (this test binary re-executed into `hermes_gateway::run`, the function
//! `hermes gateway run` calls, with the same exit-code mapping) on a temp
//! `HERMES_HOME` and a free port, and talks to them over HTTP and signals.
#![allow(clippy::disallowed_methods)] // tests

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_core::config::{Config, Scheme};
use hermes_core::home::ProfilePaths;
use hermes_core::name::HookName;
use hermes_core::profile::{self, SECRET_VAR};
use hermes_core::state::{self, DesiredState, GatewayState, RunState, StopSignal};
use hermes_core::{HermesHome, ProfileName};
use hermes_gateway::client;
use hermes_gateway::remote::Target;
use hermes_testkit::free_port;
use hermes_testkit::tmpfs::Tmpfs;
use serde_json::Value;

const CHILD_ENV: &str = "HERMES_GATEWAY_TEST_CHILD";
/// The descriptor number the readiness pipe gets in the child.
const NOTIFY_FD: i32 = 100;
const DEADLINE: Duration = Duration::from_secs(15);

/// The gateway process itself, when this binary is re-executed by a test.
#[test]
fn gateway_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    if let Some(lock) = std::env::var_os("TEST_HOLD_LOCK_IGNORING_SIGTERM") {
        // A stand-in for a gateway that hangs on SIGTERM while holding the profile lock.
        // SAFETY: setting a signal disposition to "ignore" runs no handler code.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        let _held = hermes_core::fsutil::try_lock_exclusive(std::path::Path::new(&lock))
            .unwrap()
            .expect("lock is free");
        loop {
            std::thread::park();
        }
    }
    let home = HermesHome::from_env().expect("HERMES_HOME is set by the test");
    let options = hermes_gateway::RunOptions {
        home,
        profile: ProfileName::default_profile(),
        replace: std::env::var_os("TEST_REPLACE").is_some(),
        notify_fd: std::env::var_os("TEST_NOTIFY").map(|_| NOTIFY_FD),
    };
    let code = match hermes_gateway::run(options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hermes: {e}");
            e.exit_status().code()
        }
    };
    std::process::exit(code.into());
}

struct Home {
    _dir: tempfile::TempDir,
    home: HermesHome,
    paths: ProfilePaths,
    port: u16,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        profile::ensure_root(&home).unwrap();
        let port = free_port();
        Config::new(port)
            .save(&home.profile(&ProfileName::default_profile()).config())
            .unwrap();
        let paths = home.profile(&ProfileName::default_profile());
        Home {
            _dir: dir,
            home,
            paths,
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn state(&self) -> GatewayState {
        state::load(&self.paths.state()).unwrap().state()
    }

    fn secret(&self) -> String {
        profile::env_value(&self.paths, SECRET_VAR)
            .unwrap()
            .unwrap()
    }

    fn get(&self, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
        call(&self.addr(), "GET", path, headers, b"")
    }
}

fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let r = client::request(addr, method, path, headers, body, Duration::from_secs(10)).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

struct Gateway {
    child: Child,
    ready: mpsc::Receiver<Vec<u8>>,
}

impl Gateway {
    fn spawn(home: &Home, replace: bool) -> Gateway {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "gateway_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("HERMES_HOME", home.home.root())
        .env("TEST_NOTIFY", "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if replace {
            cmd.env("TEST_REPLACE", "1");
        }
        let raw = write.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; the duplicate drops O_CLOEXEC so only this
        // child inherits the write end (every other fd of the test stays close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, NOTIFY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(write);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let _ = std::fs::File::from(read).read_to_end(&mut got);
            let _ = tx.send(got);
        });
        Gateway { child, ready: rx }
    }

    /// What the gateway wrote to its readiness fd before closing it (or exiting).
    fn readiness(&self) -> Vec<u8> {
        self.ready
            .recv_timeout(DEADLINE)
            .expect("readiness fd never closed")
    }

    fn wait_ready(&self) {
        assert_eq!(self.readiness(), b"\n", "gateway did not signal readiness");
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Wait for exit (polling, with a deadline); returns (code or 128+signal, stderr, time taken).
    fn wait_exit(mut self) -> (i32, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return (code, err, start.elapsed());
            }
            assert!(start.elapsed() < DEADLINE, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The stderr lines the gateway wrote: its log (`hermes-gateway: `) and its final error (`hermes: `).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("hermes")).collect()
}

fn signed(secret: &str, body: &[u8], ts: u64) -> Vec<(&'static str, String)> {
    hermes_gateway::signature::sign(Scheme::Hermes, secret.as_bytes(), ts, None, body)
}

fn signed_with_key(secret: &str, body: &[u8], ts: u64, key: &str) -> Vec<(&'static str, String)> {
    hermes_gateway::signature::sign(Scheme::Hermes, secret.as_bytes(), ts, Some(key), body)
}

fn bearer(secret: &str) -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {secret}"))]
}

fn now_secs() -> u64 {
    state::now_ms() / 1000
}

#[test]
fn serves_health_records_states_and_stops_cleanly_on_sigterm() {
    let home = Home::new();
    state::update(&home.paths, |s| {
        s.desired_state = Some(DesiredState::Running)
    })
    .unwrap();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();

    let (status, body) = home.get("/health", &[]);
    assert_eq!(
        (status, body),
        (
            200,
            serde_json::json!({"status": "ok", "profile": "default"})
        )
    );
    let (status, detail) = home.get("/health/detailed", &bearer(&home.secret()));
    assert_eq!(status, 200);
    assert_eq!(detail["profile"], "default");
    assert_eq!(detail["pid"], gw.pid());
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["version"], env!("CARGO_PKG_VERSION"));
    assert!(detail["uptime_s"].is_u64());
    assert_eq!(detail["inbox"]["recovery"]["cuts"], serde_json::json!([]));

    let running = home.state();
    assert_eq!(running.gateway_state, Some(RunState::Running));
    assert_eq!(running.pid, Some(gw.pid() as u32));
    assert!(running.started_at.is_some());
    assert_eq!(hermes_gateway::holder_pid(&home.paths), Some(gw.pid()));
    let pid_file = std::fs::read_to_string(home.paths.pid_file()).unwrap();
    assert_eq!(pid_file.trim(), gw.pid().to_string());

    gw.signal(libc::SIGTERM);
    let (code, stderr, took) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let stopped = home.state();
    assert_eq!(stopped.gateway_state, Some(RunState::Stopped));
    assert!(stopped.stopped_on_request(), "{stopped:?}");
    assert_eq!(
        stopped.desired_state,
        Some(DesiredState::Running),
        "desired_state was touched"
    );
    assert!(!home.paths.pid_file().exists());
}

/// Counts the renames onto `gateway_state.json` in a profile directory
/// (every state write ends in one), from the moment it is made. The
/// renames' other half is watched too: inotify merges an event into the one
/// queued before it when both are alike, cookie aside.
struct StateWrites {
    fd: std::os::fd::OwnedFd,
}

impl StateWrites {
    fn watch(paths: &ProfilePaths) -> StateWrites {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 takes flags only; the descriptor it returns is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(raw >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let dir = paths.state();
        let dir = std::ffi::CString::new(dir.parent().unwrap().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and an inotify descriptor.
        let wd = unsafe {
            libc::inotify_add_watch(raw, dir.as_ptr(), libc::IN_MOVED_FROM | libc::IN_MOVED_TO)
        };
        assert!(wd >= 0, "{}", std::io::Error::last_os_error());
        StateWrites { fd }
    }

    /// The renames onto `gateway_state.json` queued since `watch` (or the last count).
    fn count(&self) -> usize {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        loop {
            // SAFETY: reads into a buffer of the length given.
            let got =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return n;
            }
            let mut at = 0;
            while at < got as usize {
                // struct inotify_event: wd, mask, cookie, len (4 bytes each), then the name.
                let mask = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                let name = &buf[at + 16..at + 16 + len];
                let name = name.split(|b| *b == 0).next().unwrap_or_default();
                if mask & libc::IN_MOVED_TO != 0 && name == b"gateway_state.json" {
                    n += 1;
                }
                at += 16 + len;
            }
        }
    }
}

#[test]
fn an_idle_gateway_records_its_way_down_with_one_state_write() {
    let home = Home::new();
    // Two short failures before this run: a requested stop clears them, as
    // the finish hook would (its script no longer starts it for this exit).
    state::update(&home.paths, |s| s.fast_failures = 2).unwrap();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let writes = StateWrites::watch(&home.paths);
    gw.signal(libc::SIGTERM);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
    let stopped = home.state();
    assert!(stopped.stopped_on_request(), "{stopped:?}");
    assert_eq!(stopped.last_exit.map(|e| e.code), Some(Some(0)));
    assert_eq!(stopped.fast_failures, 0);
    // "draining" and "stopped" were two fsyncs and renames per gateway, and
    // with a whole container stopping they queue on the same journal.
    assert_eq!(writes.count(), 1, "{stderr}");
}

#[test]
fn a_drain_that_lasts_is_recorded_and_its_request_answered() {
    use std::io::Write;
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let body = b"in flight at the stop";
    let mut headers = signed(&home.secret(), body, now_secs());
    headers.push(("Expect", "100-continue".to_string()));
    let mut conn = hostile(&home.addr(), &post_head("ci", body.len(), &headers), b"");
    // hyper answers 100 once the handler reads the body: the request is in flight.
    let go_on = answer_within(&mut conn, DEADLINE).expect("no 100 Continue");
    assert!(go_on.starts_with("HTTP/1.1 100"), "{go_on}");
    gw.signal(libc::SIGTERM);
    let start = Instant::now();
    while home.state().gateway_state != Some(RunState::Draining) {
        assert!(start.elapsed() < DEADLINE, "draining never recorded");
        std::thread::sleep(Duration::from_millis(5));
    }
    conn.write_all(body).unwrap();
    let answer = answer_within(&mut conn, DEADLINE).expect("no answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
    assert!(home.state().stopped_on_request(), "{stderr}");
}

#[test]
fn readiness_comes_only_once_the_port_accepts() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    // Connecting right after the newline must work: readiness followed the bind.
    std::net::TcpStream::connect(home.addr()).expect("ready but not listening");
    assert_eq!(home.state().gateway_state, Some(RunState::Running));
    gw.signal(libc::SIGINT);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        home.state().exit_reason.as_deref(),
        Some(StopSignal::Int.as_str())
    );
}

/// The names renamed to in the directory `watch` watches with `IN_MOVE`, in
/// order: every atomic replace ends with one. (Watching `IN_MOVED_FROM` too
/// keeps the kernel from merging two renames to one name into one event.)
fn renamed_into(watch: &std::os::fd::OwnedFd) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: read(2) into a buffer we own, of its length; the descriptor is non-blocking.
    let n = unsafe { libc::read(watch.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).unwrap_or(0);
    let (mut names, mut at) = (Vec::new(), 0);
    let head = std::mem::size_of::<libc::inotify_event>();
    while at + head <= n {
        // SAFETY: the kernel wrote whole events; read_unaligned copes with the byte buffer.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        let name = &buf[at + head..at + head + event.len as usize];
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if event.mask & libc::IN_MOVED_TO != 0 {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        at += head + event.len as usize;
    }
    names
}

/// Each write before readiness is an fsync the wait of `start --all` waits
/// for, per gateway: the state is written once (running), and not before.
#[test]
fn the_state_is_written_once_before_readiness() {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let home = Home::new();
    // SAFETY: inotify_init1 makes a new descriptor, owned from here on.
    let watch = unsafe {
        std::os::fd::OwnedFd::from_raw_fd(libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))
    };
    let dir = std::ffi::CString::new(home.paths.state().parent().unwrap().as_os_str().as_bytes())
        .unwrap();
    // SAFETY: a valid descriptor and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(watch.as_raw_fd(), dir.as_ptr(), libc::IN_MOVE) };
    assert!(wd >= 0, "{}", std::io::Error::last_os_error());
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let state_file = home.paths.state();
    let state_name = state_file.file_name().unwrap().to_string_lossy();
    let writes = renamed_into(&watch)
        .into_iter()
        .filter(|n| *n == state_name)
        .count();
    assert_eq!(
        writes,
        1,
        "writes of {} before readiness",
        state_file.display()
    );
    let running = home.state();
    assert_eq!(running.gateway_state, Some(RunState::Running));
    assert_eq!(running.pid, Some(gw.pid() as u32));
    gw.signal(libc::SIGTERM);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_second_instance_exits_75_naming_the_holder() {
    let home = Home::new();
    let first = Gateway::spawn(&home, false);
    first.wait_ready();
    let second = Gateway::spawn(&home, false);
    assert_eq!(
        second.readiness(),
        b"",
        "a second instance signalled readiness"
    );
    let (code, stderr, _) = second.wait_exit();
    assert_eq!(code, 75, "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    assert!(lines[0].contains("--replace"), "{stderr}");
    // The first one is unharmed.
    assert_eq!(home.get("/health", &[]).0, 200);
    assert_eq!(home.state().pid, Some(first.pid() as u32));
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit().0, 0);
}

#[test]
fn replace_takes_over_from_the_running_gateway() {
    let home = Home::new();
    let first = Gateway::spawn(&home, false);
    first.wait_ready();
    let second = Gateway::spawn(&home, true);
    second.wait_ready();
    let (code, stderr, _) = first.wait_exit();
    assert_eq!(
        code, 0,
        "the replaced gateway did not stop cleanly: {stderr}"
    );
    let (_, detail) = home.get("/health/detailed", &bearer(&home.secret()));
    assert_eq!(detail["pid"], second.pid());
    assert_eq!(home.state().gateway_state, Some(RunState::Running));
    assert_eq!(home.state().pid, Some(second.pid() as u32));
    let pid_file = std::fs::read_to_string(home.paths.pid_file()).unwrap();
    assert_eq!(pid_file.trim(), second.pid().to_string());
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit().0, 0);
}

#[test]
fn a_bad_config_exits_78_with_startup_failed() {
    let home = Home::new();
    std::fs::write(home.paths.config(), "gateway:\n  port: 0\n").unwrap();
    let gw = Gateway::spawn(&home, false);
    assert_eq!(gw.readiness(), b"");
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 78, "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("config.yaml") && lines[0].contains("gateway.port"),
        "{stderr}"
    );
    let state = home.state();
    assert_eq!(state.gateway_state, Some(RunState::StartupFailed));
    assert!(state.exit_reason.unwrap().contains("gateway.port"));
    assert!(!home.paths.pid_file().exists());
}

#[test]
fn a_missing_secret_is_fatal_configuration() {
    let home = Home::new();
    std::fs::write(home.paths.env_file(), "OTHER=1\n").unwrap();
    let gw = Gateway::spawn(&home, false);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("HERMES_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn a_port_in_use_is_startup_failed_and_exit_1() {
    let home = Home::new();
    let _squatter = std::net::TcpListener::bind(home.addr()).unwrap();
    let gw = Gateway::spawn(&home, false);
    assert_eq!(
        gw.readiness(),
        b"",
        "readiness signalled without a listener"
    );
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 1, "{stderr}");
    let state = home.state();
    assert_eq!(state.gateway_state, Some(RunState::StartupFailed));
    let reason = state.exit_reason.unwrap();
    assert!(
        reason.contains(&home.addr()) && reason.contains("in use"),
        "{reason}"
    );
}

#[test]
fn webhook_deliveries_are_verified_stored_and_paged() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    let addr = home.addr();
    let post = |path: &str, headers: &[(&str, String)], body: &[u8]| {
        call(&addr, "POST", path, headers, body)
    };

    let body = br#"{"n":1}"#;
    let (status, answer) = post("/v1/webhooks/ci", &signed(&secret, body, now_secs()), body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["id"].as_u64(), answer["duplicate"].as_bool()),
        (Some(1), Some(false))
    );

    // Idempotent retry, signed again: same id, nothing new stored.
    let keyed = signed_with_key(&secret, b"two", now_secs(), "delivery-2");
    let first = post("/v1/webhooks/ci", &keyed, b"two");
    let again = signed_with_key(&secret, b"two", now_secs() + 1, "delivery-2");
    let retry = post("/v1/webhooks/ci", &again, b"two");
    assert_eq!(first.1["id"], 2);
    assert_eq!(
        (
            retry.0,
            retry.1["id"].as_u64(),
            retry.1["duplicate"].as_bool()
        ),
        (202, Some(2), Some(true))
    );

    // Rejections: each a 401 JSON error, nothing stored.
    let stale = signed(&secret, body, now_secs() - 301);
    let future = signed(&secret, body, now_secs() + 301);
    let wrong = signed("not the secret", body, now_secs());
    let altered = signed(&secret, br#"{"n":2}"#, now_secs());
    let no_sig = vec![("X-Hermes-Timestamp", now_secs().to_string())];
    for (name, headers) in [
        ("stale", &stale),
        ("future", &future),
        ("wrong", &wrong),
        ("altered", &altered),
        ("no sig", &no_sig),
        ("none", &vec![]),
    ] {
        let (status, answer) = post("/v1/webhooks/ci", headers, body);
        assert_eq!(status, 401, "{name}: {answer}");
        assert!(
            answer["error"].is_string() && answer["code"].is_string(),
            "{name}: {answer}"
        );
    }
    // Over the 1 MiB default body limit.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, answer) = post("/v1/webhooks/ci", &signed(&secret, &big, now_secs()), &big);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(
        post(
            "/v1/webhooks/bad%20name",
            &signed(&secret, body, now_secs()),
            body
        )
        .0,
        400
    );

    for n in 3..=12 {
        let b = format!("event {n}");
        assert_eq!(
            post(
                "/v1/webhooks/ci",
                &signed(&secret, b.as_bytes(), now_secs()),
                b.as_bytes()
            )
            .1["id"],
            n
        );
    }

    // Paging with the bearer secret.
    let auth = [("Authorization", format!("Bearer {secret}"))];
    assert_eq!(home.get("/v1/webhooks/ci/events", &[]).0, 401);
    assert_eq!(
        home.get(
            "/v1/webhooks/ci/events",
            &[("Authorization", "Bearer nope".into())]
        )
        .0,
        401
    );
    let (status, page) = home.get("/v1/webhooks/ci/events?limit=5", &auth);
    assert_eq!(status, 200);
    let ids: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(page["events"][0]["body"], r#"{"n":1}"#);
    assert_eq!(page["events"][1]["idempotency_key"], "delivery-2");
    assert_eq!(
        (page["next_after"].as_u64(), page["more"].as_bool()),
        (Some(5), Some(true))
    );
    let (_, rest) = home.get("/v1/webhooks/ci/events?after=5&limit=100", &auth);
    assert_eq!(rest["events"].as_array().unwrap().len(), 7);
    assert_eq!(rest["more"], false);
    assert_eq!(home.get("/v1/webhooks/ci/events?after=x", &auth).0, 400);

    // The CLI's client side agrees with the server.
    let target = Target::of(&home.paths).unwrap();
    let hook = HookName::parse("ci").unwrap();
    assert_eq!(
        target
            .send(&hook, b"from cli", Some("cli-1"), None)
            .unwrap()["id"],
        13
    );
    assert_eq!(
        target.list(&hook, 12, 10).unwrap()["events"][0]["body"],
        "from cli"
    );

    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn restarts_in_the_middle_of_a_delivery_stream_lose_no_acknowledged_event() {
    let home = Home::new();
    let secret = home.secret();
    let addr = home.addr();
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, secret, addr) =
                (acked.clone(), stop.clone(), secret.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("s{t}-{n}");
                    let headers = signed_with_key(&secret, key.as_bytes(), now_secs(), &key);
                    let sent = client::request(
                        &addr,
                        "POST",
                        "/v1/webhooks/stream",
                        &headers,
                        key.as_bytes(),
                        Duration::from_secs(5),
                    );
                    match sent {
                        Ok(r) if r.status == 202 => {
                            let v: Value = serde_json::from_slice(&r.body).unwrap();
                            acked.lock().unwrap().insert(key, v["id"].as_u64().unwrap());
                            n += 1;
                        }
                        // Down or draining: retry the same delivery, as a real sender would.
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    let wait_for_more = |count: usize| {
        let start = Instant::now();
        let target = acked.lock().unwrap().len() + count;
        while acked.lock().unwrap().len() < target {
            assert!(start.elapsed() < DEADLINE, "deliveries stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    wait_for_more(100);
    gw.signal(libc::SIGKILL);
    assert_eq!(gw.wait_exit().0, 128 + libc::SIGKILL);
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    wait_for_more(100);
    gw.signal(libc::SIGTERM);
    let (code, stderr, took) = gw.wait_exit();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "drain under load took {took:?}"
    );
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    wait_for_more(100);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);

    let inbox =
        hermes_inbox::Inbox::open(&home.paths.inbox_dir(), hermes_inbox::Options::default())
            .unwrap();
    let mut stored = HashMap::new();
    let hook = HookName::parse("stream").unwrap();
    let mut after = 0;
    loop {
        let page = inbox.page(&hook, after, 1000).unwrap();
        let Some(last) = page.events.last() else {
            break;
        };
        after = last.id;
        for e in page.events {
            assert!(stored
                .insert(e.id, String::from_utf8(e.body).unwrap())
                .is_none());
        }
    }
    let acked = acked.lock().unwrap();
    assert!(acked.len() >= 300);
    for (key, id) in acked.iter() {
        assert_eq!(
            stored.get(id),
            Some(key),
            "acknowledged event {id} ({key}) is missing"
        );
    }
    // Ids stay gap-free across restarts: a cut torn tail only ever held unacknowledged ids.
    let mut ids: Vec<u64> = stored.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_found_at_start_is_cut_logged_and_reported() {
    let home = Home::new();
    {
        let gw = Gateway::spawn(&home, false);
        gw.wait_ready();
        let secret = home.secret();
        for body in [&b"one"[..], b"two"] {
            let (status, _) = call(
                &home.addr(),
                "POST",
                "/v1/webhooks/ci",
                &signed(&secret, body, now_secs()),
                body,
            );
            assert_eq!(status, 202);
        }
        gw.signal(libc::SIGTERM);
        assert_eq!(gw.wait_exit().0, 0);
    }
    // A write torn by a power cut: half a header after the last whole record.
    let segment = home
        .paths
        .inbox_dir()
        .join("ci")
        .join("00000000000000000001.seg");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &[42, 0, 0]).unwrap();
    drop(file);

    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let (_, detail) = home.get("/health/detailed", &bearer(&home.secret()));
    let cuts = &detail["inbox"]["recovery"]["cuts"];
    assert_eq!(cuts.as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(cuts[0]["cut_bytes"], 3);
    assert_eq!(cuts[0]["kept_records"], 2);
    assert_eq!(detail["inbox"]["recovery"]["events"], 2);
    assert_eq!(detail["inbox"]["hooks"][0]["last_id"], 2);
    gw.signal(libc::SIGTERM);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("inbox: cut 3 byte(s) from") && stderr.contains("00000000000000000001.seg"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test runs it as root"]
fn a_full_disk_answers_507_degrades_and_recovers() {
    let home = Home::new();
    let _fs = Tmpfs::mount(&home.paths.inbox_dir(), "size=64k").unwrap();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    let mut accepted = 0u64;
    let answer = loop {
        // Each body distinct: the same signed request twice is a replay.
        let mut body = vec![b'x'; 2000];
        body.extend_from_slice(accepted.to_string().as_bytes());
        let (status, answer) = call(
            &home.addr(),
            "POST",
            "/v1/webhooks/ci",
            &signed(&secret, &body, now_secs()),
            &body,
        );
        if status != 202 {
            break (status, answer);
        }
        accepted += 1;
        assert!(accepted < 100, "a 64 KiB inbox never filled up");
    };
    assert_eq!(answer.0, 507, "{}", answer.1);
    assert_eq!(answer.1["code"], "disk_full");
    eprintln!("507 answer: {}", answer.1);
    assert_eq!(home.state().gateway_state, Some(RunState::Degraded));
    assert_eq!(
        home.get("/health/detailed", &bearer(&secret)).1["state"],
        "degraded"
    );
    // Nothing partial: every stored event is whole and acknowledged.
    let auth = [("Authorization", format!("Bearer {secret}"))];
    let (_, page) = home.get("/v1/webhooks/ci/events?limit=1000", &auth);
    assert_eq!(page["events"].as_array().unwrap().len() as u64, accepted);
    // A small delivery still fits once the big ones do not: back to running.
    let (status, _) = call(
        &home.addr(),
        "POST",
        "/v1/webhooks/ci",
        &signed(&secret, b"s", now_secs()),
        b"s",
    );
    if status == 202 {
        assert_eq!(home.state().gateway_state, Some(RunState::Running));
    }
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn replace_escalates_to_sigkill_when_the_holder_ignores_sigterm() {
    let home = Home::new();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gateway_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("TEST_HOLD_LOCK_IGNORING_SIGTERM", home.paths.gateway_lock())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while hermes_gateway::holder_pid(&home.paths) != Some(holder.id() as i32) {
        assert!(
            start.elapsed() < DEADLINE,
            "the stand-in never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let gw = Gateway::spawn(&home, true);
    gw.wait_ready();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10),
        "SIGKILL came before the 10 s grace: {waited:?}"
    );
    let status = holder.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(home.get("/health", &[]).0, 200);
    gw.signal(libc::SIGTERM);
    let (code, stderr, _) = gw.wait_exit();
    assert_eq!(code, 0);
    assert!(stderr.contains("sending SIGKILL"), "{stderr}");
}

// ---------------------------------------------------------------------------
// What a client without the secret can make the gateway do (issue 17).

impl Home {
    /// Add `gateway.limits` lines (YAML, indented by four spaces) to config.yaml.
    fn set_limits(&self, lines: &str) {
        let text = format!(
            "gateway:\n  host: 127.0.0.1\n  port: {}\n  limits:\n{lines}",
            self.port
        );
        std::fs::write(self.paths.config(), text).unwrap();
    }
}

/// A raw connection that sends `head` (and `body`), then reads nothing until asked.
fn hostile(addr: &str, head: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

/// What the server sent before it closed the connection or `within` passed;
/// `None` when it sent nothing and kept the connection open that long.
fn answer_within(stream: &mut std::net::TcpStream, within: Duration) -> Option<String> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Some(String::from_utf8_lossy(&got).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Peak and current resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn post_head(hook: &str, len: usize, headers: &[(&str, String)]) -> String {
    let mut head =
        format!("POST /v1/webhooks/{hook} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head + "\r\n"
}

const MIB: usize = 1024 * 1024;

/// A signed delivery from a sender that honours `503` + `Retry-After: 1`, up
/// to 5 attempts, each signed anew; returns the last answer and the attempts.
fn deliver_retrying(addr: &str, secret: &str, body: &[u8]) -> (u16, Value, u32) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let ts = now_secs();
        let (status, answer) = call(
            addr,
            "POST",
            "/v1/webhooks/ci",
            &signed(secret, body, ts),
            body,
        );
        if status != 503 || attempts == 5 {
            return (status, answer, attempts);
        }
        while now_secs() == ts {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn deliveries_that_fail_on_their_head_are_refused_before_the_body_arrives() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let ts = now_secs().to_string();
    let well_formed = format!("v2={}", "ab".repeat(32));
    // (what, headers, Content-Length, the status expected)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, usize, &'a str);
    let cases: [Case; 5] = [
        (
            "no signature",
            vec![("X-Hermes-Timestamp", ts.clone())],
            MIB,
            " 401 ",
        ),
        (
            "malformed signature",
            vec![
                ("X-Hermes-Timestamp", ts.clone()),
                ("X-Hermes-Signature", "v2=nothex".into()),
            ],
            MIB,
            " 401 ",
        ),
        (
            "v1 signature",
            vec![
                ("X-Hermes-Timestamp", ts.clone()),
                ("X-Hermes-Signature", format!("v1={}", "ab".repeat(32))),
            ],
            MIB,
            " 401 ",
        ),
        (
            "stale timestamp",
            vec![
                ("X-Hermes-Timestamp", (now_secs() - 3600).to_string()),
                ("X-Hermes-Signature", well_formed.clone()),
            ],
            MIB,
            " 401 ",
        ),
        (
            "over the limit",
            vec![
                ("X-Hermes-Timestamp", ts.clone()),
                ("X-Hermes-Signature", well_formed.clone()),
            ],
            MIB + 1,
            " 413 ",
        ),
    ];
    for (name, headers, len, status) in cases {
        // The head only: the body never comes.
        let mut conn = hostile(&home.addr(), &post_head("ci", len, &headers), b"");
        let answer = answer_within(&mut conn, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{name}: no answer without the body"));
        assert!(answer.contains(status), "{name}: {answer}");
    }
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn half_sent_big_bodies_cannot_grow_the_gateway_past_64_mib() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    // Well-formed, fresh, wrong: these pass every check that can be made
    // before the body, so a gateway has to buffer them to find out.
    let headers = [
        ("X-Hermes-Timestamp", now_secs().to_string()),
        ("X-Hermes-Signature", format!("v2={}", "ab".repeat(32))),
    ];
    let half = vec![b'x'; MIB / 2];
    let mut open = Vec::new();
    for _ in 0..300 {
        let mut conn = std::net::TcpStream::connect(home.addr()).unwrap();
        // A refused connection may be closed before the whole half body is in.
        let _ = std::io::Write::write_all(&mut conn, post_head("ci", MIB, &headers).as_bytes())
            .and_then(|()| std::io::Write::write_all(&mut conn, &half));
        open.push(conn);
    }
    // A signed delivery still lands while they hang, a sender honouring
    // Retry-After at most a few times (only hostile bodies past the grace are shed).
    let (status, answer, attempts) = deliver_retrying(&home.addr(), &secret, b"real event");
    assert_eq!(status, 202, "after {attempts} attempt(s): {answer}");
    let (peak, now) = rss_kib(gw.pid());
    eprintln!(
        "peak RSS {peak} KiB, now {now} KiB; signed delivery: 202 after {attempts} attempt(s)"
    );
    drop(open);
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB (now {now} KiB) under 300 half-sent 1 MiB bodies"
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn connections_past_the_cap_get_503_with_retry_after() {
    let home = Home::new();
    home.set_limits("    max_connections: 4\n");
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    // Four idle connections, younger than the grace: none can be shed.
    let idle: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(home.addr()).unwrap())
        .collect();
    let mut fifth = hostile(&home.addr(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"");
    let answer = answer_within(&mut fifth, Duration::from_secs(3)).expect("no answer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Once they have waited past the grace, the longest-waiting one makes room.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(home.get("/health", &[]).0, 200);
    drop(idle);
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn slow_heads_and_slow_bodies_time_out_while_others_are_served() {
    let home = Home::new();
    home.set_limits("    head_timeout_secs: 1\n    body_timeout_secs: 1\n");
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    // Slowloris: 50 heads, a few bytes each, never finished.
    let mut slow_heads: Vec<_> = (0..50)
        .map(|_| hostile(&home.addr(), "POST /v1/webhooks/ci HTTP/1.1\r\nX-A: ", b""))
        .collect();
    // A signed head whose body stops halfway.
    let body = vec![b'y'; 1000];
    let headers = signed(&secret, &body, now_secs());
    let mut slow_body = hostile(
        &home.addr(),
        &post_head("ci", body.len(), &headers),
        &body[..500],
    );
    let start = Instant::now();
    // Everyone else is served meanwhile.
    assert_eq!(home.get("/health", &[]).0, 200);
    let answer = answer_within(&mut slow_body, Duration::from_secs(5)).expect("slow body kept");
    assert!(answer.contains(" 408 "), "{answer}");
    for conn in &mut slow_heads {
        let left = Duration::from_secs(5).saturating_sub(start.elapsed());
        assert!(
            answer_within(conn, left.max(Duration::from_millis(10))).is_some(),
            "a slow head was kept open for {:?}",
            start.elapsed()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn a_captured_request_cannot_be_replayed_nor_its_key_stolen() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    let addr = home.addr();
    let post = |headers: &[(&str, String)], body: &[u8]| {
        call(&addr, "POST", "/v1/webhooks/ci", headers, body)
    };

    // Captured on the wire: a delivery with key k-1, replayed under the key of
    // the sender's next event before the original arrives: refused.
    let ts = now_secs();
    let captured = signed_with_key(&secret, b"order 1", ts, "k-1");
    let mut stolen = captured.clone();
    stolen[2].1 = "k-2".to_string();
    let (status, answer) = post(&stolen, b"order 1");
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature")),
        "{answer}"
    );
    // So the sender's real k-2 event is stored, not taken for a duplicate.
    let (status, answer) = post(
        &signed_with_key(&secret, b"order 2", now_secs(), "k-2"),
        b"order 2",
    );
    assert_eq!(
        (status, answer["duplicate"].as_bool()),
        (202, Some(false)),
        "{answer}"
    );
    // The original arrives; replayed as it is afterwards: refused, nothing stored.
    assert_eq!(post(&captured, b"order 1").0, 202);
    let (status, answer) = post(&captured, b"order 1");
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("replayed")),
        "{answer}"
    );
    // An unkeyed delivery replayed: refused too.
    let unkeyed = signed(&secret, b"ping", ts);
    assert_eq!(post(&unkeyed, b"ping").0, 202);
    assert_eq!(post(&unkeyed, b"ping").0, 401);
    let (_, page) = home.get("/v1/webhooks/ci/events", &bearer(&secret));
    let bodies: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["order 2", "order 1", "ping"]);

    // Nor after a restart, which forgets what it saw: older timestamps are refused.
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
    while now_secs() == ts {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let (status, answer) = post(&unkeyed, b"ping");
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("timestamp_out_of_window")),
        "{answer}"
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}

#[test]
fn health_detail_needs_the_secret_and_limit_0_returns_no_events() {
    let home = Home::new();
    let gw = Gateway::spawn(&home, false);
    gw.wait_ready();
    let secret = home.secret();
    assert_eq!(home.get("/health", &[]).0, 200);
    let (status, body) = home.get("/health/detailed", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.get("pid").is_none() && body.get("inbox").is_none(),
        "{body}"
    );
    assert_eq!(
        home.get(
            "/health/detailed",
            &[("Authorization", "Bearer wrong".into())]
        )
        .0,
        401
    );
    assert_eq!(home.get("/health/detailed", &bearer(&secret)).0, 200);

    let body = b"one";
    let headers = signed(&secret, body, now_secs());
    assert_eq!(
        call(&home.addr(), "POST", "/v1/webhooks/ci", &headers, body).0,
        202
    );
    let (status, page) = home.get("/v1/webhooks/ci/events?limit=0", &bearer(&secret));
    assert_eq!(status, 200);
    assert_eq!(page["events"], serde_json::json!([]), "{page}");
    assert_eq!(
        (page["last_id"].as_u64(), page["more"].as_bool()),
        (Some(1), Some(true))
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit().0, 0);
}
