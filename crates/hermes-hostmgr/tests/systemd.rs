//! systemd: unit snapshots (ordinary and hostile values), refusals,
//! `systemd-analyze verify` of every unit shape, and the exact `systemctl`
//! argv sequences and exit-code mapping of each lifecycle call.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hermes_core::service::{ServiceError, ServiceManager, Want};
use hermes_hostmgr::runner::{Output, RecordingRunner};
use hermes_hostmgr::systemd::{render_unit, unit_name, Scope, SystemdConfig, SystemdManager};

use crate::util::{assert_registration_refused, hostile_spec, profile, spec};

fn system(user: &str) -> Scope {
    Scope::System {
        run_as: user.to_string(),
    }
}

#[test]
fn unit_names() {
    assert_eq!(unit_name(&profile("default")), "hermes-gateway.service");
    assert_eq!(unit_name(&profile("coder")), "hermes-gateway-coder.service");
}

#[test]
fn snapshot_user_units() {
    insta::assert_snapshot!(
        "user_default",
        render_unit(&spec("default"), &Scope::User).unwrap()
    );
    insta::assert_snapshot!(
        "user_coder",
        render_unit(&spec("coder"), &Scope::User).unwrap()
    );
}

#[test]
fn snapshot_system_unit() {
    insta::assert_snapshot!(
        "system_coder",
        render_unit(&spec("coder"), &system("ann")).unwrap()
    );
}

#[test]
fn snapshot_hostile_unit() {
    let unit = render_unit(&hostile_spec(Path::new("/srv")), &Scope::User).unwrap();
    insta::assert_snapshot!("user_hostile", unit);
}

#[test]
fn refuses_what_a_unit_file_cannot_hold() {
    type Change = Box<dyn Fn(&mut hermes_core::service::GatewaySpec)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "newline in a path",
            Box::new(|s| s.workdir = "/a\nb".into()),
        ),
        ("trailing space", Box::new(|s| s.workdir = "/a ".into())),
        (
            "relative program",
            Box::new(|s| s.program = "hermes".into()),
        ),
        (
            "quote in the program",
            Box::new(|s| s.program = "/opt/\"x\"/hermes".into()),
        ),
        (
            "NUL in a value",
            Box::new(|s| {
                s.env.insert("X".into(), "a\0b".into());
            }),
        ),
        (
            "bad variable name",
            Box::new(|s| {
                s.env.insert("A B".into(), "x".into());
            }),
        ),
    ];
    for (what, change) in cases {
        let mut s = spec("coder");
        change(&mut s);
        let err = render_unit(&s, &Scope::User).unwrap_err();
        assert!(
            matches!(err, ServiceError::Unrepresentable { .. }),
            "{what}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot write the systemd service for 'coder': "),
            "{what}: {err}"
        );
    }
    let err = render_unit(&spec("coder"), &system("Bad User")).unwrap_err();
    assert!(err.to_string().contains("--run-as-user"), "{err}");
}

/// Run `systemd-analyze verify` on `unit` written as `dir/<name>`; on failure
/// the panic shows the command, its exit code, its output and the unit.
fn verify(dir: &Path, name: &str, unit: &str, user: bool) {
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        // A user manager, even verify's throwaway one, needs a runtime directory.
        cmd.env("XDG_RUNTIME_DIR", dir).arg("--user");
    }
    cmd.arg("verify").arg(&path);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("unable to run {cmd:?} (Debian: apt-get install systemd): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Warnings about the unit itself count as failures; lines about the host's
    // own units (verify loads their dependencies too) do not.
    let ours: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains(name) || l.contains(&*path.to_string_lossy()))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nunit:\n{unit}",
        out.status
    );
}

