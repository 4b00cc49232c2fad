//! A dashboard served from a thread over a fake manager, shared by the API
//! and browser tests.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hermes_dashboard::{Dashboard, Settings};
use hermes_model::fake::FakeEnv;
use hermes_model::Environment;
use hermes_testkit::http::{self, Response};

/// The token of a dashboard started without one named.
pub const DEFAULT_TOKEN: &str = "test-token-0123456789abcdef";

pub struct Served {
    pub addr: SocketAddr,
    pub env: Arc<FakeEnv>,
    pub token: String,
    /// `hermes_session=…` of a login made at start; `get`/`post` send it
    /// unless the caller sends its own cookie or authorization.
    pub cookie: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    pub fn start(env: FakeEnv, host: &str, token: Option<&str>) -> Served {
        Served::start_with(env, host, token, hermes_dashboard::REQUEST_TIMEOUT)
    }

    pub fn start_with(
        env: FakeEnv,
        host: &str,
        token: Option<&str>,
        request_timeout: Duration,
    ) -> Served {
        let env = Arc::new(env);
        let token = token.unwrap_or(DEFAULT_TOKEN).to_string();
        let settings = Settings {
            host: host.to_string(),
            port: 0,
            token: token.clone(),
            action_timeout: Duration::from_secs(5),
            request_timeout,
        };
        let dyn_env: Arc<dyn Environment> = env.clone();
        let dashboard = Dashboard::bind(dyn_env, &settings).expect("bind the dashboard");
        let mut addr = dashboard.local_addr().unwrap();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            dashboard
                .serve_until(async move {
                    let _ = rx.await;
                })
                .expect("serve the dashboard");
        });
        let login = request(
            addr,
            "POST",
            "/api/login",
            &[],
            Some(&serde_json::json!({ "token": token }).to_string()),
        );
        assert_eq!(login.status, 200, "log in: {}", login.body);
        let cookie = login.headers["set-cookie"]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        Served {
            addr,
            env,
            token,
            cookie,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `headers`, plus the session cookie unless they carry credentials already.
    fn signed_in<'a>(&'a self, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = headers.to_vec();
        if !headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("cookie") || k.eq_ignore_ascii_case("authorization")
        }) {
            all.push(("cookie", self.cookie.as_str()));
        }
        all
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, &self.signed_in(headers), None)
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        request(
            self.addr,
            "POST",
            path,
            &self.signed_in(headers),
            Some(body),
        )
    }

    /// A request with no credentials but those in `headers`.
    pub fn get_anon(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers, None)
    }

    pub fn post_anon(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        request(self.addr, "POST", path, headers, Some(body))
    }

    /// The CSRF token of the session in `cookie` (default: the one made at start).
    pub fn csrf(&self, cookie: Option<&str>) -> String {
        let headers = vec![("cookie", cookie.unwrap_or(&self.cookie))];
        self.get("/api/session", &headers).json()["csrf"]
            .as_str()
            .expect("a csrf token")
            .to_string()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request that must be answered (within 20 s).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let body = body.unwrap_or("").as_bytes();
    http::request(addr, method, path, headers, body, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{method} {path}: no answer from the dashboard at {addr}"))
}
