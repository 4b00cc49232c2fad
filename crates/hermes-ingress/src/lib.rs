//! The webhook ingress (`HERMES_INGRESS=1`): one port that reaches every
//! profile's gateway from outside the container. A gateway binds
//! `127.0.0.1:<its port>`, handed out when its profile is created, long
//! after the container's published ports were decided; the ingress routes
//! `/<profile>/v1/webhooks/<hook>` (and `…/events`, the pager) to it.
//!
//! - Bodies stream both ways (hyper, frame by frame); nothing is buffered
//!   beyond hyper's per-connection read buffer.
//! - It holds no secrets: signatures go through untouched and the gateway
//!   verifies them; its `202` (event stored) is the ingress's answer.
//! - Limits are the gateway's (`gateway.limits`): the connection cap and
//!   shedding of the longest-waiting connection ([`hermes_gateway::admission`])
//!   and the head timeout at the defaults (a request's profile is unknown
//!   before its head); the profile's body size and body timeout per request.
//! - `404` for a path it does not serve or a profile that does not exist;
//!   `503` with `Retry-After` while the gateway does not answer (down,
//!   restarting, stopped or parked), and when it goes away mid-request
//!   without answering: the event may or may not be stored, and a retry
//!   with the same `Idempotency-Key` tells which.

pub mod body;
pub mod route;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hermes_core::config::LimitsSection;
use hermes_core::HermesHome;
use hermes_gateway::admission::{Admission, Ticket};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::body::{Cut, Guarded};
use crate::route::Route;

/// In-flight requests get this long after SIGTERM, as in the gateway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// How long connecting to a gateway on loopback may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub type Body = Either<Incoming, Full<Bytes>>;

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Ingress {
    pub home: HermesHome,
    pub limits: LimitsSection,
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": message, "code": code}).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Either::Right(Full::new(Bytes::from(body))))
        .expect("a valid response")
}

/// The gateway's own answer to a body over `webhooks.max_body_bytes`.
fn too_large(max: u64) -> Response<Body> {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("body exceeds the limit of {max} bytes"),
    )
}

fn unavailable(message: &str, retry_after_secs: u32) -> Response<Body> {
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway_unavailable",
        message,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// One request: route, forward, answer.
pub async fn handle(ingress: &Ingress, req: Request<Incoming>, peer: &str) -> Response<Body> {
    let (profile, path) = match route::route(req.uri().path(), req.uri().query()) {
        Route::Gateway { profile, path } => (profile, path),
        Route::NotFound => {
            let message = format!(
                "no route for {}: the ingress serves /<profile>/v1/webhooks/<hook>",
                req.uri().path()
            );
            return answer(StatusCode::NOT_FOUND, "not_found", &message);
        }
        Route::BadProfile(raw) => {
            let message = format!("no profile {raw:?}");
            return answer(StatusCode::NOT_FOUND, "unknown_profile", &message);
        }
    };
    let upstream = match upstream::lookup(&ingress.home, &profile) {
        Ok(u) => u,
        Err(e @ upstream::LookupError::NotFound(_)) => {
            return answer(StatusCode::NOT_FOUND, "unknown_profile", &e.to_string())
        }
        Err(e) => return unavailable(&e.to_string(), 60),
    };
    // Refused here as the gateway would: it answers before reading the body
    // and closes, which would cut the forwarding short.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > upstream.max_body_bytes) {
        return too_large(upstream.max_body_bytes);
    }
    let down = || {
        let why = upstream::why_down(&ingress.home, &profile);
        unavailable(&why.message, why.retry_after_secs)
    };
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&upstream.addr)).await {
            Ok(Ok(stream)) => stream,
            _ => return down(),
        };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return down();
    };
    tokio::spawn(conn);

    let (mut parts, incoming) = req.into_parts();
    let cut = Arc::new(Mutex::new(None));
    let body = Guarded::new(
        incoming,
        upstream.max_body_bytes,
        upstream.body_timeout,
        cut.clone(),
    );
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "bad_path", "the path is not valid"),
    };
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if let Ok(value) = HeaderValue::from_str(peer) {
        parts
            .headers
            .append(HeaderName::from_static("x-forwarded-for"), value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("/{profile}")) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-prefix"), value);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Either::Left(body))
        }
        Err(_) => {
            let cut = *cut.lock().unwrap_or_else(|p| p.into_inner());
            match cut {
                Some(Cut::TooLarge(max)) => too_large(max),
                Some(why @ Cut::TooSlow(_)) => answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    &why.to_string(),
                ),
                Some(why @ Cut::Client) => {
                    answer(StatusCode::BAD_REQUEST, "incomplete_body", &why.to_string())
                }
                // The gateway went away before answering: nothing says the event was stored.
                None => unavailable(
                    &format!(
                        "the gateway of profile {profile} closed the connection before answering; \
                         retry (with the same Idempotency-Key, a stored event is not stored twice)"
                    ),
                    1,
                ),
            }
        }
    }
}

