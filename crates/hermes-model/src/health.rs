//! A live `GET /health` probe of one gateway with a short timeout; the
//! snapshot runs them all at once, so fifty silent gateways cost about one
//! timeout, not fifty. An answer counts only if it comes from the profile
//! probed: a port edited to another profile's is answered by that profile,
//! and webhooks sent there reach it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use hermes_core::http::{self, HttpError, Request, Response};
use serde::Serialize;

/// Long enough for a healthy local gateway, short enough to keep a refresh snappy.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Answered 200, as the service probed.
    Ok,
    /// Answered 200, but as another profile (or without saying which): the
    /// port serves someone else, and what is sent there reaches them.
    WrongProfile,
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
    /// The profile the answer named, when it was not the one probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_as: Option<String>,
}

impl Health {
    pub fn unknown() -> Self {
        Health {
            state: HealthState::Unknown,
            http_status: None,
            latency_ms: None,
            error: None,
            answered_as: None,
        }
    }
}

/// Who must answer a probe, and how to recognise them in the body.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// A gateway: `GET /health` answers `{"profile": NAME, …}`.
    Gateway(&'a str),
    /// The dashboard: `GET /` is its page, titled [`DASHBOARD_TITLE`].
    Dashboard,
}

/// The title of the dashboard's page (hermes-dashboard's `index.html`).
pub const DASHBOARD_TITLE: &str = "<title>hermes dashboard</title>";
/// The most of an answer a probe reads: a gateway's health document is tens
/// of bytes; the dashboard's title is near the top of its page.
const MAX_ANSWER: u64 = 8 * 1024;

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

/// One gateway probe: `GET /health`, which must answer 200 naming `profile`.
pub fn probe(host: &str, port: u16, profile: &str, timeout: Duration) -> Health {
    probe_as(host, port, Expect::Gateway(profile), timeout)
}

/// One probe, reading at most [`MAX_ANSWER`] bytes of the answer.
pub fn probe_as(host: &str, port: u16, expect: Expect<'_>, timeout: Duration) -> Health {
    let started = Instant::now();
    let answer = target(host, port).map(|addr| {
        let answer = http::send(addr, &Request::get(path_of(expect)), timeout, MAX_ANSWER);
        (addr, answer)
    });
    judge(answer, expect, started.elapsed())
}

