//! launchd: plist snapshots, parse-back with a plist parser (hostile values
//! included), and the exact `launchctl` argv sequences and error mapping.

use std::path::Path;
use std::time::Duration;

use hermes_core::service::{GatewaySpec, ServiceError, ServiceManager, Want};
use hermes_hostmgr::launchd::{label, render_plist, LaunchdConfig, LaunchdManager};
use hermes_hostmgr::runner::{Output, RecordingRunner};

use crate::util::{assert_registration_refused, hostile_spec, profile, spec};

#[test]
fn snapshot_plists() {
    insta::assert_snapshot!("plist_coder", render_plist(&spec("coder")).unwrap());
    insta::assert_snapshot!("plist_default", render_plist(&spec("default")).unwrap());
    insta::assert_snapshot!(
        "plist_hostile",
        render_plist(&hostile_spec(Path::new("/srv"))).unwrap()
    );
}

/// Parse the rendered plist back and compare every value with the spec.
fn assert_round_trip(s: &GatewaySpec) {
    let text = render_plist(s).unwrap();
    let value: plist::Value = plist::from_bytes(text.as_bytes())
        .unwrap_or_else(|e| panic!("plist does not parse: {e}\n{text}"));
    let dict = value.as_dictionary().expect("top-level dict");
    let string = |k: &str| dict.get(k).and_then(|v| v.as_string()).map(String::from);
    assert_eq!(string("Label"), Some(label(&s.profile)));
    let args: Vec<String> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap().to_string())
        .collect();
    let mut want = vec![s.program.display().to_string()];
    want.extend(s.args());
    assert_eq!(args, want);
    assert_eq!(
        string("WorkingDirectory"),
        Some(s.workdir.display().to_string())
    );
    let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
    let mut want_env = s.env.clone();
    want_env.insert("HERMES_HOME".into(), s.home.display().to_string());
    assert_eq!(env.len(), want_env.len());
    for (k, v) in &want_env {
        assert_eq!(env[k.as_str()].as_string(), Some(v.as_str()), "{k}");
    }
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    let keep_alive = dict["KeepAlive"].as_dictionary().unwrap();
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(dict["ThrottleInterval"].as_signed_integer(), Some(10));
    assert_eq!(
        string("StandardOutPath"),
        Some(s.log_dir.join("launchd.stdout.log").display().to_string())
    );
    assert_eq!(
        string("StandardErrorPath"),
        Some(s.log_dir.join("launchd.stderr.log").display().to_string())
    );
}

#[test]
fn plists_parse_back_to_the_same_values() {
    assert_round_trip(&spec("coder"));
    assert_round_trip(&spec("default"));
    assert_round_trip(&hostile_spec(Path::new("/srv")));
}

#[test]
fn refuses_what_xml_cannot_hold() {
    let mut s = spec("coder");
    s.env.insert("BELL".into(), "ding\x07".into());
    let err = render_plist(&s).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot write the launchd service for 'coder': ")
            && err.to_string().contains("U+0007"),
        "{err}"
    );
}

fn manager<'r>(dir: &Path, runner: &'r RecordingRunner) -> LaunchdManager<&'r RecordingRunner> {
    LaunchdManager::new(
        LaunchdConfig {
            agents_dir: dir.join("LaunchAgents"),
            uid: 501,
            poll_interval: Duration::ZERO,
        },
        runner,
    )
}

const TARGET: &str = "gui/501/hermes.gateway.coder";

fn job(state: &str, pid: Option<u32>, last_exit: &str) -> Output {
    Output::ok(&format!(
        "gui/501/hermes.gateway.coder = {{\n\tactive count = 1\n\tstate = {state}\n{}\tlast exit code = {last_exit}\n\tenvironment = {{\n\t\tstate = nested-ignored\n\t}}\n}}\n",
        pid.map(|p| format!("\tpid = {p}\n")).unwrap_or_default()
    ))
}

#[test]
fn install_writes_unloads_enables_bootstraps() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let mut s = spec("coder");
    s.log_dir = dir.path().join("logs/coder");
    // Nothing loaded yet: bootout's "No such process" is tolerated.
    runner.answer(
        &["launchctl", "bootout", TARGET],
        Output::exit(3, "", "Boot-out failed: 3: No such process"),
    );
    m.install(&s).unwrap();
    let plist = dir.path().join("LaunchAgents/hermes.gateway.coder.plist");
    assert_eq!(
        runner.call_lines(),
        [
            format!("launchctl bootout {TARGET}"),
            format!("launchctl enable {TARGET}"),
            format!("launchctl bootstrap gui/501 {}", plist.display()),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&plist).unwrap(),
        render_plist(&s).unwrap()
    );
    assert!(
        s.log_dir.is_dir(),
        "launchd does not create the log directory itself"
    );
    assert_eq!(m.list().unwrap(), [profile("coder")]);
}

