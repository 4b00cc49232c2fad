//! The crash-loop policy, applied by the slot's finish script after every
//! exit of a gateway. s6 alone restarts a failing service every second
//! forever; this adds back-off and a permanent stop.
//!
//! | what happened | verdict |
//! |---|---|
//! | exit 78 (fatal configuration) | permanently down at once, `startup_failed` |
//! | exit 0 after SIGTERM, or killed by SIGTERM | nothing to record as a failure; s6 restarts only if wanted up |
//! | exit 0 that nobody asked for | stays down (`stopped`), no restart loop |
//! | killed by SIGKILL, SIGINT or SIGHUP (from outside) | restart at once; the failure count is left as it was (reset after a run ≥ 10 s) |
//! | any other exit after running ≥ 10 s | restart at once, failure count reset |
//! | any other exit within 10 s of starting | failure n of a run: restart after 0, 0.5, 1, 2 s; the 5th in a row → permanently down, `startup_failed` |
//!
//! The gateway never sends itself SIGKILL, SIGINT or SIGHUP: such a death
//! comes from outside, and the usual senders are the kernel's OOM killer (it
//! cannot be told apart from `kill -9` without cgroup access) and an
//! operator. Counting those would let anyone who can make the gateway's
//! cgroup run out of memory park it for good, and restarting cannot make the
//! next kill more likely, so they never park the slot. Its own crashes (a
//! non-zero exit, SIGSEGV, SIGABRT, SIGBUS, ...) do: restarting a gateway
//! that cannot run only hides the cause. s6-supervise itself waits a second
//! before restarting a service that died within a second, so repeated kills
//! cannot spin the CPU.
//!
//! "Permanently down" is s6's finish exit code 125: the supervisor does not
//! restart the service until someone runs `hermes gateway start`.
//!
//! Parking a gateway and the start of a crash loop (its second short failure
//! in a row) are also appended to the notification outbox
//! ([`hermes_core::notify`]) when a target is configured for the profile: one
//! small fsynced append; delivery is the sender's, never the hook's.

use std::time::Duration;

use hermes_core::home::HermesHome;
use hermes_core::notify::{self, Event, EventKind};
use hermes_core::runtime;
use hermes_core::state::{self, GatewayState, LastExit, RunState, StateError, StopSignal};
use hermes_core::ProfileName;

/// Consecutive short failures that make a crash loop worth a notification.
pub const CRASH_LOOP_AT: u32 = 2;
/// Set in the state file while a parked or crash-loop notification awaits its
/// "recovered" (the sender clears it when it records that).
pub const FAILING_MARK: &str = "notify_failing";
/// A run shorter than this that ends in failure counts toward the crash loop.
pub const SHORT_RUN_MS: u64 = 10_000;
/// Consecutive short failures that park the slot.
pub const MAX_SHORT_FAILURES: u32 = 5;
/// s6's finish exit code for "do not restart".
pub const PERMANENT_FAILURE: i32 = 125;
pub const CONFIG_EXIT: i32 = 78;
const SIGTERM: i32 = 15;
/// Deaths from outside: see the module documentation.
const OUTSIDE_SIGNALS: [i32; 3] = [libc::SIGHUP, libc::SIGINT, libc::SIGKILL];

/// How the gateway process ended, from s6's finish arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Death {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub now_ms: u64,
}

impl Death {
    /// s6 passes the exit code, or 256 and the signal when the process was killed.
    pub fn from_finish_args(code: i32, signal: i32, now_ms: u64) -> Self {
        if code == 256 || code < 0 {
            Death {
                code: None,
                signal: Some(signal),
                now_ms,
            }
        } else {
            Death {
                code: Some(code),
                signal: None,
                now_ms,
            }
        }
    }

    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "an unknown cause".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Let s6 restart the service (if it is wanted up) after this pause.
    Restart(Duration),
    /// Tell s6 not to restart: finish exits 125.
    PermanentlyDown,
}

