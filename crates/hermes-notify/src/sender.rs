//! The sender's loop: one [`Sender::pass`] reads the outbox, adds the events
//! only the sender can see (recovered, dead at boot), and delivers what each
//! target is owed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hermes_core::boot::BootReport;
use hermes_core::fsutil::FsError;
use hermes_core::home::HermesHome;
use hermes_core::notify::{self, Event, EventKind, SenderState, Target, TargetRecord};
use hermes_core::profile::{self, SECRET_VAR};
use hermes_core::state::{self, DesiredState, RunState};
use hermes_core::ProfileName;

use hermes_s6::finish::{FAILING_MARK, SHORT_RUN_MS};

use crate::deliver::{deliver, Attempt};

#[derive(Debug, Clone)]
pub struct Settings {
    /// One attempt's limit (connect, send, answer).
    pub timeout: Duration,
    /// The first retry's wait; doubled per failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A crash-looping or parked gateway that has served this long is "recovered".
    pub recovered_after: Duration,
    /// Gateways wanted running that are not, this long after the boot reconcile, are "dead at boot".
    pub boot_grace: Duration,
    /// The outbox is rewritten without its finished events once this many are.
    pub compact_after: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            recovered_after: Duration::from_millis(SHORT_RUN_MS),
            boot_grace: Duration::from_secs(30),
            compact_after: 100,
        }
    }
}

pub struct Sender {
    home: HermesHome,
    settings: Settings,
    state: SenderState,
    /// Per target key: no attempt before this time (ms since the epoch).
    next_try: BTreeMap<String, u64>,
}

impl Sender {
    pub fn new(home: HermesHome, settings: Settings) -> Sender {
        let state = SenderState::load(&home);
        Sender {
            home,
            settings,
            state,
            next_try: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> &SenderState {
        &self.state
    }

    fn queue(&self, events: &[Event]) {
        if let Err(e) = queue(&self.home, events) {
            eprintln!(
                "hermes-notify: unable to queue {} event(s): {e}",
                events.len()
            );
        }
    }

    /// Look for recoveries and dead gateways, then deliver what is due.
    /// Returns how many events are still pending over all targets.
    pub fn pass(&mut self, now_ms: u64) -> u64 {
        let mut outbox = match notify::read_outbox(&self.home) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("hermes-notify: {e}");
                return 0;
            }
        };
        let mut found = self.recoveries(&outbox, now_ms);
        let boot = self.dead_at_boot(now_ms);
        if let Some((_, dead)) = &boot {
            found.extend(dead.iter().cloned());
        }
        if !found.is_empty() {
            self.queue(&found);
            outbox = notify::read_outbox(&self.home).unwrap_or(outbox);
        }
        // Saved after the events are queued: a crash between the two
        // repeats the look, never skips it.
        if let Some((at, _)) = boot {
            self.state.boot_checked = at;
            self.save();
        }
        let pending = self.deliver_all(&outbox, now_ms);
        self.compact(&outbox);
        pending
    }

    /// Drop the finished events from the outbox, then their ids from the
    /// delivery records. In this order: a crash between the two leaves ids of
    /// events that are gone (harmless), never an event without its ids (it
    /// would go out again).
    fn compact(&mut self, outbox: &[Event]) {
        let done = self.finished(outbox);
        let mut kept = None;
        if !done.is_empty() && done.len() >= self.settings.compact_after {
            let rewritten = notify::compact_outbox(&self.home, |events| {
                events
                    .into_iter()
                    .filter(|e| !done.contains(&e.id))
                    .collect()
            });
            match rewritten {
                Ok(events) => kept = Some(events),
                Err(e) => eprintln!("hermes-notify: unable to compact the outbox: {e}"),
            }
        }
        // Also the ids a crash between the two steps left behind.
        let ids: HashSet<&str> = kept
            .as_deref()
            .unwrap_or(outbox)
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        let stale = |r: &TargetRecord| r.delivered_ids.iter().any(|id| !ids.contains(id.as_str()));
        if self.state.targets.values().any(stale) {
            for record in self.state.targets.values_mut() {
                record.delivered_ids.retain(|id| ids.contains(id.as_str()));
            }
            self.save();
        }
    }

