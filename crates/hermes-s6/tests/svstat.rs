//! Reading `supervise/status` ourselves must say exactly what `s6-svstat`
//! says, on a real `s6-svscan`: up and ready, exited with a code, killed by
//! a signal, never started, and unsupervised.
#![allow(clippy::disallowed_methods)] // tests

use std::convert::Infallible;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use hermes_s6::svstat::{self, Direct, Svstat};

struct Scan {
    dir: tempfile::TempDir,
    svscan: Child,
}

impl Drop for Scan {
    fn drop(&mut self) {
        let _ = Command::new("s6-svscanctl")
            .arg("-t")
            .arg(self.dir.path())
            .status();
        let _ = self.svscan.wait();
    }
}

fn service(scan: &Path, name: &str, run: &str, down: bool, notify: bool) {
    let dir = scan.join(name);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("run"), format!("#!/bin/sh\n{run}\n")).unwrap();
    fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    if down {
        fs::write(dir.join("down"), "").unwrap();
    }
    if notify {
        fs::write(dir.join("notification-fd"), "3\n").unwrap();
    }
}

fn s6(args: &[&str], dir: &Path) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} {}: {out:?}", dir.display());
}

/// Polls until `s6-svstat` says `want` for the fields of `check`.
fn wait_for(dir: &Path, what: &str, check: impl Fn(&Svstat) -> bool) -> Svstat {
    let found = hermes_core::wait::for_value(
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(20),
        || Ok::<_, Infallible>(svstat::read_svstat(dir).ok().flatten().filter(&check)),
    );
    found
        .unwrap()
        .unwrap_or_else(|| panic!("{}: never {what}", dir.display()))
}

/// The direct read equals s6-svstat's, the seconds within one tick.
fn same(dir: &Path) {
    let direct = match svstat::read_direct(dir, SystemTime::now()) {
        Direct::Read(s) => s,
        Direct::Unknown => panic!("{}: this s6's status layout is not known", dir.display()),
    };
    let tool = svstat::read_svstat(dir).unwrap();
    let (Some(mut direct), Some(tool)) = (direct.clone(), tool.clone()) else {
        assert_eq!(direct, tool, "{}", dir.display());
        return;
    };
    let (a, b) = (direct.for_secs.unwrap(), tool.for_secs.unwrap());
    assert!(
        a.abs_diff(b) <= 1,
        "{}: updownfor {a} vs {b}",
        dir.display()
    );
    direct.for_secs = tool.for_secs;
    assert_eq!(direct, tool, "{}", dir.display());
}

#[test]
fn the_status_file_says_what_s6_svstat_says() {
    let dir = tempfile::tempdir().unwrap();
    let scan = dir.path();
    service(scan, "ready", "echo >&3; exec sleep 300", false, true);
    service(scan, "unready", "exec sleep 300", false, true);
    service(scan, "exits", "exit 3", true, false);
    service(scan, "killed", "exec sleep 300", true, false);
    service(scan, "never", "exec sleep 300", true, false);
    let svscan = Command::new("s6-svscan")
        .arg(scan)
        .spawn()
        .expect("s6-svscan (apt-get install s6)");
    let scan = Scan { dir, svscan };
    let at = |n: &str| scan.dir.path().join(n);

    wait_for(&at("ready"), "up and ready", |s| s.ready_now());
    same(&at("ready"));
    wait_for(&at("unready"), "up", |s| s.up);
    same(&at("unready"));
    wait_for(&at("never"), "supervised", |_| true);
    same(&at("never"));

    s6(&["s6-svc", "-o"], &at("exits"));
    wait_for(&at("exits"), "exited 3", |s| {
        !s.up && s.exit_code == Some(3)
    });
    same(&at("exits"));

    s6(&["s6-svc", "-o"], &at("killed"));
    wait_for(&at("killed"), "up", |s| s.up);
    s6(&["s6-svc", "-k"], &at("killed"));
    wait_for(&at("killed"), "killed", |s| !s.up && s.signal.is_some());
    same(&at("killed"));
    assert_eq!(
        svstat::read_svstat(&at("killed"))
            .unwrap()
            .unwrap()
            .signal
            .as_deref(),
        Some("SIGKILL")
    );

    // A directory no s6-supervise watches.
    let lone = tempfile::tempdir().unwrap();
    service(lone.path(), "lone", "exec true", false, false);
    assert_eq!(
        svstat::read_direct(&lone.path().join("lone"), SystemTime::now()),
        Direct::Read(None)
    );
    same(&lone.path().join("lone"));
}
