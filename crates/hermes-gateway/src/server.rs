//! The accept loop: one HTTP/1.1 connection task per client on a single
//! thread, until the stop future resolves; then stop accepting and let
//! in-flight requests finish (bounded by [`DRAIN_LIMIT`]).

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

use crate::routes::{self, App};

/// In-flight requests get this long after SIGTERM; well inside s6's and Docker's grace.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve until `stop` yields a reason, drain, and return that reason.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    stop: impl Future<Output = &'static str>,
) -> &'static str {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            reason = &mut stop => break reason,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(routes::handle(app, req).await) }
                    });
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    // A client that hangs up mid-request is its own problem, not the gateway's.
                    tokio::spawn(async move {
                        let _ = conn.await;
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
