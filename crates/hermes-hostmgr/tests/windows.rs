//! Windows: task XML and launcher snapshots, XML parse-back (well-formed, the
//! same values, the settings the issue asks for), refusals, and the exact
//! `schtasks` argv sequences and error mapping.

use std::path::Path;
use std::time::Duration;

use hermes_core::service::{ServiceError, ServiceManager, Want};
use hermes_hostmgr::runner::{Output, RecordingRunner};
use hermes_hostmgr::windows::{
    render_launcher, render_task_xml, task_name, WindowsConfig, WindowsManager,
};

use crate::util::{assert_registration_refused, profile, spec};

const NS: &str = "http://schemas.microsoft.com/windows/2004/02/mit/task";

#[test]
fn snapshot_task_xml_and_launcher() {
    let launcher = Path::new("/home/ann/.hermes/tasks/hermes-gateway-coder.cmd");
    insta::assert_snapshot!(
        "task_coder",
        render_task_xml(&spec("coder"), launcher, Some("HOST\\ann")).unwrap()
    );
    insta::assert_snapshot!("launcher_coder", render_launcher(&spec("coder")).unwrap());
}

/// The values cmd.exe and XML both can carry: spaces, `&<>`, `%`, `$`, `!`, `^`, `'`.
fn hostile() -> hermes_core::service::GatewaySpec {
    let base = "C:/Users/ann/my apps & <tools> 100% $HOME !x! ^caret 'q'";
    let mut s = spec("coder");
    s.program = format!("{base}/hermes.exe").into();
    s.home = format!("{base}/home").into();
    s.workdir = format!("{base}/home/profiles/coder").into();
    s.log_dir = format!("{base}/home/logs/gateways/coder").into();
    s.env.insert("PERCENT".into(), "50% off %PATH% !x!".into());
    s
}

#[test]
fn snapshot_hostile_launcher() {
    insta::assert_snapshot!("launcher_hostile", render_launcher(&hostile()).unwrap());
}

#[test]
fn task_xml_parses_back_with_the_required_settings() {
    let launcher = Path::new("/home/ann/my tasks & <more>/hermes-gateway-coder.cmd");
    let xml = render_task_xml(&spec("coder"), launcher, Some("HOST\\ann & co")).unwrap();
    let doc = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("task XML is not well-formed: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Task");
    assert_eq!(root.tag_name().namespace(), Some(NS));
    let text = |path: &[&str]| -> Option<String> {
        let mut node = root;
        for name in path {
            node = node
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == *name)?;
        }
        node.text().map(String::from)
    };
    assert_eq!(
        text(&["Actions", "Exec", "Command"]).as_deref(),
        Some("/home/ann/my tasks & <more>/hermes-gateway-coder.cmd")
    );
    assert_eq!(
        text(&["Triggers", "LogonTrigger", "UserId"]).as_deref(),
        Some("HOST\\ann & co")
    );
    assert_eq!(
        text(&["Settings", "ExecutionTimeLimit"]).as_deref(),
        Some("PT0S")
    );
    assert_eq!(
        text(&["Settings", "RestartOnFailure", "Count"]).as_deref(),
        Some("5")
    );
    assert_eq!(
        text(&["Settings", "RestartOnFailure", "Interval"]).as_deref(),
        Some("PT1M")
    );
    assert_eq!(
        text(&["Settings", "MultipleInstancesPolicy"]).as_deref(),
        Some("IgnoreNew")
    );
    // Without a user the trigger fires at any log-on and has no UserId.
    let xml = render_task_xml(&spec("coder"), launcher, None).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert!(!doc.descendants().any(|n| n.tag_name().name() == "UserId"));
}

#[test]
fn refuses_what_task_scheduler_or_cmd_cannot_hold() {
    let err = render_task_xml(&spec("coder"), Path::new("/t/100%/x.cmd"), None).unwrap_err();
    assert!(
        err.to_string().contains("Task Scheduler would expand"),
        "{err}"
    );
    for (k, v) in [("Q", "say \"hi\""), ("NL", "a\nb")] {
        let mut s = spec("coder");
        s.env.insert(k.into(), v.into());
        let err = render_launcher(&s).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot write the windows service for 'coder': ")
                && err.to_string().contains("cmd.exe launcher cannot quote"),
            "{err}"
        );
    }
}

fn manager<'r>(dir: &Path, runner: &'r RecordingRunner) -> WindowsManager<&'r RecordingRunner> {
    WindowsManager::new(
        WindowsConfig {
            task_dir: dir.join("tasks"),
            user: Some("HOST\\ann".into()),
            poll_interval: Duration::ZERO,
        },
        runner,
    )
}

const QUERY: [&str; 7] = [
    "schtasks",
    "/Query",
    "/TN",
    "hermes-gateway-coder",
    "/FO",
    "CSV",
    "/V",
];

