//! The thread that talks to the supervisor: it collects a snapshot every
//! refresh period and runs the user's requests (which can wait seconds for a
//! gateway), so the screen keeps redrawing and answering keys meanwhile.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use hermes_model::actions;
use hermes_model::{Action, Environment, Snapshot};

use crate::app::Request;

/// How long a start/stop/restart from the console waits for the outcome.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Update {
    Snapshot(Box<Snapshot>),
    /// A request finished: a line for the user, an error line on failure.
    Done(Result<String, String>),
}

pub struct Worker {
    requests: Sender<Request>,
    updates: Receiver<Update>,
}

impl Worker {
    pub fn spawn(env: Arc<dyn Environment>, every: Duration) -> Worker {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, updates) = mpsc::channel();
        std::thread::spawn(move || loop {
            let request = match inbox.recv_timeout(every) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(request) = request.filter(|r| *r != Request::Refresh) {
                if outbox.send(Update::Done(perform(&*env, request))).is_err() {
                    break;
                }
            }
            let snap = Snapshot::collect(&*env);
            if outbox.send(Update::Snapshot(Box::new(snap))).is_err() {
                break;
            }
        });
        // The first snapshot is wanted now, not after one period.
        let _ = requests.send(Request::Refresh);
        Worker { requests, updates }
    }

    pub fn send(&self, request: Request) {
        // The worker only stops when this side is dropped.
        let _ = self.requests.send(request);
    }

    pub fn poll(&self) -> Option<Update> {
        self.updates.try_recv().ok()
    }
}

fn perform(env: &dyn Environment, request: Request) -> Result<String, String> {
    if let Some((what, p)) = request.audited() {
        hermes_model::audit::record(env.home(), &hermes_model::audit::Actor::tui(), what, p);
    }
    match request {
        Request::Refresh => Ok(String::new()),
        Request::Act(profile, verb) => actions::lifecycle(env, &profile, verb, ACTION_TIMEOUT)
            .map(|o| o.message)
            .map_err(|e| match e.log_tail().last() {
                Some(line) => format!("{e} (log: {line})"),
                None => e.to_string(),
            }),
        Request::Create(name) => actions::create(env, &name, None, true)
            .map(|c| match c.slot_error {
                Some(err) => format!("created profile {name}; no slot yet: {err}"),
                None => format!("created profile {name} (gateway port {})", c.port),
            })
            .map_err(|e| e.to_string()),
        Request::All(verb) => all(env, verb),
        Request::Delete(name) => actions::delete(env, &name)
            .map(|_| format!("deleted profile {name}"))
            .map_err(|e| e.to_string()),
    }
}

/// Every registered gateway in one batched call (as `gateway start --all`),
/// one outcome line for all of them.
fn all(env: &dyn Environment, verb: Action) -> Result<String, String> {
    let targets = env
        .manager()
        .list()
        .map_err(|e| format!("unable to list the gateway slots: {e}"))?;
    let results = actions::lifecycle_many(env, &targets, verb, ACTION_TIMEOUT);
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| match e.log_tail().last() {
            Some(line) => format!("{e} (log: {line})"),
            None => e.to_string(),
        })
        .collect();
    if failed.is_empty() {
        Ok(format!(
            "{}: {} gateways done",
            verb.as_str(),
            targets.len()
        ))
    } else {
        Err(format!(
            "{} failed for {} of {}: {}",
            verb.as_str(),
            failed.len(),
            targets.len(),
            failed.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::ProfileName;
    use hermes_model::fake::{FakeEnv, Slot};
    use std::time::Instant;

    fn next_done(w: &Worker) -> Result<String, String> {
        let done = hermes_core::wait::for_value(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(5),
            || {
                Ok::<_, std::convert::Infallible>(match w.poll() {
                    Some(Update::Done(r)) => Some(r),
                    _ => None,
                })
            },
        );
        done.unwrap().expect("no outcome within 10 s")
    }

    #[test]
    fn requests_run_through_the_shared_actions() {
        let env = Arc::new(FakeEnv::new());
        env.add_profile("alpha");
        env.set_slot("alpha", Slot::up(1));
        let w = Worker::spawn(env.clone(), Duration::from_secs(60));
        let alpha = ProfileName::parse("alpha").unwrap();
        w.send(Request::Act(alpha.clone(), Action::Stop));
        assert!(next_done(&w).unwrap().contains("down"));
        assert!(!env.slot("alpha").unwrap().up);
        w.send(Request::Create(ProfileName::parse("beta").unwrap()));
        assert!(next_done(&w).unwrap().contains("created profile beta"));
        w.send(Request::All(Action::Stop));
        assert!(next_done(&w).unwrap().starts_with("stop: "));
        assert!(!env.slot("beta").unwrap().up);
        w.send(Request::All(Action::Start));
        assert!(next_done(&w).is_ok());
        assert!(env.slot("alpha").unwrap().up && env.slot("beta").unwrap().up);
        w.send(Request::Delete(alpha));
        assert_eq!(next_done(&w).unwrap(), "deleted profile alpha");
        let ghost = ProfileName::parse("ghost").unwrap();
        w.send(Request::Act(ghost, Action::Start));
        assert!(next_done(&w).unwrap_err().contains("ghost"));
        // Each one is in the audit log, by the TUI's user.
        let audit = std::fs::read_to_string(hermes_model::audit::path(env.home())).unwrap();
        let what: Vec<&str> = audit
            .lines()
            .map(|l| l.rsplit_once(": ").unwrap().1)
            .collect();
        assert_eq!(
            what,
            [
                "stop alpha",
                "create beta",
                "stop all",
                "start all",
                "delete alpha",
                "start ghost"
            ]
        );
        assert!(
            audit.lines().all(|l| l.contains("hermes audit: tui user ")),
            "{audit}"
        );
    }
}
