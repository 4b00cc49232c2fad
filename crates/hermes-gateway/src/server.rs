//! The accept loop ([`serve_admitted`], the ingress's too): one HTTP/1.1
//! connection task per client on a single thread, until the stop future resolves; then stop accepting and let
//! in-flight requests finish (bounded by [`DRAIN_LIMIT`]). Each connection
//! takes a place in [`Admission`] first; one that cannot is answered 503 and
//! closed at once.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hermes_core::state::{RunState, StopSignal};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::admission::{Admission, Ticket};
use crate::routes::{self, App};

/// In-flight requests get this long after SIGTERM; well inside s6's and Docker's grace.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// A drain over within this is not written to `gateway_state.json`: the
/// stop recorded right after it says all there is, and an idle gateway's way
/// down is one state write (one fsync and rename) instead of two. With 50
/// gateways stopping together those writes queue on the same journal.
const UNRECORDED_DRAIN: Duration = Duration::from_millis(100);
/// hyper's read buffer per connection, and so the largest request head: a
/// client trickling headers holds at most this (hyper's default is ~400 KiB).
const READ_BUFFER: usize = 16 * 1024;
/// The answer to a connection past the cap, written without reading its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 82\r\n\r\n{\"error\":\"too many open connections; retry shortly\",\"code\":\"too_many_connections\"}";

/// Refusals being answered at once, at most: past it a refused connection is just closed.
const MAX_REFUSING: usize = 64;
/// How long a refused client gets to finish sending before its connection is closed.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Answer 503 to a connection past the cap. Closing a socket with unread
/// request bytes makes the kernel send a reset, which can destroy the answer
/// before the client reads it; so the answer is written, the sending side
/// shut, and what the client still sends is read and dropped for a moment.
fn refuse(stream: TcpStream, refusing: &Arc<AtomicUsize>) {
    if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let _ = stream.try_write(BUSY);
        // Through std for a half close (tokio's needs its io-util feature).
        let half_closed = stream.into_std().and_then(|std| {
            std.shutdown(std::net::Shutdown::Write)?;
            TcpStream::from_std(std)
        });
        if let Ok(stream) = half_closed {
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                while stream.readable().await.is_ok() {
                    match stream.try_read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
            })
            .await;
        }
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The server side of a connection: heads bounded in size and in time.
pub fn http1_builder(head_timeout: Duration) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(READ_BUFFER);
    http
}

/// The accept loop shared by the gateway and the ingress: until `stop`
/// resolves, each connection takes a place in `admission` (one that cannot
/// is answered 503 and closed at once) and is served by the service
/// `service` makes for it from its ticket and peer; `graceful` watches every
/// connection for the caller's drain. A shed connection is dropped with
/// whatever it had sent; a client that hangs up mid-request is its own
/// problem. Returns what `stop` resolved to, with the listener closed.
pub async fn serve_admitted<T, M, S>(
    listener: TcpListener,
    http: &http1::Builder,
    admission: &Arc<Admission>,
    graceful: &GracefulShutdown,
    stop: T,
    service: M,
    log: impl Fn(&str),
) -> T::Output
where
    T: Future,
    M: Fn(Arc<Ticket>, SocketAddr) -> S,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let refusing = Arc::new(AtomicUsize::new(0));
    tokio::pin!(stop);
    let output = loop {
        tokio::select! {
            output = &mut stop => break output,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some((ticket, shed)) = admission.admit() else {
                        refuse(stream, &refusing);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let ticket = Arc::new(ticket);
                    let conn = http.serve_connection(TokioIo::new(stream), service(ticket.clone(), peer));
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = conn => {}
                            _ = shed => {}
                        }
                        drop(ticket);
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning on accept.
                    log(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    drop(listener);
    output
}

/// Serve until `stop` yields a reason, drain, and return that reason.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    stop: impl Future<Output = StopSignal>,
) -> StopSignal {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(Duration::from_secs(app.limits.head_timeout_secs));
    let service = |ticket: Arc<Ticket>, _peer| {
        let app = app.clone();
        service_fn(move |req| {
            let (app, ticket) = (app.clone(), ticket.clone());
            async move {
                ticket.set_busy(false);
                let response = routes::handle(app, &ticket, req).await;
                ticket.set_busy(false);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let reason = serve_admitted(
        listener,
        &http,
        &app.admission,
        &graceful,
        stop,
        service,
        crate::log,
    )
    .await;
    app.enter_state(RunState::Draining);
    let open = graceful.count();
    crate::log(&format!(
        "{}: draining {open} open connection(s)",
        reason.as_str()
    ));
    let drain = graceful.shutdown();
    tokio::pin!(drain);
    if tokio::time::timeout(UNRECORDED_DRAIN, &mut drain)
        .await
        .is_err()
    {
        app.record_state(RunState::Draining);
        if tokio::time::timeout(DRAIN_LIMIT - UNRECORDED_DRAIN, drain)
            .await
            .is_err()
        {
            crate::log(&format!(
                "drain limit of {} s reached: closing the remaining connections",
                DRAIN_LIMIT.as_secs()
            ));
        }
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["code"], "too_many_connections");
    }
}
