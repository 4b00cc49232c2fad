use std::ffi::OsStr;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use hermes_testkit::{alive, free_port, http, procs, Env};

const UP: Duration = Duration::from_secs(10);

fn healthy(env: &Env, profile: &str) -> bool {
    http::get(env.port_of(profile), "/health", &[]).is_some_and(|r| r.status == 200)
}

fn pid_of(env: &Env, profile: &str) -> Option<u32> {
    env.status(profile)["pid"].as_u64().map(|pid| pid as u32)
}

#[test]
fn start_waits_for_health_and_stop_waits_for_down() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["coder"]);
    let st = env.status("coder");
    assert_eq!(st["slot"], true);
    assert_eq!(st["up"], false, "a new slot must be registered down: {st}");

    let out = env.ok(&["-p", "coder", "gateway", "start"]);
    assert!(out.contains("up and ready"), "{out}");
    // start returns only once ready, and ready means serving.
    assert!(healthy(&env, "coder"), "{}", env.dump());
    let st = env.status("coder");
    assert_eq!(st["desired_state"], "running");
    assert_eq!(st["gateway_state"], "running");
    assert_eq!(st["want"], "up");
    // The detail needs the profile's secret; the CLI's client side sends it.
    let code = http::get(env.port_of("coder"), "/health/detailed", &[])
        .unwrap()
        .status;
    assert_eq!(code, 401);
    let paths = hermes_core::HermesHome::new(env.home())
        .profile(&hermes_core::ProfileName::parse("coder").unwrap());
    let detail = hermes_gateway::remote::Target::of(&paths)
        .unwrap()
        .detailed()
        .unwrap();
    assert_eq!(detail["profile"], "coder", "{detail}");

    let out = env.ok(&["-p", "coder", "gateway", "stop"]);
    assert!(out.contains("down"), "{out}");
    let st = env.status("coder");
    assert_eq!(st["up"], false);
    assert_eq!(st["desired_state"], "stopped");
    assert_eq!(st["gateway_state"], "stopped");
    assert!(!healthy(&env, "coder"));
    let log = env.home().join("logs/gateways/coder/current");
    assert!(log.exists(), "no s6-log output\n{}", env.dump());
}

#[test]
fn kill_9_is_restarted_with_a_new_pid() {
    let env = Env::with_gateway_up("k");
    let first = pid_of(&env, "k").expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_for("a new gateway process", UP, || {
        pid_of(&env, "k").is_some_and(|p| p != first) && healthy(&env, "k")
    });
    let st = env.status("k");
    assert_eq!(st["restarts"], 1, "{st}");
}

