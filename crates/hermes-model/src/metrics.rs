//! The snapshot as Prometheus metrics (text exposition format 0.0.4), for the
//! dashboard's `GET /metrics`. [`Scrape::collect`] gathers the [`Snapshot`]
//! plus what only a running gateway knows (its `/health/detailed`: inbox
//! counts, webhook requests and their latencies) and the last boot report;
//! [`render`] is a pure function of that.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hermes_core::boot::BootReport;
use hermes_core::profile::{self, SECRET_VAR};
use serde_json::Value;

use crate::env::Environment;
use crate::health::{self, HealthState};
use crate::snapshot::{parallel_map, Gateway, Snapshot};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a gateway gets to answer `/health/detailed` during a collection.
pub const DETAIL_TIMEOUT: Duration = Duration::from_millis(500);

/// What a running gateway reports about its inbox and webhook traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail {
    pub hooks: Vec<HookCount>,
    /// Webhook requests answered, by HTTP status code.
    pub requests: Vec<(u16, u64)>,
    pub latency: Option<Latency>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookCount {
    pub hook: String,
    /// Events accepted since the hook was created (its last event id).
    pub events: u64,
    /// Bytes of segments kept on disk.
    pub bytes: u64,
}

/// A histogram: cumulative counts at or under each upper bound (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Detail {
    /// From a gateway's `GET /health/detailed` document; missing parts are empty.
    pub fn from_json(doc: &Value) -> Detail {
        let u = |v: &Value| v.as_u64().unwrap_or(0);
        let hooks = doc["inbox"]["hooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some(HookCount {
                    hook: h["hook"].as_str()?.to_string(),
                    events: u(&h["last_id"]),
                    bytes: u(&h["bytes"]),
                })
            })
            .collect();
        let requests = doc["webhook_requests"]["by_status"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(code, n)| Some((code.parse().ok()?, n.as_u64()?)))
            .collect();
        let lat = &doc["webhook_requests"]["latency_seconds"];
        let latency = lat["buckets"].as_array().map(|buckets| Latency {
            buckets: buckets
                .iter()
                .filter_map(|b| Some((b[0].as_f64()?, b[1].as_u64()?)))
                .collect(),
            count: u(&lat["count"]),
            sum: lat["sum"].as_f64().unwrap_or(0.0),
        });
        Detail {
            hooks,
            requests,
            latency,
        }
    }
}

/// Everything one `/metrics` answer is rendered from.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub snapshot: Snapshot,
    /// By profile name, for the gateways that answered `/health/detailed`.
    pub details: BTreeMap<String, Detail>,
    pub boot: Option<BootReport>,
    /// How long collecting took.
    pub collect_secs: f64,
}

impl Scrape {
    pub fn collect(env: &dyn Environment) -> Scrape {
        let started = Instant::now();
        let snapshot = Snapshot::collect(env);
        let details = details(env, &snapshot.gateways, DETAIL_TIMEOUT);
        Scrape {
            snapshot,
            details,
            boot: BootReport::load(&env.home().boot_report()),
            collect_secs: started.elapsed().as_secs_f64(),
        }
    }
}

/// `/health/detailed` of every gateway that answered its health probe, at once.
pub fn details(
    env: &dyn Environment,
    gateways: &[Gateway],
    timeout: Duration,
) -> BTreeMap<String, Detail> {
    let live: Vec<&Gateway> = gateways
        .iter()
        .filter(|g| g.health.state == HealthState::Ok && g.port.is_some())
        .collect();
    let found = parallel_map(
        &live,
        || (),
        |_, g| {
            let paths = env.home().profile(&g.profile);
            let secret = profile::env_value(&paths, SECRET_VAR).ok().flatten()?;
            let host = g.host.as_deref().unwrap_or("127.0.0.1");
            let doc = health::get_json(host, g.port?, "/health/detailed", &secret, timeout).ok()?;
            Some((g.profile.to_string(), Detail::from_json(&doc)))
        },
    );
    found.into_iter().flatten().collect()
}

