//! A deliberately tiny HTTP/1.1 client over a raw socket: the suites and the
//! benchmarks measure the gateway, so the client must add no pool, no retry
//! and no hidden latency of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct Response {
    pub status: u16,
    pub body: String,
}

fn request(port: u16, head: &str, body: &[u8], timeout: Duration) -> Option<Response> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.set_nodelay(true).ok()?;
    let mut msg = head.as_bytes().to_vec();
    msg.extend_from_slice(body);
    stream.write_all(&msg).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some(Response { status, body })
}

/// `GET path` on 127.0.0.1:port; `None` when nothing answers in time.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    request(port, &head, b"", Duration::from_secs(3))
}

/// Whether `/health` answers 200 right now. Short timeouts: callers poll it.
pub fn healthy(port: u16) -> bool {
    let head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    request(port, head, b"", Duration::from_millis(500)).is_some_and(|r| r.status == 200)
}

pub fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> Option<Response> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    request(port, &head, body, Duration::from_secs(5))
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
    let ts = unix_secs();
    let headers = [
        ("X-Hermes-Timestamp", ts.to_string()),
        (
            "X-Hermes-Signature",
            sign(secret.as_bytes(), ts, idempotency_key, body),
        ),
        ("Idempotency-Key", idempotency_key.to_string()),
        ("Content-Type", "application/json".to_string()),
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