/// systemd-analyze checks that ExecStart's program exists and is executable,
/// so every variant points at a real executable, at a path as hostile as the rest.
#[test]
fn every_unit_shape_passes_systemd_analyze_verify() {
    let root = tempfile::tempdir().unwrap();
    let mut hostile = hostile_spec(root.path());
    std::fs::create_dir_all(hostile.program.parent().unwrap()).unwrap();
    std::fs::copy("/bin/true", &hostile.program).unwrap();
    std::fs::create_dir_all(&hostile.workdir).unwrap();
    let units = tempfile::tempdir().unwrap();
    let mut ordinary = spec("coder");
    ordinary.program = hostile.program.clone();
    let mut default = spec("default");
    default.program = hostile.program.clone();
    let shapes = [
        ("user default", default, Scope::User),
        ("user coder", ordinary.clone(), Scope::User),
        ("system coder", ordinary, system("root")),
        ("user hostile", hostile.clone(), Scope::User),
        ("system hostile", hostile.clone(), system("root")),
    ];
    for (what, s, scope) in shapes {
        let unit = render_unit(&s, &scope).unwrap_or_else(|e| panic!("{what}: {e}"));
        verify(
            units.path(),
            &unit_name(&s.profile),
            &unit,
            scope == Scope::User,
        );
    }
    // The check has teeth: a program that does not exist fails verification.
    hostile.program = root.path().join("missing/hermes");
    let unit = render_unit(&hostile, &Scope::User).unwrap();
    let path = units.path().join("hermes-gateway-coder.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .env("XDG_RUNTIME_DIR", units.path())
        .args(["--user", "verify"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "verify accepted a missing program");
}

fn fixed_clock() -> Duration {
    Duration::from_secs(100)
}

fn manager<'r>(
    dir: &Path,
    scope: Scope,
    runner: &'r RecordingRunner,
) -> SystemdManager<&'r RecordingRunner> {
    SystemdManager::new(
        SystemdConfig {
            scope,
            unit_dir: dir.join("units"),
            linger_file: Some(dir.join("linger/ann")),
            poll_interval: Duration::ZERO,
            monotonic_now: fixed_clock,
        },
        runner,
    )
}

const SHOW: &str = "--property=LoadState,ActiveState,SubState,Result,MainPID,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic,StateChangeTimestampMonotonic,NRestarts";
const UNIT: &str = "hermes-gateway-coder.service";

fn show_argv(user: bool) -> Vec<&'static str> {
    let mut v = vec!["systemctl"];
    if user {
        v.push("--user");
    }
    v.extend(["show", UNIT, SHOW]);
    v
}

fn state(active: &str, sub: &str, pid: u32, exec_start: u64) -> Output {
    Output::ok(&format!(
        "LoadState=loaded\nActiveState={active}\nSubState={sub}\nResult={}\nMainPID={pid}\nExecMainCode={}\nExecMainStatus={}\nExecMainStartTimestampMonotonic={exec_start}\nStateChangeTimestampMonotonic=40000000\nNRestarts=0\n",
        if active == "failed" { "start-limit-hit" } else { "success" },
        if pid == 0 && exec_start > 0 { 1 } else { 0 },
        if active == "failed" { 1 } else { 0 },
    ))
}

fn show_line(user: bool) -> String {
    show_argv(user).join(" ")
}

#[test]
fn install_fresh_writes_reloads_enables_and_warns_about_linger() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    let warnings = m.install_with_warnings(&spec("coder")).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now hermes-gateway-coder.service"
        ]
    );
    assert_eq!(m.list().unwrap(), [profile("coder")]);
    let written = std::fs::read_to_string(dir.path().join("units").join(UNIT)).unwrap();
    assert_eq!(written, render_unit(&spec("coder"), &Scope::User).unwrap());
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("loginctl enable-linger ann"),
        "{warnings:?}"
    );

    // Lingering on: no warning. Same unit again: nothing to rewrite or reload.
    std::fs::create_dir_all(dir.path().join("linger")).unwrap();
    std::fs::write(dir.path().join("linger/ann"), "").unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    assert!(m.install_with_warnings(&spec("coder")).unwrap().is_empty());
    assert_eq!(
        runner.call_lines(),
        ["systemctl --user enable --now hermes-gateway-coder.service"]
    );
}

#[test]
fn install_over_a_different_unit_rewrites_reloads_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    std::fs::create_dir_all(dir.path().join("units")).unwrap();
    std::fs::write(
        dir.path().join("units").join(UNIT),
        "[Service]\nExecStart=/old\n",
    )
    .unwrap();
    m.install(&spec("coder")).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user try-restart hermes-gateway-coder.service",
            "systemctl --user enable --now hermes-gateway-coder.service"
        ]
    );
}

#[test]
fn system_install_has_no_user_flag_and_no_linger_check() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let mut config = SystemdConfig::system("ann".into());
    config.unit_dir = dir.path().to_path_buf();
    let m = SystemdManager::new(config, &runner);
    let plan = m.plan_install(&spec("coder")).unwrap();
    assert!(plan.warnings.is_empty());
    m.install(&spec("coder")).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            "systemctl daemon-reload",
            "systemctl enable --now hermes-gateway-coder.service"
        ]
    );
    let unit = std::fs::read_to_string(dir.path().join(UNIT)).unwrap();
    assert!(unit.contains("\nUser=ann\n") && unit.contains("WantedBy=multi-user.target"));
}

