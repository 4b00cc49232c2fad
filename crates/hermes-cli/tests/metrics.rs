//! `/metrics` from a real gateway's traffic under a real s6-svscan, served by
//! `hermes dashboard`, checked by `promtool check metrics` and scraped by a
//! real Prometheus server (Debian's `prometheus` package; scripts/test
//! installs it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hermes_testkit::{free_port, http, Env};

const TOKEN: &str = "metrics-token-0123456789abcdef";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metrics(port: u16) -> String {
    let bearer = format!("Bearer {TOKEN}");
    let (code, body) = http::request(
        port,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        "".as_bytes(),
        Duration::from_secs(2),
    )
    .map(|r| (r.status, r.body))
    .expect("the dashboard answers");
    assert_eq!(code, 200, "{body}");
    body
}

fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

fn promtool_check(text: &str) {
    // Debian's prometheus package; scripts/test installs it.
    hermes_testkit::pipe_through(Command::new("promtool").args(["check", "metrics"]), text);
}

#[test]
fn a_gateways_traffic_reaches_metrics_promtool_and_prometheus() {
    let env = Env::with_gateway_up("web");
    for i in 0..3 {
        let out = env
            .command(&[
                "-p",
                "web",
                "webhook",
                "send",
                "orders",
                "--data",
                &format!("{{\"n\":{i}}}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let gw = env.port_of("web");
    let (code, _) = http::request(
        gw,
        "POST",
        "/v1/webhooks/orders",
        &[],
        "{}".as_bytes(),
        Duration::from_secs(2),
    )
    .map(|r| (r.status, r.body))
    .unwrap();
    assert_eq!(code, 401);

    let port = free_port();
    let dashboard = Killed(
        env.command(&["dashboard", "--port", &port.to_string()])
            .env("HERMES_DASHBOARD_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hermes dashboard"),
    );
    env.wait_for("the dashboard", Duration::from_secs(10), || {
        http::get(port, "/", &[])
            .map(|r| (r.status, r.body))
            .is_some()
    });
    let (code, _) = http::get(port, "/metrics", &[])
        .map(|r| (r.status, r.body))
        .unwrap();
    assert_eq!(code, 401, "no token, no metrics");
    let text = metrics(port);
    let p = "{profile=\"web\"";
    assert_eq!(
        sample(&text, &format!("hermes_gateway_up{p}}} ")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("hermes_gateway_ready{p}}} ")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("hermes_gateway_healthy{p}}} ")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("hermes_inbox_events_total{p},hook=\"orders\"}} ")
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            &format!("hermes_inbox_stored_bytes{p},hook=\"orders\"}} ")
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("hermes_webhook_requests_total{p},code=\"202\"}} ")
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("hermes_webhook_requests_total{p},code=\"401\"}} ")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("hermes_webhook_request_duration_seconds_count{p}}} ")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("hermes_webhook_request_duration_seconds_bucket{p},le=\"+Inf\"}} ")
        ),
        Some(4.0)
    );
    assert_eq!(sample(&text, "hermes_supervisor_up "), Some(1.0));
    promtool_check(&text);

    // A real Prometheus server scrapes it with the token as a bearer.
    let dir = env.dir.path();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hermes\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            dir.join("token").display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)"),
    );
    let query = |q: &str| -> Option<serde_json::Value> {
        let (code, body) = http::get(prom_port, &format!("/api/v1/query?query={q}"), &[])
            .map(|r| (r.status, r.body))?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    };
    let mut last = None;
    let found = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        last = query("hermes_inbox_events_total");
        last.as_ref().is_some_and(|doc| {
            doc["data"]["result"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|s| s["metric"]["profile"] == "web" && s["value"][1] == "3")
            })
        })
    });
    let targets = http::get(prom_port, "/api/v1/targets", &[])
        .map(|r| (r.status, r.body))
        .map(|(_, b)| b);
    assert!(
        found,
        "Prometheus never stored the sample: last answer {last:?}\ntargets: {targets:?}\nlog:\n{}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    let up = query("up%7Bjob%3D%22hermes%22%7D").unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    drop(dashboard);
}