/// The slot's `run` names hermes on its `#!` line: s6-supervise's exec
/// starts hermes directly, not a shell that then execs it, and the process
/// is still called hermes. A run script edited by hand is refused with the
/// line at fault, on stdout (the slot's logger), and sh's code for a failed
/// command.
#[test]
fn the_gateway_starts_without_a_shell_and_an_edited_run_script_is_refused() {
    let env = Env::with_gateway_up("r");
    let pid = pid_of(&env, "r").expect("pid");
    let gateway = procs::read(pid).expect("the gateway's /proc entry");
    let parent = procs::read(gateway.ppid).expect("its parent's /proc entry");
    assert_eq!(
        (gateway.comm.as_str(), parent.comm.as_str()),
        ("hermes", "s6-supervise"),
        "gateway {gateway:?}, parent {parent:?}"
    );
    assert_eq!(gateway.argv.get(1).map(String::as_str), Some("slot-script"));

    let run = std::fs::read_to_string(env.slot("r").join("run")).unwrap();
    let edited = env.dir.path().join("run");
    let text = run.replacen("exec 2>&1\n", "exec 2>&1\necho edited\n", 1);
    let line = 1 + text.lines().position(|l| l == "echo edited").unwrap();
    std::fs::write(&edited, text).unwrap();
    let out = std::process::Command::new(hermes_testkit::env::hermes_bin())
        .args([OsStr::new("slot-script"), edited.as_os_str()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(111), "{said}");
    assert!(
        said.contains(&format!("line {line}: not a command a run script has"))
            && !said.contains("edited\n"),
        "{said}"
    );
}

#[test]
fn restart_gives_a_new_pid_and_counts_no_failure() {
    let env = Env::with_gateway_up("r");
    let first = pid_of(&env, "r").unwrap();
    env.ok(&["-p", "r", "gateway", "restart"]);
    let second = pid_of(&env, "r").unwrap();
    assert_ne!(first, second);
    assert!(healthy(&env, "r"));
    assert_eq!(env.status("r")["restarts"], 0);
}

#[test]
fn exit_78_parks_the_slot_at_once() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["bad", "--no-alias"]);
    let config = env.profile_dir("bad").join("config.yaml");
    std::fs::write(&config, "gateway:\n  port: 0\n").unwrap();
    let out = env.fails(&["-p", "bad", "gateway", "start"], 1);
    assert!(out.contains("78"), "{out}");
    let st = env.status("bad");
    assert_eq!(st["gateway_state"], "startup_failed", "{st}");
    assert_eq!(st["want"], "down", "exit 78 must not be restarted: {st}");
    assert_eq!(st["restarts"], 0);
    // Fixing the config and starting again works.
    std::fs::write(&config, format!("gateway:\n  port: {}\n", free_port())).unwrap();
    env.ok(&["-p", "bad", "gateway", "start"]);
}

#[test]
fn port_clash_fails_start_and_crash_loop_parks_the_slot() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["clash", "--no-alias"]);
    let port = env.port_of("clash");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = env.fails(&["-p", "clash", "gateway", "start"], 1);
    assert!(out.contains(&port.to_string()), "{out}");
    // The supervisor retries with back-off, then gives up for good.
    env.wait_for(
        "the crash loop to park the slot",
        Duration::from_secs(30),
        || {
            let st = env.status("clash");
            st["want"] == "down" && st["up"] == false
        },
    );
    let st = env.status("clash");
    assert_eq!(st["gateway_state"], "startup_failed", "{st}");
    let reason = st["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("crash loop"), "{reason}");
    assert!(reason.contains(&port.to_string()), "{reason}");
    assert_eq!(st["restarts"], 5);
}

#[test]
fn a_port_edited_by_hand_is_learned_at_start_and_one_another_profile_names_is_refused() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["a", "--no-alias"]);
    env.create(&["b", "--no-alias"]);
    let a = env.port_of("a");
    // b onto a's port: its gateway refuses before it binds, naming a, and
    // exit 78 parks the slot at once (no crash loop).
    env.set_port("b", a);
    let out = env.fails(&["-p", "b", "gateway", "start"], 1);
    assert!(out.contains("also profile 'a''s"), "{out}");
    let st = env.status("b");
    assert_eq!(st["gateway_state"], "startup_failed", "{st}");
    assert_eq!(st["want"], "down", "{st}");
    assert_eq!(st["restarts"], 0, "{st}");
    let reason = st["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("gateway.port {a}")), "{reason}");
    // b onto a free port: it starts, and the index learns the port, so a
    // create no longer hands it out.
    let edited = free_port();
    env.set_port("b", edited);
    env.ok(&["-p", "b", "gateway", "start"]);
    assert!(healthy(&env, "b"), "{}", env.dump());
    let out = env.fails(
        &[
            "profile",
            "create",
            "c",
            "--no-alias",
            "--port",
            &edited.to_string(),
        ],
        1,
    );
    assert!(out.contains("'b'"), "{out}");
}

