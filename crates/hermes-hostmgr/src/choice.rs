//! Which service manager `gateway install|uninstall` uses: `--manager` if
//! given, else detection (on the system bus with `--system`), with the flag
//! combinations checked before anything is read or written.

use hermes_core::service::ManagerKind;

use crate::detect::Detection;
use crate::host::HostEnv;
use crate::systemd::SystemdConfig;

/// The command's flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    /// `--manager`.
    pub manager: Option<&'a str>,
    /// `--system`: a systemd system unit.
    pub system: bool,
    /// `--run-as-user`: who the system unit's gateway runs as.
    pub run_as_user: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("--system needs --run-as-user USER: the gateway never runs as root")]
    SystemNeedsUser,
    #[error("--run-as-user only applies to --system units")]
    UserNeedsSystem,
    #[error("unknown service manager {0:?}")]
    Unknown(String),
    #[error("--system is for systemd; the service manager here is {kind} ({reason})")]
    SystemNotSystemd { kind: ManagerKind, reason: String },
}

/// The manager and why. `installing`: a system unit must name its user
/// (uninstall finds the unit by name). `detect` is asked only without
/// `--manager`, with whether the system bus is meant.
pub fn choose(
    flags: Flags,
    installing: bool,
    detect: impl FnOnce(bool) -> Detection,
) -> Result<Detection, ChoiceError> {
    if installing && flags.system && flags.run_as_user.is_none() {
        return Err(ChoiceError::SystemNeedsUser);
    }
    if flags.run_as_user.is_some() && !flags.system {
        return Err(ChoiceError::UserNeedsSystem);
    }
    let chosen = match flags.manager {
        Some(name) => Detection {
            kind: ManagerKind::parse(name).ok_or_else(|| ChoiceError::Unknown(name.into()))?,
            reason: "--manager".into(),
        },
        None => detect(flags.system),
    };
    if flags.system && chosen.kind != ManagerKind::Systemd {
        return Err(ChoiceError::SystemNotSystemd {
            kind: chosen.kind,
            reason: chosen.reason,
        });
    }
    Ok(chosen)
}

/// The systemd scope the flags name.
pub fn systemd_config(flags: Flags, env: &HostEnv) -> SystemdConfig {
    if flags.system {
        SystemdConfig::system(flags.run_as_user.unwrap_or_default().to_string())
    } else {
        SystemdConfig::user(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(kind: ManagerKind) -> impl FnOnce(bool) -> Detection {
        move |_| Detection {
            kind,
            reason: "detected".into(),
        }
    }

    fn never(_: bool) -> Detection {
        panic!("detection asked although the flags decide")
    }

    #[test]
    fn manager_flag_wins_and_detection_is_asked_on_the_bus_meant() {
        let flags = Flags {
            manager: Some("launchd"),
            ..Flags::default()
        };
        let chosen = choose(flags, true, never).unwrap();
        assert_eq!(
            (chosen.kind, chosen.reason.as_str()),
            (ManagerKind::Launchd, "--manager")
        );

        let system = Flags {
            system: true,
            run_as_user: Some("ann"),
            ..Flags::default()
        };
        let chosen = choose(system, true, |on_system_bus| {
            assert!(on_system_bus);
            Detection {
                kind: ManagerKind::Systemd,
                reason: "systemd is PID 1".into(),
            }
        })
        .unwrap();
        assert_eq!(chosen.kind, ManagerKind::Systemd);
    }

    #[test]
    fn flag_combinations_are_refused_before_detection() {
        let system = Flags {
            system: true,
            ..Flags::default()
        };
        assert_eq!(
            choose(system, true, never).unwrap_err(),
            ChoiceError::SystemNeedsUser
        );
        // Uninstall finds the system unit by name.
        assert!(choose(system, false, detected(ManagerKind::Systemd)).is_ok());
        let user_only = Flags {
            run_as_user: Some("ann"),
            ..Flags::default()
        };
        assert_eq!(
            choose(user_only, false, never).unwrap_err(),
            ChoiceError::UserNeedsSystem
        );
        let unknown = Flags {
            manager: Some("upstart"),
            ..Flags::default()
        };
        assert_eq!(
            choose(unknown, true, never).unwrap_err().to_string(),
            "unknown service manager \"upstart\""
        );
    }

    #[test]
    fn system_is_for_systemd_only() {
        let flags = Flags {
            system: true,
            run_as_user: Some("ann"),
            ..Flags::default()
        };
        let err = choose(flags, true, detected(ManagerKind::S6)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--system is for systemd; the service manager here is s6 (detected)"
        );
    }
}
