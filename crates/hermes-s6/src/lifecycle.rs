//! Lifecycle of registered slots: start, stop and restart of one slot or
//! many (every slot is asked first, by writing `s6-svc`'s command bytes to
//! its control FIFO, then all are awaited together), and the judgement of how a start or restart went
//! ([`classify`]), from what s6 says of the slot and what the finish hook
//! recorded.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use hermes_core::fsutil;
use hermes_core::lifecycle::Action;
use hermes_core::service::{ServiceError, SlotStatus, Want};
use hermes_core::state::{self, DesiredState, GatewayState, LastExit, RunState};
use hermes_core::ProfileName;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::finish_aside::{self, Aside};
use crate::svstat::{self, StatusFile, Svstat};
use crate::{finish, S6Manager, FAST_POLL, POLL};

/// A slot s6 was asked to act on, while its answer is awaited.
struct Asked {
    slot: PathBuf,
    /// What a start or restart is judged against; `None` for a stop.
    before: Option<Baseline>,
    /// A stop's slot whose `finish` it moved aside (`finish_aside`).
    aside: Option<Aside>,
    seen_want_up: bool,
    /// The state file as last read, with the slot's status then.
    recorded: Option<Recorded>,
    /// A gateway outside the slot a stop sent SIGTERM ([`S6Manager::stop_stray`]).
    stray: Option<i32>,
}

/// How often a starting slot's state file is read again while s6 shows no
/// change: what the finish hook records during a back-off, or a wish
/// recorded by a path that did not tell s6, is seen within this.
const RECHECK: Duration = Duration::from_millis(50);

/// The state file of a starting slot, read once per change of its status
/// rather than on every look: a start of many slots looks at every one
/// every few milliseconds, and parsing each state file each time cost
/// more CPU than the gateways' own start-up had left.
struct Recorded {
    state: GatewayState,
    /// What s6 showed when it was read (everything but the time in state).
    seen: SlotStatus,
    at: Instant,
}

