//! The webhook ingress (`hermes container ingress-run`) in front of real
//! supervised gateways: routing, error codes, and a gateway killed while a
//! request streams through it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hermes_core::config::Scheme;
use hermes_core::{profile, HermesHome, ProfileName};
use hermes_gateway::signature;

use hermes_testkit::{free_port, Env};

struct Ingress {
    child: Child,
    port: u16,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ingress(env: &Env) -> Ingress {
    let port = free_port();
    let child = env
        .command(&["container", "ingress-run"])
        .env("HERMES_INGRESS_HOST", "127.0.0.1")
        .env("HERMES_INGRESS_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the ingress");
    let ingress = Ingress { child, port };
    env.wait_for("the ingress to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    ingress
}

fn secret(env: &Env, name: &str) -> String {
    let paths = HermesHome::new(env.home()).profile(&ProfileName::parse(name).unwrap());
    profile::env_value(&paths, profile::SECRET_VAR)
        .unwrap()
        .unwrap()
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn read_answer(mut stream: TcpStream) -> Option<Answer> {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn head_of(method: &str, path: &str, headers: &[(&str, String)], len: usize) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: ingress\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    head
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the ingress");
    stream
        .write_all(head_of(method, path, headers, body.len()).as_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
    read_answer(stream).unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

fn signed(secret: &str, key: Option<&str>, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = hermes_core::state::now_ms() / 1000;
    signature::sign(Scheme::Hermes, secret.as_bytes(), ts, key, body)
}

fn events(port: u16, secret: &str, profile: &str, hook: &str) -> Vec<serde_json::Value> {
    let answer = request(
        port,
        "GET",
        &format!("/{profile}/v1/webhooks/{hook}/events?after=0&limit=1000"),
        &[("Authorization", format!("Bearer {secret}"))],
        b"",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn routes_signed_requests_and_answers_404_and_503() {
    let mut env = Env::with_gateway_up("coder");
    let ingress = start_ingress(&env);
    let port = ingress.port;
    let secret = secret(&env, "coder");

    let body = br#"{"hello":"outside"}"#;
    let answer = request(
        port,
        "POST",
        "/coder/v1/webhooks/github",
        &signed(&secret, Some("k1"), body),
        body,
    );
    assert_eq!(answer.status, 202, "{answer:?}\n{}", env.dump());
    let id = answer.json()["id"].clone();
    let stored = events(port, &secret, "coder", "github");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], id);
    assert_eq!(stored[0]["body"], r#"{"hello":"outside"}"#);

    // Signatures are the gateway's to check: the ingress passes them through.
    let forged = signed("not the secret", None, body);
    let answer = request(port, "POST", "/coder/v1/webhooks/github", &forged, body);
    assert_eq!(answer.status, 401, "{answer:?}");

    let answer = request(port, "POST", "/nobody/v1/webhooks/github", &[], b"x");
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.json()["code"], "unknown_profile");
    let answer = request(port, "GET", "/coder/health", &[], b"");
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.json()["code"], "not_found");

    // The gateway's body limit holds through the ingress: a body declared
    // too large is refused from its head, before a byte of it is sent.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = head_of(
        "POST",
        "/coder/v1/webhooks/github",
        &signed(&secret, None, &big),
        big.len(),
    );
    stream.write_all(head.as_bytes()).unwrap();
    let answer = read_answer(stream).expect("an answer to a body too large");
    assert_eq!(answer.status, 413, "{answer:?}");

    env.ok(&["-p", "coder", "gateway", "stop"]);
    let answer = request(
        port,
        "POST",
        "/coder/v1/webhooks/github",
        &signed(&secret, None, body),
        body,
    );
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.header("retry-after").as_deref(),
        Some("60"),
        "{answer:?}"
    );
    assert_eq!(answer.json()["code"], "gateway_unavailable");
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("gateway start"));
    drop(ingress);
    env.stop_supervisor(Duration::from_secs(15));
}

/// The gateway is killed while request bodies stream through the ingress:
/// every 202 the sender saw is stored, and a request whose gateway died
/// gets 503 (never 202), and its retry with the same key stores it once.
#[test]
fn a_gateway_killed_mid_stream_loses_no_accepted_event() {
    let mut env = Env::with_gateway_up("k");
    let ingress = start_ingress(&env);
    let port = ingress.port;
    let secret = secret(&env, "k");
    let pid = || env.status("k")["pid"].as_u64();

    let mut accepted = std::collections::BTreeMap::new();
    let mut refused_mid_stream = 0;
    for i in 0..6 {
        let key = format!("event-{i}");
        let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(4000));
        let headers = signed(&secret, Some(&key), body.as_bytes());
        // Head and half the body, then the gateway dies, then the rest.
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(head_of("POST", "/k/v1/webhooks/h", &headers, body.len()).as_bytes())
            .unwrap();
        stream
            .write_all(&body.as_bytes()[..body.len() / 2])
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let victim = pid().expect("the gateway runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = stream.write_all(&body.as_bytes()[body.len() / 2..]);
        let answer = read_answer(stream).expect("an answer");
        assert_ne!(answer.status, 202, "202 from a killed gateway: {answer:?}");
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.header("retry-after").is_some(), "{answer:?}");
        refused_mid_stream += 1;
        // The sender retries (signed again, same key) until stored.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = request(
                port,
                "POST",
                "/k/v1/webhooks/h",
                &signed(&secret, Some(&key), body.as_bytes()),
                body.as_bytes(),
            );
            if answer.status == 202 {
                accepted.insert(key.clone(), answer.json()["id"].as_u64().unwrap());
                break;
            }
            assert_eq!(answer.status, 503, "{answer:?}");
            assert!(
                Instant::now() < deadline,
                "no 202 within 30 s after the kill: {answer:?}\n{}",
                env.dump()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(refused_mid_stream, 6);
    let stored = events(port, &secret, "k", "h");
    let stored_ids: Vec<u64> = stored.iter().filter_map(|e| e["id"].as_u64()).collect();
    for (key, id) in &accepted {
        assert!(
            stored_ids.contains(id),
            "accepted {key} as {id}, not stored: {stored_ids:?}"
        );
    }
    // Nothing half-sent was stored, nothing twice.
    assert_eq!(stored.len(), accepted.len(), "{stored:?}");
    drop(ingress);
    env.stop_supervisor(Duration::from_secs(15));
}
