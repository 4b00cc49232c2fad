//! Binding, the accept loop and the HTTP plumbing (hyper, one current-thread
//! runtime). Handlers block (they run `s6-svc` and wait), so each runs on
//! tokio's blocking pool and the accept loop never stalls.
//!
//! Slow clients: a request head and a request body must each arrive within
//! [`Settings::request_timeout`], and when every connection slot is taken a
//! new connection closes the one that has gone longest without a request
//! being handled (an idle keep-alive, or a client dribbling its head or
//! body), so clients that hold slots open cannot lock the others out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{Notify, Semaphore};

use hermes_model::{DashboardSettings, Environment};

use crate::api::{self, App, Reply, Request};
use crate::auth::Auth;

/// Connections held at once; past this a new one closes the stalest (see above).
const MAX_CONNECTIONS: usize = 128;
/// The default time a client has to send a request head, and then its body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(3);

/// Sent with every response: the page loads only its own script and style,
/// cannot be framed, and leaks nothing through the referrer.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// The token every API call needs (`HERMES_DASHBOARD_TOKEN`, or the generated one).
    pub token: String,
    /// How long start/stop/restart wait for the outcome unless the caller asks otherwise.
    pub action_timeout: Duration,
    /// How long a client has to send a request head, and then its body ([`REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No token, or a short one on a non-loopback bind: a configuration error (exit 78).
    #[error("{0}")]
    Insecure(String),
    #[error("unable to listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("unable to start the dashboard's runtime: {0}")]
    Runtime(io::Error),
    #[error("unable to handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        source: io::Error,
    },
}

pub struct Dashboard {
    listener: TcpListener,
    app: Arc<App>,
    request_timeout: Duration,
}

impl Dashboard {
    /// Check the bind rule, then listen. Nothing is served until [`Dashboard::serve_until`].
    pub fn bind(
        env: Arc<dyn Environment>,
        settings: &Settings,
    ) -> Result<Dashboard, DashboardError> {
        let token = settings.token.trim().to_string();
        if token.is_empty() {
            return Err(DashboardError::Insecure(
                "the dashboard needs a token: set HERMES_DASHBOARD_TOKEN, or let \
                 `hermes dashboard` make one"
                    .into(),
            ));
        }
        let rule = DashboardSettings {
            enabled: true,
            host: settings.host.clone(),
            port: settings.port,
            token_set: true,
            token_len: token.len(),
        };
        rule.check_bind().map_err(DashboardError::Insecure)?;
        let host = settings.host.trim_start_matches('[').trim_end_matches(']');
        let listener =
            TcpListener::bind((host, settings.port)).map_err(|source| DashboardError::Bind {
                addr: format!("{}:{}", settings.host, settings.port),
                source,
            })?;
        let bind_error = |source| DashboardError::Bind {
            addr: format!("{}:{}", settings.host, settings.port),
            source,
        };
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(Dashboard {
            listener,
            app: Arc::new(App::new(env, Auth::new(token), settings.action_timeout)),
            request_timeout: settings.request_timeout,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until SIGTERM or SIGINT, then let in-flight requests finish.
    pub fn serve_until_signal(self) -> Result<(), DashboardError> {
        self.run(|| async {
            let install = |kind, name| {
                signal(kind).map_err(|source| DashboardError::Signal {
                    signal: name,
                    source,
                })
            };
            let mut term = install(SignalKind::terminate(), "SIGTERM")?;
            let mut int = install(SignalKind::interrupt(), "SIGINT")?;
            Ok(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
        })
    }

    /// Serve until `stop` completes.
    pub fn serve_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        self.run(|| async { Ok(stop) })
    }

    fn run<S, F>(self, make_stop: impl FnOnce() -> S) -> Result<(), DashboardError>
    where
        S: Future<Output = Result<F, DashboardError>>,
        F: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DashboardError::Runtime)?;
        let result = runtime.block_on(async move {
            // Signal handlers need the runtime, so the stop future is made inside it.
            let stop = make_stop().await?;
            self.accept_loop(stop).await
        });
        // An action still waiting on the supervisor must not hold the exit up.
        runtime.shutdown_timeout(DRAIN);
        result
    }

    async fn accept_loop(self, stop: impl Future<Output = ()>) -> Result<(), DashboardError> {
        let addr = self
            .listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let conns = Arc::new(Connections::default());
        let timeout = self.request_timeout;
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of descriptors or a reset before accept: keep serving the others.
                    Err(_) => continue,
                },
            };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // Full: make room, then wait for it (or for a handler to finish
                    // when every slot is busy handling a request).
                    conns.evict_stalest();
                    tokio::select! {
                        _ = &mut stop => break,
                        permit = slots.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break,
                        },
                    }
                }
            };
            let (id, state) = conns.add();
            let app = self.app.clone();
            let handler_state = state.clone();
            let peer_ip = peer.ip();
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        respond(app.clone(), handler_state.clone(), peer_ip, timeout, req)
                    }),
                );
            let conn = graceful.watch(conn);
            let conns = conns.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    // Dropping the connection closes its socket.
                    _ = state.evict.notified() => {}
                }
                conns.remove(id);
                drop(permit);
            });
        }
        let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
        Ok(())
    }
}

