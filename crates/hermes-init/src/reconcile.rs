//! Boot reconciliation: rebuild the gateway slots from the volume, because
//! the scandir does not survive a container restart but the profiles do.
//!
//! `decide` is the policy, a pure function of what the state file says;
//! `run` applies it to every profile (`default` first, then sorted names),
//! through any `ServiceManager` that supports registration.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hermes_core::fsutil::{self, FsError};
use hermes_core::profile;
use hermes_core::state::{self, DesiredState, Loaded, RunState};
use hermes_core::{HermesHome, ProfileName};

/// The boot log is moved to `.1` once it reaches this size.
pub const BOOT_LOG_ROTATE_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Register the slot and start the gateway.
    Start,
    /// Register the slot with its `down` marker.
    Down,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Down => "down",
        }
    }
}

/// The decision for one profile and what it was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// What the state file said, for the log line (`desired=running`, `missing`, …).
    pub prior: String,
}

/// `desired_state` decides; without one, a gateway that was serving when the
/// container went away (`running`, `degraded`, `draining`) comes back; any
/// other state, a missing file or a corrupt one leaves the slot down.
pub fn decide(loaded: &Loaded) -> Decision {
    let (action, prior) = match loaded {
        Loaded::Missing => (Action::Down, "missing".to_string()),
        Loaded::Corrupt(_) => (Action::Down, "corrupt".to_string()),
        Loaded::Found(s) => match (s.desired_state, s.gateway_state) {
            (Some(DesiredState::Running), _) => (Action::Start, "desired=running".to_string()),
            (Some(DesiredState::Stopped), _) => (Action::Down, "desired=stopped".to_string()),
            (None, Some(st @ (RunState::Running | RunState::Degraded | RunState::Draining))) => {
                (Action::Start, format!("state={}", st.as_str()))
            }
            (None, Some(st)) => (Action::Down, format!("state={}", st.as_str())),
            (None, None) => (Action::Down, "empty".to_string()),
        },
    };
    Decision { action, prior }
}

/// One line of the boot report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportLine {
    Applied {
        profile: ProfileName,
        decision: Decision,
        /// The slot already existed (a manual run on a live container): left as it is.
        kept: bool,
    },
    Skipped {
        entry: String,
    },
    Failed {
        profile: ProfileName,
        decision: Decision,
        error: String,
    },
}