#[test]
fn second_instance_is_refused_and_replace_takes_over() {
    let env = Env::new();
    env.create(&["solo", "--no-alias"]);
    let mut first = env
        .command(&["-p", "solo", "gateway", "run", "--no-supervise"])
        .spawn()
        .unwrap();
    env.wait_for("the first gateway", UP, || healthy(&env, "solo"));
    let out = env.fails(&["-p", "solo", "gateway", "run", "--no-supervise"], 75);
    assert!(out.contains("already running"), "{out}");

    let mut second = env
        .command(&[
            "-p",
            "solo",
            "gateway",
            "run",
            "--no-supervise",
            "--replace",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + UP;
    let first_status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "--replace did not stop the first\n{}",
            env.dump()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(first_status.code(), Some(0));
    env.wait_for("the replacement to serve", UP, || healthy(&env, "solo"));
    let pid = second.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(second.wait().unwrap().code(), Some(0));
    assert_eq!(env.state("solo")["gateway_state"], "stopped");
}

#[test]
fn all_acts_on_every_slot_through_the_supervisor() {
    let mut env = Env::new();
    env.supervise();
    for p in ["one", "two", "three"] {
        env.create(&[p, "--no-alias"]);
    }
    let out = env.ok(&["gateway", "start", "--all"]);
    assert_eq!(out.matches("up and ready").count(), 3, "{out}");
    for p in ["one", "two", "three"] {
        assert!(healthy(&env, p));
    }
    let pids: Vec<u32> = ["one", "two", "three"]
        .iter()
        .map(|p| pid_of(&env, p).unwrap())
        .collect();
    env.ok(&["gateway", "stop", "--all"]);
    for (p, pid) in ["one", "two", "three"].iter().zip(pids) {
        let st = env.status(p);
        assert_eq!(st["up"], false, "{st}");
        assert_eq!(st["want"], "down");
        env.wait_for("the old process to be gone", UP, || !alive(pid));
    }
}

/// `--all` asks for every slot before waiting for any: one that fails does
/// not hold up the others, and the report keeps the order of the slots.
#[test]
fn all_reports_every_failure_with_its_log_tail_in_order() {
    let mut env = Env::new();
    env.supervise();
    for p in ["alpha", "bad", "charlie"] {
        env.create(&[p, "--no-alias"]);
    }
    let config = env.profile_dir("bad").join("config.yaml");
    std::fs::write(&config, "gateway:\n  port: 0\n").unwrap();
    let out = env.run(&["gateway", "start", "--all"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per started profile: {stdout}\n{stderr}"
    );
    assert!(
        lines[0].starts_with("gateway 'alpha' is up and ready"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("gateway 'charlie' is up and ready"),
        "{stdout}"
    );
    assert!(stderr.contains("start of gateway 'bad' failed"), "{stderr}");
    assert!(stderr.contains("last lines of"), "{stderr}");
    assert!(healthy(&env, "alpha") && healthy(&env, "charlie"));
    assert_eq!(env.status("bad")["want"], "down");

    let out = env.ok(&["gateway", "stop", "--all"]);
    let down: Vec<&str> = out.lines().collect();
    assert_eq!(down.len(), 3, "{out}");
    for (line, p) in down.iter().zip(["alpha", "bad", "charlie"]) {
        assert_eq!(*line, format!("gateway '{p}' is down"));
        assert_eq!(env.state(p)["desired_state"], "stopped");
    }
}

#[test]
fn delete_while_running_stops_and_unregisters_first() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["gone"]);
    env.ok(&["-p", "gone", "gateway", "start"]);
    let pid = pid_of(&env, "gone").unwrap();
    env.ok(&["profile", "delete", "gone", "--yes"]);
    assert!(!env.scandir().join("gateway-gone").exists());
    assert!(!env.profile_dir("gone").exists());
    env.wait_for("the gateway process to exit", UP, || !alive(pid));
    let all = env.ok(&["gateway", "status", "--all", "--json"]);
    assert!(!all.contains("\"gone\""), "{all}");
}

/// s6-svscan starts a new s6-supervise in place of a killed one, which
/// finds the slot's `down` and leaves the old gateway running outside the
/// slot, still serving: a stop must end that one too.
#[test]
fn stop_ends_the_gateway_a_killed_supervisor_left_behind() {
    let env = Env::with_gateway_up("orphan");
    let gateway = pid_of(&env, "orphan").expect("pid");
    let svscan = env.supervisor_pid().expect("s6-svscan");
    let supervise = procs::descendants(svscan)
        .into_iter()
        .find(|p| p.comm == "s6-supervise" && p.argv.get(1).is_some_and(|a| a == "gateway-orphan"))
        .expect("the slot's s6-supervise");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervise.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = env.ok(&["-p", "orphan", "gateway", "stop"]);
    assert!(out.contains("is down"), "{out}");
    assert!(
        !healthy(&env, "orphan"),
        "still serving after the stop\n{}",
        env.dump()
    );
    env.wait_for("the orphaned gateway to exit", UP, || !alive(gateway));
    let st = env.status("orphan");
    assert_eq!(
        (st["up"].clone(), st["desired_state"].clone()),
        (false.into(), "stopped".into()),
        "{st}"
    );
}

/// A killed logger supervisor leaves its s6-log running, holding the log
/// directory's lock (its stdin is s6-svscan's pipe, which never ends). The
/// new logger ends it instead of failing to lock every second, for good.
#[test]
fn a_new_logger_ends_the_s6_log_a_killed_supervisor_left_behind() {
    let env = Env::with_gateway_up("chatty");
    let svscan = env.supervisor_pid().expect("s6-svscan");
    let loggers = || -> Vec<procs::Proc> {
        procs::descendants(svscan)
            .into_iter()
            .filter(|p| p.comm == "s6-log" && p.argv.last().is_some_and(|a| a.ends_with("/chatty")))
            .collect()
    };
    let [orphan] = loggers().try_into().expect("one s6-log for the slot");
    let supervise = procs::read(orphan.ppid).expect("the logger's s6-supervise");
    assert_eq!(
        supervise.argv.get(1).map(String::as_str),
        Some("gateway-chatty/log")
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervise.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_for("a new s6-log for the slot, the old one gone", UP, || {
        !alive(orphan.pid) && loggers().iter().any(|p| p.pid != orphan.pid)
    });
    // The gateway's lines reach the log through the new logger.
    env.ok(&["-p", "chatty", "gateway", "restart"]);
    let current = env.home().join("logs/gateways/chatty/current");
    env.wait_for("the restarted gateway's line in the log", UP, || {
        std::fs::read_to_string(&current).is_ok_and(|t| t.matches("serving on").count() >= 2)
    });
    let tree = std::fs::read_to_string(env.root().join("supervise.log")).unwrap();
    assert!(!tree.contains("unable to lock"), "{}", env.dump());
    assert!(
        tree.contains(&format!("ended s6-log (pid {}) with SIGTERM", orphan.pid)),
        "{}",
        env.dump()
    );
}

/// A tree keeps its slots across `hermes supervise` restarts. After an
/// upgrade, the restart gives them this hermes's scripts: here a logger run
/// an older hermes wrote, and a `finish` an interrupted stop left aside.
#[test]
fn a_tree_restart_gives_kept_slots_this_hermess_scripts() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["kept", "--no-alias"]);
    let slot = env.slot("kept");
    let read = |rel: &str| std::fs::read_to_string(slot.join(rel)).unwrap();
    let current = ["run", "finish", "log/run"].map(read);
    env.stop_supervisor(UP);

    let log_dir = env.home().join("logs/gateways/kept");
    let older = format!(
        "#!/bin/sh\nexec 's6-log' '--' 'T' '{}'\n",
        log_dir.display()
    );
    std::fs::write(slot.join("log/run"), older).unwrap();
    std::fs::rename(slot.join("finish"), slot.join("finish.deferred")).unwrap();
    env.supervise();
    assert_eq!(
        ["run", "finish", "log/run"].map(read),
        current,
        "{}",
        env.dump()
    );
    assert!(!slot.join("finish.deferred").exists(), "{}", env.dump());
    let tree = std::fs::read_to_string(env.root().join("supervise.log")).unwrap();
    assert!(
        tree.contains("slot scripts rewritten by this hermes for kept"),
        "{tree}"
    );
    let out = env.ok(&["-p", "kept", "gateway", "start"]);
    assert!(out.contains("up and ready"), "{out}");
}

/// A gateway run by hand holds the profile's lock while the slot is down;
/// `gateway stop` means no gateway of the profile runs, so it ends that one.
#[test]
fn stop_ends_a_gateway_run_by_hand_beside_a_down_slot() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["byhand"]);
    let mut by_hand = env
        .command(&["-p", "byhand", "gateway", "run", "--no-supervise"])
        .spawn()
        .unwrap();
    env.wait_for("the gateway run by hand", UP, || healthy(&env, "byhand"));
    let label = || {
        let snap: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        snap["gateways"]
            .as_array()
            .and_then(|all| all.iter().find(|g| g["profile"] == "byhand"))
            .map(|g| g["label"].clone())
    };
    assert_eq!(label(), Some("stray".into()), "{}", env.dump());
    env.ok(&["-p", "byhand", "gateway", "stop"]);
    assert_eq!(label(), Some("stopped".into()), "{}", env.dump());
    assert!(!healthy(&env, "byhand"), "{}", env.dump());
    assert_eq!(
        by_hand.wait().unwrap().code(),
        Some(0),
        "it stops as on SIGTERM"
    );
}

