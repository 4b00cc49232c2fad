//! Lifecycle of registered slots: start, stop and restart through
//! `s6-svc`, and the judgement of how a start or restart went
//! ([`classify`]), from what s6 says of the slot and what the finish hook
//! recorded.

use std::fs;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hermes_core::fsutil::{self, FsError};
use hermes_core::service::{ServiceError, SlotStatus, Want};
use hermes_core::state::{self, DesiredState, GatewayState, LastExit, RunState};
use hermes_core::ProfileName;

use crate::{S6Manager, POLL};

/// What a start or restart compares against to tell a new failure from an old one.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    pub at_ms: u64,
    pub restarts: u32,
    /// The process that must be replaced (restart), if any.
    pub pid: Option<u32>,
}

impl Baseline {
    pub fn now(recorded: &GatewayState, pid: Option<u32>) -> Self {
        Baseline {
            at_ms: state::now_ms(),
            restarts: recorded.restarts,
            pid,
        }
    }
}

/// How a start or restart stands after one look at the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Up and ready, with a process other than the one replaced.
    Ready,
    /// Nothing settled yet: look again.
    Pending,
    NoSupervisor,
    /// A later stop recorded `desired_state = stopped`.
    Overtaken,
    /// The gateway died before becoming ready; why.
    Failed(String),
    TimedOut,
}

/// Up and ready with a process other than the one a restart replaces.
pub(crate) fn is_ready(status: &SlotStatus, before: &Baseline) -> bool {
    status.ready && status.pid.is_some() && status.pid != before.pid
}

/// Judge one look at a starting slot. `seen_want_up`: the supervisor has
/// shown "want up" since the command (s6-svc only queues it: until then a
/// "want down" is the old state, not a verdict). `expired`: the deadline
/// has passed.
pub(crate) fn classify(
    status: &SlotStatus,
    recorded: &GatewayState,
    before: &Baseline,
    seen_want_up: bool,
    expired: bool,
) -> Verdict {
    if !status.supervised {
        return Verdict::NoSupervisor;
    }
    if is_ready(status, before) {
        return Verdict::Ready;
    }
    // Every caller recorded "running" before asking s6; "stopped" now
    // means a later stop won, and waiting would only run out the timeout.
    if recorded.desired_state == Some(DesiredState::Stopped) {
        return Verdict::Overtaken;
    }
    // The finish hook records every death; a requested SIGTERM (restart)
    // is not a failure, and the next gateway may already have cleared the reason.
    let last_exit = recorded.last_exit.as_ref().filter(|e| e.at > before.at_ms);
    let failed = recorded.restarts > before.restarts
        || recorded.gateway_state == Some(RunState::StartupFailed)
        || (recorded.gateway_state == Some(RunState::Stopped) && !recorded.stopped_on_request());
    let died_since = last_exit.is_some() && failed;
    // A death recorded since the command also proves s6 acted on it.
    let parked = (seen_want_up || last_exit.is_some()) && !status.up && status.want == Want::Down;
    if died_since || parked {
        let retrying = recorded.gateway_state == Some(RunState::Starting) && !parked;
        if !retrying && !parked && !expired {
            // The finish hook has recorded a permanent failure; report it
            // once s6 has acted on it, so the status we print is settled.
            return Verdict::Pending;
        }
        let reason = recorded
            .exit_reason
            .clone()
            .unwrap_or_else(|| match last_exit {
                Some(LastExit {
                    code: Some(code), ..
                }) => format!("it exited with code {code} before becoming ready"),
                Some(LastExit {
                    signal: Some(sig), ..
                }) => format!("it was killed by signal {sig} before becoming ready"),
                _ => "it exited before becoming ready".to_string(),
            });
        return Verdict::Failed(if retrying {
            format!("{reason} (the supervisor retries with back-off)")
        } else {
            reason
        });
    }
    if expired {
        Verdict::TimedOut
    } else {
        Verdict::Pending
    }
}