impl ReportLine {
    pub fn line(&self, dry_run: bool) -> String {
        let dry = if dry_run { " dry_run=1" } else { "" };
        match self {
            ReportLine::Applied {
                profile,
                decision,
                kept,
            } => {
                let action = if *kept {
                    "kept"
                } else {
                    decision.action.as_str()
                };
                format!(
                    "reconcile: profile={profile} prior={} action={action}{dry}",
                    decision.prior
                )
            }
            ReportLine::Skipped { entry } => {
                format!("reconcile: warning: skipped {entry}{dry}")
            }
            ReportLine::Failed {
                profile,
                decision,
                error,
            } => format!(
                "reconcile: profile={profile} prior={} action=failed error={error:?}{dry}",
                decision.prior
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Remove files that only mean something while a gateway runs.
fn remove_stale(home: &HermesHome, name: &ProfileName) -> Result<(), FsError> {
    for path in home.profile(name).stale_runtime_files() {
        match fsutil::remove_file(&path) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Reconcile every profile. `registered` are the slots that already exist
/// (a manual run on a live container): they are left as they are.
/// `register` publishes a batch of `(profile, start)` slots with one result
/// each (the s6 backend scans once for all of them). `report` gets every
/// line. `stopping` is asked before each profile is looked at: when it says
/// yes, nothing more is done and `None` is returned (with 1000 profiles the
/// look took 100-250 ms in the container, which a `docker run IMAGE true`
/// waited for).
pub fn run(
    home: &HermesHome,
    registered: &[ProfileName],
    dry_run: bool,
    stopping: impl Fn() -> bool,
    register: impl FnOnce(&[(ProfileName, bool)]) -> Vec<Result<(), String>>,
    mut report: impl FnMut(&ReportLine),
) -> Result<Option<Vec<ReportLine>>, ReconcileError> {
    if !dry_run {
        profile::ensure_root(home).map_err(|e| match e {
            profile::ProfileError::Fs(fs) => ReconcileError::Fs(fs),
            other => ReconcileError::Fs(FsError::new(
                "prepare",
                home.root(),
                io::Error::other(other.to_string()),
            )),
        })?;
    }
    let mut names = vec![ProfileName::default_profile()];
    let mut outcomes = Vec::new();
    for entry in profile::named_profiles(home)? {
        match entry {
            Ok(name) => names.push(name),
            Err(why) => {
                let outcome = ReportLine::Skipped { entry: why };
                report(&outcome);
                outcomes.push(outcome);
            }
        }
    }
    // (profile, decision, kept, error so far); in the batch when neither
    // kept nor failed (not in a dry run).
    let mut plan = Vec::with_capacity(names.len());
    let mut batch = Vec::new();
    let registered: HashSet<&ProfileName> = registered.iter().collect();
    for name in names {
        if stopping() {
            return Ok(None);
        }
        let decision = decide(&state::load(&home.profile(&name).state())?);
        let kept = registered.contains(&name);
        let mut error = None;
        if !dry_run && !kept {
            match remove_stale(home, &name) {
                Ok(()) => batch.push((name.clone(), decision.action == Action::Start)),
                Err(e) => error = Some(e.to_string()),
            }
        }
        plan.push((name, decision, kept, error));
    }
    let mut results = if batch.is_empty() {
        Vec::new()
    } else {
        register(&batch)
    }
    .into_iter();
    for (name, decision, kept, mut error) in plan {
        if !dry_run && !kept && error.is_none() {
            if let Some(Err(e)) = results.next() {
                error = Some(e);
            }
        }
        let outcome = match error {
            None => ReportLine::Applied {
                profile: name,
                decision,
                kept,
            },
            Some(error) => ReportLine::Failed {
                profile: name,
                decision,
                error,
            },
        };
        report(&outcome);
        outcomes.push(outcome);
    }
    Ok(Some(outcomes))
}

/// Append `lines` to the boot log, first moving a full log to `.1`.
pub fn append_boot_log(path: &Path, lines: &[String]) -> Result<(), FsError> {
    if let Some(parent) = path.parent() {
        fsutil::ensure_dir(parent, 0o755)?;
    }
    if let Ok(meta) = fsutil::symlink_metadata(path) {
        if meta.len() >= BOOT_LOG_ROTATE_BYTES {
            let old = path.with_extension("log.1");
            fsutil::rename(path, &old)?;
        }
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))?;
    let stamp = state::utc_timestamp(state::now_ms());
    let text: String = lines.iter().map(|l| format!("{stamp} {l}\n")).collect();
    file.write_all(text.as_bytes())
        .map_err(|e| FsError::new("append to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::state::GatewayState;
    use std::fs;

    fn found(desired: Option<DesiredState>, run: Option<RunState>) -> Loaded {
        Loaded::Found(GatewayState {
            desired_state: desired,
            gateway_state: run,
            ..GatewayState::default()
        })
    }

    #[test]
    fn desired_state_wins() {
        let d = decide(&found(Some(DesiredState::Running), Some(RunState::Stopped)));
        assert_eq!(d.action, Action::Start);
        assert_eq!(d.prior, "desired=running");
        let d = decide(&found(Some(DesiredState::Stopped), Some(RunState::Running)));
        assert_eq!(d.action, Action::Down);
    }

    #[test]
    fn gateway_state_is_the_fallback() {
        for st in [RunState::Running, RunState::Degraded, RunState::Draining] {
            assert_eq!(
                decide(&found(None, Some(st))).action,
                Action::Start,
                "{st:?}"
            );
        }
        for st in [
            RunState::Starting,
            RunState::Stopped,
            RunState::StartupFailed,
        ] {
            assert_eq!(
                decide(&found(None, Some(st))).action,
                Action::Down,
                "{st:?}"
            );
        }
    }

    #[test]
    fn missing_corrupt_or_empty_state_is_down() {
        assert_eq!(decide(&Loaded::Missing).action, Action::Down);
        assert_eq!(decide(&Loaded::Missing).prior, "missing");
        assert_eq!(decide(&Loaded::Corrupt("bad".into())).prior, "corrupt");
        assert_eq!(decide(&found(None, None)).action, Action::Down);
    }

    #[test]
    fn boot_log_rotates_at_256_kib() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/container-boot.log");
        append_boot_log(&log, &["first".into()]).unwrap();
        assert!(fs::read_to_string(&log).unwrap().ends_with(" first\n"));
        let big = "x".repeat(BOOT_LOG_ROTATE_BYTES as usize);
        append_boot_log(&log, &[big]).unwrap();
        append_boot_log(&log, &["after".into()]).unwrap();
        let rotated = dir.path().join("logs/container-boot.log.1");
        assert!(fs::read_to_string(&rotated).unwrap().contains(" first\n"));
        let current = fs::read_to_string(&log).unwrap();
        assert!(current.ends_with(" after\n") && current.lines().count() == 1);
    }

    /// Records the batch instead of talking to a supervisor.
    fn recorder(
        calls: &std::cell::RefCell<Vec<(String, bool)>>,
    ) -> impl FnOnce(&[(ProfileName, bool)]) -> Vec<Result<(), String>> + '_ {
        move |batch| {
            calls
                .borrow_mut()
                .extend(batch.iter().map(|(n, s)| (n.to_string(), *s)));
            batch.iter().map(|_| Ok(())).collect()
        }
    }

    #[test]
    fn reconciles_default_then_sorted_profiles_and_skips_strays() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        for name in ["zeta", "alpha"] {
            let held = profile::lock(&home).unwrap();
            profile::create(&home, &held, &ProfileName::parse(name).unwrap(), None).unwrap();
        }
        fs::create_dir_all(home.profiles_dir().join("stray")).unwrap();
        fs::create_dir_all(home.profiles_dir().join("Bad Name")).unwrap();
        let alpha = home.profile(&ProfileName::parse("alpha").unwrap());
        fs::write(alpha.state(), r#"{"desired_state":"running"}"#).unwrap();
        fs::write(alpha.pid_file(), "123").unwrap();
        let zeta = home.profile(&ProfileName::parse("zeta").unwrap());
        fs::write(zeta.state(), "{corrupt").unwrap();

        let calls = std::cell::RefCell::new(Vec::new());
        let dry = run(&home, &[], true, || false, recorder(&calls), |_| {})
            .unwrap()
            .unwrap();
        assert!(calls.borrow().is_empty(), "dry run registered slots");
        assert!(alpha.pid_file().exists(), "dry run removed a file");
        assert_eq!(dry.len(), 5);

        let mut lines = Vec::new();
        run(
            &home,
            &[],
            false,
            || false,
            recorder(&calls),
            |o| lines.push(o.line(false)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            *calls.borrow(),
            vec![
                ("default".to_string(), false),
                ("alpha".to_string(), true),
                ("zeta".to_string(), false)
            ]
        );
        assert!(!alpha.pid_file().exists(), "stale gateway.pid survived");
        let skipped: Vec<_> = lines.iter().filter(|l| l.contains("skipped")).collect();
        assert_eq!(skipped.len(), 2, "{lines:#?}");
        assert!(lines
            .contains(&"reconcile: profile=alpha prior=desired=running action=start".to_string()));
        assert!(lines.contains(&"reconcile: profile=zeta prior=corrupt action=down".to_string()));
    }

    #[test]
    fn registered_slots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let calls = std::cell::RefCell::new(Vec::new());
        let out = run(
            &home,
            &[ProfileName::default_profile()],
            false,
            || false,
            recorder(&calls),
            |_| {},
        )
        .unwrap()
        .unwrap();
        assert!(calls.borrow().is_empty());
        assert!(out[0].line(false).ends_with("action=kept"));
    }

    #[test]
    fn a_stop_during_the_look_ends_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        for name in ["a", "b", "c"] {
            let held = profile::lock(&home).unwrap();
            profile::create(&home, &held, &ProfileName::parse(name).unwrap(), None).unwrap();
        }
        let stale = home.profile(&ProfileName::parse("c").unwrap()).pid_file();
        fs::write(&stale, "123").unwrap();
        // The stop arrives while the second profile is looked at.
        let asked = std::cell::Cell::new(0);
        let stopping = || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        };
        let calls = std::cell::RefCell::new(Vec::new());
        let mut lines = Vec::new();
        let out = run(&home, &[], false, stopping, recorder(&calls), |o| {
            lines.push(o.line(false))
        })
        .unwrap();
        assert!(out.is_none());
        assert!(calls.borrow().is_empty(), "slots were published");
        assert!(lines.is_empty(), "{lines:?}");
        assert!(stale.exists(), "profiles after the stop were touched");
    }
}
