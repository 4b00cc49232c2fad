//! Webhook request counts by status code and a latency histogram, kept in
//! memory since the gateway started and reported by `GET /health/detailed`
//! (the dashboard's `/metrics` turns them into Prometheus series).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// Upper bounds of the latency buckets, in seconds (Prometheus' defaults
/// below 1 s, where a webhook that fsyncs lives, and a few above).
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
pub struct RequestStats {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_status: BTreeMap<u16, u64>,
    /// Observations at or under each of [`BUCKETS`] (not cumulative here).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

impl RequestStats {
    pub fn record(&self, status: u16, took: Duration) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *c.by_status.entry(status).or_default() += 1;
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            c.buckets[i] += 1;
        }
        c.count += 1;
        c.sum_secs += secs;
    }

    /// `{"by_status": {"202": n}, "latency_seconds": {"buckets": [[le, cumulative]], "count", "sum"}}`.
    pub fn to_json(&self) -> Value {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut cumulative = 0;
        let buckets: Vec<Value> = BUCKETS
            .iter()
            .zip(c.buckets)
            .map(|(le, n)| {
                cumulative += n;
                json!([le, cumulative])
            })
            .collect();
        let by_status: serde_json::Map<String, Value> = c
            .by_status
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        json!({
            "by_status": by_status,
            "latency_seconds": {"buckets": buckets, "count": c.count, "sum": c.sum_secs},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_codes_counted() {
        let s = RequestStats::default();
        s.record(202, Duration::from_micros(500));
        s.record(202, Duration::from_millis(30));
        s.record(401, Duration::from_secs(20));
        let doc = s.to_json();
        assert_eq!(doc["by_status"]["202"], 2);
        assert_eq!(doc["by_status"]["401"], 1);
        let buckets = doc["latency_seconds"]["buckets"].as_array().unwrap();
        assert_eq!(buckets[0], json!([0.001, 1]));
        assert_eq!(buckets[5], json!([0.05, 2]));
        // Slower than the last bucket: only in the count (+Inf).
        assert_eq!(buckets.last().unwrap()[1], 2);
        assert_eq!(doc["latency_seconds"]["count"], 3);
    }
}
