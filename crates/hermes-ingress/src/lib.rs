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
pub mod pool;
pub mod route;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::config::LimitsSection;
use hermes_core::{HermesHome, ProfileName};
use hermes_gateway::admission::{Admission, Ticket};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::body::{Cut, CutCell, Guarded};
use crate::pool::{Pool, Returning, Sender};
use crate::route::Route;
use crate::upstream::Upstreams;

/// In-flight requests get this long after SIGTERM, as in the gateway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// How long connecting to a gateway on loopback may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub type Body = Either<Returning, Full<Bytes>>;

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
    upstreams: Upstreams,
    pool: Arc<Pool>,
}

impl Ingress {
    pub fn new(home: HermesHome, limits: LimitsSection) -> Ingress {
        Ingress {
            home,
            limits,
            upstreams: Upstreams::default(),
            pool: Arc::default(),
        }
    }
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

/// The answer when the gateway failed the request: `cut` says whether the
/// ingress cut its body off (the gateway's answer to that body), `sent`
/// whether any of it reached the gateway, which then went away without
/// answering: nothing says whether the event was stored. Otherwise the
/// gateway could not be reached: why (down, parked) says when to retry.
fn upstream_failed(
    ingress: &Ingress,
    profile: &ProfileName,
    cut: &CutCell,
    sent: bool,
) -> Response<Body> {
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
        None if sent => unavailable(
            &format!(
                "the gateway of profile {profile} closed the connection before answering; \
                 retry (with the same Idempotency-Key, a stored event is not stored twice)"
            ),
            1,
        ),
        None => {
            let why = upstream::why_down(&ingress.home, profile);
            unavailable(&why.message, why.retry_after_secs)
        }
    }
}

/// A new connection to a gateway, its connection task spawned.
async fn connect(addr: &str) -> Option<Sender> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
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
    let upstream = match ingress.upstreams.lookup(&ingress.home, &profile) {
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

    let (mut parts, incoming) = req.into_parts();
    let cut: CutCell = Arc::default();
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
    let mut request = Request::from_parts(parts, body);

    // A kept-alive connection first; a new one when there is none, or when
    // the kept one was closed before the request went out on it.
    let mut pooled = ingress.pool.take(&upstream.addr, upstream.idle_limit);
    let (sender, sent) = loop {
        let mut sender = match pooled.take() {
            Some(sender) => sender,
            None => match connect(&upstream.addr).await {
                Some(sender) => sender,
                None => return upstream_failed(ingress, &profile, &cut, false),
            },
        };
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => break (sender, Ok(response)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => break (sender, Err(())),
            },
        }
    };
    let Ok(response) = sent else {
        return upstream_failed(ingress, &profile, &cut, true);
    };
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let body = Returning::new(body, ingress.pool.clone(), upstream.addr, sender);
    Response::from_parts(parts, Either::Left(body))
}

