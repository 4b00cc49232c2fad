//! The JSON API over HTTP, against a fake service manager.
#![allow(clippy::disallowed_methods)] // tests

mod common;

use common::Served;
use hermes_core::service::Want;
use hermes_dashboard::{Dashboard, DashboardError, Settings};
use hermes_model::fake::{FakeEnv, Slot};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "correct-horse-battery-staple";

fn two_gateways() -> FakeEnv {
    let env = FakeEnv::new();
    env.add_profile("alpha");
    env.add_profile("beta");
    env.serve_health("alpha");
    env.set_slot("alpha", Slot::up(101));
    env.set_slot("beta", Slot::up(102));
    env
}

fn label(served: &Served, profile: &str) -> String {
    let status = served.get("/api/status", &[]).json();
    status["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["profile"] == profile)
        .map(|g| g["label"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

#[test]
fn status_is_the_model() {
    let served = Served::start(two_gateways(), "127.0.0.1", None);
    let r = served.get("/api/status", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["cache-control"], "no-store");
    let doc = r.json();
    assert_eq!(doc["version"], 1);
    let names: Vec<_> = doc["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["profile"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "alpha", "beta"]);
    assert_eq!(label(&served, "alpha"), "up");
    assert_eq!(doc["gateways"][1]["health"]["state"], "ok");
    assert_eq!(doc["main"]["applicable"], false);
}

#[test]
fn page_and_assets_are_served_with_a_strict_policy() {
    let served = Served::start(FakeEnv::new(), "127.0.0.1", None);
    let page = served.get("/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script src=\"/app.js\""));
    assert!(page.headers["content-security-policy"].contains("script-src 'self'"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(served.get("/app.js", &[]).status, 200);
    assert_eq!(served.get("/app.css", &[]).status, 200);
    let missing = served.get("/nope", &[]);
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[test]
fn actions_need_csrf_and_change_the_slot() {
    let served = Served::start(two_gateways(), "127.0.0.1", None);
    let refused = served.post("/api/gateways/beta/stop", &[], "");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["code"], "csrf");
    assert_eq!(served.env.slot("beta").unwrap().want, Want::Up);

    let csrf = served.csrf(None);
    let h = [("x-csrf-token", csrf.as_str())];
    let stopped = served.post("/api/gateways/beta/stop", &h, "");
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.json()["status"]["up"], false);
    assert_eq!(label(&served, "beta"), "stopped");
    let started = served.post("/api/gateways/beta/start", &h, r#"{"timeout": 2}"#);
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(started.json()["message"].as_str().unwrap().contains("up"));
    assert_eq!(served.env.slot("beta").unwrap().want, Want::Up);
    assert_eq!(
        served.env.calls(),
        ["stop beta", "start beta"],
        "every action goes through the manager"
    );
    // Who did what, once per action carried out (the refused one is not).
    let home = hermes_model::Environment::home(&*served.env);
    let audit = std::fs::read_to_string(hermes_model::audit::path(home)).unwrap();
    let lines: Vec<&str> = audit
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(
        lines,
        [
            "hermes audit: dashboard client 127.0.0.1: stop beta",
            "hermes audit: dashboard client 127.0.0.1: start beta"
        ]
    );
}

#[test]
fn names_are_validated_and_errors_are_json() {
    let served = Served::start(two_gateways(), "127.0.0.1", None);
    let csrf = served.csrf(None);
    let h = [("x-csrf-token", csrf.as_str())];
    for bad in ["a%3Bb", "..", "%2E%2E%2Fetc", "root", "a%20b"] {
        let r = served.post(&format!("/api/gateways/{bad}/start"), &h, "");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["code"], "bad_name");
    }
    let ghost = served.post("/api/gateways/ghost/start", &h, "");
    assert_eq!(
        (ghost.status, ghost.json()["code"].as_str()),
        (404, Some("not_found"))
    );
    let verb = served.post("/api/gateways/alpha/explode", &h, "");
    assert_eq!(verb.status, 404);
    let get_action = served.get("/api/gateways/alpha/start", &[]);
    assert_eq!(get_action.status, 405);
    assert_eq!(get_action.headers["allow"], "POST");
    let junk = served.post("/api/gateways/alpha/start", &h, "{nope");
    assert_eq!(
        (junk.status, junk.json()["code"].as_str()),
        (400, Some("bad_request"))
    );
    let huge = served.post("/api/profiles", &h, &"x".repeat(20_000));
    assert_eq!(huge.status, 413);
    assert!(served.env.calls().is_empty());
}

#[test]
fn create_and_delete_with_confirmation() {
    let served = Served::start(FakeEnv::new(), "127.0.0.1", None);
    let csrf = served.csrf(None);
    let h = [("x-csrf-token", csrf.as_str())];
    let created = served.post("/api/profiles", &h, r#"{"name": " Coder "}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["profile"], "coder");
    assert_eq!(created.json()["slot"], true);
    assert_eq!(label(&served, "coder"), "stopped");
    let again = served.post("/api/profiles", &h, r#"{"name": "coder"}"#);
    assert_eq!(
        (again.status, again.json()["code"].as_str()),
        (409, Some("conflict"))
    );
    let bad = served.post("/api/profiles", &h, r#"{"name": "a/b"}"#);
    assert_eq!(bad.status, 400);

    let unconfirmed = served.post("/api/profiles/coder/delete", &h, r#"{"confirm": "other"}"#);
    assert_eq!(
        (unconfirmed.status, unconfirmed.json()["code"].as_str()),
        (400, Some("confirm"))
    );
    assert_eq!(label(&served, "coder"), "stopped");
    let deleted = served.post("/api/profiles/coder/delete", &h, r#"{"confirm": "coder"}"#);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.json()["unregistered"], true);
    assert_eq!(label(&served, "coder"), "absent");
    let root = served.post(
        "/api/profiles/default/delete",
        &h,
        r#"{"confirm": "default"}"#,
    );
    assert_eq!(root.status, 409);
}

#[test]
fn the_token_is_taken_as_bearer_or_login_cookie_and_never_returned() {
    let env = two_gateways();
    let secret = std::fs::read_to_string(env.root().join("home/profiles/alpha/.env")).unwrap();
    let secret = secret.trim().split_once('=').unwrap().1.to_string();
    let served = Served::start(env, "0.0.0.0", Some(TOKEN));

    let anon = served.get_anon("/api/status", &[]);
    assert_eq!(
        (anon.status, anon.json()["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let session = served.get_anon("/api/session", &[]).json();
    assert_eq!(
        (
            session["auth_required"].as_bool(),
            session["csrf"].is_null()
        ),
        (Some(true), true)
    );
    let wrong = served.get("/api/status", &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let ok = served.get("/api/status", &[("authorization", &bearer)]);
    assert_eq!(ok.status, 200);
    assert!(!ok.body.contains(TOKEN) && !ok.body.contains(&secret));
    // A bearer token is not ambient, so it needs no CSRF token.
    let stop = served.post(
        "/api/gateways/alpha/stop",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(stop.status, 200, "{}", stop.body);

    let bad_login = served.post_anon("/api/login", &[], r#"{"token": "guess"}"#);
    assert_eq!(bad_login.status, 401);
    let login = served.post_anon("/api/login", &[], &format!(r#"{{"token": "{TOKEN}"}}"#));
    assert_eq!(login.status, 200);
    assert!(!login.body.contains(TOKEN));
    let set_cookie = &login.headers["set-cookie"];
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(TOKEN));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let h = [("cookie", cookie.as_str())];
    assert_eq!(served.get("/api/status", &h).status, 200);
    let no_csrf = served.post("/api/gateways/alpha/start", &h, "");
    assert_eq!(no_csrf.status, 403);
    let csrf = served.csrf(Some(&cookie));
    assert_eq!(csrf, login.json()["csrf"].as_str().unwrap());
    let with = served.post(
        "/api/gateways/alpha/start",
        &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        "",
    );
    assert_eq!(with.status, 200, "{}", with.body);
    // Foreign Host names are fine: the token is the guard.
    let foreign = served.get(
        "/api/status",
        &[("host", "dash.example"), ("authorization", &bearer)],
    );
    assert_eq!(foreign.status, 200);

    let logout = served.post("/api/logout", &h, "");
    assert!(logout.headers["set-cookie"].contains("Max-Age=0"));
    assert_eq!(served.get("/api/status", &h).status, 401);
}

#[test]
fn no_token_or_a_short_one_off_loopback_is_refused() {
    let settings = |host: &str, token: &str| Settings {
        host: host.into(),
        port: 0,
        token: token.to_string(),
        action_timeout: Duration::from_secs(1),
        request_timeout: hermes_dashboard::REQUEST_TIMEOUT,
    };
    let env: Arc<dyn hermes_model::Environment> = Arc::new(FakeEnv::new());
    for (host, token) in [
        ("0.0.0.0", ""),
        ("::", ""),
        ("0.0.0.0", "  "),
        ("127.0.0.1", ""),
        // The attack of issue 17: `ab` on 0.0.0.0 fell in 28 guesses.
        ("0.0.0.0", "ab"),
        ("::", "0123456789abcde"),
    ] {
        match Dashboard::bind(env.clone(), &settings(host, token)) {
            Err(DashboardError::Insecure(msg)) => {
                assert!(msg.contains("HERMES_DASHBOARD_TOKEN"), "{msg}")
            }
            Err(other) => panic!("{host}: wrong error {other}"),
            Ok(_) => panic!("{host} with token {token:?} was accepted"),
        }
    }
    assert!(Dashboard::bind(env.clone(), &settings("0.0.0.0", TOKEN)).is_ok());
    assert!(Dashboard::bind(env, &settings("127.0.0.1", "ab")).is_ok());
}

#[test]
fn logs_follow_from_a_cursor() {
    let env = two_gateways();
    env.write_log("alpha", "one\ntwo\n");
    let served = Served::start(env, "127.0.0.1", None);
    let first = served.get("/api/gateways/alpha/log?lines=10", &[]).json();
    assert_eq!(first["lines"], serde_json::json!(["one", "two"]));
    served.env.write_log("alpha", "three\n");
    let cursor = first["cursor"].as_str().unwrap().replace(':', "%3A");
    let next = served
        .get(&format!("/api/gateways/alpha/log?cursor={cursor}"), &[])
        .json();
    assert_eq!(next["lines"], serde_json::json!(["three"]));
    assert_eq!(next["reset"], false);
    let boot = served.get("/api/boot-log", &[]).json();
    assert_eq!(boot["lines"], serde_json::json!([]));
    let bad = served.get("/api/gateways/..%2Fx/log", &[]);
    assert_eq!(bad.status, 400);
}

#[test]
fn doctor_is_served_too() {
    let served = Served::start(two_gateways(), "127.0.0.1", None);
    let doc = served.get("/api/doctor", &[]).json();
    assert!(doc["checks"].as_array().unwrap().len() > 3);
    assert!(doc["ok"].is_boolean());
}

/// Issue 17: wrong bearer tokens could be tried at about 2,300 a second, on
/// any path. Now every check of a credential, on every path, draws from a
/// budget per source: after 10 failures the answer is 429 with Retry-After,
/// and the right token is not even compared (that would be an oracle). A
/// signed-in session keeps working.
#[test]
fn wrong_credentials_are_rate_limited_on_every_path() {
    let served = Served::start(two_gateways(), "127.0.0.1", Some(TOKEN));
    let wrong = [("authorization", "Bearer guess-0123456789")];
    let tries: [(&str, &str); 5] = [
        ("GET", "/api/status"),
        ("GET", "/api/session"),
        ("GET", "/api/gateways/alpha/log"),
        ("POST", "/api/gateways/alpha/stop"),
        ("POST", "/api/login"),
    ];
    let mut failures = 0;
    let limited = loop {
        let (method, path) = tries[failures % tries.len()];
        let r = match (method, path) {
            ("POST", "/api/login") => {
                served.post_anon(path, &[], r#"{"token": "guess-0123456789"}"#)
            }
            ("POST", _) => served.post_anon(path, &wrong, ""),
            _ => served.get_anon(path, &wrong),
        };
        match r.status {
            429 => break r,
            401 => failures += 1,
            // /api/session answers a wrong guess with "authenticated": false.
            200 if path == "/api/session" => {
                assert_eq!(r.json()["authenticated"], false);
                failures += 1;
            }
            other => panic!("{method} {path}: {other} {}", r.body),
        }
        assert!(failures < 200, "200 wrong tokens and never limited");
    };
    assert_eq!(failures, 10);
    assert_eq!(limited.json()["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let bearer = format!("Bearer {TOKEN}");
    let right = served.get_anon("/api/status", &[("authorization", &bearer)]);
    assert_eq!(right.status, 429, "the right token compared while limited");
    assert_eq!(served.get("/api/status", &[]).status, 200, "the session");
    assert_eq!(alpha_up(&served), Some(true));
}

fn alpha_up(served: &Served) -> Option<bool> {
    served.env.slot("alpha").map(|s| s.up)
}

/// Write a request head that announces a 100-byte body, and one byte of it.
fn slow_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    s
}

/// A whole response on a fresh connection, or what went wrong within `limit`.
fn timed_get(
    addr: std::net::SocketAddr,
    path: &str,
    bearer: &str,
    limit: Duration,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Issue 17: 128 connections each sending one byte of a 100-byte body held
/// every connection slot for over 65 s. Here 200 such clients hang (with a
/// request timeout far longer than the test) and a normal client is still
/// served at once: a new connection closes the stalest one.
#[test]
fn a_normal_client_is_served_while_200_slow_clients_hang() {
    let served = Served::start_with(
        two_gateways(),
        "127.0.0.1",
        Some(TOKEN),
        Duration::from_secs(120),
    );
    let slow: Vec<_> = (0..200).map(|_| slow_client(served.addr)).collect();
    // Let the server take them all in before the normal client comes.
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let answer = timed_get(served.addr, "/api/status", TOKEN, Duration::from_secs(5));
    let took = started.elapsed();
    let answer = answer.unwrap_or_else(|e| panic!("not served with 200 slow clients: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!("served in {took:?} while 200 slow clients hang");
    drop(slow);
}

/// A body that stops arriving gets 408 after the request timeout; a head that
/// stops arriving has its connection closed.
#[test]
fn slow_heads_and_bodies_time_out() {
    use std::io::{Read, Write};
    let served = Served::start_with(
        FakeEnv::new(),
        "127.0.0.1",
        Some(TOKEN),
        Duration::from_millis(500),
    );
    let started = std::time::Instant::now();
    let mut body = slow_client(served.addr);
    body.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = body.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(out.contains("\"code\":\"timeout\""), "{out}");
    assert!(started.elapsed() < Duration::from_secs(4));

    let mut head = std::net::TcpStream::connect(served.addr).unwrap();
    head.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    head.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = head.read_to_end(&mut rest);
    assert!(
        read.is_ok() && started.elapsed() < Duration::from_secs(4),
        "{read:?} after {:?}",
        started.elapsed()
    );
}

#[test]
fn all_gateways_start_and_stop_in_one_call() {
    let env = FakeEnv::new();
    for name in ["alpha", "beta"] {
        env.add_profile(name);
        env.set_slot(name, Slot::up(1));
    }
    let served = Served::start(env, "127.0.0.1", None);
    assert_eq!(
        served.post("/api/all/stop", &[], "").status,
        403,
        "CSRF first"
    );
    let csrf = served.csrf(None);
    let h = [("x-csrf-token", csrf.as_str())];
    let stopped = served.post("/api/all/stop", &h, "");
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let doc = stopped.json();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{doc}");
    assert!(results.iter().all(|r| r["ok"] == true), "{doc}");
    assert!(!served.env.slot("alpha").unwrap().up && !served.env.slot("beta").unwrap().up);
    assert_eq!(served.post("/api/all/start", &h, "").status, 200);
    assert!(served.env.slot("alpha").unwrap().up && served.env.slot("beta").unwrap().up);
    assert_eq!(served.post("/api/all/explode", &h, "").status, 404);
    assert_eq!(served.get("/api/all/stop", &[]).status, 405);
    // One audit line per batched action, not per gateway.
    let home = hermes_model::Environment::home(&*served.env);
    let audit = std::fs::read_to_string(hermes_model::audit::path(home)).unwrap();
    let what: Vec<&str> = audit
        .lines()
        .map(|l| l.rsplit_once(": ").unwrap().1)
        .collect();
    assert_eq!(what, ["stop all", "start all"], "{audit}");
}
