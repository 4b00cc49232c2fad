//! A dashboard served from a thread over a fake manager, and a minimal HTTP
//! client, shared by the API and browser tests.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cdp;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hermes_dashboard::{Dashboard, Settings};
use hermes_model::fake::FakeEnv;
use hermes_model::Environment;

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

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Poll `check` until it returns `Some`, or panic with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
