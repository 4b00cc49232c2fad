//! Kept-alive connections to the gateways, reused from one request to the
//! next: a new loopback connection per request (connect, handshake, the
//! gateway's admission) cost most of the ingress's overhead under load.
//!
//! A connection goes back to the pool only once its response has been read
//! to the end (HTTP/1.1 answers one request at a time on it), and is taken
//! out only while younger than its idle limit, set below the gateway's head
//! timeout, after which the gateway may close it. A connection the gateway
//! closed anyway is found closed when taken, or hands the request back
//! unsent ([`hyper::client::conn::TrySendError::take_message`]), which the
//! caller then sends on a new connection: a request is never sent twice.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::body::Guarded;

/// Idle connections kept per gateway, at most: enough for the ingress's
/// concurrent requests to one gateway, few enough that idle ones do not fill
/// its connection cap (it sheds idle connections first anyway).
const MAX_IDLE_PER_GATEWAY: usize = 64;

pub type Sender = SendRequest<Guarded>;

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    /// An open connection to `addr` idle for less than `idle_limit`, the most
    /// recently used first; the stale ones are dropped on the way.
    pub fn take(&self, addr: &str, idle_limit: Duration) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        let now = Instant::now();
        list.retain(|c| now.duration_since(c.since) < idle_limit && !c.sender.is_closed());
        list.pop().map(|c| c.sender)
    }

    fn put(&self, addr: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_GATEWAY {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    #[cfg(test)]
    pub fn idle(&self, addr: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(addr).map_or(0, Vec::len)
    }
}

/// A gateway's response body on its way to the client; dropped once read
/// to the end, it returns its connection to the pool.
pub struct Returning {
    inner: Incoming,
    done: bool,
    back: Option<(Arc<Pool>, String, Sender)>,
}

impl Returning {
    pub fn new(inner: Incoming, pool: Arc<Pool>, addr: String, sender: Sender) -> Returning {
        Returning {
            inner,
            done: false,
            back: Some((pool, addr, sender)),
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body not read to the end leaves the connection mid-response: it closes.
        if self.done || self.inner.is_end_stream() {
            if let Some((pool, addr, sender)) = self.back.take() {
                pool.put(addr, sender);
            }
        }
    }
}
