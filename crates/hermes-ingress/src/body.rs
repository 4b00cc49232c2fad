//! The request body on its way to the gateway: passed on frame by frame as
//! it arrives (nothing buffered), cut off past the profile's body size or
//! body timeout, the same limits the gateway applies, so a client the
//! gateway would refuse cannot hold a connection to it through the ingress.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("the request body took longer than {} s", .0.as_secs())]
    TooSlow(Duration),
    #[error("the client stopped sending the request body")]
    Client,
}

/// What the handler reads after the exchange: the cut, if there was one.
pub type CutCell = Arc<Mutex<Option<Cut>>>;

pub struct Guarded {
    inner: Incoming,
    left: u64,
    max: u64,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    cut: CutCell,
}

impl Guarded {
    pub fn new(inner: Incoming, max: u64, timeout: Duration, cut: CutCell) -> Guarded {
        Guarded {
            inner,
            left: max,
            max,
            timeout,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            cut,
        }
    }

    fn fail(&self, why: Cut) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        Poll::Ready(Some(Err(why)))
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(Cut::TooSlow(self.timeout));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(_))) => self.fail(Cut::Client),
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    return self.fail(Cut::TooLarge(self.max));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