/// The binary's entry point blocks the stop signals in every process (only
/// the init keeps them so): a gateway must run with the mask it was given,
/// or a stop would never reach it.
#[test]
fn processes_that_are_not_the_init_keep_their_signal_mask() {
    let blocked = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|m| m.trim().to_string())
            .unwrap()
    };
    let env = Env::with_gateway_up("m");
    assert_eq!(blocked(pid_of(&env, "m").unwrap()), "0000000000000000");
}

#[test]
fn uninstall_on_s6_records_stopped_then_unregisters() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["u", "--no-alias"]);
    env.ok(&["-p", "u", "gateway", "install", "--manager", "s6"]);
    let pid = pid_of(&env, "u").unwrap();
    assert_eq!(env.state("u")["desired_state"], "running");
    let out = env.ok(&["-p", "u", "gateway", "uninstall", "--manager", "s6"]);
    assert!(out.contains("unregistered slot gateway-u"), "{out}");
    // Stopped is on record, so a boot reconcile leaves it down.
    assert_eq!(env.state("u")["desired_state"], "stopped", "{}", env.dump());
    assert!(!env.scandir().join("gateway-u").exists(), "{}", env.dump());
    env.wait_for("the gateway process to exit", UP, || !alive(pid));
    assert!(env.profile_dir("u").exists());
}

