//! The container's stop on a real `s6-svscan`: with the gateway slots'
//! `finish` moved aside, s6 runs none of them on its way down, and what s6
//! records tells which slots did not end cleanly and how.
#![allow(clippy::disallowed_methods)] // tests

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermes_s6::scandir::SLOTS_DIR;
use hermes_s6::svstat;
use hermes_s6::teardown::{self, FinishRun, DEFERRED_FINISH};

/// A published slot: its directory in `.slots/` and the link s6 scans.
/// Its `finish` leaves a mark, which a stop without finish scripts must not.
fn slot(scan: &Path, name: &str, on_term: &str, down: bool) {
    let dir = scan.join(SLOTS_DIR).join(name);
    fs::create_dir_all(&dir).unwrap();
    let script = |file: &str, body: String| {
        fs::write(dir.join(file), format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "run",
        format!("trap '{on_term}' TERM\nwhile :; do sleep 0.02; done"),
    );
    script(
        "finish",
        format!("touch {}", scan.join(format!("{name}.finished")).display()),
    );
    fs::write(dir.join("timeout-kill"), "200\n").unwrap();
    if down {
        fs::write(dir.join("down"), "").unwrap();
    }
    symlink(Path::new(SLOTS_DIR).join(name), scan.join(name)).unwrap();
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_stop_runs_no_finish_and_reports_only_the_unclean_deaths() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path();
    fs::create_dir(scan.join(SLOTS_DIR)).unwrap();
    slot(scan, "gateway-clean", "exit 0", false);
    slot(scan, "gateway-crashed", "exit 3", false);
    // Ignores SIGTERM: s6-supervise kills it after timeout-kill.
    slot(scan, "gateway-hung", "", false);
    slot(scan, "gateway-parked", "exit 0", true);
    let mut svscan = Command::new("s6-svscan")
        .arg(scan)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s6-svscan (apt-get install s6)");
    for name in ["gateway-clean", "gateway-crashed", "gateway-hung"] {
        let link = scan.join(name);
        poll(&format!("{name} up"), || {
            svstat::read_svstat(&link)
                .ok()
                .flatten()
                .is_some_and(|s| s.up)
        });
    }
    let parked = scan.join("gateway-parked");
    poll("gateway-parked supervised", || {
        svstat::read_svstat(&parked).ok().flatten().is_some()
    });

    let (deferred, error) = teardown::defer_finish(scan);
    assert!(error.is_none(), "{error:?}");
    for name in [
        "gateway-clean",
        "gateway-crashed",
        "gateway-hung",
        "gateway-parked",
    ] {
        let slot = scan.join(SLOTS_DIR).join(name);
        assert!(
            !slot.join("finish").exists() && slot.join(DEFERRED_FINISH).exists(),
            "{name}"
        );
    }
    Command::new("kill")
        .arg(svscan.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while svscan.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "s6-svscan did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let marks: Vec<_> = fs::read_dir(scan)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".finished"))
        .collect();
    assert!(marks.is_empty(), "s6 ran finish scripts: {marks:?}");
    let slots = scan.join(SLOTS_DIR);
    assert_eq!(
        deferred.unclean_deaths(),
        [
            FinishRun {
                slot: "gateway-crashed".into(),
                script: slots.join("gateway-crashed").join(DEFERRED_FINISH),
                code: 3,
                signal: 0,
            },
            FinishRun {
                slot: "gateway-hung".into(),
                script: slots.join("gateway-hung").join(DEFERRED_FINISH),
                code: 256,
                signal: 9,
            },
        ]
    );
}
