//! Routing and handlers, independent of the HTTP library: a [`Request`] in,
//! a [`Reply`] out. Every handler reads or acts through `hermes_model`, the
//! same code as `hermes status` and the TUI.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_core::ProfileName;
use hermes_model::actions::{self, ActionError};
use hermes_model::audit::{self, Actor};
use hermes_model::Action;
use hermes_model::{doctor, logs, Environment, Snapshot};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::assets;
use crate::auth::{self, Auth, Denied, LoginError};
use crate::limit;
use crate::metrics::Metrics;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Most log lines returned by one call.
const MAX_LOG_LINES: usize = 1000;
/// Longest wait a caller may ask of a lifecycle action.
const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Request {
    /// The client's address: failed credentials are counted per source.
    pub peer: IpAddr,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(value).unwrap_or_else(|e| {
                format!(r#"{{"code":"internal","error":"unable to encode the reply: {e}"}}"#)
                    .into_bytes()
            }),
        }
    }

    /// The error document every failure uses: `{"code", "error", …extra}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({"code": code, "error": message.into()}))
    }

    fn asset(content_type: &'static str, body: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// A snapshot this young is served again instead of collected anew: every
/// open page polls, and a snapshot costs one `s6-svstat` and one probe per gateway.
const SNAPSHOT_REUSE: Duration = Duration::from_millis(1000);

pub struct App {
    env: Arc<dyn Environment>,
    auth: Auth,
    /// The default wait of a lifecycle action.
    action_timeout: Duration,
    /// The last `GET /api/status` document, and when it was collected.
    /// Cleared by every state-changing call, so an action is seen at once.
    recent: Mutex<Option<(Instant, Arc<Vec<u8>>)>>,
    metrics: Arc<Metrics>,
}

impl App {
    pub fn new(env: Arc<dyn Environment>, auth: Auth, action_timeout: Duration) -> App {
        App {
            env,
            auth,
            action_timeout,
            recent: Mutex::new(None),
            metrics: Arc::default(),
        }
    }

    fn status(&self) -> Reply {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let body = match recent.as_ref() {
            Some((at, body)) if at.elapsed() < SNAPSHOT_REUSE => body.clone(),
            _ => {
                let reply = Reply::json(200, &Snapshot::collect(&*self.env));
                let body = Arc::new(reply.body);
                *recent = Some((Instant::now(), body.clone()));
                body
            }
        };
        Reply {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    pub fn handle(&self, req: &Request) -> Reply {
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [] | ["index.html"]) => Reply::asset("text/html; charset=utf-8", assets::INDEX),
            ("GET", ["app.js"]) => Reply::asset("text/javascript; charset=utf-8", assets::APP_JS),
            ("GET", ["app.css"]) => Reply::asset("text/css; charset=utf-8", assets::APP_CSS),
            ("GET", ["api", "session"]) => self.session(req),
            ("POST", ["api", "login"]) => self.login(req),
            ("POST", ["api", "logout"]) => {
                self.auth.logout(req.header("cookie"));
                Reply::json(200, &json!({"ok": true})).with_header("set-cookie", clear_cookie())
            }
            // Same credentials as the API: a scraper sends the token as a bearer.
            ("GET", ["metrics"]) => match self.authorize(req) {
                Ok(()) => Reply {
                    status: 200,
                    content_type: hermes_model::metrics::CONTENT_TYPE,
                    headers: Vec::new(),
                    body: self.metrics.render(&self.env).into_bytes(),
                },
                Err(reply) => reply,
            },
            (_, ["metrics"]) => method_not_allowed("GET"),
            (_, ["api", ..]) => match self.authorize(req) {
                Ok(()) => {
                    let reply = self.api(req, &segments[1..]);
                    if req.method != "GET" {
                        // After the change, not before: a poll during a slow
                        // action must not be served once it is done.
                        *self.recent.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    reply
                }
                Err(reply) => reply,
            },
            _ => Reply::error(404, "not_found", format!("no such page: {}", req.path)),
        }
    }

    fn authorize(&self, req: &Request) -> Result<(), Reply> {
        let who = self
            .auth
            .identify(req.peer, req.header("authorization"), req.header("cookie"))
            .map_err(denied)?;
        if req.method != "GET" {
            self.auth
                .check_csrf(&who, req.header("x-csrf-token"))
                .map_err(denied)?;
        }
        Ok(())
    }

    fn session(&self, req: &Request) -> Reply {
        let who =
            match self
                .auth
                .identify(req.peer, req.header("authorization"), req.header("cookie"))
            {
                Ok(who) => Some(who),
                // This answer is a yes/no oracle too: a guess here counts like anywhere.
                Err(limited @ Denied::Limited(_)) => return denied(limited),
                Err(_) => None,
            };
        Reply::json(
            200,
            &json!({
                "auth_required": true,
                "authenticated": who.is_some(),
                "csrf": who.as_ref().and_then(|w| self.auth.csrf_for(w)),
            }),
        )
    }

    fn login(&self, req: &Request) -> Reply {
        #[derive(Deserialize)]
        struct Login {
            token: String,
        }
        let body: Login = match parse_body(req) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        match self.auth.login(req.peer, &body.token) {
            Ok((id, csrf)) => Reply::json(200, &json!({"csrf": csrf})).with_header(
                "set-cookie",
                format!(
                    "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                    auth::COOKIE,
                    auth::SESSION_TTL.as_secs()
                ),
            ),
            Err(LoginError::Denied(Denied::Unauthorized)) => {
                Reply::error(401, "unauthorized", "wrong token")
            }
            Err(LoginError::Denied(d)) => denied(d),
            Err(LoginError::Random(e)) => {
                Reply::error(500, "internal", format!("unable to make a session id: {e}"))
            }
        }
    }

    fn api(&self, req: &Request, path: &[&str]) -> Reply {
        let env = &*self.env;
        match (req.method.as_str(), path) {
            ("GET", ["status"]) => self.status(),
            ("GET", ["doctor"]) => {
                let snap = Snapshot::collect(env);
                Reply::json(200, &doctor::run(env, &snap))
            }
            ("GET", ["boot-log"]) => self.log(req, env.home().boot_log()),
            ("GET", ["gateways", name, "log"]) => match profile_name(name) {
                Ok(p) => self.log(req, logs::gateway_log(env.home(), &p)),
                Err(reply) => reply,
            },
            ("POST", ["gateways", name, verb]) => {
                let Some(verb) = Action::parse(verb) else {
                    return Reply::error(404, "not_found", format!("no such action: {verb}"));
                };
                match profile_name(name) {
                    Ok(p) => self.lifecycle(req, &p, verb),
                    Err(reply) => reply,
                }
            }
            ("POST", ["all", verb]) => match Action::parse(verb) {
                Some(verb) => self.lifecycle_all(req, verb),
                None => Reply::error(404, "not_found", format!("no such action: {verb}")),
            },
            ("POST", ["profiles"]) => self.create(req),
            ("POST", ["profiles", name, "delete"]) => match profile_name(name) {
                Ok(p) => self.delete(req, &p),
                Err(reply) => reply,
            },
            (_, ["status" | "doctor" | "boot-log"] | ["gateways", _, "log"]) => {
                method_not_allowed("GET")
            }
            (_, ["gateways", _, _] | ["all", _] | ["profiles"] | ["profiles", _, "delete"]) => {
                method_not_allowed("POST")
            }
            _ => Reply::error(404, "not_found", format!("no such endpoint: {}", req.path)),
        }
    }

    fn log(&self, req: &Request, path: std::path::PathBuf) -> Reply {
        let lines = req
            .query_param("lines")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(200)
            .min(MAX_LOG_LINES);
        let cursor = req.query_param("cursor").filter(|c| !c.is_empty());
        Reply::json(200, &logs::read_since(&path, cursor.as_deref(), lines))
    }

    /// The wait a lifecycle call asked for (`{"timeout": seconds}`), or the default.
    fn action_wait(&self, req: &Request) -> Result<Duration, Reply> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Body {
            timeout: Option<f64>,
        }
        let body: Body = if req.body.iter().all(u8::is_ascii_whitespace) {
            Body::default()
        } else {
            parse_body(req)?
        };
        match body.timeout {
            None => Ok(self.action_timeout),
            Some(t) if t.is_finite() && t > 0.0 => {
                Ok(Duration::from_secs_f64(t).min(MAX_ACTION_TIMEOUT))
            }
            Some(t) => Err(Reply::error(
                400,
                "bad_request",
                format!("timeout {t} must be a positive number of seconds"),
            )),
        }
    }

    fn lifecycle(&self, req: &Request, profile: &ProfileName, verb: Action) -> Reply {
        let timeout = match self.action_wait(req) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        audit::record(
            self.env.home(),
            &Actor::Dashboard(req.peer),
            verb.as_str(),
            profile.as_str(),
        );
        match actions::lifecycle(&*self.env, profile, verb, timeout) {
            Ok(outcome) => Reply::json(200, &outcome),
            Err(e) => action_error(&e),
        }
    }

    /// Every registered gateway in one batched call, as `hermes gateway start --all`.
    fn lifecycle_all(&self, req: &Request, verb: Action) -> Reply {
        let timeout = match self.action_wait(req) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let targets = match self.env.manager().list() {
            Ok(t) => t,
            Err(e) => {
                return Reply::error(
                    500,
                    "action_failed",
                    format!("unable to list the gateway slots: {e}"),
                )
            }
        };
        audit::record(
            self.env.home(),
            &Actor::Dashboard(req.peer),
            verb.as_str(),
            audit::ALL,
        );
        let results = actions::lifecycle_many(&*self.env, &targets, verb, timeout);
        let mut failed = 0;
        let docs: Vec<Value> = targets
            .iter()
            .zip(results)
            .map(|(profile, result)| match result {
                Ok(outcome) => json!({"profile": profile, "ok": true, "message": outcome.message}),
                Err(e) => {
                    failed += 1;
                    json!({"profile": profile, "ok": false, "error": e.to_string(), "log_tail": e.log_tail()})
                }
            })
            .collect();
        if failed == 0 {
            return Reply::json(200, &json!({"action": verb, "results": docs}));
        }
        Reply::json(
            500,
            &json!({
                "code": "action_failed",
                "error": format!("{} failed for {failed} of {} gateways", verb.as_str(), targets.len()),
                "action": verb,
                "results": docs,
            }),
        )
    }

    fn create(&self, req: &Request) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            name: String,
            port: Option<u16>,
        }
        let body: Body = match parse_body(req) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        let name = match profile_name(&body.name) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        if body.port == Some(0) {
            return Reply::error(400, "bad_request", "port must be between 1 and 65535");
        }
        audit::record(
            self.env.home(),
            &Actor::Dashboard(req.peer),
            "create",
            name.as_str(),
        );
        match actions::create(&*self.env, &name, body.port, true) {
            Ok(created) => Reply::json(201, &created),
            Err(e) => action_error(&e),
        }
    }

    fn delete(&self, req: &Request, profile: &ProfileName) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            confirm: String,
        }
        let body: Body = match parse_body(req) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        if body.confirm != profile.as_str() {
            return Reply::error(
                400,
                "confirm",
                format!("to delete '{profile}', send {{\"confirm\": \"{profile}\"}}"),
            );
        }
        audit::record(
            self.env.home(),
            &Actor::Dashboard(req.peer),
            "delete",
            profile.as_str(),
        );
        match actions::delete(&*self.env, profile) {
            Ok(deleted) => Reply::json(200, &deleted),
            Err(e) => action_error(&e),
        }
    }
}

