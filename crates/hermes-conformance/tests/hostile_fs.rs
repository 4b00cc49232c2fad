//! A hostile filesystem: symlinks planted where hermes keeps state, logs and
//! the inbox (refused, never followed out of HERMES_HOME), and a disk that
//! fills up during profile create, slot registration and state writes (a clean
//! error, nothing half-written). The full-disk tests mount a small tmpfs and
//! need root: they are ignored unless asked for (`scripts/test` runs them as root).
#![allow(clippy::disallowed_methods)] // tests

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hermes_testkit::http;
use hermes_testkit::tmpfs::Tmpfs;
use hermes_testkit::{free_port, poll, render_output, text_of, Env};

/// A directory outside HERMES_HOME with a file whose content must never change.
fn outside(env: &Env) -> (PathBuf, PathBuf) {
    let dir = env.root().join("outside");
    fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    fs::write(&victim, "precious\n").unwrap();
    (dir, victim)
}

fn untouched(dir: &Path, victim: &Path) -> Result<(), String> {
    let content = fs::read_to_string(victim).unwrap_or_default();
    if content != "precious\n" {
        return Err(format!(
            "{} was written through a symlink: {content:?}",
            victim.display()
        ));
    }
    let extra: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "victim" && n != "p")
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(format!("files created outside HERMES_HOME: {extra:?}"))
    }
}

/// Profiles get an OS-chosen free port: the default 8701+ would clash between parallel tests.
fn create(env: &Env, name: &str) {
    let port = free_port().to_string();
    env.ok(&["profile", "create", name, "--no-alias", "--port", &port]);
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn symlink_at_the_state_file_is_never_written_through() {
    let mut env = Env::new();
    env.supervise();
    create(&env, "p");
    let (dir, victim) = outside(&env);
    let state = env.profile_dir("p").join("gateway_state.json");
    let _ = fs::remove_file(&state);
    symlink(&victim, &state).unwrap();
    let start = env.run(&["-p", "p", "gateway", "start"]);
    let stop = env.run(&["-p", "p", "gateway", "stop"]);
    untouched(&dir, &victim).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}\n{}",
            render_output("start", &start),
            render_output("stop", &stop),
            env.dump()
        )
    });
    // Either refused with a clear word, or the link was replaced by a real file.
    if is_symlink(&state) {
        assert!(
            !start.status.success() && text_of(&start).contains("symbolic link"),
            "{}",
            render_output("start", &start)
        );
    }
}

#[test]
fn symlink_at_pid_lock_env_and_config_is_refused() {
    for (file, must_fail) in [
        ("gateway.pid", false),
        ("gateway.lock", true),
        (".env", true),
        ("config.yaml", true),
    ] {
        let mut env = Env::new();
        env.supervise();
        create(&env, "p");
        let (dir, victim) = outside(&env);
        let path = env.profile_dir("p").join(file);
        let _ = fs::remove_file(&path);
        symlink(&victim, &path).unwrap();
        let start = env.run(&["-p", "p", "gateway", "start", "--timeout", "10"]);
        env.run(&["-p", "p", "gateway", "stop"]);
        untouched(&dir, &victim).unwrap_or_else(|e| {
            panic!(
                "{file}: {e}\n{}\n{}",
                render_output("start", &start),
                env.dump()
            )
        });
        if must_fail {
            assert!(
                !start.status.success(),
                "{file} symlinked, start succeeded\n{}",
                env.dump()
            );
            let log = fs::read_to_string(env.log_dir("p").join("current")).unwrap_or_default();
            assert!(
                text_of(&start).contains("symbolic link") || log.contains("symbolic link"),
                "{file}: the refusal does not say why\n{}\n{log}",
                render_output("start", &start)
            );
        }
    }
}

#[test]
fn symlink_at_the_log_dir_is_refused_at_registration() {
    let mut env = Env::new();
    env.supervise();
    let (dir, victim) = outside(&env);
    fs::create_dir_all(env.home().join("logs/gateways")).unwrap();
    symlink(&dir, env.log_dir("p")).unwrap();
    // The profile itself may be created; its slot must not be, and the output says why.
    let out = env.run(&["profile", "create", "p", "--no-alias"]);
    assert!(
        text_of(&out).contains("symbolic link"),
        "{}",
        render_output("create", &out)
    );
    assert!(
        fs::symlink_metadata(env.slot("p")).is_err(),
        "slot registered over a symlinked log dir"
    );
    untouched(&dir, &victim).unwrap();
}

