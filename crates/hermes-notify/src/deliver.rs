//! One delivery: the body for the target's format, the signature, one POST.

use std::time::Duration;

use hermes_core::config::Scheme;
use hermes_core::http::{self, Request, Response};
use hermes_core::notify::{Endpoint, Event, EventKind, Format, Target};
use hermes_core::state;
use hermes_gateway::signature;
use serde_json::json;

use crate::tls;

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
    let endpoint = match target.endpoint() {
        Ok(ep) => ep,
        Err(why) => return Attempt::Failed(why),
    };
    let body = body(target.format, e);
    let mut headers = vec![
        // The URL's name, not the address it resolved to: virtual hosts.
        ("Host", endpoint.authority.clone()),
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
        path: &endpoint.path,
        headers: &headers,
        body: &body,
    };
    match post(target, &endpoint, &request, timeout) {
        Ok(r) if (200..300).contains(&r.status) => Attempt::Delivered,
        Ok(r) if (300..400).contains(&r.status) => Attempt::Failed(format!(
            "{} answered {} (a redirect): redirects are not followed, configure the final URL",
            target.url, r.status
        )),
        Ok(r) => Attempt::Failed(format!("{} answered {}", target.url, r.status)),
        Err(e) => Attempt::Failed(format!("{}: {e}", target.url)),
    }
}

