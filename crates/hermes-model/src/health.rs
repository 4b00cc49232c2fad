//! A live `GET /health` probe of one gateway with a short timeout; the
//! snapshot runs them all at once, so fifty silent gateways cost about one
//! timeout, not fifty.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Long enough for a healthy local gateway, short enough to keep a refresh snappy.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Answered 200.
    Ok,
    /// Answered, but not 200.
    Unhealthy,
    /// No answer within the timeout, refused, or not HTTP.
    Unreachable,
    /// Not probed (no port known).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub state: HealthState,
    pub http_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

impl Health {
    pub fn unknown() -> Self {
        Health {
            state: HealthState::Unknown,
            http_status: None,
            latency_ms: None,
            error: None,
        }
    }
}

/// Where to probe a gateway listening on `host`: wildcard binds are reached on loopback.
fn target(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => {
            return (bare, port)
                .to_socket_addrs()
                .map_err(|e| format!("unable to resolve {bare}: {e}"))?
                .next()
                .ok_or_else(|| format!("{bare} resolves to no address"))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// One probe: `GET /health` over HTTP/1.0, reading only the status line.
pub fn probe(host: &str, port: u16, timeout: Duration) -> Health {
    let started = Instant::now();
    let unreachable = |error: String| Health {
        state: HealthState::Unreachable,
        http_status: None,
        latency_ms: Some(started.elapsed().as_millis() as u64),
        error: Some(error),
    };
    let addr = match target(host, port) {
        Ok(addr) => addr,
        Err(e) => return unreachable(e),
    };
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return unreachable(format!("connect {addr}: {e}")),
    };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(remaining));
    let _ = stream.set_write_timeout(Some(remaining));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return unreachable(format!("send to {addr}: {e}"));
    }
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return unreachable(format!("read from {addr}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    let latency_ms = Some(started.elapsed().as_millis() as u64);
    match code {
        Some(200) => Health {
            state: HealthState::Ok,
            http_status: Some(200),
            latency_ms,
            error: None,
        },
        Some(other) => Health {
            state: HealthState::Unhealthy,
            http_status: Some(other),
            latency_ms,
            error: Some(format!("GET /health answered {other}")),
        },
        None => unreachable(format!("{addr} did not answer HTTP")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn ok_unhealthy_and_unreachable() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(
            probe("127.0.0.1", ok, DEFAULT_TIMEOUT).state,
            HealthState::Ok
        );
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let h = probe("0.0.0.0", bad, DEFAULT_TIMEOUT);
        assert_eq!(
            (h.state, h.http_status),
            (HealthState::Unhealthy, Some(503))
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = probe("127.0.0.1", closed, DEFAULT_TIMEOUT);
        assert_eq!(h.state, HealthState::Unreachable);
        assert!(h.error.unwrap().contains("connect"));
    }
}
