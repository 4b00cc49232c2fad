//! The pure renderers of a profile's Scheduled Task: the task XML that
//! `schtasks /Create /XML` reads, and the `.cmd` launcher it runs. Task
//! Scheduler cannot set environment variables for an action, so the launcher
//! sets them and runs the gateway with its output appended to the log dir.

use std::path::{Path, PathBuf};

use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError};

use crate::spec::{environment, utf8};
use crate::systemd::START_LIMIT_BURST;
use crate::xml::escape_text;

/// Task Scheduler's smallest restart interval (its schema refuses less than a minute).
pub const RESTART_INTERVAL: &str = "PT1M";

/// `hermes-gateway` for `default`, `hermes-gateway-<profile>` otherwise.
pub fn task_name(profile: &ProfileName) -> String {
    if profile.is_default() {
        "hermes-gateway".to_string()
    } else {
        format!("hermes-gateway-{profile}")
    }
}

pub fn log_file(spec: &GatewaySpec) -> PathBuf {
    spec.log_dir.join("task.log")
}

/// Absolute by Windows rules (`C:\…`, `C:/…`, `\\server\…`), or `/`-rooted
/// when a Unix host renders the task for `--dry-run`.
fn require_absolute<'a>(path: &'a Path, what: &str) -> Result<&'a str, String> {
    let text = utf8(path, what)?;
    let b = text.as_bytes();
    let drive =
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    if drive || text.starts_with(r"\\") || text.starts_with('/') {
        Ok(text)
    } else {
        Err(format!("{what} {text:?} is not an absolute path"))
    }
}

fn refuse(spec: &GatewaySpec) -> impl Fn(String) -> ServiceError + '_ {
    |reason| ServiceError::Unrepresentable {
        manager: ManagerKind::Windows,
        profile: spec.profile.clone(),
        reason,
    }
}

/// The task definition. `user` (`DOMAIN\name`) limits the log-on trigger to
/// that user; without it the task starts at any user's log-on.
pub fn render_task_xml(
    spec: &GatewaySpec,
    launcher: &Path,
    user: Option<&str>,
) -> Result<String, ServiceError> {
    let refuse = refuse(spec);
    let launcher = utf8(launcher, "launcher path").map_err(&refuse)?;
    // Task Scheduler expands %VAR% in the command and offers no escape for '%'.
    if launcher.contains('%') {
        return Err(refuse(format!(
            "launcher path {launcher:?} contains '%', which Task Scheduler would expand"
        )));
    }
    let user_id = match user {
        Some(u) => format!(
            "\n      <UserId>{}</UserId>",
            escape_text(u).map_err(&refuse)?
        ),
        None => String::new(),
    };
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>hermes gateway (profile {profile}), written by `hermes gateway install`</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>{user_id}
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>{RESTART_INTERVAL}</Interval>
      <Count>{START_LIMIT_BURST}</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
    </Exec>
  </Actions>
</Task>
"#,
        profile = spec.profile,
        command = escape_text(launcher).map_err(&refuse)?,
    ))
}

/// The launcher script. cmd.exe has no way to write a double quote or a line
/// break inside a quoted word, so values holding them are refused; '%' is
/// doubled, and everything else is literal inside double quotes.
pub fn render_launcher(spec: &GatewaySpec) -> Result<String, ServiceError> {
    let refuse = refuse(spec);
    let mut sets = String::new();
    for (name, value) in environment(spec).map_err(&refuse)? {
        sets.push_str(&format!(
            "set \"{name}={}\"\r\n",
            cmd_text(&value).map_err(&refuse)?
        ));
    }
    let mut command = vec![
        cmd_word(require_absolute(&spec.program, "program").map_err(&refuse)?).map_err(&refuse)?,
    ];
    for arg in spec.args() {
        command.push(cmd_word(&arg).map_err(&refuse)?);
    }
    let workdir = cmd_word(require_absolute(&spec.workdir, "working directory").map_err(&refuse)?)
        .map_err(&refuse)?;
    let log_dir =
        cmd_word(utf8(&spec.log_dir, "log directory").map_err(&refuse)?).map_err(&refuse)?;
    let log = cmd_word(utf8(&log_file(spec), "log file").map_err(&refuse)?).map_err(&refuse)?;
    // CRLF line ends: cmd.exe misparses labels and some lines with bare LF.
    Ok([
        "@echo off".to_string(),
        "rem hermes gateway launcher, written by `hermes gateway install`.".to_string(),
        "setlocal DisableDelayedExpansion".to_string(),
        // Read the rest of this file as UTF-8.
        "chcp 65001 >nul".to_string(),
        sets.trim_end().to_string(),
        format!("if not exist {log_dir} mkdir {log_dir}"),
        format!("cd /d {workdir}"),
        format!("{} >> {log} 2>&1", command.join(" ")),
        "exit /b %ERRORLEVEL%".to_string(),
    ]
    .join("\r\n")
        + "\r\n")
}

fn cmd_text(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|&c| c == '"' || c.is_control()) {
        return Err(format!(
            "{value:?} contains {c:?}, which a cmd.exe launcher cannot quote"
        ));
    }
    Ok(value.replace('%', "%%"))
}

/// A double-quoted word for cmd.exe that the program's argument parser
/// (CommandLineToArgvW rules) reads back unchanged: trailing backslashes are
/// doubled so they do not escape the closing quote.
fn cmd_word(value: &str) -> Result<String, String> {
    let text = cmd_text(value)?;
    let trailing = text.len() - text.trim_end_matches('\\').len();
    Ok(format!("\"{text}{}\"", "\\".repeat(trailing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_by_windows_rules() {
        for ok in [r"C:\x", "c:/x", r"\\srv\share\x", "/home/x"] {
            assert!(require_absolute(Path::new(ok), "p").is_ok(), "{ok}");
        }
        for bad in ["x", r"C:x", r"\x", "hermes.exe"] {
            assert!(require_absolute(Path::new(bad), "p").is_err(), "{bad}");
        }
    }

    #[test]
    fn cmd_words() {
        assert_eq!(cmd_word(r"C:\a b\x.exe").unwrap(), r#""C:\a b\x.exe""#);
        assert_eq!(cmd_word(r"C:\dir\").unwrap(), r#""C:\dir\\""#);
        assert_eq!(cmd_word("100%&^|<>!").unwrap(), r#""100%%&^|<>!""#);
        assert!(cmd_word("a\"b").is_err());
        assert!(cmd_word("a\nb").is_err());
    }
}
