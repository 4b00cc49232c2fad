//! The HTTP surface: health, the signed webhook receiver and the event pager.
//! Every error answer is JSON: `{"error": "<what happened>", "code": "<stable code>"}`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use hermes_core::config::LimitsSection;
use hermes_core::deliveries::LastDelivery;
use hermes_core::home::ProfilePaths;
use hermes_core::name::HookName;
use hermes_core::state::{self, RunState};
use hermes_inbox::{Event, Inbox, InboxError};

use crate::admission::{Admission, Ticket};
use crate::hooks::{Hooks, Recorder};
use crate::replay::ReplayGuard;
use crate::signature::{self, AuthError};
use crate::stats::RequestStats;

pub type Body = Full<Bytes>;

/// Everything a request handler can see.
pub struct App {
    pub paths: ProfilePaths,
    pub pid: u32,
    pub started: Instant,
    pub started_at_ms: u64,
    pub listen: String,
    pub secret: Vec<u8>,
    pub inbox: Arc<Inbox>,
    pub state: Mutex<RunState>,
    pub limits: LimitsSection,
    pub admission: Arc<Admission>,
    pub replay: Mutex<ReplayGuard>,
    pub requests: RequestStats,
    pub hooks: Hooks,
    pub deliveries: Recorder,
}

impl App {
    /// Record a transition in memory and in `gateway_state.json` (only when it changes).
    pub fn set_state(&self, new: RunState) {
        if self.enter_state(new) {
            self.record_state(new);
        }
    }

    /// A transition in memory only (what `/health/detailed` answers);
    /// whether it changed anything.
    pub fn enter_state(&self, new: RunState) -> bool {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *current != new;
        *current = new;
        changed
    }

    /// Write `state` into `gateway_state.json`; a failure is logged.
    pub fn record_state(&self, state: RunState) {
        if let Err(e) = crate::run::report(&self.paths, |s| s.gateway_state = Some(state)) {
            crate::log(&format!("unable to record state {}: {e}", state.as_str()));
        }
    }

    fn state(&self) -> RunState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replay(&self) -> std::sync::MutexGuard<'_, ReplayGuard> {
        self.replay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each listed or delivered-to hook: its scheme and last delivery.
    fn hooks_json(&self) -> Value {
        let schemes = self.hooks.schemes();
        let last = self.deliveries.snapshot().hooks;
        let mut names: Vec<&str> = schemes.keys().copied().collect();
        names.extend(last.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        Value::Array(
            names
                .into_iter()
                .map(|hook| {
                    json!({
                        "hook": hook,
                        "scheme": schemes.get(hook).copied().unwrap_or_default(),
                        "last_delivery": last.get(hook),
                    })
                })
                .collect(),
        )
    }

    fn detailed(&self) -> Value {
        let recovery = self.inbox.recovery();
        let (commits, committed_events) = self.inbox.commits();
        json!({
            "status": "ok",
            "profile": self.paths.name.as_str(),
            "pid": self.pid,
            "state": self.state().as_str(),
            "uptime_s": self.started.elapsed().as_secs(),
            "started_at_ms": self.started_at_ms,
            "version": env!("CARGO_PKG_VERSION"),
            "listen": self.listen,
            "hooks": self.hooks_json(),
            "inbox": {
                "dir": self.inbox.dir(),
                "max_body_bytes": self.inbox.max_body_bytes(),
                "hooks": self.inbox.stats().iter().map(|h| json!({
                    "hook": h.hook,
                    "first_id": h.first_id,
                    "last_id": h.last_id,
                    "segments": h.segments,
                    "bytes": h.bytes,
                })).collect::<Vec<_>>(),
                "recovery": {
                    "hooks": recovery.hooks,
                    "segments": recovery.segments,
                    "events": recovery.events,
                    "cuts": recovery.cuts.iter().map(|c| json!({
                        "hook": c.hook,
                        "segment": c.segment,
                        "kept_records": c.kept_records,
                        "cut_bytes": c.cut_bytes,
                        "reason": c.reason,
                    })).collect::<Vec<_>>(),
                    "removed_empty": recovery.removed_empty,
                },
                "retention_error": self.inbox.retention_error(),
                "group_commits": commits,
                "committed_events": committed_events,
            },
            "webhook_requests": self.requests.to_json(),
            "connections": {
                "open": self.admission.open_connections(),
                "max": self.limits.max_connections,
                "body_bytes_reserved": self.admission.reserved_bytes(),
                "max_inflight_body_bytes": self.limits.max_inflight_body_bytes,
                "replay_entries": self.replay().len(),
            },
        })
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut body = serde_json::to_vec(&value).expect("JSON values always serialise");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response<Body> {
    json_response(
        status,
        json!({ "error": message.to_string(), "code": code }),
    )
}

fn unauthorized(err: AuthError) -> Response<Body> {
    let mut response = error(StatusCode::UNAUTHORIZED, err.code(), &err);
    if err == AuthError::BadToken {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn bearer(app: &App, req: &Request<Incoming>) -> Result<(), AuthError> {
    signature::check_bearer(
        &app.secret,
        req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes),
    )
}

pub async fn handle(app: Arc<App>, ticket: &Ticket, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        // The profile lets a probe tell this gateway from another one on its port.
        (&Method::GET, ["health"]) => json_response(
            StatusCode::OK,
            json!({"status": "ok", "profile": app.paths.name.as_str()}),
        ),
        // Hook names, paths and the pid are for the secret's holder only.
        (&Method::GET, ["health", "detailed"]) => match bearer(&app, &req) {
            Ok(()) => json_response(StatusCode::OK, app.detailed()),
            Err(e) => unauthorized(e),
        },
        (&Method::POST, ["v1", "webhooks", hook]) => {
            let hook = hook.to_string();
            let started = Instant::now();
            let stats = app.clone();
            let response = receive(app, ticket, &hook, req).await;
            stats
                .requests
                .record(response.status().as_u16(), started.elapsed());
            response
        }
        (&Method::GET, ["v1", "webhooks", hook, "events"]) => {
            let hook = hook.to_string();
            list(app, ticket, &hook, &req).await
        }
        (_, ["health"] | ["health", "detailed"] | ["v1", "webhooks", _, "events"]) => {
            method_not_allowed("GET")
        }
        (_, ["v1", "webhooks", _]) => method_not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {path}"),
        ),
    }
}

/// A hook name from the path, or the 400 answer for a bad one.
fn parse_hook(raw: &str) -> Result<HookName, Box<Response<Body>>> {
    HookName::parse(raw).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_hook",
            format!("hook {e}"),
        ))
    })
}

