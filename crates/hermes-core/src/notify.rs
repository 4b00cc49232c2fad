//! Notifications: the `notify:` section of `config.yaml`, the durable outbox
//! the finish hook appends to, and the sender's per-target records that
//! `doctor` reads. Delivery itself is `hermes-notify`'s.
//!
//! ```yaml
//! notify:
//!   targets:
//!     - url: https://hooks.example/hermes     # http:// or https://
//!       format: json                          # json (signed, v2) | slack
//!       events: [parked, crash_loop, recovered, dead_at_boot, stopping]  # default: all
//!       secret_var: HERMES_NOTIFY_SECRET      # in the root .env; default HERMES_WEBHOOK_SECRET
//!       ca_file: /opt/data/private-ca.pem     # https: trust only these CAs (default: the system's)
//! ```
//!
//! The root profile's section applies to every profile; a profile's own
//! `notify:` section replaces it for events about that profile
//! (`notify: {targets: []}` silences one). The section is read apart from the
//! rest of `config.yaml`: a mistake in it never stops a gateway, it shows in
//! `doctor`, and the events wait in the outbox until it is fixed.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError};
use crate::home::HermesHome;
use crate::name::ProfileName;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The crash-loop policy parked a gateway (`startup_failed`, with the reason).
    Parked,
    /// A gateway failed twice in a row soon after starting: restarts back off.
    CrashLoop,
    /// A gateway that was parked or crash-looping serves again.
    Recovered,
    /// A gateway wanted running was not running shortly after the container booted.
    DeadAtBoot,
    /// The container is stopping while gateways are up.
    Stopping,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Parked,
        EventKind::CrashLoop,
        EventKind::Recovered,
        EventKind::DeadAtBoot,
        EventKind::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Parked => "parked",
            EventKind::CrashLoop => "crash_loop",
            EventKind::Recovered => "recovered",
            EventKind::DeadAtBoot => "dead_at_boot",
            EventKind::Stopping => "stopping",
        }
    }
}

/// One line of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique; sent as `Idempotency-Key` so a receiver can drop a repeat.
    pub id: String,
    pub kind: EventKind,
    /// The gateway it is about (`None` for the container's own events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `stopping`: the gateways that were up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

/// Longest reason kept in an event (the outbox stays small; the log has the rest).
const MAX_REASON: usize = 1000;

impl Event {
    pub fn new(kind: EventKind, profile: Option<&ProfileName>, at_ms: u64) -> Event {
        let mut nonce = [0u8; 6];
        // A clock and pid already make ids distinct; the nonce covers two
        // events of one kind in the same millisecond from one process.
        let _ = getrandom::getrandom(&mut nonce);
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let who = profile.map_or("container", |p| p.as_str());
        Event {
            id: format!("{at_ms}-{who}-{}-{hex}", kind.as_str()),
            kind,
            profile: profile.map(|p| p.to_string()),
            at_ms,
            reason: None,
            gateways: Vec::new(),
        }
    }

    pub fn with_reason(mut self, reason: &str) -> Event {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.reason = Some(reason[..end].to_string());
        self
    }
}

pub fn outbox_path(home: &HermesHome) -> PathBuf {
    home.notify_dir().join("outbox.jsonl")
}

pub fn status_path(home: &HermesHome) -> PathBuf {
    home.notify_dir().join("targets.json")
}

/// Append `events` durably (one `write` of whole lines under a lock, then
/// fsync): the finish hook's whole cost.
pub fn append(home: &HermesHome, events: &[Event]) -> Result<(), FsError> {
    if events.is_empty() {
        return Ok(());
    }
    let dir = home.notify_dir();
    fsutil::ensure_dir(&dir, 0o755)?;
    let path = outbox_path(home);
    let _lock = fsutil::lock_exclusive(&dir.join(".outbox.lock"))?;
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| FsError::new("open", &path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| FsError::new("append to", &path, e))
}