#[test]
fn symlink_above_the_log_dir_is_refused_too() {
    let mut env = Env::new();
    env.supervise();
    let (dir, _) = outside(&env);
    fs::create_dir_all(dir.join("p")).unwrap();
    fs::create_dir_all(env.home().join("logs")).unwrap();
    symlink(&dir, env.home().join("logs/gateways")).unwrap();
    let create = env.run(&["profile", "create", "p", "--no-alias"]);
    let start = env.run(&["-p", "p", "gateway", "start", "--timeout", "10"]);
    let written = dir.join("p/current");
    assert!(
        !written.exists(),
        "s6-log writes outside HERMES_HOME ({})\n{}\n{}",
        written.display(),
        render_output("create", &create),
        render_output("start", &start)
    );
}

#[test]
fn symlinked_profile_directory_is_not_a_profile() {
    let mut env = Env::new();
    env.supervise();
    create(&env, "real");
    let (dir, _) = outside(&env);
    let evil = dir.join("evil");
    fs::create_dir_all(&evil).unwrap();
    for f in ["config.yaml", ".env", ".hermes-profile"] {
        fs::copy(env.profile_dir("real").join(f), evil.join(f)).unwrap();
    }
    env.ok(&["profile", "delete", "real", "--yes"]);
    symlink(&evil, env.profile_dir("real")).unwrap();
    let start = env.run(&["-p", "real", "gateway", "start", "--timeout", "10"]);
    env.run(&["-p", "real", "gateway", "stop"]);
    let written: Vec<String> = fs::read_dir(&evil)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !["config.yaml", ".env", ".hermes-profile"].contains(&n.as_str()))
        .collect();
    assert!(
        written.is_empty(),
        "hermes wrote {written:?} through profiles/real -> {}\n{}",
        evil.display(),
        render_output("start", &start)
    );
    assert!(
        !start.status.success(),
        "{}",
        render_output("start", &start)
    );
}

#[test]
fn symlink_at_the_inbox_is_refused() {
    let mut env = Env::new();
    env.supervise();
    create(&env, "p");
    let (dir, victim) = outside(&env);
    symlink(&dir, env.profile_dir("p").join("inbox")).unwrap();
    let start = env.run(&["-p", "p", "gateway", "start", "--timeout", "10"]);
    let port = env.port_of("p");
    let secret = env.secret_of("p");
    let delivered = http::deliver(port, "h", &secret, b"{\"x\":1}", "k1");
    untouched(&dir, &victim)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", render_output("start", &start), env.dump()));
    assert!(
        delivered.as_ref().is_none_or(|r| r.status != 202),
        "inbox symlink accepted and a delivery acknowledged\n{}",
        render_output("start", &start)
    );
    // Refused when the gateway starts, as a fatal configuration (parked, not retried).
    assert!(
        !start.status.success(),
        "{}",
        render_output("start", &start)
    );
    env.wait_for("the slot parked", Duration::from_secs(10), || {
        let st = env.status("p");
        st["want"] == "down" && st["up"] == false
    });
    // s6-log writes the gateway's complaint asynchronously: poll for it.
    let log_path = env.log_dir("p").join("current");
    let said = |log: &str| log.contains("symbolic link") || log.contains("not a directory");
    poll(Duration::from_secs(5), Duration::from_millis(20), || {
        said(&fs::read_to_string(&log_path).unwrap_or_default())
    });
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        text_of(&start).contains("symbolic link")
            || log.contains("symbolic link")
            || log.contains("not a directory"),
        "the refusal does not say why\n{}\n{log}",
        render_output("start", &start)
    );
}

// ---- full disk ----

/// Temp and staging names anywhere under `dir`.
fn half_written(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") || name.contains(".creating") || name.contains(".link.") {
                found.push(e.path().display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) && name != "supervise" {
                stack.push(e.path());
            }
        }
    }
    found
}

