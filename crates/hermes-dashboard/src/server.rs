//! Binding, the accept loop and the HTTP plumbing (hyper, one current-thread
//! runtime). Handlers block (they run `s6-svc` and wait), so each runs on
//! tokio's blocking pool and the accept loop never stalls.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

use hermes_model::{DashboardSettings, Environment};

use crate::api::{self, App, Reply, Request};
use crate::auth::Auth;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 128;
/// A client must send its request head within this (slow-loris bound).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// `HERMES_DASHBOARD_TOKEN`; `None` serves without authentication (loopback only).
    pub token: Option<String>,
    /// How long start/stop/restart wait for the outcome unless the caller asks otherwise.
    pub action_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback bind without a token: a configuration error (exit 78).
    #[error("{0}")]
    Insecure(String),
    #[error("unable to listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("unable to read random bytes for the CSRF token: {0}")]
    Random(getrandom::Error),
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
}

impl Dashboard {
    /// Check the bind rule, then listen. Nothing is served until [`Dashboard::serve_until`].
    pub fn bind(
        env: Arc<dyn Environment>,
        settings: &Settings,
    ) -> Result<Dashboard, DashboardError> {
        let token = settings
            .token
            .as_ref()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let rule = DashboardSettings {
            enabled: true,
            host: settings.host.clone(),
            port: settings.port,
            token_set: token.is_some(),
            token_len: token.as_ref().map_or(0, String::len),
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
        let auth = Auth::new(token).map_err(DashboardError::Random)?;
        Ok(Dashboard {
            listener,
            app: Arc::new(App::new(env, auth, settings.action_timeout)),
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
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                _ = &mut stop => break,
                permit = slots.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let stream = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of descriptors or a reset before accept: keep serving the others.
                    Err(_) => continue,
                },
            };
            let app = self.app.clone();
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| respond(app.clone(), req)),
                );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
        let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
        Ok(())
    }
}

async fn respond(
    app: Arc<App>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, api::MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(to_response(Reply::error(
                413,
                "too_large",
                format!(
                    "request body larger than {} bytes, or unreadable",
                    api::MAX_BODY
                ),
            )))
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
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    };
    let reply = tokio::task::spawn_blocking(move || app.handle(&request))
        .await
        .unwrap_or_else(|e| {
            Reply::error(500, "internal", format!("the request handler failed: {e}"))
        });
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
