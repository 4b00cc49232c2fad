//! `detect_service_manager`: which backend manages gateways here, decided
//! from facts an unprivileged user can read, never by searching PATH (a
//! `systemctl` binary in a container says nothing about a running systemd).
//! The facts sit behind `Facts` so tests can feed any host.

use std::path::Path;

pub use hermes_core::fifo::{probe_fifo, FifoProbe};
use hermes_core::service::ManagerKind;

use crate::runner::{argv, CommandRunner, SystemRunner};

pub const OVERRIDE_VAR: &str = "HERMES_SERVICE_MANAGER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: ManagerKind,
    /// The fact that decided, for `hermes status` and `doctor`.
    pub reason: String,
}

pub trait Facts {
    fn var(&self, name: &str) -> Option<String>;
    fn exists(&self, path: &Path) -> bool;
    fn probe_fifo(&self, path: &Path) -> FifoProbe;
    /// `std::env::consts::OS` on a real host.
    fn os(&self) -> &str;
    /// The effective uid is 0: root manages system units, and usually has no user manager.
    fn is_root(&self) -> bool;
    /// Runs the one probe command detection needs (`systemctl is-system-running`).
    fn runner(&self) -> &dyn CommandRunner;
}

/// The real host.
pub struct HostFacts<R = SystemRunner> {
    runner: R,
}

impl<R: CommandRunner> HostFacts<R> {
    pub fn new(runner: R) -> Self {
        HostFacts { runner }
    }
}

impl<R: CommandRunner> Facts for HostFacts<R> {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn probe_fifo(&self, path: &Path) -> FifoProbe {
        probe_fifo(path)
    }

    fn os(&self) -> &str {
        std::env::consts::OS
    }

    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn runner(&self) -> &dyn CommandRunner {
        &self.runner
    }
}

/// States `systemctl is-system-running` prints when a manager answered on the bus.
const ANSWERED: &[&str] = &[
    "initializing",
    "starting",
    "running",
    "degraded",
    "maintenance",
    "stopping",
];

/// Decide the manager. `scandir` is the user scandir a `hermes supervise` tree
/// would own; `system` asks about the system bus instead of the user bus.
pub fn detect_service_manager(facts: &dyn Facts, scandir: &Path, system: bool) -> Detection {
    let found = |kind, reason: String| Detection { kind, reason };
    let mut ignored = String::new();
    if let Some(raw) = facts.var(OVERRIDE_VAR).filter(|v| !v.trim().is_empty()) {
        match ManagerKind::parse(&raw) {
            Some(kind) => return found(kind, format!("{OVERRIDE_VAR}={raw}")),
            None => {
                ignored = format!(
                "; {OVERRIDE_VAR}={raw:?} ignored: not one of s6, systemd, launchd, windows, none"
            )
            }
        }
    }
    let control = hermes_s6::Scandir::new(scandir).control();
    match facts.probe_fifo(&control) {
        FifoProbe::Reader => {
            return found(
                ManagerKind::S6,
                format!("a supervisor is reading {}{ignored}", control.display()),
            )
        }
        FifoProbe::Denied => {
            return found(
                ManagerKind::S6,
                format!(
                    "{} exists but belongs to another user's supervisor{ignored}",
                    control.display()
                ),
            )
        }
        FifoProbe::Missing | FifoProbe::NotFifo | FifoProbe::NoReader | FifoProbe::Error(_) => {}
    }
    match facts.os() {
        "windows" => return found(ManagerKind::Windows, format!("the OS is Windows{ignored}")),
        "macos" => return found(ManagerKind::Launchd, format!("the OS is macOS{ignored}")),
        _ => {}
    }
    if !facts.exists(Path::new("/run/systemd/system")) {
        return found(
            ManagerKind::None,
            format!("no s6 supervisor on {}, and /run/systemd/system does not exist (systemd is not PID 1){ignored}", scandir.display()),
        );
    }
    let first = probe_bus(facts, system);
    let answer = match first {
        Ok(reason) => return found(ManagerKind::Systemd, format!("{reason}{ignored}")),
        // Root rarely has a user manager but is the one who manages system units.
        Err(why) if !system && facts.is_root() => match probe_bus(facts, true) {
            Ok(reason) => {
                let reason =
                    format!("{reason}; running as root, whose user manager does not answer: {why}");
                return found(ManagerKind::Systemd, format!("{reason}{ignored}"));
            }
            Err(system_why) => format!("{why}; {system_why}"),
        },
        Err(why) => why,
    };
    found(
        ManagerKind::None,
        format!("systemd is PID 1 but no manager answers: {answer}{ignored}"),
    )
}

