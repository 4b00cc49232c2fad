//! A profile's `config.yaml`. Only the sections hermes owns are typed and
//! strict (`gateway`, `webhooks`); anything else in the file belongs to other
//! tools and is left alone. `validate` reports every problem at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError};

pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The root profile's port; named profiles get the next free one above it.
pub const BASE_PORT: u16 = 8700;
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
    /// What unauthenticated clients may make the gateway hold; omitted when default.
    #[serde(default, skip_serializing_if = "LimitsSection::is_default")]
    pub limits: LimitsSection,
}

/// Caps on connections, buffered request bodies and slow clients. Together they
/// bound the gateway's memory whatever a client without the secret sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Open connections at most; past it the longest-waiting idle or reading
    /// connection is closed to make room, or the newcomer gets 503.
    pub max_connections: u32,
    /// Request body bytes buffered at once over all connections; past it 503
    /// with `Retry-After`. Never less than `webhooks.max_body_bytes` in effect.
    pub max_inflight_body_bytes: u64,
    /// Seconds a client gets to send a request head (and an idle connection to start one).
    pub head_timeout_secs: u64,
    /// Seconds a client gets to send a whole request body.
    pub body_timeout_secs: u64,
}

pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: u64 = 8 * 1024 * 1024;

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
            head_timeout_secs: 10,
            body_timeout_secs: 20,
        }
    }
}

impl LimitsSection {
    fn is_default(&self) -> bool {
        *self == LimitsSection::default()
    }
}

impl Config {
    /// The body budget in effect: one body of the largest size always fits.
    pub fn inflight_body_bytes(&self) -> u64 {
        self.gateway
            .limits
            .max_inflight_body_bytes
            .max(self.webhooks.max_body_bytes)
    }
}

fn default_host() -> String {
    DEFAULT_HOST.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Segments older than this many hours are deleted whole (0 = keep forever).
    #[serde(default)]
    pub retention_hours: u64,
    /// Keep at most this many bytes of segments per hook (0 = no cap).
    #[serde(default)]
    pub retention_bytes: u64,
    /// Per-hook settings; a hook not listed takes `hermes` signatures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, HookSection>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// How the hook's sender signs its deliveries.
    #[serde(default)]
    pub scheme: Scheme,
}

/// A sender's signature scheme: the headers it sends and what it signs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// hermes' own `X-Hermes-Signature: v2=…`.
    #[default]
    Hermes,
    /// GitHub's `X-Hub-Signature-256: sha256=…`.
    Github,
    /// Stripe's `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// Slack's `X-Slack-Signature: v0=…`.
    Slack,
    /// The Standard Webhooks specification (`webhook-signature: v1,…`), as Svix sends it.
    Standard,
}