/// A tree an earlier hermes kept had each slot's directory in `.slots/`,
/// published by a symlink. The next `hermes supervise` puts each directory
/// where its link was, removes what an interrupted run of that hermes left,
/// and the slot works as one this hermes made.
#[test]
fn a_tree_of_the_linked_layout_is_adopted() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["kept", "--no-alias"]);
    env.stop_supervisor(UP);
    let scan = env.scandir();
    let legacy = scan.join(".slots");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::rename(env.slot("kept"), legacy.join("gateway-kept")).unwrap();
    symlink(".slots/gateway-kept", env.slot("kept")).unwrap();
    // Left by interrupted runs: a directory no link published, a staging
    // link, a link whose directory is gone.
    std::fs::create_dir_all(legacy.join("gateway-orphan/log")).unwrap();
    symlink(".slots/gateway-orphan", scan.join(".gateway-orphan.link.7")).unwrap();
    symlink(".slots/gateway-lost", scan.join("gateway-lost")).unwrap();

    env.supervise();
    let kept = std::fs::symlink_metadata(env.slot("kept")).unwrap();
    assert!(kept.is_dir(), "{}", env.dump());
    assert!(
        std::fs::symlink_metadata(&legacy).is_err(),
        "{}",
        env.dump()
    );
    assert!(std::fs::symlink_metadata(scan.join(".gateway-orphan.link.7")).is_err());
    assert!(std::fs::symlink_metadata(scan.join("gateway-orphan")).is_err());
    assert!(std::fs::symlink_metadata(scan.join("gateway-lost")).is_err());
    env.ok(&["-p", "kept", "gateway", "start"]);
    assert!(healthy(&env, "kept"), "{}", env.dump());
    env.ok(&["profile", "delete", "kept", "--yes"]);
    assert!(std::fs::symlink_metadata(env.slot("kept")).is_err());
}

