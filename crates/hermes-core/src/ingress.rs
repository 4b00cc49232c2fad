//! The webhook ingress's settings, read by its container slot, `status`,
//! `doctor` and `hermes webhook url`. The ingress is the one port that
//! reaches every profile's gateway from outside the container; it holds
//! no secrets (each gateway verifies its own signatures), so it may bind
//! any address.

use crate::name::{HookName, ProfileName};

pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 8644;

/// What the environment asks of the ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HERMES_INGRESS=1`: the container starts the ingress slot.
    pub enabled: bool,
    /// `HERMES_INGRESS_HOST`, default [`DEFAULT_HOST`].
    pub host: String,
    /// `HERMES_INGRESS_PORT`, default [`DEFAULT_PORT`]; `None` when set but not a port.
    pub port: Option<u16>,
    /// `HERMES_PUBLIC_URL`: where the outside reaches the ingress (no trailing slash).
    pub public_url: Option<String>,
}

impl Settings {
    /// From the environment as `var` reads it (blank counts as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let var = |k: &str| crate::dashboard::non_blank(var(k));
        Settings {
            enabled: crate::dashboard::enabled(var("HERMES_INGRESS").as_deref()),
            host: var("HERMES_INGRESS_HOST").unwrap_or_else(|| DEFAULT_HOST.to_string()),
            port: match var("HERMES_INGRESS_PORT") {
                None => Some(DEFAULT_PORT),
                Some(p) => p.parse().ok().filter(|p| *p != 0),
            },
            public_url: var("HERMES_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    pub fn from_env() -> Settings {
        Settings::from_vars(|k| std::env::var(k).ok())
    }
}

/// The path the ingress serves a profile's hook on.
pub fn hook_path(profile: &ProfileName, hook: &HookName) -> String {
    format!("/{profile}/v1/webhooks/{hook}")
}

/// The outside URL of a hook under `public_url` (the ingress's address as
/// the outside sees it).
pub fn public_hook_url(public_url: &str, profile: &ProfileName, hook: &HookName) -> String {
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        hook_path(profile, hook)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_overrides() {
        let s = vars(&[]);
        assert!(!s.enabled);
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", Some(8644)));
        assert_eq!(s.public_url, None);
        let s = vars(&[
            ("HERMES_INGRESS", "yes"),
            ("HERMES_INGRESS_HOST", "127.0.0.1"),
            ("HERMES_INGRESS_PORT", "9000"),
            ("HERMES_PUBLIC_URL", "https://hooks.example.org/"),
        ]);
        assert!(s.enabled);
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", Some(9000)));
        assert_eq!(s.public_url.as_deref(), Some("https://hooks.example.org"));
        assert_eq!(vars(&[("HERMES_INGRESS_PORT", "x")]).port, None);
        assert_eq!(vars(&[("HERMES_INGRESS_PORT", "0")]).port, None);
    }

    #[test]
    fn urls() {
        let p = ProfileName::parse("coder").unwrap();
        let h = HookName::parse("github").unwrap();
        assert_eq!(hook_path(&p, &h), "/coder/v1/webhooks/github");
        assert_eq!(
            public_hook_url("https://x.org/base/", &p, &h),
            "https://x.org/base/coder/v1/webhooks/github"
        );
    }
}