fn query(status: &str, last_result: &str) -> Output {
    Output::ok(&format!(
        "\"HostName\",\"TaskName\",\"Next Run Time\",\"Status\",\"Logon Mode\",\"Last Run Time\",\"Last Result\",\"Author\"\r\n\"HOST\",\"\\hermes-gateway-coder\",\"N/A\",\"{status}\",\"Interactive only\",\"27/11/2026 16:00:00\",\"{last_result}\",\"ann\"\r\n"
    ))
}

#[test]
fn install_writes_launcher_and_utf16_xml_creates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    m.install(&spec("coder")).unwrap();
    let xml = dir.path().join("tasks/hermes-gateway-coder.xml");
    assert_eq!(
        runner.call_lines(),
        [
            format!(
                "schtasks /Create /XML {} /TN hermes-gateway-coder /F",
                xml.display()
            ),
            "schtasks /Run /TN hermes-gateway-coder".to_string(),
        ]
    );
    assert_eq!(m.list().unwrap(), [profile("coder")]);
    let bytes = std::fs::read(&xml).unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xFE], "UTF-16LE byte-order mark");
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).unwrap();
    roxmltree::Document::parse(&text).unwrap();
    let launcher = dir.path().join("tasks/hermes-gateway-coder.cmd");
    assert_eq!(
        std::fs::read_to_string(launcher).unwrap(),
        render_launcher(&spec("coder")).unwrap()
    );
}

#[test]
fn uninstall_ends_deletes_and_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    m.install(&spec("coder")).unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    // /End of a task that is not running fails; uninstall carries on.
    runner.answer(
        &["schtasks", "/End", "/TN", "hermes-gateway-coder"],
        Output::exit(1, "", "ERROR: The task is not running."),
    );
    m.uninstall(&profile("coder")).unwrap();
    assert_eq!(
        runner.call_lines(),
        [
            "schtasks /End /TN hermes-gateway-coder",
            "schtasks /Delete /TN hermes-gateway-coder /F"
        ]
    );
    assert!(!dir.path().join("tasks/hermes-gateway-coder.xml").exists());
    assert!(!dir.path().join("tasks/hermes-gateway-coder.cmd").exists());
}

#[test]
fn start_stop_restart_status_argv() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let p = profile("coder");
    runner
        .answer(&QUERY, query("Ready", "0"))
        .answer(&QUERY, query("Running", "267009"));
    let slot = m.start(&p, Duration::from_secs(5)).unwrap();
    assert!(slot.service.up && slot.service.want == Want::Up && slot.service.exit_code.is_none());
    runner.answer(&QUERY, query("Ready", "1"));
    let slot = m.stop(&p, Duration::from_secs(5)).unwrap();
    assert_eq!((slot.service.up, slot.service.exit_code), (false, Some(1)));
    runner
        .answer(&QUERY, query("Running", "267009"))
        .answer(&QUERY, query("Ready", "0"))
        .answer(&QUERY, query("Running", "267009"));
    m.restart(&p, Duration::from_secs(5)).unwrap();
    runner.answer(&QUERY, query("Ready", "0"));
    assert!(!m.status(&p).unwrap().service.up);
    let q = QUERY.join(" ");
    assert_eq!(
        runner.call_lines(),
        [
            "schtasks /Run /TN hermes-gateway-coder",
            &q,
            &q,
            "schtasks /End /TN hermes-gateway-coder",
            &q,
            &q,
            "schtasks /End /TN hermes-gateway-coder",
            &q,
            "schtasks /Run /TN hermes-gateway-coder",
            &q,
            &q,
        ]
    );
    assert_eq!(task_name(&profile("default")), "hermes-gateway");
}

/// schtasks exits 0 or 1; the reason is only in its message.
#[test]
fn exit_codes_map_to_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    let m = manager(dir.path(), &runner);
    let p = profile("coder");
    let argv: Vec<String> = ["schtasks", "/Run", "/TN", "hermes-gateway-coder"]
        .map(String::from)
        .to_vec();
    let err = |stderr: &str| m.failure(&p, &argv, &Output::exit(1, "", stderr));
    assert_eq!(
        err("ERROR: The system cannot find the file specified.\r\n").to_string(),
        "hermes-gateway-coder is not installed in windows: run `hermes -p coder gateway install`"
    );
    assert_eq!(
        err("ERROR: Access is denied.").to_string(),
        "`schtasks /Run /TN hermes-gateway-coder` was refused (exit 1): ERROR: Access is denied.: run it as the user who installed the task"
    );
    assert_eq!(
        err("ERROR: The task XML is malformed.").to_string(),
        "`schtasks /Run /TN hermes-gateway-coder` failed (exit 1): ERROR: The task XML is malformed."
    );
    runner.answer(
        &QUERY,
        Output::exit(1, "", "ERROR: The system cannot find the file specified."),
    );
    assert!(matches!(
        m.status(&p).unwrap_err(),
        ServiceError::ServiceNotInstalled { .. }
    ));
}

#[test]
fn registration_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new();
    assert_registration_refused(&manager(dir.path(), &runner), &runner);
}
