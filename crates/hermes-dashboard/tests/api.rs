//! The JSON API over HTTP, against a fake service manager.

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
fn open_mode_refuses_foreign_host_names() {
    let served = Served::start(FakeEnv::new(), "127.0.0.1", None);
    let r = served.get("/api/status", &[("host", "attacker.example:9119")]);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("forbidden_host"))
    );
    assert_eq!(
        served
            .get("/api/status", &[("host", "localhost:9119")])
            .status,
        200
    );
}

#[test]
fn token_mode_takes_bearer_or_login_cookie_and_never_returns_secrets() {
    let env = two_gateways();
    let secret = std::fs::read_to_string(env.root().join("home/profiles/alpha/.env")).unwrap();
    let secret = secret.trim().split_once('=').unwrap().1.to_string();
    let served = Served::start(env, "0.0.0.0", Some(TOKEN));

    let anon = served.get("/api/status", &[]);
    assert_eq!(
        (anon.status, anon.json()["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let session = served.get("/api/session", &[]).json();
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

    let bad_login = served.post("/api/login", &[], r#"{"token": "guess"}"#);
    assert_eq!(bad_login.status, 401);
    let login = served.post("/api/login", &[], &format!(r#"{{"token": "{TOKEN}"}}"#));
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
    // With a token, foreign Host names are fine (the token is the guard).
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
fn non_loopback_bind_without_token_is_refused() {
    let settings = |host: &str, token: Option<&str>| Settings {
        host: host.into(),
        port: 0,
        token: token.map(str::to_string),
        action_timeout: Duration::from_secs(1),
    };
    let env: Arc<dyn hermes_model::Environment> = Arc::new(FakeEnv::new());
    for (host, token) in [("0.0.0.0", None), ("::", None), ("0.0.0.0", Some("  "))] {
        match Dashboard::bind(env.clone(), &settings(host, token)) {
            Err(DashboardError::Insecure(msg)) => {
                assert!(msg.contains("HERMES_DASHBOARD_TOKEN"), "{msg}")
            }
            Err(other) => panic!("{host}: wrong error {other}"),
            Ok(_) => panic!("{host} without a token was accepted"),
        }
    }
    assert!(Dashboard::bind(env, &settings("0.0.0.0", Some(TOKEN))).is_ok());
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