/// A status as compared between looks: the time in state always moves.
fn status_key(s: &SlotStatus) -> SlotStatus {
    let mut key = s.clone();
    key.service.for_secs = None;
    key
}

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
    status.service.ready && status.service.pid.is_some() && status.service.pid != before.pid
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
    if !status.service.supervised {
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
    let parked = (seen_want_up || last_exit.is_some())
        && !status.service.up
        && status.service.want == Want::Down;
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
    pub(crate) fn set_down_marker(&self, slot: &Path, down: bool) -> Result<(), ServiceError> {
        let marker = slot.join("down");
        if down {
            // s6-supervise only checks that it exists, within this boot; a
            // boot reconciles from the durable desired_state. So no fsync:
            // two per slot would dominate `stop --all` on a disk. One that
            // exists is left as it is: it may be a link to the scandir's
            // shared copy (`slot::SharedFiles`), never to be written through.
            if fsutil::symlink_metadata(&marker).is_err() {
                fsutil::write(&marker, b"")?;
            }
        } else if let Err(e) = fsutil::remove_file(&marker) {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Ask s6 to act on one slot; `Ok(Err(status))` when there is nothing
    /// to wait for (a start of a gateway already up and ready).
    fn ask(
        &self,
        profile: &ProfileName,
        action: Action,
        supervisor_checked: bool,
    ) -> Result<Result<Asked, SlotStatus>, ServiceError> {
        if !supervisor_checked {
            self.check_supervisor()?;
        }
        let slot = self.registered_slot(profile)?;
        if action == Action::Stop {
            // Before the wait for the slot's s6-supervise: one s6-svscan
            // starts in place of a killed one then finds it and starts no
            // gateway beside the one the killed one left running.
            self.set_down_marker(&slot, true)?;
        }
        // A slot published a moment ago by another process, or whose
        // s6-supervise was killed, may not be supervised yet.
        self.wait_supervised(profile)?;
        let mut aside = None;
        let before = match action {
            Action::Stop => {
                // Before s6 is asked: moved after, it raced the gateway's
                // exit and lost for 7% of a 1000-slot batch on 2 busy CPUs.
                // A script that cannot be moved stays: s6 runs it. A slot
                // with no process has nothing to finish, and keeps it.
                let has_process = StatusFile::read(&slot).is_none_or(|s| s.pid != 0);
                if has_process {
                    aside = finish_aside::defer(slot.as_path()).ok().flatten();
                }
                if let Err(e) = self.svc(&slot, b"d") {
                    if aside.is_some() {
                        let _ = finish_aside::restore(slot.as_path());
                    }
                    return Err(e);
                }
                None
            }
            Action::Start | Action::Restart => {
                // A script a stop left aside (killed half-way, or overtaken
                // by a start); a gateway already up gets it back too.
                finish_aside::restore(slot.as_path())?;
                let current = self.status_of(profile, &slot)?;
                if action == Action::Start && current.service.up && current.service.ready {
                    return Ok(Err(current));
                }
                let replaced = current
                    .service
                    .pid
                    .filter(|_| action == Action::Restart && current.service.up);
                let before = Baseline::now(&self.recorded(profile)?, replaced);
                self.set_down_marker(&slot, false)?;
                self.svc(&slot, if replaced.is_some() { b"ut" } else { b"u" })?;
                Some(before)
            }
        };
        Ok(Ok(Asked {
            slot,
            before,
            aside,
            seen_want_up: false,
            recorded: None,
            stray: None,
        }))
    }

    /// One look at an asked slot: its answer, or `None` while pending.
    fn look(
        &self,
        profile: &ProfileName,
        asked: &mut Asked,
        action: Action,
        expired: bool,
        timeout: Duration,
    ) -> Option<Result<SlotStatus, ServiceError>> {
        let stat = svstat::read(&asked.slot);
        let Some(before) = &asked.before else {
            return self.look_at_stop(profile, asked, stat, expired, timeout);
        };
        let status = match stat {
            Ok(stat) => svstat::to_status(profile, &profile.service_name(), stat.as_ref()),
            Err(e) => return Some(Err(e)),
        };
        asked.seen_want_up |= status.service.want == Want::Up;
        let ready = GatewayState::default();
        let recorded = if is_ready(&status, before) {
            &ready
        } else {
            let seen = status_key(&status);
            let fresh = asked
                .recorded
                .as_ref()
                .is_some_and(|r| r.seen == seen && r.at.elapsed() < RECHECK);
            if !fresh || expired {
                match self.recorded(profile) {
                    Ok(state) => {
                        asked.recorded = Some(Recorded {
                            state,
                            seen,
                            at: Instant::now(),
                        })
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            &asked.recorded.as_ref().expect("read above").state
        };
        classify(&status, recorded, before, asked.seen_want_up, expired).settle(
            self,
            profile,
            status,
            action.as_str(),
            timeout,
        )
    }

    /// Start, stop or restart every one of `profiles`: ask s6 for all of
    /// them first, then wait for all of them together (at most `timeout`
    /// from the last request), judging each as one slot alone would be.
    /// One result per profile, in the order given.
    pub(crate) fn act_slots(
        &self,
        profiles: &[ProfileName],
        action: Action,
        timeout: Duration,
    ) -> Vec<Result<SlotStatus, ServiceError>> {
        let mut results: Vec<Option<Result<SlotStatus, ServiceError>>> =
            profiles.iter().map(|_| None).collect();
        let mut pending = Vec::with_capacity(profiles.len());
        // Checked once for the batch; when it fails, each slot says why.
        let supervisor_checked = self.check_supervisor().is_ok();
        for (i, profile) in profiles.iter().enumerate() {
            match self.ask(profile, action, supervisor_checked) {
                Ok(Ok(asked)) => pending.push((i, asked)),
                Ok(Err(settled)) => results[i] = Some(Ok(settled)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() {
            let pass = Instant::now();
            let expired = pass >= deadline;
            pending.retain_mut(|(i, asked)| {
                match self.look(&profiles[*i], asked, action, expired, timeout) {
                    Some(done) => {
                        results[*i] = Some(done);
                        false
                    }
                    None => true,
                }
            });
            if !pending.is_empty() {
                thread::sleep(rest_after(pass.elapsed()));
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every slot was answered"))
            .collect()
    }

    /// [`Self::look`] at a stopping slot (`stat`: what s6 says of it). Its
    /// answer comes once the script the stop moved aside is back.
    fn look_at_stop(
        &self,
        profile: &ProfileName,
        asked: &mut Asked,
        stat: Result<Option<Svstat>, ServiceError>,
        expired: bool,
        timeout: Duration,
    ) -> Option<Result<SlotStatus, ServiceError>> {
        let mut settled = match stat {
            Err(e) => Err(e),
            Ok(stat) => {
                let status = svstat::to_status(profile, &profile.service_name(), stat.as_ref());
                if !status.service.up {
                    Ok(status)
                } else if expired {
                    Err(ServiceError::Timeout {
                        action: Action::Stop.as_str(),
                        profile: profile.clone(),
                        waited: timeout,
                    })
                } else {
                    // Its `down` gone: a start took the slot back, and the
                    // gateway runs again, so must its script, at once
                    // rather than when this stop gives up waiting.
                    let taken_back = stat.is_some_and(|s| s.normally_up);
                    if taken_back && asked.aside.take().is_some() {
                        let _ = finish_aside::restore(asked.slot.as_path());
                    }
                    return None;
                }
            }
        };
        if let Some(aside) = asked.aside {
            let now = StatusFile::read(&asked.slot);
            // s6 2.11 forks for `finish` and writes "finishing" before its
            // child tries the script: back before that, the script runs.
            // s6 2.13 writes the status once the spawn has failed.
            if settled.is_ok() && !expired && now.is_some_and(|n| n.finishing()) {
                return None;
            }
            asked.aside = None;
            if let Err(e) = self.finish_stop(profile, &asked.slot, aside, now) {
                settled = Err(e);
            }
        }
        if settled.is_ok() {
            match self.stop_stray(profile, asked, expired) {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => settled = Err(e),
            }
        }
        Some(settled)
    }

    /// A gateway of `profile` that holds the profile's lock while its slot
    /// is down runs outside the slot: orphaned by a killed s6-supervise
    /// (the one s6-svscan starts in its place finds `down` and leaves it
    /// be) or run by hand. A stop ends it too: SIGTERM, then SIGKILL once
    /// the stop's time is up. `Ok(true)` while it runs. Looked for only
    /// while `gateway.pid` exists (a gateway removes its own as it exits),
    /// so a stop of many slots pays one stat each, not a read of the
    /// kernel's lock table.
    fn stop_stray(
        &self,
        profile: &ProfileName,
        asked: &mut Asked,
        expired: bool,
    ) -> Result<bool, ServiceError> {
        let paths = self.cfg.home.profile(profile);
        if fsutil::symlink_metadata(&paths.pid_file()).is_err() {
            return Ok(false);
        }
        let Some(pid) = fsutil::flock_holder(&paths.gateway_lock()) else {
            return Ok(false);
        };
        // A start took the slot back since the status was read: the holder
        // is the slot's own new gateway.
        if svstat::read(&asked.slot)?.is_some_and(|s| s.up || s.normally_up) {
            return Ok(false);
        }
        let signal = match asked.stray {
            Some(sent) if sent == pid && !expired => return Ok(true),
            Some(sent) if sent == pid => Signal::SIGKILL,
            _ => Signal::SIGTERM,
        };
        asked.stray = Some(pid);
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => Ok(signal == Signal::SIGTERM),
            Err(Errno::ESRCH) => Ok(false),
            Err(errno) => Err(ServiceError::Stray {
                profile: profile.clone(),
                pid,
                signal: signal.as_str(),
                errno,
            }),
        }
    }

    /// A stop's slot has settled with its `finish` aside (`now`: its
    /// status): record a death other than exit 0 as the hook would have
    /// (`hermes status` shows it), and put the script back. A gateway still
    /// up (the stop timed out) gets its script back before s6 kills it. A
    /// script that cannot be put back is left to the next start, which
    /// fails saying why if it cannot either.
    fn finish_stop(
        &self,
        profile: &ProfileName,
        slot: &Path,
        aside: Aside,
        now: Option<StatusFile>,
    ) -> Result<(), ServiceError> {
        let death = now.and_then(|now| aside.unclean_death(&now));
        let _ = finish_aside::restore(slot);
        if let Some((code, signal)) = death {
            finish::record(&self.cfg.home, profile, code, signal)?;
        }
        Ok(())
    }

    pub(crate) fn wait_down(
        &self,
        profile: &ProfileName,
        slot: &Path,
        timeout: Duration,
    ) -> Result<SlotStatus, ServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status_of(profile, slot)?;
            if !status.service.up {
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

/// The pause after a look at the slots being waited for that took `look`:
/// ten times the look, between [`FAST_POLL`] and [`POLL`], and never
/// shorter than the look. A look at a thousand slots costs CPU that the
/// gateways starting or stopping need, so it rests at least as long; a look
/// at one slot costs microseconds, and a fixed 5 ms answered a single
/// `gateway start` up to 5 ms after the gateway was ready.
fn rest_after(look: Duration) -> Duration {
    (look * 10).clamp(FAST_POLL, POLL).max(look)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::service::ServiceStatus;

    #[test]
    fn a_look_rests_ten_times_its_cost_within_half_a_millisecond_and_five() {
        let us = Duration::from_micros;
        assert_eq!(rest_after(us(20)), us(500), "one slot");
        assert_eq!(rest_after(us(300)), us(3_000));
        assert_eq!(rest_after(us(900)), us(5_000), "a hundred slots, as before");
        assert_eq!(
            rest_after(us(8_000)),
            us(8_000),
            "never shorter than the look"
        );
    }

    const AT: u64 = 1_000_000;

    /// (what, status, recorded, replaced pid, seen want up, expired, verdict)
    type Row<'a> = (
        &'a str,
        SlotStatus,
        &'a GatewayState,
        Option<u32>,
        bool,
        bool,
        Verdict,
    );

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
            service: ServiceStatus {
                name: "gateway-t".into(),
                supervised,
                up,
                ready,
                want: if want_up { Want::Up } else { Want::Down },
                pid,
                for_secs: Some(0),
                exit_code: None,
            },
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
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
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
