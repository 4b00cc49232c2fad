//! What the CLI's `webhook send|list|url` do against a profile's running
//! gateway: find its address and secret, sign, and call the HTTP API.

use std::time::Duration;

use hermes_core::config::Config;
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
}

impl Target {
    pub fn of(paths: &ProfilePaths) -> Result<Target, RemoteError> {
        let config = Config::load(&paths.config())?;
        let secret = profile::env_value(paths, SECRET_VAR)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RemoteError::NoSecret {
                path: paths.env_file(),
            })?;
        let host = match config.gateway.host.as_str() {
            "0.0.0.0" => "127.0.0.1".to_string(),
            "::" => "[::1]".to_string(),
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_string(),
        };
        Ok(Target {
            addr: format!("{host}:{}", config.gateway.port),
            secret,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

    /// Sign and deliver `body`; returns the gateway's JSON answer (`id`, `duplicate`).
    pub fn send(
        &self,
        hook: &HookName,
        body: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<Value, RemoteError> {
        let ts = state::now_ms() / 1000;
        let mut headers = vec![
            ("X-Hermes-Timestamp", ts.to_string()),
            (
                "X-Hermes-Signature",
                signature::sign(self.secret.as_bytes(), ts, idempotency_key, body),
            ),
            ("Content-Type", "application/octet-stream".to_string()),
        ];
        if let Some(key) = idempotency_key {
            headers.push(("Idempotency-Key", key.to_string()));
        }
        self.call("POST", &format!("/v1/webhooks/{hook}"), &headers, body)
    }

    /// `GET /health/detailed`, which needs the secret.
    pub fn detailed(&self) -> Result<Value, RemoteError> {
        let auth = [("Authorization", format!("Bearer {}", self.secret))];
        self.call("GET", "/health/detailed", &auth, b"")
    }

    /// One page of stored events (`events`, `next_after`, `more`, ...).
    pub fn list(&self, hook: &HookName, after: u64, limit: u32) -> Result<Value, RemoteError> {
        let path = format!("/v1/webhooks/{hook}/events?after={after}&limit={limit}");
        let auth = [("Authorization", format!("Bearer {}", self.secret))];
        self.call("GET", &path, &auth, b"")
    }
}