/// Serve until `stop` resolves, then drain for at most [`DRAIN_LIMIT`].
pub async fn serve(listener: TcpListener, ingress: Arc<Ingress>, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let http = hermes_gateway::http1_builder(Duration::from_secs(ingress.limits.head_timeout_secs));
    let admission = Admission::new(
        ingress.limits.max_connections as usize,
        ingress.limits.max_inflight_body_bytes,
    );
    let service = |ticket: Arc<Ticket>, peer: SocketAddr| {
        let (ingress, peer) = (ingress.clone(), peer.ip().to_string());
        service_fn(move |req| {
            let (ingress, ticket, peer) = (ingress.clone(), ticket.clone(), peer.clone());
            async move {
                // Waiting (sheddable past the grace) until the gateway answers.
                ticket.set_busy(false);
                let response = handle(&ingress, req, &peer).await;
                ticket.set_busy(true);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let log = |message: &str| eprintln!("hermes-ingress: {message}");
    hermes_gateway::serve_admitted(listener, &http, &admission, &graceful, stop, service, log)
        .await;
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
    let ingress = Arc::new(Ingress::new(home, LimitsSection::default()));
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
    use hermes_core::config::Config;
    use hermes_core::profile;
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

    fn edit_coder_config(home: &HermesHome, edit: impl FnOnce(&mut Config)) {
        let path = home.profile(&ProfileName::parse("coder").unwrap()).config();
        let mut config = Config::load(&path).unwrap();
        edit(&mut config);
        config.save(&path).unwrap();
    }

    /// An ingress on a free port, serving until `stop` is sent.
    struct Running {
        port: u16,
        ingress: Arc<Ingress>,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<()>,
    }

    async fn start(home: HermesHome) -> Running {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = front.local_addr().unwrap().port();
        let ingress = Arc::new(Ingress::new(home, LimitsSection::default()));
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(front, ingress.clone(), async {
            let _ = stop_rx.await;
        }));
        Running {
            port,
            ingress,
            stop,
            server,
        }
    }

    impl Running {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            self.server.await.unwrap();
        }
    }

    /// Reads one request head and up to `Content-Length` body bytes (or
    /// until the sender closes): what the gateway saw.
    fn read_request(stream: &mut std::net::TcpStream) -> String {
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
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Answers 202 on a kept-alive connection.
    fn accept(stream: &mut std::net::TcpStream) {
        let answer = "HTTP/1.1 202 Accepted\r\ncontent-length: 8\r\n\r\n{\"id\":1}";
        // A cut-off request has closed the connection: nothing to answer.
        let _ = stream.write_all(answer.as_bytes());
    }

    type Seen = (Vec<String>, std::net::TcpListener, std::net::TcpStream);

    /// A stand-in gateway: takes one connection, answers 202 to `requests`
    /// requests on it, and hands over what it saw, the listener and the
    /// connection, still open.
    fn fake_gateway(
        listener: std::net::TcpListener,
        requests: usize,
    ) -> std::thread::JoinHandle<Seen> {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // A request that never comes fails the test instead of hanging it.
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let seen = (0..requests)
                .map(|_| {
                    let seen = read_request(&mut stream);
                    accept(&mut stream);
                    seen
                })
                .collect();
            (seen, listener, stream)
        })
    }

    /// One request from a blocking client thread: the whole response.
    async fn call(port: u16, request: String) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
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
        let ingress = start(home).await;
        let port = ingress.port;

        let seen = fake_gateway(gateway, 1);
        let answer = call(port, post("/coder/v1/webhooks/gh?x=1", "hello")).await;
        let (seen, gateway, conn) = seen.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(answer.ends_with("{\"id\":1}"), "{answer}");
        let seen = &seen[0];
        assert!(
            seen.starts_with("POST /v1/webhooks/gh?x=1 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(seen.contains("x-hermes-signature: v2=ab\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-prefix: /coder\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
        assert!(!seen.contains("connection: close"), "{seen}");
        assert!(seen.ends_with("\r\n\r\nhello"), "{seen}");

        // Nothing listens on the gateway's port any more.
        drop((gateway, conn));
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
        ingress.stop().await;
    }

    #[tokio::test]
    async fn the_connection_to_the_gateway_is_kept_and_a_closed_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = gateway.local_addr().unwrap().to_string();
        let home = home_with_coder(dir.path(), gateway.local_addr().unwrap().port());
        let ingress = start(home).await;

        // Two requests from two clients, one connection to the gateway.
        let seen = fake_gateway(gateway, 2);
        for n in 0..2 {
            let answer = call(
                ingress.port,
                post("/coder/v1/webhooks/gh", &format!("n{n}")),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        }
        let (seen, gateway, conn) = seen.join().unwrap();
        assert!(
            seen[0].ends_with("n0") && seen[1].ends_with("n1"),
            "{seen:?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ingress.ingress.pool.idle(&addr) != 1 {
            assert!(std::time::Instant::now() < deadline, "not back in the pool");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The gateway closed it (gone, restarted): the next request goes out
        // once, on a new connection.
        drop(conn);
        let seen = fake_gateway(gateway, 1);
        let answer = call(ingress.port, post("/coder/v1/webhooks/gh", "n2")).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        let (seen, gateway, _conn) = seen.join().unwrap();
        assert!(seen[0].ends_with("n2"), "{seen:?}");
        gateway.set_nonblocking(true).unwrap();
        assert!(gateway.accept().is_err(), "a request was sent twice");
        ingress.stop().await;
    }

    #[tokio::test]
    async fn a_changed_config_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let home = home_with_coder(dir.path(), first.local_addr().unwrap().port());
        let ingress = start(home.clone()).await;
        let seen = fake_gateway(first, 1);
        let answer = call(ingress.port, post("/coder/v1/webhooks/gh", "one")).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(seen.join().unwrap().0[0].ends_with("one"));

        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = second.local_addr().unwrap().port();
        edit_coder_config(&home, |c| c.gateway.port = port);
        let seen = fake_gateway(second, 1);
        let answer = call(ingress.port, post("/coder/v1/webhooks/gh", "two")).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(seen.join().unwrap().0[0].ends_with("two"));
        ingress.stop().await;
    }

    #[tokio::test]
    async fn a_body_slower_than_the_profiles_body_timeout_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let home = home_with_coder(dir.path(), gateway.local_addr().unwrap().port());
        edit_coder_config(&home, |c| c.gateway.limits.body_timeout_secs = 1);
        let ingress = start(home).await;
        let port = ingress.port;
        let seen = fake_gateway(gateway, 1);
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
        let (seen, ..) = seen.join().unwrap();
        assert!(seen[0].ends_with("\r\n\r\nhello"), "{seen:?}");
        ingress.stop().await;
    }
}
