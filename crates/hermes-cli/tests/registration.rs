//! Registration at more than a handful of slots, against a real s6-svscan:
//! one create after another, and boot reconciliation of profiles written
//! straight onto the volume (what the container does at every start).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hermes_core::fifo::fifo_has_reader;
use hermes_testkit::{free_port, slot_supervised, Env};

/// Profiles as `profile create` leaves them, written without it; every
/// other one says it was stopped, the rest have no state (both stay down).
fn write_profiles(env: &Env, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("p{i:03}");
            let dir = env.profile_dir(&name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join(".hermes-profile"),
                format!("{{\"profile\":\"{name}\",\"created_at\":0}}\n"),
            )
            .unwrap();
            fs::write(
                dir.join("config.yaml"),
                format!("gateway:\n  host: 127.0.0.1\n  port: {}\n", free_port()),
            )
            .unwrap();
            if i % 2 == 0 {
                fs::write(
                    dir.join("gateway_state.json"),
                    "{\"desired_state\":\"stopped\"}\n",
                )
                .unwrap();
            }
            name
        })
        .collect()
}

/// The slot and its logger each have their s6-supervise.
fn fully_supervised(env: &Env, profile: &str) -> bool {
    slot_supervised(env, profile)
        && fifo_has_reader(&env.slot(profile).join("log/supervise/control"))
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&entry.path()));
        }
        out.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
    }
    out
}

#[test]
fn creating_many_profiles_leaves_every_slot_supervised() {
    let mut env = Env::new();
    env.supervise();
    let names: Vec<String> = (0..24).map(|i| format!("c{i:02}")).collect();
    let mut ports = Vec::new();
    for name in &names {
        let out = env.ok(&["profile", "create", name, "--no-alias"]);
        assert!(out.contains("registered (down)"), "{out}");
        ports.push(env.port_of(name));
    }
    // Every port chosen is distinct, and a taken one is still refused.
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "{ports:?}");
    let out = env.fails(
        &[
            "profile",
            "create",
            "late",
            "--no-alias",
            "--port",
            &ports[7].to_string(),
        ],
        1,
    );
    assert!(out.contains("already used by profile 'c07'"), "{out}");
    for name in &names {
        assert!(
            slot_supervised(&env, name),
            "{name} is not supervised\n{}",
            env.dump()
        );
    }
}

#[test]
fn one_create_of_many_profiles_registers_each_and_reports_each() {
    let mut env = Env::new();
    env.supervise();
    env.ok(&["profile", "create", "taken", "--no-alias"]);
    let mut args = vec!["profile", "create", "--no-alias"];
    let names: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    args.extend(names.iter().map(String::as_str));
    args.push("taken");
    // One name already a profile: the others are still created, and it fails the call.
    let out = env.fails(&args, 1);
    assert!(out.contains("profile 'taken' not created"), "{out}");
    let mut ports = vec![env.port_of("taken")];
    for name in &names {
        assert!(
            out.contains(&format!("created profile '{name}'")),
            "{name}: {out}"
        );
        assert!(
            slot_supervised(&env, name),
            "{name} is not supervised\n{}",
            env.dump()
        );
        assert!(env.slot(name).join("down").exists(), "{name} registered up");
        ports.push(env.port_of(name));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), names.len() + 1, "{ports:?}");
    // A port names one profile only.
    let out = env.fails(&["profile", "create", "x", "y", "--port", "20000"], 2);
    assert!(out.contains("--port takes one profile"), "{out}");
    assert!(!env.profile_dir("x").exists());
}

#[test]
fn a_create_of_many_stops_registering_at_the_slot_limit() {
    let mut env = Env::new();
    env.vars.push(("HERMES_MAX_SLOTS".into(), "6".into()));
    env.supervise();
    env.ok(&["profile", "create", "first", "--no-alias"]);
    let names: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    let mut args = vec!["profile", "create", "--no-alias"];
    args.extend(names.iter().map(String::as_str));
    // Every profile is created; only the slots up to the limit are registered.
    let out = env.ok(&args);
    let supervised: Vec<&String> = names.iter().filter(|n| slot_supervised(&env, n)).collect();
    assert_eq!(supervised.len(), 5, "{supervised:?}\n{out}\n{}", env.dump());
    assert_eq!(out.matches("slot not registered yet").count(), 3, "{out}");
}

#[test]
fn reconcile_supervises_every_profile_and_its_logger() {
    let mut env = Env::new();
    env.supervise();
    // More than one announcement's worth (128): the last ones are scanned too.
    let names = write_profiles(&env, 140);
    let out = env.ok(&["container", "reconcile"]);
    assert!(
        out.contains("reconcile: done in")
            && out.contains(": 141 slots (0 started, 0 kept), 0 failed, 0 skipped"),
        "{out}"
    );
    env.wait_for(
        "every logger supervised",
        std::time::Duration::from_secs(20),
        || names.iter().all(|n| fully_supervised(&env, n)),
    );
    for name in &names {
        // Registered down: nothing started.
        assert!(env.slot(name).join("down").exists(), "{name}");
    }
    // A second run keeps them all.
    let again = env.ok(&["container", "reconcile"]);
    assert!(again.contains("141 slots (0 started, 141 kept)"), "{again}");
}

#[test]
fn a_dry_run_changes_nothing() {
    let mut env = Env::new();
    env.supervise();
    let names = write_profiles(&env, 12);
    let stale = env.profile_dir(&names[1]).join("gateway.pid");
    fs::write(&stale, "4242\n").unwrap();
    let before = (snapshot(&env.home()), snapshot(&env.scandir()));
    let out = env.ok(&["container", "reconcile", "--dry-run"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("action=down dry_run=1"))
            .count(),
        13,
        "{out}"
    );
    assert!(out.contains("13 slots (0 started, 0 kept)"), "{out}");
    assert_eq!((snapshot(&env.home()), snapshot(&env.scandir())), before);
    assert!(stale.exists());
}
