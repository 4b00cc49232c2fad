//! Stops on a real `s6-svscan` with the gateway slots' `finish` moved aside
//! (`hermes_s6::finish_aside`): s6 runs none of them, and what s6 records
//! tells which slots did not end cleanly and how. The container's stop
//! (`teardown`) and `gateway stop` of one slot or many.
#![allow(clippy::disallowed_methods)] // tests

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hermes_core::lifecycle::Action;
use hermes_core::service::ServiceManager;
use hermes_core::state::{self, RunState};
use hermes_core::{HermesHome, ProfileName};
use hermes_s6::finish_aside::DEFERRED_FINISH;
use hermes_s6::teardown::{self, FinishRun};
use hermes_s6::{svstat, S6Config, S6Manager};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// A slot: its service directory in the scandir. Its `finish` leaves a
/// mark, which a stop without finish scripts must not.
fn slot(scan: &Path, name: &str, on_term: &str, down: bool) {
    let dir = scan.join(name);
    fs::create_dir_all(&dir).unwrap();
    let script = |file: &str, body: String| {
        fs::write(dir.join(file), format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "run",
        format!("trap '{on_term}' TERM\necho >&3\nwhile :; do sleep 0.02; done"),
    );
    script(
        "finish",
        format!("touch {}", scan.join(format!("{name}.finished")).display()),
    );
    fs::write(dir.join("timeout-kill"), "200\n").unwrap();
    fs::write(dir.join("notification-fd"), "3\n").unwrap();
    if down {
        fs::write(dir.join("down"), "").unwrap();
    }
}

/// The s6 backend on `scan`, for the profiles of `home`.
fn manager(scan: &Path, home: HermesHome) -> S6Manager {
    S6Manager::new(S6Config {
        scandir: scan.to_path_buf(),
        home,
        program: "/bin/false".into(),
        echo_to_stdout: false,
    })
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `s6-svscan`, brought down when dropped, so that a failed
/// assertion leaves no tree behind.
struct Tree(Child);

impl Tree {
    /// `s6-svscan` on `scan`, once it supervises each of `slots`: up and
    /// ready (its run script has set its SIGTERM trap, which a stop must
    /// meet), or only supervised for one with a `down` file.
    fn supervising(scan: &Path, slots: &[&str]) -> Tree {
        let tree = Tree(
            Command::new("s6-svscan")
                .arg(scan)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("s6-svscan (apt-get install s6)"),
        );
        for name in slots {
            let dir = scan.join(name);
            let down = dir.join("down").exists();
            poll(
                &format!("{name} supervised, up and ready unless down"),
                || {
                    svstat::read_svstat(&dir)
                        .ok()
                        .flatten()
                        .is_some_and(|s| down || (s.up && s.ready))
                },
            );
        }
        tree
    }

    /// SIGTERM (s6-svscan brings every service down, then exits); whether
    /// it has exited within 20 s.
    fn bring_down(&mut self) -> bool {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return true;
        }
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.0.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if !self.bring_down() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A scandir with four gateway slots under a running `s6-svscan`: `clean`
/// exits 0 on SIGTERM, `crashed` exits 3, `hung` ignores it (s6-supervise
/// kills it after timeout-kill), and `parked` is down.
fn four_slots(scan: &Path) -> Tree {
    slot(scan, "gateway-clean", "exit 0", false);
    slot(scan, "gateway-crashed", "exit 3", false);
    slot(scan, "gateway-hung", "", false);
    slot(scan, "gateway-parked", "exit 0", true);
    Tree::supervising(
        scan,
        &[
            "gateway-clean",
            "gateway-crashed",
            "gateway-hung",
            "gateway-parked",
        ],
    )
}

/// The marks left by finish scripts that ran.
fn finish_marks(scan: &Path) -> Vec<String> {
    fs::read_dir(scan)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".finished"))
        .collect()
}

#[test]
fn a_container_stop_runs_no_finish_and_reports_only_the_unclean_deaths() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path();
    let mut tree = four_slots(scan);

    let (deferred, error) = teardown::defer_finish(scan);
    assert!(error.is_none(), "{error:?}");
    for name in [
        "gateway-clean",
        "gateway-crashed",
        "gateway-hung",
        "gateway-parked",
    ] {
        let slot = scan.join(name);
        assert!(
            !slot.join("finish").exists() && slot.join(DEFERRED_FINISH).exists(),
            "{name}"
        );
    }
    assert!(tree.bring_down(), "s6-svscan did not end on SIGTERM");

    let marks = finish_marks(scan);
    assert!(marks.is_empty(), "s6 ran finish scripts: {marks:?}");
    assert_eq!(
        deferred.unclean_deaths(),
        [
            FinishRun {
                slot: "gateway-crashed".into(),
                script: scan.join("gateway-crashed").join(DEFERRED_FINISH),
                code: 3,
                signal: 0,
            },
            FinishRun {
                slot: "gateway-hung".into(),
                script: scan.join("gateway-hung").join(DEFERRED_FINISH),
                code: 256,
                signal: 9,
            },
        ]
    );
}