/// Every event in the outbox, in order; a torn last line (a crash mid-write)
/// and unreadable lines are skipped.
pub fn read_outbox(home: &HermesHome) -> Result<Vec<Event>, FsError> {
    let path = outbox_path(home);
    let bytes = match fsutil::read_no_follow(&path) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// Rewrite the outbox with what `select` keeps of it, under the append lock
/// (no event appended meanwhile is lost) and by write-new-then-rename (a
/// crash leaves the old outbox or the new one, never a mix). Returns what
/// was kept.
pub fn compact_outbox(
    home: &HermesHome,
    select: impl FnOnce(Vec<Event>) -> Vec<Event>,
) -> Result<Vec<Event>, FsError> {
    let dir = home.notify_dir();
    fsutil::ensure_dir(&dir, 0o755)?;
    let _lock = fsutil::lock_exclusive(&dir.join(".outbox.lock"))?;
    let kept = select(read_outbox(home)?);
    let mut text = String::new();
    for e in &kept {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    fsutil::atomic_write(&outbox_path(home), text.as_bytes(), 0o644)?;
    Ok(kept)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The event as JSON, signed like an inbox delivery (`X-Hermes-Signature: v2=…`).
    #[default]
    Json,
    /// `{"text": …}` for Slack-compatible incoming webhooks.
    Slack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// Which events; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventKind>>,
    /// The variable of the root profile's `.env` holding the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_var: Option<String>,
    /// For `https://`: a PEM file of the CAs to trust instead of the system's
    /// (a private CA), like curl's `--cacert`. Absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where a target's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://`: TLS, the certificate checked against `host`.
    pub tls: bool,
    /// The name (or address, without brackets) the certificate must be for.
    pub host: String,
    /// `host:port` to connect to (an IPv6 address in brackets).
    pub addr: String,
    /// The `Host` header: the URL's authority.
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&kind))
    }

    /// Where an `http://` or `https://` URL points, or why it cannot be used.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            (false, rest)
        } else {
            let scheme = self.url.split_once("://").map_or("none", |(s, _)| s);
            return Err(format!(
                "{}: scheme {scheme} is not supported: use an http:// or https:// URL",
                self.url
            ));
        };
        let scheme = if tls { "https" } else { "http" };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad = || format!("{}: expected {scheme}://HOST[:PORT]/PATH", self.url);
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = match authority.rfind(']') {
            Some(close) if authority.starts_with('[') => (
                &authority[1..close],
                authority[close + 1..].strip_prefix(':'),
            ),
            Some(_) => return Err(bad()),
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad());
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{}: the path holds spaces or control characters",
                self.url
            ));
        }
        if let Some(ca) = &self.ca_file {
            if !tls {
                return Err(format!("{}: ca_file is for https:// URLs", self.url));
            }
            if !ca.is_absolute() {
                return Err(format!(
                    "{}: ca_file {} is not an absolute path",
                    self.url,
                    ca.display()
                ));
            }
        }
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            addr,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// A stable key for this target's delivery record.
    pub fn key(&self) -> String {
        format!("{:?} {}", self.format, self.url).to_lowercase()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// The `notify:` section of a `config.yaml`: `Ok(None)` when absent, `Err`
/// with the path and the mistake when it cannot be used.
pub fn load_section(config: &Path) -> Result<Option<Section>, String> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        notify: Option<Section>,
    }
    let bytes = match fsutil::read_no_follow(config) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let only: Only =
        serde_yaml::from_slice(&bytes).map_err(|e| format!("{}: notify: {e}", config.display()))?;
    if let Some(section) = &only.notify {
        for t in &section.targets {
            t.endpoint()
                .map_err(|e| format!("{}: notify: {e}", config.display()))?;
        }
    }
    Ok(only.notify)
}

/// The targets for events about `profile` (the container's own: `None`).
pub fn targets_for(
    home: &HermesHome,
    profile: Option<&ProfileName>,
) -> Result<Vec<Target>, String> {
    if let Some(p) = profile.filter(|p| !p.is_default()) {
        if let Some(own) = load_section(&home.profile(p).config())? {
            return Ok(own.targets);
        }
    }
    let root = home.profile(&ProfileName::default_profile());
    Ok(load_section(&root.config())?.unwrap_or_default().targets)
}

/// The sender's record of one target, for `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub url: String,
    /// Events delivered (2xx) so far.
    pub delivered: u64,
    /// Attempts that failed since the last success.
    pub failures: u64,
    /// When the first of those failed, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Events waiting for this target.
    pub pending: u64,
}

