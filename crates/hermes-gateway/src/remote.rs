//! What the CLI's `webhook send|list|url` do against a profile's running
//! gateway: find its address and secret, sign, and call the HTTP API.

use std::time::Duration;

use hermes_core::config::{Config, Scheme};
use hermes_core::home::ProfilePaths;
use hermes_core::name::HookName;
use hermes_core::profile::{self, SECRET_VAR};
use hermes_core::state;
use serde_json::Value;

use crate::client::{self, ClientError};
use crate::signature;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Config(#[from] hermes_core::config::ConfigError),
    #[error(transparent)]
    Fs(#[from] hermes_core::fsutil::FsError),
    #[error("{}: HERMES_WEBHOOK_SECRET is missing or empty", path.display())]
    NoSecret { path: std::path::PathBuf },
    #[error("hook {hook} takes {scheme} signatures and has no secret of its own: set the one {scheme} issued with `hermes webhook secret {hook} --set`")]
    NoHookSecret { hook: HookName, scheme: Scheme },
    #[error("{}: {source}", path.display())]
    BadHookSecret {
        path: std::path::PathBuf,
        #[source]
        source: signature::SecretError,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{method} {url} answered {status}: {message}")]
    Refused {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
}

/// Where a profile's gateway listens and how to authenticate to it.
pub struct Target {
    /// `host:port` to connect to (a wildcard bind is reached on loopback).
    pub addr: String,
    pub secret: String,
    pub paths: ProfilePaths,
    pub config: Config,
}

/// `host:port` a client on this machine connects to for a profile's
/// gateway (a wildcard bind is reached on loopback).
pub fn address(config: &Config) -> String {
    let host = match config.gateway.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("{host}:{}", config.gateway.port)
}

impl Target {
    pub fn of(paths: &ProfilePaths) -> Result<Target, RemoteError> {
        let config = Config::load(&paths.config())?;
        let secret = profile::env_value(paths, SECRET_VAR)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RemoteError::NoSecret {
                path: paths.env_file(),
            })?;
        Ok(Target {
            addr: address(&config),
            secret,
            paths: paths.clone(),
            config,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where a hook's sender delivers: the one place its URL is made.
    pub fn hook_url(&self, hook: &HookName) -> String {
        self.url(&hook_path(hook))
    }

    /// The scheme a hook is configured with.
    pub fn scheme(&self, hook: &HookName) -> Scheme {
        self.config.webhooks.scheme(hook.as_str())
    }

    /// The HMAC key `hook` is verified with under `scheme`: its own secret, or
    /// the profile's where the scheme lets us choose it.
    pub fn hook_key(&self, hook: &HookName, scheme: Scheme) -> Result<Vec<u8>, RemoteError> {
        let own = profile::hook_secret(&self.paths, hook)?;
        let secret = match own {
            Some(secret) => secret,
            None if scheme.takes_our_secret() => self.secret.clone(),
            None => {
                return Err(RemoteError::NoHookSecret {
                    hook: hook.clone(),
                    scheme,
                })
            }
        };
        signature::signing_key(scheme, &secret).map_err(|source| RemoteError::BadHookSecret {
            path: self.paths.hook_secret(hook),
            source,
        })
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Value, RemoteError> {
        let response = client::request(&self.addr, method, path, headers, body, TIMEOUT)?;
        let value: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if !(200..300).contains(&response.status) {
            let message = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&response.body).trim().to_string());
            return Err(RemoteError::Refused {
                method,
                url: self.url(path),
                status: response.status,
                message,
            });
        }
        Ok(value)
    }

    /// Sign `body` as `scheme`'s sender would (the hook's own scheme if
    /// `None`) and deliver it; returns the gateway's JSON answer (`id`,
    /// `duplicate`). GitHub and Standard Webhooks deliveries get a fresh
    /// delivery id unless one is given.
    pub fn send(
        &self,
        hook: &HookName,
        body: &[u8],
        delivery_id: Option<&str>,
        scheme: Option<Scheme>,
    ) -> Result<Value, RemoteError> {
        let scheme = scheme.unwrap_or_else(|| self.scheme(hook));
        let key = self.hook_key(hook, scheme)?;
        let now_ms = state::now_ms();
        let fresh = format!("hermes-{now_ms:x}-{:x}", std::process::id());
        let id = match scheme {
            Scheme::Github | Scheme::Standard => Some(delivery_id.unwrap_or(&fresh)),
            _ => delivery_id,
        };
        let mut headers = signature::sign(scheme, &key, now_ms / 1000, id, body);
        let json = serde_json::from_slice::<Value>(body).is_ok();
        let content_type = if json {
            "application/json"
        } else {
            "application/octet-stream"
        };
        headers.push(("Content-Type", content_type.to_string()));
        self.call("POST", &hook_path(hook), &headers, body)
    }

    /// `GET /health/detailed`, which needs the secret.
    pub fn detailed(&self) -> Result<Value, RemoteError> {
        let auth = [("Authorization", format!("Bearer {}", self.secret))];
        self.call("GET", "/health/detailed", &auth, b"")
    }

    /// One page of stored events (`events`, `next_after`, `more`, ...).
    pub fn list(&self, hook: &HookName, after: u64, limit: u32) -> Result<Value, RemoteError> {
        let path = format!("{}/events?after={after}&limit={limit}", hook_path(hook));
        let auth = [("Authorization", format!("Bearer {}", self.secret))];
        self.call("GET", &path, &auth, b"")
    }
}

fn hook_path(hook: &HookName) -> String {
    format!("/v1/webhooks/{hook}")
}