#[test]
fn half_written_slot_is_never_supervised() {
    let mut env = Env::new();
    let witness = env.dir.path().join("ran");
    let layout = env.layout();
    let staging = layout.staging("gateway-x", 999);
    let retired = layout.retired("gateway-y", 998);
    let run = format!("#!/bin/sh\ntouch '{}'\nexec sleep 100\n", witness.display());
    for dir in [&staging, &retired] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("run"), &run).unwrap();
    }
    env.supervise();
    // The supervisor's start removes interrupted staging and retired slots; a rescan picks up nothing.
    assert!(!staging.exists() && !retired.exists(), "{}", env.dump());
    env.create(&["real", "--no-alias"]);
    assert!(!witness.exists(), "a staging directory was run");
    let all = env.ok(&["gateway", "status", "--all", "--json"]);
    assert!(!all.contains("\"x\""), "{all}");
}

#[test]
fn corrupt_state_is_treated_as_none_and_rewritten() {
    let mut env = Env::new();
    env.supervise();
    env.create(&["c", "--no-alias"]);
    let state = env.profile_dir("c").join("gateway_state.json");
    std::fs::write(&state, b"{\"gateway_state\": \"runn").unwrap();
    let st = env.status("c");
    assert!(st["gateway_state"].is_null(), "{st}");
    env.ok(&["-p", "c", "gateway", "start"]);
    let v = env.state("c");
    assert_eq!(v["gateway_state"], "running", "{v}");
    assert_eq!(v["desired_state"], "running");
}

#[test]
fn start_registers_a_profile_created_without_a_supervisor() {
    let mut env = Env::new();
    env.create(&["late", "--no-alias"]);
    let out = env.fails(&["-p", "late", "gateway", "start"], 1);
    assert!(out.contains("hermes supervise"), "{out}");
    env.supervise();
    let out = env.ok(&["-p", "late", "gateway", "start"]);
    assert!(out.contains("registered slot gateway-late"), "{out}");
    assert!(healthy(&env, "late"));
    // The root profile works without -p and without create.
    env.ok(&["gateway", "start"]);
    assert!(healthy(&env, "default"));
}

#[test]
fn unknown_profile_is_a_clear_error() {
    let mut env = Env::new();
    env.supervise();
    let out = env.fails(&["-p", "nobody", "gateway", "start"], 1);
    assert!(out.contains("no such profile 'nobody'"), "{out}");
}

#[test]
fn supervise_refuses_a_second_tree_and_exits_0_on_sigterm() {
    let mut env = Env::with_gateway_up("t");
    let pid = pid_of(&env, "t").unwrap();
    // The home's volume lock refuses it before s6-svscan is even started.
    let out = env.fails(&["supervise"], 78);
    assert!(out.contains("is in use by another hermes (host "), "{out}");
    let status = env.stop_supervisor(Duration::from_secs(15)).unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    env.wait_for("the gateway to be stopped with the tree", UP, || {
        !alive(pid)
    });
    assert_eq!(env.state("t")["gateway_state"], "stopped");
}