impl Verdict {
    /// The answer to the caller, or `None` while pending.
    fn settle(
        self,
        m: &S6Manager,
        profile: &ProfileName,
        status: SlotStatus,
        action: &'static str,
        timeout: Duration,
    ) -> Option<Result<SlotStatus, ServiceError>> {
        Some(match self {
            Verdict::Pending => return None,
            Verdict::Ready => Ok(status),
            Verdict::NoSupervisor => Err(ServiceError::NoSupervisor {
                scandir: m.cfg.scandir.clone(),
            }),
            Verdict::Overtaken => Err(ServiceError::Overtaken {
                action,
                profile: profile.clone(),
            }),
            Verdict::Failed(reason) => Err(ServiceError::StartFailed {
                profile: profile.clone(),
                reason,
            }),
            Verdict::TimedOut => Err(ServiceError::Timeout {
                action,
                profile: profile.clone(),
                waited: timeout,
            }),
        })
    }
}

impl S6Manager {
    pub(crate) fn set_down_marker(&self, link: &Path, down: bool) -> Result<(), ServiceError> {
        let marker = link.join("down");
        if down {
            fsutil::atomic_write(&marker, b"", 0o644)?;
        } else if let Err(e) = fs::remove_file(&marker) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(FsError::new("remove", &marker, e).into());
            }
        }
        Ok(())
    }

    pub(crate) fn start_slot(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        let current = self.status_of(profile, &link)?;
        if current.up && current.ready {
            return Ok(current);
        }
        let before = Baseline::now(&self.recorded(profile)?, None);
        self.set_down_marker(&link, false)?;
        self.svc("-u", &link)?;
        self.wait_ready(profile, &link, &before, "start", timeout)
    }

    pub(crate) fn stop_slot(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        self.set_down_marker(&link, true)?;
        self.svc("-d", &link)?;
        self.wait_down(profile, &link, timeout)
    }

    pub(crate) fn restart_slot(
        &self,
        profile: &ProfileName,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let link = self.require_slot(profile)?;
        let current = self.status_of(profile, &link)?;
        let before = Baseline::now(&self.recorded(profile)?, current.pid.filter(|_| current.up));
        self.set_down_marker(&link, false)?;
        self.svc("-u", &link)?;
        if current.up {
            self.svc("-t", &link)?;
        }
        self.wait_ready(profile, &link, &before, "restart", timeout)
    }

    /// Wait until the gateway is up and ready with a pid other than
    /// `before.pid`, or has failed since `before.at_ms`.
    fn wait_ready(
        &self,
        profile: &ProfileName,
        link: &Path,
        before: &Baseline,
        action: &'static str,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let deadline = Instant::now() + timeout;
        let mut seen_want_up = false;
        loop {
            let expired = Instant::now() >= deadline;
            let status = self.status_of(profile, link)?;
            seen_want_up |= status.want == Want::Up;
            let recorded = if is_ready(&status, before) {
                GatewayState::default()
            } else {
                self.recorded(profile)?
            };
            let verdict = classify(&status, &recorded, before, seen_want_up, expired);
            if let Some(done) = verdict.settle(self, profile, status, action, timeout) {
                return done;
            }
            thread::sleep(POLL);
        }
    }

    pub(crate) fn wait_down(
        &self,
        profile: &ProfileName,
        link: &Path,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status_of(profile, link)?;
            if !status.up {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Timeout {
                    action: "stop",
                    profile: profile.clone(),
                    waited: timeout,
                });
            }
            thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 1_000_000;

    fn before(pid: Option<u32>) -> Baseline {
        Baseline {
            at_ms: AT,
            restarts: 2,
            pid,
        }
    }

    /// A slot as s6 shows it: `up`, `ready`, `want` up or down, `pid`.
    fn slot(
        supervised: bool,
        up: bool,
        ready: bool,
        want_up: bool,
        pid: Option<u32>,
    ) -> SlotStatus {
        SlotStatus {
            profile: ProfileName::parse("t").unwrap(),
            service: "gateway-t".into(),
            supervised,
            up,
            ready,
            want: if want_up { Want::Up } else { Want::Down },
            pid,
            for_secs: Some(0),
            exit_code: None,
            signal: None,
        }
    }

    fn died(code: Option<i32>, signal: Option<i32>, at: u64) -> Option<LastExit> {
        Some(LastExit { code, signal, at })
    }

    #[test]
    fn classify_table() {
        let fresh = GatewayState {
            restarts: 2,
            ..GatewayState::default()
        };
        let stopped_wish = GatewayState {
            desired_state: Some(DesiredState::Stopped),
            ..fresh.clone()
        };
        let retrying = GatewayState {
            gateway_state: Some(RunState::Starting),
            restarts: 3,
            last_exit: died(Some(1), None, AT + 5),
            ..fresh.clone()
        };
        let parked_78 = GatewayState {
            gateway_state: Some(RunState::StartupFailed),
            exit_reason: Some("config.yaml: bad port".into()),
            last_exit: died(Some(78), None, AT + 5),
            ..fresh.clone()
        };
        let old_death = GatewayState {
            gateway_state: Some(RunState::StartupFailed),
            last_exit: died(Some(1), None, AT - 5),
            ..fresh.clone()
        };
        let sigterm = GatewayState {
            gateway_state: Some(RunState::Stopped),
            exit_reason: Some("sigterm".into()),
            last_exit: died(None, Some(15), AT + 5),
            ..fresh.clone()
        };
        let segv = GatewayState {
            gateway_state: Some(RunState::StartupFailed),
            last_exit: died(None, Some(11), AT + 5),
            ..fresh.clone()
        };
        let failed = |r: &str| Verdict::Failed(r.to_string());
        // (what, status, recorded, replaced pid, seen want up, expired, verdict)
        #[rustfmt::skip]
        let table: Vec<(&str, SlotStatus, &GatewayState, Option<u32>, bool, bool, Verdict)> = vec![
            ("unsupervised", slot(false, false, false, false, None), &fresh, None, false, false, Verdict::NoSupervisor),
            ("ready", slot(true, true, true, true, Some(7)), &fresh, None, true, false, Verdict::Ready),
            ("ready wins over an expired deadline", slot(true, true, true, true, Some(7)), &fresh, None, true, true, Verdict::Ready),
            ("restart: the old pid is not ready", slot(true, true, true, true, Some(7)), &fresh, Some(7), true, false, Verdict::Pending),
            ("restart: a new pid is", slot(true, true, true, true, Some(8)), &fresh, Some(7), true, false, Verdict::Ready),
            ("up, not ready yet", slot(true, true, false, true, Some(7)), &fresh, None, true, false, Verdict::Pending),
            ("a later stop wins", slot(true, true, false, true, Some(7)), &stopped_wish, None, true, false, Verdict::Overtaken),
            ("down before s6 read the command", slot(true, false, false, false, None), &fresh, None, false, false, Verdict::Pending),
            ("a death from before the command", slot(true, false, false, false, None), &old_death, None, false, false, Verdict::Pending),
            ("parked by s6 with a reason", slot(true, false, false, false, None), &parked_78, None, true, false, failed("config.yaml: bad port")),
            ("permanent failure, s6 not settled yet", slot(true, false, false, true, None), &parked_78, None, true, false, Verdict::Pending),
            ("permanent failure at the deadline", slot(true, false, false, true, None), &parked_78, None, true, true, failed("config.yaml: bad port")),
            ("crash loop in back-off", slot(true, false, false, true, None), &retrying, None, true, false, failed("it exited with code 1 before becoming ready (the supervisor retries with back-off)")),
            ("a requested SIGTERM is no failure", slot(true, false, false, true, None), &sigterm, Some(7), true, false, Verdict::Pending),
            ("killed by a signal, parked", slot(true, false, false, false, None), &segv, None, true, false, failed("it was killed by signal 11 before becoming ready")),
            ("nothing happened in time", slot(true, false, false, true, None), &fresh, None, true, true, Verdict::TimedOut),
        ];
        for (what, status, recorded, pid, seen_up, expired, want) in table {
            let got = classify(&status, recorded, &before(pid), seen_up, expired);
            assert_eq!(got, want, "{what}");
        }
    }
}