/// What the sender knows, saved after every change: per target key, its
/// record and the ids it has delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderState {
    #[serde(default)]
    pub targets: BTreeMap<String, TargetRecord>,
    /// The boot (its report's `at_ms`) whose dead gateways were already looked for.
    #[serde(default)]
    pub boot_checked: u64,
    /// Problems that stop delivery altogether (a config mistake), for `doctor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub status: TargetStatus,
    /// Ids of the outbox events delivered to this target.
    #[serde(default)]
    pub delivered_ids: Vec<String>,
}

impl SenderState {
    pub fn load(home: &HermesHome) -> SenderState {
        fsutil::read_no_follow(&status_path(home))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, home: &HermesHome) -> Result<(), FsError> {
        fsutil::ensure_dir(&home.notify_dir(), 0o755)?;
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        fsutil::atomic_write(&status_path(home), &text, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target {
            url: url.into(),
            format: Format::Json,
            events: None,
            secret_var: None,
            ca_file: None,
        }
    }

    fn endpoint(url: &str) -> (bool, String, String, String, String) {
        let e = target(url).endpoint().unwrap();
        (e.tls, e.host, e.addr, e.authority, e.path)
    }

    #[test]
    fn http_and_https_urls_split_and_others_are_refused() {
        let s = |v: &str| v.to_string();
        assert_eq!(
            endpoint("http://127.0.0.1:9000/a/b"),
            (
                false,
                s("127.0.0.1"),
                s("127.0.0.1:9000"),
                s("127.0.0.1:9000"),
                s("/a/b")
            )
        );
        assert_eq!(
            endpoint("http://relay"),
            (false, s("relay"), s("relay:80"), s("relay"), s("/"))
        );
        assert_eq!(
            endpoint("http://[::1]/x"),
            (false, s("::1"), s("[::1]:80"), s("[::1]"), s("/x"))
        );
        assert_eq!(
            endpoint("https://hooks.example/x?a=1"),
            (
                true,
                s("hooks.example"),
                s("hooks.example:443"),
                s("hooks.example"),
                s("/x?a=1")
            )
        );
        assert_eq!(
            endpoint("https://[::1]:8443/"),
            (true, s("::1"), s("[::1]:8443"), s("[::1]:8443"), s("/"))
        );
        for bad in [
            "ftp://h/x",
            "127.0.0.1:9000",
            "http://u@h/",
            "https://h:port/",
            "https://:443/",
            "http://h/a b",
        ] {
            assert!(target(bad).endpoint().is_err(), "{bad}");
        }
        assert!(target("ftp://h/x")
            .endpoint()
            .unwrap_err()
            .contains("scheme ftp"));
        let with_ca = |url: &str, ca: &str| Target {
            ca_file: Some(ca.into()),
            ..target(url)
        };
        assert!(with_ca("https://h/", "/etc/ca.pem").endpoint().is_ok());
        for (url, ca, why) in [
            ("https://h/", "ca.pem", "absolute"),
            ("http://h/", "/etc/ca.pem", "https"),
        ] {
            let err = with_ca(url, ca).endpoint().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn the_outbox_keeps_whole_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = HermesHome::new(dir.path());
        let p = ProfileName::parse("web").unwrap();
        let a = Event::new(EventKind::Parked, Some(&p), 5).with_reason("crash loop");
        let b = Event::new(EventKind::Parked, Some(&p), 5);
        assert_ne!(a.id, b.id);
        append(&home, &[a.clone(), b.clone()]).unwrap();
        // A torn write: half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(outbox_path(&home))
            .unwrap();
        f.write_all(b"{\"id\":\"x\",\"ki").unwrap();
        assert_eq!(read_outbox(&home).unwrap(), vec![a, b]);
    }

    #[test]
    fn a_typo_in_notify_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "gateway:\n  port: 1\nnotify:\n  targets:\n    - url: http://h/x\n      evnts: [parked]\n").unwrap();
        let err = load_section(&path).unwrap_err();
        assert!(
            err.contains("config.yaml") && err.contains("evnts"),
            "{err}"
        );
        std::fs::write(&path, "gateway:\n  port: 1\nnotify:\n  targets:\n    - url: http://h/x\n      events: [parked]\n").unwrap();
        let s = load_section(&path).unwrap().unwrap();
        assert!(s.targets[0].wants(EventKind::Parked));
        assert!(!s.targets[0].wants(EventKind::Recovered));
        std::fs::write(&path, "gateway:\n  port: 1\n").unwrap();
        assert_eq!(load_section(&path).unwrap(), None);
    }
}
