//! Each hook's scheme and key, settled at start, and its last delivery result.
//!
//! A hook takes the scheme configured in `webhooks.hooks.<hook>.scheme`
//! (`hermes` when not listed) and the secret in its own `.env.hook.<hook>`
//! file, else, where the scheme lets us choose the secret (`hermes`,
//! `github`), the profile's `HERMES_WEBHOOK_SECRET`. A hook whose sender
//! issues the secret and has none answers 503 until one is set and the
//! gateway restarted: its sender retries meanwhile, nothing is lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use hermes_core::config::{Scheme, WebhookSection};
use hermes_core::deliveries::{self, Deliveries, LastDelivery};
use hermes_core::fsutil::FsError;
use hermes_core::home::ProfilePaths;
use hermes_core::name::HookName;
use hermes_core::profile;

use crate::signature;

/// How one hook's deliveries are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAuth {
    pub scheme: Scheme,
    /// The HMAC key, or why there is none.
    pub key: Result<Vec<u8>, String>,
}

pub struct Hooks {
    listed: HashMap<HookName, HookAuth>,
    default: HookAuth,
}

/// The hook names with a secret file of their own in the profile directory.
fn hooks_with_secrets(paths: &ProfilePaths) -> Result<Vec<HookName>, FsError> {
    let entries = hermes_core::fsutil::read_dir(&paths.dir)?;
    Ok(entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let hook = name.to_str()?.strip_prefix(".env.hook.")?;
            HookName::parse(hook).ok().filter(|h| h.as_str() == hook)
        })
        .collect())
}

impl Hooks {
    pub fn load(
        paths: &ProfilePaths,
        config: &WebhookSection,
        profile_secret: &str,
    ) -> Result<Hooks, FsError> {
        let mut names: BTreeSet<HookName> = config
            .hooks
            .keys()
            .filter_map(|h| HookName::parse(h).ok())
            .collect();
        names.extend(hooks_with_secrets(paths)?);
        let mut listed = HashMap::new();
        for hook in names {
            let scheme = config.scheme(hook.as_str());
            let own = profile::hook_secret(paths, &hook)?;
            let key = match (own, scheme.takes_our_secret()) {
                (Some(secret), _) => signature::signing_key(scheme, &secret).map_err(|e| {
                    format!("{}: {e}", paths.hook_secret(&hook).display())
                }),
                (None, true) => signature::signing_key(scheme, profile_secret)
                    .map_err(|e| e.to_string()),
                (None, false) => Err(format!(
                    "hook {hook} takes {scheme} signatures and has no secret: set the one {scheme} shows with `hermes -p {} webhook secret {hook} --set`, then restart the gateway",
                    paths.name
                )),
            };
            if let Err(reason) = &key {
                crate::log(&format!(
                    "hook {hook}: deliveries refused until fixed: {reason}"
                ));
            }
            listed.insert(hook, HookAuth { scheme, key });
        }
        Ok(Hooks {
            listed,
            default: HookAuth {
                scheme: Scheme::Hermes,
                key: Ok(profile_secret.as_bytes().to_vec()),
            },
        })
    }

    pub fn get(&self, hook: &HookName) -> &HookAuth {
        self.listed.get(hook).unwrap_or(&self.default)
    }

    /// Configured or keyed hooks, whose refusals are worth recording.
    pub fn is_listed(&self, hook: &HookName) -> bool {
        self.listed.contains_key(hook)
    }

    pub fn schemes(&self) -> BTreeMap<&str, Scheme> {
        self.listed
            .iter()
            .map(|(hook, auth)| (hook.as_str(), auth.scheme))
            .collect()
    }
}

/// The last delivery result per hook, flushed to `webhook_deliveries.json`
/// by [`Recorder::flush`] only when something changed.
pub struct Recorder {
    state: Mutex<(Deliveries, bool)>,
    /// Woken by [`Recorder::note`], so an idle gateway has nothing to flush
    /// and no timer to wake it.
    noted: tokio::sync::Notify,
}

impl Recorder {
    pub fn new(paths: &ProfilePaths) -> Recorder {
        Recorder {
            state: Mutex::new((deliveries::read(paths), false)),
            noted: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once a delivery was noted since the last call (a note made
    /// before the call counts: `Notify` keeps one permit).
    pub async fn noted(&self) {
        self.noted.notified().await
    }

    pub fn note(&self, hook: &HookName, last: LastDelivery) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.hooks.insert(hook.to_string(), last);
        state.1 = true;
        self.noted.notify_one();
    }

    pub fn snapshot(&self) -> Deliveries {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    pub fn flush(&self, paths: &ProfilePaths) {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut state.1).then(|| state.0.clone())
        };
        if let Some(deliveries) = pending {
            if let Err(e) = deliveries::write(paths, &deliveries) {
                crate::log(&format!("unable to record the last deliveries: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::name::ProfileName;

    /// Profile `p`'s paths in a temporary directory (kept while the guard lives).
    fn profile_in_temp() -> (tempfile::TempDir, ProfilePaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = ProfilePaths {
            name: ProfileName::parse("p").unwrap(),
            dir: dir.path().to_path_buf(),
        };
        (dir, paths)
    }

    #[test]
    fn only_a_noted_delivery_wakes_the_flusher() {
        let (_dir, paths) = profile_in_temp();
        let recorder = Recorder::new(&paths);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let wait = |ms| {
            runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(ms), recorder.noted()).await
            })
        };
        assert!(wait(50).is_err(), "woken with nothing noted");
        let last = LastDelivery {
            at_ms: 1,
            status: 202,
            code: "accepted".into(),
        };
        recorder.note(&HookName::parse("gh").unwrap(), last.clone());
        assert!(wait(5_000).is_ok(), "a note must wake the flusher");
        assert!(wait(50).is_err(), "one note wakes it once");
        recorder.flush(&paths);
        assert_eq!(deliveries::read(&paths).hooks["gh"], last);
    }

    #[test]
    fn each_hook_gets_its_scheme_and_secret() {
        let (_dir, paths) = profile_in_temp();
        let config: WebhookSection = serde_yaml::from_str(
            "hooks:\n  gh: {scheme: github}\n  st: {scheme: stripe}\n  sw: {scheme: standard}\n",
        )
        .unwrap();
        let hook = |h: &str| HookName::parse(h).unwrap();
        profile::set_hook_secret(&paths, &hook("sw"), "whsec_MDEy").unwrap();
        profile::set_hook_secret(&paths, &hook("own"), "mine").unwrap();
        let hooks = Hooks::load(&paths, &config, "profile-secret").unwrap();
        assert_eq!(
            *hooks.get(&hook("gh")),
            HookAuth {
                scheme: Scheme::Github,
                key: Ok(b"profile-secret".to_vec())
            }
        );
        let st = hooks.get(&hook("st"));
        assert!(st
            .key
            .as_ref()
            .unwrap_err()
            .contains("webhook secret st --set"));
        assert_eq!(hooks.get(&hook("sw")).key, Ok(b"012".to_vec()));
        assert_eq!(hooks.get(&hook("own")).key, Ok(b"mine".to_vec()));
        assert_eq!(hooks.get(&hook("own")).scheme, Scheme::Hermes);
        assert!(!hooks.is_listed(&hook("other")));
        assert_eq!(
            hooks.get(&hook("other")).key,
            Ok(b"profile-secret".to_vec())
        );
    }
}
