//! A measured figure: hermes's samples, an optional baseline measured in the
//! same run, and the target it is judged against.

use serde::Serialize;

use hermes_conformance::stats::{summarize, Summary};

#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// What exactly was timed (command, start and end of the interval).
    pub what: String,
    pub summary: Option<Summary>,
    pub samples: Vec<f64>,
    /// Runs that did not produce a sample, and why.
    pub failures: Vec<String>,
}

impl Measured {
    pub fn new(what: impl Into<String>, samples: Vec<f64>, failures: Vec<String>) -> Self {
        Measured {
            what: what.into(),
            summary: summarize(&samples),
            samples,
            failures,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub id: String,
    pub group: String,
    pub label: String,
    pub unit: String,
    pub hermes: Measured,
    pub baselines: Vec<Measured>,
    /// Upper bound the median must stay under (issue 2's targets).
    pub target: Option<f64>,
    pub note: Option<String>,
}

impl Figure {
    pub fn new(id: &str, group: &str, label: &str, unit: &str, hermes: Measured) -> Self {
        Figure {
            id: id.to_string(),
            group: group.to_string(),
            label: label.to_string(),
            unit: unit.to_string(),
            hermes,
            baselines: Vec::new(),
            target: None,
            note: None,
        }
    }

    pub fn baseline(mut self, m: Measured) -> Self {
        self.baselines.push(m);
        self
    }

    pub fn target(mut self, t: f64) -> Self {
        self.target = Some(t);
        self
    }

    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.note = Some(n.into());
        self
    }

    /// Whether the median meets the target: `None` without a target or a sample.
    pub fn met(&self) -> Option<bool> {
        Some(self.hermes.summary.as_ref()?.median < self.target?)
    }
}

/// Milliseconds since `t`.
pub fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
