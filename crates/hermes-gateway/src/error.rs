//! Why the gateway could not start or keep running, and the exit code each means.

use std::path::PathBuf;

use hermes_core::config::ConfigError;
use hermes_core::fsutil::FsError;
use hermes_core::ports::PortClash;
use hermes_core::profile::ProfileError;
use hermes_core::state::StateError;
use hermes_core::ExitStatus;
use hermes_inbox::InboxError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("--notify-fd {fd} is not usable: {reason}")]
    NotifyFd { fd: i32, reason: String },
    #[error(
        "the gateway of profile '{profile}' is already running ({}, lock {}); use --replace to take over",
        pid.map_or("pid unknown".to_string(), |p| format!("pid {p}")),
        lock.display()
    )]
    AlreadyRunning {
        profile: String,
        pid: Option<i32>,
        lock: PathBuf,
    },
    #[error("unable to take over {}: {message}", lock.display())]
    ReplaceFailed { lock: PathBuf, message: String },
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    PortClash(#[from] PortClash),
    #[error("{}: HERMES_WEBHOOK_SECRET is missing or empty; the webhook inbox cannot verify senders", path.display())]
    NoSecret { path: PathBuf },
    #[error("inbox: {0}")]
    Inbox(#[from] InboxError),
    #[error("unable to listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("unable to start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl GatewayError {
    /// The exit code table of `hermes_core::exit`: 78 is never restarted by the supervisor.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            GatewayError::NotifyFd { .. } => ExitStatus::Usage,
            GatewayError::AlreadyRunning { .. } => ExitStatus::AlreadyRunning,
            GatewayError::Config(_)
            | GatewayError::PortClash(_)
            | GatewayError::NoSecret { .. }
            | GatewayError::Inbox(InboxError::NotADirectory { .. })
            | GatewayError::Profile(ProfileError::NotFound(_))
            | GatewayError::Profile(ProfileError::NotAProfile(_) | ProfileError::Symlink(_)) => {
                ExitStatus::Config
            }
            _ => ExitStatus::Failure,
        }
    }
}
