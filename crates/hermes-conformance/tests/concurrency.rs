//! Many hermes commands at once on one HERMES_HOME and one supervisor:
//! no corruption, no duplicate slot, every loser gets a clear error.
#![allow(clippy::disallowed_methods)] // tests

use std::collections::HashSet;
use std::fs;
use std::process::Output;
use std::time::Duration;

use hermes_testkit::{free_port, poll, render_output, slot_supervised, text_of, Env};
use hermes_testkit::{http, procs};

const N: usize = 20;

/// Run `args_for(i)` for i in 0..N, all at once; outputs in order.
fn parallel(
    env: &Env,
    args_for: impl Fn(usize) -> Vec<String> + Sync,
) -> Vec<(Vec<String>, Output)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let args = args_for(i);
                s.spawn(move || {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    let out = env.run(&refs);
                    (args, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn describe(results: &[(Vec<String>, Output)]) -> String {
    results
        .iter()
        .map(|(a, o)| render_output(&format!("hermes {}", a.join(" ")), o))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of published slots and of anything half-made in the scandir or the profiles dir.
fn slots_and_leftovers(env: &Env) -> (Vec<String>, Vec<String>) {
    let mut slots = Vec::new();
    let mut leftovers = Vec::new();
    for dir in [env.scandir(), env.home().join("profiles")] {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("gateway-") && dir == env.scandir() {
                slots.push(name.clone());
            }
            if name.contains(".tmp")
                || name.contains(".creating")
                || name.contains(".deleting")
                || name.contains(".gone.")
            {
                leftovers.push(format!("{}/{name}", dir.display()));
            }
        }
    }
    slots.sort();
    (slots, leftovers)
}

fn gateway_processes(env: &Env, profile: &str) -> Vec<u32> {
    procs::belonging_to(env.root())
        .into_iter()
        .filter(|p| p.is_gateway_of(profile))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn twenty_parallel_creates_of_distinct_names_all_succeed_with_distinct_ports() {
    let mut env = Env::new();
    env.supervise();
    let results = parallel(&env, |i| {
        vec![
            "profile".into(),
            "create".into(),
            format!("p{i:02}"),
            "--no-alias".into(),
        ]
    });
    assert!(
        results.iter().all(|(_, o)| o.status.success()),
        "{}\n{}",
        describe(&results),
        env.dump()
    );
    let ports: HashSet<u16> = (0..N).map(|i| env.port_of(&format!("p{i:02}"))).collect();
    assert_eq!(ports.len(), N, "two profiles share a port\n{}", env.dump());
    let (slots, leftovers) = slots_and_leftovers(&env);
    assert_eq!(slots.len(), N, "{slots:?}\n{}", env.dump());
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for i in 0..N {
        assert!(
            slot_supervised(&env, &format!("p{i:02}")),
            "p{i:02} unsupervised\n{}",
            env.dump()
        );
    }
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["profile", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(N + 1), "{list}");
}

#[test]
fn twenty_parallel_creates_of_one_name_make_one_profile_and_nineteen_clear_errors() {
    let mut env = Env::new();
    env.supervise();
    let results = parallel(&env, |_| {
        vec![
            "profile".into(),
            "create".into(),
            "same".into(),
            "--no-alias".into(),
        ]
    });
    let winners = results.iter().filter(|(_, o)| o.status.success()).count();
    assert_eq!(winners, 1, "{}", describe(&results));
    for (_, o) in results.iter().filter(|(_, o)| !o.status.success()) {
        let text = text_of(o);
        assert!(
            text.contains("already exists"),
            "unclear loser error: {text}"
        );
        assert_eq!(
            text.trim().lines().count(),
            1,
            "loser error is not one line: {text}"
        );
    }
    let (slots, leftovers) = slots_and_leftovers(&env);
    assert_eq!(slots, vec!["gateway-same".to_string()]);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let dir = env.profile_dir("same");
    for f in ["config.yaml", ".env", ".hermes-profile"] {
        assert!(dir.join(f).is_file(), "{f} missing\n{}", env.dump());
    }
}

#[test]
fn twenty_parallel_starts_and_stops_leave_one_consistent_gateway() {
    let mut env = Env::new();
    env.supervise();
    let port = free_port().to_string();
    env.ok(&["profile", "create", "busy", "--no-alias", "--port", &port]);
    let results = parallel(&env, |i| {
        let verb = if i % 2 == 0 { "start" } else { "stop" };
        vec![
            "-p".into(),
            "busy".into(),
            "gateway".into(),
            verb.into(),
            "--timeout".into(),
            "30".into(),
        ]
    });
    for (args, o) in results.iter().filter(|(_, o)| !o.status.success()) {
        let text = text_of(o);
        assert!(
            text.starts_with("hermes: ") && text.contains("busy"),
            "unclear error from hermes {}: {text}",
            args.join(" ")
        );
    }
    let state = env.state("busy");
    assert!(
        state.is_object(),
        "gateway_state.json unreadable after the storm\n{}",
        env.dump()
    );
    // Whatever the interleaving, the next command must settle it.
    env.ok(&["-p", "busy", "gateway", "start"]);
    let port = env.port_of("busy");
    assert!(http::healthy(port), "{}", env.dump());
    assert_eq!(env.state("busy")["desired_state"], "running");
    assert_eq!(gateway_processes(&env, "busy").len(), 1, "{}", env.dump());

    let results = parallel(&env, |_| {
        vec!["-p".into(), "busy".into(), "gateway".into(), "start".into()]
    });
    assert!(
        results.iter().all(|(_, o)| o.status.success()),
        "{}",
        describe(&results)
    );
    assert_eq!(gateway_processes(&env, "busy").len(), 1, "{}", env.dump());
    let (slots, leftovers) = slots_and_leftovers(&env);
    assert_eq!(slots, vec!["gateway-busy".to_string()]);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn twenty_parallel_starts_of_an_unregistered_profile_register_one_slot() {
    let mut env = Env::new();
    let port = free_port().to_string();
    env.ok(&["profile", "create", "late", "--no-alias", "--port", &port]);
    env.supervise();
    let results = parallel(&env, |_| {
        vec![
            "-p".into(),
            "late".into(),
            "gateway".into(),
            "start".into(),
            "--timeout".into(),
            "30".into(),
        ]
    });
    let ok = results.iter().filter(|(_, o)| o.status.success()).count();
    for (_, o) in results.iter().filter(|(_, o)| !o.status.success()) {
        assert!(
            text_of(o).starts_with("hermes: "),
            "unclear error: {}",
            text_of(o)
        );
    }
    assert!(ok >= 1, "{}", describe(&results));
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(10), || {
            http::healthy(env.port_of("late"))
        }),
        "{}\n{}",
        describe(&results),
        env.dump()
    );
    let (slots, leftovers) = slots_and_leftovers(&env);
    assert_eq!(slots, vec!["gateway-late".to_string()]);
    assert!(
        leftovers.is_empty(),
        "{leftovers:?}\n{}",
        describe(&results)
    );
    assert!(slot_supervised(&env, "late"));
    assert_eq!(gateway_processes(&env, "late").len(), 1, "{}", env.dump());
    assert_eq!(
        ok,
        N,
        "some starts failed although the gateway came up:\n{}",
        describe(&results)
    );
}

#[test]
fn create_racing_delete_leaves_profile_and_slot_together_or_neither() {
    let mut env = Env::new();
    env.supervise();
    for round in 0..10 {
        let name = format!("flip{round}");
        let (created, deleted) = std::thread::scope(|s| {
            let c = s.spawn(|| env.run(&["profile", "create", &name, "--no-alias"]));
            let d = s.spawn(|| {
                // Keep trying until the profile appears or the create is over.
                let mut last = env.run(&["profile", "delete", &name, "--yes"]);
                for _ in 0..200 {
                    if last.status.success() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    last = env.run(&["profile", "delete", &name, "--yes"]);
                }
                last
            });
            (c.join().unwrap(), d.join().unwrap())
        });
        for o in [&created, &deleted]
            .into_iter()
            .filter(|o| !o.status.success())
        {
            assert!(
                text_of(o).starts_with("hermes: "),
                "unclear error: {}",
                text_of(o)
            );
        }
        let exists = env.profile_dir(&name).exists();
        let slot = fs::symlink_metadata(env.slot(&name)).is_ok();
        let slot_dir = env.slot(&name).join("run").exists();
        assert!(
            exists == slot && slot == slot_dir,
            "round {round}: profile exists={exists}, slot={slot}, slot complete={slot_dir}\n{}\n{}\n{}",
            render_output("profile create", &created),
            render_output("profile delete", &deleted),
            env.dump()
        );
        let (_, leftovers) = slots_and_leftovers(&env);
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn parallel_registrations_never_exceed_the_slot_limit() {
    let mut env = Env::new();
    env.vars.push(("HERMES_MAX_SLOTS".into(), "5".into()));
    env.supervise();
    let results = parallel(&env, |i| {
        vec![
            "profile".into(),
            "create".into(),
            format!("q{i:02}"),
            "--no-alias".into(),
        ]
    });
    let (slots, leftovers) = slots_and_leftovers(&env);
    assert!(
        slots.len() <= 5,
        "{} slots registered with HERMES_MAX_SLOTS=5: {slots:?}\n{}",
        slots.len(),
        describe(&results)
    );
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for (_, o) in results.iter().filter(|(_, o)| !o.status.success()) {
        let text = text_of(o);
        assert!(
            text.contains('5') && text.starts_with("hermes: "),
            "unclear refusal: {text}"
        );
    }
}

/// Hold `profile`'s gateway lock from a process group that ignores SIGTERM,
/// so its gateway stays up and not ready (a `--replace` takes 10 s); kill
/// the group to let it go.
fn hold_gateway_lock(env: &Env, profile: &str) -> (std::process::Child, nix::unistd::Pid) {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let lock = env.profile_dir(profile).join("gateway.lock");
    let holder = Command::new("sh")
        .args(["-c", "trap '' TERM; exec flock -o \"$0\" sleep 60"])
        .arg(&lock)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the lock holder");
    let group = nix::unistd::Pid::from_raw(-(holder.id() as i32));
    let held = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        let Ok(f) = fs::File::open(&lock) else {
            return false;
        };
        // SAFETY: flock on a descriptor this closure owns; LOCK_NB never blocks.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        rc != 0
    });
    assert!(held, "the lock holder never took {}", lock.display());
    (holder, group)
}

/// What happened when a stop overtook a start held before readiness.
struct Overtaken {
    /// Whether the start ended within `within` of the stop.
    finished: bool,
    waited: Duration,
    start: Output,
    stop: Output,
    report: String,
}

/// Hold `held`'s gateway before readiness (its lock taken by a holder that
/// ignores SIGTERM, so `--replace` needs 10 s), run `start_args` until that
/// gateway's process is up, then `hermes -p <held> gateway stop`, and give
/// the start `within` to end; then let the gateway go and collect both.
fn stop_overtaking_a_start(
    env: &Env,
    held: &str,
    start_args: &[&str],
    within: Duration,
) -> Overtaken {
    use std::process::Stdio;
    use std::time::Instant;

    let (mut holder, holder_group) = hold_gateway_lock(env, held);
    let mut start = env
        .command(start_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the start");
    // The gateway process is up (waiting for the lock), not ready.
    env.wait_for(
        "the held gateway's process up",
        Duration::from_secs(10),
        || env.status(held)["up"] == true,
    );
    let stopped_at = Instant::now();
    let stop = env
        .command(&["-p", held, "gateway", "stop", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway stop");
    let finished = poll(within, Duration::from_millis(10), || {
        matches!(start.try_wait(), Ok(Some(_)))
    });
    let waited = stopped_at.elapsed();
    // Let the gateway take the lock, see its SIGTERM and stop.
    let _ = nix::sys::signal::kill(holder_group, nix::sys::signal::Signal::SIGKILL);
    let _ = holder.wait();
    let start = start.wait_with_output().unwrap();
    let stop = stop.wait_with_output().unwrap();
    let report = format!(
        "{}\n{}\n{}",
        render_output(&format!("hermes {}", start_args.join(" ")), &start),
        render_output(&format!("hermes -p {held} gateway stop"), &stop),
        env.dump()
    );
    Overtaken {
        finished,
        waited,
        start,
        stop,
        report,
    }
}

/// A start that a stop overtakes fails at once with an error that says so,
/// instead of waiting out its timeout.
#[test]
fn a_start_overtaken_by_a_stop_fails_at_once_naming_the_stop() {
    let mut env = Env::new();
    env.supervise();
    let port = free_port().to_string();
    env.ok(&["profile", "create", "slow", "--no-alias", "--port", &port]);
    let o = stop_overtaking_a_start(
        &env,
        "slow",
        &["-p", "slow", "gateway", "start", "--timeout", "30"],
        Duration::from_secs(8),
    );
    let report = &o.report;
    assert!(
        o.finished,
        "the start still waited {:?} after the stop\n{report}",
        o.waited
    );
    assert!(!o.start.status.success(), "{report}");
    assert!(
        text_of(&o.start).contains("start of 'slow' was overtaken by a stop"),
        "{report}"
    );
    assert!(o.stop.status.success(), "{report}");
    assert_eq!(env.state("slow")["desired_state"], "stopped", "{report}");
    assert_eq!(env.status("slow")["up"], false, "{report}");
}

/// The same inside `start --all`: the one slot a stop overtakes fails at
/// once naming the stop, the others come up, and the batch does not wait
/// out its timeout for it.
#[test]
fn a_stop_overtakes_one_slot_of_a_start_all_in_flight() {
    let mut env = Env::new();
    env.supervise();
    for p in ["quick", "slow"] {
        env.create(&[p, "--no-alias"]);
    }
    // Well before s6 kills the held gateway (`timeout-kill`, 5 s), which
    // would end the wait without any re-read of the wish.
    let o = stop_overtaking_a_start(
        &env,
        "slow",
        &["gateway", "start", "--all", "--timeout", "30"],
        Duration::from_secs(3),
    );
    let report = &o.report;
    assert!(
        o.finished,
        "start --all still waited {:?} after the stop\n{report}",
        o.waited
    );
    assert_eq!(o.start.status.code(), Some(1), "{report}");
    let stdout = String::from_utf8_lossy(&o.start.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!(
            "gateway 'quick' is up and ready (pid {})",
            env.status("quick")["pid"]
        )],
        "{report}"
    );
    assert!(
        text_of(&o.start).contains("start of 'slow' was overtaken by a stop"),
        "{report}"
    );
    assert!(o.stop.status.success(), "{report}");
    assert!(http::healthy(env.port_of("quick")), "{report}");
    assert_eq!(env.state("slow")["desired_state"], "stopped", "{report}");
    assert_eq!(env.state("quick")["desired_state"], "running", "{report}");
}
