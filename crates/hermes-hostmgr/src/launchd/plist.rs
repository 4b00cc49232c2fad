//! The pure renderer of a profile's LaunchAgent property list. Written by
//! hand (not through a plist library) so the output is fixed text that
//! snapshot tests pin down; the tests parse it back with a plist parser.

use std::path::PathBuf;

use hermes_core::name::ProfileName;
use hermes_core::service::{GatewaySpec, ManagerKind, ServiceError};

use crate::spec::{environment, require_absolute};
use crate::xml::escape_text;

/// launchd's minimum seconds between two spawns of a job. KeepAlive has no
/// counterpart of "give up after N fast failures" or of systemd's
/// RestartPreventExitStatus, so a gateway that exits 78 is retried this often;
/// the gateway's own state file still says `startup_failed` and why.
pub const THROTTLE_INTERVAL_SECS: u32 = 10;

/// `hermes.gateway` for `default`, `hermes.gateway.<profile>` otherwise.
pub fn label(profile: &ProfileName) -> String {
    if profile.is_default() {
        "hermes.gateway".to_string()
    } else {
        format!("hermes.gateway.{profile}")
    }
}

pub fn stdout_path(spec: &GatewaySpec) -> PathBuf {
    spec.log_dir.join("launchd.stdout.log")
}

pub fn stderr_path(spec: &GatewaySpec) -> PathBuf {
    spec.log_dir.join("launchd.stderr.log")
}

pub fn render_plist(spec: &GatewaySpec) -> Result<String, ServiceError> {
    let refuse = |reason: String| ServiceError::Unrepresentable {
        manager: ManagerKind::Launchd,
        profile: spec.profile.clone(),
        reason,
    };
    let string = |value: &str| -> Result<String, ServiceError> {
        Ok(format!(
            "<string>{}</string>",
            escape_text(value).map_err(refuse)?
        ))
    };
    let mut args = vec![string(
        require_absolute(&spec.program, "program").map_err(refuse)?,
    )?];
    for arg in spec.args() {
        args.push(string(&arg)?);
    }
    let mut env = String::new();
    for (name, value) in environment(spec).map_err(refuse)? {
        env.push_str(&format!("\t\t<key>{name}</key>\n\t\t{}\n", string(&value)?));
    }
    let workdir = string(require_absolute(&spec.workdir, "working directory").map_err(refuse)?)?;
    let path_string = |path: PathBuf, what: &str| -> Result<String, ServiceError> {
        string(require_absolute(&path, what).map_err(refuse)?)
    };
    let stdout = path_string(stdout_path(spec), "log directory")?;
    let stderr = path_string(stderr_path(spec), "log directory")?;
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- A hermes gateway, written by `hermes gateway install`. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{label}</string>
	<key>ProgramArguments</key>
	<array>
		{args}
	</array>
	<key>WorkingDirectory</key>
	{workdir}
	<key>EnvironmentVariables</key>
	<dict>
{env}	</dict>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>{throttle}</integer>
	<key>StandardOutPath</key>
	{stdout}
	<key>StandardErrorPath</key>
	{stderr}
</dict>
</plist>
"#,
        label = label(&spec.profile),
        args = args.join("\n\t\t"),
        throttle = THROTTLE_INTERVAL_SECS,
    ))
}
