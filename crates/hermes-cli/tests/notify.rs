//! Notifications end to end: gateways under a real s6-svscan, the finish hook
//! appending to the outbox, `hermes container notify-run` delivering to a
//! receiver on loopback that checks every signature.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hermes_core::config::Scheme;
use hermes_gateway::signature;

use hermes_testkit::{alive, free_port, hermes_bin, Env};

const SECRET: &str = "notify-secret-0123456789";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    event: String,
    profile: Option<String>,
    reason: Option<String>,
    signed: Result<(), String>,
}

/// A receiver on 127.0.0.1:`port` answering 202; stop it by dropping.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&buf[..n]);
    }
    Some((head, body))
}

fn check_signature(head: &str, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
            .ok_or(format!("no {name}"))
    };
    let ts: u64 = header("x-hermes-timestamp")?
        .parse()
        .map_err(|_| "bad timestamp".to_string())?;
    let key = header("idempotency-key")?;
    let sig = header("x-hermes-signature")?;
    let expected = signature::sign(Scheme::Hermes, SECRET.as_bytes(), ts, Some(&key), body);
    if sig == expected[1].1 {
        Ok(())
    } else {
        Err(format!("signature {sig} is not {}", expected[1].1))
    }
}

impl Receiver {
    fn start(port: u16, got: Arc<Mutex<Vec<Got>>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (keep, halt) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let Some((head, body)) = read_request(&mut s) else {
                    continue;
                };
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                keep.lock().unwrap().push(Got {
                    id: doc["id"].as_str().unwrap_or_default().to_string(),
                    event: doc["event"].as_str().unwrap_or_default().to_string(),
                    profile: doc["profile"].as_str().map(str::to_string),
                    reason: doc["reason"].as_str().map(str::to_string),
                    signed: check_signature(&head, &body),
                });
                let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
            }
        });
        Receiver {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// On a free port, configured as the root profile's notify target.
    fn for_env(env: &Env) -> Receiver {
        let port = free_port();
        configure(env, port);
        Receiver::start(port, Arc::default())
    }

    fn events(&self, kind: &str, profile: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.event == kind && g.profile.as_deref() == Some(profile))
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The root config with a notify target on `port`, and the signing secret.
fn configure(env: &Env, port: u16) {
    let config = env.home().join("config.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "notify:\n  targets:\n    - url: http://127.0.0.1:{port}/hermes\n      secret_var: NOTIFY_SECRET\n"
    ));
    std::fs::write(&config, text).unwrap();
    let dotenv = env.home().join(".env");
    let mut text = std::fs::read_to_string(&dotenv).unwrap_or_default();
    text.push_str(&format!("NOTIFY_SECRET={SECRET}\n"));
    std::fs::write(&dotenv, text).unwrap();
}

struct SenderProc(Child);

impl Drop for SenderProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sender(env: &Env) -> SenderProc {
    let log = std::fs::File::create(env.dir.path().join("notify.log")).unwrap();
    SenderProc(
        env.command(&["container", "notify-run"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the sender"),
    )
}

fn pid_of(env: &Env, profile: &str) -> Option<u64> {
    let st = env.status(profile);
    (st["up"] == true).then(|| st["pid"].as_u64()).flatten()
}

#[test]
fn five_quick_crashes_make_one_parked_notification_then_recovered() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["web", "--no-alias"]);
    let receiver = Receiver::for_env(&env);
    let _sender = start_sender(&env);
    env.ok(&["-p", "web", "gateway", "start"]);
    // The gateway's own crash (SIGABRT), five times, each as soon as it is back.
    let mut killed = None;
    for i in 0..5 {
        let mut pid = None;
        // A new pid: s6 may still report the killed one, already a zombie,
        // which it reaps at any moment (a kill would then fail with ESRCH).
        env.wait_for(
            &format!("gateway up before kill {i}"),
            Duration::from_secs(20),
            || {
                pid = pid_of(&env, "web").filter(|p| Some(*p) != killed);
                pid.is_some()
            },
        );
        killed = pid;
        let pid = pid.unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGABRT,
        )
        .unwrap();
        env.wait_for(
            "the killed gateway to be gone",
            Duration::from_secs(10),
            || !alive(pid as u32),
        );
    }
    env.wait_for("the parked notification", Duration::from_secs(30), || {
        !receiver.events("parked", "web").is_empty()
    });
    // Anything else would have arrived by now: the sender polls every 0.5 s.
    std::thread::sleep(Duration::from_secs(2));
    let parked = receiver.events("parked", "web");
    assert_eq!(parked.len(), 1, "{parked:?}\n{}", env.dump());
    let reason = parked[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("crash loop") && reason.contains("signal 6"),
        "{reason}"
    );
    assert_eq!(parked[0].signed, Ok(()));
    assert_eq!(receiver.events("crash_loop", "web").len(), 1);
    assert_eq!(env.state("web")["gateway_state"], "startup_failed");

    // Fixed (nothing to fix: it was killed) and started: recovered once it has served 10 s.
    env.ok(&["-p", "web", "gateway", "start"]);
    env.wait_for(
        "the recovered notification",
        Duration::from_secs(30),
        || !receiver.events("recovered", "web").is_empty(),
    );
    let recovered = receiver.events("recovered", "web");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].signed, Ok(()));
    let ids: Vec<String> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| g.id.clone())
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "a notification was delivered twice");
}