impl Scheme {
    pub const ALL: [Scheme; 5] = [
        Scheme::Hermes,
        Scheme::Github,
        Scheme::Stripe,
        Scheme::Slack,
        Scheme::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Hermes => "hermes",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Slack => "slack",
            Scheme::Standard => "standard",
        }
    }

    pub fn parse(raw: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the secret is one we may choose (so the profile's secret can
    /// serve), rather than one the sender issues.
    pub fn takes_our_secret(self) -> bool {
        matches!(self, Scheme::Hermes | Scheme::Github)
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WebhookSection {
    /// The scheme a hook takes (`hermes` unless configured).
    pub fn scheme(&self, hook: &str) -> Scheme {
        self.hooks.get(hook).map(|h| h.scheme).unwrap_or_default()
    }
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY
}

impl Default for WebhookSection {
    fn default() -> Self {
        WebhookSection {
            max_body_bytes: DEFAULT_MAX_BODY,
            retention_hours: 0,
            retention_bytes: 0,
            hooks: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub gateway: GatewaySection,
    #[serde(default)]
    pub webhooks: WebhookSection,
    /// Sections owned by other tools, kept as they are.
    #[serde(flatten)]
    pub other: serde_yaml::Mapping,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {}", problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("unable to encode {path}: {message}")]
    Encode { path: PathBuf, message: String },
}

/// `port: N` indented under a top-level `gateway:` line, read as text.
fn port_line(text: &str) -> Option<u16> {
    let mut in_gateway = false;
    for line in text.lines() {
        if !line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            in_gateway = line.trim_end().strip_suffix(':') == Some("gateway");
            continue;
        }
        let value = line.trim().strip_prefix("port:").map(str::trim);
        if let Some(value) = value.filter(|_| in_gateway) {
            let digits = value.trim_matches(['"', '\'']);
            return digits.parse().ok().filter(|p| *p > 0);
        }
    }
    None
}

impl Config {
    pub fn new(port: u16) -> Self {
        Config {
            gateway: GatewaySection {
                host: default_host(),
                port,
                limits: LimitsSection::default(),
            },
            webhooks: WebhookSection::default(),
            other: serde_yaml::Mapping::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = fsutil::read_no_follow(path)?;
        let config: Config = serde_yaml::from_slice(&bytes).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// The port a profile's config claims, without judging the rest of the
    /// file: from a file that does not parse, the `port:` line of its
    /// `gateway:` section, so a broken profile keeps its port reserved.
    pub fn read_port(path: &Path) -> Option<u16> {
        #[derive(Deserialize)]
        struct PortOnly {
            gateway: PortSection,
        }
        #[derive(Deserialize)]
        struct PortSection {
            port: u16,
        }
        let bytes = fsutil::read_no_follow(path).ok()?;
        match serde_yaml::from_slice::<PortOnly>(&bytes) {
            Ok(c) => Some(c.gateway.port),
            Err(_) => port_line(&String::from_utf8_lossy(&bytes)),
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.gateway.port == 0 {
            problems.push("gateway.port must be between 1 and 65535".to_string());
        }
        if self.gateway.host.parse::<IpAddr>().is_err() && self.gateway.host != "localhost" {
            problems.push(format!(
                "gateway.host {:?} is not an IP address",
                self.gateway.host
            ));
        }
        if self.webhooks.max_body_bytes == 0 {
            problems.push("webhooks.max_body_bytes must be at least 1".to_string());
        }
        for hook in self.webhooks.hooks.keys() {
            match crate::name::HookName::parse(hook) {
                Ok(name) if name.as_str() == hook => {}
                Ok(name) => problems.push(format!(
                    "webhooks.hooks.{hook}: write the hook name as it is used, {name:?}"
                )),
                Err(e) => problems.push(format!("webhooks.hooks.{hook:?}: hook {e}")),
            }
        }
        let limits = &self.gateway.limits;
        if limits.max_connections == 0 {
            problems.push("gateway.limits.max_connections must be at least 1".to_string());
        }
        if limits.head_timeout_secs == 0 || limits.body_timeout_secs == 0 {
            problems.push(
                "gateway.limits.head_timeout_secs and body_timeout_secs must be at least 1"
                    .to_string(),
            );
        }
        problems
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = serde_yaml::to_string(self).map_err(|e| ConfigError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        fsutil::atomic_write(path, text.as_bytes(), 0o640)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_port_line_is_found_only_under_gateway() {
        assert_eq!(port_line("gateway:\n  host: [\n  port: 8702\n"), Some(8702));
        assert_eq!(port_line("gateway:\n  port: '8703'\n"), Some(8703));
        assert_eq!(port_line("other:\n  port: 8702\ngateway: x\n"), None);
        assert_eq!(port_line("gateway:\n  port: 0\n"), None);
    }

    #[test]
    fn round_trips_and_keeps_other_sections() {
        let c = load_str("gateway:\n  port: 8705\nmodel:\n  name: x\n").unwrap();
        assert_eq!(c.gateway.port, 8705);
        assert_eq!(c.gateway.host, "127.0.0.1");
        let text = serde_yaml::to_string(&c).unwrap();
        assert!(text.contains("model:"), "{text}");
    }

    #[test]
    fn reports_every_problem() {
        let err = load_str("gateway:\n  port: 0\n  host: nowhere\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("gateway.port") && msg.contains("gateway.host"),
            "{msg}"
        );
    }

    #[test]
    fn limits_default_stay_out_of_the_file_and_are_checked() {
        let c = load_str("gateway:\n  port: 8705\n").unwrap();
        assert_eq!(c.gateway.limits, LimitsSection::default());
        assert!(!serde_yaml::to_string(&c).unwrap().contains("limits"));
        let c = load_str("gateway:\n  port: 1\n  limits:\n    max_connections: 8\n").unwrap();
        assert_eq!(c.gateway.limits.max_connections, 8);
        assert_eq!(c.gateway.limits.head_timeout_secs, 10);
        let err = load_str(
            "gateway:\n  port: 1\n  limits:\n    max_connections: 0\n    head_timeout_secs: 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("max_connections") && err.contains("head_timeout_secs"),
            "{err}"
        );
        let c = load_str(
            "gateway:\n  port: 1\n  limits:\n    max_inflight_body_bytes: 10\nwebhooks:\n  max_body_bytes: 100\n",
        )
        .unwrap();
        assert_eq!(c.inflight_body_bytes(), 100);
        assert!(load_str("gateway:\n  port: 1\n  limits:\n    max_conns: 8\n").is_err());
    }

    #[test]
    fn hooks_take_a_scheme_each() {
        let c = load_str(
            "gateway:\n  port: 1\nwebhooks:\n  hooks:\n    gh:\n      scheme: github\n    plain: {}\n",
        )
        .unwrap();
        assert_eq!(c.webhooks.scheme("gh"), Scheme::Github);
        assert_eq!(c.webhooks.scheme("plain"), Scheme::Hermes);
        assert_eq!(c.webhooks.scheme("unlisted"), Scheme::Hermes);
        assert!(serde_yaml::to_string(&c)
            .unwrap()
            .contains("scheme: github"));
        assert!(!serde_yaml::to_string(&Config::new(1))
            .unwrap()
            .contains("  hooks:"));
        for bad in [
            "gateway:\n  port: 1\nwebhooks:\n  hooks:\n    gh:\n      scheme: gitlab\n",
            "gateway:\n  port: 1\nwebhooks:\n  hooks:\n    gh:\n      schema: github\n",
        ] {
            assert!(load_str(bad).is_err(), "{bad}");
        }
        let err = load_str("gateway:\n  port: 1\nwebhooks:\n  hooks:\n    GH: {}\n    a/b: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gh\"") && err.contains("a/b"), "{err}");
        for scheme in Scheme::ALL {
            assert_eq!(Scheme::parse(scheme.as_str()), Some(scheme));
        }
    }

    #[test]
    fn unknown_gateway_keys_and_bad_yaml_are_refused() {
        assert!(load_str("gateway:\n  port: 1\n  prot: 2\n").is_err());
        assert!(load_str("gateway: [\n").is_err());
        assert!(load_str("other: 1\n").is_err());
    }
}