impl Verdict {
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Restart(_) => 0,
            Verdict::PermanentlyDown => PERMANENT_FAILURE,
        }
    }
}

fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(500 << (n - 2).min(3)),
    }
}

/// Apply the policy: update `state` and say what s6 should do. Hints name
/// `profile`, so they can be pasted as they are.
pub fn decide(state: &mut GatewayState, profile: &ProfileName, death: Death) -> Verdict {
    let start = profile.command("gateway start");
    // The gateway records its own reason (port in use, bad config) before it exits.
    let own_reason = state
        .exit_reason
        .clone()
        .filter(|_| state.gateway_state == Some(RunState::StartupFailed));
    let stopped_on_request = state.stopped_on_request();
    let ran_ms = match (state.started_at, &state.last_exit) {
        (Some(started), Some(last)) if started <= last.at => 0,
        (Some(started), _) => death.now_ms.saturating_sub(started),
        (None, _) => 0,
    };
    state.last_exit = Some(LastExit {
        code: death.code,
        signal: death.signal,
        at: death.now_ms,
    });
    state.pid = None;

    if death.code == Some(CONFIG_EXIT) {
        state.gateway_state = Some(RunState::StartupFailed);
        let file = match own_reason.as_deref() {
            Some(r) if r.contains(".env") => "the profile's .env",
            Some(r) if r.contains("config.yaml") => "config.yaml",
            Some(_) => "what it names",
            None => "the profile's config.yaml or .env",
        };
        state.exit_reason = Some(format!(
            "fatal configuration error (exit 78){}: fix {file}, then run `{start}`",
            own_reason.map(|r| format!(": {r}")).unwrap_or_default()
        ));
        return Verdict::PermanentlyDown;
    }
    if (death.code == Some(0) && stopped_on_request) || death.signal == Some(SIGTERM) {
        state.record_stop(StopSignal::Term);
        return Verdict::Restart(Duration::ZERO);
    }
    if death.code == Some(0) {
        state.gateway_state = Some(RunState::Stopped);
        state.exit_reason = Some(format!(
            "exited 0 without being asked to stop; not restarted (run `{start}`)"
        ));
        return Verdict::PermanentlyDown;
    }

    state.restarts += 1;
    if ran_ms >= SHORT_RUN_MS {
        state.fast_failures = 0;
    }
    if let Some(signal) = death.signal.filter(|s| OUTSIDE_SIGNALS.contains(s)) {
        state.gateway_state = Some(RunState::Starting);
        state.exit_reason = Some(format!(
            "killed by signal {signal} from outside (the OOM killer or a kill command); \
             restarted, not counted as a crash"
        ));
        return Verdict::Restart(Duration::ZERO);
    }
    state.fast_failures += 1;
    let cause = own_reason.unwrap_or_else(|| format!("died with {}", death.describe()));
    if state.fast_failures >= MAX_SHORT_FAILURES {
        state.gateway_state = Some(RunState::StartupFailed);
        state.exit_reason = Some(format!(
            "crash loop: {MAX_SHORT_FAILURES} failures in a row within {}s of starting; last: {cause}",
            SHORT_RUN_MS / 1000
        ));
        return Verdict::PermanentlyDown;
    }
    state.gateway_state = Some(RunState::Starting);
    state.exit_reason = Some(cause);
    Verdict::Restart(backoff(state.fast_failures))
}

/// Whether `state` already holds all that [`decide`] would record for
/// `death`: a gateway stopped on request records that stop and its exit 0
/// itself, before it exits. Then the hook writes nothing: one synced write
/// fewer per gateway on every stop (each costs tens of milliseconds on a
/// real disk, once per gateway when a container with many stops).
pub fn already_recorded(state: &GatewayState, death: &Death) -> bool {
    let exit_recorded = state.last_exit.as_ref().is_some_and(|e| {
        e.code == Some(0)
            && e.signal.is_none()
            && state.started_at.is_some_and(|started| started <= e.at)
    });
    death.code == Some(0)
        && state.stopped_on_request()
        && state.fast_failures == 0
        && state.pid.is_none()
        && exit_recorded
}