/// `Ok(reason)` when the user (or system) manager answers on its bus.
fn probe_bus(facts: &dyn Facts, system: bool) -> Result<String, String> {
    let bus = if system { "system" } else { "user" };
    let mut probe = vec!["systemctl"];
    if !system {
        probe.push("--user");
    }
    probe.push("is-system-running");
    let probe = argv(&probe);
    let command = probe.join(" ");
    match facts.runner().run(&probe) {
        Ok(out) => {
            let state = out.stdout.trim().to_string();
            if ANSWERED.contains(&state.as_str()) {
                Ok(format!(
                    "systemd is running and the {bus} manager answers (`{command}`: {state})"
                ))
            } else {
                Err(format!(
                    "`{command}` answered {state:?} (exit {}): {}",
                    out.code.map_or("killed".to_string(), |c| c.to_string()),
                    out.stderr.trim()
                ))
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Output, RecordingRunner};

    struct Fake {
        vars: Vec<(&'static str, &'static str)>,
        systemd_dir: bool,
        fifo: FifoProbe,
        os: &'static str,
        root: bool,
        runner: RecordingRunner,
    }

    impl Default for Fake {
        fn default() -> Self {
            Fake {
                vars: vec![],
                systemd_dir: false,
                fifo: FifoProbe::Missing,
                os: "linux",
                root: false,
                runner: RecordingRunner::new(),
            }
        }
    }

    impl Facts for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn exists(&self, path: &Path) -> bool {
            self.systemd_dir && path == Path::new("/run/systemd/system")
        }
        fn probe_fifo(&self, path: &Path) -> FifoProbe {
            assert_eq!(
                path,
                Path::new("/run/user/1000/hermes/service/.s6-svscan/control")
            );
            self.fifo.clone()
        }
        fn os(&self) -> &str {
            self.os
        }
        fn is_root(&self) -> bool {
            self.root
        }
        fn runner(&self) -> &dyn CommandRunner {
            &self.runner
        }
    }

    fn detect(facts: &Fake, system: bool) -> Detection {
        detect_service_manager(facts, Path::new("/run/user/1000/hermes/service"), system)
    }

    #[test]
    fn override_wins_and_bad_override_is_reported() {
        let f = Fake {
            vars: vec![(OVERRIDE_VAR, "Launchd")],
            ..Fake::default()
        };
        assert_eq!(
            detect(&f, false),
            Detection {
                kind: ManagerKind::Launchd,
                reason: "HERMES_SERVICE_MANAGER=Launchd".into()
            }
        );
        let f = Fake {
            vars: vec![(OVERRIDE_VAR, "upstart")],
            fifo: FifoProbe::Reader,
            ..Fake::default()
        };
        let d = detect(&f, false);
        assert_eq!(d.kind, ManagerKind::S6);
        assert!(d.reason.contains("\"upstart\" ignored"), "{}", d.reason);
    }

    #[test]
    fn s6_by_a_reader_on_the_scandir_not_by_pid1() {
        for fifo in [FifoProbe::Reader, FifoProbe::Denied] {
            let f = Fake {
                fifo,
                os: "macos",
                ..Fake::default()
            };
            assert_eq!(detect(&f, false).kind, ManagerKind::S6);
        }
        // A FIFO left behind by a dead supervisor is not a supervisor.
        let f = Fake {
            fifo: FifoProbe::NoReader,
            ..Fake::default()
        };
        assert_eq!(detect(&f, false).kind, ManagerKind::None);
    }

    #[test]
    fn os_decides_windows_and_macos() {
        for (os, kind) in [
            ("windows", ManagerKind::Windows),
            ("macos", ManagerKind::Launchd),
        ] {
            let f = Fake {
                os,
                ..Fake::default()
            };
            assert_eq!(detect(&f, false).kind, kind);
            assert!(f.runner.calls().is_empty());
        }
    }

    #[test]
    fn systemd_needs_the_directory_and_an_answering_bus() {
        let f = Fake::default();
        let d = detect(&f, false);
        assert_eq!(d.kind, ManagerKind::None);
        assert!(
            d.reason.contains("/run/systemd/system does not exist"),
            "{}",
            d.reason
        );
        assert!(
            f.runner.calls().is_empty(),
            "no probe without the directory"
        );

        let f = Fake {
            systemd_dir: true,
            ..Fake::default()
        };
        f.runner.answer(
            &["systemctl", "--user", "is-system-running"],
            Output::exit(1, "degraded\n", ""),
        );
        let d = detect(&f, false);
        assert_eq!(d.kind, ManagerKind::Systemd, "{}", d.reason);
        assert!(d.reason.contains("user manager answers"));

        let f = Fake {
            systemd_dir: true,
            ..Fake::default()
        };
        f.runner.answer(
            &["systemctl", "is-system-running"],
            Output::exit(
                1,
                "offline\n",
                "Failed to connect to bus: No such file or directory",
            ),
        );
        let d = detect(&f, true);
        assert_eq!(d.kind, ManagerKind::None);
        assert_eq!(
            d.reason,
            "systemd is PID 1 but no manager answers: `systemctl is-system-running` answered \"offline\" (exit 1): Failed to connect to bus: No such file or directory"
        );
        assert_eq!(f.runner.call_lines(), ["systemctl is-system-running"]);
    }

    #[test]
    fn root_without_a_user_manager_gets_the_system_one() {
        let f = Fake {
            systemd_dir: true,
            root: true,
            ..Fake::default()
        };
        f.runner.answer(
            &["systemctl", "--user", "is-system-running"],
            Output::exit(1, "offline\n", "Failed to connect to bus: No medium found"),
        );
        f.runner
            .answer(&["systemctl", "is-system-running"], Output::ok("running\n"));
        let d = detect(&f, false);
        assert_eq!(d.kind, ManagerKind::Systemd, "{}", d.reason);
        assert!(d.reason.contains("running as root"), "{}", d.reason);
        // Not root: the user bus alone decides.
        let f = Fake {
            systemd_dir: true,
            ..Fake::default()
        };
        f.runner.answer(
            &["systemctl", "--user", "is-system-running"],
            Output::exit(1, "offline\n", ""),
        );
        assert_eq!(detect(&f, false).kind, ManagerKind::None);
        assert_eq!(
            f.runner.call_lines(),
            ["systemctl --user is-system-running"]
        );
    }
}
