//! Another, unprivileged user on the same machine (`nobody`, via setpriv)
//! against a HERMES_HOME and scandir whose parents are world-traversable, as a
//! home directory usually is: it must not control slots, plant services, or
//! read the webhook secret, state, logs or inbox. Needs root to switch user:
//! ignored unless asked for (`scripts/test` runs them as root).
#![allow(clippy::disallowed_methods)] // tests

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use hermes_testkit::http;
use hermes_testkit::{free_port, is_root, render_output, require, Env};

const NOBODY: &str = "65534";

/// A running gateway for profile `p` in a world-traversable environment.
fn setup() -> Env {
    assert!(is_root(), "switching to another user needs root");
    require("setpriv", "util-linux");
    let mut env = Env::new();
    // tempfile makes the root 0700, which would hide everything for free.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // HERMES_HOME as hermes itself creates it (the harness pre-creates one with
    // the umask's modes); the root profile is never started here, so its
    // default port cannot clash.
    fs::remove_dir_all(env.home()).unwrap();
    env.ok(&["profile", "list"]);
    env.supervise();
    let port = free_port().to_string();
    env.ok(&["profile", "create", "p", "--no-alias", "--port", &port]);
    env.ok(&["-p", "p", "gateway", "start"]);
    let secret = env.secret_of("p");
    let delivered = http::deliver(env.port_of("p"), "h", &secret, b"{\"secret\":1}", "k");
    assert_eq!(delivered.map(|r| r.status), Some(202), "{}", env.dump());
    env
}

fn as_nobody(program: &str, args: &[&str], env: &Env) -> Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env("HERMES_HOME", env.home())
        .env("HERMES_SCANDIR", env.scandir())
        .env("HERMES_BIN_DIR", env.root().join("nobody-bin"))
        .output()
        .expect("run setpriv")
}

fn nobody_can_read(env: &Env, path: &Path) -> bool {
    as_nobody("cat", &[&path.to_string_lossy()], env)
        .status
        .success()
}

/// Every regular file under `dir` that `nobody` can read.
fn readable_files(env: &Env, dir: &Path) -> Vec<String> {
    let out = as_nobody(
        "find",
        &[&dir.to_string_lossy(), "-type", "f", "-readable"],
        env,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root to switch user; scripts/test runs it as root"]
fn another_user_cannot_read_the_webhook_secret() {
    let env = setup();
    let dotenv = env.profile_dir("p").join(".env");
    let mode = fs::metadata(&dotenv).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, ".env mode {mode:o}");
    assert!(
        !nobody_can_read(&env, &dotenv),
        "nobody reads {}",
        dotenv.display()
    );
    assert!(!nobody_can_read(&env, &env.home().join(".env")));
}

#[test]
#[ignore = "needs root to switch user; scripts/test runs it as root"]
fn another_user_cannot_control_slots_or_plant_a_service() {
    let env = setup();
    let port = env.port_of("p");
    let slot = env.slot("p");
    for (program, args) in [
        ("s6-svc", vec!["-d".to_string(), slot.display().to_string()]),
        ("s6-svc", vec!["-k".to_string(), slot.display().to_string()]),
        (
            "s6-svscanctl",
            vec!["-t".to_string(), env.scandir().display().to_string()],
        ),
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = as_nobody(program, &refs, &env);
        assert!(
            !out.status.success(),
            "{}",
            render_output(&format!("nobody: {program} {}", args.join(" ")), &out)
        );
    }
    let bin = env.bin.to_string_lossy().into_owned();
    for verb in ["stop", "restart"] {
        let out = as_nobody(&bin, &["-p", "p", "gateway", verb, "--timeout", "5"], &env);
        assert!(
            !out.status.success(),
            "{}",
            render_output(&format!("nobody: hermes -p p gateway {verb}"), &out)
        );
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.starts_with("hermes: "), "unclear refusal: {text}");
    }
    assert!(http::healthy(port), "the gateway went down\n{}", env.dump());
    for dir in [env.scandir(), env.slot("p"), env.profile_dir("p")] {
        let target = dir.join("planted");
        let out = as_nobody(
            "sh",
            &["-c", &format!("echo '#!/bin/sh' > '{}'", target.display())],
            &env,
        );
        assert!(
            !out.status.success() && !target.exists(),
            "nobody wrote {}",
            target.display()
        );
    }
}

#[test]
#[ignore = "needs root to switch user; scripts/test runs it as root"]
fn another_user_cannot_read_state_logs_or_inbox() {
    let env = setup();
    let mut readable = readable_files(&env, &env.home());
    readable.retain(|f| !f.ends_with(".lock"));
    assert!(readable.is_empty(), "nobody can read: {readable:#?}");
}