/// The notifications one verdict makes: `failures_before` is the short
/// failure count before [`decide`], `after` the state it left. Every parking
/// is one event (the slot stays down until someone starts it again).
pub fn events_of(
    profile: &ProfileName,
    failures_before: u32,
    verdict: &Verdict,
    after: &GatewayState,
    now_ms: u64,
) -> Vec<Event> {
    let reason = after.exit_reason.as_deref().unwrap_or("");
    if *verdict == Verdict::PermanentlyDown && after.gateway_state == Some(RunState::StartupFailed)
    {
        return vec![Event::new(EventKind::Parked, Some(profile), now_ms).with_reason(reason)];
    }
    if failures_before < CRASH_LOOP_AT && after.fast_failures == CRASH_LOOP_AT {
        return vec![Event::new(EventKind::CrashLoop, Some(profile), now_ms).with_reason(reason)];
    }
    Vec::new()
}

/// One death as the hook recorded it: what s6 should do, and the
/// operator's line about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub verdict: Verdict,
    pub summary: String,
}

/// Record one death (`code` and `signal` as s6 passes them to `finish`):
/// apply the crash-loop policy to the state file and queue its
/// notifications. Nothing is written for a stop the gateway recorded itself.
pub fn record(
    home: &HermesHome,
    profile: &ProfileName,
    code: i32,
    signal: i32,
) -> Result<Recorded, StateError> {
    let paths = home.profile(profile);
    let death = Death::from_finish_args(code, signal, state::now_ms());
    // Read without the lock: if the gateway recorded its stop, nothing here
    // writes, so there is no update to lose.
    let current = state::load(&paths.state())?.state();
    if already_recorded(&current, &death) {
        return Ok(Recorded {
            verdict: Verdict::Restart(Duration::ZERO),
            summary: summary(&paths.name, &death, current.exit_reason.as_deref()),
        });
    }
    let (verdict, summary, events) = state::update(&paths, |s| {
        let failures_before = s.fast_failures;
        let verdict = decide(s, profile, death);
        let events = events_of(profile, failures_before, &verdict, s, death.now_ms);
        if !events.is_empty() {
            s.extra.insert(FAILING_MARK.into(), true.into());
        }
        let summary = summary(&paths.name, &death, s.exit_reason.as_deref());
        (verdict, summary, events)
    })?;
    // Nothing is queued where nobody listens; a broken section queues (the
    // sender delivers once it is fixed). A failed append never changes the verdict.
    let wanted = !matches!(notify::targets_for(home, Some(profile)), Ok(t) if t.is_empty());
    if wanted {
        if let Err(e) = notify::append(home, &events) {
            eprintln!("hermes: unable to queue a notification for '{profile}': {e}");
        }
    }
    Ok(Recorded { verdict, summary })
}

/// The finish hook: [`record`] the death, print one line for the operator
/// (every exit has one: a kill from outside, a requested stop), sleep the
/// back-off, and return the exit code for s6. No back-off while the
/// container stops: nothing will be restarted, and the init waits for the
/// hook.
pub fn run_hook(
    home: &HermesHome,
    profile: &ProfileName,
    code: i32,
    signal: i32,
) -> Result<i32, StateError> {
    let Recorded { verdict, summary } = record(home, profile, code, signal)?;
    match &verdict {
        Verdict::PermanentlyDown => eprintln!("{summary}; not restarting"),
        Verdict::Restart(delay) if !delay.is_zero() && !runtime::container_stopping() => {
            eprintln!("{summary}; restarting in {:.1}s", delay.as_secs_f32());
            std::thread::sleep(*delay);
        }
        Verdict::Restart(_) => eprintln!("{summary}"),
    }
    Ok(verdict.exit_code())
}

