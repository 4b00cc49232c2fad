//! The pure renderer of a profile's systemd unit, and the escaping rules of
//! the unit-file syntax. Every value either survives systemd's parser
//! unchanged or is refused here, before anything is written.

use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError};

use super::Scope;
use crate::spec::{environment, require_absolute, valid_user_name};

/// Crash-loop policy, mirroring the s6 finish hook: five fast failures and the
/// service is given up on. systemd counts *starts* inside a window rather than
/// consecutive short runs, so the window is sized to make the two agree: five
/// starts in `START_LIMIT_INTERVAL_SECS` with `RESTART_SEC` between them means
/// each run lasted under 60/5 − 2 = 10 s. A gateway that crashes after longer
/// runs keeps being restarted, as under s6. Exhausting the burst leaves the
/// unit `failed` with result `start-limit-hit`, which `status` reports.
pub const START_LIMIT_BURST: u32 = 5;
pub const START_LIMIT_INTERVAL_SECS: u32 = 60;
pub const RESTART_SEC: u32 = 2;

/// The unit name for a profile: `hermes-gateway.service` for `default`.
pub fn unit_name(profile: &ProfileName) -> String {
    if profile.is_default() {
        "hermes-gateway.service".to_string()
    } else {
        format!("hermes-gateway-{profile}.service")
    }
}

pub fn render_unit(spec: &GatewaySpec, scope: &Scope) -> Result<String, ServiceError> {
    let refuse = |reason: String| ServiceError::Unrepresentable {
        manager: ManagerKind::Systemd,
        profile: spec.profile.clone(),
        reason,
    };
    let program = require_absolute(&spec.program, "program").map_err(refuse)?;
    let mut exec = vec![exec_program(program).map_err(refuse)?];
    for arg in spec.args() {
        exec.push(exec_word(&arg).map_err(refuse)?);
    }
    let workdir = require_absolute(&spec.workdir, "working directory").map_err(refuse)?;
    let workdir = path_value(workdir).map_err(refuse)?;
    let mut env_lines = String::new();
    for (name, value) in environment(spec).map_err(refuse)? {
        env_lines.push_str(&format!(
            "Environment={}\n",
            env_assignment(&name, &value).map_err(refuse)?
        ));
    }
    let (after, user, wanted_by) = match scope {
        Scope::User => (String::new(), String::new(), "default.target"),
        Scope::System { run_as } => {
            if !valid_user_name(run_as) {
                return Err(refuse(format!(
                    "--run-as-user {run_as:?} is not a valid user name"
                )));
            }
            (
                // A user manager has no network-online.target; a system one does.
                "After=network-online.target\nWants=network-online.target\n".to_string(),
                format!("User={run_as}\n"),
                "multi-user.target",
            )
        }
    };
    let name = unit_name(&spec.profile);
    let syslog_id = name.trim_end_matches(".service");
    Ok(format!(
        "\
# hermes gateway for profile '{profile}', written by `hermes gateway install`.
# Rewritten on every install: put local changes in a drop-in (systemctl edit).
[Unit]
Description=hermes gateway (profile {profile})
{after}\
# Crash-loop policy, as under s6: after {burst} starts within {interval} s (runs
# shorter than about 10 s each) systemd gives up: the unit stays failed with
# result start-limit-hit until `hermes gateway start`.
StartLimitIntervalSec={interval}
StartLimitBurst={burst}

[Service]
# The gateway sends READY=1 to $NOTIFY_SOCKET once it is really serving.
Type=notify
NotifyAccess=main
ExecStart={exec}
WorkingDirectory={workdir}
{env_lines}\
{user}\
Restart=on-failure
RestartSec={restart_sec}
# 78 is hermes' fatal-configuration exit: restarting cannot fix it.
RestartPreventExitStatus=78
TimeoutStartSec=60
# The gateway drains in-flight requests on SIGTERM before exiting.
TimeoutStopSec=20
StandardOutput=journal
StandardError=journal
SyslogIdentifier={syslog_id}

[Install]
WantedBy={wanted_by}
",
        profile = spec.profile,
        burst = START_LIMIT_BURST,
        interval = START_LIMIT_INTERVAL_SECS,
        restart_sec = RESTART_SEC,
        exec = exec.join(" "),
    ))
}

/// C-style escape inside double quotes, `%` doubled for specifiers; `$` doubled
/// when the setting expands variables (ExecStart= does, Environment= does not).
fn quoted(value: &str, double_dollar: bool) -> Result<String, String> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\0' => return Err(format!("{value:?} contains a NUL byte")),
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            '%' => out.push_str("%%"),
            '$' if double_dollar => out.push_str("$$"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!(r"\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

fn exec_word(word: &str) -> Result<String, String> {
    quoted(word, true)
}

/// ExecStart='s program: systemd refuses one holding quotes, backslashes or
/// control characters ("Executable name contains special characters"), so
/// those are refused here first. The path is executed literally, but the same
/// word becomes argv[0] *after* variable expansion, and `$$` is not undone in
/// the path. So a path with `$` uses the `@` prefix: the literal path to
/// execute, then argv[0] as an ordinary (escaped) word.
fn exec_program(path: &str) -> Result<String, String> {
    if let Some(c) = path
        .chars()
        .find(|&c| c == '"' || c == '\'' || c == '\\' || c.is_ascii_control())
    {
        return Err(format!(
            "program path {path:?} contains {c:?}, which systemd refuses in an executable name"
        ));
    }
    if path.contains('$') {
        Ok(format!(
            "{} {}",
            quoted(&format!("@{path}"), false)?,
            exec_word(path)?
        ))
    } else {
        quoted(path, false)
    }
}

fn env_assignment(name: &str, value: &str) -> Result<String, String> {
    quoted(&format!("{name}={value}"), false)
}

/// Path settings such as WorkingDirectory= take the rest of the line literally
/// (no quotes, no escapes; only specifiers), so what cannot be written that
/// way is refused.
fn path_value(path: &str) -> Result<String, String> {
    if path.chars().any(|c| c.is_control()) {
        return Err(format!(
            "path {path:?} contains a control character (newline, tab, …)"
        ));
    }
    if path.ends_with(char::is_whitespace) || path.ends_with('\\') {
        return Err(format!(
            "path {path:?} ends with whitespace or a backslash, which systemd would drop"
        ));
    }
    Ok(path.replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_every_special() {
        assert_eq!(
            exec_word("a b\"c\\d%e$f\ng\x01").unwrap(),
            r#""a b\"c\\d%%e$$f\ng\x01""#
        );
        assert_eq!(
            env_assignment("X", "$HOME 100%").unwrap(),
            r#""X=$HOME 100%%""#
        );
        assert!(exec_word("a\0b").is_err());
        assert_eq!(
            exec_program("/opt/my apps/100%/x").unwrap(),
            r#""/opt/my apps/100%%/x""#
        );
        assert_eq!(
            exec_program("/opt/${X}/x").unwrap(),
            r#""@/opt/${X}/x" "/opt/$${X}/x""#
        );
        for bad in ["/a\"b", "/a'b", "/a\\b", "/a\tb"] {
            assert!(exec_program(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_literal_or_refused() {
        assert_eq!(path_value("/a b/\"c\"/%h").unwrap(), "/a b/\"c\"/%%h");
        assert!(path_value("/a\nb").is_err());
        assert!(path_value("/a ").is_err());
        assert!(path_value("/a\\").is_err());
    }
}
