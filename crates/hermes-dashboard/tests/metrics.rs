//! `GET /metrics` over HTTP, checked with prometheus_client's parser (from
//! PyPI, in a venv this test makes once under target/).
#![allow(clippy::disallowed_methods)] // tests

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Served;
use hermes_core::service::Want;
use hermes_model::fake::{FakeEnv, Slot};
use serde_json::Value;

const PARSER: &str = "prometheus_client==0.26.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's python, made (under a lock: tests run in parallel) when missing.
fn parser_python() -> PathBuf {
    let venv = repo().join("target/prometheus-venv");
    std::fs::create_dir_all(repo().join("target")).unwrap();
    let lock = std::fs::File::create(repo().join("target/prometheus-venv.lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let pinned = venv.join(".pinned");
    if std::fs::read_to_string(&pinned).ok().as_deref() != Some(PARSER) {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PARSER,
        ]));
        std::fs::write(&pinned, PARSER).unwrap();
    }
    venv.join("bin/python3")
}

/// The families prometheus_client reads from `text`; panics with its complaint.
fn parse(text: &str) -> Vec<Value> {
    let out = hermes_testkit::pipe_through(
        Command::new(parser_python()).arg(repo().join("tests/prometheus/parse.py")),
        text,
    );
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `GET /metrics` with the dashboard's token, answered 200: its families.
fn scrape(served: &Served) -> Vec<Value> {
    let bearer = format!("Bearer {}", served.token);
    let r = served.get_anon("/metrics", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    parse(&r.body)
}

fn value(families: &[Value], sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .find(|s| {
            s["name"] == sample
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(v))
        })
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn metrics_need_the_api_credentials() {
    let served = Served::start(FakeEnv::new(), "127.0.0.1", None);
    assert_eq!(served.get_anon("/metrics", &[]).status, 401);
    let wrong = served.get_anon("/metrics", &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    assert_eq!(served.post("/metrics", &[], "").status, 405);
}

#[test]
fn every_profile_is_in_a_document_prometheus_client_reads() {
    let env = FakeEnv::new();
    env.add_profile("web");
    env.serve_health("web");
    env.set_slot("web", Slot::up(7));
    env.add_profile("broken");
    env.set_slot("broken", Slot::down(Want::Down));
    env.write_state(
        "broken",
        r#"{"gateway_state":"startup_failed","desired_state":"running","restarts":5,"fast_failures":5,"exit_reason":"crash loop","last_exit":{"code":null,"signal":11,"at":1000}}"#,
    );
    let families = scrape(&Served::start(env, "127.0.0.1", None));
    let kind = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("hermes_gateway_restarts").as_deref(), Some("counter"));
    assert_eq!(kind("hermes_gateway_up").as_deref(), Some("gauge"));
    assert_eq!(
        kind("hermes_webhook_request_duration_seconds").as_deref(),
        Some("histogram")
    );
    let p = |name| [("profile", name)];
    assert_eq!(value(&families, "hermes_gateway_up", &p("web")), Some(1.0));
    assert_eq!(
        value(&families, "hermes_gateway_healthy", &p("web")),
        Some(1.0)
    );
    assert_eq!(
        value(&families, "hermes_gateway_up", &p("broken")),
        Some(0.0)
    );
    assert_eq!(
        value(&families, "hermes_gateway_parked", &p("broken")),
        Some(1.0)
    );
    assert_eq!(
        value(&families, "hermes_gateway_restarts_total", &p("broken")),
        Some(5.0)
    );
    assert_eq!(
        value(&families, "hermes_gateway_last_exit_signal", &p("broken")),
        Some(11.0)
    );
    assert_eq!(
        value(
            &families,
            "hermes_gateway_state",
            &[("profile", "broken"), ("state", "startup_failed")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&families, "hermes_supervisor_up", &[]), Some(1.0));
    assert_eq!(
        value(
            &families,
            "hermes_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // The root profile (no slot) is there too.
    assert_eq!(
        value(&families, "hermes_gateway_up", &p("default")),
        Some(0.0)
    );
}