/// Many probes at once from this thread (`http::send_all`), each within
/// `timeout`; in the order given. What `hermes health` and the snapshot ask
/// of every gateway: the cost of a connection each, without a thread each.
/// Each `latency_ms` is that probe's own, from its connect to its answer.
pub fn probe_all(targets: &[(&str, u16, Expect<'_>)], timeout: Duration) -> Vec<Health> {
    let started = Instant::now();
    let addrs: Vec<Result<SocketAddr, String>> = targets
        .iter()
        .map(|(host, port, _)| target(host, *port))
        .collect();
    let requests: Vec<(SocketAddr, Request<'_>)> = addrs
        .iter()
        .zip(targets)
        .filter_map(|(addr, (_, _, expect))| {
            addr.as_ref()
                .ok()
                .map(|a| (*a, Request::get(path_of(*expect))))
        })
        .collect();
    let mut answers = http::send_all(&requests, timeout, MAX_ANSWER).into_iter();
    addrs
        .into_iter()
        .zip(targets)
        .map(|(addr, (_, _, expect))| {
            let a = match addr {
                Ok(a) => a,
                Err(e) => return judge(Err(e), *expect, started.elapsed()),
            };
            let (answer, took) = answers.next().unwrap_or_else(|| {
                let missing = HttpError::BadResponse {
                    addr: a,
                    message: "no answer".into(),
                };
                (Err(missing), started.elapsed())
            });
            judge(Ok((a, answer)), *expect, took)
        })
        .collect()
}

fn path_of(expect: Expect<'_>) -> &'static str {
    match expect {
        Expect::Gateway(_) => "/health",
        Expect::Dashboard => "/",
    }
}

/// The verdict on one answer (or on why there was none) that took `took`.
fn judge(
    answer: Result<(SocketAddr, Result<Response, HttpError>), String>,
    expect: Expect<'_>,
    took: Duration,
) -> Health {
    let latency_ms = Some(took.as_millis() as u64);
    let unreachable = |error: String| Health {
        state: HealthState::Unreachable,
        http_status: None,
        latency_ms,
        error: Some(error),
        answered_as: None,
    };
    let path = path_of(expect);
    let (addr, answer) = match answer {
        Ok((addr, Ok(answer))) => (addr, answer),
        Ok((addr, Err(HttpError::BadResponse { .. }))) => {
            return unreachable(format!("{addr} did not answer HTTP"))
        }
        Ok((_, Err(e))) => return unreachable(e.to_string()),
        Err(e) => return unreachable(e),
    };
    let code = answer.status;
    if code != 200 {
        return Health {
            state: HealthState::Unhealthy,
            http_status: Some(code),
            latency_ms,
            error: Some(format!("GET {path} answered {code}")),
            answered_as: None,
        };
    }
    let body = &answer.body[..];
    let mismatch = match expect {
        Expect::Gateway(profile) => match answered_profile(body) {
            Some(name) if name == profile => None,
            Some(name) => Some((
                Some(name.clone()),
                format!("{addr} answered as profile '{name}', not '{profile}'"),
            )),
            None => Some((
                None,
                format!("{addr} answered 200 without naming its profile: not a gateway of this hermes, or one started before an upgrade (restart it)"),
            )),
        },
        Expect::Dashboard => {
            let page = String::from_utf8_lossy(body);
            (!page.contains(DASHBOARD_TITLE)).then(|| {
                (
                    None,
                    format!("{addr} answered 200, but not with the hermes dashboard's page"),
                )
            })
        }
    };
    match mismatch {
        None => Health {
            state: HealthState::Ok,
            http_status: Some(200),
            latency_ms,
            error: None,
            answered_as: None,
        },
        Some((answered_as, error)) => Health {
            state: HealthState::WrongProfile,
            http_status: Some(200),
            latency_ms,
            error: Some(error),
            answered_as,
        },
    }
}

/// The most of a `GET /health/detailed` document read (a profile with many hooks).
const MAX_DOCUMENT: u64 = 1024 * 1024;

/// `GET path` with `Authorization: Bearer <bearer>`; the JSON body of a 200,
/// or why there is none.
pub fn get_json(
    host: &str,
    port: u16,
    path: &str,
    bearer: &str,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let addr = target(host, port)?;
    let auth = [("Authorization", format!("Bearer {bearer}"))];
    let request = Request {
        method: "GET",
        path,
        headers: &auth,
        body: b"",
    };
    let answer = match http::send(addr, &request, timeout, MAX_DOCUMENT) {
        Ok(answer) => answer,
        Err(HttpError::BadResponse { .. }) => return Err(format!("{addr} did not answer HTTP")),
        Err(e) => return Err(e.to_string()),
    };
    if answer.status != 200 {
        return Err(format!("GET {path} on {addr} answered {}", answer.status));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("GET {path} on {addr}: not JSON: {e}"))
}

/// The `profile` field of a gateway's health document.
fn answered_profile(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    doc.get("profile")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
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

    const OK_WEB: &str =
        "HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\n{\"status\":\"ok\",\"profile\":\"web\"}";

    #[test]
    fn ok_unhealthy_and_unreachable() {
        let ok = serve_once(OK_WEB);
        let h = probe("127.0.0.1", ok, "web", DEFAULT_TIMEOUT);
        assert_eq!((h.state, h.answered_as), (HealthState::Ok, None));
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let h = probe("0.0.0.0", bad, "web", DEFAULT_TIMEOUT);
        assert_eq!(
            (h.state, h.http_status),
            (HealthState::Unhealthy, Some(503))
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = probe("127.0.0.1", closed, "web", DEFAULT_TIMEOUT);
        assert_eq!(h.state, HealthState::Unreachable);
        assert!(h.error.unwrap().contains("connect"));
    }

    #[test]
    fn probe_all_judges_each_answer_in_order() {
        let ok = serve_once(OK_WEB);
        let other = serve_once(OK_WEB);
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hs = probe_all(
            &[
                ("127.0.0.1", ok, Expect::Gateway("web")),
                ("no-such-host.invalid", 1, Expect::Gateway("web")),
                ("0.0.0.0", other, Expect::Gateway("coder")),
                ("127.0.0.1", closed, Expect::Gateway("web")),
                ("127.0.0.1", bad, Expect::Gateway("web")),
            ],
            DEFAULT_TIMEOUT,
        );
        let states: Vec<_> = hs.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [
                HealthState::Ok,
                HealthState::Unreachable,
                HealthState::WrongProfile,
                HealthState::Unreachable,
                HealthState::Unhealthy
            ]
        );
        assert_eq!(hs[2].answered_as.as_deref(), Some("web"));
        assert!(
            hs[1].error.as_ref().unwrap().contains("resolve"),
            "{:?}",
            hs[1]
        );
        assert!(
            hs[3].error.as_ref().unwrap().contains("connect"),
            "{:?}",
            hs[3]
        );
    }

    #[test]
    fn an_answer_from_another_profile_is_not_ok() {
        let port = serve_once(OK_WEB);
        let h = probe("127.0.0.1", port, "coder", DEFAULT_TIMEOUT);
        assert_eq!(h.state, HealthState::WrongProfile);
        assert_eq!(h.answered_as.as_deref(), Some("web"));
        assert!(h.error.unwrap().contains("answered as profile 'web'"));
        // A 200 that names no profile proves nothing either.
        let port = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let h = probe("127.0.0.1", port, "coder", DEFAULT_TIMEOUT);
        assert_eq!((h.state, h.answered_as), (HealthState::WrongProfile, None));
    }

    #[test]
    fn the_dashboard_page_carries_the_title_probes_look_for() {
        let page = include_str!("../../hermes-dashboard/assets/index.html");
        assert!(page.contains(DASHBOARD_TITLE));
        assert!((page.find(DASHBOARD_TITLE).unwrap() as u64) < MAX_ANSWER / 2);
    }

    #[test]
    fn the_dashboard_is_known_by_its_page() {
        let page =
            "HTTP/1.1 200 OK\r\n\r\n<!doctype html>\n<html><head><title>hermes dashboard</title>";
        let port = serve_once(page);
        let h = probe_as("127.0.0.1", port, Expect::Dashboard, DEFAULT_TIMEOUT);
        assert_eq!(h.state, HealthState::Ok);
        let port = serve_once("HTTP/1.1 200 OK\r\n\r\n<title>something else</title>");
        let h = probe_as("127.0.0.1", port, Expect::Dashboard, DEFAULT_TIMEOUT);
        assert_eq!(h.state, HealthState::WrongProfile);
    }
}
