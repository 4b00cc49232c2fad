//! The accept loop: one HTTP/1.1 connection task per client on a single
//! thread, until the stop future resolves; then stop accepting and let
//! in-flight requests finish (bounded by [`DRAIN_LIMIT`]). Each connection
//! takes a place in [`Admission`] first; one that cannot is answered 503 and
//! closed at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::state::RunState;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::routes::{self, App};

/// In-flight requests get this long after SIGTERM; well inside s6's and Docker's grace.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// hyper's read buffer per connection, and so the largest request head: a
/// client trickling headers holds at most this (hyper's default is ~400 KiB).
const READ_BUFFER: usize = 16 * 1024;
/// The answer to a connection past the cap, written without reading its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 82\r\n\r\n{\"error\":\"too many open connections; retry shortly\",\"code\":\"too_many_connections\"}";

/// Serve until `stop` yields a reason, drain, and return that reason.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    stop: impl Future<Output = &'static str>,
) -> &'static str {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(app.limits.head_timeout_secs))
        .max_buf_size(READ_BUFFER);
    let admission: &Arc<Admission> = &app.admission;
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            reason = &mut stop => break reason,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some((ticket, shed)) = admission.admit() else {
                        // Best effort: a client that does not read this loses nothing we hold.
                        let _ = stream.try_write(BUSY);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let ticket = Arc::new(ticket);
                    let app = app.clone();
                    let conn_ticket = ticket.clone();
                    let service = service_fn(move |req| {
                        let (app, ticket) = (app.clone(), conn_ticket.clone());
                        async move {
                            ticket.set_busy(false);
                            let response = routes::handle(app, &ticket, req).await;
                            ticket.set_busy(false);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    // A client that hangs up mid-request is its own problem, not the gateway's.
                    // A shed connection is dropped with whatever it had sent.
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
                    crate::log(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    drop(listener);
    app.set_state(RunState::Draining);
    let open = graceful.count();
    crate::log(&format!("{reason}: draining {open} open connection(s)"));
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        crate::log(&format!(
            "drain limit of {} s reached: closing the remaining connections",
            DRAIN_LIMIT.as_secs()
        ));
    }
    reason
}