fn now_secs() -> u64 {
    state::now_ms() / 1000
}

/// Why a delivery was not stored: its answer.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Self {
        Refusal {
            status,
            code,
            message: message.to_string(),
        }
    }

    fn response(&self) -> Response<Body> {
        let mut response = error(self.status, self.code, &self.message);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<AuthError> for Refusal {
    fn from(err: AuthError) -> Self {
        let status = match err {
            AuthError::BadDeliveryId(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        Refusal::new(status, err.code(), err)
    }
}

/// Everything about a delivery that can be judged from its head, before a byte
/// of its body is read or any of the body budget is spent on it.
struct Head {
    signed: signature::Head,
    /// Body bytes to reserve: the declared length, or the limit when chunked.
    reserve: u64,
}

fn judge_head(
    app: &App,
    scheme: signature::Scheme,
    req: &Request<Incoming>,
) -> Result<Head, Refusal> {
    let max = app.inbox.max_body_bytes();
    let headers = req.headers();
    let declared = match headers.get(CONTENT_LENGTH) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(len) => Some(len),
            None => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_content_length",
                    "Content-Length is not a byte count",
                ))
            }
        },
    };
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let signed = signature::judge(scheme, headers, now_secs())?;
    if let Some(timestamp) = signed.timestamp {
        app.replay().check(timestamp, &signed.tags)?;
    }
    Ok(Head {
        signed,
        reserve: declared.unwrap_or(max),
    })
}

fn too_large(max: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("body exceeds the limit of {max} bytes"),
    )
}

async fn receive(
    app: Arc<App>,
    ticket: &Ticket,
    hook: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let hook = match parse_hook(hook) {
        Ok(hook) => hook,
        Err(response) => return *response,
    };
    let outcome = deliver(&app, ticket, &hook, req).await;
    let (status, code) = match &outcome {
        Ok(Delivered::Stored(appended)) if appended.duplicate => {
            (StatusCode::ACCEPTED, "duplicate")
        }
        Ok(Delivered::Stored(_)) => (StatusCode::ACCEPTED, "accepted"),
        Ok(Delivered::Challenge(_)) => (StatusCode::OK, "url_verification"),
        Err(refusal) => (refusal.status, refusal.code),
    };
    // Refusals of hooks nobody configured are not worth a line (and anyone can make them up).
    if outcome.is_ok() || app.hooks.is_listed(&hook) {
        app.deliveries.note(
            &hook,
            LastDelivery {
                at_ms: state::now_ms(),
                status: status.as_u16(),
                code: code.to_string(),
            },
        );
    }
    match outcome {
        Ok(Delivered::Stored(appended)) => json_response(
            StatusCode::ACCEPTED,
            json!({"id": appended.id, "hook": hook.as_str(), "duplicate": appended.duplicate}),
        ),
        Ok(Delivered::Challenge(challenge)) => {
            json_response(StatusCode::OK, json!({ "challenge": challenge }))
        }
        Err(refusal) => refusal.response(),
    }
}

enum Delivered {
    Stored(hermes_inbox::Appended),
    /// Slack's signed `url_verification`, answered with its challenge and not stored.
    Challenge(String),
}

