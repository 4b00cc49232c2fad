//! Waiting in tests: poll with a deadline, never a fixed sleep.

use std::time::{Duration, Instant};

/// Poll `done` every `interval` until it holds or `limit` passes; whether it held.
pub fn poll(limit: Duration, interval: Duration, done: impl FnMut() -> bool) -> bool {
    hermes_core::wait::until(Instant::now() + limit, interval, done)
}

/// Poll `check` until it returns `Some`, or panic with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    if !poll(limit, Duration::from_millis(25), || {
        found = check();
        found.is_some()
    }) {
        panic!("timed out after {limit:?} waiting for {what}");
    }
    found.expect("poll returned true")
}