fn says_disk_full(text: &str) -> bool {
    text.contains("No space left") || text.contains("disk") || text.contains("space")
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test runs it as root"]
fn full_disk_during_profile_create_is_a_clean_error() {
    let env = Env::new();
    let config = fs::read(env.home().join("config.yaml")).unwrap();
    let fs_ = Tmpfs::mount(&env.home(), "size=512k,mode=0755").unwrap();
    fs::write(env.home().join("config.yaml"), &config).unwrap();
    env.ok(&["profile", "list"]);
    // Each free-space level makes a different write the first to fail.
    for (i, free) in [0u64, 100, 300, 1024, 4096, 8192, 16384]
        .into_iter()
        .enumerate()
    {
        let name = format!("d{i}");
        fs_.fill(free);
        let out = env.run(&["profile", "create", &name, "--no-alias"]);
        fs_.unfill();
        let dir = env.profile_dir(&name);
        if out.status.success() {
            for f in ["config.yaml", ".env", ".hermes-profile"] {
                assert!(
                    dir.join(f).is_file(),
                    "free={free}: created, but {f} missing\n{}",
                    env.dump()
                );
            }
            assert!(env.secret_of(&name).len() >= 32);
        } else {
            assert!(
                says_disk_full(&text_of(&out)),
                "free={free}: unclear error: {}",
                text_of(&out)
            );
            assert!(
                !dir.exists(),
                "free={free}: failed create left {}",
                dir.display()
            );
        }
        let left = half_written(&env.home());
        assert!(
            left.is_empty(),
            "free={free}: half-written files {left:?}\n{}",
            render_output("create", &out)
        );
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test runs it as root"]
fn full_disk_during_registration_publishes_nothing() {
    let mut env = Env::new();
    let fs_ = Tmpfs::mount(&env.scandir(), "size=256k,mode=0755").unwrap();
    env.supervise();
    fs_.fill(0);
    // The profile may be created; registration must fail cleanly and say why.
    let out = env.run(&["profile", "create", "r", "--no-alias"]);
    assert!(
        says_disk_full(&text_of(&out)),
        "registration on a full scandir did not say so\n{}",
        render_output("create", &out)
    );
    assert!(
        fs::symlink_metadata(env.slot("r")).is_err(),
        "slot published on a full disk\n{}",
        env.dump()
    );
    let left = half_written(&env.scandir());
    assert!(left.is_empty(), "half-written slot files {left:?}");
    fs_.unfill();
    // Once there is room, start registers it.
    env.ok(&["-p", "r", "gateway", "start"]);
    assert!(http::healthy(env.port_of("r")));
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test runs it as root"]
fn full_disk_during_state_writes_keeps_the_old_state() {
    let mut env = Env::new();
    let config = fs::read(env.home().join("config.yaml")).unwrap();
    let fs_ = Tmpfs::mount(&env.home(), "size=1m,mode=0755").unwrap();
    fs::write(env.home().join("config.yaml"), &config).unwrap();
    env.supervise();
    create(&env, "s");
    env.ok(&["-p", "s", "gateway", "start"]);
    let before = env.state("s");
    assert_eq!(before["desired_state"], "running");
    fs_.fill(0);
    let stop = env.run(&["-p", "s", "gateway", "stop"]);
    let after = env.state("s");
    assert!(
        after.is_object(),
        "gateway_state.json corrupt after a full-disk write\n{}",
        render_output("stop", &stop)
    );
    if !stop.status.success() {
        assert!(
            says_disk_full(&text_of(&stop)),
            "unclear error: {}",
            text_of(&stop)
        );
    }
    let left = half_written(&env.profile_dir("s"));
    assert!(
        left.is_empty(),
        "half-written files {left:?}\n{}",
        render_output("stop", &stop)
    );
    fs_.unfill();
    env.ok(&["-p", "s", "gateway", "start"]);
    assert!(poll(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || http::healthy(env.port_of("s"))
    ));
    env.ok(&["-p", "s", "gateway", "stop"]);
}
