//! The per-profile gateway process (`hermes [-p P] gateway run`) and the
//! client side of its webhook API.
//!
//! # Process
//! 1. Exclusive `flock` on `gateway.lock`; a second instance exits 75 naming
//!    the holder's pid; `--replace` sends it SIGTERM, waits up to 10 s, then
//!    SIGKILL, then takes the lock.
//! 2. `gateway.pid` (replaced atomically, not synced).
//! 3. `config.yaml` and the `.env` secret: a problem is fatal (exit 78,
//!    `startup_failed` with the reason), and so is a `gateway.port` another
//!    profile's config names too (`ports::confirm`, which also sets the port
//!    index right after a hand edit). Inbox recovery, then bind
//!    `gateway.host:gateway.port`: failure is `startup_failed`, exit 1.
//! 4. `gateway_state.json`, written once (its only write before readiness):
//!    `pid`, `started_at`, `gateway_state: running` (`desired_state` is
//!    never touched here); until then s6 shows the slot up and not ready.
//!    Readiness: a newline on `--notify-fd` (then closed) and `READY=1` to
//!    `$NOTIFY_SOCKET`.
//! 5. SIGTERM/SIGINT: `draining` (stop accepting, finish in-flight requests
//!    for at most 3 s), then `stopped` with `exit_reason` `sigterm`/`sigint`,
//!    exit 0. A full disk turns `running` into `degraded` until a write succeeds.
//!
//! # HTTP API
//! - `GET /health` → `200 {"status":"ok","profile":"<name>"}` (no
//!   authentication; probes check the name).
//! - `GET /health/detailed` with `Authorization: Bearer <secret>` → profile,
//!   pid, state, uptime, version, listen address, the inbox (per-hook ids and
//!   sizes, the start-up recovery report), webhook requests by status code with
//!   a latency histogram, and connection counts; 401 without.
//! - `POST /v1/webhooks/<hook>`: signed with the hook's scheme as described in
//!   [`signature`]; the sender's delivery id (`Idempotency-Key` for `hermes`,
//!   1–255 visible ASCII) is the event's idempotency key: a repeat within 24 h
//!   returns the original id with `"duplicate": true`. A hook whose sender
//!   issues the secret and has none: 503 `hook_secret_missing`.
//!   `202 {"id","hook","duplicate"}` only once the event is durable; 401
//!   bad/missing/stale/replayed signature (judged on the headers before the body
//!   is read, where possible); 413 body over `webhooks.max_body_bytes`; 503 with
//!   `Retry-After` at the connection or body-bytes cap (`gateway.limits`, see
//!   [`admission`]); 408 body slower than `gateway.limits.body_timeout_secs`;
//!   507 disk full (nothing stored).
//! - `GET /v1/webhooks/<hook>/events?after=<id>&limit=<n>` with
//!   `Authorization: Bearer <secret>` → `{"events":[...],"next_after","more",
//!   "first_id","last_id"}`; `limit` defaults to 100, at most 1000; `limit=0`
//!   returns no events, only the ids.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod admission;
pub mod client;
mod error;
mod hooks;
mod lock;
mod readiness;
pub mod remote;
mod replay;
mod routes;
mod run;
mod server;
pub mod signature;
mod stats;

pub use error::GatewayError;
pub use lock::holder_pid;
pub use run::{run, RunOptions};
pub use server::{http1_builder, serve_admitted};

/// The profile this process serves, named in every log line: `docker logs`
/// mixes the lines of every gateway.
static PROFILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One line to stderr, which s6-log (or the terminal) timestamps and keeps:
/// `hermes-gateway[coder]: …`. One `write`, newline included: `eprintln!`
/// writes the newline apart, so two threads' lines could interleave, and
/// the logger woke twice per line.
pub(crate) fn log(message: &str) {
    use std::io::Write;
    let line = log_line(PROFILE.get().map(String::as_str), message);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn log_line(profile: Option<&str>, message: &str) -> String {
    match profile {
        Some(p) => format!("hermes-gateway[{p}]: {message}\n"),
        None => format!("hermes-gateway: {message}\n"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_name_the_profile() {
        assert_eq!(
            super::log_line(Some("coder"), "stopped (sigterm)"),
            "hermes-gateway[coder]: stopped (sigterm)\n"
        );
    }
}