/// One request to `endpoint`, over TLS for `https://`, within `timeout`.
fn post(
    target: &Target,
    endpoint: &Endpoint,
    request: &Request<'_>,
    timeout: Duration,
) -> Result<Response, String> {
    let addr = http::resolve(&endpoint.addr).map_err(|e| e.to_string())?;
    let mut tcp = http::connect(addr, timeout).map_err(|e| e.to_string())?;
    if !endpoint.tls {
        return http::exchange(&mut tcp, addr, request, u64::MAX).map_err(|e| e.to_string());
    }
    let ca = tls::bundle(target.ca_file.as_deref());
    let config = tls::config(&ca)?;
    let mut stream = tls::connect(config, &endpoint.host, tcp, &ca)?;
    http::exchange(&mut stream, addr, request, u64::MAX).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{test_ca, Receiver};
    use hermes_core::ProfileName;
    use std::net::TcpListener;

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
            ca_file: None,
        }
    }

    fn slack(url: &str, timeout: Duration) -> Attempt {
        deliver(&target(url, Format::Slack), None, &event(), timeout)
    }

    /// The delivery `got` is signed with `secret` over its body and the event id.
    fn assert_signed(got: &crate::testing::Got, secret: &str, e: &Event) {
        let header = |name: &str| got.header(name).unwrap_or_else(|| panic!("no {name}"));
        let ts: u64 = header("x-hermes-timestamp").parse().unwrap();
        let signed = signature::sign(
            Scheme::Hermes,
            secret.as_bytes(),
            ts,
            Some(&e.id),
            &got.body,
        );
        assert_eq!(header("x-hermes-signature"), signed[1].1);
        assert_eq!(header("idempotency-key"), e.id);
    }

    #[test]
    fn a_json_delivery_is_signed_like_an_inbox_delivery() {
        let receiver = Receiver::start("202 Accepted");
        let url = receiver.url("http", "127.0.0.1");
        let e = event();
        let got = deliver(
            &target(&url, Format::Json),
            Some("s3cret"),
            &e,
            Duration::from_secs(5),
        );
        assert_eq!(got, Attempt::Delivered);
        let got = receiver.got();
        assert_eq!(got.len(), 1);
        assert_signed(&got[0], "s3cret", &e);
        assert_eq!(
            got[0].header("host"),
            Some(format!("127.0.0.1:{}", receiver.port))
        );
        let doc: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(doc["event"], "parked");
        assert_eq!(doc["reason"], "crash loop: 5 failures");
    }

    #[test]
    fn refusals_redirects_and_dead_ends_fail_with_the_reason() {
        let receiver = Receiver::start("500 Internal Server Error");
        let url = receiver.url("http", "127.0.0.1");
        let got = slack(&url, Duration::from_secs(5));
        assert_eq!(got, Attempt::Failed(format!("{url} answered 500")));
        let receiver = Receiver::start("302 Found");
        let Attempt::Failed(why) =
            slack(&receiver.url("http", "127.0.0.1"), Duration::from_secs(5))
        else {
            panic!("a redirect delivered")
        };
        assert!(why.contains("redirect"), "{why}");
        let closed = hermes_testkit::free_port();
        let Attempt::Failed(why) = slack(
            &format!("http://127.0.0.1:{closed}/x"),
            Duration::from_secs(1),
        ) else {
            panic!("a closed port delivered")
        };
        assert!(why.contains("unable to connect"), "{why}");
        let Attempt::Failed(why) = deliver(
            &target(&format!("http://127.0.0.1:{closed}/x"), Format::Json),
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
        let got = slack(&url, Duration::from_millis(300));
        assert!(matches!(got, Attempt::Failed(_)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn https_is_delivered_once_to_a_certificate_the_ca_file_vouches_for() {
        let ca = test_ca(&["localhost"]);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let receiver = Receiver::on(0, "202 Accepted", Some(ca.server.clone()));
        let target = Target {
            ca_file: Some(ca_file),
            ..target(&receiver.url("https", "localhost"), Format::Json)
        };
        let e = event();
        assert_eq!(
            deliver(&target, Some("s3cret"), &e, Duration::from_secs(5)),
            Attempt::Delivered
        );
        let got = receiver.got();
        assert_eq!(got.len(), 1);
        assert_signed(&got[0], "s3cret", &e);
        assert_eq!(
            got[0].header("host"),
            Some(format!("localhost:{}", receiver.port))
        );
    }

    #[test]
    fn https_refuses_another_ca_another_name_and_redirects() {
        let ca = test_ca(&["localhost"]);
        let dir = tempfile::tempdir().unwrap();
        let right = dir.path().join("right.pem");
        std::fs::write(&right, &ca.pem).unwrap();
        let wrong = dir.path().join("wrong.pem");
        std::fs::write(&wrong, test_ca(&["localhost"]).pem).unwrap();
        let receiver = Receiver::on(0, "202 Accepted", Some(ca.server.clone()));
        let with = |host: &str, ca_file: &std::path::Path| Target {
            ca_file: Some(ca_file.to_path_buf()),
            ..target(&receiver.url("https", host), Format::Slack)
        };
        let attempt = |t: &Target| deliver(t, None, &event(), Duration::from_secs(5));

        let Attempt::Failed(why) = attempt(&with("localhost", &wrong)) else {
            panic!("delivered to a certificate of another CA")
        };
        assert!(
            why.contains("UnknownIssuer") && why.contains(&wrong.display().to_string()),
            "{why}"
        );
        assert_eq!(why.lines().count(), 1, "{why}");
        // The right CA, but the certificate is for localhost, not 127.0.0.1.
        let Attempt::Failed(why) = attempt(&with("127.0.0.1", &right)) else {
            panic!("delivered to a certificate for another name")
        };
        assert!(why.contains("not valid for name"), "{why}");
        assert!(receiver.got().is_empty());
        // The system bundle does not hold the test CA.
        let system = Target {
            ca_file: None,
            ..with("localhost", &right)
        };
        assert!(matches!(attempt(&system), Attempt::Failed(_)));
        assert!(receiver.got().is_empty());

        let redirect = Receiver::on(0, "301 Moved Permanently", Some(ca.server.clone()));
        let t = Target {
            ca_file: Some(right.clone()),
            ..target(&redirect.url("https", "localhost"), Format::Slack)
        };
        let Attempt::Failed(why) = attempt(&t) else {
            panic!("a redirect delivered")
        };
        assert!(why.contains("redirect"), "{why}");
        assert_eq!(redirect.got().len(), 1);

        let missing = with("localhost", &dir.path().join("absent.pem"));
        let Attempt::Failed(why) = attempt(&missing) else {
            panic!("delivered without a CA file")
        };
        assert!(why.contains("absent.pem"), "{why}");
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