/// Serve until `stop` resolves, then drain for at most [`DRAIN_LIMIT`].
pub async fn serve(listener: TcpListener, ingress: Arc<Ingress>, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let http = hermes_gateway::http1_builder(Duration::from_secs(ingress.limits.head_timeout_secs));
    let admission = Admission::new(
        ingress.limits.max_connections as usize,
        ingress.limits.max_inflight_body_bytes,
    );
    let refusing = Arc::new(AtomicUsize::new(0));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some((ticket, shed)) = admission.admit() else {
                        hermes_gateway::refuse(stream, &refusing);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let ticket: Arc<Ticket> = Arc::new(ticket);
                    let (ingress, conn_ticket) = (ingress.clone(), ticket.clone());
                    let peer = peer.ip().to_string();
                    let service = service_fn(move |req| {
                        let (ingress, ticket, peer) = (ingress.clone(), conn_ticket.clone(), peer.clone());
                        async move {
                            // Waiting (sheddable past the grace) until the gateway answers.
                            ticket.set_busy(false);
                            let response = handle(&ingress, req, &peer).await;
                            ticket.set_busy(true);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = conn => {}
                            _ = shed => {}
                        }
                        drop(ticket);
                    });
                }
                Err(e) => {
                    eprintln!("hermes-ingress: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()).await;
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("unable to start the ingress's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("unable to listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Run in the foreground on `host:port` until SIGTERM or SIGINT.
pub fn run(home: HermesHome, host: &str, port: u16) -> Result<(), IngressError> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(IngressError::Runtime)?;
    let _enter = runtime.enter();
    let mut term = signal(SignalKind::terminate()).map_err(IngressError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(IngressError::Runtime)?;
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let listener = runtime
        .block_on(TcpListener::bind(&addr))
        .map_err(|source| IngressError::Bind {
            addr: addr.clone(),
            source,
        })?;
    eprintln!(
        "hermes-ingress: listening on {addr}: /<profile>/v1/webhooks/<hook> to that profile's gateway"
    );
    let ingress = Arc::new(Ingress {
        home,
        limits: LimitsSection::default(),
    });
    runtime.block_on(serve(listener, ingress, async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }));
    eprintln!("hermes-ingress: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::{profile, ProfileName};
    use std::io::{Read, Write};

    /// A home with profile `coder` whose gateway is on `port`.
    fn home_with_coder(dir: &std::path::Path, port: u16) -> HermesHome {
        let home = HermesHome::new(dir.join("home"));
        profile::ensure_root(&home).unwrap();
        let lock = profile::lock(&home).unwrap();
        let name = ProfileName::parse("coder").unwrap();
        profile::create(&home, &lock, &name, Some(port)).unwrap();
        home
    }

    /// A stand-in gateway: reads one request head and up to `Content-Length`
    /// body bytes, answers 202 with what it saw, and hands the request over.
    fn fake_gateway(listener: std::net::TcpListener) -> String {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let answer = "HTTP/1.1 202 Accepted\r\ncontent-length: 8\r\n\r\n{\"id\":1}";
        // A cut-off request has closed the connection: nothing to answer.
        let _ = stream.write_all(answer.as_bytes());
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// One request from a blocking client thread: the whole response.
    async fn call(port: u16, request: String) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap()
    }

    fn post(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-hermes-signature: v2=ab\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn forwards_to_the_profile_and_answers_404_and_503() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let home = home_with_coder(dir.path(), gateway.local_addr().unwrap().port());
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = front.local_addr().unwrap().port();
        let ingress = Arc::new(Ingress {
            home,
            limits: LimitsSection::default(),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(front, ingress, async {
            let _ = stop_rx.await;
        }));

        let seen = std::thread::spawn(move || fake_gateway(gateway));
        let answer = call(port, post("/coder/v1/webhooks/gh?x=1", "hello")).await;
        let seen = seen.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(answer.ends_with("{\"id\":1}"), "{answer}");
        assert!(
            seen.starts_with("POST /v1/webhooks/gh?x=1 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(seen.contains("x-hermes-signature: v2=ab\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-prefix: /coder\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
        assert!(seen.ends_with("\r\n\r\nhello"), "{seen}");

        // Nothing listens on the gateway's port any more.
        let answer = call(port, post("/coder/v1/webhooks/gh", "x")).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 5\r\n"), "{answer}");
        let answer = call(port, post("/ghost/v1/webhooks/gh", "x")).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("unknown_profile"), "{answer}");
        let answer = call(port, post("/coder/health", "")).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        // Declared over the profile's webhooks.max_body_bytes: refused from
        // the head, before connecting (and before a byte of the body is sent).
        let big = hermes_core::config::DEFAULT_MAX_BODY + 1;
        let head = format!(
            "POST /coder/v1/webhooks/gh HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {big}\r\n\r\n"
        );
        let answer = call(port, head).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

        stop_tx.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_slower_than_the_profiles_body_timeout_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let home = home_with_coder(dir.path(), gateway.local_addr().unwrap().port());
        let config_path = home.profile(&ProfileName::parse("coder").unwrap()).config();
        let mut config = hermes_core::config::Config::load(&config_path).unwrap();
        config.gateway.limits.body_timeout_secs = 1;
        config.save(&config_path).unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = front.local_addr().unwrap().port();
        let ingress = Arc::new(Ingress {
            home,
            limits: LimitsSection::default(),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(front, ingress, async {
            let _ = stop_rx.await;
        }));
        let seen = std::thread::spawn(move || fake_gateway(gateway));
        let started = std::time::Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            // Half the declared body, then nothing.
            let head =
                "POST /coder/v1/webhooks/gh HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello";
            s.write_all(head.as_bytes()).unwrap();
            let mut out = [0u8; 4096];
            let n = s.read(&mut out).unwrap();
            String::from_utf8_lossy(&out[..n]).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The gateway saw the head and the half body, never a whole request.
        let seen = seen.join().unwrap();
        assert!(seen.ends_with("\r\n\r\nhello"), "{seen}");
        stop_tx.send(()).unwrap();
        server.await.unwrap();
    }
}
