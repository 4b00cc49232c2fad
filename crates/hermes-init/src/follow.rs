//! `gateway run` as the container's CMD: the gateway runs in its supervised
//! slot (so s6 restarts it), not as an unsupervised second copy. Its log
//! reaches the container's stdout through the slot's logger; this process
//! stays in front until the container is stopped, which leaves the
//! gateway's desired state `running` for the next boot.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use hermes_core::lifecycle::{self, Action};
use hermes_core::service::ServiceManager;
use hermes_core::{HermesHome, ProfileName};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};

/// How long it waits for the supervised gateway to be ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("unable to {what} the stop signals: {errno}")]
    Signals { what: &'static str, errno: Errno },
}

/// Start `name`'s slot and wait for a stop signal, which is returned. A
/// start that fails is said on `err` and the wait goes on: s6 keeps trying.
pub fn follow(
    manager: &dyn ServiceManager,
    home: &HermesHome,
    program: &Path,
    name: &ProfileName,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Signal, FollowError> {
    let slot = name.service_name();
    // Lines to a closed stdout or stderr are lost; following goes on.
    let _ = writeln!(
        out,
        "gateway run: profile '{name}' runs supervised by s6 as slot {slot}; its log follows \
         (also in {}). Use `gateway run --no-supervise` to run it in this process instead.",
        home.gateway_log_dir(name).join("current").display()
    );
    // Block before starting, so a stop that arrives during the start is not lost.
    let mut stop = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block().map_err(|errno| FollowError::Signals {
        what: "block",
        errno,
    })?;
    let _ = match lifecycle::apply(manager, home, program, name, Action::Start, START_TIMEOUT) {
        Ok(outcome) => match outcome.status.service.pid {
            Some(pid) => writeln!(out, "gateway run: {slot} is up (pid {pid}) and ready"),
            None => writeln!(out, "gateway run: {slot} is up"),
        },
        Err(e) => writeln!(err, "hermes: gateway run: {e}; s6 keeps supervising {slot}"),
    };
    let sig = stop.wait().map_err(|errno| FollowError::Signals {
        what: "wait for",
        errno,
    })?;
    let _ = writeln!(
        out,
        "gateway run: {sig:?} received; {slot} stays wanted up and is stopped with the container"
    );
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::service::{
        GatewaySpec, ManagerKind, ServiceError, ServiceStatus, SlotStatus, Want,
    };
    use hermes_core::state::{self, DesiredState, Loaded};

    /// A manager whose start is the container's stop arriving mid-start:
    /// it raises `stop` on this thread, then answers `start`.
    struct StopDuringStart {
        stop: Signal,
        start: fn(&ProfileName) -> Result<SlotStatus, ServiceError>,
    }

    impl ServiceManager for StopDuringStart {
        fn kind(&self) -> ManagerKind {
            ManagerKind::S6
        }
        fn install(&self, _: &GatewaySpec) -> Result<(), ServiceError> {
            unreachable!("follow never installs")
        }
        fn uninstall(&self, _: &ProfileName) -> Result<(), ServiceError> {
            unreachable!("follow never uninstalls")
        }
        fn start(&self, profile: &ProfileName, _: Duration) -> Result<SlotStatus, ServiceError> {
            // raise(3) signals the calling thread, which has blocked it.
            nix::sys::signal::raise(self.stop).unwrap();
            (self.start)(profile)
        }
        fn stop(&self, _: &ProfileName, _: Duration) -> Result<SlotStatus, ServiceError> {
            unreachable!("follow never stops")
        }
        fn restart(&self, _: &ProfileName, _: Duration) -> Result<SlotStatus, ServiceError> {
            unreachable!("follow never restarts")
        }
        fn status(&self, _: &ProfileName) -> Result<SlotStatus, ServiceError> {
            unreachable!("follow never asks the status")
        }
    }

    fn run(manager: StopDuringStart) -> (HermesHome, Signal, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.keep());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let sig = follow(
            &manager,
            &home,
            Path::new("/usr/bin/hermes"),
            &ProfileName::default_profile(),
            &mut out,
            &mut err,
        )
        .unwrap();
        let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
        (home, sig, text(out), text(err))
    }

    #[test]
    fn a_stop_during_the_start_ends_the_follow_and_the_gateway_stays_wanted_up() {
        let (home, sig, out, err) = run(StopDuringStart {
            stop: Signal::SIGTERM,
            start: |profile| {
                Ok(SlotStatus {
                    profile: profile.clone(),
                    service: ServiceStatus {
                        name: profile.service_name(),
                        supervised: true,
                        up: true,
                        ready: true,
                        want: Want::Up,
                        pid: Some(42),
                        for_secs: Some(0),
                        exit_code: None,
                    },
                    signal: None,
                })
            },
        });
        assert_eq!(sig, Signal::SIGTERM);
        assert!(err.is_empty(), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].contains("runs supervised by s6 as slot gateway-default"),
            "{out}"
        );
        assert_eq!(
            lines[1],
            "gateway run: gateway-default is up (pid 42) and ready"
        );
        assert!(
            lines[2].starts_with("gateway run: SIGTERM received;"),
            "{out}"
        );
        let Loaded::Found(st) =
            state::load(&home.profile(&ProfileName::default_profile()).state()).unwrap()
        else {
            panic!("no state file")
        };
        assert_eq!(st.desired_state, Some(DesiredState::Running));
    }

    #[test]
    fn a_failed_start_is_said_and_the_follow_goes_on() {
        let (_, sig, out, err) = run(StopDuringStart {
            stop: Signal::SIGHUP,
            start: |_| {
                Err(ServiceError::Unsupported {
                    manager: ManagerKind::S6,
                    operation: "start",
                    hint: None,
                })
            },
        });
        assert_eq!(sig, Signal::SIGHUP);
        assert!(err.starts_with("hermes: gateway run: "), "{err}");
        assert!(
            err.trim_end()
                .ends_with("; s6 keeps supervising gateway-default"),
            "{err}"
        );
        assert!(out.contains("SIGHUP received"), "{out}");
    }
}
