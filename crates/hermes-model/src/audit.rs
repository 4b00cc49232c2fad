//! Who did what from the dashboard or the TUI, one line per action:
//! `hermes audit: dashboard client 10.0.0.2: restart coder`. Appended to
//! `logs/audit.log` (with a timestamp) for every front end, and written to
//! stderr for the dashboard, whose stderr is its s6-log: timestamped and, in
//! the container, copied to `docker logs`. The TUI's stderr is its screen,
//! so its lines go to the file alone.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use hermes_core::fsutil::FsError;
use hermes_core::{state, HermesHome};
use nix::fcntl::OFlag;

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in dashboard client, by address.
    Dashboard(IpAddr),
    /// The terminal console, by the user it runs as.
    Tui(String),
}

impl Actor {
    /// The TUI of this process's user (`$USER`, else the uid).
    pub fn tui() -> Actor {
        Actor::Tui(
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid())),
        )
    }

    fn describe(&self) -> String {
        match self {
            Actor::Dashboard(ip) => format!("dashboard client {ip}"),
            Actor::Tui(user) => format!("tui user {user}"),
        }
    }
}

/// The audit file, beside the gateway logs.
pub fn path(home: &HermesHome) -> PathBuf {
    home.logs_dir().join("audit.log")
}

/// The target of a batched action (start all, stop all).
pub const ALL: &str = "all";

/// The line for one action (`start`, `stop`, `restart`, `create`, `delete`)
/// on `target`: a profile's name, or [`ALL`].
pub fn line(actor: &Actor, action: &str, target: &str) -> String {
    format!("hermes audit: {}: {action} {target}", actor.describe())
}

/// Record an action before it is carried out. A failure to record is
/// reported on stderr (for the dashboard) and never stops the action.
pub fn record(home: &HermesHome, actor: &Actor, action: &str, target: &str) {
    let line = line(actor, action, target);
    let appended = append(home, &line);
    if matches!(actor, Actor::Dashboard(_)) {
        eprintln!("{line}");
        if let Err(e) = appended {
            eprintln!("hermes audit: {e}");
        }
    }
}

fn append(home: &HermesHome, line: &str) -> Result<(), FsError> {
    let file = path(home);
    hermes_core::fsutil::ensure_dir(&home.logs_dir(), 0o755)?;
    let stamped = format!("{}  {line}\n", state::utc_timestamp(state::now_ms()));
    // One write of a short line with O_APPEND: lines of concurrent writers
    // (the dashboard and a TUI) never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&file)
        .and_then(|mut f| f.write_all(stamped.as_bytes()))
        .map_err(|e| FsError::new("append to", &file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_appended_with_who_and_what() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let coder = "coder";
        let client = Actor::Dashboard("10.0.0.2".parse().unwrap());
        assert_eq!(
            line(&client, "restart", coder),
            "hermes audit: dashboard client 10.0.0.2: restart coder"
        );
        record(&home, &client, "restart", coder);
        record(&home, &Actor::Tui("ops".into()), "delete", coder);
        let text = std::fs::read_to_string(path(&home)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("  hermes audit: dashboard client 10.0.0.2: restart coder"));
        assert!(lines[1].ends_with("  hermes audit: tui user ops: delete coder"));
        assert!(lines[1].starts_with(&state::utc_timestamp(state::now_ms())[..10]));
    }
}
