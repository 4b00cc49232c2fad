//! One delivery: the body for the target's format, the signature, one POST.

use std::time::Duration;

use hermes_core::config::Scheme;
use hermes_core::http::{self, Request};
use hermes_core::notify::{Event, EventKind, Format, Target};
use hermes_core::state;
use hermes_gateway::signature;
use serde_json::json;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Why not, in one line for `doctor`.
    Failed(String),
}

fn sentence(e: &Event) -> String {
    let who = e.profile.as_deref().unwrap_or("the container");
    let reason = e
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    match e.kind {
        EventKind::Parked => format!("gateway '{who}' is parked (startup_failed){reason}"),
        EventKind::CrashLoop => format!("gateway '{who}' is crash-looping{reason}"),
        EventKind::Recovered => format!("gateway '{who}' recovered and is serving"),
        EventKind::DeadAtBoot => format!("gateway '{who}' did not come up after boot{reason}"),
        EventKind::Stopping => format!(
            "the container is stopping with gateways up: {}",
            e.gateways.join(", ")
        ),
    }
}

/// The request body for `format`.
pub fn body(format: Format, e: &Event) -> Vec<u8> {
    let doc = match format {
        Format::Json => json!({
            "id": e.id,
            "event": e.kind.as_str(),
            "profile": e.profile,
            "at": state::utc_timestamp(e.at_ms),
            "at_ms": e.at_ms,
            "reason": e.reason,
            "gateways": e.gateways,
            "text": format!("hermes: {}", sentence(e)),
        }),
        Format::Slack => json!({ "text": format!("hermes: {}", sentence(e)) }),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// POST `e` to `target`, signed with `secret` (json format).
pub fn deliver(target: &Target, secret: Option<&str>, e: &Event, timeout: Duration) -> Attempt {
    let (addr, path) = match target.endpoint() {
        Ok(ep) => ep,
        Err(why) => return Attempt::Failed(why),
    };
    let body = body(target.format, e);
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        (
            "User-Agent",
            format!("hermes/{}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    if target.format == Format::Json {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            let var = target
                .secret_var
                .as_deref()
                .unwrap_or(hermes_core::profile::SECRET_VAR);
            return Attempt::Failed(format!(
                "{}: no signing secret: set {var} in the root profile's .env",
                target.url
            ));
        };
        let ts = state::now_ms() / 1000;
        // X-Hermes-Timestamp, X-Hermes-Signature and the event id as Idempotency-Key.
        headers.extend(signature::sign(
            Scheme::Hermes,
            secret.as_bytes(),
            ts,
            Some(&e.id),
            &body,
        ));
        headers.push(("X-Hermes-Event", e.kind.as_str().to_string()));
    }
    let request = Request {
        method: "POST",
        path: &path,
        headers: &headers,
        body: &body,
    };
    match http::request(&addr, &request, timeout) {
        Ok(r) if (200..300).contains(&r.status) => Attempt::Delivered,
        Ok(r) if (300..400).contains(&r.status) => Attempt::Failed(format!(
            "{} answered {} (a redirect): redirects are not followed, configure the final URL",
            target.url, r.status
        )),
        Ok(r) => Attempt::Failed(format!("{} answered {}", target.url, r.status)),
        Err(e) => Attempt::Failed(format!("{}: {e}", target.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_core::ProfileName;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn answer_once(status: &'static str) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            // The body is small: it came with the head or comes right after.
            std::thread::sleep(Duration::from_millis(50));
            s.set_nonblocking(true).unwrap();
            if let Ok(n) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .unwrap();
            got
        });
        (url, t)
    }

    fn event() -> Event {
        Event::new(
            EventKind::Parked,
            Some(&ProfileName::parse("web").unwrap()),
            1000,
        )
        .with_reason("crash loop: 5 failures")
    }

    fn target(url: &str, format: Format) -> Target {
        Target {
            url: url.into(),
            format,
            events: None,
            secret_var: None,
        }
    }

    #[test]
    fn a_json_delivery_is_signed_like_an_inbox_delivery() {
        let (url, t) = answer_once("202 Accepted");
        let e = event();
        let got = deliver(
            &target(&url, Format::Json),
            Some("s3cret"),
            &e,
            Duration::from_secs(5),
        );
        assert_eq!(got, Attempt::Delivered);
        let raw = String::from_utf8(t.join().unwrap()).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(": ")
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        let ts: u64 = header("x-hermes-timestamp").parse().unwrap();
        let signed = signature::sign(Scheme::Hermes, b"s3cret", ts, Some(&e.id), body.as_bytes());
        assert_eq!(header("x-hermes-signature"), signed[1].1);
        assert_eq!(header("idempotency-key"), e.id);
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["event"], "parked");
        assert_eq!(doc["reason"], "crash loop: 5 failures");
    }

    #[test]
    fn refusals_redirects_and_dead_ends_fail_with_the_reason() {
        let (url, _t) = answer_once("500 Internal Server Error");
        let got = deliver(
            &target(&url, Format::Slack),
            None,
            &event(),
            Duration::from_secs(5),
        );
        assert_eq!(got, Attempt::Failed(format!("{url} answered 500")));
        let (url, _t) = answer_once("302 Found");
        let Attempt::Failed(why) = deliver(
            &target(&url, Format::Slack),
            None,
            &event(),
            Duration::from_secs(5),
        ) else {
            panic!("a redirect delivered")
        };
        assert!(why.contains("redirect"), "{why}");
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let Attempt::Failed(why) = deliver(
            &target(&format!("http://{closed}/x"), Format::Slack),
            None,
            &event(),
            Duration::from_secs(1),
        ) else {
            panic!("a closed port delivered")
        };
        assert!(why.contains("unable to connect"), "{why}");
        let Attempt::Failed(why) = deliver(
            &target("http://127.0.0.1:1/x", Format::Json),
            None,
            &event(),
            Duration::from_secs(1),
        ) else {
            panic!("delivered without a secret")
        };
        assert!(why.contains("HERMES_WEBHOOK_SECRET"), "{why}");
        // A listener that never answers: the timeout, not a hang.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let started = std::time::Instant::now();
        let got = deliver(
            &target(&url, Format::Slack),
            None,
            &event(),
            Duration::from_millis(300),
        );
        assert!(matches!(got, Attempt::Failed(_)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn slack_gets_a_sentence() {
        let doc: serde_json::Value =
            serde_json::from_slice(&body(Format::Slack, &event())).unwrap();
        assert_eq!(
            doc["text"],
            "hermes: gateway 'web' is parked (startup_failed): crash loop: 5 failures"
        );
    }
}
