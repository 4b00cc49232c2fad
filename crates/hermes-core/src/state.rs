//! `gateway_state.json`: what the gateway reports about itself (`gateway_state`),
//! what the operator asked for (`desired_state`, written only by start, stop and
//! restart) and the supervisor's record of exits. Written atomically; fields
//! this version does not know are kept on rewrite; a corrupt file reads as "no state".

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fsutil::{self, Durability, FsError};
use crate::home::ProfilePaths;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Starting,
    Running,
    Degraded,
    Draining,
    Stopped,
    StartupFailed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Degraded => "degraded",
            RunState::Draining => "draining",
            RunState::Stopped => "stopped",
            RunState::StartupFailed => "startup_failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

/// The signals a gateway ends cleanly on; the one it got is recorded as its
/// `exit_reason` (`sigterm`, `sigint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    pub fn as_str(self) -> &'static str {
        match self {
            StopSignal::Term => "sigterm",
            StopSignal::Int => "sigint",
        }
    }
}

/// How the gateway process last ended, as its finish hook saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit code, absent when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_state: Option<RunState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    /// Consecutive short runs that ended in failure; drives the crash-loop back-off.
    #[serde(default)]
    pub fast_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// When the current (or last) gateway process started, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub updated_at: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GatewayState {
    /// Record a clean stop on `signal`.
    /// A stop on `signal`. SIGTERM is a requested stop, not a failure: the
    /// crash-loop count starts again (the finish hook's policy, and what the
    /// gateway records itself so the hook has nothing left to write).
    pub fn record_stop(&mut self, signal: StopSignal) {
        self.gateway_state = Some(RunState::Stopped);
        self.exit_reason = Some(signal.as_str().to_string());
        if signal == StopSignal::Term {
            self.fast_failures = 0;
        }
    }

    /// Stopped on SIGTERM, the way s6 and `hermes gateway stop` end a gateway:
    /// a requested stop, not a failure.
    pub fn stopped_on_request(&self) -> bool {
        self.gateway_state == Some(RunState::Stopped)
            && self.exit_reason.as_deref() == Some(StopSignal::Term.as_str())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` from milliseconds since the epoch.
pub fn utc_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("unable to encode {path}: {source}")]
    Encode {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

/// What reading the state file found.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    /// Present but unreadable as state; the text says why. Treated as no state.
    Corrupt(String),
    Found(GatewayState),
}

impl Loaded {
    pub fn state(self) -> GatewayState {
        match self {
            Loaded::Found(state) => state,
            Loaded::Missing | Loaded::Corrupt(_) => GatewayState::default(),
        }
    }
}

pub fn load(path: &Path) -> Result<Loaded, FsError> {
    match fsutil::read_no_follow(path) {
        Ok(bytes) => Ok(match serde_json::from_slice::<GatewayState>(&bytes) {
            Ok(state) => Loaded::Found(state),
            Err(e) => Loaded::Corrupt(e.to_string()),
        }),
        Err(e) if e.is_not_found() => Ok(Loaded::Missing),
        Err(e) => Err(e),
    }
}

pub fn save(path: &Path, state: &GatewayState) -> Result<(), StateError> {
    save_with(path, state, Durability::Durable)
}

fn save_with(path: &Path, state: &GatewayState, durability: Durability) -> Result<(), StateError> {
    let mut text = serde_json::to_vec_pretty(state).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    text.push(b'\n');
    fsutil::replace(path, &text, 0o600, durability)?;
    Ok(())
}

/// Read-modify-write under the profile's state lock, stamping `updated_at`;
/// the new state is on disk when this returns.
pub fn update<T>(
    profile: &ProfilePaths,
    change: impl FnOnce(&mut GatewayState) -> T,
) -> Result<T, StateError> {
    update_with(profile, Durability::Durable, change)
}

/// [`update`], with the promise after a power loss that `durability` names:
/// [`Durability::Atomic`] for what the gateway reports about itself (the
/// next process to start rewrites it anyway, and the wish recorded beside
/// it is never lost to a torn file), or for a batch that syncs every
/// profile's directory itself once all are written.
pub fn update_with<T>(
    profile: &ProfilePaths,
    durability: Durability,
    change: impl FnOnce(&mut GatewayState) -> T,
) -> Result<T, StateError> {
    let _lock = fsutil::lock_exclusive(&profile.state_lock())?;
    let path = profile.state();
    let mut state = load(&path)?.state();
    let out = change(&mut state);
    state.updated_at = now_ms();
    save_with(&path, &state, durability)?;
    Ok(out)
}

/// [`update_with`] that writes only when `change` changes what the file
/// says: a wish already recorded (a start of a fleet already running)
/// costs one read instead of a replacement and its fsync. A missing or
/// corrupt file is always written. Whether it wrote.
pub fn update_if_changed(
    profile: &ProfilePaths,
    durability: Durability,
    change: impl FnOnce(&mut GatewayState),
) -> Result<bool, StateError> {
    let _lock = fsutil::lock_exclusive(&profile.state_lock())?;
    let path = profile.state();
    let (found, mut state) = match load(&path)? {
        Loaded::Found(state) => (true, state),
        Loaded::Missing | Loaded::Corrupt(_) => (false, GatewayState::default()),
    };
    let before = found.then(|| state.clone());
    change(&mut state);
    if before.as_ref() == Some(&state) {
        return Ok(false);
    }
    state.updated_at = now_ms();
    save_with(&path, &state, durability)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::HermesHome;
    use crate::name::ProfileName;

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let paths = home.profile(&ProfileName::default_profile());
        std::fs::write(
            paths.state(),
            r#"{"gateway_state":"running","platforms":{"x":1},"kind":"hermes-gateway"}"#,
        )
        .unwrap();
        update(&paths, |s| s.desired_state = Some(DesiredState::Stopped)).unwrap();
        let raw: Value = serde_json::from_slice(&std::fs::read(paths.state()).unwrap()).unwrap();
        assert_eq!(raw["platforms"]["x"], 1);
        assert_eq!(raw["kind"], "hermes-gateway");
        assert_eq!(raw["desired_state"], "stopped");
        assert_eq!(raw["gateway_state"], "running");
    }

    #[test]
    fn update_if_changed_writes_a_change_or_a_missing_or_corrupt_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let paths = home.profile(&ProfileName::default_profile());
        let stop = |s: &mut GatewayState| s.desired_state = Some(DesiredState::Stopped);
        assert!(update_if_changed(&paths, Durability::Atomic, stop).unwrap());
        let first = std::fs::read(paths.state()).unwrap();
        assert!(!update_if_changed(&paths, Durability::Atomic, stop).unwrap());
        assert_eq!(std::fs::read(paths.state()).unwrap(), first, "rewritten");
        assert!(update_if_changed(&paths, Durability::Atomic, |s| s.restarts = 1).unwrap());
        std::fs::write(paths.state(), b"{not json").unwrap();
        assert!(update_if_changed(&paths, Durability::Atomic, |_| {}).unwrap());
        assert!(matches!(load(&paths.state()).unwrap(), Loaded::Found(_)));
    }

    #[test]
    fn corrupt_state_reads_as_none_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let paths = home.profile(&ProfileName::default_profile());
        std::fs::write(paths.state(), b"{not json").unwrap();
        assert!(matches!(load(&paths.state()).unwrap(), Loaded::Corrupt(_)));
        update(&paths, |s| s.gateway_state = Some(RunState::Starting)).unwrap();
        let state = load(&paths.state()).unwrap().state();
        assert_eq!(state.gateway_state, Some(RunState::Starting));
        assert!(state.updated_at > 0);
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn states_serialise_in_snake_case() {
        let s = serde_json::to_string(&RunState::StartupFailed).unwrap();
        assert_eq!(s, "\"startup_failed\"");
    }
}