/// One metric family at a time: `# HELP`, `# TYPE`, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&number(value.into()));
        self.0.push('\n');
    }

    /// A family with one sample per gateway (`None` values are left out).
    fn per_gateway<V: Into<f64>>(
        &mut self,
        gateways: &[Gateway],
        (name, kind, help): (&str, &str, &str),
        value: impl Fn(&Gateway) -> Option<V>,
    ) {
        self.family(name, kind, help);
        for g in gateways {
            if let Some(v) = value(g) {
                self.sample(name, &[("profile", g.profile.as_str())], v);
            }
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The `gateway_state` values one-hot series are made for.
const RUN_STATES: [&str; 6] = [
    "starting",
    "running",
    "degraded",
    "draining",
    "stopped",
    "startup_failed",
];

/// The exposition document for `scrape`, taken `now_ms`.
pub fn render(scrape: &Scrape, now_ms: u64) -> String {
    let snap = &scrape.snapshot;
    let gws = &snap.gateways;
    let mut o = Out(String::with_capacity(512 + gws.len() * 1600));

    o.family(
        "hermes_build_info",
        "gauge",
        "The hermes build serving these metrics, as labels; always 1.",
    );
    o.sample(
        "hermes_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.family(
        "hermes_supervisor_up",
        "gauge",
        "Whether the supervision tree (s6-svscan or the host manager) answers.",
    );
    o.sample("hermes_supervisor_up", &[], flag(snap.supervisor.reachable));
    if snap.main.applicable {
        o.family(
            "hermes_main_program_up",
            "gauge",
            "Whether the container's main program (its CMD) runs.",
        );
        o.sample(
            "hermes_main_program_up",
            &[],
            flag(snap.main.running == Some(true)),
        );
    }
    o.family(
        "hermes_dashboard_up",
        "gauge",
        "Whether the dashboard slot is up.",
    );
    o.sample(
        "hermes_dashboard_up",
        &[],
        flag(snap.dashboard.service.as_ref().is_some_and(|s| s.up)),
    );
    if let Some(boot) = &scrape.boot {
        o.family(
            "hermes_boot_reconcile_duration_seconds",
            "gauge",
            "How long the last boot reconcile took.",
        );
        o.sample(
            "hermes_boot_reconcile_duration_seconds",
            &[],
            boot.duration_ms as f64 / 1000.0,
        );
        o.family(
            "hermes_boot_reconcile_timestamp_seconds",
            "gauge",
            "When the last boot reconcile finished, seconds since the Unix epoch.",
        );
        o.sample(
            "hermes_boot_reconcile_timestamp_seconds",
            &[],
            boot.at_ms as f64 / 1000.0,
        );
        o.family(
            "hermes_boot_reconcile_slots",
            "gauge",
            "Slots of the last boot reconcile by outcome.",
        );
        for (outcome, n) in [
            ("started", boot.started),
            ("down", boot.down),
            ("kept", boot.kept),
            ("failed", boot.failed),
            ("skipped", boot.skipped),
        ] {
            o.sample(
                "hermes_boot_reconcile_slots",
                &[("outcome", outcome)],
                n as f64,
            );
        }
    }
    o.family(
        "hermes_scrape_collect_duration_seconds",
        "gauge",
        "How long collecting the facts behind this answer took.",
    );
    o.sample(
        "hermes_scrape_collect_duration_seconds",
        &[],
        scrape.collect_secs,
    );
    o.family(
        "hermes_scrape_age_seconds",
        "gauge",
        "Age of the facts behind this answer.",
    );
    o.sample(
        "hermes_scrape_age_seconds",
        &[],
        now_ms.saturating_sub(snap.taken_at) as f64 / 1000.0,
    );
    o.family(
        "hermes_collect_errors",
        "gauge",
        "Problems met while collecting (see hermes status).",
    );
    o.sample("hermes_collect_errors", &[], snap.errors.len() as f64);

    o.per_gateway(
        gws,
        (
            "hermes_gateway_up",
            "gauge",
            "Whether the gateway process is up.",
        ),
        |g| Some(flag(g.up)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_ready",
            "gauge",
            "Whether the gateway signalled readiness.",
        ),
        |g| Some(flag(g.ready)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_healthy",
            "gauge",
            "Whether GET /health answered 200 as this profile.",
        ),
        |g| Some(flag(g.health.state == HealthState::Ok)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_wanted_up",
            "gauge",
            "Whether the supervisor is told to keep it up (no down marker).",
        ),
        |g| g.want.map(|w| flag(w == hermes_core::service::Want::Up)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_desired_running",
            "gauge",
            "Whether the operator asked for it to run (desired_state running).",
        ),
        |g| Some(flag(g.desired_state.as_deref() == Some("running"))),
    );
    o.family("hermes_gateway_state", "gauge", "The gateway's own state (gateway_state), one series per state set to 1 for the current one.");
    for g in gws {
        for st in RUN_STATES {
            o.sample(
                "hermes_gateway_state",
                &[("profile", g.profile.as_str()), ("state", st)],
                flag(g.gateway_state.as_deref() == Some(st)),
            );
        }
    }
    o.per_gateway(
        gws,
        (
            "hermes_gateway_parked",
            "gauge",
            "Whether the slot is permanently down (startup_failed) until someone starts it.",
        ),
        |g| {
            Some(flag(
                g.gateway_state.as_deref() == Some("startup_failed") && !g.up,
            ))
        },
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_restarts_total",
            "counter",
            "Restarts after a failure, as recorded by the finish hook.",
        ),
        |g| Some(f64::from(g.restarts)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_short_failures",
            "gauge",
            "Consecutive failures within 10 s of starting; 5 parks the slot.",
        ),
        |g| Some(f64::from(g.short_failures)),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_state_change_seconds",
            "gauge",
            "Seconds since the gateway last went up or down.",
        ),
        |g| g.uptime_secs.or(g.down_secs).map(|s| s as f64),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_last_exit_code",
            "gauge",
            "Exit code of the last exit (absent when it was killed by a signal).",
        ),
        |g| g.last_exit.as_ref().and_then(|e| e.code).map(f64::from),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_last_exit_signal",
            "gauge",
            "Signal that killed the gateway last (absent when it exited).",
        ),
        |g| g.last_exit.as_ref().and_then(|e| e.signal).map(f64::from),
    );
    o.per_gateway(
        gws,
        (
            "hermes_gateway_last_exit_timestamp_seconds",
            "gauge",
            "When the gateway last ended, seconds since the Unix epoch.",
        ),
        |g| g.last_exit.as_ref().map(|e| e.at as f64 / 1000.0),
    );

    let details: Vec<(&str, &Detail)> = gws
        .iter()
        .filter_map(|g| {
            let name = g.profile.as_str();
            scrape.details.get(name).map(|d| (name, d))
        })
        .collect();
    o.family(
        "hermes_inbox_events_total",
        "counter",
        "Webhook events accepted (stored durably) per hook since it was created.",
    );
    for (p, d) in &details {
        for h in &d.hooks {
            o.sample(
                "hermes_inbox_events_total",
                &[("profile", p), ("hook", &h.hook)],
                h.events as f64,
            );
        }
    }
    o.family(
        "hermes_inbox_stored_bytes",
        "gauge",
        "Bytes of inbox segments kept on disk per hook.",
    );
    for (p, d) in &details {
        for h in &d.hooks {
            o.sample(
                "hermes_inbox_stored_bytes",
                &[("profile", p), ("hook", &h.hook)],
                h.bytes as f64,
            );
        }
    }
    o.family(
        "hermes_webhook_requests_total",
        "counter",
        "Webhook POSTs answered since the gateway started, by HTTP status code.",
    );
    for (p, d) in &details {
        for (code, n) in &d.requests {
            o.sample(
                "hermes_webhook_requests_total",
                &[("profile", p), ("code", &code.to_string())],
                *n as f64,
            );
        }
    }
    o.family(
        "hermes_webhook_request_duration_seconds",
        "histogram",
        "Time from a webhook POST's head to its answer.",
    );
    for (p, d) in &details {
        let Some(lat) = &d.latency else { continue };
        for (le, n) in &lat.buckets {
            o.sample(
                "hermes_webhook_request_duration_seconds_bucket",
                &[("profile", p), ("le", &number(*le))],
                *n as f64,
            );
        }
        o.sample(
            "hermes_webhook_request_duration_seconds_bucket",
            &[("profile", p), ("le", "+Inf")],
            lat.count as f64,
        );
        o.sample(
            "hermes_webhook_request_duration_seconds_sum",
            &[("profile", p)],
            lat.sum,
        );
        o.sample(
            "hermes_webhook_request_duration_seconds_count",
            &[("profile", p)],
            lat.count as f64,
        );
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeEnv, Slot};
    use hermes_core::service::Want;
    use serde_json::json;

    fn scrape_of(env: &FakeEnv) -> Scrape {
        let snapshot = Snapshot::collect_with(env, Duration::from_millis(100));
        Scrape {
            snapshot,
            details: BTreeMap::new(),
            boot: None,
            collect_secs: 0.25,
        }
    }

    #[test]
    fn every_gateway_gets_its_series() {
        let env = FakeEnv::new();
        env.add_profile("web");
        env.add_profile("broken");
        env.set_slot("web", Slot::up(42));
        env.set_slot("broken", Slot::down(Want::Down));
        env.write_state(
            "broken",
            r#"{"gateway_state":"startup_failed","desired_state":"running","restarts":5,"fast_failures":5,"last_exit":{"code":3,"signal":null,"at":2000}}"#,
        );
        let text = render(&scrape_of(&env), 0);
        for line in [
            "hermes_gateway_up{profile=\"web\"} 1",
            "hermes_gateway_up{profile=\"broken\"} 0",
            "hermes_gateway_parked{profile=\"broken\"} 1",
            "hermes_gateway_parked{profile=\"web\"} 0",
            "hermes_gateway_restarts_total{profile=\"broken\"} 5",
            "hermes_gateway_short_failures{profile=\"broken\"} 5",
            "hermes_gateway_last_exit_code{profile=\"broken\"} 3",
            "hermes_gateway_last_exit_timestamp_seconds{profile=\"broken\"} 2",
            "hermes_gateway_state{profile=\"broken\",state=\"startup_failed\"} 1",
            "hermes_gateway_state{profile=\"broken\",state=\"running\"} 0",
            "hermes_gateway_desired_running{profile=\"broken\"} 1",
            "hermes_gateway_wanted_up{profile=\"web\"} 1",
            "hermes_scrape_collect_duration_seconds 0.25",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("hermes_gateway_last_exit_signal{profile=\"broken\"}"));
        // Every sample belongs to a family declared just before.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }

    #[test]
    fn details_become_inbox_and_request_series() {
        let doc = json!({
            "inbox": {"hooks": [{"hook": "gh", "last_id": 7, "bytes": 900}]},
            "webhook_requests": {
                "by_status": {"202": 6, "401": 1},
                "latency_seconds": {"buckets": [[0.001, 2], [0.5, 6]], "count": 7, "sum": 1.5}
            }
        });
        let env = FakeEnv::new();
        let mut scrape = scrape_of(&env);
        scrape
            .details
            .insert("default".into(), Detail::from_json(&doc));
        scrape.boot = Some(BootReport {
            at_ms: 1000,
            duration_ms: 1500,
            started: 2,
            ..BootReport::default()
        });
        let text = render(&scrape, 0);
        for line in [
            "hermes_inbox_events_total{profile=\"default\",hook=\"gh\"} 7",
            "hermes_inbox_stored_bytes{profile=\"default\",hook=\"gh\"} 900",
            "hermes_webhook_requests_total{profile=\"default\",code=\"401\"} 1",
            "hermes_webhook_request_duration_seconds_bucket{profile=\"default\",le=\"0.001\"} 2",
            "hermes_webhook_request_duration_seconds_bucket{profile=\"default\",le=\"+Inf\"} 7",
            "hermes_webhook_request_duration_seconds_sum{profile=\"default\"} 1.5",
            "hermes_boot_reconcile_duration_seconds 1.5",
            "hermes_boot_reconcile_slots{outcome=\"started\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.0025), "0.0025");
    }
}