fn denied(d: Denied) -> Reply {
    match d {
        Denied::Unauthorized => Reply::error(
            401,
            "unauthorized",
            "log in with the dashboard token (POST /api/login) or send Authorization: Bearer <token>",
        ),
        Denied::Csrf => Reply::error(
            403,
            "csrf",
            "missing or wrong X-CSRF-Token header: get the token from GET /api/session",
        ),
        Denied::Limited(wait) => {
            let secs = limit::retry_after_secs(wait);
            Reply::error(
                429,
                "rate_limited",
                format!("too many wrong credentials from this address: try again in {secs} s"),
            )
            .with_header("retry-after", secs.to_string())
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Reply {
    Reply::error(405, "method_not_allowed", format!("use {allow}"))
        .with_header("allow", allow.into())
}

fn profile_name(raw: &str) -> Result<ProfileName, Reply> {
    let raw = percent_decode(raw);
    ProfileName::parse(&raw)
        .map_err(|e| Reply::error(400, "bad_name", format!("invalid profile name: {e}")))
}

fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Reply> {
    serde_json::from_slice(&req.body)
        .map_err(|e| Reply::error(400, "bad_request", format!("invalid JSON body: {e}")))
}

fn action_error(e: &ActionError) -> Reply {
    let (status, code) = if e.is_not_found() {
        (404, "not_found")
    } else if e.is_conflict() {
        (409, "conflict")
    } else {
        (500, "action_failed")
    };
    let mut doc = json!({"code": code, "error": e.to_string()});
    if !e.log_tail().is_empty() {
        doc["log_tail"] = Value::from(e.log_tail().to_vec());
    }
    Reply::json(status, &doc)
}

fn clear_cookie() -> String {
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::COOKIE
    )
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(percent_decode("a%3Ab+c%2"), "a:b c%2");
    }
}
