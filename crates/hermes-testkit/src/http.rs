//! Requests to a server under test on 127.0.0.1 through hermes-core's HTTP
//! client, which adds no pool, no retry and no latency of its own; and the
//! webhook signature written from the documented scheme rather than by calling
//! the gateway's own signer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hermes_core::http::{self, Request};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One request to `to` (a port alone means 127.0.0.1); `None` when nothing
/// answers in time. A `Host` header among `headers` replaces the default one.
pub fn request(
    to: impl Into<Target>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Option<Response> {
    let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let request = Request {
        method,
        path,
        headers: &headers,
        body,
    };
    let r = http::send(to.into().0, &request, timeout, u64::MAX).ok()?;
    Some(Response {
        status: r.status,
        body: r.text(),
        headers: r.headers.into_iter().collect(),
    })
}

/// Where a request goes: an address, or a port on 127.0.0.1.
pub struct Target(SocketAddr);

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target(addr)
    }
}

impl From<u16> for Target {
    fn from(port: u16) -> Self {
        Target(([127, 0, 0, 1], port).into())
    }
}

/// `GET path` on 127.0.0.1:port; `None` when nothing answers in time.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    request(port, "GET", path, headers, b"", Duration::from_secs(3))
}

/// Whether `/health` answers 200 right now. Short timeouts: callers poll it.
pub fn healthy(port: u16) -> bool {
    request(port, "GET", "/health", &[], b"", Duration::from_millis(500))
        .is_some_and(|r| r.status == 200)
}

pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Response> {
    request(port, "POST", path, headers, body, Duration::from_secs(5))
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `v2=<hex HMAC-SHA256 of "v2:<ts>:<key>\n<body>">`, written from the
/// documented scheme rather than by calling the gateway's own signer.
pub fn sign(secret: &[u8], timestamp: u64, idempotency_key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("v2:{timestamp}:{idempotency_key}\n").as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("v2={hex}")
}

/// POST a signed webhook delivery; `idempotency_key` makes a retry harmless.
pub fn deliver(
    port: u16,
    hook: &str,
    secret: &str,
    body: &[u8],
    idempotency_key: &str,
) -> Option<Response> {
    deliver_signed_at(port, hook, secret, body, idempotency_key, unix_secs())
}

/// [`deliver`], signed for the Unix second `ts`.
pub fn deliver_signed_at(
    port: u16,
    hook: &str,
    secret: &str,
    body: &[u8],
    idempotency_key: &str,
    ts: u64,
) -> Option<Response> {
    let (ts_text, signature) = (
        ts.to_string(),
        sign(secret.as_bytes(), ts, idempotency_key, body),
    );
    let headers = [
        ("X-Hermes-Timestamp", ts_text.as_str()),
        ("X-Hermes-Signature", signature.as_str()),
        ("Idempotency-Key", idempotency_key),
        ("Content-Type", "application/json"),
    ];
    post(port, &format!("/v1/webhooks/{hook}"), &headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // printf 'v2:1700000000:k\n{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign(b"secret", 1_700_000_000, "k", b"{}"),
            "v2=4a577ff13613731826f24c9e190e81934e8fd680c5721cbe4e53b05b5c3e8875"
        );
    }
}
