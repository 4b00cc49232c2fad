//! The actions every front end offers (start, stop, restart, create, delete),
//! implemented once. Each records what the operator asked for in
//! `desired_state` before asking the manager, so a reboot honours it even if
//! the call times out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hermes_core::fsutil::{self, FsError};
use hermes_core::home::ProfilePaths;
use hermes_core::lifecycle::{self, Action, LifecycleError};
use hermes_core::profile::{self, AliasOutcome, ProfileError};
use hermes_core::service::GatewaySpec;
use hermes_core::service::{ServiceError, ServiceManager, SlotStatus};
use hermes_core::state::StateError;
use hermes_core::wait;
use hermes_core::ProfileName;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::env::Environment;
use crate::logs;

/// Log lines shown with a failed action.
pub const FAILURE_TAIL: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{} of gateway '{profile}' failed: {source}", verb.as_str())]
    Service {
        verb: Action,
        profile: ProfileName,
        #[source]
        source: Box<ServiceError>,
        /// The last lines of the gateway's log, to show with the error.
        log_tail: Vec<String>,
    },
    #[error("unable to record desired_state of '{profile}': {source}")]
    State {
        profile: ProfileName,
        #[source]
        source: StateError,
    },
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("unable to remove the alias of '{profile}': {source}")]
    Alias {
        profile: ProfileName,
        #[source]
        source: FsError,
    },
    #[error("unable to stop the gateway of '{profile}' running outside the supervisor (pid {pid}): {reason}; nothing was deleted")]
    StopUnsupervised {
        profile: ProfileName,
        pid: i32,
        reason: String,
    },
}

impl ActionError {
    /// Whether the request named something that does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ActionError::Profile(ProfileError::NotFound(_)))
            || matches!(self, ActionError::Service { source, .. } if matches!(**source, ServiceError::NotRegistered { .. }))
    }

    /// Whether the request conflicts with what exists (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ActionError::Profile(
                ProfileError::Exists(_)
                    | ProfileError::PortTaken { .. }
                    | ProfileError::Default(..)
                    | ProfileError::NotAProfile(_)
                    | ProfileError::Symlink(_)
            )
        )
    }

    pub fn log_tail(&self) -> &[String] {
        match self {
            ActionError::Service { log_tail, .. } => log_tail,
            _ => &[],
        }
    }
}

/// What a lifecycle action did.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub profile: ProfileName,
    pub action: Action,
    /// The slot was registered by this call (a profile created from outside).
    pub registered: bool,
    pub status: SlotStatus,
    pub message: String,
}

/// Start, stop or restart one gateway through the lifecycle rules every
/// front end shares (`hermes_core::lifecycle`) and wait (at most `timeout`)
/// for the outcome; a failure carries the gateway's log tail.
pub fn lifecycle(
    env: &dyn Environment,
    profile: &ProfileName,
    verb: Action,
    timeout: Duration,
) -> Result<ActionReport, ActionError> {
    let mut results = lifecycle_many(env, std::slice::from_ref(profile), verb, timeout);
    results.pop().expect("one result per profile")
}

/// [`lifecycle`] on many gateways at once: every front end's "all" action.
/// The manager is asked for every slot first and they are waited for
/// together when it can; one result per profile, in the order given.
pub fn lifecycle_many(
    env: &dyn Environment,
    profiles: &[ProfileName],
    verb: Action,
    timeout: Duration,
) -> Vec<Result<ActionReport, ActionError>> {
    let home = env.home();
    let manager = env.manager();
    let done = lifecycle::apply_many(&*manager, home, env.program(), profiles, verb, timeout);
    profiles
        .iter()
        .zip(done)
        .map(|(profile, result)| {
            let done = result.map_err(|e| match e {
                LifecycleError::Profile(e) => ActionError::Profile(e),
                LifecycleError::State(source) => ActionError::State {
                    profile: profile.clone(),
                    source,
                },
                LifecycleError::Service(source) => ActionError::Service {
                    verb,
                    profile: profile.clone(),
                    source: Box::new(source),
                    log_tail: logs::tail(&logs::gateway_log(home, profile), FAILURE_TAIL),
                },
            })?;
            Ok(ActionReport {
                profile: profile.clone(),
                action: verb,
                registered: done.registered,
                message: describe(&done.status),
                status: done.status,
            })
        })
        .collect()
}