#[test]
fn container_reconcile_registers_every_profile_and_keeps_its_numbers() {
    let mut env = Env::new();
    env.create(&["up", "--no-alias"]);
    env.create(&["idle", "--no-alias"]);
    std::fs::write(
        env.profile_dir("up").join("gateway_state.json"),
        r#"{"desired_state":"running"}"#,
    )
    .unwrap();
    std::fs::create_dir_all(env.home().join("profiles/Bad Name")).unwrap();
    env.supervise();
    for name in ["default", "up", "idle"] {
        assert!(
            !env.slot(name).exists(),
            "{name} registered before the reconcile"
        );
    }

    let dry = env.ok(&["container", "reconcile", "--dry-run"]);
    assert!(
        dry.contains("profile=up prior=desired=running action=start dry_run=1"),
        "{dry}"
    );
    assert!(!env.slot("up").exists(), "a dry run registered a slot");
    let report = env.home().join("logs/container-boot.json");
    assert!(!report.exists(), "a dry run wrote {}", report.display());

    let out = env.ok(&["container", "reconcile", "--note", "booted"]);
    let summary = out.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("reconcile: done in ")
            && summary.ends_with(" ms: 3 slots (1 started, 0 kept), 0 failed, 1 skipped"),
        "{out}"
    );
    for name in ["default", "up", "idle"] {
        assert!(
            env.slot(name).exists(),
            "{name} not registered\n{}",
            env.dump()
        );
    }
    let numbers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    for (key, want) in [
        ("started", 1),
        ("down", 2),
        ("kept", 0),
        ("failed", 0),
        ("skipped", 1),
    ] {
        assert_eq!(numbers[key], want, "{key} in {numbers}");
    }
    let log = std::fs::read_to_string(env.home().join("logs/container-boot.log")).unwrap();
    let init_note = log.find("init: booted").expect("the note in the boot log");
    assert!(init_note < log.find("profile=up").unwrap(), "{log}");
    assert!(log.contains(summary), "{log}");

    // Again on the live tree: every slot is left as it is.
    let again = env.ok(&["container", "reconcile"]);
    assert!(
        again.contains("3 slots (0 started, 3 kept), 0 failed, 1 skipped"),
        "{again}"
    );
}

/// The init ends the boot reconciler when a program CMD ends first (or the
/// container stops): a SIGTERM at any moment, even before its `main`, still
/// leaves the init's notes and why it stopped in the boot log.
#[test]
fn container_reconcile_stopped_at_once_still_logs_the_init_notes() {
    let mut env = Env::new();
    env.supervise();
    let mut cmd = env.command(&["container", "reconcile", "--note", "booted"]);
    cmd.stdout(std::process::Stdio::null());
    // As the init starts it (`Command::stop_signals_blocked`): a SIGTERM
    // sent the instant `spawn` returns cannot land before its first instruction.
    // SAFETY: the hook only makes one async-signal-safe system call.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut set = nix::sys::signal::SigSet::empty();
            set.add(nix::sys::signal::Signal::SIGTERM);
            set.thread_block().map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(env.home().join("logs/container-boot.log"))
        .unwrap_or_else(|e| panic!("no boot log ({e}); the reconciler ended {status:?}"));
    assert!(log.contains(" init: booted\n"), "{log}");
    assert!(log.contains(" reconcile: stopped by SIGTERM "), "{log}");
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(
        !env.home().join("logs/container-boot.json").exists(),
        "a stopped reconcile saved its numbers"
    );
}

#[test]
fn install_flag_combinations_are_usage_errors_before_anything_is_written() {
    let env = Env::new();
    env.create(&["f", "--no-alias"]);
    for (args, says) in [
        (&["--system"][..], "--system needs --run-as-user USER"),
        (
            &["--run-as-user", "ann"][..],
            "--run-as-user only applies to --system units",
        ),
        (
            &["--system", "--run-as-user", "ann", "--manager", "s6"][..],
            "--system is for systemd; the service manager here is s6 (--manager)",
        ),
    ] {
        let mut argv = vec!["-p", "f", "gateway", "install"];
        argv.extend_from_slice(args);
        let out = env.fails(&argv, 2);
        assert!(out.contains(says), "{argv:?}: {out}");
    }
    let out = env.fails(
        &["-p", "f", "gateway", "uninstall", "--run-as-user", "ann"],
        2,
    );
    assert!(out.contains("--run-as-user only applies"), "{out}");
    assert!(!env.slot("f").exists());
}