/// The operator's line about one exit: `hermes: gateway 'web' ended with
/// signal 9: killed by signal 9 from outside …`.
fn summary(profile: &ProfileName, death: &Death, reason: Option<&str>) -> String {
    let mut line = format!(
        "hermes: gateway '{profile}' ended with {}",
        death.describe()
    );
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        line.push_str(": ");
        line.push_str(reason);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started_at(ms: u64) -> GatewayState {
        GatewayState {
            started_at: Some(ms),
            gateway_state: Some(RunState::Running),
            ..GatewayState::default()
        }
    }

    fn web() -> ProfileName {
        ProfileName::parse("web").unwrap()
    }

    fn died(code: i32, signal: i32, now: u64) -> Death {
        Death::from_finish_args(code, signal, now)
    }

    #[test]
    fn exit_78_is_permanent_at_once() {
        let mut s = started_at(0);
        assert_eq!(
            decide(&mut s, &web(), died(78, 0, 50)),
            Verdict::PermanentlyDown
        );
        assert_eq!(s.gateway_state, Some(RunState::StartupFailed));
        assert!(s.exit_reason.unwrap().contains("exit 78"));
    }

    #[test]
    fn the_exit_78_hint_names_the_file_at_fault() {
        for (reason, hint) in [
            (
                Some("/h/profiles/p/.env: HERMES_WEBHOOK_SECRET is missing or empty"),
                "fix the profile's .env,",
            ),
            (
                Some("/h/profiles/p/config.yaml: gateway.port must be between 1 and 65535"),
                "fix config.yaml,",
            ),
            (None, "fix the profile's config.yaml or .env,"),
        ] {
            let mut s = started_at(0);
            if let Some(reason) = reason {
                s.gateway_state = Some(RunState::StartupFailed);
                s.exit_reason = Some(reason.to_string());
            }
            decide(&mut s, &web(), died(78, 0, 50));
            let text = s.exit_reason.unwrap();
            assert!(text.contains(hint), "{text}");
            // `hermes gateway start` would act on `default`, not on web.
            assert!(
                text.ends_with("then run `hermes -p web gateway start`"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_kill_from_outside_has_an_ended_line_like_any_exit() {
        let mut s = started_at(0);
        let death = died(256, 9, 50);
        decide(&mut s, &web(), death);
        assert_eq!(
            summary(&web(), &death, s.exit_reason.as_deref()),
            "hermes: gateway 'web' ended with signal 9: killed by signal 9 from outside \
             (the OOM killer or a kill command); restarted, not counted as a crash"
        );
        assert_eq!(
            summary(&web(), &died(0, 0, 50), None),
            "hermes: gateway 'web' ended with exit code 0"
        );
    }

    #[test]
    fn requested_stop_is_not_a_failure() {
        let mut s = started_at(0);
        s.record_stop(StopSignal::Term);
        assert_eq!(
            decide(&mut s, &web(), died(0, 0, 50)),
            Verdict::Restart(Duration::ZERO)
        );
        assert_eq!(s.restarts, 0);
        let mut s = started_at(0);
        assert_eq!(
            decide(&mut s, &web(), died(256, 15, 50)),
            Verdict::Restart(Duration::ZERO)
        );
        assert_eq!(s.fast_failures, 0);
    }

    /// What the gateway itself leaves when it stops on SIGTERM (`run.rs`).
    fn stopped_by_itself(started: u64, at: u64) -> GatewayState {
        let mut s = started_at(started);
        s.record_stop(StopSignal::Term);
        s.last_exit = Some(LastExit {
            code: Some(0),
            signal: None,
            at,
        });
        s
    }

    #[test]
    fn a_stop_the_gateway_recorded_leaves_nothing_to_record() {
        let recorded = stopped_by_itself(10, 50);
        assert!(already_recorded(&recorded, &died(0, 0, 60)));
        // What decide would do to it changes nothing but the exit's instant.
        let mut decided = recorded.clone();
        assert_eq!(
            decide(&mut decided, &web(), died(0, 0, 60)),
            Verdict::Restart(Duration::ZERO)
        );
        decided.last_exit.as_mut().unwrap().at = 50;
        assert_eq!(decided, recorded);
        // Anything else is the hook's to record.
        assert!(!already_recorded(&recorded, &died(1, 0, 60)));
        assert!(!already_recorded(&recorded, &died(256, 15, 60)));
        let mut older = stopped_by_itself(100, 50);
        assert!(
            !already_recorded(&older, &died(0, 0, 160)),
            "exit of an earlier run"
        );
        older.last_exit = None;
        assert!(!already_recorded(&older, &died(0, 0, 160)));
        let mut failing = stopped_by_itself(10, 50);
        failing.fast_failures = 2;
        assert!(!already_recorded(&failing, &died(0, 0, 60)));
        let mut interrupted = stopped_by_itself(10, 50);
        interrupted.record_stop(StopSignal::Int);
        assert!(!already_recorded(&interrupted, &died(0, 0, 60)));
    }

    #[test]
    fn the_hook_does_not_rewrite_a_recorded_stop() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let paths = home.profile(&ProfileName::default_profile());
        let recorded = stopped_by_itself(10, 50);
        state::update(&paths, |s| *s = recorded.clone()).unwrap();
        let before = std::fs::read(paths.state()).unwrap();
        let code = run_hook(&home, &ProfileName::default_profile(), 0, 0).unwrap();
        assert_eq!(code, 0);
        assert_eq!(std::fs::read(paths.state()).unwrap(), before);
        // A death it did not record is written.
        let code = run_hook(&home, &ProfileName::default_profile(), 256, 9).unwrap();
        assert_eq!(code, 0);
        assert_ne!(std::fs::read(paths.state()).unwrap(), before);
    }

    #[test]
    fn unrequested_exit_0_stays_down() {
        let mut s = started_at(0);
        assert_eq!(
            decide(&mut s, &web(), died(0, 0, 50_000)),
            Verdict::PermanentlyDown
        );
        assert_eq!(s.gateway_state, Some(RunState::Stopped));
    }

    #[test]
    fn crash_loop_backs_off_then_parks() {
        let mut s = GatewayState::default();
        let mut now = 1_000;
        let mut delays = Vec::new();
        loop {
            s.started_at = Some(now);
            now += 100;
            match decide(&mut s, &web(), died(1, 0, now)) {
                Verdict::Restart(d) => delays.push(d.as_millis()),
                Verdict::PermanentlyDown => break,
            }
        }
        assert_eq!(delays, [0, 500, 1000, 2000]);
        assert_eq!(s.gateway_state, Some(RunState::StartupFailed));
        assert_eq!(s.restarts, 5);
        assert!(s.exit_reason.unwrap().starts_with("crash loop"));
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let mut s = started_at(0);
        s.fast_failures = 4;
        assert_eq!(
            decide(&mut s, &web(), died(1, 0, SHORT_RUN_MS + 1)),
            Verdict::Restart(Duration::ZERO)
        );
        assert_eq!(s.fast_failures, 1);
        let mut s = started_at(0);
        s.fast_failures = 4;
        decide(&mut s, &web(), died(256, 9, SHORT_RUN_MS + 1));
        assert_eq!(s.fast_failures, 0);
        assert_eq!(s.last_exit.as_ref().unwrap().signal, Some(9));
    }

    /// Every way a gateway can die within a second of starting, five times in a
    /// row: the verdict of the fifth and whether the failure count moved.
    #[test]
    fn which_deaths_count_toward_parking() {
        // (finish code, signal, parked after 5 fast deaths, what it stands for)
        let table = [
            (256, 9, false, "SIGKILL: the OOM killer or kill -9"),
            (256, 2, false, "SIGINT from a terminal or an operator"),
            (256, 1, false, "SIGHUP from outside"),
            (256, 15, false, "SIGTERM: a requested stop"),
            (256, 6, true, "SIGABRT: the gateway aborted"),
            (256, 11, true, "SIGSEGV: the gateway crashed"),
            (256, 7, true, "SIGBUS: the gateway crashed"),
            (1, 0, true, "exit 1: the gateway gave up"),
            (101, 0, true, "exit 101: a panic"),
        ];
        for (code, signal, parks, what) in table {
            let mut s = GatewayState::default();
            let mut now = 1_000;
            let mut verdict = Verdict::Restart(Duration::ZERO);
            for _ in 0..MAX_SHORT_FAILURES {
                s.started_at = Some(now);
                now += 100;
                verdict = decide(&mut s, &web(), died(code, signal, now));
            }
            assert_eq!(verdict == Verdict::PermanentlyDown, parks, "{what}: {s:?}");
            assert_eq!(
                s.fast_failures,
                if parks { MAX_SHORT_FAILURES } else { 0 },
                "{what}"
            );
        }
    }

    #[test]
    fn an_outside_kill_neither_counts_nor_clears_a_crash_loop() {
        let mut s = GatewayState::default();
        let mut now = 1_000;
        let mut die = |s: &mut GatewayState, code, signal| {
            s.started_at = Some(now);
            now += 100;
            decide(s, &web(), died(code, signal, now))
        };
        for _ in 0..3 {
            die(&mut s, 256, 11);
        }
        assert_eq!(die(&mut s, 256, 9), Verdict::Restart(Duration::ZERO));
        assert_eq!(s.fast_failures, 3);
        assert!(s.exit_reason.as_deref().unwrap().contains("from outside"));
        die(&mut s, 256, 11);
        assert_eq!(die(&mut s, 256, 11), Verdict::PermanentlyDown);
    }

    #[test]
    fn a_crash_before_recording_a_start_counts_as_short() {
        let mut s = GatewayState {
            started_at: Some(10),
            last_exit: Some(LastExit {
                code: Some(1),
                signal: None,
                at: 20,
            }),
            fast_failures: 1,
            ..GatewayState::default()
        };
        assert_eq!(
            decide(&mut s, &web(), died(1, 0, 60_000)),
            Verdict::Restart(Duration::from_millis(500))
        );
    }

    #[test]
    fn five_fast_deaths_make_one_crash_loop_then_one_parked_event() {
        let p = ProfileName::parse("web").unwrap();
        let mut s = GatewayState::default();
        let mut now = 1_000;
        let mut kinds = Vec::new();
        let mut last = Vec::new();
        for _ in 0..MAX_SHORT_FAILURES {
            s.started_at = Some(now);
            now += 100;
            let before = s.fast_failures;
            let verdict = decide(&mut s, &web(), died(1, 0, now));
            last = events_of(&p, before, &verdict, &s, now);
            kinds.extend(last.iter().map(|e| e.kind));
        }
        assert_eq!(kinds, [EventKind::CrashLoop, EventKind::Parked]);
        assert!(last[0].reason.as_deref().unwrap().starts_with("crash loop"));
    }

    #[test]
    fn exit_78_parks_with_the_gateways_own_reason() {
        let p = ProfileName::parse("web").unwrap();
        // The gateway records startup_failed itself before it exits 78.
        let mut s = started_at(0);
        s.gateway_state = Some(RunState::StartupFailed);
        s.exit_reason = Some("/h/config.yaml: gateway.port must be between 1 and 65535".into());
        let verdict = decide(&mut s, &web(), died(78, 0, 50));
        let events = events_of(&p, 0, &verdict, &s, 50);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Parked);
        assert!(events[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("gateway.port"));
        // A requested stop notifies nothing.
        let mut s = started_at(0);
        let verdict = decide(&mut s, &web(), died(256, 15, 50));
        assert!(events_of(&p, 0, &verdict, &s, 50).is_empty());
    }

    #[test]
    fn the_gateways_own_reason_is_kept() {
        let mut s = started_at(0);
        s.gateway_state = Some(RunState::StartupFailed);
        s.exit_reason = Some("port 8701 is in use".into());
        decide(&mut s, &web(), died(1, 0, 10));
        assert_eq!(s.exit_reason.as_deref(), Some("port 8701 is in use"));
    }
}