/// One open connection as the accept loop sees it.
struct ConnState {
    /// A request of this connection is being handled (its body has arrived).
    busy: AtomicBool,
    /// When it was accepted or last finished a request, in ms since `epoch`.
    since_ms: AtomicU64,
    epoch: Instant,
    evict: Notify,
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(ms, Ordering::Release);
    }
}

struct Connections {
    epoch: Instant,
    open: Mutex<(u64, HashMap<u64, Arc<ConnState>>)>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            epoch: Instant::now(),
            open: Mutex::new((0, HashMap::new())),
        }
    }
}

impl Connections {
    fn add(&self) -> (u64, Arc<ConnState>) {
        let state = Arc::new(ConnState {
            busy: AtomicBool::new(false),
            since_ms: AtomicU64::new(0),
            epoch: self.epoch,
            evict: Notify::new(),
        });
        state.touch();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 += 1;
        let id = open.0;
        open.1.insert(id, state.clone());
        (id, state)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&id);
    }

    /// Close the connection that has waited longest without a request being handled.
    fn evict_stalest(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let stalest = open
            .1
            .values()
            .filter(|c| !c.busy.load(Ordering::Acquire))
            .min_by_key(|c| c.since_ms.load(Ordering::Acquire));
        if let Some(conn) = stalest {
            // A stored permit: the connection's task sees it even if not yet waiting.
            conn.evict.notify_one();
        }
    }
}

async fn respond(
    app: Arc<App>,
    conn: Arc<ConnState>,
    peer: std::net::IpAddr,
    timeout: Duration,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body =
        match tokio::time::timeout(timeout, Limited::new(body, api::MAX_BODY).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => {
                return Ok(to_response(
                    Reply::error(
                        413,
                        "too_large",
                        format!(
                            "request body larger than {} bytes, or unreadable",
                            api::MAX_BODY
                        ),
                    )
                    .with_header("connection", "close".into()),
                ))
            }
            Err(_) => {
                return Ok(to_response(
                    Reply::error(
                        408,
                        "timeout",
                        format!("the request body did not arrive within {timeout:?}"),
                    )
                    .with_header("connection", "close".into()),
                ))
            }
        };
    let mut headers = std::collections::HashMap::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_string());
        }
    }
    let request = Request {
        peer,
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    };
    conn.busy.store(true, Ordering::Release);
    let reply = tokio::task::spawn_blocking(move || app.handle(&request))
        .await
        .unwrap_or_else(|e| {
            Reply::error(500, "internal", format!("the request handler failed: {e}"))
        });
    conn.touch();
    conn.busy.store(false, Ordering::Release);
    Ok(to_response(reply))
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", reply.content_type);
    for (name, value) in SECURITY_HEADERS {
        builder = builder.header(name, value);
    }
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|e| {
            let mut fallback = Response::new(Full::new(Bytes::from(format!(
                r#"{{"code":"internal","error":"unable to build the response: {e}"}}"#
            ))));
            *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
}