#[test]
fn a_receiver_down_during_a_burst_gets_every_event_exactly_once() {
    let mut env = Env::new();
    env.supervise();
    let names = ["b1", "b2", "b3"];
    for name in names {
        env.create(&[name, "--no-alias"]);
        // A fatal configuration: every start parks the slot at once (exit 78).
        std::fs::write(
            env.profile_dir(name).join("config.yaml"),
            "gateway:\n  port: 0\n",
        )
        .unwrap();
    }
    let receiver = Receiver::for_env(&env);
    let (port, got) = (receiver.port, receiver.got.clone());
    let mut sender = start_sender(&env);
    env.fails(&["-p", "b1", "gateway", "start"], 1);
    env.wait_for("the first event", Duration::from_secs(20), || {
        got.lock().unwrap().len() == 1
    });
    drop(receiver);
    // The burst, with nobody listening: two rounds of three parkings.
    for _ in 0..2 {
        for name in names {
            env.fails(&["-p", name, "gateway", "start"], 1);
        }
    }
    let outbox = env.home().join("notify/outbox.jsonl");
    env.wait_for(
        "seven events in the outbox",
        Duration::from_secs(20),
        || std::fs::read_to_string(&outbox).is_ok_and(|t| t.lines().count() == 7),
    );
    // The sender restarts too (a container restart) while the receiver is down.
    drop(sender);
    sender = start_sender(&env);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(got.lock().unwrap().len(), 1);

    let _receiver = Receiver::start(port, got.clone());
    env.wait_for("all seven delivered", Duration::from_secs(90), || {
        got.lock().unwrap().len() >= 7
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 7, "{got:?}");
    let mut ids: Vec<&str> = got.iter().map(|g| g.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "an event came twice: {got:?}");
    for name in names {
        let n = got
            .iter()
            .filter(|g| g.profile.as_deref() == Some(name))
            .count();
        assert_eq!(n, if name == "b1" { 3 } else { 2 }, "{name}: {got:?}");
    }
    for g in &got {
        assert_eq!(g.event, "parked");
        assert_eq!(g.signed, Ok(()), "{g:?}");
        assert!(
            g.reason
                .as_deref()
                .unwrap_or_default()
                .contains("gateway.port"),
            "{g:?}"
        );
    }
    drop(sender);
}

#[test]
fn stopping_is_queued_by_the_init_and_delivered_as_the_notify_slot_goes_down() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["web", "--no-alias"]);
    let receiver = Receiver::for_env(&env);
    // The static slot the container's boot installs, under the test's s6-svscan.
    let slots = hermes_init::scandir::static_slots(
        &hermes_bin(),
        &hermes_core::HermesHome::new(env.home()),
        |_| None,
    );
    let notify: Vec<_> = slots.into_iter().filter(|s| s.name == "notify").collect();
    let scandir = hermes_core::dirfd::Dir::open(&env.scandir()).unwrap();
    hermes_s6::static_slot::install(&scandir, &notify).unwrap();
    let rescan = std::process::Command::new("s6-svscanctl")
        .arg("-a")
        .arg(env.scandir())
        .status()
        .unwrap();
    assert!(rescan.success());
    let slot = env.scandir().join("notify");
    let svc = |args: &[&str]| {
        let ok = std::process::Command::new("s6-svc")
            .args(args)
            .arg(&slot)
            .status()
            .unwrap();
        assert!(ok.success(), "s6-svc {args:?}");
    };
    let slot_up = || {
        std::process::Command::new("s6-svstat")
            .args(["-o", "up"])
            .arg(&slot)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    };
    env.wait_for("the notify slot to be up", Duration::from_secs(10), slot_up);
    env.ok(&["-p", "web", "gateway", "start"]);
    let stopping = || -> Vec<Got> {
        let got = receiver.got.lock().unwrap().clone();
        got.into_iter().filter(|g| g.event == "stopping").collect()
    };
    // The slot alone going down (restarted, replaced) is not the container stopping.
    svc(&["-wD", "-T", "10000", "-d"]);
    svc(&["-u"]);
    env.wait_for(
        "the notify slot to be up again",
        Duration::from_secs(10),
        slot_up,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(stopping().is_empty(), "{:?}", stopping());

    // The init's step before it brings the tree down, then the tree's SIGTERM.
    env.ok(&["container", "notify-stopping"]);
    svc(&["-wD", "-T", "10000", "-d"]);
    env.wait_for("the stopping notification", Duration::from_secs(10), || {
        !stopping().is_empty()
    });
    let got = stopping();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].signed, Ok(()));
    let outbox = std::fs::read_to_string(env.home().join("notify/outbox.jsonl")).unwrap();
    assert!(outbox.contains("\"gateways\":[\"web\"]"), "{outbox}");
}