#[test]
fn uninstall_boots_out_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let mut s = spec("coder");
    s.log_dir = dir.path().join("logs/coder");
    m.install(&s).unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    m.uninstall(&profile("coder")).unwrap();
    assert_eq!(runner.call_lines(), [format!("launchctl bootout {TARGET}")]);
    assert!(!dir
        .path()
        .join("LaunchAgents/hermes.gateway.coder.plist")
        .exists());
    assert_eq!(
        m.uninstall(&profile("coder")).unwrap_err().to_string(),
        "hermes.gateway.coder is not installed in launchd: run `hermes -p coder gateway install`"
    );
}

#[test]
fn start_kickstarts_and_waits_for_running() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let print = ["launchctl", "print", TARGET];
    runner
        .answer(&print, job("waiting", None, "(never exited)"))
        .answer(&print, job("running", Some(321), "(never exited)"));
    let slot = m.start(&profile("coder"), Duration::from_secs(5)).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            format!("launchctl kickstart {TARGET}"),
            format!("launchctl print {TARGET}"),
            format!("launchctl print {TARGET}"),
        ]
    );
    assert!(slot.service.up && slot.service.ready);
    assert_eq!((slot.service.pid, slot.service.want), (Some(321), Want::Up));
}

#[test]
fn stop_sends_sigterm_and_waits_for_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    runner.answer(
        &["launchctl", "print", TARGET],
        job("not running", None, "0"),
    );
    let slot = m.stop(&profile("coder"), Duration::from_secs(5)).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            format!("launchctl kill SIGTERM {TARGET}"),
            format!("launchctl print {TARGET}"),
        ]
    );
    assert!(
        !slot.service.up && slot.service.exit_code == Some(0) && slot.service.want == Want::Down
    );
}

#[test]
fn restart_kickstarts_with_kill_and_waits_for_a_new_pid() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let print = ["launchctl", "print", TARGET];
    runner
        .answer(&print, job("running", Some(321), "(never exited)"))
        .answer(&print, job("running", Some(321), "(never exited)"))
        .answer(&print, job("running", Some(654), "-15"));
    let slot = m
        .restart(&profile("coder"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            format!("launchctl print {TARGET}"),
            format!("launchctl kickstart -k {TARGET}"),
            format!("launchctl print {TARGET}"),
            format!("launchctl print {TARGET}"),
        ]
    );
    assert_eq!(slot.service.pid, Some(654));
}

#[test]
fn status_reads_print() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    runner.answer(
        &["launchctl", "print", TARGET],
        job("not running", None, "1"),
    );
    let slot = m.status(&profile("coder")).unwrap();
    assert_eq!(runner.call_lines(), [format!("launchctl print {TARGET}")]);
    assert_eq!(
        (slot.service.up, slot.service.exit_code, slot.service.pid),
        (false, Some(1), None)
    );
}

/// launchctl exits with an error number (`launchctl error <n>` decodes it).
#[test]
fn error_numbers_map_to_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let p = profile("coder");
    let argv: Vec<String> = ["launchctl", "kickstart", TARGET]
        .map(String::from)
        .to_vec();
    let err = |code: i32, stderr: &str| m.failure(&p, &argv, &Output::exit(code, "", stderr));
    for code in [3, 113] {
        assert!(
            matches!(
                err(code, "Could not find service"),
                ServiceError::ServiceNotInstalled { .. }
            ),
            "{code}"
        );
    }
    assert_eq!(
        err(1, "Operation not permitted").to_string(),
        "`launchctl kickstart gui/501/hermes.gateway.coder` was refused (exit 1): Operation not permitted: run it as the user who owns the LaunchAgent, without sudo"
    );
    assert!(err(112, "Could not find domain").to_string().ends_with(
        "the gui/501 domain exists only while the user is logged in at the Mac; log in there once"
    ));
    assert_eq!(
        err(5, "Bootstrap failed: 5: Input/output error").to_string(),
        "`launchctl kickstart gui/501/hermes.gateway.coder` failed (exit 5): Bootstrap failed: 5: Input/output error"
    );
    // Through a lifecycle call: start of an unknown job.
    runner.answer(
        &["launchctl", "kickstart", TARGET],
        Output::exit(
            113,
            "",
            "Could not find service \"hermes.gateway.coder\" in domain for user gui: 501",
        ),
    );
    assert!(matches!(
        m.start(&p, Duration::ZERO).unwrap_err(),
        ServiceError::ServiceNotInstalled { .. }
    ));
}

#[test]
fn registration_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    assert_registration_refused(&manager(dir.path(), &runner), &runner);
}