/// `gateway stop --all`: s6 runs no `finish`; the stop records the crash and
/// the kill as the hook would have, leaves the clean exit and the slot that
/// was already down alone, and puts every script back. A start puts back a
/// script that a stop killed half-way left aside.
#[test]
fn a_stop_of_many_runs_no_finish_records_the_unclean_deaths_and_puts_the_scripts_back() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    fs::create_dir(&scan).unwrap();
    let home = HermesHome::new(tmp.path().join("home"));
    let names = ["clean", "crashed", "hung", "parked"];
    let profiles: Vec<ProfileName> = names
        .iter()
        .map(|n| ProfileName::parse(n).unwrap())
        .collect();
    for p in &profiles {
        fs::create_dir_all(home.profile(p).dir).unwrap();
    }
    let _tree = four_slots(&scan);
    let manager = manager(&scan, home.clone());

    let results = manager.act_many(&profiles, Action::Stop, Duration::from_secs(20));
    for (name, result) in names.iter().zip(&results) {
        let status = result.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!status.service.up, "{name}: {status:?}");
    }
    let marks = finish_marks(&scan);
    assert!(marks.is_empty(), "s6 ran finish scripts: {marks:?}");
    for name in names {
        let slot = scan.join(format!("gateway-{name}"));
        assert!(
            slot.join("finish").exists() && !slot.join(DEFERRED_FINISH).exists(),
            "{name}'s finish is not back"
        );
    }
    let recorded = |p: &ProfileName| state::load(&home.profile(p).state()).unwrap().state();
    let crashed = recorded(&profiles[1]);
    let exit = crashed.last_exit.as_ref().expect("the crash recorded");
    assert_eq!((exit.code, exit.signal), (Some(3), None), "{crashed:?}");
    assert_eq!(crashed.restarts, 1, "{crashed:?}");
    let hung = recorded(&profiles[2]);
    let exit = hung.last_exit.as_ref().expect("the kill recorded");
    assert_eq!((exit.code, exit.signal), (None, Some(9)), "{hung:?}");
    for p in [&profiles[0], &profiles[3]] {
        assert!(
            !home.profile(p).state().exists(),
            "nothing to record for {p}"
        );
    }

    // A stop killed between moving the script and putting it back: a start
    // puts it back, and so does a start of a gateway already up.
    let clean = scan.join("gateway-clean");
    for _ in 0..2 {
        fs::rename(clean.join("finish"), clean.join(DEFERRED_FINISH)).unwrap();
        let started = manager.act(&profiles[0], Action::Start, Duration::from_secs(20));
        let started = started.expect("started");
        assert!(started.service.up, "{started:?}");
        assert!(clean.join("finish").exists() && !clean.join(DEFERRED_FINISH).exists());
    }
    assert_eq!(recorded(&profiles[0]).gateway_state, None::<RunState>);
}