#[test]
fn uninstall_stops_disables_removes_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    m.install(&spec("coder")).unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    // reset-failed of a unit systemd has just forgotten may fail: tolerated.
    runner.answer(
        &["systemctl", "--user", "reset-failed", UNIT],
        Output::exit(5, "", "Unit hermes-gateway-coder.service not loaded."),
    );
    m.uninstall(&profile("coder")).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            "systemctl --user disable --now hermes-gateway-coder.service",
            "systemctl --user daemon-reload",
            "systemctl --user reset-failed hermes-gateway-coder.service"
        ]
    );
    assert!(!dir.path().join("units").join(UNIT).exists());
    let err = m.uninstall(&profile("coder")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hermes-gateway-coder.service is not installed in systemd: run `hermes -p coder gateway install`"
    );
}

#[test]
fn start_waits_until_active() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    runner
        .answer(&show_argv(true), state("inactive", "dead", 0, 0))
        .answer(
            &show_argv(true),
            state("activating", "start", 77, 90_000_000),
        )
        .answer(&show_argv(true), state("active", "running", 77, 90_000_000));
    let slot = m.start(&profile("coder"), Duration::from_secs(5)).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            show_line(true),
            "systemctl --user start --no-block hermes-gateway-coder.service".to_string(),
            show_line(true),
            show_line(true),
        ]
    );
    assert!(slot.service.up && slot.service.ready && slot.service.supervised);
    assert_eq!(
        (slot.service.pid, slot.service.want, slot.service.for_secs),
        (Some(77), Want::Up, Some(60))
    );
    assert_eq!(slot.service.name, UNIT);
}

#[test]
fn start_after_a_crash_loop_resets_and_reports_failure_with_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    runner
        .answer(&show_argv(true), state("failed", "failed", 0, 1))
        .answer(&show_argv(true), state("failed", "failed", 0, 2))
        .answer(
            &[
                "journalctl",
                "--user",
                "--unit",
                UNIT,
                "--lines=20",
                "--no-pager",
                "--output=cat",
            ],
            Output::ok("config error: gateway.port missing\n"),
        );
    let err = m
        .start(&profile("coder"), Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(
        runner.call_lines(),
        [
            show_line(true),
            "systemctl --user reset-failed hermes-gateway-coder.service".to_string(),
            "systemctl --user start --no-block hermes-gateway-coder.service".to_string(),
            show_line(true),
            "journalctl --user --unit hermes-gateway-coder.service --lines=20 --no-pager --output=cat".to_string(),
        ]
    );
    assert_eq!(
        err.to_string(),
        "gateway 'coder' failed to start: hermes-gateway-coder.service is failed (failed), main process exited with code 1 and systemd gave up after repeated fast failures (start-limit-hit)\nlast log lines:\nconfig error: gateway.port missing"
    );
}

#[test]
fn start_times_out_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    runner
        .answer(&show_argv(true), state("inactive", "dead", 0, 0))
        .answer(&show_argv(true), state("activating", "auto-restart", 0, 5));
    let err = m.start(&profile("coder"), Duration::ZERO).unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Timeout {
                action: "start",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stop_waits_until_inactive() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(
        dir.path(),
        Scope::System {
            run_as: "ann".into(),
        },
        &runner,
    );
    runner
        .answer(&show_argv(false), state("active", "running", 77, 5))
        .answer(
            &show_argv(false),
            state("deactivating", "stop-sigterm", 77, 5),
        )
        .answer(&show_argv(false), state("inactive", "dead", 0, 5));
    let slot = m.stop(&profile("coder"), Duration::from_secs(5)).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            show_line(false),
            "systemctl stop --no-block hermes-gateway-coder.service".to_string(),
            show_line(false),
            show_line(false),
        ]
    );
    assert!(
        !slot.service.up && slot.service.want == Want::Down && slot.service.exit_code == Some(0)
    );
}

#[test]
fn restart_waits_for_a_new_main_process() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    runner
        .answer(&show_argv(true), state("active", "running", 77, 5))
        .answer(&show_argv(true), state("active", "running", 77, 5))
        .answer(&show_argv(true), state("active", "running", 88, 9));
    let slot = m
        .restart(&profile("coder"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            show_line(true),
            "systemctl --user restart --no-block hermes-gateway-coder.service".to_string(),
            show_line(true),
            show_line(true),
        ]
    );
    assert_eq!(slot.service.pid, Some(88));
}