async fn deliver(
    app: &App,
    ticket: &Ticket,
    hook: &HookName,
    req: Request<Incoming>,
) -> Result<Delivered, Refusal> {
    let auth = app.hooks.get(hook);
    let key = auth.key.as_ref().map_err(|reason| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hook_secret_missing",
            reason,
        )
    })?;
    let head = judge_head(app, auth.scheme, &req)?;
    let Some(_budget) = ticket.reserve(head.reserve) else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many request bodies in flight; retry shortly",
        ));
    };
    let body_timeout = std::time::Duration::from_secs(app.limits.body_timeout_secs);
    let reading = Limited::new(req.into_body(), head.reserve as usize).collect();
    let Ok(read) = tokio::time::timeout(body_timeout, reading).await else {
        return Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {} s",
                body_timeout.as_secs()
            ),
        ));
    };
    let body = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large(app.inbox.max_body_bytes()))
        }
        Err(e) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("unable to read the body: {e}"),
            ))
        }
    };
    let tag = signature::verify(auth.scheme, key, &head.signed, &body)?;
    if let Some(timestamp) = head.signed.timestamp {
        app.replay().record(timestamp, &tag, now_secs())?;
    }
    // Authenticated: no longer a candidate for shedding.
    ticket.set_busy(true);
    if let Some(challenge) = signature::slack_challenge(auth.scheme, &body) {
        return Ok(Delivered::Challenge(challenge));
    }
    let idempotency_key = head
        .signed
        .key
        .or_else(|| signature::body_delivery_id(auth.scheme, &body));
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.inbox.append(
        hook.clone(),
        idempotency_key,
        body.to_vec(),
        move |result| {
            let _ = tx.send(result);
        },
    );
    drop(body);
    let stored = rx.await.unwrap_or(Err(InboxError::Closed));
    if let (Err(_), Some(timestamp)) = (&stored, head.signed.timestamp) {
        // Nothing stored: the sender's identical retry is not a replay.
        app.replay().forget(timestamp, &tag);
    }
    match stored {
        Ok(appended) => {
            if app.state() == RunState::Degraded {
                app.set_state(RunState::Running);
            }
            Ok(Delivered::Stored(appended))
        }
        Err(e) if e.is_disk_full() => {
            crate::log(&format!("refusing deliveries: {e}"));
            if app.state() == RunState::Running {
                app.set_state(RunState::Degraded);
            }
            Err(Refusal::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                e,
            ))
        }
        Err(InboxError::Closed) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            InboxError::Closed,
        )),
        Err(e) => {
            crate::log(&format!("delivery to hook {hook} failed: {e}"));
            Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                e,
            ))
        }
    }
}

/// `after` and `limit` from a query string; anything else in it is ignored.
fn page_query(query: Option<&str>) -> Result<(u64, usize), String> {
    let mut after = 0;
    let mut limit = 100;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" => {
                after = value
                    .parse()
                    .map_err(|_| format!("after={value:?} is not an event id"))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| format!("limit={value:?} is not a count"))?
            }
            _ => {}
        }
    }
    Ok((after, limit))
}

fn event_json(event: &Event) -> Value {
    let mut value = json!({
        "id": event.id,
        "received_at_ms": event.received_at_ms,
        "idempotency_key": event.idempotency_key,
    });
    match std::str::from_utf8(&event.body) {
        Ok(text) => value["body"] = Value::String(text.to_string()),
        Err(_) => {
            value["body_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(&event.body))
        }
    }
    value
}

async fn list(
    app: Arc<App>,
    ticket: &Ticket,
    hook: &str,
    req: &Request<Incoming>,
) -> Response<Body> {
    if let Err(e) = bearer(&app, req) {
        return unauthorized(e);
    }
    // The secret's holder reading a page is not shed to make room.
    ticket.set_busy(true);
    let hook = match parse_hook(hook) {
        Ok(hook) => hook,
        Err(response) => return *response,
    };
    let (after, limit) = match page_query(req.uri().query()) {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_query", message),
    };
    let inbox = app.inbox.clone();
    let lookup = hook.clone();
    let page = match tokio::task::spawn_blocking(move || inbox.page(&lookup, after, limit)).await {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "read_failed", e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "read_failed", e),
    };
    let next_after = page.events.last().map_or(after, |e| e.id);
    json_response(
        StatusCode::OK,
        json!({
            "hook": hook.as_str(),
            "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
            "first_id": page.first_id,
            "last_id": page.last_id,
            "next_after": next_after,
            "more": page.last_id.is_some_and(|last| last > next_after),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(page_query(None), Ok((0, 100)));
        assert_eq!(page_query(Some("after=7&limit=3&x=1")), Ok((7, 3)));
        assert!(page_query(Some("after=-1")).is_err());
        assert!(page_query(Some("limit=lots")).is_err());
    }
}