    /// The ids of the events every target that wants them has, except the
    /// last failure of each gateway not yet recovered ([`Self::recoveries`]
    /// reads it). A profile whose `notify:` section is broken keeps all its
    /// events: who is owed them is unknown.
    fn finished(&self, outbox: &[Event]) -> HashSet<String> {
        let mut unresolved: BTreeMap<&str, &str> = BTreeMap::new();
        for e in outbox {
            match (e.kind, e.profile.as_deref()) {
                (EventKind::Parked | EventKind::CrashLoop, Some(p)) => {
                    unresolved.insert(p, &e.id);
                }
                (EventKind::Recovered, Some(p)) => {
                    unresolved.remove(p);
                }
                _ => {}
            }
        }
        let needed: HashSet<&str> = unresolved.into_values().collect();
        let delivered: BTreeMap<&str, HashSet<&str>> = self
            .state
            .targets
            .iter()
            .map(|(k, r)| {
                let ids = r.delivered_ids.iter().map(String::as_str).collect();
                (k.as_str(), ids)
            })
            .collect();
        let mut per_profile: BTreeMap<Option<&str>, Result<Vec<Target>, String>> = BTreeMap::new();
        outbox
            .iter()
            .filter(|e| !needed.contains(e.id.as_str()))
            .filter(|e| {
                let targets = per_profile.entry(e.profile.as_deref()).or_insert_with(|| {
                    let p = e
                        .profile
                        .as_deref()
                        .and_then(|p| ProfileName::parse(p).ok());
                    notify::targets_for(&self.home, p.as_ref())
                });
                targets.as_ref().is_ok_and(|targets| {
                    targets.iter().filter(|t| t.wants(e.kind)).all(|t| {
                        delivered
                            .get(t.key().as_str())
                            .is_some_and(|ids| ids.contains(e.id.as_str()))
                    })
                })
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// Gateways whose failure was notified and that have served for
    /// `recovered_after` since: one "recovered" each, and the mark cleared.
    fn recoveries(&self, outbox: &[Event], now_ms: u64) -> Vec<Event> {
        let mut failing: HashSet<&str> = HashSet::new();
        for e in outbox {
            match (e.kind, e.profile.as_deref()) {
                (EventKind::Parked | EventKind::CrashLoop, Some(p)) => {
                    failing.insert(p);
                }
                (EventKind::Recovered, Some(p)) => {
                    failing.remove(p);
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for name in failing {
            let Ok(p) = ProfileName::parse(name) else {
                continue;
            };
            let s = load_state(&self.home, &p);
            let stable = s.gateway_state == Some(RunState::Running)
                && s.started_at.is_some_and(|at| {
                    now_ms.saturating_sub(at) >= self.settings.recovered_after.as_millis() as u64
                });
            if !stable || s.extra.get(FAILING_MARK) != Some(&true.into()) {
                continue;
            }
            let cleared = state::update(&self.home.profile(&p), |s| {
                s.extra.remove(FAILING_MARK).is_some()
            });
            if cleared.unwrap_or(false) {
                found.push(Event::new(EventKind::Recovered, Some(&p), now_ms));
            }
        }
        found
    }

    /// Once per boot, `boot_grace` after its reconcile: the gateways wanted
    /// running that are not, with the boot's `at_ms`.
    fn dead_at_boot(&self, now_ms: u64) -> Option<(u64, Vec<Event>)> {
        let boot = BootReport::load(&self.home.boot_report())?;
        let due = boot.at_ms + self.settings.boot_grace.as_millis() as u64;
        if boot.at_ms == self.state.boot_checked || now_ms < due {
            return None;
        }
        let found: Vec<Event> = profiles(&self.home)
            .into_iter()
            .filter_map(|p| {
                let s = load_state(&self.home, &p);
                let wanted = s.desired_state == Some(DesiredState::Running);
                let serving = matches!(
                    s.gateway_state,
                    Some(RunState::Running | RunState::Degraded)
                );
                (wanted && !serving).then(|| {
                    let reason = s.exit_reason.clone().unwrap_or_else(|| {
                        format!(
                            "state {}",
                            s.gateway_state.map_or("unknown", |g| g.as_str())
                        )
                    });
                    Event::new(EventKind::DeadAtBoot, Some(&p), now_ms).with_reason(&reason)
                })
            })
            .collect();
        Some((boot.at_ms, found))
    }

    fn deliver_all(&mut self, outbox: &[Event], now_ms: u64) -> u64 {
        let mut per_profile: BTreeMap<Option<String>, Result<Vec<Target>, String>> =
            BTreeMap::new();
        let mut config_error = None;
        // Targets in the order their first event appears, each with its queue.
        let mut queues: BTreeMap<String, (Target, Vec<&Event>)> = BTreeMap::new();
        let mut seen = HashSet::new();
        for e in outbox {
            // The same event appended twice (a retried append) goes out once.
            if !seen.insert(e.id.as_str()) {
                continue;
            }
            let targets = per_profile.entry(e.profile.clone()).or_insert_with(|| {
                let p = e
                    .profile
                    .as_deref()
                    .and_then(|p| ProfileName::parse(p).ok());
                notify::targets_for(&self.home, p.as_ref())
            });
            match targets {
                Ok(targets) => {
                    for t in targets.iter().filter(|t| t.wants(e.kind)) {
                        queues
                            .entry(t.key())
                            .or_insert_with(|| (t.clone(), Vec::new()))
                            .1
                            .push(e);
                    }
                }
                Err(why) => config_error = Some(why.clone()),
            }
        }
        if self.state.config_error != config_error {
            self.state.config_error = config_error;
            self.save();
        }
        let mut pending_total = 0;
        for (key, (target, events)) in queues {
            let record = self.state.targets.entry(key.clone()).or_default();
            record.status.url = target.url.clone();
            let delivered: HashSet<String> = record.delivered_ids.iter().cloned().collect();
            let mut pending: Vec<&Event> = events
                .into_iter()
                .filter(|e| !delivered.contains(&e.id))
                .collect();
            if self.next_try.get(&key).is_none_or(|t| *t <= now_ms) {
                let secret = secret(&self.home, &target);
                while let Some(e) = pending.first() {
                    match deliver(&target, secret.as_deref(), e, self.settings.timeout) {
                        Attempt::Delivered => {
                            let record = self.state.targets.entry(key.clone()).or_default();
                            record.delivered_ids.push(e.id.clone());
                            record.status.delivered += 1;
                            record.status.failures = 0;
                            record.status.failing_since_ms = None;
                            record.status.last_error = None;
                            record.status.pending = (pending.len() - 1) as u64;
                            self.next_try.remove(&key);
                            pending.remove(0);
                            // Recorded before the next: a restart resumes after this one.
                            self.save();
                        }
                        Attempt::Failed(why) => {
                            let record = self.state.targets.entry(key.clone()).or_default();
                            record.status.failures += 1;
                            record.status.failing_since_ms.get_or_insert(now_ms);
                            let wait = backoff(&self.settings, record.status.failures);
                            // The 1st, 2nd, 4th, 8th … failure: the log shows it without flooding.
                            if record.status.failures.is_power_of_two() {
                                eprintln!(
                                    "hermes-notify: {why} (failure {}, {} event(s) waiting; next try in {:.0} s)",
                                    record.status.failures,
                                    pending.len(),
                                    wait.as_secs_f64()
                                );
                            }
                            record.status.last_error = Some(why);
                            self.next_try
                                .insert(key.clone(), now_ms + wait.as_millis() as u64);
                            break;
                        }
                    }
                }
            }
            let record: &mut TargetRecord = self.state.targets.entry(key.clone()).or_default();
            if record.status.pending != pending.len() as u64 || record.status.failures > 0 {
                record.status.pending = pending.len() as u64;
                self.save();
            }
            pending_total += pending.len() as u64;
        }
        pending_total
    }

    fn save(&self) {
        if let Err(e) = self.state.save(&self.home) {
            eprintln!("hermes-notify: unable to record deliveries: {e}");
        }
    }
}

/// Queue "stopping" with the gateways that are up, and return them (none
/// up: nothing queued). The init calls it (`hermes container
/// notify-stopping`) before it tears the tree down: only the init knows that
/// the container, not just the sender's slot, is stopping, and it asks while
/// the gateways still run.
pub fn stopping(home: &HermesHome, now_ms: u64) -> Result<Vec<String>, FsError> {
    let up: Vec<String> = profiles(home)
        .into_iter()
        .filter(|p| {
            matches!(
                load_state(home, p).gateway_state,
                Some(RunState::Running | RunState::Degraded | RunState::Draining)
            )
        })
        .map(|p| p.to_string())
        .collect();
    if !up.is_empty() {
        let mut e = Event::new(EventKind::Stopping, None, now_ms);
        e.gateways = up.clone();
        queue(home, &[e])?;
    }
    Ok(up)
}

/// Append the `events` some target wants (a broken section: all of them, to
/// wait for its fix).
fn queue(home: &HermesHome, events: &[Event]) -> Result<(), FsError> {
    let wanted: Vec<Event> = events
        .iter()
        .filter(|e| {
            let p = e
                .profile
                .as_deref()
                .and_then(|p| ProfileName::parse(p).ok());
            !matches!(notify::targets_for(home, p.as_ref()), Ok(t) if t.is_empty())
        })
        .cloned()
        .collect();
    notify::append(home, &wanted)
}

fn backoff(settings: &Settings, failures: u64) -> Duration {
    let shift = failures.saturating_sub(1).min(16) as u32;
    settings
        .backoff
        .saturating_mul(1u32 << shift)
        .min(settings.max_backoff)
}

fn secret(home: &HermesHome, target: &Target) -> Option<String> {
    let var = target.secret_var.as_deref().unwrap_or(SECRET_VAR);
    profile::env_value(&home.profile(&ProfileName::default_profile()), var)
        .ok()
        .flatten()
}

fn profiles(home: &HermesHome) -> Vec<ProfileName> {
    profile::list(home).unwrap_or_else(|_| vec![ProfileName::default_profile()])
}

fn load_state(home: &HermesHome, p: &ProfileName) -> state::GatewayState {
    state::load(&home.profile(p).state())
        .map(|l| l.state())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Receiver;
    use hermes_testkit::free_port;

    fn settings() -> Settings {
        Settings {
            timeout: Duration::from_secs(2),
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            recovered_after: Duration::ZERO,
            boot_grace: Duration::ZERO,
            compact_after: usize::MAX,
        }
    }

    fn home_with_target(url: &str) -> (tempfile::TempDir, HermesHome) {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        std::fs::write(
            dir.path().join("config.yaml"),
            format!("gateway:\n  port: 8700\nnotify:\n  targets:\n    - url: {url}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "HERMES_WEBHOOK_SECRET=s3cret\n").unwrap();
        (dir, home)
    }

    #[test]
    fn a_target_down_then_up_gets_every_event_once_across_a_restart() {
        let port = free_port();
        let (_dir, home) = home_with_target(&format!("http://127.0.0.1:{port}/n"));
        let p = ProfileName::default_profile();
        let events: Vec<Event> = (0..5)
            .map(|i| Event::new(EventKind::CrashLoop, Some(&p), 1000 + i))
            .collect();
        notify::append(&home, &events).unwrap();
        let mut sender = Sender::new(home.clone(), settings());
        assert_eq!(sender.pass(state::now_ms()), 5);
        let status = &sender.state().targets.values().next().unwrap().status;
        assert_eq!((status.failures, status.pending), (1, 5));
        assert!(status
            .last_error
            .as_deref()
            .unwrap()
            .contains("unable to connect"));
        // Saved for doctor.
        assert_eq!(
            SenderState::load(&home)
                .targets
                .values()
                .next()
                .unwrap()
                .status
                .pending,
            5
        );

        let receiver = Receiver::on(port, "202 Accepted", None);
        assert_eq!(sender.pass(state::now_ms()), 0);
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(receiver.keys(), ids);
        // A new sender (a container restart) owes nothing.
        let mut again = Sender::new(home.clone(), settings());
        assert_eq!(again.pass(state::now_ms()), 0);
        assert_eq!(receiver.keys().len(), 5);
        let status = &again.state().targets.values().next().unwrap().status;
        assert_eq!(
            (status.delivered, status.failures, status.last_error.clone()),
            (5, 0, None)
        );
    }

    fn ids(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn compaction_drops_only_finished_events_and_a_crash_between_its_steps_repeats_none() {
        let receiver = Receiver::start("202 Accepted");
        let (dir, home) = home_with_target(&receiver.url("http", "127.0.0.1"));
        let p = ProfileName::default_profile();
        let crash = Event::new(EventKind::CrashLoop, Some(&p), 1);
        let parked = Event::new(EventKind::Parked, Some(&p), 2);
        let stopping = Event::new(EventKind::Stopping, None, 3);
        notify::append(&home, &[crash.clone(), parked.clone(), stopping.clone()]).unwrap();
        let mut sender = Sender::new(home.clone(), settings());
        assert_eq!(sender.pass(state::now_ms()), 0);
        assert_eq!(
            receiver.keys(),
            ids(&[crash.clone(), parked.clone(), stopping.clone()])
        );

        // A crash after the outbox is rewritten, before the records are: the
        // next sender owes nothing and sends nothing again.
        let outbox = notify::read_outbox(&home).unwrap();
        let done = sender.finished(&outbox);
        // The parked gateway has not recovered: its last failure stays.
        assert_eq!(done, [crash.id.clone(), stopping.id.clone()].into());
        notify::compact_outbox(&home, |events| {
            events
                .into_iter()
                .filter(|e| !done.contains(&e.id))
                .collect()
        })
        .unwrap();
        // And one that died before its rename: a stray temporary file.
        std::fs::write(
            home.notify_dir().join(".outbox.jsonl.tmp.99999"),
            "{\"id\":",
        )
        .unwrap();
        let compacting = Settings {
            compact_after: 1,
            ..settings()
        };
        let mut sender = Sender::new(home.clone(), compacting.clone());
        assert_eq!(sender.pass(state::now_ms()), 0);
        assert_eq!(receiver.keys().len(), 3);
        assert_eq!(
            notify::read_outbox(&home).unwrap(),
            std::slice::from_ref(&parked)
        );
        let record = |s: &Sender| {
            s.state()
                .targets
                .values()
                .next()
                .unwrap()
                .delivered_ids
                .clone()
        };
        assert_eq!(record(&sender), std::slice::from_ref(&parked.id));
        assert_eq!(
            record(&Sender::new(home.clone(), settings())),
            std::slice::from_ref(&parked.id)
        );

        // New events go out once; the recovery lets the failure go too.
        let recovered = Event::new(EventKind::Recovered, Some(&p), 4);
        notify::append(&home, std::slice::from_ref(&recovered)).unwrap();
        assert_eq!(sender.pass(state::now_ms()), 0);
        assert_eq!(
            receiver.keys(),
            ids(&[crash, parked, stopping, recovered.clone()])
        );
        assert!(notify::read_outbox(&home).unwrap().is_empty());
        assert!(record(&Sender::new(home.clone(), settings())).is_empty());
        assert_eq!(
            Sender::new(home.clone(), compacting.clone()).pass(state::now_ms()),
            0
        );
        assert_eq!(receiver.keys().len(), 4);

        // An event a second target has not had yet is kept.
        let down = free_port();
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "gateway:\n  port: 8700\nnotify:\n  targets:\n    - url: {}\n    - url: http://127.0.0.1:{down}/n\n",
                receiver.url("http", "127.0.0.1")
            ),
        )
        .unwrap();
        let owed = Event::new(EventKind::Stopping, None, 5);
        notify::append(&home, std::slice::from_ref(&owed)).unwrap();
        assert_eq!(sender.pass(state::now_ms()), 1);
        assert_eq!(receiver.keys().len(), 5);
        assert_eq!(notify::read_outbox(&home).unwrap(), [owed]);
    }

    #[test]
    fn a_wrong_ca_holds_the_event_until_the_right_one_delivers_it_once() {
        let ca = crate::testing::test_ca(&["localhost"]);
        let receiver = Receiver::on(0, "202 Accepted", Some(ca.server.clone()));
        let (dir, home) = home_with_target(&receiver.url("https", "localhost"));
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, crate::testing::test_ca(&["localhost"]).pem).unwrap();
        let config = dir.path().join("config.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            format!("{text}      ca_file: {}\n", ca_file.display()),
        )
        .unwrap();
        let e = Event::new(EventKind::Parked, None, 1);
        notify::append(&home, std::slice::from_ref(&e)).unwrap();
        let mut sender = Sender::new(home.clone(), settings());
        assert_eq!(sender.pass(state::now_ms()), 1);
        assert_eq!(sender.pass(state::now_ms()), 1);
        let status = SenderState::load(&home)
            .targets
            .into_values()
            .next()
            .unwrap()
            .status;
        assert_eq!((status.failures, status.pending), (2, 1));
        let why = status.last_error.unwrap();
        assert!(
            why.contains("UnknownIssuer") && why.contains("ca.pem"),
            "{why}"
        );
        assert_eq!(why.lines().count(), 1);
        assert!(receiver.got().is_empty());

        std::fs::write(&ca_file, &ca.pem).unwrap();
        assert_eq!(sender.pass(state::now_ms()), 0);
        assert_eq!(sender.pass(state::now_ms()), 0);
        assert_eq!(receiver.keys(), [e.id]);
    }

    #[test]
    fn a_broken_section_holds_events_and_says_why() {
        let (dir, home) = home_with_target("ftp://hooks.example/x");
        notify::append(&home, &[Event::new(EventKind::Parked, None, 1)]).unwrap();
        let mut sender = Sender::new(home.clone(), settings());
        sender.pass(state::now_ms());
        let why = SenderState::load(&home).config_error.unwrap();
        assert!(
            why.contains("config.yaml") && why.contains("scheme ftp"),
            "{why}"
        );
        assert_eq!(notify::read_outbox(&home).unwrap().len(), 1);
        drop(dir);
    }

    #[test]
    fn recovery_is_noticed_once_and_clears_the_mark() {
        let port = free_port();
        let (_dir, home) = home_with_target(&format!("http://127.0.0.1:{port}/n"));
        let p = ProfileName::default_profile();
        notify::append(&home, &[Event::new(EventKind::Parked, Some(&p), 1)]).unwrap();
        state::update(&home.profile(&p), |s| {
            s.gateway_state = Some(RunState::Running);
            s.started_at = Some(1);
            s.extra.insert(FAILING_MARK.into(), true.into());
        })
        .unwrap();
        let receiver = Receiver::on(port, "202 Accepted", None);
        let mut sender = Sender::new(home.clone(), settings());
        sender.pass(state::now_ms());
        sender.pass(state::now_ms());
        let kinds: Vec<EventKind> = notify::read_outbox(&home)
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::Parked, EventKind::Recovered]);
        assert_eq!(receiver.keys().len(), 2);
        assert!(load_state(&home, &p).extra.get(FAILING_MARK).is_none());
    }

    #[test]
    fn dead_at_boot_is_looked_for_once_per_boot() {
        let port = free_port();
        let (_dir, home) = home_with_target(&format!("http://127.0.0.1:{port}/n"));
        let p = ProfileName::default_profile();
        state::update(&home.profile(&p), |s| {
            s.desired_state = Some(DesiredState::Running);
            s.gateway_state = Some(RunState::StartupFailed);
            s.exit_reason = Some("port 8700 is in use".into());
        })
        .unwrap();
        std::fs::create_dir_all(home.logs_dir()).unwrap();
        let boot = BootReport {
            at_ms: 5_000,
            ..BootReport::default()
        };
        boot.save(&home.boot_report()).unwrap();
        let receiver = Receiver::on(port, "202 Accepted", None);
        let mut sender = Sender::new(
            home.clone(),
            Settings {
                boot_grace: Duration::from_secs(30),
                ..settings()
            },
        );
        // Within the grace: nothing yet.
        sender.pass(20_000);
        assert!(notify::read_outbox(&home).unwrap().is_empty());
        sender.pass(40_000);
        sender.pass(41_000);
        Sender::new(home.clone(), settings()).pass(50_000);
        let events = notify::read_outbox(&home).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventKind::DeadAtBoot);
        assert_eq!(events[0].reason.as_deref(), Some("port 8700 is in use"));
        assert_eq!(receiver.keys().len(), 1);
    }

    #[test]
    fn stopping_names_the_gateways_up_and_nothing_when_none_is() {
        let port = free_port();
        let (_dir, home) = home_with_target(&format!("http://127.0.0.1:{port}/n"));
        assert!(stopping(&home, 1).unwrap().is_empty());
        assert!(notify::read_outbox(&home).unwrap().is_empty());
        state::update(&home.profile(&ProfileName::default_profile()), |s| {
            s.gateway_state = Some(RunState::Running);
        })
        .unwrap();
        assert_eq!(stopping(&home, 2).unwrap(), ["default"]);
        let events = notify::read_outbox(&home).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Stopping);
        assert_eq!(events[0].gateways, ["default"]);
    }
}