#[test]
fn status_reads_show_properties() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    runner.answer(
        &show_argv(true),
        Output::ok("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=signal\nMainPID=0\nExecMainCode=2\nExecMainStatus=9\nStateChangeTimestampMonotonic=99000000\n"),
    );
    let slot = m.status(&profile("coder")).unwrap();
    assert_eq!(runner.call_lines(), [show_line(true)]);
    assert_eq!(
        (
            slot.service.up,
            slot.service.want,
            slot.signal.as_deref(),
            slot.service.for_secs
        ),
        (false, Want::Up, Some("SIGKILL"), Some(1))
    );
    runner.answer(
        &show_argv(true),
        Output::ok("LoadState=not-found\nActiveState=inactive\n"),
    );
    assert!(matches!(
        m.status(&profile("coder")).unwrap_err(),
        ServiceError::ServiceNotInstalled { .. }
    ));
}

/// systemctl's documented codes for verbs: 1 generic, 3 not implemented,
/// 4 permission denied, 5 not installed (unit not found).
#[test]
fn exit_codes_map_to_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let p = profile("coder");
    let user = manager(dir.path(), Scope::User, &runner);
    let sys = manager(dir.path(), system("ann"), &runner);
    let argv: Vec<String> = ["systemctl", "start", UNIT].map(String::from).to_vec();
    let err = |m: &SystemdManager<&RecordingRunner>, code: i32, stderr: &str| {
        m.failure(&p, &argv, &Output::exit(code, "", stderr))
    };
    assert_eq!(
        err(&sys, 4, "Failed to start hermes-gateway-coder.service: Access denied").to_string(),
        "`systemctl start hermes-gateway-coder.service` was refused (exit 4): Failed to start hermes-gateway-coder.service: Access denied: system units need root: run it with sudo, or drop --system for a user unit"
    );
    assert_eq!(
        err(&sys, 5, "Unit hermes-gateway-coder.service not found.").to_string(),
        "hermes-gateway-coder.service is not installed in systemd: run `hermes -p coder gateway install --system --run-as-user ann`"
    );
    assert!(matches!(
        err(&user, 5, ""),
        ServiceError::ServiceNotInstalled { .. }
    ));
    for code in [1, 3, 6] {
        let e = err(&user, code, "Job failed");
        assert_eq!(
            e.to_string(),
            format!(
                "`systemctl start hermes-gateway-coder.service` failed (exit {code}): Job failed"
            )
        );
    }
    // A bus that does not answer: show fails, and the error names the command.
    runner.answer(
        &show_argv(true),
        Output::exit(1, "", "Failed to connect to bus: No medium found"),
    );
    let e = user.status(&p).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`systemctl --user show hermes-gateway-coder.service --property=")
            && e.to_string()
                .ends_with("failed (exit 1): Failed to connect to bus: No medium found"),
        "{e}"
    );
}

#[test]
fn registration_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    assert_registration_refused(&manager(dir.path(), Scope::User, &runner), &runner);
}

/// The unit's rate limit is derived from the s6 finish policy; if that policy
/// changes, the unit must change with it.
#[test]
fn start_limit_mirrors_the_s6_crash_loop_policy() {
    use hermes_hostmgr::systemd::{RESTART_SEC, START_LIMIT_BURST, START_LIMIT_INTERVAL_SECS};
    use hermes_s6::finish::{CONFIG_EXIT, MAX_SHORT_FAILURES, SHORT_RUN_MS};
    assert_eq!(START_LIMIT_BURST, MAX_SHORT_FAILURES);
    // Five starts fit in the window exactly when each run is shorter than SHORT_RUN_MS.
    let fast_run_secs = START_LIMIT_INTERVAL_SECS / START_LIMIT_BURST - RESTART_SEC;
    assert_eq!(u64::from(fast_run_secs) * 1000, SHORT_RUN_MS);
    let unit = render_unit(&spec("coder"), &Scope::User).unwrap();
    assert!(unit.contains(&format!("\nRestartPreventExitStatus={CONFIG_EXIT}\n")));
}

/// `--dry-run` prints each file's path then its content, then each command.
#[test]
fn dry_run_listing_shows_path_content_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), Scope::User, &runner);
    let plan = m.plan_install(&spec("coder")).unwrap();
    let text = plan
        .to_string()
        .replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!("dry_run_user_coder", text);
    assert!(runner.calls().is_empty(), "planning runs nothing");
    assert!(
        !dir.path().join("units").exists(),
        "planning writes nothing"
    );
}