/// A start during a stop (its `down` removed, `u` sent) takes the slot
/// back: the stop puts the script back at once, not when it gives up
/// waiting for a gateway that is wanted up again.
#[test]
fn a_start_during_a_stop_gets_the_script_back_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    fs::create_dir_all(&scan).unwrap();
    // Ignores SIGTERM, and s6 waits 3 s before its SIGKILL: longer than
    // the stop waits.
    slot(&scan, "gateway-slow", "", false);
    let dir = scan.join("gateway-slow");
    fs::write(dir.join("timeout-kill"), "3000\n").unwrap();
    let _tree = Tree::supervising(&scan, &["gateway-slow"]);
    let manager = manager(&scan, HermesHome::new(tmp.path().join("home")));
    let profile = ProfileName::parse("slow").unwrap();
    std::thread::scope(|s| {
        let wait = Duration::from_millis(2500);
        let stop = s.spawn(move || manager.act(&profile, Action::Stop, wait));
        poll("the stop to move the script", || {
            dir.join(DEFERRED_FINISH).exists()
        });
        // What a start does: `down` gone, then `u`.
        fs::remove_file(dir.join("down")).unwrap();
        fs::write(dir.join("supervise/control"), "u").unwrap();
        let started = Instant::now();
        poll("the script back", || dir.join("finish").exists());
        assert!(
            started.elapsed() < wait / 2,
            "back only after {:?}, as the stop gave up",
            started.elapsed()
        );
        let stopped = stop.join().unwrap();
        assert!(stopped.is_err(), "still up, wanted up: {stopped:?}");
    });
    assert!(!dir.join(DEFERRED_FINISH).exists());
}

/// A gateway of the profile outside its slot (here a process holding the
/// profile's lock beside a down slot, as a gateway left by a killed
/// s6-supervise does) is ended by a stop: SIGTERM, and SIGKILL once the
/// stop's time is up for one that ignores SIGTERM.
#[test]
fn a_stop_ends_a_stray_holding_the_profiles_lock_and_kills_one_deaf_to_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    fs::create_dir_all(&scan).unwrap();
    slot(&scan, "gateway-stray", "exit 0", true);
    let _tree = Tree::supervising(&scan, &["gateway-stray"]);
    let home = HermesHome::new(tmp.path().join("home"));
    let profile = ProfileName::parse("stray").unwrap();
    let paths = home.profile(&profile);
    fs::create_dir_all(&paths.dir).unwrap();
    let manager = manager(&scan, home.clone());
    let stray = |on_term: &str| {
        // The pid file is written after the trap is set: the last stray's
        // must not stand for it (a SIGTERM before the trap ends a deaf one).
        let _ = fs::remove_file(paths.pid_file());
        let body = format!(
            "trap '{on_term}' TERM; echo $$ > {}; while :; do sleep 0.02; done",
            paths.pid_file().display()
        );
        let child = Command::new("flock")
            .arg("--no-fork")
            .arg(paths.gateway_lock())
            .args(["sh", "-c", &body])
            .spawn()
            .expect("flock (util-linux)");
        let pid = child.id() as i32;
        poll("the stray to hold the lock", || {
            paths.pid_file().exists()
                && hermes_core::fsutil::flock_holder(&paths.gateway_lock()) == Some(pid)
        });
        child
    };

    let mut polite = stray("exit 0");
    let stopped = manager.act(&profile, Action::Stop, Duration::from_secs(10));
    assert!(!stopped.expect("stopped").service.up);
    let status = exit_of(&mut polite);
    assert_eq!(status.code(), Some(0), "ended by SIGTERM: {status:?}");

    let mut deaf = stray("");
    let limit = Duration::from_millis(500);
    let asked = Instant::now();
    let stopped = manager.act(&profile, Action::Stop, limit);
    assert!(!stopped.expect("stopped").service.up);
    let status = exit_of(&mut deaf);
    assert_eq!(
        status.signal(),
        Some(9),
        "killed at the deadline: {status:?}"
    );
    assert!(
        asked.elapsed() >= limit,
        "SIGKILL before the stop's time was up"
    );
}

/// How `child` ended, once it has (killed, and the test failed, if it has
/// not within 10 s).
fn exit_of(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still runs after the stop", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