fn has_slot(manager: &dyn ServiceManager, profile: &ProfileName) -> bool {
    if manager.supports_registration() {
        manager.list().is_ok_and(|l| l.contains(profile))
    } else {
        manager.status(profile).is_ok()
    }
}

/// One line for a slot's state after an action.
pub fn describe(s: &SlotStatus) -> String {
    match (s.service.up, s.service.ready, s.service.pid) {
        (true, true, Some(pid)) => format!("gateway '{}' is up and ready (pid {pid})", s.profile),
        (true, _, _) => format!("gateway '{}' is up, not ready yet", s.profile),
        (false, _, _) => format!("gateway '{}' is down", s.profile),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub profile: ProfileName,
    pub dir: PathBuf,
    /// The port the creator chose (or was given).
    pub port: u16,
    /// The alias wrapper written, or why none was.
    pub alias: Option<String>,
    /// A down slot was registered for the gateway.
    pub slot: bool,
    /// Why registering the slot failed; `gateway start` registers it later.
    pub slot_error: Option<String>,
}

/// Create a profile, its alias (if `alias` and the environment has an alias
/// dir) and a down slot for its gateway (if the manager registers slots).
pub fn create(
    env: &dyn Environment,
    name: &ProfileName,
    port: Option<u16>,
    alias: bool,
) -> Result<Created, ActionError> {
    let mut created = create_many(env, &[(name.clone(), port)], alias)?;
    created.remove(0)
}

/// [`create`] for many profiles under one hold of the profiles lock, their
/// slots registered together ([`ServiceManager::register_many`]: with s6,
/// a scan of the tree after 16, 32 and 64 slots, then every 128, instead
/// of one per profile).
/// One result per profile, in the order given; a profile that cannot be
/// created does not stop the others. `Err` only when none could be tried.
pub fn create_many(
    env: &dyn Environment,
    profiles: &[(ProfileName, Option<u16>)],
    alias: bool,
) -> Result<Vec<Result<Created, ActionError>>, ActionError> {
    let home = env.home();
    // Held until the slots are registered: a delete racing this create finds
    // a profile and its slot together, or neither.
    let held = profile::lock(home)?;
    let mut results: Vec<Result<Created, ActionError>> = Vec::with_capacity(profiles.len());
    let mut specs = Vec::new();
    let mut creator = profile::Creator::new(home, &held);
    for (name, port) in profiles {
        let made = match creator.create(name, *port) {
            Ok(made) => made,
            Err(e) => {
                results.push(Err(e.into()));
                continue;
            }
        };
        let spec = GatewaySpec::for_profile(home, name, env.program());
        let alias = match env.alias_dir().filter(|_| alias) {
            Some(dir) => {
                let path_var = std::env::var("PATH").ok();
                match profile::write_alias(dir, &spec.program, name, path_var.as_deref()) {
                    Ok(AliasOutcome::Written(p)) => Some(format!("wrote {}", p.display())),
                    Ok(AliasOutcome::Skipped { reason, .. }) => Some(format!("no alias: {reason}")),
                    Err(e) => Some(format!("no alias: {e}")),
                }
            }
            None => None,
        };
        specs.push((results.len(), (spec, false)));
        results.push(Ok(Created {
            profile: name.clone(),
            port: made.port,
            dir: made.paths.dir,
            alias,
            slot: false,
            slot_error: None,
        }));
    }
    let manager = env.manager();
    if manager.supports_registration() && !specs.is_empty() {
        let slots: Vec<(GatewaySpec, bool)> = specs.iter().map(|(_, s)| s.clone()).collect();
        let registered: Vec<Result<(), String>> = match manager.register_many(&slots) {
            Ok(each) => each
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => slots.iter().map(|_| Err(e.to_string())).collect(),
        };
        for ((i, _), outcome) in specs.iter().zip(registered) {
            if let Ok(created) = &mut results[*i] {
                match outcome {
                    Ok(()) => created.slot = true,
                    Err(why) => created.slot_error = Some(why),
                }
            }
        }
    }
    Ok(results)
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub profile: ProfileName,
    /// A slot was stopped and unregistered first.
    pub unregistered: bool,
    pub alias_removed: bool,
}

/// Stop and unregister the gateway, then remove the alias and the profile.
pub fn delete(env: &dyn Environment, name: &ProfileName) -> Result<Deleted, ActionError> {
    let home = env.home();
    if name.is_default() {
        return Err(ProfileError::Default(home.root().to_path_buf(), "deleted").into());
    }
    profile::existing(home, name)?;
    let held = profile::lock(home)?;
    let manager = env.manager();
    let unregistered = has_slot(&*manager, name);
    if unregistered {
        let result = if manager.supports_registration() {
            manager.unregister(name)
        } else {
            manager.uninstall(name)
        };
        result.map_err(|source| ActionError::Service {
            verb: Action::Stop,
            profile: name.clone(),
            source: Box::new(source),
            log_tail: Vec::new(),
        })?;
    }
    stop_unsupervised(&home.profile(name))?;
    let alias_removed = match env.alias_dir() {
        Some(dir) => profile::remove_alias(dir, name).map_err(|source| ActionError::Alias {
            profile: name.clone(),
            source,
        })?,
        None => false,
    };
    profile::remove(home, &held, name)?;
    Ok(Deleted {
        profile: name.clone(),
        unregistered,
        alias_removed,
    })
}

/// How long a gateway run by hand gets to stop before delete gives up.
const UNSUPERVISED_STOP: Duration = Duration::from_secs(10);

/// A gateway run by hand (`gateway run --no-supervise`) still holds the
/// profile lock: ask it to stop before its directory goes away. It is
/// named from the kernel's lock table and never found out by taking the
/// lock: a stop or a `gateway run --replace` reading the table at that
/// moment would take this command for the gateway and signal it. A holder
/// in another pid namespace is not in the table; only a second container
/// on the volume could be one, and the volume lock refuses that.
fn stop_unsupervised(paths: &ProfilePaths) -> Result<(), ActionError> {
    let lock = paths.gateway_lock();
    let Some(pid) = fsutil::flock_holder(&lock) else {
        return Ok(());
    };
    let stop_error = |reason: String| ActionError::StopUnsupervised {
        profile: paths.name.clone(),
        pid,
        reason,
    };
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        // Gone already: the lock is about to be free.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(stop_error(format!("SIGTERM: {e}"))),
    }
    let released = wait::until(
        Instant::now() + UNSUPERVISED_STOP,
        Duration::from_millis(20),
        || fsutil::flock_holder(&lock) != Some(pid),
    );
    if !released {
        return Err(stop_error(format!(
            "still running {}s after SIGTERM",
            UNSUPERVISED_STOP.as_secs()
        )));
    }
    match fsutil::flock_holder(&lock) {
        None => Ok(()),
        Some(other) => Err(stop_error(format!(
            "pid {other} took the gateway lock once pid {pid} let it go"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Environment;
    use crate::fake::{FakeEnv, Slot};
    use hermes_core::service::Want;
    use hermes_core::state::{self, DesiredState};

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn start_registers_a_profile_without_slot_and_records_desire() {
        let env = FakeEnv::new();
        let p = env.add_profile("coder");
        let out = lifecycle(&env, &p, Action::Start, T).unwrap();
        assert!(out.registered && out.status.service.up);
        assert_eq!(
            env.calls(),
            ["start coder", "register coder", "start coder"]
        );
        let s = state::load(&Environment::home(&env).profile(&p).state())
            .unwrap()
            .state();
        assert_eq!(s.desired_state, Some(DesiredState::Running));

        let out = lifecycle(&env, &p, Action::Stop, T).unwrap();
        assert!(!out.status.service.up && !out.registered);
        assert_eq!(env.slot("coder").unwrap().want, Want::Down);
        let s = state::load(&Environment::home(&env).profile(&p).state())
            .unwrap()
            .state();
        assert_eq!(s.desired_state, Some(DesiredState::Stopped));
        assert!(out.message.contains("down"), "{}", out.message);
    }

    #[test]
    fn many_answer_in_the_order_given_and_fail_alone() {
        let env = FakeEnv::new();
        let a = env.add_profile("alpha");
        let b = env.add_profile("bravo");
        env.set_slot("bravo", Slot::down(Want::Down));
        let ghost = ProfileName::parse("ghost").unwrap();
        let order = [b.clone(), ghost, a.clone()];
        let out = lifecycle_many(&env, &order, Action::Start, T);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().profile, b);
        assert!(out[1].as_ref().unwrap_err().is_not_found());
        let alpha = out[2].as_ref().unwrap();
        assert!(alpha.registered && alpha.status.service.up, "{alpha:?}");
        // The unknown profile never reaches the manager; the slotless one is registered.
        assert_eq!(
            env.calls(),
            [
                "start bravo",
                "start alpha",
                "register alpha",
                "start alpha"
            ]
        );
        for p in [&a, &b] {
            let s = state::load(&Environment::home(&env).profile(p).state())
                .unwrap()
                .state();
            assert_eq!(s.desired_state, Some(DesiredState::Running), "{p}");
        }
        let out = lifecycle_many(&env, &[a.clone(), b.clone()], Action::Stop, T);
        assert!(out.iter().all(|r| !r.as_ref().unwrap().status.service.up));
    }

    #[test]
    fn unknown_profiles_are_not_found() {
        let env = FakeEnv::new();
        let p = ProfileName::parse("ghost").unwrap();
        let err = lifecycle(&env, &p, Action::Start, T).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(env.calls().is_empty());
        assert!(delete(&env, &p).unwrap_err().is_not_found());
    }

    #[test]
    fn create_registers_a_down_slot_and_delete_unregisters_first() {
        let env = FakeEnv::new();
        let p = ProfileName::parse("newbie").unwrap();
        let created = create(&env, &p, None, true).unwrap();
        assert!(created.slot);
        assert_eq!(
            hermes_core::config::Config::read_port(&created.dir.join("config.yaml")),
            Some(created.port)
        );
        assert_eq!(env.slot("newbie").unwrap().want, Want::Down);
        assert!(create(&env, &p, None, true).unwrap_err().is_conflict());
        let deleted = delete(&env, &p).unwrap();
        assert!(deleted.unregistered);
        assert_eq!(env.calls(), ["register newbie", "unregister newbie"]);
        assert!(!created.dir.exists());
        assert!(delete(&env, &ProfileName::default_profile())
            .unwrap_err()
            .is_conflict());
    }

    #[test]
    fn delete_stops_a_gateway_run_by_hand_first() {
        let env = FakeEnv::new();
        let p = env.add_profile("manual");
        let paths = Environment::home(&env).profile(&p);
        // A stand-in for `gateway run --no-supervise`: holds the lock until SIGTERM.
        let lock = paths.gateway_lock().display().to_string();
        // -o: only flock holds the lock (its child does not inherit it), so
        // SIGTERM to flock releases it; the child exits when stdin closes.
        let mut child = std::process::Command::new("flock")
            .args(["-o", lock.as_str(), "sh", "-c", "read _"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run flock (util-linux)");
        let taken = wait::until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(5),
            || {
                fsutil::try_lock_exclusive(&paths.gateway_lock())
                    .unwrap()
                    .is_none()
            },
        );
        assert!(taken, "flock never took the lock");
        // The holder is named from the lock table, not from the pid file.
        std::fs::write(paths.pid_file(), b"not a pid").unwrap();
        delete(&env, &p).unwrap();
        assert!(!paths.dir.exists());
        drop(child.stdin.take());
        let _ = child.wait();
    }
}
